"""Fault injection: delivery keeps its promises while processes die and the database restarts
(issue 9; SPEC §1, §5, §6).

On each database, a real ``bitbybit serve --concurrency 0`` takes a steady load of API writes
(customers created and updated, products created) with an API key, and two real ``bitbybit
worker`` processes deliver the events to four endpoints, loopback receivers in this process:

- ``fast`` answers 200 at once; ``slow`` answers 200 after 0.5-1.5 s (customer events only);
- ``failing`` always answers 500 (``customer.created`` only): its deliveries fail after the short
  retry schedule and, three exhausted events in a row, the endpoint is suspended and what follows
  is held;
- ``phoenix`` answers quickly; mid-run a burst of writes fills the workers' in-memory queues for
  it while it starts answering slowly, and it is DELETED through the API with attempts in flight
  and jobs queued, then created again (new id and secret, same URL).

Meanwhile, at random moments (seeded; the seed is printed, ``BITBYBIT_FAULTS_SEED`` replays it),
a worker is sent SIGTERM (it must exit 0, its in-flight attempts finished and recorded) or
SIGKILL, and is restarted; on PostgreSQL the server itself is restarted once
(``pg_ctlcluster … restart -m fast``; ``BITBYBIT_FAULTS_NO_PG_RESTART=1`` leaves it alone, for
development on a shared machine only). Once the load stops and the workers settle, the checker in
``invariants.py`` reads the database and the receivers' logs and lists every broken promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from bitbybit.config import Settings
from bitbybit.delivery.policy import SUSPEND_AFTER
from bitbybit.errors import BitbybitError
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate, EventType
from bitbybit.services import access, webhooks
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sqlite import SQLiteStore
from bitbybit.webhooks import WebhookVerificationError, verify
from bitbybit.webhooks.signing import EVENT_HEADER, ID_HEADER, TIMESTAMP_HEADER
from tests.conftest import CUSTOMERS, DIALECTS, IN_CI, POSTGRES_URL, PRODUCTS, require_postgres
from tests.integration.invariants import Facts, Logged, Stop, check, snapshot
from tests.integration.receivers import Receiver, receiver
from tests.integration.servers import BITBYBIT, serve

LOAD_SECONDS = 24.0
WRITERS = 2
WRITE_PAUSE = (0.05, 0.25)
"""Each writer's pause between API writes: about ten writes a second in all."""
BURST = 150
BURST_WRITERS = 12
KILLS = 4
TERMS = 4
WORKERS = 2
CONCURRENCY = 32
DELIVERY_TIMEOUT = 5.0
"""Above every answer's delay: no attempt here times out."""
LEASE_SECONDS = 12.0
"""Long enough that a worker's in-memory queue for ``phoenix`` still starts jobs seconds after
the endpoint was deleted (a queued job starts only if its attempt would end before its lease
does)."""
RETRY_SCHEDULE = "0.2,0.2"
SLOW_DELAY = (0.5, 1.5)
PHOENIX_DELAY = (0.02, 0.12)
"""Under 250 ms: the workers treat ``phoenix`` as fast and lease four times its in-flight cap."""
PHOENIX_HOLD = 1.0
"""Once the burst starts, ``phoenix`` answers requests signed for its first incarnation after
this long, and not before its deletion is this long past (at most ``PHOENIX_HOLD_MAX`` after
they arrived): until the deletion no attempt of it ends, so the workers keep leasing it four
times over, and after it what they had queued goes out in waves a second apart."""
PHOENIX_HOLD_MAX = 4.0
DELETE_WITHIN = 3.0
"""The burst's deliveries are leased within this long, and then the endpoint is deleted."""
QUIET_AFTER_DELETE = 7.0
"""No worker is stopped for this long from the deletion on: what the deletion does to the
workers (results of attempts in flight, jobs queued in memory) shows on its own, not hidden by
a SIGKILL that would explain any unrecorded attempt."""
SECRET_KEY = "bitbybit-faults-test-secret-key"
STARTUP_WITHIN = 30.0
TERM_WITHIN = 20.0
SETTLE_WITHIN = 60.0
API_TIMEOUT = 30.0
WEBHOOKS = "/customer/open/v1/webhooks"
PG_RESTART = ("pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart", "-m", "fast")

Rows = list[Any]


# -- the database every process shares ----------------------------------------------------------


@asynccontextmanager
async def shared_database(dialect: str, tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    """A migrated store for this process and a URL that reaches the same data from another.

    On PostgreSQL, the schema is created and dropped over connections of their own: a restart
    of the server mid-test breaks every connection open at the time.
    """
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'faults.db'}"
        sqlite = SQLiteStore(url)
        await sqlite.open()
        try:
            await sqlite.migrate()
            yield url, sqlite
        finally:
            await sqlite.close()
        return
    await require_postgres()
    schema = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
    finally:
        await admin.close()
    try:
        pg = PostgresStore(POSTGRES_URL, schema=schema, pool_size=4)
        await pg.open()
        try:
            await pg.migrate()
            joiner = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{joiner}options=-csearch_path%3D{schema}", pg
        finally:
            await pg.close()
    finally:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=30)
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await admin.close()


async def retrying(read: Callable[[], Awaitable[Any]], within: float = 30.0) -> Any:
    """``read()``, tried again while the database is unavailable (a restart), within a bound."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await read()
        except BitbybitError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def fetch(store: Store, sql: str, *args: Any) -> Rows:
    async def read() -> Rows:
        async with store.read() as tx:
            rows: Rows = await tx.db.fetch(sql, *args)  # type: ignore[attr-defined]  # SqlTx
        return rows

    rows: Rows = await retrying(read)
    return rows


async def leased_by(store: Store, pid: int) -> frozenset[str]:
    """Deliveries leased to the worker with this pid (worker names are ``host:pid:random``)."""
    rows = await fetch(
        store,
        "SELECT delivery_id FROM delivery_queue WHERE lease_owner LIKE $1",
        f"%:{pid}:%",
    )
    return frozenset(row["delivery_id"] for row in rows)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- receivers -----------------------------------------------------------------------------------


@dataclass
class Hooks:
    """The four receivers, one aiohttp server: each request is logged on arrival with the
    endpoint whose secret verifies it, then answered as that receiver does."""

    rng: random.Random
    secrets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Path → (endpoint id, secret) of every endpoint that ever had this URL."""
    log: list[Logged] = field(default_factory=list)
    base_url: str = ""
    holding: str | None = None
    """An endpoint id whose requests ``phoenix`` holds (see ``PHOENIX_HOLD``)."""
    deleted_at: float | None = None
    in_hold: int = 0

    def url(self, name: str) -> str:
        return f"{self.base_url}/r/{name}"

    def add(self, name: str, endpoint_id: str, secret: str) -> None:
        self.secrets.setdefault(f"/r/{name}", []).append((endpoint_id, secret))

    def _logged(self, request: web.Request, body: bytes) -> Logged:
        arrived_at = time.time()
        headers = dict(request.headers)
        problems = []
        endpoint_id = None
        for candidate, secret in self.secrets.get(request.path, []):
            try:
                verify(body, headers, secret)
            except WebhookVerificationError as error:
                problems.append(f"{candidate}: {error}")
            else:
                endpoint_id = candidate
                break
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        return Logged(
            path=request.path,
            endpoint_id=endpoint_id,
            event_id=headers.get(ID_HEADER, ""),
            event_type=headers.get(EVENT_HEADER, ""),
            timestamp=int(timestamp) if timestamp.isdigit() else 0,
            arrived_at=arrived_at,
            body=body,
            problem=None if endpoint_id else "; ".join(problems) or "no endpoint at this path",
        )

    async def _hold(self, arrived_at: float) -> None:
        earliest, latest = arrived_at + PHOENIX_HOLD, arrived_at + PHOENIX_HOLD_MAX
        while True:
            now = time.time()
            deleted = self.deleted_at is not None and now >= self.deleted_at + PHOENIX_HOLD
            if now >= latest or (now >= earliest and deleted):
                return
            await asyncio.sleep(0.02)

    async def answer(self, request: web.Request, hook: Receiver) -> web.StreamResponse:
        entry = self._logged(request, await request.read())
        self.log.append(entry)
        name = request.path.rsplit("/", 1)[-1]
        if name == "slow":
            await asyncio.sleep(self.rng.uniform(*SLOW_DELAY))
        elif name == "failing":
            return web.Response(status=500, text="failing on purpose")
        elif name == "phoenix":
            if self.holding is not None and entry.endpoint_id == self.holding:
                self.in_hold += 1
                try:
                    await self._hold(entry.arrived_at)
                finally:
                    self.in_hold -= 1
            else:
                await asyncio.sleep(self.rng.uniform(*PHOENIX_DELAY))
        return web.Response(status=200, text="ok")


@asynccontextmanager
async def hooks(seed: int) -> AsyncIterator[Hooks]:
    found = Hooks(random.Random(seed))
    async with receiver(found.answer) as server:
        found.base_url = server.base_url
        yield found


# -- worker processes ----------------------------------------------------------------------------


@dataclass
class Workers:
    """``bitbybit worker`` processes in ``WORKERS`` slots; each stopped one is restarted."""

    env: dict[str, str]
    logs: Path
    store: Store
    slots: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    watching: list[asyncio.Task[None]] = field(default_factory=list)

    def _popen(self) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"worker-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*BITBYBIT, "worker", "--concurrency", str(CONCURRENCY)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process, log

    async def spawn(self) -> subprocess.Popen[bytes]:
        """A new worker, once it has logged ``worker_started`` (bounded)."""
        process, log = self._popen()
        deadline = time.monotonic() + STARTUP_WITHIN
        while b'"worker_started"' not in log.read_bytes():
            if process.poll() is not None:
                raise AssertionError(f"worker exited early: {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {log.read_text()}")
            await asyncio.sleep(0.02)
        return process

    async def start(self) -> None:
        self.slots = [await self.spawn() for _ in range(WORKERS)]

    async def replace_dead(self) -> None:
        """A worker that exited without being told to is a failure; it is replaced."""
        for slot, process in enumerate(self.slots):
            if process.poll() is not None:
                self.problems.append(
                    f"worker {process.pid} exited by itself with code {process.returncode}"
                )
                self.slots[slot] = await self.spawn()

    async def stop(self, slot: int, how: str, *, restart: bool = True) -> None:
        """SIGKILL or SIGTERM the worker in ``slot`` and start another in its place.

        A SIGKILLed worker is replaced once it is dead. A SIGTERMed one is replaced at once, as a
        rolling restart would, and watched in the background until it exits (``stopped``
        waits for every watch), so a worker that hangs on SIGTERM is one failure, not a stall
        of the whole plan.
        """
        process = self.slots[slot]
        if how == "SIGKILL":
            process.send_signal(signal.SIGKILL)
            await exited(process, TERM_WITHIN)
            held = await leased_by(self.store, process.pid)
            self.stops.append(Stop(process.pid, how, held, held, process.returncode))
        else:
            held = await leased_by(self.store, process.pid)
            process.send_signal(signal.SIGTERM)
            self.watching.append(asyncio.create_task(self._watch(process, held)))
        if restart:
            self.slots[slot] = await self.spawn()

    async def _watch(self, process: subprocess.Popen[bytes], held: frozenset[str]) -> None:
        code = await exited(process, TERM_WITHIN)
        if code is None:
            process.kill()
            await exited(process, TERM_WITHIN)
        left = await leased_by(self.store, process.pid)
        self.stops.append(Stop(process.pid, "SIGTERM", held, left, code))

    async def stopped(self) -> None:
        """Until every SIGTERMed worker has exited (or been SIGKILLed for hanging)."""
        await asyncio.gather(*self.watching)

    def kill_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def tails(self) -> str:
        return "\n".join(
            f"--- {log.name} (pid {process.pid}, exit {process.returncode})\n"
            f"{log.read_text()[-3000:]}"
            for process, log in self.started
        )


async def exited(process: subprocess.Popen[bytes], within: float) -> int | None:
    """The process's exit code once it has exited, or ``None`` if it is still running."""
    try:
        return await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        return None


def worker_env(database_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env.update(
        BITBYBIT_DATABASE_URL=database_url,
        BITBYBIT_SECRET_KEY=SECRET_KEY,
        BITBYBIT_ALLOW_PRIVATE_TARGETS="1",
        BITBYBIT_ALLOW_HTTP_TARGETS="1",
        BITBYBIT_DELIVERY_TIMEOUT=str(DELIVERY_TIMEOUT),
        BITBYBIT_LEASE_SECONDS=str(LEASE_SECONDS),
        BITBYBIT_RETRY_SCHEDULE=RETRY_SCHEDULE,
    )
    return env


# -- the load ------------------------------------------------------------------------------------


@dataclass
class Load:
    """API writes through the real HTTP API: customers created and updated, products created.

    A 503 (the database restarting) is expected and the writer carries on a moment later; the
    checker works from what the database holds, not from what the API answered.
    """

    http: httpx.AsyncClient
    rng: random.Random
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    count: int = 0

    async def request(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = await self.http.request(method, path, json=body)
        except httpx.HTTPError as error:
            self.statuses["transport error"] += 1
            self.problems.append(f"{method} {path}: {type(error).__name__}: {error}")
            return None
        self.statuses[str(response.status_code)] += 1
        if response.status_code == 503:
            await asyncio.sleep(self.rng.uniform(0.2, 0.5))
        elif not response.is_success:
            self.problems.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    async def write(self) -> None:
        self.count += 1
        n = self.count
        kind = self.rng.random()
        if kind < 0.3 and self.customers:
            customer = self.rng.choice(self.customers)
            await self.request("PUT", f"{CUSTOMERS}/{customer}", {"firstName": f"Updated {n}"})
        elif kind < 0.8:
            body = {"email": f"load{n}@example.com", "firstName": f"Load {n}"}
            response = await self.request("POST", CUSTOMERS, body)
            if response is not None and response.status_code == 201:
                self.customers.append(response.json()["data"]["id"])
        else:
            variants = [{"title": "Default", "price": 10 + n % 90}]
            await self.request("POST", PRODUCTS, {"name": f"Product {n}", "variants": variants})

    async def steady(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*WRITE_PAUSE))

    async def burst(self, writes: int) -> None:
        async def writer(share: int) -> None:
            for _ in range(share):
                body = {"email": f"burst{self.count}@example.com", "firstName": "Burst"}
                self.count += 1
                await self.request("POST", CUSTOMERS, body)

        await asyncio.gather(*(writer(writes // BURST_WRITERS) for _ in range(BURST_WRITERS)))


# -- the deleted endpoint ------------------------------------------------------------------------


@dataclass
class Phoenix:
    """``phoenix``'s two lives: deleted through the API mid-run, then created again."""

    first: str
    deleted_at: float = 0.0
    """Unix seconds once the DELETE had answered (its commit came before)."""
    second: str | None = None
    second_confirmed_at: int = 0
    leased: int = 0
    """Its deliveries leased (in flight or in a worker's memory) when the DELETE went."""
    in_flight: int = 0
    """Its requests the receiver was holding when the DELETE went."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def delete_and_recreate(load: Load, hooks: Hooks, store: Store, phoenix: Phoenix) -> None:
    """Fill the workers' queues for ``phoenix`` while it answers slowly, delete it with attempts
    in flight and jobs queued, and create it again a moment later with the same URL."""
    try:
        hooks.holding = phoenix.first
        burst = asyncio.create_task(load.burst(BURST))
        # Each worker leases up to four times its in-flight cap (8, growing to 16); on SQLite
        # the workers hear of new events only by polling, once a second.
        deadline = time.monotonic() + DELETE_WITHIN
        while time.monotonic() < deadline:
            leased = len(await leased_for(store, phoenix.first))
            if leased >= 2 * CONCURRENCY and hooks.in_hold >= CONCURRENCY // 4:
                break
            await asyncio.sleep(0.05)
        phoenix.leased = len(await leased_for(store, phoenix.first))
        phoenix.in_flight = hooks.in_hold
        response = await answered(load.http, "DELETE", f"{WEBHOOKS}/{phoenix.first}")
        assert response.status_code == 200, response.text
        phoenix.deleted_at = hooks.deleted_at = time.time()
        await burst
        await asyncio.sleep(1.0)
        response = await answered(load.http, "POST", WEBHOOKS, {"url": hooks.url("phoenix")})
        assert response.status_code == 201, response.text
        phoenix.second_confirmed_at = now_ms()
        created = response.json()["data"]
        phoenix.second = created["id"]
        hooks.add("phoenix", created["id"], created["secret"])
    finally:
        phoenix.done.set()


async def leased_for(store: Store, endpoint_id: str) -> Rows:
    return await fetch(
        store,
        "SELECT delivery_id FROM delivery_queue WHERE target = $1 AND lease_owner IS NOT NULL",
        endpoint_id,
    )


async def answered(
    http: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """The answer to a request that must get through: a 503 is tried again (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        response = await http.request(method, path, json=body)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.5)


# -- faults --------------------------------------------------------------------------------------


def may_restart_postgres(dialect: str) -> bool:
    """Whether this run restarts PostgreSQL: always in CI (which runs as root with the machine's
    PostgreSQL 15); locally not when ``BITBYBIT_FAULTS_NO_PG_RESTART=1`` or impossible."""
    if dialect != "postgres":
        return False
    if os.environ.get("BITBYBIT_FAULTS_NO_PG_RESTART") == "1":
        if IN_CI:
            pytest.fail("BITBYBIT_FAULTS_NO_PG_RESTART is for development only, not for CI")
        print("PostgreSQL restart switched off (BITBYBIT_FAULTS_NO_PG_RESTART=1)")
        return False
    if shutil.which(PG_RESTART[0]) is None or os.geteuid() != 0:
        message = "restarting PostgreSQL needs pg_ctlcluster and root"
        if IN_CI:
            pytest.fail(message + "; CI requires it")
        print(message + ": not restarted")
        return False
    return True


async def restart_postgres() -> None:
    process = await asyncio.create_subprocess_exec(
        *PG_RESTART, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")


@dataclass
class Plan:
    """When each fault happens, in seconds from the start of the load."""

    stops: list[tuple[float, str]]
    delete_at: float
    restart_at: float | None

    @classmethod
    def draw(cls, rng: random.Random, restart: bool) -> Plan:
        kinds = ["SIGKILL"] * KILLS + ["SIGTERM"] * TERMS
        rng.shuffle(kinds)
        delete_at = rng.uniform(0.25, 0.4) * LOAD_SECONDS
        times: list[float] = []
        while len(times) < len(kinds):
            at = rng.uniform(1.5, LOAD_SECONDS - 2)
            if not delete_at - 0.5 <= at <= delete_at + QUIET_AFTER_DELETE:
                times.append(at)
        return cls(
            stops=list(zip(sorted(times), kinds, strict=True)),
            delete_at=delete_at,
            restart_at=rng.uniform(0.55, 0.75) * LOAD_SECONDS if restart else None,
        )


async def inject(
    plan: Plan, workers: Workers, phoenix: Phoenix, rng: random.Random, start: float
) -> int:
    """Run the plan's stops and restart one after the other; returns the restarts done."""
    steps: list[tuple[float, str]] = list(plan.stops)
    if plan.restart_at is not None:
        steps.append((plan.restart_at, "restart"))
    restarts = 0
    for at, what in sorted(steps):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        await workers.replace_dead()
        if what == "restart":
            await phoenix.done.wait()  # a DELETE answered 503 would leave its commit unknown
            await workers.stopped()  # a graceful stop is judged with its database up
            await restart_postgres()
            restarts += 1
        else:
            await workers.stop(rng.randrange(WORKERS), what)
    return restarts


async def settle(store: Store) -> int:
    """Until no delivery is due or leased (bounded); when that was seen, unix ms."""
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        now = now_ms()
        rows = await fetch(
            store,
            "SELECT COUNT(*) AS n FROM delivery_queue"
            " WHERE due_at <= $1 OR lease_owner IS NOT NULL",
            now,
        )
        if int(rows[0]["n"]) == 0 or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


# -- the test ------------------------------------------------------------------------------------


async def setup(platform: Platform, hooks: Hooks) -> tuple[str, str, dict[str, str]]:
    """A company, an API key, and the endpoints; returns the key, phoenix's id and the labels."""
    company = await access.create_company(platform, "Faults Test", "ID")
    _, key = await access.create_api_key(platform, company.id)
    tenant = Tenant(company.id, "live")
    subscriptions: dict[str, list[EventType] | None] = {
        "fast": None,
        "slow": ["customer.created", "customer.updated"],
        "failing": ["customer.created"],
        "phoenix": None,
    }
    labels: dict[str, str] = {}
    for name, events in subscriptions.items():
        data = EndpointCreate(url=hooks.url(name), events=events)
        endpoint, secret = await webhooks.create_endpoint(platform, tenant, data)
        hooks.add(name, endpoint.id, secret)
        labels[endpoint.id] = name
    phoenix = next(id_ for id_, name in labels.items() if name == "phoenix")
    return key, phoenix, labels


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_delivery_keeps_its_promises_under_faults(dialect: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("BITBYBIT_FAULTS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{dialect}: fault-injection seed {seed} (BITBYBIT_FAULTS_SEED={seed} replays it)")
    rng = random.Random(seed)
    plan = Plan.draw(rng, may_restart_postgres(dialect))
    print(f"plan: {plan}")

    async with shared_database(dialect, tmp_path) as (url, store), hooks(seed + 1) as hook:
        settings = Settings(
            database_url=url,
            secret_key=SECRET_KEY,
            allow_private_targets=True,
            allow_http_targets=True,
        )
        key, first_phoenix, labels = await setup(Platform(store, settings), hook)
        confirmed = now_ms()
        workers = Workers(worker_env(url), tmp_path, store)
        server_env = {
            **worker_env(url),
            "BITBYBIT_CONCURRENCY": "0",  # API only: every attempt is a worker process's
            "BITBYBIT_RATE_LIMIT": "1000000",
        }
        with serve(url, tmp_path / "serve.log", **server_env) as server:
            http = httpx.AsyncClient(
                base_url=server.base_url, headers={"x-api-key": key}, timeout=API_TIMEOUT
            )
            load = Load(http, random.Random(seed + 2))
            phoenix = Phoenix(first_phoenix)
            running: list[asyncio.Task[Any]] = []
            try:
                await workers.start()
                stop_load = asyncio.Event()
                start = time.monotonic()
                writers = [asyncio.create_task(load.steady(stop_load)) for _ in range(WRITERS)]

                async def scene() -> None:
                    await asyncio.sleep(plan.delete_at)
                    await delete_and_recreate(load, hook, store, phoenix)

                deleting = asyncio.create_task(scene())
                faults = asyncio.create_task(inject(plan, workers, phoenix, rng, start))
                running = [*writers, deleting, faults]
                await asyncio.sleep(LOAD_SECONDS)
                stop_load.set()
                await asyncio.gather(*writers, deleting)
                restarts = await faults
                await workers.replace_dead()
                settled_at = await settle(store)
                for slot in range(WORKERS):  # graceful stops, checked like the others
                    await workers.stop(slot, "SIGTERM", restart=False)
                await workers.stopped()
            except BaseException:
                for task in running:
                    task.cancel()
                workers.kill_all()
                print(f"seed {seed}\n{workers.tails()}")
                raise
            finally:
                workers.kill_all()
                await http.aclose()
            serve_alive = server.process.poll() is None

        assert phoenix.second is not None
        snap = await retrying(lambda: snapshot(store))

    labels[phoenix.second] = "phoenix-2"
    labels[first_phoenix] = "phoenix-1"
    facts = Facts(
        schedule_len=len(RETRY_SCHEDULE.split(",")),
        suspend_after=SUSPEND_AFTER,
        confirmed_at={
            **{endpoint_id: confirmed for endpoint_id in labels},
            phoenix.second: phoenix.second_confirmed_at,
        },
        deleted_at={first_phoenix: phoenix.deleted_at},
        settled_at=settled_at,
        labels=labels,
        stops=workers.stops,
        worker_pids={process.pid for process, _ in workers.started},
        pg_restarts=restarts,
        api_statuses=load.statuses,
        problems=[*workers.problems, *load.problems],
    )
    if not serve_alive:
        facts.problems.append("bitbybit serve died during the run")
    if plan.restart_at is not None and restarts != 1:
        facts.problems.append(f"PostgreSQL was restarted {restarts} times, not once")
    report = check(snap, hook.log, facts)
    print(
        f"{dialect}: seed {seed}; phoenix deleted at {phoenix.deleted_at:.3f}"
        f" with {phoenix.leased} of its deliveries leased, {phoenix.in_flight} in flight"
    )
    print(report.render())
    if report.violations:
        full = tmp_path / "violations.txt"
        full.write_text(report.render(examples=len(snap.deliveries) + len(hook.log)))
        print(f"every violation: {full}\n{workers.tails()}")
    assert not report.violations, f"seed {seed}\n{report.render()}"
