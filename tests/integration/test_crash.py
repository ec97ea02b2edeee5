"""Crash test: delivery workers killed with SIGKILL lose nothing (SPEC §1, §5, §6).

Two real ``bitbybit worker`` processes share one database (a SQLite file, or a PostgreSQL schema)
and deliver 2,000 events to a loopback receiver in this process. While deliveries flow, a random
worker is killed with SIGKILL ten times and restarted each time. Afterwards every event has
arrived at least once, always with the same id and body and a valid signature, every delivery is
recorded as succeeded by exactly one attempt, and every duplicate arrival is accounted for by a
delivery the killed worker held (leased, unrecorded) at the moment it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from bitbybit.config import Settings
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sqlite import SQLiteStore
from bitbybit.webhooks import verify
from bitbybit.webhooks.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import DIALECTS, POSTGRES_URL, require_postgres
from tests.integration.receivers import Receiver, receiver
from tests.integration.servers import BITBYBIT

EVENTS = 2000
KILLS = 10
WORKERS = 2
CONCURRENCY = 32
SECRET_KEY = "bitbybit-crash-test-secret-key"
DELIVERY_TIMEOUT = 2.0
LEASE_SECONDS = 3.0
# The receiver answers 200 after a short random pause, so that each worker keeps attempts in
# flight (and a kill strands some of them) while the 2,000 deliveries take several seconds.
ANSWER_DELAY = (0.1, 0.5)
STARTUP_WITHIN = 30.0
SETTLE_WITHIN = 120.0


# -- the database both processes share ----------------------------------------------------------


@asynccontextmanager
async def shared_database(dialect: str, tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    """A migrated store for this process and a URL that reaches the same data from another."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        sqlite = SQLiteStore(url)
        await sqlite.open()
        try:
            await sqlite.migrate()
            yield url, sqlite
        finally:
            await sqlite.close()
        return
    await require_postgres()
    schema = f"crash_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        pg = PostgresStore(POSTGRES_URL, schema=schema, pool_size=4)
        try:
            await pg.open()
            await pg.migrate()
            # asyncpg sends unknown URL parameters as server settings: libpq's `options` works.
            joiner = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{joiner}options=-csearch_path%3D{schema}", pg
        finally:
            await pg.close()
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


async def fetch(store: Store, sql: str, *args: Any) -> list[Any]:
    async with store.read() as tx:
        rows: list[Any] = await tx.db.fetch(sql, *args)  # type: ignore[attr-defined]  # SqlTx
    return rows


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class Kill:
    pid: int
    held: set[str]
    """Deliveries the worker had leased and not recorded when it died (its attempts in flight)."""
    arrived_before: int


@dataclass
class Workers:
    """``bitbybit worker`` processes; every one ever started is killed in ``kill_all``."""

    env: dict[str, str]
    logs: Path
    slots: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def spawn(self) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*BITBYBIT, "worker", "--concurrency", str(CONCURRENCY)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> Path:
        return next(log for started, log in self.started if started is process)

    async def wait_started(self, process: subprocess.Popen[bytes]) -> None:
        """Until the worker logged ``worker_started`` (bounded)."""
        log = self.log_of(process)
        deadline = time.monotonic() + STARTUP_WITHIN
        while b'"worker_started"' not in log.read_bytes():
            if process.poll() is not None:
                raise AssertionError(f"worker exited early: {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {log.read_text()}")
            await asyncio.sleep(0.02)

    def kill(self, slot: int) -> int:
        process = self.slots[slot]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        return process.pid

    def kill_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a SIGKILLed process exits
                process.wait(timeout=10)

    def tails(self) -> str:
        return "\n".join(
            f"--- {log.name} (exit {process.returncode})\n{log.read_text()[-2000:]}"
            for process, log in self.started
        )


def worker_env(database_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env.update(
        BITBYBIT_DATABASE_URL=database_url,
        BITBYBIT_SECRET_KEY=SECRET_KEY,
        BITBYBIT_ALLOW_PRIVATE_TARGETS="1",
        BITBYBIT_ALLOW_HTTP_TARGETS="1",
        BITBYBIT_DELIVERY_TIMEOUT=str(DELIVERY_TIMEOUT),
        BITBYBIT_LEASE_SECONDS=str(LEASE_SECONDS),
        BITBYBIT_RETRY_SCHEDULE="0.05,0.1,0.2,0.5,1,1,1,1",
    )
    return env


async def held_by(store: Store, pid: int) -> set[str]:
    """Deliveries still leased to the (dead) worker with this pid: worker names are host:pid:x."""
    rows = await fetch(
        store,
        "SELECT delivery_id AS id FROM delivery_queue WHERE lease_owner LIKE $1",
        f"%:{pid}:%",
    )
    return {row["id"] for row in rows}


# -- the test -----------------------------------------------------------------------------------


async def make_events(platform: Platform, url: str) -> str:
    """A company, an endpoint at ``url`` and ``EVENTS`` customer.created events; the secret."""
    company = await access.create_company(platform, "Crash Test", "ID")
    tenant = Tenant(company.id, "live")
    _, secret = await webhooks.create_endpoint(platform, tenant, EndpointCreate(url=url))

    for start in range(0, EVENTS, 100):

        async def batch(tx: Any, start: int = start) -> None:
            for n in range(start, min(start + 100, EVENTS)):
                data = CustomerCreate(email=f"crash{n}@example.com", firstName=f"Crash {n}")
                await customers.insert(platform, tx, tenant, data)

        await platform.run(batch)
    return secret


@dataclass
class Progress:
    """Distinct event ids the receiver has seen, counted incrementally."""

    hook: Receiver
    seen: set[str] = field(default_factory=set)
    read: int = 0

    def distinct(self) -> int:
        received = self.hook.received
        self.seen.update(got.headers[ID_HEADER] for got in received[self.read :])
        self.read = len(received)
        return len(self.seen)

    async def until(self, count: int, within: float = SETTLE_WITHIN) -> None:
        """Until ``count`` distinct events have arrived (within ``within`` seconds)."""
        deadline = time.monotonic() + within
        while self.distinct() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.distinct()} of {count} events arrived")
            self.hook.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hook.arrived.wait(), 0.5)


async def kill_at_random(
    workers: Workers, hook: Receiver, store: Store, rng: random.Random
) -> list[Kill]:
    """Kill a random worker ``KILLS`` times while deliveries flow, restarting it each time.

    Kills are spread over the run by progress: each waits for a random share of the deliveries
    to have arrived (and for the last restarted worker to be up), plus a random pause.
    """
    marks = sorted(rng.randint(EVENTS // 20, EVENTS * 3 // 5) for _ in range(KILLS))
    progress = Progress(hook)
    kills: list[Kill] = []
    for mark in marks:
        await progress.until(mark)
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        slot = rng.randrange(WORKERS)
        arrived = progress.distinct()
        pid = workers.kill(slot)
        kills.append(Kill(pid, await held_by(store, pid), arrived))
        workers.slots[slot] = workers.spawn()
        await workers.wait_started(workers.slots[slot])
    return kills


async def settle(store: Store) -> None:
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        rows = await fetch(
            store, "SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status ORDER BY status"
        )
        counts = {row["status"]: int(row["n"]) for row in rows}
        if counts == {"succeeded": EVENTS}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {counts}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sigkilled_workers_lose_no_event(dialect: str, tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)  # reproducible from the seed
    delays = random.Random(seed + 1)

    async def answer(request: web.Request, hook: Receiver) -> web.StreamResponse:
        await asyncio.sleep(delays.uniform(*ANSWER_DELAY))
        return web.Response(status=200, text="ok")

    async with shared_database(dialect, tmp_path) as (url, store), receiver(answer) as hook:
        settings = Settings(
            database_url=url,
            secret_key=SECRET_KEY,
            allow_private_targets=True,
            allow_http_targets=True,
        )
        platform = Platform(store, settings)
        secret = await make_events(platform, hook.url)

        workers = Workers(worker_env(url), tmp_path)
        try:
            workers.slots = [workers.spawn() for _ in range(WORKERS)]
            for process in workers.slots:
                await workers.wait_started(process)
            kills = await kill_at_random(workers, hook, store, rng)
            await settle(store)  # every request is recorded before it is answered
        except BaseException:
            workers.kill_all()
            print(f"seed {seed}\n{workers.tails()}")  # shown by pytest when the test fails
            raise
        finally:
            workers.kill_all()

        events = {
            row["id"]: bytes(row["payload"])
            for row in await fetch(store, "SELECT id, payload FROM events")
        }
        deliveries = await fetch(
            store,
            "SELECT d.id, d.event_id, d.status, d.attempts, COUNT(a.seq) AS recorded,"
            " SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END) AS ok"
            " FROM deliveries d LEFT JOIN delivery_attempts a ON a.delivery_id = d.id"
            " GROUP BY d.id, d.event_id, d.status, d.attempts",
        )

    arrivals = Counter(r.headers[ID_HEADER] for r in hook.received)
    duplicates = sum(arrivals.values()) - len(arrivals)
    stranded = Counter(delivery_id for kill in kills for delivery_id in kill.held)
    print(
        f"{dialect}: seed {seed}, {len(hook.received)} arrivals, {duplicates} duplicates;"
        f" kills at {[kill.arrived_before for kill in kills]} arrivals,"
        f" holding {[len(kill.held) for kill in kills]} deliveries"
    )

    assert len(kills) == KILLS
    assert all(kill.arrived_before < EVENTS for kill in kills), "a kill came after the flow"
    assert stranded, "no kill caught a worker with attempts in flight"

    # Every event arrived at least once; nothing else arrived.
    assert len(events) == EVENTS
    assert set(arrivals) == set(events)

    # Every arrival of an event carried its id, its stored body byte for byte, a valid signature.
    for got in hook.received:
        event_id = got.headers[ID_HEADER]
        assert got.body == events[event_id], event_id
        timestamp = int(got.headers[TIMESTAMP_HEADER])
        assert got.headers[SIGNATURE_HEADER] == sign(got.body, secret, timestamp)
        assert verify(got.body, got.headers, secret).id == event_id

    # The database: one delivery per event, succeeded by exactly one recorded (2xx) attempt.
    assert len(deliveries) == EVENTS
    assert {row["event_id"] for row in deliveries} == set(events)
    for row in deliveries:
        assert (row["status"], row["attempts"], row["recorded"], row["ok"]) == (
            "succeeded",
            1,
            1,
            1,
        ), dict(row)

    # Duplicates only for attempts in flight at a kill: an event arrived once per recorded
    # attempt, plus at most once per kill of a worker that held its delivery unrecorded.
    for row in deliveries:
        extra = arrivals[row["event_id"]] - row["recorded"]
        assert extra <= stranded[row["id"]], (row["event_id"], arrivals[row["event_id"]], seed)
    assert duplicates <= sum(len(kill.held) for kill in kills)
    assert duplicates <= KILLS * CONCURRENCY
