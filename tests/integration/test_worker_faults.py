"""The delivery worker under faults of its own: endpoints deleted mid-attempt, a database that
refuses a result, SIGTERM with attempts in flight, a second signal (issue 9, items 1 and 2)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bitbybit.config import Settings
from bitbybit.delivery import metrics
from bitbybit.delivery.policy import SendResult, decide
from bitbybit.errors import StorageError
from bitbybit.models import Job, Recorded, SuspensionRule, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store import Store, Tx
from tests.conftest import DIALECTS, Account, with_settings
from tests.integration.receivers import Receiver, receiver
from tests.integration.servers import BITBYBIT, free_port
from tests.integration.test_crash import fetch, shared_database, worker_env
from tests.integration.test_delivery import (
    create_customer,
    deliveries,
    endpoint_for,
    running,
    until,
)

STOP_WITHIN = 30.0


def dropped(reason: str) -> float:
    value: float = metrics.RESULTS_DROPPED.labels(reason)._value.get()
    return value


# -- results are never held hostage -------------------------------------------------------------


async def test_endpoint_deleted_mid_attempt_jams_nothing(fast: Platform, account: Account) -> None:
    """The issue's repro: an endpoint that answers after 2 s is deleted 0.5 s into an attempt;
    its result cannot be recorded (the delivery went with the endpoint), yet every later result
    of every other endpoint is."""
    answered = asyncio.Event()

    async def slow(request: web.Request, hook: Receiver) -> web.StreamResponse:
        await asyncio.sleep(2.0)
        answered.set()
        return web.Response(status=200, text="late")

    fast = with_settings(fast, delivery_timeout=5.0)
    tenant = Tenant(account.company.id, "live")
    before = dropped("vanished")
    async with receiver(slow) as slow_hook, receiver() as healthy_hook:
        slow_id, _ = await endpoint_for(fast, account, slow_hook.url)
        healthy_id, _ = await endpoint_for(fast, account, healthy_hook.url)
        async with running(fast, concurrency=16):
            await create_customer(fast, account, email="first@example.com")
            await slow_hook.wait_for(1)
            await asyncio.sleep(0.5)
            await webhooks.delete_endpoint(fast, tenant, slow_id)
            await asyncio.wait_for(answered.wait(), 10)
            await asyncio.sleep(0.1)  # its result reaches the recorder (which flushes every 10 ms)
            for n in range(5):
                await create_customer(fast, account, email=f"later{n}@example.com")

            async def all_recorded() -> bool:
                found = await deliveries(fast, account, healthy_id)
                return len(found) == 6 and all(d.status == "succeeded" for d in found)

            await until(all_recorded)
        assert dropped("vanished") == before + 1  # logged and counted, not retried
        assert len(healthy_hook.received) == 6
        assert len(slow_hook.received) == 1  # sent once, before it was deleted; never again


class RefusingStore:
    """The real store, except that recording any batch holding a poisoned delivery fails as a
    constraint violation would: the worker must record the others and drop that one alone."""

    def __init__(self, store: Store, poisoned: set[str]) -> None:
        self._store = store
        self.poisoned = poisoned
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, *, durable: bool = True) -> Any:
        outer = self

        @asynccontextmanager
        async def transaction() -> AsyncIterator[Tx]:
            async with outer._store.write(durable=durable) as tx:
                yield _RefusingTx(tx, outer)

        return transaction()


class _RefusingTx:
    def __init__(self, tx: Tx, store: RefusingStore) -> None:
        self._tx = tx
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def record_attempts(
        self, owner: str, results: Any, now: int, rule: SuspensionRule
    ) -> Recorded:
        if any(result.delivery_id in self._store.poisoned for result in results):
            self._store.refused += 1
            raise StorageError("PostgreSQL failed: violates foreign key constraint")
        return await self._tx.record_attempts(owner, results, now, rule)


async def test_a_refused_result_is_dropped_alone(fast: Platform, account: Account) -> None:
    async with receiver() as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        tenant = Tenant(account.company.id, "live")

        async def make(tx: Tx) -> None:
            for n in range(20):
                data = CustomerCreate(email=f"c{n}@example.com")
                await customers.insert(fast, tx, tenant, data)

        await fast.run(make)
        found = await deliveries(fast, account, endpoint_id)
        poisoned = {found[0].id}
        refusing = RefusingStore(fast.store, poisoned)
        platform = Platform(refusing, fast.settings)  # type: ignore[arg-type]  # a test double
        before = dropped("refused")
        async with running(platform, concurrency=16):

            async def others_recorded() -> bool:
                now = await deliveries(fast, account, endpoint_id)
                return sum(d.status == "succeeded" for d in now) == 19

            await until(others_recorded)
            await hook.wait_for(20)
        assert refusing.refused >= 2  # the batch, then the poisoned result alone
        assert dropped("refused") > before
        (left,) = [d for d in await deliveries(fast, account, endpoint_id) if d.id in poisoned]
        assert left.status == "pending"  # its lease runs out and it is sent again, not lost


# -- the platform's own failures never suspend an endpoint --------------------------------------


def test_the_platforms_own_failures_do_not_count_toward_suspension() -> None:
    import random

    job = Job("dlv_1", "webhook", "we_1", 0, b"{}", "evt_1", "customer.created", "http://x", "s")
    ours = SendResult(
        started_at=0, latency_ms=0, error="payload too large", permanent=True, ours=True
    )
    result = decide(job, ours, (1.0,), 0, random.Random(1))
    assert (result.status, result.ours) == ("failed", True)
    theirs = decide(job, SendResult(0, 5, status_code=500), (), 0, random.Random(1))
    assert (theirs.status, theirs.ours) == ("failed", False)


async def test_undecryptable_secret_is_retried_and_never_suspends(
    fast: Platform, account: Account
) -> None:
    async with receiver() as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        tenant = Tenant(account.company.id, "live")
        wrong = Platform(fast.store, fast.settings.replace(secret_key="other"))

        async def make(tx: Tx) -> None:
            for n in range(4):  # more exhausted events than it takes to suspend
                await customers.insert(wrong, tx, tenant, CustomerCreate(email=f"s{n}@example.com"))

        await wrong.run(make)
        async with running(wrong, concurrency=8):

            async def exhausted() -> bool:
                found = await deliveries(fast, account, endpoint_id)
                return len(found) == 4 and all(d.status == "failed" for d in found)

            await until(exhausted)
        found = await deliveries(fast, account, endpoint_id)
        assert all("cannot be decrypted" in (d.last_error or "") for d in found)
        assert all(d.attempts == len(fast.settings.retry_schedule) + 1 for d in found)
        endpoint = await webhooks.get_endpoint(fast, tenant, endpoint_id)
        assert endpoint.status == "active"
        assert hook.received == []


# -- graceful stop with real processes ----------------------------------------------------------


def _settings(url: str) -> Settings:
    env = worker_env(url)
    return Settings(
        database_url=url,
        secret_key=env["BITBYBIT_SECRET_KEY"],
        allow_private_targets=True,
        allow_http_targets=True,
    )


async def _company(platform: Platform, url: str) -> tuple[str, str]:
    company = await access.create_company(platform, "Stop Test", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(platform, tenant, EndpointCreate(url=url))
    return company.id, endpoint.id


async def _insert_customers(platform: Platform, company_id: str, count: int) -> None:
    tenant = Tenant(company_id, "live")

    async def make(tx: Tx) -> None:
        for n in range(count):
            data = CustomerCreate(email=f"stop{n}@example.com")
            await customers.insert(platform, tx, tenant, data)

    await platform.run(make)


async def _exit_code(process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + STOP_WITHIN
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the process did not stop")
        await asyncio.sleep(0.05)
    return process.returncode


async def _wait_log(log: Path, marker: bytes, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STOP_WITHIN
    while marker not in log.read_bytes():  # noqa: ASYNC240  # a small local file
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text()  # noqa: ASYNC240  # a small local file
            raise AssertionError(f"no {marker!r} in the log: {text}")
        await asyncio.sleep(0.05)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([*BITBYBIT, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _terminated(
    process: subprocess.Popen[bytes], log: Path, then: Callable[[], Awaitable[None]]
) -> int:
    """Once ``process`` has started its worker and ``then`` has run, SIGTERM it; its exit code."""
    try:
        await _wait_log(log, b'"worker_started"', process)
        await then()
        process.send_signal(signal.SIGTERM)
        return await _exit_code(process)
    finally:
        if process.poll() is None:
            process.kill()


SLOW_ANSWER = 1.5


async def _slow(request: web.Request, hook: Receiver) -> web.StreamResponse:
    await asyncio.sleep(SLOW_ANSWER)
    return web.Response(status=200, text="ok")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_sigterm_records_every_attempt_in_flight(
    dialect: str, command: str, tmp_path: Path
) -> None:
    """SIGTERM while attempts are in flight: they finish, every result is recorded (nothing
    stays pending to be sent again), no lease is left behind, and the process exits 0."""
    count = 6
    async with shared_database(dialect, tmp_path) as (url, store), receiver(_slow) as hook:
        platform = Platform(store, _settings(url))
        company_id, _ = await _company(platform, hook.url)
        env = worker_env(url)
        env["BITBYBIT_DELIVERY_TIMEOUT"] = "10"
        args = [command, "--concurrency", "16"]
        if command == "serve":
            args += ["--port", str(free_port())]
        log = tmp_path / f"{command}.log"

        async def in_flight() -> None:
            await _insert_customers(platform, company_id, count)
            await hook.wait_for(count)  # all in flight: the receiver answers 1.5 s later

        code = await _terminated(_spawn(args, env, log), log, in_flight)
        rows = await fetch(store, "SELECT status, attempts FROM deliveries")
        attempts = await fetch(store, "SELECT status_code FROM delivery_attempts")
        leased = await fetch(store, "SELECT delivery_id FROM delivery_queue")
    assert code == 0, log.read_text()
    assert [(row["status"], row["attempts"]) for row in rows] == [("succeeded", 1)] * count
    assert [row["status_code"] for row in attempts] == [200] * count
    assert leased == []
    assert len(hook.received) == count


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sigterm_gives_back_what_was_not_started(dialect: str, tmp_path: Path) -> None:
    """Deliveries leased ahead and not started are released at the stop (claimable at once,
    not at lease expiry); in-flight ones are recorded."""
    answered = 0

    async def fast_then_slow(request: web.Request, hook: Receiver) -> web.StreamResponse:
        nonlocal answered
        answered += 1
        if answered > 40:  # by now the endpoint is known to be fast: leased ahead
            await asyncio.sleep(SLOW_ANSWER)
        return web.Response(status=200, text="ok")

    async with shared_database(dialect, tmp_path) as (url, store), receiver(fast_then_slow) as hook:
        platform = Platform(store, _settings(url))
        company_id, _ = await _company(platform, hook.url)
        env = worker_env(url)
        env["BITBYBIT_DELIVERY_TIMEOUT"] = "10"
        env["BITBYBIT_LEASE_SECONDS"] = "600"  # released rows must not wait for this
        log = tmp_path / "worker.log"

        async def some_in_flight() -> None:
            await _insert_customers(platform, company_id, 200)
            await hook.wait_for(44)  # the 40 fast ones, then slow ones in flight

        code = await _terminated(
            _spawn(["worker", "--concurrency", "8"], env, log), log, some_in_flight
        )
        queue = await fetch(store, "SELECT lease_owner FROM delivery_queue")
        recorded = await fetch(store, "SELECT COUNT(*) AS n FROM delivery_attempts")
        done = await fetch(store, "SELECT COUNT(*) AS n FROM deliveries WHERE status = 'succeeded'")
    assert code == 0, log.read_text()
    assert queue, "nothing was left to give back"
    assert all(row["lease_owner"] is None for row in queue)  # released, not leased until expiry
    assert recorded[0]["n"] == len(hook.received) == done[0]["n"]


@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_a_second_signal_exits_at_once(command: str, tmp_path: Path) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request, hook: Receiver) -> web.StreamResponse:
        await release.wait()  # until the test is over
        return web.Response(status=200)

    async with shared_database("sqlite", tmp_path) as (url, store), receiver(hang) as hook:
        platform = Platform(store, _settings(url))
        company_id, _ = await _company(platform, hook.url)
        env = worker_env(url)
        env["BITBYBIT_DELIVERY_TIMEOUT"] = "120"
        env["BITBYBIT_LEASE_SECONDS"] = "180"
        args = [command]
        if command == "serve":
            args += ["--port", str(free_port())]
        log = tmp_path / f"{command}.log"
        process = _spawn(args, env, log)
        try:
            await _wait_log(log, b'"worker_started"', process)
            await _insert_customers(platform, company_id, 1)
            await hook.wait_for(1)
            process.send_signal(signal.SIGTERM)
            await _wait_log(log, b'"stopping"', process)
            assert process.poll() is None  # still draining: the attempt hangs
            process.send_signal(signal.SIGTERM)
            code = await _exit_code(process)
        finally:
            release.set()
            if process.poll() is None:
                process.kill()
        queue = await fetch(store, "SELECT lease_owner FROM delivery_queue")
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert b'"stopped_at_once"' in log.read_bytes()
    assert [row["lease_owner"] is not None for row in queue] == [True]  # its lease covers it


async def test_nothing_claimed_ahead_is_sent_after_its_endpoint_is_deleted(
    fast: Platform, account: Account
) -> None:
    """A fast endpoint gets deliveries leased ahead and queued in memory; when it is deleted
    (here, in the worker's own process), none of those is sent afterwards."""
    fast = with_settings(fast, delivery_timeout=10.0)
    release = asyncio.Event()
    answered = 0

    async def fast_then_held(request: web.Request, hook: Receiver) -> web.StreamResponse:
        nonlocal answered
        answered += 1
        if answered > 40:  # by now it is fast, with deliveries leased ahead
            await release.wait()
        return web.Response(status=200, text="ok")

    tenant = Tenant(account.company.id, "live")
    async with receiver(fast_then_held) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)

        async def make(tx: Tx) -> None:
            for n in range(200):
                await customers.insert(fast, tx, tenant, CustomerCreate(email=f"q{n}@example.com"))

        async with running(fast, concurrency=8) as worker:
            await fast.run(make)
            await hook.wait_for(44)
            await asyncio.sleep(0.1)
            assert worker.queued.get(endpoint_id), "nothing was queued in memory"
            await webhooks.delete_endpoint(fast, tenant, endpoint_id)
            deleted_at = time.monotonic()
            release.set()
            await asyncio.sleep(0.5)
    late = [got for got in hook.received if got.at > deleted_at]
    assert late == []
