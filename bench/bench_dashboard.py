"""The dashboard's delivery history on a large company: response times of its pages.

    .venv/bin/python bench/bench_dashboard.py [--deliveries 1000000] [--requests 50]

On the local PostgreSQL (a database of its own, created and dropped afterwards, as every
benchmark's: ``common.database``): one company with N
deliveries over 30 days (N/2 events of ten types, the rarest 0.1 % of them, each delivered to two
of four endpoints; 2 % failed after 5 attempts, 0.5 % held, the last two hours partly pending;
an attempt row for each attempt made) and two other companies with N/4 deliveries each, written
in bulk with ``generate_series`` and analyzed. Then a real ``bitbybit serve`` (no worker in it),
a dashboard user made with ``bitbybit users create``, signed in through the form, and each page
asked for ``--requests`` times in turn: p50/p95/p99 in milliseconds per case.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from tests.integration.servers import cli, serve

from bitbybit.models import Tenant
from bitbybit.schemas import EndpointCreate
from bitbybit.services import access, webhooks
from common import bench_env, database, percentile, platform_for

LOG = Path(tempfile.gettempdir()) / "bitbybit-bench-dashboard-serve.log"
DAY_MS = 24 * 3600 * 1000
SPAN_MS = 30 * DAY_MS
EMAIL = "bench@dashboard.example"
PASSWORD = "bench-dashboard-password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OLDER = re.compile(r'<a rel="next" href="([^"]+)"')

TYPES = """CASE WHEN r < 300 THEN 'customer.updated' WHEN r < 550 THEN 'order.updated'
 WHEN r < 700 THEN 'order.created' WHEN r < 800 THEN 'customer.created'
 WHEN r < 900 THEN 'message.status.updated' WHEN r < 960 THEN 'message.received'
 WHEN r < 990 THEN 'product.updated' WHEN r < 997 THEN 'customer.deleted'
 WHEN r < 999 THEN 'product.created' ELSE 'product.deleted' END"""
"""An event's type from ``r`` in [0, 1000): from 30 % (customer.updated) down to 0.1 %
(product.deleted)."""
RARE_TYPE = "product.deleted"
COMMON_TYPE = "customer.updated"
MIDDLE_TYPE = "customer.deleted"


def stamp(ms: str) -> str:
    """SQL for ``ids.time_prefix`` of the bigint expression ``ms``: seeded ids begin with their
    time as real ones do, so each row lands in its day's partition (docs/retention.md)."""
    digits = "'0123456789abcdefghijklmnopqrstuvwxyz'"
    return " || ".join(
        f"substr({digits}, (({ms}) / {36**k} % 36)::int + 1, 1)" for k in range(8, -1, -1)
    )


async def seed_company(
    connection: asyncpg.Connection,
    company: str,
    tag: str,
    endpoints: list[str],
    size: int,
    now: int,
) -> None:
    """``size`` deliveries of ``size // 2`` events for ``company`` over the 30 days to ``now``.

    Event ``i`` is created at ``t0 + i * span / events`` and delivered to two of the four
    endpoints (``i`` even: the first two, odd: the last two); delivery ``j = 2i + k`` is failed,
    held, pending (in its last two hours) or succeeded by ``j``'s hash. Ids begin with their
    creation time, as real ones do. Rows are written the way the outbox and the worker would
    write them.
    """
    events = max(1, size // 2)
    t0 = now - SPAN_MS
    await connection.execute(
        "INSERT INTO events (id, company_id, mode, type, payload, created_at)"  # noqa: S608  # constants of this file
        f" SELECT 'evt_' || {stamp('$2::bigint + (i::bigint * $3::bigint) / $4')}"
        f" || '{tag}' || lpad(i::text, 11, '0'), $1, 'live', {TYPES},"
        ' convert_to(\'{"id":"cust_\' || i || \'","email":"user\' || i'
        ' || \'@example.com","firstName":"Bench","lastName":"User \' || i'
        ' || \'","phoneNumber":null,"tags":["bench"],"addresses":[]}\', \'UTF8\'),'
        " $2::bigint + (i::bigint * $3::bigint) / $4"
        " FROM (SELECT i, (i * 503 + 17) % 1000 AS r FROM generate_series(0, $4 - 1) AS i) s",
        company,
        t0,
        SPAN_MS,
        events,
    )
    created = "$3::bigint + (i::bigint * $4::bigint) / $6"
    status = (
        "CASE WHEN h < 20 THEN 'failed' WHEN h < 25 THEN 'held'"
        " WHEN created_at > $5::bigint - 7200000 AND h < 400 THEN 'pending' ELSE 'succeeded' END"
    )
    await connection.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status, event_type,"  # noqa: S608  # constants
        " attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at)"
        f" SELECT id, event_id, endpoint_id, $1, 'live', status, {TYPES},"
        " CASE status WHEN 'failed' THEN 5 WHEN 'held' THEN 0 ELSE 1 END,"
        " CASE status WHEN 'pending' THEN $5::bigint + 60000 ELSE created_at END,"
        " CASE status WHEN 'failed' THEN 500 WHEN 'pending' THEN 503"
        " WHEN 'succeeded' THEN 200 END,"
        " CASE status WHEN 'failed' THEN 'HTTP 500' WHEN 'pending' THEN 'HTTP 503' END,"
        " created_at, created_at + CASE status WHEN 'failed' THEN 9300000 ELSE 50 END"
        f" FROM (SELECT *, {status} AS status FROM ("
        f"  SELECT 'dlv_' || {stamp(created)} || '{tag}' || lpad((2 * i + k)::text, 11, '0')"
        " AS id,"
        f"  'evt_' || {stamp(created)} || '{tag}' || lpad(i::text, 11, '0') AS event_id,"
        "   ($2::text[])[(i % 2) * 2 + k + 1] AS endpoint_id,"
        "   ((2 * i + k) * 761) % 1000 AS h, (i * 503 + 17) % 1000 AS r,"
        "   $3::bigint + (i::bigint * $4::bigint) / $6 AS created_at"
        "  FROM generate_series(0, $6 - 1) AS i, (VALUES (0), (1)) AS kk(k)) s) d",
        company,
        endpoints,
        t0,
        SPAN_MS,
        now,
        events,
    )
    await connection.execute(
        "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
        " status_code, error, response_body, worker)"
        " SELECT d.id, n, d.created_at + (n - 1) * 60000, 20 + (n * 7) % 50,"
        " d.last_status_code, d.last_error,"
        " CASE WHEN d.last_error IS NULL THEN convert_to('ok', 'UTF8')"
        " ELSE convert_to('{\"error\":\"upstream unavailable\"}', 'UTF8') END, 'bench'"
        " FROM deliveries d, generate_series(1, d.attempts::int) AS n WHERE d.company_id = $1",
        company,
    )
    await connection.execute(
        "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
        " SELECT id, endpoint_id, next_attempt_at, 'webhook' FROM deliveries"
        " WHERE company_id = $1 AND status = 'pending'",
        company,
    )


async def seed(database_url: str, size: int) -> tuple[str, list[str]]:
    """The companies, their endpoints and rows; returns the big company and its endpoints."""
    platform = platform_for(database_url)
    await platform.open()
    companies: list[tuple[str, str, list[str], int]] = []
    try:
        for tag, name, count in (
            ("a", "Big", size),
            ("b", "Other", size // 4),
            ("c", "Third", size // 4),
        ):
            company = await access.create_company(platform, name)
            tenant = Tenant(company.id, "live")
            ids = []
            for n in range(4):
                endpoint, _ = await webhooks.create_endpoint(
                    platform,
                    tenant,
                    EndpointCreate(url=f"https://hooks-{n}.{tag}.example.com/bench"),
                )
                ids.append(endpoint.id)
            companies.append((company.id, tag, ids, count))
    finally:
        await platform.close()
    now = time.time_ns() // 1_000_000
    connection = await asyncpg.connect(database_url)
    try:
        for company_id, tag, ids, count in companies:
            started = time.perf_counter()
            await seed_company(connection, company_id, tag, ids, count, now)
            took = time.perf_counter() - started
            print(f"seeded {count:,} deliveries of {company_id} in {took:.1f} s")
        await connection.execute(
            "VACUUM ANALYZE events, deliveries, delivery_attempts, delivery_queue"
        )
    finally:
        await connection.close()
    big, _, endpoints, _ = companies[0]
    return big, endpoints


def sign_in(base_url: str) -> httpx.Client:
    """A client signed in through the dashboard's form, as a browser would be."""
    http = httpx.Client(base_url=base_url, timeout=60)
    form = http.get("/dashboard/login")
    token = CSRF.search(form.text)
    if token is None:
        sys.exit(f"no sign-in form: {form.status_code} {form.text[:200]}")
    answer = http.post(
        "/dashboard/login",
        data={"csrf_token": token.group(1), "email": EMAIL, "password": PASSWORD},
    )
    if answer.status_code != 303:
        sys.exit(f"sign-in failed: {answer.status_code} {answer.text[:200]}")
    return http


def get(http: httpx.Client, path: str, **headers: str) -> httpx.Response:
    answer = http.get(path, headers=headers)
    if answer.status_code != 200:
        sys.exit(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return answer


def older(page: httpx.Response) -> str:
    found = OLDER.search(page.text)
    if found is None:
        sys.exit(f"no Older link on {page.url}")
    return found.group(1).replace("&amp;", "&")


def cases(
    http: httpx.Client, endpoints: list[str], now: int
) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, headers) of each page timed."""
    day = datetime.fromtimestamp(now / 1000, UTC).replace(hour=0, minute=0) - timedelta(days=14)
    window = f"from={day:%Y-%m-%dT%H:%M}&to={day + timedelta(days=1):%Y-%m-%dT%H:%M}"
    deep = "/dashboard/deliveries"
    for _ in range(49):  # the 50th page, by following "Older" as a person would
        deep = older(get(http, deep))
    failed = re.search(
        r'href="/dashboard/deliveries/(dlv_\w+)"',
        get(http, "/dashboard/deliveries?status=failed").text,
    )
    if failed is None:
        sys.exit("no failed delivery to show")
    htmx = {"hx-request": "true"}
    return [
        ("first page (with the 3 h chart)", "/dashboard/deliveries", {}),
        ("first page, htmx fragment", "/dashboard/deliveries", htmx),
        ("filter: endpoint", f"/dashboard/deliveries?endpoint={endpoints[1]}", htmx),
        ("filter: status failed (2 %)", "/dashboard/deliveries?status=failed", htmx),
        ("filter: status held (0.5 %)", "/dashboard/deliveries?status=held", htmx),
        (f"filter: type {COMMON_TYPE} (30 %)", f"/dashboard/deliveries?type={COMMON_TYPE}", htmx),
        (f"filter: type {RARE_TYPE} (0.1 %)", f"/dashboard/deliveries?type={RARE_TYPE}", htmx),
        (f"filter: type {MIDDLE_TYPE} (0.35 %)", f"/dashboard/deliveries?type={MIDDLE_TYPE}", htmx),
        ("filter: a day 2 weeks ago", f"/dashboard/deliveries?{window}", htmx),
        (
            "filter: all four at once",
            f"/dashboard/deliveries?endpoint={endpoints[0]}&status=failed&type={COMMON_TYPE}&{window}",
            htmx,
        ),
        ("cursor: page 50", deep, htmx),
        ("delivery detail (5 attempts)", f"/dashboard/deliveries/{failed.group(1)}", {}),
        ("page with the 24 h chart", "/dashboard/deliveries?hours=24", {}),
        ("events: first page", "/dashboard/events", {}),
        (f"events: type {RARE_TYPE}", f"/dashboard/events?type={RARE_TYPE}", htmx),
    ]


def api_cases(api: httpx.Client, endpoints: list[str], now: int) -> list[tuple[str, str]]:
    """(name, path) of each Open API list timed: numbered pages (with their exact ``total``)
    and cursor pages (no count)."""
    base = "/customer/open/v1"
    deliveries = f"{base}/webhooks/{endpoints[1]}/deliveries"
    first = get(api, f"{deliveries}?limit=20").json()["data"]
    last = get(api, f"{base}/events?limit=20").json()["data"][-1]["id"]
    day = datetime.fromtimestamp(now / 1000, UTC).replace(hour=0, minute=0) - timedelta(days=14)
    since, until = f"{day:%Y-%m-%dT%H:%M:%SZ}", f"{day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
    return [
        ("API: an endpoint's deliveries, page 1 (+ total)", f"{deliveries}?limit=20"),
        ("API: … status failed, page 1 (+ total)", f"{deliveries}?limit=20&status=failed"),
        ("API: … page 100 (+ total)", f"{deliveries}?limit=20&page=100"),
        ("API: … cursor (startingAfter)", f"{deliveries}?limit=20&startingAfter={first[-1]['id']}"),
        ("API: events, page 1 (+ total)", f"{base}/events?limit=20"),
        (f"API: events type {RARE_TYPE} (+ total)", f"{base}/events?limit=20&type={RARE_TYPE}"),
        ("API: events of a day (+ total)", f"{base}/events?limit=20&since={since}&until={until}"),
        (
            "API: events cursor (startingAfter)",
            f"{base}/events?limit=20&startingAfter={last}",
        ),
    ]


def measure(http: httpx.Client, path: str, headers: dict[str, str], requests: int) -> list[float]:
    for _ in range(2):  # warm-up, not counted: the first use of a statement prepares it
        get(http, path, **headers)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        get(http, path, **headers)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with database("postgres") as url:
        started = time.perf_counter()
        company, endpoints = asyncio.run(seed(url, args.deliveries))
        print(f"seeded in {time.perf_counter() - started:.1f} s")
        env = bench_env(url, BITBYBIT_CONCURRENCY="0")
        cli(
            "users",
            "create",
            "--company",
            company,
            "--email",
            EMAIL,
            "--password",
            PASSWORD,
            env=env,
        )
        with serve(
            url, LOG, **{k: v for k, v in env.items() if k.startswith("BITBYBIT_")}
        ) as server:
            now = time.time_ns() // 1_000_000
            http = sign_in(server.base_url)
            try:
                timed = cases(http, endpoints, now)
                rows = []
                for name, path, headers in timed:
                    times = measure(http, path, headers, args.requests)
                    rows.append(
                        (
                            name,
                            percentile(times, 0.5),
                            percentile(times, 0.95),
                            percentile(times, 0.99),
                            max(times),
                        )
                    )
            finally:
                http.close()
            key = cli("keys", "create", "--company", company, env=env).strip()
            api = httpx.Client(base_url=server.base_url, timeout=60, headers={"x-api-key": key})
            try:
                for name, path in api_cases(api, endpoints, now):
                    times = measure(api, path, {}, args.requests)
                    rows.append(
                        (
                            name,
                            percentile(times, 0.5),
                            percentile(times, 0.95),
                            percentile(times, 0.99),
                            max(times),
                        )
                    )
            finally:
                api.close()
    width = max(len(name) for name, *_ in rows)
    print(
        f"\n{args.deliveries:,} deliveries of one company"
        f" (plus {args.deliveries // 2:,} of two others),"
        f" {args.requests} requests per case, one client in turn; milliseconds\n"
    )
    print(f"| {'case'.ljust(width)} | p50 | p95 | p99 | max |")
    print(f"|{'-' * (width + 2)}|----:|----:|----:|----:|")
    for name, p50, p95, p99, most in rows:
        print(f"| {name.ljust(width)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {most:.1f} |")


if __name__ == "__main__":
    main()
