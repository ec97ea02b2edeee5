"""Webhook delivery throughput: N customers created through the API, their N webhooks delivered.

    make bench-deps
    .venv/bin/python bench/bench_delivery.py [--events 20000] [--database sqlite|postgres]
        [--concurrency 256]

Phase 1 creates the customers through a real ``bitbybit serve`` (no worker in it). Phase 2
starts ``bitbybit worker`` and times it until every delivery is recorded as succeeded. The same
run then times a bare aiohttp loop posting the same signed requests to the same nginx sink at
the same concurrency: the ceiling one Python process can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.integration.servers import BITBYBIT, serve

from bitbybit.models import Tenant
from bitbybit.schemas import EndpointCreate
from bitbybit.services import access, webhooks
from bitbybit.webhooks.signing import webhook_headers
from common import bench_env, database, delivery_counts, nginx_sink, platform_for


async def prepare(database_url: str, hook: str) -> tuple[str, str, str]:
    platform = platform_for(database_url)
    await platform.open()
    try:
        company = await access.create_company(platform, "Bench")
        _, key = await access.create_api_key(platform, company.id)
        _, secret = await webhooks.create_endpoint(
            platform, Tenant(company.id, "live"), EndpointCreate(url=hook)
        )
    finally:
        await platform.close()
    return company.id, key, secret


async def create_customers(base_url: str, key: str, count: int, concurrency: int = 32) -> float:
    headers = {"x-api-key": key, "content-type": "application/json"}
    counter = iter(range(count))
    started = time.perf_counter()
    async with aiohttp.ClientSession(base_url) as session:

        async def loop() -> None:
            for index in counter:
                body = f'{{"email":"c{index}@bench.example","firstName":"Bench","tags":["b"]}}'
                async with session.post(
                    "/customer/open/v1/customers", data=body, headers=headers
                ) as response:
                    if response.status != 201:
                        raise RuntimeError(f"{response.status}: {await response.text()}")

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return time.perf_counter() - started


async def wait_delivered(database_url: str, count: int, limit_s: float = 600) -> float:
    platform = platform_for(database_url)
    await platform.open(migrate=False)
    started = time.perf_counter()
    try:
        while True:
            progress = await delivery_counts(platform)
            if progress.succeeded >= count:
                return time.perf_counter() - started
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"only {progress.succeeded} of {count} delivered")
            await asyncio.sleep(0.05)
    finally:
        await platform.close()


async def bare_rate(hook: str, secret: str, count: int, concurrency: int) -> float:
    body = b'{"id":"cust_x","email":"c@bench.example","firstName":"Bench"}'
    counter = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            for index in counter:
                headers = webhook_headers(
                    f"evt_{index}", "customer.created", body, [secret], int(time.time())
                )
                async with session.post(hook, data=body, headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    with nginx_sink() as hook, database(args.database) as database_url:
        _, key, secret = asyncio.run(prepare(database_url, hook))
        env = bench_env(database_url)
        extra = {k: v for k, v in env.items() if k.startswith("BITBYBIT_")}
        log = Path(tempfile.gettempdir()) / "bitbybit-bench-serve.log"
        with serve(database_url, log, BITBYBIT_CONCURRENCY="0", **extra) as server:
            created_s = asyncio.run(create_customers(server.base_url, key, args.events))
        worker = subprocess.Popen(
            [*BITBYBIT, "worker", "--concurrency", str(args.concurrency)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            drained_s = asyncio.run(wait_delivered(database_url, args.events))
        finally:
            worker.terminate()
            worker.wait(30)
        bare = asyncio.run(bare_rate(hook, secret, args.events, args.concurrency))
    rate = args.events / drained_s
    print(f"database: {args.database}, events: {args.events}, concurrency: {args.concurrency}")
    print(f"created through the API: {args.events / created_s:,.0f} customers/s")
    print(f"delivered (every attempt recorded): {rate:,.0f} webhooks/s in {drained_s:.1f} s")
    print(f"bare aiohttp loop, same signed requests and sink: {bare:,.0f} requests/s")
    print(f"ratio: {rate / bare:.2f} (goal >= 0.70)")


if __name__ == "__main__":
    main()
