"""Abuse and operations: what a refused delivery tells the tenant, failed authentications,
``/metrics`` on its own address, and the pruning of expired idempotency keys.

- A webhook target whose name resolves to an internal address is refused; the tenant reads that
  it "resolves to a non-public address", never which one (the operator's log has it).
- Failed authentications are throttled per client address in memory, before the database, and an
  unknown key never takes SQLite's write lock.
- ``BITBYBIT_METRICS_ADDRESS`` moves ``/metrics`` off the API port, for ``serve`` and ``worker``
  (real processes).
- Expired idempotency keys are deleted in bounded batches (both databases, a fake clock), never a
  request's in progress, and ``serve`` and ``worker`` do it on their own (real processes).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from fastapi import FastAPI
from prometheus_client import REGISTRY

from bitbybit.api.app import create_app
from bitbybit.clock import system_clock
from bitbybit.config import Settings
from bitbybit.delivery import ssrf
from bitbybit.delivery.worker import Worker
from bitbybit.errors import ConfigurationError
from bitbybit.models import StoredResponse, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import access, idempotency
from bitbybit.store import Store
from bitbybit.store.sql import SqlTx
from bitbybit.store.sqlite import SQLiteStore
from tests.conftest import CUSTOMERS, POSTGRES_URL, Account, FakeClock, client_for, with_settings
from tests.integration.servers import BITBYBIT, free_port, serve
from tests.integration.test_api_access import error_of
from tests.integration.test_crash import SECRET_KEY, shared_database, worker_env

WEBHOOKS = "/customer/open/v1/webhooks"
DELIVERIES = "/customer/open/v1/deliveries"
INTERNAL = "10.20.30.40"
HOUR_MS = 60 * 60 * 1000
WITHIN = 30.0
"""Seconds a test waits for something that only a hang would stop (never a performance limit)."""


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WITHIN:g} s")
        await asyncio.sleep(0.02)


async def fetch(store: Store, sql: str, *args: Any) -> list[Any]:
    async with store.read() as tx:
        return await cast(SqlTx, tx).db.fetch(sql, *args)


# -- what a refused delivery tells the tenant ---------------------------------------------------


class InternalDns(AbstractResolver):
    """Stands in for the system resolver: every name resolves to an internal address."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=INTERNAL,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


class LogRecorder:
    """Stands in for ``ssrf.log``: keeps each warning's event and fields."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append({"event": event, **fields})


@pytest.fixture
def internal_dns(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    """Names resolve to ``INTERNAL``; returns the recorder of the SSRF guard's log."""
    monkeypatch.setattr(ssrf, "ThreadedResolver", InternalDns)
    recorder = LogRecorder()
    monkeypatch.setattr(ssrf, "log", recorder, raising=False)
    return recorder


@pytest.mark.parametrize("dialect", ["sqlite"])
async def test_a_refused_target_does_not_tell_the_tenant_what_it_resolves_to(
    platform: Platform, account: Account, internal_dns: LogRecorder
) -> None:
    """Endpoint creation (no DNS), a test send and a real delivery: the tenant reads "resolves
    to a non-public address" everywhere, the address nowhere; the operator's log has it."""
    live = with_settings(platform, clock=system_clock, retry_schedule=(3600.0,))
    told = "webhook URL refused: billing.corp.example resolves to a non-public address"
    async with client_for(live) as http:
        created = await http.post(
            WEBHOOKS, json={"url": "https://billing.corp.example/hook"}, headers=account.headers
        )
        assert created.status_code == 201, created.text  # creation does not resolve the name
        endpoint_id = created.json()["data"]["id"]

        tested = await http.post(f"{WEBHOOKS}/{endpoint_id}/test", headers=account.headers)
        assert tested.status_code == 200, tested.text
        assert tested.json()["data"]["error"] == f"connection failed: {told}"
        assert INTERNAL not in tested.text

        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(live, concurrency=4).run(stop))
        try:
            made = await http.post(
                CUSTOMERS, json={"email": "zoe@example.com"}, headers=account.headers
            )
            assert made.status_code == 201, made.text

            async def attempted() -> list[dict[str, Any]]:
                listed = await http.get(
                    f"{WEBHOOKS}/{endpoint_id}/deliveries", headers=account.headers
                )
                found: list[dict[str, Any]] = listed.json()["data"]
                return [d for d in found if d["attemptCount"] >= 1]

            await until(lambda: _truthy(attempted()), "the first attempt")
        finally:
            stop.set()
            await asyncio.wait_for(worker, WITHIN)
        [delivery] = await attempted()
        detail = await http.get(f"{DELIVERIES}/{delivery['id']}", headers=account.headers)
    assert detail.status_code == 200, detail.text
    data = detail.json()["data"]
    assert data["lastError"] == f"connection failed: {told}"
    assert [attempt["error"] for attempt in data["attempts"]] == [f"connection failed: {told}"]
    assert INTERNAL not in detail.text
    assert internal_dns.warnings
    for logged in internal_dns.warnings:  # one per attempt: the operator sees what and why
        assert logged == {
            "event": "target_refused",
            "host": "billing.corp.example",
            "address": INTERNAL,
            "verdict": "is a private address",
        }


async def _truthy(found: Awaitable[list[dict[str, Any]]]) -> bool:
    return bool(await found)


@pytest.mark.parametrize("dialect", ["sqlite"])
async def test_a_refused_url_at_creation_names_only_what_the_tenant_sent(
    client: httpx.AsyncClient, account: Account, internal_dns: LogRecorder
) -> None:
    """The 400 at creation comes from the URL alone (no DNS), so it reveals no resolution."""
    refused = await client.post(
        WEBHOOKS, json={"url": "https://10.1.2.3/hook"}, headers=account.headers
    )
    error = error_of(refused, 400, "VALIDATION_ERROR")
    assert error["details"] == [{"field": "url", "message": "10.1.2.3 is a private address"}]
    assert INTERNAL not in refused.text
    assert internal_dns.warnings == []  # nothing was resolved


# -- failed authentications ---------------------------------------------------------------------

THROTTLED = "bitbybit_auth_failures_total"
LIMIT = 20
"""The default of ``BITBYBIT_AUTH_FAILURE_LIMIT``."""


@contextmanager
def counting_lookups(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The key hashes the store was asked to count, in order."""
    asked: list[str] = []
    original = platform.store.count_key_request

    async def counted(key_hash: str, window_start: int) -> Any:
        asked.append(key_hash)
        return await original(key_hash, window_start)

    monkeypatch.setattr(platform.store, "count_key_request", counted)
    yield asked


def client_at(app: FastAPI, client_ip: str) -> httpx.AsyncClient:
    """A client of ``app`` (one application: one limiter) from ``client_ip``."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def guess(n: int) -> dict[str, str]:
    return {"x-api-key": f"bbb_live_{n:040d}"}


async def exhaust(http: httpx.AsyncClient, failures: int = LIMIT) -> None:
    for n in range(failures):
        error_of(await http.get(CUSTOMERS, headers=guess(n)), 401, "INVALID_API_KEY")


async def test_failed_authentications_are_throttled_per_address_before_the_database(
    platform: Platform, account: Account, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(platform=platform)
    throttled = REGISTRY.get_sample_value(THROTTLED, {"outcome": "throttled"}) or 0.0
    with counting_lookups(platform, monkeypatch) as asked:
        async with (
            client_at(app, "203.0.113.7") as attacker,
            client_at(app, "198.51.100.9") as neighbour,
        ):
            await exhaust(attacker)
            assert len(asked) == LIMIT

            over = await attacker.get(CUSTOMERS, headers=guess(999))
            error = error_of(over, 429, "RATE_LIMIT_EXCEEDED")
            assert "failed authentications" in error["message"]
            assert over.headers["Retry-After"] == str(60 // LIMIT)  # one try back per 60/LIMIT s
            assert "RateLimit-Limit" not in over.headers  # no key to count against
            error_of(await attacker.get(CUSTOMERS), 429, "RATE_LIMIT_EXCEEDED")  # no key either
            bad_json = await attacker.post(
                CUSTOMERS, content=b"{", headers={**guess(1), "content-type": "application/json"}
            )
            error_of(bad_json, 429, "RATE_LIMIT_EXCEEDED")
            assert len(asked) == LIMIT  # none of them reached the database
            # the operator sees them in /metrics
            now_throttled = REGISTRY.get_sample_value(THROTTLED, {"outcome": "throttled"})
            assert now_throttled == throttled + 3

            # another address is not affected, with a bad key or a good one
            error_of(await neighbour.get(CUSTOMERS, headers=guess(1)), 401, "INVALID_API_KEY")
            assert (await neighbour.get(CUSTOMERS, headers=account.headers)).status_code == 200

            # the bucket refills: one more try after 60/LIMIT seconds, then blocked again
            clock.advance(60_000 // LIMIT)
            error_of(await attacker.get(CUSTOMERS, headers=guess(1)), 401, "INVALID_API_KEY")
            error_of(await attacker.get(CUSTOMERS, headers=guess(2)), 429, "RATE_LIMIT_EXCEEDED")
            clock.advance(60_000)  # a quiet minute: the whole allowance is back
            await exhaust(attacker)


async def test_missing_revoked_and_expired_keys_count_as_failures(
    platform: Platform, account: Account, clock: FakeClock
) -> None:
    limited = with_settings(platform, auth_failure_limit=3)
    revoked, revoked_raw = await access.create_api_key(platform, account.company.id)
    await access.revoke_api_key(platform, revoked.id)
    _, successor_raw = await access.rotate_api_key(platform, account.key.id)
    clock.advance(access.ROTATION_GRACE_MS)  # account.raw has now expired
    revoked_key = {"x-api-key": revoked_raw}
    async with client_for(limited, "203.0.113.7") as http:
        error_of(await http.get(CUSTOMERS), 401, "MISSING_API_KEY")
        error_of(await http.get(CUSTOMERS, headers=revoked_key), 401, "INVALID_API_KEY")
        error_of(await http.get(CUSTOMERS, headers=account.headers), 401, "INVALID_API_KEY")
        error_of(await http.get(CUSTOMERS, headers=guess(1)), 429, "RATE_LIMIT_EXCEEDED")
    async with client_for(limited, "203.0.113.8") as elsewhere:
        successor = await elsewhere.get(CUSTOMERS, headers={"x-api-key": successor_raw})
        assert successor.status_code == 200


async def test_a_key_in_use_keeps_working_from_a_blocked_address(
    platform: Platform, account: Account, other_account: Account
) -> None:
    """Behind a shared address (NAT, proxy) an attacker's guesses do not lock out the keys in
    use there; a key this process has not seen yet waits out the block (docs/api.md)."""
    app = create_app(platform=platform)
    async with client_at(app, "203.0.113.7") as shared:
        assert (await shared.get(CUSTOMERS, headers=account.headers)).status_code == 200
        await exhaust(shared)
        error_of(await shared.get(CUSTOMERS, headers=guess(999)), 429, "RATE_LIMIT_EXCEEDED")

        still = await shared.get(CUSTOMERS, headers=account.headers)
        assert still.status_code == 200, still.text
        assert still.headers["RateLimit-Limit"] == str(platform.settings.rate_limit)
        error_of(
            await shared.get(CUSTOMERS, headers=other_account.headers), 429, "RATE_LIMIT_EXCEEDED"
        )

        # revoked, the key is checked once more (401) and then no longer trusted (429)
        await access.revoke_api_key(platform, account.key.id)
        error_of(await shared.get(CUSTOMERS, headers=account.headers), 401, "INVALID_API_KEY")
        error_of(await shared.get(CUSTOMERS, headers=account.headers), 429, "RATE_LIMIT_EXCEEDED")


async def test_an_ipv6_client_is_counted_by_its_64(platform: Platform) -> None:
    app = create_app(platform=platform)
    async with (
        client_at(app, "2001:db8:1:2::10") as first,
        client_at(app, "2001:db8:1:2:ffff::20") as same_64,
        client_at(app, "2001:db8:1:3::10") as next_64,
    ):
        await exhaust(first)
        error_of(await same_64.get(CUSTOMERS, headers=guess(1)), 429, "RATE_LIMIT_EXCEEDED")
        error_of(await next_64.get(CUSTOMERS, headers=guess(1)), 401, "INVALID_API_KEY")


async def test_the_limit_is_configurable(platform: Platform) -> None:
    assert Settings.from_env({}).auth_failure_limit == LIMIT
    assert Settings.from_env({"BITBYBIT_AUTH_FAILURE_LIMIT": "3"}).auth_failure_limit == 3
    with pytest.raises(ConfigurationError, match="BITBYBIT_AUTH_FAILURE_LIMIT"):
        Settings.from_env({"BITBYBIT_AUTH_FAILURE_LIMIT": "0"})
    async with client_for(with_settings(platform, auth_failure_limit=3)) as http:
        await exhaust(http, 3)
        over = await http.get(CUSTOMERS, headers=guess(3))
        error_of(over, 429, "RATE_LIMIT_EXCEEDED")
        assert over.headers["Retry-After"] == "20"


@pytest.mark.parametrize("dialect", ["sqlite"])
async def test_an_unknown_key_does_not_wait_for_the_sqlite_write_lock(store: Store) -> None:
    """Another process holds the write lock: an unknown key is still answered at once."""
    assert isinstance(store, SQLiteStore)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert await store.count_key_request("no-such-key", 0) is None
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_an_unknown_key_writes_nothing(store: Store) -> None:
    assert await store.count_key_request("no-such-key", 0) is None
    assert await fetch(store, "SELECT key_id FROM rate_limits") == []


# -- /metrics on its own address ----------------------------------------------------------------


async def test_metrics_leave_the_api_port_when_given_their_own_address(
    platform: Platform,
) -> None:
    async with client_for(platform) as http:  # unset: where they always were
        scraped = await http.get("/metrics")
        assert scraped.status_code == 200
        assert "bitbybit_delivery_attempts_total" in scraped.text
    moved = with_settings(platform, metrics_address=("127.0.0.1", free_port()))
    async with client_for(moved) as http:
        error_of(await http.get("/metrics"), 404, "NOT_FOUND")


def test_the_metrics_address_is_host_and_port() -> None:
    def parsed(raw: str) -> tuple[str, int] | None:
        return Settings.from_env({"BITBYBIT_METRICS_ADDRESS": raw}).metrics_address

    assert parsed("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parsed("[::1]:9464") == ("::1", 9464)
    assert parsed("0.0.0.0:9464") == ("0.0.0.0", 9464)  # noqa: S104  # a value parsed, not a bind
    assert parsed("") is None
    for bad in ("9464", ":9464", "localhost:", "localhost:http", "localhost:0", "h:70000"):
        with pytest.raises(ConfigurationError, match="BITBYBIT_METRICS_ADDRESS"):
            parsed(bad)


async def test_the_metrics_server_answers_and_stops() -> None:
    from bitbybit.delivery.metrics_server import serving_metrics

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with serving_metrics(("127.0.0.1", port)), httpx.AsyncClient() as http:
        scraped = await http.get(f"{url}/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert "# TYPE bitbybit_delivery_attempts_total counter" in scraped.text
        assert (await http.get(f"{url}/")).status_code == 404
        assert (await http.head(f"{url}/metrics")).status_code == 200
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/metrics", timeout=5)


async def test_a_metrics_address_in_use_refuses_to_start() -> None:
    from bitbybit.delivery.metrics_server import serving_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"BITBYBIT_METRICS_ADDRESS 127.0.0.1:{port}"):
            async with serving_metrics(("127.0.0.1", port)):
                pass


def test_serve_serves_metrics_on_their_own_address(tmp_path: Path) -> None:
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    with serve(
        f"sqlite:///{tmp_path / 'serve.db'}",
        tmp_path / "serve.log",
        BITBYBIT_METRICS_ADDRESS=f"127.0.0.1:{port}",
        BITBYBIT_SECRET_KEY=SECRET_KEY,
    ) as server:
        scraped = httpx.get(metrics, timeout=5)
        assert scraped.status_code == 200
        assert "# TYPE bitbybit_delivery_attempts_total counter" in scraped.text
        error_of(httpx.get(f"{server.base_url}/metrics", timeout=5), 404, "NOT_FOUND")
    with pytest.raises(httpx.ConnectError):  # gone with the process
        httpx.get(metrics, timeout=5)


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``bitbybit worker`` with ``env``; killed on exit if it is still running."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*BITBYBIT, "worker", "--concurrency", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WITHIN)


async def test_worker_serves_metrics_on_their_own_address(tmp_path: Path) -> None:
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    async with shared_database("sqlite", tmp_path) as (url, _):
        env = {**worker_env(url), "BITBYBIT_METRICS_ADDRESS": f"127.0.0.1:{port}"}
        log = tmp_path / "worker.log"
        with worker_process(env, log) as process:

            async def scraped() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"worker exited: {log.read_text()}")
                try:
                    async with httpx.AsyncClient() as http:
                        return (await http.get(metrics, timeout=5)).status_code == 200
                except httpx.TransportError:
                    return False

            await until(scraped, "metrics from the worker")
            async with httpx.AsyncClient() as http:
                text = (await http.get(metrics, timeout=5)).text
            assert "# TYPE bitbybit_delivery_attempts_total counter" in text
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=WITHIN) == 0, log.read_text()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):  # stopped with the process
                await http.get(metrics, timeout=5)


def test_worker_refuses_to_start_without_its_metrics_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **worker_env(f"sqlite:///{tmp_path / 'w.db'}"),
            "BITBYBIT_METRICS_ADDRESS": f"127.0.0.1:{port}",
        }
        done = subprocess.run(
            [*BITBYBIT, "worker"], env=env, capture_output=True, text=True, timeout=WITHIN
        )
    assert done.returncode == 1
    assert f"cannot serve metrics on BITBYBIT_METRICS_ADDRESS 127.0.0.1:{port}" in done.stderr


# -- pruning expired idempotency keys -----------------------------------------------------------

EXPIRED_LONG_AGO = idempotency.TTL_MS + HOUR_MS
"""Responses are pruned an hour after they expire (a margin for clocks that differ)."""


async def stored(platform: Platform, tenant: Tenant, key: str) -> StoredResponse | None:
    async with platform.store.read() as tx:
        return await tx.get_stored_response(tenant, key)


async def test_expired_keys_are_pruned_an_hour_after_they_expire(
    platform: Platform, account: Account, clock: FakeClock, client: httpx.AsyncClient
) -> None:
    tenant = Tenant(account.company.id, "live")

    async def post(key: str, email: str) -> httpx.Response:
        return await client.post(
            CUSTOMERS, json={"email": email}, headers={**account.headers, "Idempotency-Key": key}
        )

    start = clock.now
    assert (await post("old", "old@example.com")).status_code == 201
    clock.advance(2 * HOUR_MS)
    assert (await post("new", "new@example.com")).status_code == 201

    clock.now = start + idempotency.TTL_MS  # "old" has expired: it would no longer replay …
    assert await idempotency.prune_expired(platform) == 0  # … but is kept for the margin
    clock.now = start + EXPIRED_LONG_AGO
    assert await idempotency.prune_expired(platform) == 0
    clock.advance(1)
    assert await idempotency.prune_expired(platform) == 1
    assert await stored(platform, tenant, "old") is None
    assert await stored(platform, tenant, "new") is not None
    replayed = await post("new", "new@example.com")  # 23 hours old: still replays
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"


async def test_pruning_deletes_in_bounded_batches_oldest_first(
    platform: Platform, clock: FakeClock
) -> None:
    tenants = [Tenant("comp_a", "live"), Tenant("comp_b", "test")]
    cutoff = clock.now - EXPIRED_LONG_AGO
    async with platform.store.write() as tx:
        for n in range(1201):  # expired, oldest last
            response = StoredResponse(f"h{n}", 201, b"{}", cutoff - 1 - n)
            await tx.store_response(tenants[n % 2], f"k{n}", response)
        await tx.store_response(tenants[0], "fresh", StoredResponse("h", 201, b"{}", clock.now))
    async with platform.store.write() as tx:
        assert await tx.prune_stored_responses(cutoff, 500) == 500
    async with platform.store.read() as tx:  # the 500 oldest went
        assert await tx.get_stored_response(tenants[0], "k1200") is None
        assert await tx.get_stored_response(tenants[1], "k701") is None
        assert await tx.get_stored_response(tenants[0], "k700") is not None
    assert await idempotency.prune_expired(platform, batch=200) == 701
    rows = await fetch(platform.store, "SELECT key FROM idempotency_keys")
    assert [row["key"] for row in rows] == ["fresh"]


async def lock_waiter() -> bool:
    """True when a pruning DELETE waits for a row lock (PostgreSQL)."""
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM idempotency_keys%'"
        )
    finally:
        await connection.close()
    return bool(waiting)


async def test_a_request_in_progress_is_never_pruned(
    platform: Platform, account: Account, clock: FakeClock, dialect: str
) -> None:
    """A request reuses a key whose response expired long ago: while it runs, a pruning pass
    waits for it (it holds the write lock on SQLite, the old row on PostgreSQL), and then
    deletes nothing: the request's new response is not expired."""
    tenant = Tenant(account.company.id, "live")
    async with platform.store.write() as tx:
        old = StoredResponse("old", 201, b"old", clock.now - 3 * idempotency.TTL_MS)
        await tx.store_response(tenant, "k", old)
    running, finish = asyncio.Event(), asyncio.Event()

    async def operation(tx: object) -> str:
        running.set()
        await finish.wait()
        return "made"

    def render(made: str) -> tuple[int, bytes]:
        return 201, made.encode()

    request = asyncio.create_task(
        idempotency.run_once(platform, tenant, "k", "new", operation, render)
    )
    try:
        await asyncio.wait_for(running.wait(), WITHIN)
        pruning = asyncio.create_task(idempotency.prune_expired(platform))
        if dialect == "postgres":
            await until(lock_waiter, "the pruner waiting on the row")
        else:
            for _ in range(20):
                await asyncio.sleep(0)
        assert not pruning.done()
    finally:
        finish.set()  # whatever failed, let the request end before the store closes
        outcome = await asyncio.wait_for(request, WITHIN)
    assert await asyncio.wait_for(pruning, WITHIN) == 0
    assert (outcome.status_code, outcome.body, outcome.replayed) == (201, b"made", False)
    kept = await stored(platform, tenant, "k")
    assert kept is not None
    assert (kept.request_hash, kept.status_code, kept.body) == ("new", 201, b"made")
    again = await idempotency.run_once(platform, tenant, "k", "new", operation, render)
    assert again.replayed


@asynccontextmanager
async def expired_and_fresh(store: Store) -> AsyncIterator[None]:
    """An idempotency key that expired long ago and a fresh one, in ``store``."""
    tenant = Tenant("comp_x", "live")
    now = system_clock()
    async with store.write() as tx:
        await tx.store_response(
            tenant, "stale", StoredResponse("h", 201, b"{}", now - 2 * 86_400_000)
        )
        await tx.store_response(tenant, "fresh", StoredResponse("h", 201, b"{}", now))
    yield


async def keys_in(store: Store) -> set[str]:
    return {row["key"] for row in await fetch(store, "SELECT key FROM idempotency_keys")}


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_serve_and_worker_prune_on_their_own(
    dialect: str, command: str, tmp_path: Path
) -> None:
    async with shared_database(dialect, tmp_path) as (url, store), expired_and_fresh(store):
        assert await keys_in(store) == {"stale", "fresh"}

        async def pruned() -> bool:
            return await keys_in(store) == {"fresh"}

        if command == "worker":
            with worker_process(worker_env(url), tmp_path / "worker.log"):
                await until(pruned, "the worker pruning")
        else:
            env = {k: v for k, v in worker_env(url).items() if k.startswith("BITBYBIT_")}
            with serve(url, tmp_path / "serve.log", **env):
                await until(pruned, "serve pruning")
