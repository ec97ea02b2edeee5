"""Many processes on one PostgreSQL (issue 14): two ``bitbybit serve`` (API only, no worker in
them) and two ``bitbybit worker`` share one schema under load.

A few thousand customers are created through both APIs at once, each company's events going
to a loopback receiver that answers 200 quickly. One worker runs from the start; the second
joins once a fifth of the deliveries arrived; the first is stopped with SIGTERM at half. Then:

- every event arrived, exactly once, and every delivery is recorded as succeeded by exactly one
  attempt (nothing is attempted twice in steady state: leases keep the workers apart, and a
  worker that stops gives back what it had not started and records what it had);
- both workers made attempts, the stopped one exited cleanly with nothing unrecorded, and no
  queue row is left (none leased, none pending);
- the per-key rate limit is counted in the database, so it holds across the two API processes:
  a burst of ``LIMIT + EXTRA`` requests with one key, spread over both, gets exactly ``LIMIT``
  answers 2xx and ``EXTRA`` 429;
- each company's numbered lists' ``total`` (the kept counts of ADR 0011, changed by both APIs
  and both workers and folded by the workers) is the count of its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiohttp import web

from bitbybit.config import Settings
from bitbybit.models import ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import access, webhooks
from bitbybit.services.access import WINDOW_MS
from bitbybit.store import Store
from bitbybit.store.sql import SqlTx
from bitbybit.webhooks.signing import ID_HEADER
from tests.conftest import CUSTOMERS
from tests.integration.receivers import Receiver, receiver
from tests.integration.servers import BITBYBIT, free_port
from tests.integration.test_crash import Progress, fetch, shared_database

pytestmark = pytest.mark.postgres

COMPANIES = 16
PER_COMPANY = 150
EVENTS = COMPANIES * PER_COMPANY
LIMIT = 200
"""``BITBYBIT_RATE_LIMIT`` of the API processes: above what one company's load sends."""
EXTRA = 50
CLIENTS = 32
"""Requests in flight at once (load and burst each), spread over both API processes."""
CONCURRENCY = 32
SECRET_KEY = "bitbybit-many-processes-secret-key"
ANSWER_DELAY = (0.0, 0.01)
"""The receiver answers 200 within 10 ms: attempts are in flight, none near a timeout."""
JOIN_AT = EVENTS // 5
STOP_AT = EVENTS // 2
STARTUP_WITHIN = 30.0
SETTLE_WITHIN = 60.0


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return f"--- {self.name} (exit {self.process.poll()})\n{self.log.read_text()[-3000:]}"


@dataclass
class Processes:
    env: dict[str, str]
    logs: Path
    started: list[Process] = field(default_factory=list)

    def spawn(self, name: str, *args: str) -> Process:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*BITBYBIT, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        started = Process(name, process, log)
        self.started.append(started)
        return started

    def serve(self, name: str) -> tuple[Process, str]:
        """``bitbybit serve`` with no worker in it (``--concurrency 0``): the API alone."""
        port = free_port()
        api = self.spawn(name, "serve", "--port", str(port), "--concurrency", "0")
        return api, f"http://127.0.0.1:{port}"

    def stop_all(self) -> None:
        for started in self.started:
            if started.process.poll() is None:
                started.process.terminate()
        for started in self.started:
            try:
                started.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()

    def tails(self) -> str:
        return "\n".join(started.tail() for started in self.started)


async def until_up(api: Process, base_url: str, http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + STARTUP_WITHIN
    while True:
        if api.process.poll() is not None:
            raise AssertionError(f"{api.name} exited: {api.tail()}")
        with contextlib.suppress(httpx.TransportError):
            if (await http.get(f"{base_url}/healthz")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{api.name} did not start: {api.tail()}")
        await asyncio.sleep(0.05)


async def until_started(worker: Process) -> None:
    deadline = time.monotonic() + STARTUP_WITHIN
    while b'"worker_started"' not in worker.log.read_bytes():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{worker.name} did not start: {worker.tail()}")
        await asyncio.sleep(0.05)


def process_env(database_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env.update(
        BITBYBIT_DATABASE_URL=database_url,
        BITBYBIT_SECRET_KEY=SECRET_KEY,
        BITBYBIT_ALLOW_PRIVATE_TARGETS="1",
        BITBYBIT_ALLOW_HTTP_TARGETS="1",
        BITBYBIT_RATE_LIMIT=str(LIMIT),
        BITBYBIT_DELIVERY_TIMEOUT="10",
    )
    return env


@dataclass
class Company:
    key: str
    tenant: Tenant


async def companies(platform: Platform, url: str, count: int) -> list[Company]:
    """``count`` companies, each with a live key and an endpoint at ``url``."""
    made = []
    for n in range(count):
        company = await access.create_company(platform, f"Many {n}", "ID")
        tenant = Tenant(company.id, "live")
        _, raw = await access.create_api_key(platform, company.id)
        await webhooks.create_endpoint(platform, tenant, EndpointCreate(url=url))
        made.append(Company(raw, tenant))
    return made


async def list_totals(store: Store, made: list[Company]) -> list[tuple[int, int]]:
    """For each company, its events' and its endpoint's succeeded deliveries': the numbered
    list's ``total`` and the rows counted, read in one snapshot."""
    found = []
    for company in made:
        async with store.read(snapshot=True) as tx:
            tenant = company.tenant
            (endpoint,) = await tx.list_endpoints(tenant)
            db = cast(SqlTx, tx).db
            events = await db.fetchrow(
                "SELECT COUNT(*) AS n FROM events WHERE company_id = $1", tenant.company_id
            )
            succeeded = await db.fetchrow(
                "SELECT COUNT(*) AS n FROM deliveries WHERE endpoint_id = $1"
                " AND status = 'succeeded'",
                endpoint.id,
            )
            assert events is not None
            assert succeeded is not None
            found.append(((await tx.list_events(tenant, ListQuery())).total, int(events["n"])))
            listed = await tx.list_deliveries(
                tenant, endpoint_id=endpoint.id, statuses=("succeeded",)
            )
            found.append((listed.total, int(succeeded["n"])))
    return found


async def load(http: httpx.AsyncClient, apis: list[str], made: list[Company]) -> Counter[int]:
    """``PER_COMPANY`` customers for each company, ``CLIENTS`` requests in flight, the API
    processes in turn; the statuses answered."""
    work = [(company, n) for n in range(PER_COMPANY) for company in made]
    turns = itertools.cycle(apis)
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[tuple[Company, int]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)

    async def client() -> None:
        while not queue.empty():
            company, n = queue.get_nowait()
            body = {"email": f"c{n}@example.com", "firstName": f"Load {n}"}
            answer = await http.post(
                f"{next(turns)}{CUSTOMERS}", json=body, headers={"x-api-key": company.key}
            )
            statuses[answer.status_code] += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses


def window_of(ms: float) -> int:
    return int(ms) // WINDOW_MS


async def burst(http: httpx.AsyncClient, apis: list[str], key: str) -> dict[str, Counter[int]]:
    """``LIMIT + EXTRA`` requests with ``key``, the API processes in turn; statuses per API."""
    answers: dict[str, Counter[int]] = {api: Counter() for api in apis}
    calls = [apis[n % len(apis)] for n in range(LIMIT + EXTRA)]

    async def client() -> None:
        while calls:
            api = calls.pop()
            answer = await http.get(f"{api}{CUSTOMERS}", headers={"x-api-key": key})
            answers[api][answer.status_code] += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answers


async def rate_limited(
    http: httpx.AsyncClient, apis: list[str], keys: list[str]
) -> dict[str, Counter[int]]:
    """A burst that fell within one window of the rate limit (a fresh key if one straddled
    two); waits for the next window when this one is about to end."""
    for key in keys:
        left = WINDOW_MS - time.time() * 1000 % WINDOW_MS
        if left < 5_000:
            await asyncio.sleep(left / 1000 + 0.05)
        began = time.time() * 1000
        answers = await burst(http, apis, key)
        if window_of(began) == window_of(time.time() * 1000):
            return answers
    raise AssertionError("every burst straddled two rate-limit windows")


@dataclass
class Stop:
    arrived: int
    held: set[str]
    """Deliveries the stopped worker had leased when it was told to stop."""


async def join_and_leave(
    processes: Processes, first: Process, hook: Receiver, store: Store
) -> tuple[Process, Stop]:
    """Start the second worker at ``JOIN_AT`` arrivals; SIGTERM the first at ``STOP_AT``."""
    progress = Progress(hook)
    await progress.until(JOIN_AT, SETTLE_WITHIN)
    second = processes.spawn("worker-2", "worker", "--concurrency", str(CONCURRENCY))
    await until_started(second)
    await progress.until(STOP_AT, SETTLE_WITHIN)
    held = await leased_by(store, first.process.pid)
    arrived = progress.distinct()
    first.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(first.process.wait, 30)
    return second, Stop(arrived, held)


async def leased_by(store: Store, pid: int) -> set[str]:
    """Deliveries leased to the worker with this pid (worker names are host:pid:random)."""
    rows = await fetch(
        store,
        "SELECT delivery_id AS id FROM delivery_queue WHERE lease_owner LIKE $1",
        f"%:{pid}:%",
    )
    return {row["id"] for row in rows}


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return [line for line in lines if isinstance(line, dict)]


async def settle(store: Store) -> None:
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        rows = await fetch(store, "SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        counts = {row["status"]: int(row["n"]) for row in rows}
        if counts == {"succeeded": EVENTS}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {counts}")
        await asyncio.sleep(0.1)


async def test_two_apis_and_two_workers_on_one_postgresql(tmp_path: Path) -> None:
    delays = random.Random()

    async def answer(request: web.Request, hook: Receiver) -> web.StreamResponse:
        await asyncio.sleep(delays.uniform(*ANSWER_DELAY))
        return web.Response(status=200, text="ok")

    async with (
        shared_database("postgres", tmp_path) as (url, store),
        receiver(answer) as hook,
        httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=2 * CLIENTS)) as http,
    ):
        settings = Settings(
            database_url=url,
            secret_key=SECRET_KEY,
            allow_private_targets=True,
            allow_http_targets=True,
        )
        platform = Platform(store, settings)
        made = await companies(platform, hook.url, COMPANIES)
        rate_keys = [(await access.create_api_key(platform, made[0].tenant.company_id))[1]]
        rate_keys.append((await access.create_api_key(platform, made[1].tenant.company_id))[1])

        processes = Processes(process_env(url), tmp_path)
        try:
            api_a, url_a = processes.serve("serve-a")
            api_b, url_b = processes.serve("serve-b")
            first = processes.spawn("worker-1", "worker", "--concurrency", str(CONCURRENCY))
            await until_up(api_a, url_a, http)
            await until_up(api_b, url_b, http)
            await until_started(first)
            apis = [url_a, url_b]

            moves = asyncio.create_task(join_and_leave(processes, first, hook, store))
            created, answers = await asyncio.gather(
                load(http, apis, made), rate_limited(http, apis, rate_keys)
            )
            second, stop = await moves
            await settle(store)
            scraped = (await http.get(f"{url_a}/metrics")).text
        except BaseException:
            processes.stop_all()
            print(processes.tails())  # shown by pytest when the test fails
            raise
        finally:
            processes.stop_all()

        deliveries = await fetch(
            store,
            "SELECT d.id, d.event_id, d.status, d.attempts, COUNT(a.seq) AS recorded"
            " FROM deliveries d LEFT JOIN delivery_attempts a ON a.delivery_id = d.id"
            " GROUP BY d.id, d.event_id, d.status, d.attempts",
        )
        by_worker = {
            row["worker"]: int(row["n"])
            for row in await fetch(
                store, "SELECT worker, COUNT(*) AS n FROM delivery_attempts GROUP BY worker"
            )
        }
        queued = await fetch(store, "SELECT COUNT(*) AS n FROM delivery_queue")
        events = {row["id"] for row in await fetch(store, "SELECT id FROM events")}
        totals = await list_totals(store, made)
        folded = await fetch(store, "SELECT COUNT(*) AS n FROM event_counts")

    print(
        f"{EVENTS} events; the second worker joined, the first stopped at {stop.arrived}"
        f" arrivals holding {len(stop.held)} leases; attempts per worker {by_worker};"
        f" burst {answers}"
    )
    # The load went through both APIs, every request answered 201.
    assert created == Counter({201: EVENTS})

    # The rate limit held across the two processes: exactly LIMIT successes in the window.
    statuses = sum(answers.values(), Counter[int]())
    assert statuses == Counter({200: LIMIT, 429: EXTRA}), answers
    assert all(answers[api][200] > 0 for api in apis), answers

    # Every event arrived, exactly once; one delivery each, one recorded attempt each.
    arrivals = Counter(got.headers[ID_HEADER] for got in hook.received)
    assert len(events) == EVENTS
    assert set(arrivals) == events
    assert [event for event, times in arrivals.items() if times > 1] == []
    assert len(deliveries) == EVENTS
    twice = [
        dict(row)
        for row in deliveries
        if (row["status"], row["attempts"], row["recorded"]) != ("succeeded", 1, 1)
    ]
    assert twice == [], twice[:5]
    assert sum(by_worker.values()) == len(hook.received)

    # The worker that joined and the one that left both delivered; the one that left was
    # stopped mid-load, exited cleanly and left nothing unrecorded; nothing is left queued.
    assert stop.arrived < EVENTS
    assert stop.held, "the first worker held no lease when it was stopped: nothing was tested"

    def attempts_of(process: Process) -> int:
        return sum(n for name, n in by_worker.items() if f":{process.process.pid}:" in name)

    assert attempts_of(first) > 0, by_worker
    assert attempts_of(second) > 0, by_worker
    assert attempts_of(first) + attempts_of(second) == sum(by_worker.values()), by_worker
    assert first.process.returncode == 0, first.tail()
    stopped = [line for line in log_lines(first.log) if line.get("event") == "worker_stopped"]
    assert [line["unrecorded"] for line in stopped] == [0], first.tail()
    assert int(queued[0]["n"]) == 0

    # The lists' totals are the rows (the kept counts, ADR 0011), and the workers folded them.
    assert [listed for listed, _ in totals] == [counted for _, counted in totals]
    assert int(folded[0]["n"]) > 0

    # The API's own metrics name the route, not the path.
    assert (
        'bitbybit_http_requests_total{method="POST",route="/customer/open/v1/customers",'
        'status="201"}' in scraped
    )
    assert 'route="/customer/open/v1/customers",status="429"' in scraped
