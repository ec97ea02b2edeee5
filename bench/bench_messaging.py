"""WhatsApp messaging benchmarks; each prints its figures and the goal (none gates CI).

    make bench-deps
    .venv/bin/python bench/bench_messaging.py accept  [--database postgres] [--seconds 10]
    .venv/bin/python bench/bench_messaging.py drain   [--database postgres] [--events 20000]
    .venv/bin/python bench/bench_messaging.py inbound [--database postgres] [--rate 200]

accept: ``POST /messages/send-template`` requests/s through a real ``bitbybit serve`` with no
worker in it (``BITBYBIT_CONCURRENCY=0``: the sends stay queued), driven by wrk with a new
recipient per request, against ``POST /customers`` through the same kind of serve, back to back;
then checks that every 200 left one message and one queued job.
drain: N template sends queued through the services, then a ``bitbybit worker`` on the Cloud API
channel (a fake Graph API in nginx) timed until every message is ``sent``; against N webhooks
drained by a worker to the nginx sink (``bench_delivery.py throughput``'s approach), same N.
inbound: ``bitbybit serve`` with its worker; signed Meta callbacks at a fixed rate, each
``message.received`` timed from the callback's send to its arrival at a loopback receiver in a
process of its own (the send time, wall clock, is the message's text: the receiver reads it from
the event, so no matching by id is needed and nothing the server stamps is trusted).

The comparisons run in rounds (``--rounds``, default 3) whose two halves run back to back, the
order alternating, and report the median ratio: this machine's speed drifts by tens of percent
over minutes (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from tests.integration.fake_graph import callback, encode, sign, text_message
from tests.integration.servers import serve

from bench_delivery import insert_events, start_worker, stop
from bench_delivery import prepare as prepare_webhooks
from bitbybit.config import Settings
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate, TemplateCreate, TemplateSend
from bitbybit.services import access, messages, numbers, templates, webhooks
from bitbybit.store import Tx
from common import SECRET_KEY, bench_env, database, nginx_sink, percentile, sink_requests

LOG = Path(tempfile.gettempdir()) / "bitbybit-bench-messaging-serve.log"
TEMPLATE = "bench_order_shipped"
PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "bench-access-token"
APP_SECRET = "bench-app-secret"
PACE = 100_000
"""Sends a second per number: high enough that the drain measures the product, not the pacing."""


# -- set-up --------------------------------------------------------------------------------------


def messaging_platform(database_url: str) -> Platform:
    """``common.platform_for`` on the Cloud API channel, unpaced: sends queued through it carry
    its pace (the job records the pace of the process that queued it)."""
    return Platform.from_settings(
        Settings(
            database_url=database_url,
            secret_key=SECRET_KEY,
            allow_private_targets=True,
            allow_http_targets=True,
            rate_limit=1_000_000_000,
            channel="whatsapp-cloud",
            whatsapp_pace=PACE,
            whatsapp_pair_interval=0,
        )
    )


def messaging_env(database_url: str, graph_url: str) -> dict[str, str]:
    """``common.bench_env`` for a process that sends through the fake Graph API, unpaced."""
    return bench_env(
        database_url,
        BITBYBIT_CHANNEL="whatsapp-cloud",
        BITBYBIT_GRAPH_URL=graph_url,
        BITBYBIT_WHATSAPP_PACE=str(PACE),
        BITBYBIT_WHATSAPP_PAIR_INTERVAL="0",
    )


@dataclass
class Account:
    company: str
    key: str


async def prepare(database_url: str, *, receiver: str | None = None) -> Account:
    """A company with an API key, a one-parameter template and a connected Cloud API number;
    with ``receiver``, an endpoint there for ``message.received`` only."""
    platform = messaging_platform(database_url)
    await platform.open()
    try:
        company = await access.create_company(platform, "Bench")
        _, key = await access.create_api_key(platform, company.id)
        tenant = Tenant(company.id, "live")
        template = TemplateCreate(name=TEMPLATE, body="Your order {{1}} has shipped")
        connection = numbers.Connection(
            company.id, PHONE_NUMBER_ID, ACCESS_TOKEN, APP_SECRET, "bench-verify-token"
        )

        async def write(tx: Tx) -> None:
            await templates.create(platform, tx, tenant, template)
            await numbers.connect(platform, tx, connection)

        await platform.run(write)
        if receiver is not None:
            endpoint = EndpointCreate(url=receiver, events=["message.received"])
            await webhooks.create_endpoint(platform, tenant, endpoint)
    finally:
        await platform.close()
    return Account(company.id, key)


async def queue_sends(database_url: str, company: str, count: int) -> None:
    """``count`` template sends to distinct recipients, straight through the services (faster
    than HTTP when the API is not what is measured), 500 to a transaction."""
    platform = messaging_platform(database_url)
    await platform.open(migrate=False)
    tenant = Tenant(company, "live")
    try:
        for start in range(0, count, 500):

            async def batch(tx: Tx, start: int = start) -> None:
                for index in range(start, min(count, start + 500)):
                    data = TemplateSend(
                        to=f"+62813{index:08d}", template_name=TEMPLATE, params=[f"D{index}"]
                    )
                    await messages.send_template(platform, tx, tenant, data)

            await platform.run(batch)
    finally:
        await platform.close()


@asynccontextmanager
async def sql(database_url: str) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """One connection to the benchmark's database; yields ``scalar(query)`` (no parameters:
    each benchmark database holds one company)."""
    if database_url.startswith("sqlite"):
        db = sqlite3.connect(database_url.removeprefix("sqlite:///"))

        async def scalar_sqlite(query: str) -> int:
            return int(db.execute(query).fetchone()[0])

        try:
            yield scalar_sqlite
        finally:
            db.close()
        return
    connection = await asyncpg.connect(database_url)

    async def scalar_postgres(query: str) -> int:
        return int(await connection.fetchval(query))

    try:
        yield scalar_postgres
    finally:
        await connection.close()


async def counts(database_url: str, queries: dict[str, str]) -> dict[str, int]:
    async with sql(database_url) as scalar:
        return {name: await scalar(query) for name, query in queries.items()}


GRAPH_ANSWER = '{"messaging_product":"whatsapp","messages":[{"id":"wamid.$request_id"}]}'
GRAPH_LOCATIONS = (
    "location ~ ^/v[0-9.]+/[0-9]+/messages$ {"
    f" default_type application/json; return 200 '{GRAPH_ANSWER}'; }}"
    " location / { return 404; }"
)


@contextmanager
def fake_graph() -> Iterator[str]:
    """nginx on a free loopback port answering every send as Meta does when it succeeds, with a
    unique wamid (nginx's ``$request_id``, 32 hex digits); yields the base URL for
    ``BITBYBIT_GRAPH_URL``. Any other path gets 404."""
    with nginx_sink(GRAPH_LOCATIONS) as hook:
        yield hook.removesuffix("/hook")


def graph_requests(graph_url: str) -> int:
    """Requests the fake Graph API has answered so far (its stub_status counter)."""
    return sink_requests(f"{graph_url}/")


# -- accept ------------------------------------------------------------------------------------


@dataclass
class Wrk:
    rate: float
    responses: int
    failed: int
    """Non-2xx answers and socket errors."""
    p50: str
    p99: str


def wrk(base_url: str, script: str, seconds: int, connections: int, *args: str) -> Wrk:
    """wrk with one thread (on the other core) and ``script``'s requests."""
    run = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / script),
            base_url,
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = run.stdout

    def found(pattern: str) -> str:
        match = re.search(pattern, out, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no {pattern!r} in wrk's output:\n{out}")
        return match.group(1)

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Wrk(
        rate=float(found(r"Requests/sec:\s+([\d.]+)")),
        responses=int(found(r"(\d+) requests in")),
        failed=(int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(n) for n in errors.groups()) if errors else 0),
        p50=found(r"^\s+50%\s+(\S+)"),
        p99=found(r"^\s+99%\s+(\S+)"),
    )


def accept_customers(args: argparse.Namespace) -> Wrk:
    with database(args.database) as database_url:
        _, key, _, _ = asyncio.run(prepare_webhooks(database_url, []))
        with serve(database_url, LOG, **serve_env(database_url)) as server:
            result = wrk(
                server.base_url, "create_customers.lua", args.seconds, args.connections, key
            )
        found = asyncio.run(
            counts(
                database_url,
                {
                    "customers": "SELECT COUNT(*) FROM customers",
                    "events": "SELECT COUNT(*) FROM events WHERE type = 'customer.created'",
                },
            )
        )
    customers, events = found["customers"], found["events"]
    # wrk does not count the requests in flight when it stops; the server may have committed them
    if (
        result.failed
        or customers != events
        or not 0 <= customers - result.responses <= args.connections
    ):
        sys.exit(
            f"POST /customers: {result.responses} responses ({result.failed} failed) left"
            f" {customers} customers and {events} customer.created events"
        )
    return result


def accept_sends(args: argparse.Namespace) -> Wrk:
    with database(args.database) as database_url:
        account = asyncio.run(prepare(database_url))
        with serve(database_url, LOG, **serve_env(database_url)) as server:
            result = wrk(
                server.base_url,
                "send_template.lua",
                args.seconds,
                args.connections,
                account.key,
                TEMPLATE,
            )
        found = asyncio.run(
            counts(
                database_url,
                {
                    "messages": "SELECT COUNT(*) FROM messages WHERE direction = 'out'",
                    "recipients": "SELECT COUNT(DISTINCT phone) FROM messages",
                    "jobs": "SELECT COUNT(*) FROM jobs WHERE kind = 'whatsapp'"
                    " AND status = 'pending'",
                    "queued": "SELECT COUNT(*) FROM delivery_queue WHERE kind = 'whatsapp'",
                    "paired": "SELECT COUNT(*) FROM messages m JOIN jobs j ON j.id = m.job_id"
                    " WHERE m.status = 'accepted'",
                },
            )
        )
    accepted = found["messages"]
    if (
        result.failed
        or len(set(found.values())) != 1
        or not 0 <= accepted - result.responses <= args.connections
    ):
        sys.exit(f"send-template: {result.responses} responses ({result.failed} failed): {found}")
    return result


def serve_env(database_url: str) -> dict[str, str]:
    """``bitbybit serve`` on the sandbox channel with no worker: what it accepts stays queued."""
    extra = {k: v for k, v in bench_env(database_url).items() if k.startswith("BITBYBIT_")}
    return {**extra, "BITBYBIT_CHANNEL": "sandbox", "BITBYBIT_CONCURRENCY": "0"}


def accept(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")
    rounds: list[tuple[Wrk, Wrk]] = []
    for number in range(args.rounds):
        if number % 2 == 0:
            customers = accept_customers(args)
            sends = accept_sends(args)
        else:
            sends = accept_sends(args)
            customers = accept_customers(args)
        rounds.append((sends, customers))
        print(
            f"round {number + 1}: POST /messages/send-template {sends.rate:,.0f} req/s"
            f" (p50 {sends.p50}, p99 {sends.p99}, {sends.responses} answered 200, each left one"
            f" message and one queued job); POST /customers {customers.rate:,.0f} req/s"
            f" (p50 {customers.p50}, p99 {customers.p99}); ratio"
            f" {sends.rate / customers.rate:.2f}",
            flush=True,
        )
    ratios = sorted(s.rate / c.rate for s, c in rounds)
    print(
        f"database: {args.database}, {args.seconds} s a run, {args.connections} connections,"
        " no worker in the server"
    )
    print(f"send-template: median {statistics.median(s.rate for s, _ in rounds):,.0f} req/s")
    print(f"POST /customers: median {statistics.median(c.rate for _, c in rounds):,.0f} req/s")
    print(
        f"ratio: median {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ") (goal >= 0.80)"
    )


# -- drain -------------------------------------------------------------------------------------


@dataclass
class Drain:
    at_sink: float
    """Requests/s at nginx, from the first arrival to the N-th (``bench_delivery``'s figure)."""
    recorded: float
    """From the first arrival until the queue is empty: every outcome committed."""


async def drain_rates(status_url: str, database_url: str, count: int) -> Drain:
    """Both rates of one drain. Counting at nginx costs the database nothing; the database is
    polled (``delivery_queue`` is empty once every job's outcome is committed, a message's
    ``sent`` in the same transaction) only once all N requests have arrived."""
    base = sink_requests(status_url)
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    polls = 0
    while True:
        polls += 1
        received = sink_requests(status_url) - base - polls  # the status requests count too
        now = time.perf_counter()
        if first is None and received > 0:
            first = (now, received)
        if first is not None and received >= count and now > first[0]:
            break
        if now - started > 600:
            raise RuntimeError(f"only {received} of {count} requests arrived")
        await asyncio.sleep(0.05)
    at_sink = (received - first[1]) / (now - first[0])
    async with sql(database_url) as scalar:
        while (left := await scalar("SELECT COUNT(*) FROM delivery_queue")) > 0:
            if time.perf_counter() - now > 120:
                raise RuntimeError(f"{left} jobs still queued 2 minutes after the last request")
            await asyncio.sleep(0.01)
    done = time.perf_counter()
    return Drain(at_sink, (count - first[1]) / (done - first[0]))


def drain_webhooks(args: argparse.Namespace, hook: str) -> Drain:
    with database(args.database) as database_url:
        company, _, _, _ = asyncio.run(prepare_webhooks(database_url, [hook]))
        asyncio.run(insert_events(database_url, company, args.events))
        worker = start_worker(bench_env(database_url), args.concurrency)
        try:
            rates = asyncio.run(drain_rates(hook, database_url, args.events))
        finally:
            stop(worker)
        found = asyncio.run(
            counts(
                database_url,
                {"succeeded": "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'"},
            )
        )
    if found["succeeded"] != args.events:
        raise RuntimeError(f"{found['succeeded']} of {args.events} deliveries succeeded")
    return rates


def drain_sends(args: argparse.Namespace, graph: str) -> Drain:
    with database(args.database) as database_url:
        account = asyncio.run(prepare(database_url))
        asyncio.run(queue_sends(database_url, account.company, args.events))
        worker = start_worker(messaging_env(database_url, graph), args.concurrency)
        try:
            rates = asyncio.run(drain_rates(f"{graph}/", database_url, args.events))
        finally:
            stop(worker)
        found = asyncio.run(
            counts(
                database_url,
                {
                    "sent": "SELECT COUNT(*) FROM messages WHERE status = 'sent'",
                    "wamids": "SELECT COUNT(DISTINCT wa_id) FROM messages",
                    "events": "SELECT COUNT(*) FROM events WHERE type = 'message.status.updated'",
                },
            )
        )
    if set(found.values()) != {args.events}:
        raise RuntimeError(f"after {args.events} sends: {found}")
    return rates


def drain(args: argparse.Namespace) -> None:
    rounds: list[tuple[Drain, Drain]] = []
    with nginx_sink() as hook, fake_graph() as graph:
        for number in range(args.rounds):
            if number % 2 == 0:
                webhooks_drained = drain_webhooks(args, hook)
                sends = drain_sends(args, graph)
            else:
                sends = drain_sends(args, graph)
                webhooks_drained = drain_webhooks(args, hook)
            rounds.append((sends, webhooks_drained))
            print(
                f"round {number + 1}: sends {sends.recorded:,.0f}/s until all sent"
                f" ({sends.at_sink:,.0f}/s at the fake Graph API); webhooks"
                f" {webhooks_drained.recorded:,.0f}/s until all recorded"
                f" ({webhooks_drained.at_sink:,.0f}/s at the sink); ratio"
                f" {sends.recorded / webhooks_drained.recorded:.2f}",
                flush=True,
            )
    ratios = sorted(s.recorded / w.recorded for s, w in rounds)
    at_sink = sorted(s.at_sink / w.at_sink for s, w in rounds)
    print(f"database: {args.database}, {args.events} each, concurrency {args.concurrency}")
    print(f"sends: median {statistics.median(s.recorded for s, _ in rounds):,.0f}/s until sent")
    print(
        f"webhooks: median {statistics.median(w.recorded for _, w in rounds):,.0f}/s until recorded"
    )
    print(
        f"ratio: median {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f") (goal >= 0.70); at nginx: median {statistics.median(at_sink):.2f}"
    )


# -- inbound -----------------------------------------------------------------------------------


async def receiver() -> None:
    """The loopback receiver of ``inbound``, in a process of its own (``_receiver``).

    Like ``latency_receiver.py``, which it cannot be: that one times deliveries from the
    payload's ``createdAt``, which ``message.received`` does not have. Here the time is the
    message's text, the wall-clock second the callback was sent (both processes read the same
    clock); ``GET /results`` returns the latencies (ms, JSON), ``DELETE /results`` forgets them.
    """
    latencies: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        arrived = time.time()
        payload = orjson.loads(await request.read())
        latencies.append((arrived - float(payload["body"])) * 1000)
        return web.Response(text="ok")

    async def results(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(latencies), content_type="application/json")

    async def forget(request: web.Request) -> web.Response:
        latencies.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    app.router.add_get("/results", results)
    app.router.add_delete("/results", forget)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gc.collect()
    gc.freeze()  # no full collection walks the start-up objects mid-run
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]  # started
    await asyncio.Event().wait()


async def post_callbacks(
    args: argparse.Namespace, base_url: str, receiver_url: str
) -> tuple[list[float], list[float]]:
    """One second of warm-up at the rate (uncounted: the server opens its connections, prepares
    its statements and creates the senders' customers), then ``--seconds`` measured. Returns
    (send → arrival, callback response times), in ms."""
    responses: list[float] = []
    url = f"{base_url}/whatsapp/webhooks/meta"
    async with aiohttp.ClientSession() as session:

        async def one(index: int, timed: bool) -> None:
            sender = index % args.senders if args.senders else index
            started = time.perf_counter()
            message = text_message(
                f"wamid.bench{index:012d}",
                f"62815{sender:08d}",
                repr(time.time()),
                int(time.time()),
            )
            raw = encode(callback(PHONE_NUMBER_ID, messages=[message]))
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(raw, APP_SECRET),
            }
            async with session.post(url, data=raw, headers=headers) as response:
                answer = await response.read()
            if response.status != 200 or orjson.loads(answer) != {"received": 1, "statuses": 0}:
                raise RuntimeError(f"callback {index}: {response.status} {answer!r}")
            if timed:
                responses.append((time.perf_counter() - started) * 1000)

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
                async with session.get(f"{receiver_url}/results") as response:
                    millis: list[float] = await response.json()
                if len(millis) >= count or time.perf_counter() > deadline:
                    async with session.delete(f"{receiver_url}/results"):
                        return millis
                await asyncio.sleep(0.2)

        await at_rate(0, args.rate, timed=False)
        return await at_rate(args.rate, args.rate * args.seconds, timed=True), responses


def inbound(args: argparse.Namespace) -> None:
    receiver_process = subprocess.Popen(
        [sys.executable, __file__, "_receiver"], stdout=subprocess.PIPE
    )
    try:
        assert receiver_process.stdout is not None
        receiver_url = f"http://127.0.0.1:{int(receiver_process.stdout.readline())}"
        with database(args.database) as database_url:
            asyncio.run(prepare(database_url, receiver=f"{receiver_url}/hook"))
            extra = {k: v for k, v in bench_env(database_url).items() if k.startswith("BITBYBIT_")}
            with serve(database_url, LOG, **extra) as server:
                millis, responses = asyncio.run(post_callbacks(args, server.base_url, receiver_url))
    finally:
        receiver_process.kill()
        receiver_process.wait()
    expected = args.rate * args.seconds
    senders = f"{args.senders} senders" if args.senders else "a new sender each"
    print(f"database: {args.database}, {args.rate} callbacks/s for {args.seconds} s, {senders}")
    print(f"message.received arrived: {len(millis)} of {expected}")
    if not millis:
        sys.exit("no message.received arrived")
    print(
        f"callback sent -> message.received at the receiver: p50 {percentile(millis, 0.5):.1f} ms,"
        f" p99 {percentile(millis, 0.99):.1f} ms, max {max(millis):.1f} ms"
        " (goals: p50 <= 10 ms, p99 <= 50 ms)"
    )
    print(
        f"callback response time (POST /whatsapp/webhooks/meta, 200 once stored):"
        f" p50 {percentile(responses, 0.5):.1f} ms, p99 {percentile(responses, 0.99):.1f} ms"
    )
    if len(millis) < expected:
        sys.exit(f"only {len(millis)} of {expected} message.received arrived")


def main() -> None:
    if sys.argv[1:] == ["_receiver"]:
        asyncio.run(receiver())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("accept", "drain", "inbound"))
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3, help="accept, drain: rounds to run")
    parser.add_argument("--seconds", type=int, default=10, help="accept: per run; inbound")
    parser.add_argument("--connections", type=int, default=32, help="accept: wrk's connections")
    parser.add_argument("--events", type=int, default=20_000, help="drain: sends and webhooks")
    parser.add_argument("--concurrency", type=int, default=256, help="drain: the worker's")
    parser.add_argument("--rate", type=int, default=200, help="inbound: callbacks a second")
    parser.add_argument(
        "--senders",
        type=int,
        default=None,
        help="inbound: distinct customers writing in turn; default: the rate, so the warm-up"
        " second creates them all (0: a new customer each callback)",
    )
    args = parser.parse_args()
    if args.senders is None:
        args.senders = args.rate
    {"accept": accept, "drain": drain, "inbound": inbound}[args.mode](args)


if __name__ == "__main__":
    main()
