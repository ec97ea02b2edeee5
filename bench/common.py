"""Shared pieces of the benchmarks: an nginx sink, a database, processes, waiting on counts."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.integration

from tests.integration.servers import free_port

from bitbybit.clock import system_clock
from bitbybit.config import Settings
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate
from bitbybit.services import customers
from bitbybit.store.partitions import DAY_MS, WEEK_MS

SECRET_KEY = "bitbybit-benchmark-secret-key"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


ANSWER_OK = 'location / { return 200 "ok"; }'
"""What the sink answers: 200 to everything."""


@contextmanager
def nginx_sink(locations: str = ANSWER_OK) -> Iterator[str]:
    """nginx on a free loopback port answering with ``locations`` (by default 200 to
    everything; ``/nginx_status`` counts requests); yields the hook URL (``…/hook``)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        sys.exit("nginx is not installed: run `make bench-deps`")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder};
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; }}
        {locations}
    }}
}}
"""
        )
        process = subprocess.Popen([binary, "-c", str(conf), "-p", folder])
        try:
            time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/hook"
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"bench_{os.getpid()}_{int(time.time())}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        asyncio.run(a_month_of_weeks(url))
        yield url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def a_month_of_weeks(database_url: str) -> None:
    """Migrate, and lay the history tables' partitions out as a deployment has them after a
    month (docs/retention.md): a week for each of the last 30 days and the next 2 weeks, and no
    legacy partition (a fresh database's is empty, and holds everything before next week)."""
    platform = platform_for(database_url)
    await platform.open()
    try:
        now = system_clock()
        dropped = await platform.store.drop_partitions(now + 2 * WEEK_MS)
        assert dropped.weeks == ["legacy"], dropped
        await platform.store.make_partitions(now - 30 * DAY_MS, 7)
    finally:
        await platform.close()


def sink_requests(hook: str) -> int:
    """Requests the nginx sink has answered so far (its stub_status counter)."""
    import urllib.request

    status_url = hook.rsplit("/", 1)[0] + "/nginx_status"
    with urllib.request.urlopen(status_url, timeout=5) as response:  # noqa: S310  # loopback
        lines = response.read().decode().splitlines()
    return int(lines[2].split()[2])


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BITBYBIT_DATABASE_URL": database_url,
        "BITBYBIT_SECRET_KEY": SECRET_KEY,
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
        "BITBYBIT_RATE_LIMIT": "1000000000",
        **extra,
    }


def platform_for(database_url: str) -> Platform:
    return Platform.from_settings(
        Settings(
            database_url=database_url,
            secret_key=SECRET_KEY,
            allow_private_targets=True,
            allow_http_targets=True,
            rate_limit=1_000_000_000,
        )
    )


@dataclass
class Progress:
    succeeded: int
    pending: int


async def delivery_counts(platform: Platform) -> Progress:
    async with platform.store.read() as tx:
        stats = await tx.queue_stats(time.time_ns() // 1_000_000)
        done = await tx.count_deliveries("succeeded")
    return Progress(done, stats.pending)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def seed_backlog(database_url: str, company: str, endpoint_id: str, size: int) -> None:
    """``size`` pending deliveries of one real event to one endpoint, written in bulk.

    Benchmark set-up only: it writes rows the way the outbox would, without going through the
    services once per row (a million API calls would take longer than the drain measured).
    Their ids are ``dlv_00…`` and sort in creation order, as real (time-ordered) ids do.
    """
    platform = platform_for(database_url)
    await platform.open(migrate=False)
    tenant = Tenant(company, "live")
    try:
        data = CustomerCreate(email="backlog@bench.example", firstName="Backlog")
        customer = await platform.run(lambda tx: customers.insert(platform, tx, tenant, data))
        async with platform.store.read() as tx:
            page = await tx.list_deliveries(tenant, endpoint_id=endpoint_id, limit=1)
        event_id, event_type = page.items[0].event_id, page.items[0].event_type
        del customer
    finally:
        await platform.close()
    now = time.time_ns() // 1_000_000
    if database_url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        with db:
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i <= ?)"
                " INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
                " event_type, attempts, next_attempt_at, created_at, updated_at)"
                " SELECT 'dlv_0' || printf('%019d', i), ?, ?, ?, 'live', 'pending', ?, 0, ?, ?, ?"
                " FROM n",
                (size, event_id, endpoint_id, company, event_type, now, now, now),
            )
            db.execute(
                "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
                " SELECT id, endpoint_id, next_attempt_at, 'webhook' FROM deliveries"
                " WHERE id LIKE 'dlv_00%'"
            )
        db.close()
        return
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
            " event_type, attempts, next_attempt_at, created_at, updated_at)"
            " SELECT 'dlv_0' || lpad(i::text, 19, '0'), $1, $2, $3, 'live', 'pending', $6, 0,"
            " $4, $4, $4"
            " FROM generate_series(2, $5) AS i",
            event_id,
            endpoint_id,
            company,
            now,
            size,
            event_type,
        )
        await connection.execute(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " SELECT id, endpoint_id, next_attempt_at, 'webhook' FROM deliveries"
            " WHERE id LIKE 'dlv_00%'"
        )
        # A backlog that built up over time has statistics (autovacuum's ANALYZE, or an
        # operator's): the claim's plan has to hold up with them, not only on a table the planner
        # believes empty. (This machine's PostgreSQL runs with autovacuum off.)
        await connection.execute("VACUUM ANALYZE deliveries, delivery_queue")
    finally:
        await connection.close()
