"""Crash test for WhatsApp sends: workers killed with SIGKILL during a burst lose none (issue 11).

Two real ``bitbybit worker`` processes share one database and send 600 queued template messages
through the ``whatsapp-cloud`` channel to a fake Graph API in this process, which answers after a
pause; each worker paces the number, so it always holds sends claimed or in flight. While sends
flow, a random worker is SIGKILLed six times and restarted. Afterwards every message reached the
fake at least once, is ``sent`` with the WhatsApp id of one of its requests, emitted exactly one
``sent`` status event, and was recorded as done by exactly one attempt; every duplicate request
is accounted for by a job the killed worker held unrecorded when it died.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from bitbybit.config import Settings
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import TemplateCreate, TemplateSend
from bitbybit.services import access, messages, numbers, templates
from tests.conftest import DIALECTS
from tests.integration.fake_graph import FakeGraph, fake_graph
from tests.integration.test_crash import (
    SECRET_KEY,
    SETTLE_WITHIN,
    Kill,
    Workers,
    fetch,
    held_by,
    shared_database,
    worker_env,
)

SENDS = 600
KILLS = 6
WORKERS = 2
PACE = 30
"""Sends a second per worker: 600 take about ten seconds with two workers."""
PHONE_NUMBER_ID = "106540352242922"
TOKEN = "crash-test-access-token"


async def queue_sends(platform: Platform) -> Tenant:
    """A company with a connected number, a template, and ``SENDS`` template sends queued."""
    company = await access.create_company(platform, "Crash Sends", "ID")
    tenant = Tenant(company.id, "live")
    connection = numbers.Connection(
        company_id=company.id,
        phone_number_id=PHONE_NUMBER_ID,
        access_token=TOKEN,
        app_secret="crash-app-secret",
        verify_token="crash-verify",
    )
    await platform.run(lambda tx: numbers.connect(platform, tx, connection))
    template = TemplateCreate(name="order_update", body="Order {{1}} is on its way")
    await platform.run(lambda tx: templates.create(platform, tx, tenant, template))
    for start in range(0, SENDS, 100):

        async def batch(tx: Any, start: int = start) -> None:
            for n in range(start, min(start + 100, SENDS)):
                send = TemplateSend(
                    to=f"+62812{n:07d}", template_name="order_update", params=[f"ORD-{n}"]
                )
                await messages.send_template(platform, tx, tenant, send)

        await platform.run(batch)
    return tenant


async def kill_at_random(
    workers: Workers, graph: FakeGraph, platform: Platform, rng: random.Random
) -> list[Kill]:
    marks = sorted(rng.randint(SENDS // 20, SENDS * 3 // 5) for _ in range(KILLS))
    kills: list[Kill] = []
    for mark in marks:
        await graph.wait_for(mark, within=SETTLE_WITHIN)
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        slot = rng.randrange(WORKERS)
        arrived = len(graph.sent)
        pid = workers.kill(slot)
        kills.append(Kill(pid, await held_by(platform.store, pid), arrived))
        workers.slots[slot] = workers.spawn()
        await workers.wait_started(workers.slots[slot])
    return kills


async def settle(platform: Platform) -> None:
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        rows = await fetch(
            platform.store,
            "SELECT status, COUNT(*) AS n FROM messages GROUP BY status ORDER BY status",
        )
        counts = {row["status"]: int(row["n"]) for row in rows}
        if counts == {"sent": SENDS}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"messages did not settle: {counts}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sigkilled_workers_lose_no_send(dialect: str, tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)

    async with (
        shared_database(dialect, tmp_path) as (url, store),
        fake_graph({PHONE_NUMBER_ID: TOKEN}) as graph,
    ):
        graph.delay_ms = 150  # sends stay in flight, so kills strand some
        settings = Settings(database_url=url, secret_key=SECRET_KEY, channel="whatsapp-cloud")
        platform = Platform(store, settings)
        await queue_sends(platform)

        env = worker_env(url) | {
            "BITBYBIT_CHANNEL": "whatsapp-cloud",
            "BITBYBIT_GRAPH_URL": graph.url,
            # Paced, so the sends take seconds and every kill finds some claimed or in flight.
            "BITBYBIT_WHATSAPP_PACE": str(PACE),
            "BITBYBIT_WHATSAPP_PAIR_INTERVAL": "0",
        }
        workers = Workers(env, tmp_path)
        try:
            workers.slots = [workers.spawn() for _ in range(WORKERS)]
            for process in workers.slots:
                await workers.wait_started(process)
            kills = await kill_at_random(workers, graph, platform, rng)
            await settle(platform)
        except BaseException:
            workers.kill_all()
            print(f"seed {seed}\n{workers.tails()}")
            raise
        finally:
            workers.kill_all()

        sent_messages = await fetch(
            store, "SELECT id, phone, wa_id, job_id FROM messages WHERE direction = 'out'"
        )
        jobs = await fetch(
            store,
            "SELECT j.id, j.status, j.attempts, COUNT(a.seq) AS recorded"
            " FROM jobs j LEFT JOIN job_attempts a ON a.job_id = j.id WHERE j.kind = 'whatsapp'"
            " GROUP BY j.id, j.status, j.attempts",
        )
        status_events = await fetch(
            store, "SELECT payload FROM events WHERE type = 'message.status.updated'"
        )

    requests = Counter(request.to for request in graph.sent)
    wamids = {request.wamid: request.to for request in graph.sent}
    stranded = Counter(job_id for kill in kills for job_id in kill.held)
    duplicates = sum(requests.values()) - len(requests)
    print(
        f"{dialect}: seed {seed}, {len(graph.sent)} sends, {duplicates} duplicates;"
        f" kills holding {[len(kill.held) for kill in kills]} jobs"
    )
    assert len(kills) == KILLS
    assert stranded, "no kill caught a worker with sends in flight"

    # Every message reached WhatsApp, and is sent with the id of one of its own requests.
    assert len(sent_messages) == SENDS
    assert set(requests) == {row["phone"].removeprefix("+") for row in sent_messages}
    for row in sent_messages:
        assert wamids.get(row["wa_id"]) == row["phone"].removeprefix("+"), dict(row)

    # One `sent` event per message, whatever the duplicates.
    events = Counter(orjson.loads(bytes(row["payload"]))["messageId"] for row in status_events)
    assert set(events) == {row["id"] for row in sent_messages}
    assert set(events.values()) == {1}

    # Each job done by exactly one recorded attempt; duplicates only for jobs held at a kill.
    assert len(jobs) == SENDS
    for row in jobs:
        assert (row["status"], row["attempts"], row["recorded"]) == ("succeeded", 1, 1), dict(row)
    job_of = {row["phone"].removeprefix("+"): row["job_id"] for row in sent_messages}
    for to, count in requests.items():
        assert count - 1 <= stranded[job_of[to]], (to, count, seed)
