"""How much of an API write's CPU is the web framework's: ``POST /customers`` in process.

    .venv/bin/python bench/bench_api_overhead.py [--requests 6000] [--concurrency 32] [--rounds 2]

Two ways of making the same write, each on a fresh SQLite file, each called as an ASGI
application with ``--concurrency`` requests in flight (no HTTP server or client in between),
in turn for ``--rounds`` rounds; the CPU of this process per request of each:

- **served**: the application as ``bitbybit serve`` builds it (``create_app``: FastAPI's outer
  layers, the ``Guard`` middleware, the ``Direct`` layer that takes the route to its endpoint
  with FastAPI's validation, the dependencies, the route's handler);
- **bare**: a plain ASGI handler calling the same services in the same order: the request id,
  ``access.authenticate`` and ``admit``, the depth check, the body validated by the same
  pydantic model (``CustomerCreate``), ``services.customers.insert`` through ``run_once``, the
  same JSON answer with the same headers, and the request counted in the same metrics.

The bare handler answers only this benchmark's well-formed requests (it has none of the error
paths): it is a measuring stick, not a route. The difference between the two is what routing,
dependency injection and the middleware cost a write, the part of the write path that issue 14's
goal (``POST /customers`` ≥ 0.4 of a hello-world FastAPI POST, ``bench_create_customers.py``)
turns on; what the two share (SQLite, the services) is the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from bitbybit.api.app import create_app
from bitbybit.api.metrics import RouteMetrics
from bitbybit.api.middleware import rate_headers
from bitbybit.config import Settings
from bitbybit.ids import new_id
from bitbybit.limits import too_deep
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate
from bitbybit.services import access, customers, payloads
from bitbybit.services.idempotency import run_once
from common import SECRET_KEY

PATH = "/customer/open/v1/customers"
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def bare_app(platform: Platform) -> App:
    """``POST /customers`` through the services alone (see the module's text)."""
    failures = access.FailedAuthLimiter(1_000_000)
    metrics = RouteMetrics()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        arrived = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = new_id("req")
        message = await receive()
        body: bytes = message["body"]
        raw = headers.get(b"x-api-key")
        client_ip = scope["client"][0]
        caller = await access.authenticate(
            platform, raw.decode() if raw else None, client_ip, failures
        )
        access.admit(caller, client_ip, "customers:write")
        assert not too_deep(body)
        data = CustomerCreate.model_validate_json(body)
        tenant = caller.tenant
        outcome = await run_once(
            platform,
            tenant,
            None,
            "",
            lambda tx: customers.insert(platform, tx, tenant, data),
            lambda customer: (201, orjson.dumps({"data": payloads.customer_resource(customer)})),
        )
        answer = [
            (b"content-length", str(len(outcome.body)).encode()),
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id.encode()),
            *rate_headers(caller.rate),
        ]
        await send({"type": "http.response.start", "status": 201, "headers": answer})
        await send({"type": "http.response.body", "body": outcome.body})
        metrics.record(scope, "", 201, time.perf_counter() - arrived)

    return app


async def drive(app: App, key: str, first: int, count: int, concurrency: int) -> float:
    """CPU seconds of this process per request, for ``count`` requests, ``concurrency`` at once;
    every answer must be a 201."""

    async def one(number: int) -> None:
        body = b'{"email":"c%d@bench.example","firstName":"Bench","tags":["b"]}' % number
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-api-key", key.encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect: the answer ends the request
            raise AssertionError("unreachable")

        statuses = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [201]:
            raise SystemExit(f"request {number} answered {statuses}, not 201")

    async def client(offset: int) -> None:
        for number in range(first + offset, first + count, concurrency):
            await one(number)

    started = time.process_time()
    await asyncio.gather(*(client(offset) for offset in range(concurrency)))
    return (time.process_time() - started) / count


async def prepared(folder: str, name: str) -> tuple[Platform, str]:
    settings = Settings(
        database_url=f"sqlite:///{folder}/{name}.db", secret_key=SECRET_KEY, rate_limit=10**9
    )
    platform = Platform.from_settings(settings)
    await platform.open()
    company = await access.create_company(platform, "Bench")
    _, key = await access.create_api_key(platform, company.id)
    return platform, key


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        served_platform, served_key = await prepared(folder, "served")
        bare_platform, bare_key = await prepared(folder, "bare")
        apps: dict[str, tuple[App, str]] = {
            "served": (create_app(served_platform.settings, served_platform), served_key),
            "bare": (bare_app(bare_platform), bare_key),
        }
        cpu: dict[str, list[float]] = {name: [] for name in apps}
        next_number = 0
        try:
            for app, key in apps.values():  # warm-up: first statements, caches
                await drive(app, key, next_number, 500, args.concurrency)
                next_number += 500
            for number in range(1, args.rounds + 1):
                for name, (app, key) in apps.items():
                    used = await drive(app, key, next_number, args.requests, args.concurrency)
                    next_number += args.requests
                    cpu[name].append(used)
                served, bare = cpu["served"][-1], cpu["bare"][-1]
                print(
                    f"round {number}: served {served * 1e6:.0f} us CPU a request, bare"
                    f" {bare * 1e6:.0f} us; the framework's share {1 - bare / served:.0%}"
                )
        finally:
            await served_platform.close()
            await bare_platform.close()
    served = statistics.median(cpu["served"])
    bare = statistics.median(cpu["bare"])
    print(
        f"POST /customers in process, SQLite, {args.requests} requests a round,"
        f" {args.concurrency} in flight: served {served * 1e6:.0f} us CPU a request (median),"
        f" bare {bare * 1e6:.0f} us; routing, dependencies and middleware"
        f" {(served - bare) * 1e6:.0f} us ({1 - bare / served:.0%})"
    )


if __name__ == "__main__":
    asyncio.run(main())
