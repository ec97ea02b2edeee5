"""What one API write and one webhook delivery cost PostgreSQL: server CPU, WAL bytes, round trips.

    .venv/bin/python bench/bench_capacity.py [--writes 3000] [--deliveries 20000]

Runs against the local PostgreSQL (a fresh database, dropped afterwards), in one process:

- writes: ``POST /customer/open/v1/customers`` through the application in process (ASGI, 16 at
  a time; each write is a customer, its ``customer.created`` event and one delivery), so that
  what is measured is the database's share, not HTTP parsing;
- deliveries: that many pending deliveries (queued through the services beforehand) drained by
  an in-process delivery worker (256 in flight) to an in-process receiver answering 200.

For each: the CPU time of every PostgreSQL process (``/proc/<pid>/stat`` of all ``postgres``
processes: backends, WAL writer, checkpointer, autovacuum), the WAL written
(``pg_current_wal_lsn()`` before and after) and the statements sent (every call of an asyncpg
connection's ``execute``/``fetch``/``fetchrow``/``fetchval``/``executemany``: one round trip
each; ``BEGIN`` and ``COMMIT`` travel with a statement or as one). Divided by the operations,
and turned into what one PostgreSQL core sustains. docs/capacity.md holds the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bitbybit.api.app import create_app
from bitbybit.channels import delivery_worker
from bitbybit.models import Tenant
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from common import database, platform_for

TICKS = os.sysconf("SC_CLK_TCK")
CALLS: Counter[str] = Counter()


def count_statements() -> None:
    """Count every statement an asyncpg connection sends (the pool's proxies forward to these)."""
    for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
        original = getattr(asyncpg.Connection, name)

        def counted(
            self: Any, *args: Any, __original: Any = original, __name: str = name, **kw: Any
        ) -> Any:
            CALLS[__name] += 1
            return __original(self, *args, **kw)

        setattr(asyncpg.Connection, name, counted)


def postgres_cpu_seconds() -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if not name.startswith("postgres"):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


async def wal_lsn(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        lsn = await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    finally:
        await connection.close()
    return int(lsn)


@dataclass
class Cost:
    what: str
    operations: int
    seconds: float
    cpu_s: float
    wal_bytes: int
    statements: int

    def row(self) -> str:
        per_op_cpu_us = self.cpu_s / self.operations * 1e6
        return (
            f"| {self.what} | {self.operations:,} | {self.operations / self.seconds:,.0f}/s"
            f" | {per_op_cpu_us:,.0f} µs | {self.wal_bytes / self.operations:,.0f} B"
            f" | {self.statements / self.operations:.2f}"
            f" | {1e6 / per_op_cpu_us:,.0f}/s |"
        )


async def measured(what: str, url: str, count: int, work: Callable[[], Awaitable[None]]) -> Cost:
    await asyncio.sleep(1)  # let the set-up's writes settle (WAL writer, autovacuum)
    CALLS.clear()
    lsn, cpu, started = await wal_lsn(url), postgres_cpu_seconds(), time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.5)  # the WAL writer's and checkpointer's share of the work
    cpu_s = postgres_cpu_seconds() - cpu
    wal = await wal_lsn(url) - lsn
    return Cost(what, count, seconds, cpu_s, wal, sum(CALLS.values()) - 1)  # the LSN read


async def run(args: argparse.Namespace, url: str) -> list[Cost]:
    platform = platform_for(url)
    await platform.open()
    hits = 0

    async def ok(request: web.Request) -> web.Response:
        nonlocal hits
        await request.read()
        hits += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    company = await access.create_company(platform, "Capacity")
    _, key = await access.create_api_key(platform, company.id)
    tenant = Tenant(company.id, "live")
    await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url=f"http://127.0.0.1:{port}/hook")
    )
    costs = []
    api = create_app(platform=platform)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://capacity") as http:
        counter = iter(range(args.writes))

        async def writer() -> None:
            for index in counter:
                answer = await http.post(
                    "/customer/open/v1/customers",
                    headers={"x-api-key": key},
                    json={"email": f"w{index}@capacity.example", "firstName": "Cap"},
                )
                assert answer.status_code == 201, answer.text

        async def writes() -> None:
            await asyncio.gather(*(writer() for _ in range(16)))

        costs.append(await measured("API write (POST /customers)", url, args.writes, writes))

    # Deliveries: queue them first (not measured), then drain.
    for start in range(0, args.deliveries, 500):

        async def batch(tx: Any, start: int = start) -> None:
            for index in range(start, min(args.deliveries, start + 500)):
                data = CustomerCreate(email=f"d{index}@capacity.example", firstName="Cap")
                await customers.insert(platform, tx, tenant, data)

        await platform.run(batch)
    hits = 0
    expected = args.deliveries + args.writes

    async def drain() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(delivery_worker(platform, 256).run(stop))
        while True:
            async with platform.store.read() as tx:
                done = await tx.count_deliveries("succeeded")
            if done >= expected:
                break
            await asyncio.sleep(0.2)
        stop.set()
        await task

    costs.append(await measured("webhook delivery (one attempt)", url, expected, drain))
    await runner.cleanup()
    await platform.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--deliveries", type=int, default=20000)
    args = parser.parse_args()
    count_statements()
    with database("postgres") as url:
        costs = asyncio.run(run(args, url))
    print(
        "\n| operation | count | rate here | PostgreSQL CPU per op | WAL per op | statements per op"
        " | per PostgreSQL core |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cost in costs:
        print(cost.row())


if __name__ == "__main__":
    main()
