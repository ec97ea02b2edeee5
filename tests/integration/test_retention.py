"""Retention running in the background, as ``serve`` and ``worker`` run it, on both databases:

- in this process (``retaining``) with a clock moved past the retention period: runs come by
  themselves, the metrics move, and nothing runs when the period is 0;
- in real ``bitbybit serve`` and ``bitbybit worker`` processes over a database holding events
  40 days old: the old settled ones go, an old one still in flight and a recent one stay, and
  ``/metrics`` shows the runs and the rows removed.

(One run at a time across processes on PostgreSQL is tested in tests/contract/test_retention.py,
where two runs can be made to overlap deterministically.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from bitbybit.config import Settings
from bitbybit.models import Endpoint, Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import access, retention, webhooks
from bitbybit.services.retention import DAY_MS, Run, retaining
from bitbybit.store import Store
from tests.conftest import DIALECTS, FakeClock, with_settings
from tests.contract.test_retention import MINUTE, send
from tests.contract.test_store import make_event
from tests.integration.servers import BITBYBIT, free_port
from tests.integration.test_crash import shared_database

SECRET_KEY = "bitbybit-retention-test-secret-key"
WITHIN = 30.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.05)


async def event_ids(store: Store, tenant: Tenant) -> set[str]:
    async with store.read() as tx:
        items, _ = await tx.event_history(tenant, limit=1000)
    return {event.id for event in items}


# -- in this process -----------------------------------------------------------------------------


async def test_the_background_task_runs_by_itself_and_the_metrics_move(
    platform: Platform, clock: FakeClock
) -> None:
    company = await access.create_company(platform, "Acme", "ID")
    tenant = Tenant(company.id, "live")
    async with platform.store.write() as tx:
        for n in range(3):
            await tx.insert_event(tenant, make_event("customer.created", clock.now + n))
    clock.advance(31 * DAY_MS)
    async with platform.store.write() as tx:
        await tx.insert_event(tenant, recent := make_event("customer.created", clock.now))
    runs = sample("bitbybit_retention_runs_total", outcome="succeeded")
    removed = sample("bitbybit_retention_removed_total", table="events")

    async with retaining(with_settings(platform, retention_every=0.05)):

        async def ran_twice() -> bool:
            return sample("bitbybit_retention_runs_total", outcome="succeeded") >= runs + 2

        await until(ran_twice)

    assert await event_ids(platform.store, tenant) == {recent.id}
    assert sample("bitbybit_retention_removed_total", table="events") == removed + 3
    assert sample("bitbybit_retention_last_success_timestamp_seconds") == clock.now / 1000


async def test_zero_days_starts_no_task(platform: Platform, clock: FakeClock) -> None:
    company = await access.create_company(platform, "Acme", "ID")
    tenant = Tenant(company.id, "live")
    async with platform.store.write() as tx:
        await tx.insert_event(tenant, old := make_event("customer.created", clock.now))
    clock.advance(3650 * DAY_MS)
    runs = sum(
        sample("bitbybit_retention_runs_total", outcome=outcome)
        for outcome in ("succeeded", "failed", "skipped")
    )
    keep = with_settings(platform, retention_days=0, retention_every=0.01)
    async with retaining(keep):
        await asyncio.sleep(0.3)
    assert await event_ids(platform.store, tenant) == {old.id}
    assert runs == sum(
        sample("bitbybit_retention_runs_total", outcome=outcome)
        for outcome in ("succeeded", "failed", "skipped")
    )


async def test_leaving_ends_the_task_even_when_a_run_swallows_its_cancellation(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Python 3.11 an ``asyncio.wait_for`` that ends as it is cancelled can return instead of
    raising (asyncpg closes connections with one): the run then ends normally, and a loop that
    only waited to be cancelled would go on for ever while ``retaining`` waited for it."""
    running = asyncio.Event()

    async def swallowing(platform: Platform) -> Run:
        running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return Run("off", 0)

    monkeypatch.setattr(retention, "run_once", swallowing)

    async def leave() -> None:
        async with retaining(with_settings(platform, retention_every=0.01)):
            await running.wait()

    await asyncio.wait_for(leave(), WITHIN)  # a guard against hanging, not a measure


# -- in serve and worker processes ---------------------------------------------------------------


async def make_history(store: Store) -> tuple[Tenant, list[Event], Event, Event, str]:
    """A company (live) with, 40 days old, five events whose deliveries succeeded and one whose
    delivery was never attempted (still queued: a worker's attempts at it fail, as nothing
    listens at the endpoint, and it stays pending), and one event from now. Returns
    the tenant, the old settled events, the one in flight, the recent one and the pending
    delivery's id."""
    settings = Settings(secret_key=SECRET_KEY, allow_private_targets=True, allow_http_targets=True)
    platform = Platform(store, settings)
    now = platform.now()
    old = now - 40 * DAY_MS
    company = await access.create_company(platform, "Acme", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    )
    settled = [make_event("customer.created", old + n) for n in range(5)]
    in_flight = make_event("order.created", old + 10)
    recent = make_event("customer.updated", now)

    async def queue(event: Event, to: list[Endpoint]) -> None:
        async with store.write() as tx:
            await tx.insert_event(tenant, event)
            await tx.queue_deliveries(tenant, event, to, event.created_at)

    for event in settled:
        await queue(event, [endpoint])
    await send(store, [endpoint], old + MINUTE, {endpoint.id: "succeeded"})
    await queue(in_flight, [endpoint])
    await queue(recent, [])
    async with store.read() as tx:
        pending = await tx.list_deliveries(tenant, event_id=in_flight.id)
    return tenant, settled, in_flight, recent, pending.items[0].id


@contextmanager
def process(command: str, database_url: str, log: Path) -> Iterator[str]:
    """``bitbybit serve`` or ``bitbybit worker`` with retention every 0.2 s and no delivery
    work; yields where its ``/metrics`` answers."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env.update(
        BITBYBIT_DATABASE_URL=database_url,
        BITBYBIT_SECRET_KEY=SECRET_KEY,
        BITBYBIT_RETENTION_EVERY="0.2",
        BITBYBIT_METRICS_ADDRESS=f"127.0.0.1:{port}",
        BITBYBIT_ALLOW_PRIVATE_TARGETS="1",
        BITBYBIT_ALLOW_HTTP_TARGETS="1",
    )
    args = ["serve", "--port", str(free_port()), "--concurrency", "0"]
    if command == "worker":  # a worker always delivers (here: tries, and fails)
        args = ["worker", "--concurrency", "1"]
    with log.open("wb") as out:
        running = subprocess.Popen(
            [*BITBYBIT, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        running.terminate()
        try:
            running.wait(timeout=15)
        except subprocess.TimeoutExpired:
            running.kill()
            running.wait()


def scraped(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    shown = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(f"{name}{{{shown}}}" if shown else name) + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_a_running_process_removes_old_settled_history(
    dialect: str, command: str, tmp_path: Path
) -> None:
    async with shared_database(dialect, tmp_path) as (url, store):
        tenant, settled, in_flight, recent, pending = await make_history(store)
        log = tmp_path / f"{command}.log"
        with process(command, url, log) as metrics:
            shown = ""

            async def removed_them() -> bool:
                nonlocal shown
                try:
                    async with httpx.AsyncClient() as http:
                        shown = (await http.get(metrics, timeout=2)).text
                except httpx.TransportError:
                    return False
                # a run counts its removals batch by batch and itself once it has ended
                return scraped(shown, "bitbybit_retention_runs_total", outcome="succeeded") >= 1

            try:
                await until(removed_them)
            except AssertionError:
                raise AssertionError(f"{command} did not remove them: {log.read_text()}") from None

        assert scraped(shown, "bitbybit_retention_runs_total", outcome="failed") == 0
        assert scraped(shown, "bitbybit_retention_removed_total", table="events") == 5
        assert scraped(shown, "bitbybit_retention_removed_total", table="deliveries") == 5
        assert scraped(shown, "bitbybit_retention_removed_total", table="delivery_attempts") == 5
        assert scraped(shown, "bitbybit_retention_last_success_timestamp_seconds") > 0
        assert await event_ids(store, tenant) == {in_flight.id, recent.id}
        async with store.read() as tx:
            delivery = await tx.get_delivery(tenant, pending)
            for event in settled:
                assert await tx.get_event(tenant, event.id) is None
        assert delivery is not None
        assert delivery.event_id == in_flight.id
        assert "retention_run" in log.read_text()  # the log line of each run, with its counts
