"""Webhook delivery benchmarks; each prints its figures (none gates CI).

    make bench-deps
    .venv/bin/python bench/bench_delivery.py throughput [--events 20000] [--database postgres]
    .venv/bin/python bench/bench_delivery.py latency    [--rate 200] [--seconds 10]
    .venv/bin/python bench/bench_delivery.py isolation  [--events 10000]
    .venv/bin/python bench/bench_delivery.py backlog    [--backlog 1000000]

throughput: N customers created through a real ``bitbybit serve`` (no worker in it), then a
``bitbybit worker`` is timed until all N deliveries are recorded succeeded; the same round times a
bare aiohttp loop posting the same signed requests to the same nginx sink at each concurrency of
``--bare-concurrency`` (16, 64 and 256; on the standard loop and uvloop) and compares the worker
with the best of them: the ceiling is the best configuration of the alternative, not the
worker's own setting.
latency: ``bitbybit serve`` with its in-process worker, customers created at a fixed rate, each
delivery's arrival at a loopback receiver compared with the event's commit time (``createdAt``).
isolation: one endpoint on nginx alone, then beside 9 endpoints that accept connections and never
answer; the healthy endpoint's delivery rate in both runs.
backlog: a small backlog's drain rate, then N pending deliveries drained by one worker, with
the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import aiohttp

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from tests.integration.servers import BITBYBIT, serve

from bitbybit.delivery.http import HttpClient
from bitbybit.delivery.ssrf import GuardedResolver, TargetPolicy, check_url
from bitbybit.models import Tenant
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store.sql import SqlTx
from bitbybit.webhooks.signing import webhook_headers
from common import (
    bench_env,
    database,
    nginx_sink,
    percentile,
    platform_for,
    seed_backlog,
    sink_requests,
)

LOG = Path(tempfile.gettempdir()) / "bitbybit-bench-serve.log"


async def prepare(database_url: str, hooks: list[str]) -> tuple[str, str, list[str], list[str]]:
    """A company, an API key and one endpoint per hook: (company, key, secrets, endpoint ids)."""
    platform = platform_for(database_url)
    await platform.open()
    try:
        company = await access.create_company(platform, "Bench")
        _, key = await access.create_api_key(platform, company.id)
        secrets, ids = [], []
        for hook in hooks:
            endpoint, secret = await webhooks.create_endpoint(
                platform, Tenant(company.id, "live"), EndpointCreate(url=hook)
            )
            secrets.append(secret)
            ids.append(endpoint.id)
    finally:
        await platform.close()
    return company.id, key, secrets, ids


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


async def insert_events(database_url: str, company: str, count: int) -> None:
    """Events straight through the services (faster than HTTP when the API is not measured)."""
    platform = platform_for(database_url)
    await platform.open(migrate=False)
    tenant = Tenant(company, "live")
    try:
        for start in range(0, count, 500):

            async def batch(tx: object, start: int = start) -> None:
                for index in range(start, min(count, start + 500)):
                    data = CustomerCreate(email=f"s{index}@bench.example", firstName="Bench")
                    await customers.insert(platform, tx, tenant, data)  # type: ignore[arg-type]  # a Tx

            await platform.run(batch)
    finally:
        await platform.close()


PROFILE: list[str] = []
"""``--profile FILE``: the worker runs under py-spy, which writes collapsed stacks to FILE."""
PROFILE_RATE: list[int] = [100]
"""``--profile-rate``: py-spy's samples a second (more resolve more of a short run)."""


PROFILERS: list[subprocess.Popen[bytes]] = []


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [*BITBYBIT, "worker", "--concurrency", str(concurrency)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    if PROFILE:
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--format", "raw", "--nonblocking", "--threads"]
        command += ["--rate", str(PROFILE_RATE[0]), "-o", PROFILE[0]]
        PROFILERS.append(
            subprocess.Popen(
                [*command, "--pid", str(worker.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return worker


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    while PROFILERS:  # py-spy writes its file when the worker is gone
        PROFILERS.pop().wait(60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bare_rate(hook: str, secret: str, count: int, concurrency: int) -> tuple[float, float]:
    """The bare loop on the standard event loop and on uvloop; the faster is the ceiling.

    Returns (requests/s, CPU seconds per request) of the faster run.
    """
    import uvloop

    runs = [measured(asyncio.run, bare_loop(hook, secret, count, concurrency))]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runs.append(measured(runner.run, bare_loop(hook, secret, count, concurrency)))
    rate, cpu = max(runs)
    return rate, cpu / count


def best_bare(
    hook: str, secret: str, count: int, sweep: list[int]
) -> tuple[float, float, int, dict[int, float]]:
    """The bare loop at each concurrency of ``sweep``: (the best rate, its CPU per request, the
    concurrency that made it, every concurrency's rate)."""
    found = {level: bare_rate(hook, secret, count, level) for level in sweep}
    best = max(found, key=lambda level: found[level][0])
    return found[best][0], found[best][1], best, {k: v[0] for k, v in found.items()}


def measured(
    run: Callable[[Coroutine[Any, Any, float]], float], loop: Coroutine[Any, Any, float]
) -> tuple[float, float]:
    cpu = time.process_time()
    rate = run(loop)
    return rate, time.process_time() - cpu


async def bare_loop(hook: str, secret: str, count: int, concurrency: int) -> float:
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


async def own_loop(hook: str, secret: str, count: int, concurrency: int) -> float:
    """The bare loop on the worker's own HTTP client (``delivery.http``) instead of aiohttp: the
    ceiling of the worker's sending alone, without its claims, records and bookkeeping."""
    body = b'{"id":"cust_x","email":"c@bench.example","firstName":"Bench"}'
    counter = iter(range(count))
    policy = TargetPolicy(allow_private=True, allow_http=True)
    target = check_url(hook, policy)
    client = HttpClient(GuardedResolver(policy))

    async def loop() -> None:
        for index in counter:
            headers = webhook_headers(
                f"evt_{index}", "customer.created", body, [secret], int(time.time())
            )
            await client.post(target, body, headers, 4096)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    finally:
        await client.close()
    return count / (time.perf_counter() - started)


def own_rate(hook: str, secret: str, count: int, concurrency: int) -> float:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(own_loop(hook, secret, count, concurrency))


# -- the benchmarks -------------------------------------------------------------------------------


def throughput(args: argparse.Namespace) -> None:
    """Rounds of (bare loop, bitbybit) back to back: this machine's speed drifts by tens of
    percent over minutes, so each round's ratio compares runs made a few seconds apart."""
    rounds: list[tuple[float, float, float]] = []
    owns: list[float] = []
    cpu_ratios: list[float] = []
    with nginx_sink() as hook:
        for _ in range(args.rounds):
            with database(args.database) as database_url:
                company, key, (secret,), (endpoint_id,) = asyncio.run(prepare(database_url, [hook]))
                env = bench_env(database_url)
                extra = {k: v for k, v in env.items() if k.startswith("BITBYBIT_")}
                with serve(database_url, LOG, **{**extra, "BITBYBIT_CONCURRENCY": "0"}) as server:
                    created_s = asyncio.run(create_customers(server.base_url, key, args.events))
                bare, bare_cpu, best_at, swept = best_bare(
                    hook, secret, args.events, args.bare_concurrency
                )
                own = own_rate(hook, secret, args.events, best_at)
                worker = start_worker(env, args.concurrency)
                try:
                    rate = sink_rate(hook, args.events, pid=worker.pid)
                    recorded = asyncio.run(
                        count_succeeded(database_url, company, endpoint_id, args.events)
                    )
                finally:
                    stop(worker)
                if recorded < args.events:
                    raise RuntimeError(f"only {recorded} of {args.events} attempts recorded")
            rounds.append((args.events / created_s, rate, bare))
            owns.append(own)
            worker_cpu = sum(CPU_USED[-1].values())
            cpu_ratios.append(bare_cpu / worker_cpu)
            sweep_text = ", ".join(f"{level}: {r:,.0f}/s" for level, r in sorted(swept.items()))
            threads = ", ".join(
                f"{name} {seconds * 1e6:.0f}"
                for name, seconds in sorted(CPU_USED[-1].items(), key=lambda item: -item[1])
                if seconds * 1e6 >= 1
            )
            print(
                f"round {len(rounds)}: created {args.events / created_s:,.0f} customers/s"
                f" through the API; delivered {rate:,.0f} webhooks/s at the sink, every attempt"
                f" recorded as succeeded; bare aiohttp loop at its best {bare:,.0f} requests/s"
                f" ({best_at} connections; {sweep_text});"
                f" ratio {rate / bare:.2f}; the bare loop on the worker's own HTTP client"
                f" {own:,.0f} requests/s ({rate / own:.2f} of it);"
                f" CPU per request: worker {worker_cpu * 1e6:.0f} us"
                f" ({threads}), bare loop {bare_cpu * 1e6:.0f} us",
                flush=True,
            )
    ratios = sorted(rate / bare for _, rate, bare in rounds)
    print(f"database: {args.database}, events: {args.events}, concurrency: {args.concurrency}")
    print(f"delivered: median {statistics.median(r for _, r, _ in rounds):,.0f} webhooks/s")
    print(f"bare aiohttp loop: median {statistics.median(b for _, _, b in rounds):,.0f} requests/s")
    print(
        f"ratio: median {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ") (goal >= 0.80 of the best bare configuration)"
    )
    of_own = [rate / own for (_, rate, _), own in zip(rounds, owns, strict=True)]
    print(
        f"the bare loop on the worker's own HTTP client: median {statistics.median(owns):,.0f}"
        f" requests/s; the worker made {statistics.median(of_own):.2f} of it (median)"
    )
    print(
        f"CPU-time ratio (bare loop's CPU per request / the worker's): median"
        f" {statistics.median(cpu_ratios):.2f}; the rate ratio when neither is short of CPU"
    )


def latency(args: argparse.Namespace) -> None:
    """One second of warm-up at the rate (the server opens its pooled connections and prepares
    its statements), not counted; then ``--seconds`` at the rate, measured."""
    responses: list[float] = []

    async def run(base_url: str, key: str, receiver: str) -> list[float]:
        headers = {"x-api-key": key, "content-type": "application/json"}
        async with aiohttp.ClientSession(base_url) as session:

            async def one(index: int, timed: bool) -> None:
                body = f'{{"email":"l{index}@bench.example","firstName":"Bench"}}'
                sent = time.perf_counter()
                async with session.post(
                    "/customer/open/v1/customers", data=body, headers=headers
                ) as response:
                    assert response.status == 201, await response.text()
                if timed:
                    responses.append((time.perf_counter() - sent) * 1000)

            async def at_rate(first: int, count: int, timed: bool) -> list[float]:
                started = time.perf_counter()
                tasks = []
                for index in range(count):
                    delay = started + index / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one(first + index, timed)))
                await asyncio.gather(*tasks)
                deadline = time.perf_counter() + 30
                while True:
                    async with session.get(f"{receiver}/results") as response:
                        millis: list[float] = await response.json()
                    if len(millis) >= count or time.perf_counter() > deadline:
                        async with session.delete(f"{receiver}/results"):
                            return millis
                    await asyncio.sleep(0.2)

            await at_rate(0, args.rate, timed=False)
            return await at_rate(args.rate, args.rate * args.seconds, timed=True)

    receiver_process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("latency_receiver.py"))],
        stdout=subprocess.PIPE,
    )
    try:
        assert receiver_process.stdout is not None
        receiver = f"http://127.0.0.1:{int(receiver_process.stdout.readline())}"
        with database(args.database) as database_url:
            _, key, _, _ = asyncio.run(prepare(database_url, [f"{receiver}/hook"]))
            extra = {k: v for k, v in bench_env(database_url).items() if k.startswith("BITBYBIT_")}
            with serve(database_url, LOG, **extra) as server:
                millis = asyncio.run(run(server.base_url, key, receiver))
    finally:
        receiver_process.kill()
    print(f"database: {args.database}, {args.rate} events/s for {args.seconds} s")
    print(f"arrived: {len(millis)} of {args.rate * args.seconds}")
    print(
        f"createdAt -> receipt: p50 {percentile(millis, 0.5):.1f} ms,"
        f" p99 {percentile(millis, 0.99):.1f} ms, max {max(millis):.1f} ms"
        " (goals for commit -> receipt: p50 <= 10 ms, p99 <= 50 ms)"
    )
    print(
        f"API response time (POST /customers): p50 {percentile(responses, 0.5):.1f} ms,"
        f" p99 {percentile(responses, 0.99):.1f} ms"
    )


def silent_server() -> tuple[subprocess.Popen[bytes], list[int]]:
    """9 ports that accept connections and never answer, in a process of their own."""
    script = """
import asyncio, contextlib

async def hold(reader, writer):  # read until the client hangs up; never answer
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass
    writer.close()

async def main():
    servers = [await asyncio.start_server(hold, "127.0.0.1", 0) for _ in range(9)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None
    ports = [int(port) for port in process.stdout.readline().split()]
    return process, ports


async def disable_others(database_url: str, endpoint_id: str) -> None:
    """Every endpoint but ``endpoint_id`` disabled, with its deliveries left in the tables and
    the queue as they are (the API would hold them): what their rows alone cost the others."""
    platform = platform_for(database_url)
    await platform.open()
    try:
        async with platform.store.write() as tx:
            await cast(SqlTx, tx).db.execute(
                "UPDATE webhook_endpoints SET status = 'disabled' WHERE id <> $1", endpoint_id
            )
    finally:
        await platform.close()


def isolation(args: argparse.Namespace) -> None:
    """Rounds of (alone, beside 9 silent endpoints) back to back, as for throughput; with
    ``--disabled``, a third run beside 9 disabled endpoints (their deliveries in the tables,
    never claimed): what the others' rows cost, apart from their attempts."""
    ratios: list[float] = []
    silent, ports = silent_server()
    others = [f"http://127.0.0.1:{p}/hook" for p in ports]
    try:
        with nginx_sink() as hook:
            for _ in range(args.rounds):
                rates = {}
                cpu: dict[str, float] = {}
                halves = [("alone", [hook]), ("beside 9 silent endpoints", [hook, *others])]
                if args.disabled:
                    halves.append(("beside 9 disabled endpoints", [hook, *others]))
                for label, hooks in halves:
                    with database(args.database) as database_url:
                        company, _, _, ids = asyncio.run(prepare(database_url, hooks))
                        asyncio.run(insert_events(database_url, company, args.events))
                        if "disabled" in label:
                            asyncio.run(disable_others(database_url, ids[0]))
                        os.sync()  # the set-up's writes reach the disk before the worker starts
                        worker = start_worker(bench_env(database_url), args.concurrency)
                        try:
                            rates[label] = sink_rate(hook, args.events, pid=worker.pid)
                            cpu[label] = sum(CPU_USED[-1].values())
                        finally:
                            stop(worker)
                        delivered = asyncio.run(
                            count_succeeded(database_url, company, ids[0], args.events)
                        )
                        if delivered < args.events:
                            raise RuntimeError(f"only {delivered} of {args.events} recorded")
                ratios.append(rates["beside 9 silent endpoints"] / rates["alone"])
                print(
                    f"round {len(ratios)}: healthy endpoint alone {rates['alone']:,.0f}"
                    f" deliveries/s, beside 9 silent endpoints"
                    f" {rates['beside 9 silent endpoints']:,.0f}/s: {ratios[-1]:.0%}; the worker's"
                    f" CPU per healthy delivery {cpu['alone'] * 1e6:.0f} us alone,"
                    f" {cpu['beside 9 silent endpoints'] * 1e6:.0f} us beside",
                    flush=True,
                )
                if args.disabled:
                    disabled = rates["beside 9 disabled endpoints"]
                    print(
                        f"  beside 9 disabled endpoints {disabled:,.0f}/s:"
                        f" {disabled / rates['alone']:.0%} of alone, at"
                        f" {cpu['beside 9 disabled endpoints'] * 1e6:.0f} us a delivery",
                        flush=True,
                    )
    finally:
        silent.kill()
    print(
        f"database: {args.database}; kept {statistics.median(ratios):.0%} of its solo throughput"
        f" (median; rounds: {', '.join(f'{r:.0%}' for r in sorted(ratios))}) (goal >= 90%)"
    )


def cpu_seconds(pid: int) -> dict[str, float]:
    """User and system CPU time the process has used so far: its main thread, and the rest."""
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            name = "event loop" if task.name == str(pid) else "other threads"
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            used[name] = used.get(name, 0.0) + seconds
    return used


def sink_rate(hook: str, count: int, limit_s: float = 600, pid: int | None = None) -> float:
    """Requests/s the nginx sink received, from the first to the ``count``-th.

    Counted by nginx itself, so measuring costs the database nothing (a COUNT over a large
    deliveries table in another process would take CPU from the worker being measured). With
    ``pid``, the CPU time that process used over the same span goes to ``CPU_USED``.
    """
    base = sink_requests(hook)
    started = time.perf_counter()
    first: tuple[float, int, dict[str, float]] | None = None
    polls = 0
    while True:
        polls += 1
        received = sink_requests(hook) - base - polls  # the status requests count too
        now = time.perf_counter()
        if first is None and received > 0:
            first = (now, received, cpu_seconds(pid) if pid else {})
        if received >= count and first is not None and now > first[0]:
            if pid:
                used = cpu_seconds(pid)
                CPU_USED.append(
                    {
                        name: (seconds - first[2].get(name, 0.0)) / (received - first[1])
                        for name, seconds in used.items()
                    }
                )
            return (received - first[1]) / (now - first[0])
        if now - started > limit_s:
            raise RuntimeError(f"only {received} of {count} arrived")
        time.sleep(0.05)


CPU_USED: list[dict[str, float]] = []
"""CPU seconds per delivery of the measured worker runs, by thread."""


async def count_succeeded(database_url: str, company: str, endpoint_id: str, count: int) -> int:
    """The healthy endpoint's recorded successes, once the last results are written."""
    platform = platform_for(database_url)
    await platform.open(migrate=False)
    tenant = Tenant(company, "live")
    try:
        deadline = time.perf_counter() + 30
        while True:
            async with platform.store.read() as tx:
                page = await tx.list_deliveries(
                    tenant, endpoint_id=endpoint_id, statuses=("succeeded",), limit=1
                )
            if page.total >= count or time.perf_counter() > deadline:
                return page.total
            await asyncio.sleep(0.2)
    finally:
        await platform.close()


def backlog(args: argparse.Namespace) -> None:
    """The small backlog drains before and after the large one, and the large one's rate is
    compared with the mean of the two: the large drain takes minutes, over which this machine's
    speed drifts."""
    with nginx_sink() as hook:
        results: dict[str, list[float]] = {"small backlog": [], "large backlog": []}
        for label, size in (
            ("small backlog", args.small),
            ("large backlog", args.backlog),
            ("small backlog", args.small),
        ):
            with database(args.database) as database_url:
                company, _, _, (endpoint_id,) = asyncio.run(prepare(database_url, [hook]))
                seeded = time.perf_counter()
                asyncio.run(seed_backlog(database_url, company, endpoint_id, size))
                took = time.perf_counter() - seeded
                print(f"{label}: seeded {size:,} pending deliveries in {took:.0f} s")
                worker = start_worker(bench_env(database_url), args.concurrency)
                try:
                    rate, peak = watch_drain(hook, size, worker.pid)
                    recorded = asyncio.run(
                        count_succeeded(database_url, company, endpoint_id, size)
                    )
                finally:
                    stop(worker)
                if recorded < size:
                    raise RuntimeError(f"only {recorded} of {size} attempts recorded")
                results[label].append(rate)
                print(
                    f"{label}: {rate:,.0f} deliveries/s, worker peak RSS {peak:.0f} MB", flush=True
                )
    ratio = results["large backlog"][0] / statistics.mean(results["small backlog"])
    print(
        f"database: {args.database}; large/small drain rate {ratio:.0%} (small: mean of the runs"
        " before and after) (goal >= 90%, RSS < 300 MB)"
    )


def watch_drain(hook: str, size: int, pid: int) -> tuple[float, float]:
    """The drain rate at the sink, sampling the worker's RSS meanwhile: (deliveries/s, MB)."""
    done = threading.Event()
    rate: list[float] = []

    def watch() -> None:
        rate.append(sink_rate(hook, size, limit_s=3600))
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    peak = 0.0
    while not done.wait(0.5):
        peak = max(peak, rss_mb(pid))
    return rate[0], max(peak, rss_mb(pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("throughput", "latency", "isolation", "backlog"))
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="throughput, isolation: rounds to run"
    )
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--bare-concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[16, 64, 256],
        help="throughput: the bare loop's concurrencies to sweep (the best is the ceiling)",
    )
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument(
        "--disabled",
        action="store_true",
        help="isolation: also a run beside 9 disabled endpoints (their rows, not their attempts)",
    )
    parser.add_argument("--profile", metavar="FILE", help="profile the worker with py-spy")
    parser.add_argument(
        "--profile-rate", type=int, default=100, help="--profile: py-spy's samples a second"
    )
    args = parser.parse_args()
    if args.profile:
        PROFILE.append(args.profile)
        PROFILE_RATE[0] = args.profile_rate
    {"throughput": throughput, "latency": latency, "isolation": isolation, "backlog": backlog}[
        args.mode
    ](args)


if __name__ == "__main__":
    main()
