"""Every benchmark on both databases, one command: their raw output, a table and a plot.

    make bench [BENCH_ARGS="--size full"]
    .venv/bin/python bench/run_all.py [--size quick|full] [--only NAME,NAME] [--database sqlite]

Runs each benchmark script of this folder as a subprocess, one after the other (each on SQLite
and on PostgreSQL where it takes ``--database``; the dashboard and capacity benchmarks are
PostgreSQL's only), and writes into ``bench/results/<timestamp>/``:

- ``<benchmark>-<database>.txt``: what the script printed (its standard error, when there is
  any, beside it in ``….stderr.txt``);
- ``results.md``: the machine, then one row per figure (benchmark, database, figure, value,
  goal, met?), then each run's command, exit code and duration;
- ``results.json``: the same, for programs;
- ``results.png``: rates per benchmark and database beside their alternative (the bare loop,
  the hello-world application, the endpoint alone …) and latency percentiles.

``bench/results/latest`` links to the newest run. The figures are read from the text the scripts
print (the parsers below follow each script's ``print`` calls); a line ``RESULT {json}`` (an
object of figure name to a number, or to ``{"value", "unit", "goal"}``) adds or overrides
figures, so a script can grow machine-readable output without this file changing first. A
benchmark that fails is recorded with its exit code and the run goes on.

``--size quick`` (the default) keeps the whole run within about 5 minutes on 2 cores;
``--size full`` uses the issue's sizes (a 1,000,000-delivery backlog, a dashboard over
1,000,000 deliveries, 3 rounds of each comparison) and takes about an hour or more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATABASES = ("sqlite", "postgres")


# -- figures --------------------------------------------------------------------------------------


SYMBOLS = {">=": "≥", "<=": "≤", "<": "<", ">": ">"}


@dataclass(frozen=True)
class Goal:
    """What a figure should be: ``value <op> target``."""

    op: str
    target: float

    @classmethod
    def parse(cls, text: str) -> Goal:
        """``">= 0.4"``, ``"≤ 50"`` …: how a ``RESULT`` line may state a goal."""
        found = re.fullmatch(r"\s*(>=|<=|<|>|≥|≤)\s*([\d.]+)\s*\S*\s*", text)
        if found is None:
            raise ValueError(f"not a goal: {text!r}")
        op = {"≥": ">=", "≤": "<="}.get(found.group(1), found.group(1))
        return cls(op, float(found.group(2)))

    def met(self, value: float) -> bool:
        return {
            ">=": value >= self.target,
            "<=": value <= self.target,
            "<": value < self.target,
            ">": value > self.target,
        }[self.op]

    def text(self, unit: str) -> str:
        target = f"{self.target:g} {unit}" if unit in ("ms", "MB") else formatted(self.target, unit)
        return f"{SYMBOLS[self.op]} {target}"


@dataclass(frozen=True)
class Chart:
    """Where a figure goes in the plot: its panel, its group's label (beside the benchmark and
    database) and its bar in the group (``measured``/``alternative``, or a percentile)."""

    panel: str
    group: str
    bar: str


@dataclass
class Figure:
    name: str
    value: float
    unit: str = ""
    goal: Goal | None = None
    chart: Chart | None = None
    table: bool = True
    """False for the detail kept in results.json and the plot only (the dashboard's p50/p95)."""

    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)


def formatted(value: float, unit: str) -> str:
    """A figure as people read it: rates with thousands separators, ratios to two places."""
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "×":
        return f"{value:.2f}"
    if unit == "%":
        return f"{value:.0f} %"
    if unit in ("ms", "s"):
        return f"{value:,.1f} {unit}"
    if unit:
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f}" if value != int(value) else f"{value:,.0f}"


def number(text: str) -> float:
    return float(text.replace(",", ""))


def last(pattern: str, text: str) -> re.Match[str] | None:
    """The last match: the summary lines come last, after any per-round lines."""
    found = list(re.finditer(pattern, text, re.MULTILINE))
    return found[-1] if found else None


def medians(pattern: str, text: str) -> list[float]:
    """Each group of ``pattern`` over all its matches (the rounds), as a median."""
    rows = [[number(g) for g in m.groups()] for m in re.finditer(pattern, text, re.MULTILINE)]
    return [statistics.median(column) for column in zip(*rows, strict=True)] if rows else []


def millis(text: str) -> float:
    """wrk's durations (``850.00us``, ``53.44ms``, ``1.20s``) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[found.group(2)]
    return float(found.group(1)) * scale


def percentiles(text: str) -> dict[str, float]:
    """``p50 3.0 ms, p99 8.8 ms, max 8.8 ms`` (and a p95 when a script prints one)."""
    return {name: float(value) for name, value in re.findall(r"\b(p\d+|max) ([\d.]+) ms", text)}


def latency_figures(
    label: str, line: re.Match[str] | None, goals: dict[str, Goal] | None = None
) -> list[Figure]:
    if line is None:
        return []
    goals = goals or {}
    return [
        Figure(
            f"{label} {name}",
            value,
            "ms",
            goals.get(name),
            Chart("latency", label, name) if name != "max" else None,
        )
        for name, value in percentiles(line.group(0)).items()
    ]


def rate_pair(
    group: str, measured: tuple[str, float | None], alternative: tuple[str, float | None]
) -> list[Figure]:
    """A rate and the rate it is compared with, side by side in the throughput panel."""
    figures = []
    for bar, (name, value) in (("measured", measured), ("alternative", alternative)):
        if value is not None:
            figures.append(Figure(name, value, "/s", chart=Chart("throughput", group, bar)))
    return figures


def optional(found: re.Match[str] | None, index: int = 1) -> float | None:
    return number(found.group(index)) if found else None


# -- what each script prints ----------------------------------------------------------------------


P50_P99 = {"p50": Goal("<=", 10), "p99": Goal("<=", 50)}
"""The latency goal of an event's delivery: p50 ≤ 10 ms, p99 ≤ 50 ms (issue text)."""


def wrk_latency(text: str) -> dict[str, float]:
    """wrk's "Latency Distribution" (50/75/90/99 %), as the median over the runs printed."""
    runs: dict[str, list[float]] = {}
    for share, duration in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", text, re.MULTILINE):
        runs.setdefault(f"p{share}", []).append(millis(duration))
    return {name: statistics.median(values) for name, values in runs.items()}


def parse_create_customers(text: str) -> list[Figure]:
    """bench_create_customers.py: rounds of a hello-world FastAPI POST and bitbybit's ``POST
    /customers`` under the same wrk load, the median ratio; or (before the hello-world
    comparison) one run's ``POST /customers: N req/s``."""
    hello, ours, hello_cpu, ours_cpu = None, None, None, None
    rounds = medians(
        r"^round \d+: hello-world ([\d,.]+) req/s, ([\d,.]+) µs CPU.*?;"
        r" bitbybit ([\d,.]+) req/s, ([\d,.]+) µs CPU",
        text,
    )
    if rounds:
        hello, hello_cpu, ours, ours_cpu = rounds
    else:
        ours = optional(last(r"^POST /customers: ([\d,.]+) req/s", text))
    figures = rate_pair(
        "POST /customers vs hello-world",
        ("POST /customers", ours),
        ("hello-world FastAPI POST", hello),
    )
    ratio = last(r"ratio to hello-world ([\d.]+) \(median", text)
    if ratio:
        figures.append(
            Figure("ratio to hello-world (median)", number(ratio[1]), "×", Goal(">=", 0.4))
        )
    if ours_cpu is not None and hello_cpu is not None:
        figures.append(Figure("CPU per request, bitbybit", ours_cpu, "µs"))
        figures.append(Figure("CPU per request, hello-world", hello_cpu, "µs"))
    label = "POST /customers response"
    for name, value in wrk_latency(text).items():
        chart = Chart("latency", label, name) if name != "p75" else None
        figures.append(Figure(f"{label} {name}", value, "ms", chart=chart))
    return figures


def parse_delivery_throughput(text: str) -> list[Figure]:
    """bench_delivery.py throughput: the worker against the best bare aiohttp loop."""
    figures = rate_pair(
        "webhooks delivered vs bare loop",
        ("webhooks delivered (median)", optional(last(r"^delivered: median ([\d,.]+)", text))),
        (
            "bare aiohttp loop, best (median)",
            optional(last(r"^bare aiohttp loop: median ([\d,.]+)", text)),
        ),
    )
    ratio = last(r"^ratio: median ([\d.]+)", text)
    if ratio:
        figures.append(
            Figure("ratio to the best bare loop (median)", number(ratio[1]), "×", Goal(">=", 0.8))
        )
    own = last(
        r"^the bare loop on the worker's own HTTP client: median ([\d,.]+) .*?made ([\d.]+)", text
    )
    if own:
        figures.append(
            Figure("bare loop on the worker's own client (median)", number(own[1]), "/s")
        )
        figures.append(Figure("ratio to the own-client loop (median)", number(own[2]), "×"))
    cpu_ratio = last(r"^CPU-time ratio .*?: median ([\d.]+)", text)
    if cpu_ratio:
        figures.append(
            Figure("CPU-time ratio, bare loop / worker (median)", number(cpu_ratio[1]), "×")
        )
    created = medians(r"^round \d+: created ([\d,.]+) customers/s", text)
    if created:
        figures.append(Figure("customers created through the API (median)", created[0], "/s"))
    cpu = medians(r"CPU per request: worker ([\d,.]+) us .*?bare loop ([\d,.]+) us", text)
    if cpu:
        figures.append(Figure("CPU per delivery, worker (median)", cpu[0], "µs"))
        figures.append(Figure("CPU per request, bare loop (median)", cpu[1], "µs"))
    return figures


def parse_delivery_latency(text: str) -> list[Figure]:
    """bench_delivery.py latency: ``createdAt`` → receipt at the receiver, and the API's answer."""
    figures = latency_figures(
        "createdAt → receipt", last(r"^createdAt -> receipt: .*$", text), P50_P99
    )
    figures += latency_figures("API response", last(r"^API response time .*$", text))
    arrived = last(r"^arrived: (\d+) of (\d+)", text)
    if arrived:
        figures.append(Figure(f"deliveries arrived (of {arrived[2]})", number(arrived[1])))
    return figures


def parse_delivery_isolation(text: str) -> list[Figure]:
    """bench_delivery.py isolation: a healthy endpoint alone, then beside 9 silent ones."""
    rates = medians(r"alone ([\d,.]+) deliveries/s, beside 9 silent endpoints ([\d,.]+)/s", text)
    alone, beside = rates if rates else (None, None)
    figures = rate_pair(
        "healthy endpoint beside 9 silent vs alone",
        ("beside 9 silent endpoints (median)", beside),
        ("alone (median)", alone),
    )
    kept = last(r"kept ([\d.]+)% of its solo throughput", text)
    if kept:
        figures.append(
            Figure("kept of its solo throughput (median)", number(kept[1]), "%", Goal(">=", 90))
        )
    return figures


def parse_delivery_backlog(text: str) -> list[Figure]:
    """bench_delivery.py backlog: the large backlog's drain rate against the small ones'."""
    drains = re.findall(
        r"^(small|large) backlog: ([\d,.]+) deliveries/s, worker peak RSS ([\d.]+) MB",
        text,
        re.MULTILINE,
    )
    small = [number(rate) for size, rate, _ in drains if size == "small"]
    large = [number(rate) for size, rate, _ in drains if size == "large"]
    figures = rate_pair(
        "large backlog vs small",
        ("large backlog drained", large[0] if large else None),
        ("small backlog drained (mean)", statistics.mean(small) if small else None),
    )
    ratio = last(r"large/small drain rate ([\d.]+)%", text)
    if ratio:
        figures.append(Figure("large/small drain rate", number(ratio[1]), "%", Goal(">=", 90)))
    if drains:
        peak = max(number(rss) for _, _, rss in drains)
        figures.append(Figure("worker peak RSS", peak, "MB", Goal("<", 300)))
    return figures


def parse_dashboard(text: str) -> list[Figure]:
    """bench_dashboard.py: its Markdown table of p50/p95/p99/max per page (ms). Each case's p99
    is a row of the table; the slowest dashboard page and the slowest API list go in the plot."""
    rows = re.findall(
        r"^\| (.+?) +\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", text, re.MULTILINE
    )
    figures = []
    for case, p50, p95, p99, _ in rows:
        figures.append(Figure(f"{case} p50", float(p50), "ms", table=False))
        figures.append(Figure(f"{case} p95", float(p95), "ms", table=False))
        figures.append(Figure(f"{case} p99", float(p99), "ms", Goal("<=", 50)))
    for label, api in (("slowest dashboard page", False), ("slowest API list", True)):
        cases = [row for row in rows if row[0].startswith("API:") == api]
        if cases:
            case, p50, p95, p99, _ = max(cases, key=lambda row: float(row[3]))
            group = f"{label} ({case})"
            for name, value in (("p50", p50), ("p95", p95), ("p99", p99)):
                figures.append(
                    Figure(
                        f"{label} {name}",
                        float(value),
                        "ms",
                        table=False,
                        chart=Chart("latency", group, name),
                    )
                )
    return figures


def parse_capacity(text: str) -> list[Figure]:
    """bench_capacity.py: PostgreSQL's CPU, WAL and statements per API write and per delivery."""
    figures = []
    for operation, short, plural in (
        ("API write", "API write", "API writes"),
        ("webhook delivery", "delivery", "deliveries"),
    ):
        row = last(rf"^\| {operation}[^|]*\|(.*)\|$", text)
        if row is None:
            continue
        cells = [cell.strip() for cell in row[1].split("|")]
        if len(cells) != 6:
            continue
        _, rate, cpu, wal, statements, per_core = cells
        figures += [
            Figure(f"{short}: rate here", number(rate.removesuffix("/s")), "/s"),
            Figure(f"{short}: PostgreSQL CPU", number(cpu.split()[0]), "µs"),
            Figure(f"{short}: WAL", number(wal.split()[0]), "B"),
            Figure(f"{short}: statements", number(statements)),
            Figure(
                f"{plural} one PostgreSQL core sustains", number(per_core.removesuffix("/s")), "/s"
            ),
        ]
    return figures


def parse_api_overhead(text: str) -> list[Figure]:
    """bench_api_overhead.py: an API write's CPU as served and through a bare ASGI handler."""
    found = last(
        r"^POST /customers in process.*: served (\d+) us CPU a request \(median\), bare (\d+) us;"
        r" routing, dependencies and middleware (-?\d+) us \((-?\d+)%\)",
        text,
    )
    if found is None:
        return []
    served, bare, difference, share = (float(value) for value in found.groups())
    return [
        Figure("CPU per request, served (median)", served, "µs"),
        Figure("CPU per request, bare ASGI handler (median)", bare, "µs"),
        Figure("routing, dependencies and middleware", difference, "µs"),
        Figure("their share of the served request", share, "%"),
    ]


def parse_messaging_accept(text: str) -> list[Figure]:
    """bench_messaging.py accept: send-template against ``POST /customers``, through serve."""
    figures = rate_pair(
        "send-template vs POST /customers",
        ("send-template (median)", optional(last(r"^send-template: median ([\d,.]+) req/s", text))),
        (
            "POST /customers (median)",
            optional(last(r"^POST /customers: median ([\d,.]+) req/s", text)),
        ),
    )
    ratio = last(r"^ratio: median ([\d.]+)", text)
    if ratio:
        figures.append(
            Figure("ratio to POST /customers (median)", number(ratio[1]), "×", Goal(">=", 0.8))
        )
    for label, pattern in (
        ("send-template response", r"send-template [\d,.]+ req/s \(p50 (\S+), p99 (\S+),"),
        ("POST /customers response", r"POST /customers [\d,.]+ req/s \(p50 (\S+), p99 (\S+)\)"),
    ):
        rounds = [(millis(a), millis(b)) for a, b in re.findall(pattern, text)]
        for index, name in enumerate(("p50", "p99")):
            if rounds:
                value = statistics.median(pair[index] for pair in rounds)
                figures.append(
                    Figure(f"{label} {name}", value, "ms", chart=Chart("latency", label, name))
                )
    return figures


def parse_messaging_drain(text: str) -> list[Figure]:
    """bench_messaging.py drain: template sends to the fake Graph API against webhooks."""
    figures = rate_pair(
        "sends vs webhooks drained",
        ("sends drained (median)", optional(last(r"^sends: median ([\d,.]+)/s", text))),
        ("webhooks drained (median)", optional(last(r"^webhooks: median ([\d,.]+)/s", text))),
    )
    ratio = last(r"^ratio: median ([\d.]+) .*?at nginx: median ([\d.]+)", text)
    if ratio:
        figures.append(Figure("ratio to webhooks (median)", number(ratio[1]), "×", Goal(">=", 0.7)))
        figures.append(Figure("ratio at nginx (median)", number(ratio[2]), "×"))
    return figures


def parse_messaging_inbound(text: str) -> list[Figure]:
    """bench_messaging.py inbound: a Meta callback's send → ``message.received`` at a receiver."""
    figures = latency_figures(
        "callback → message.received", last(r"^callback sent -> .*$", text), P50_P99
    )
    figures += latency_figures("callback response", last(r"^callback response time .*$", text))
    arrived = last(r"^message.received arrived: (\d+) of (\d+)", text)
    if arrived:
        figures.append(Figure(f"message.received arrived (of {arrived[2]})", number(arrived[1])))
    return figures


def with_result_lines(figures: list[Figure], text: str) -> list[Figure]:
    """Figures of ``RESULT {json}`` lines: a new name is added, a known one's value replaced."""
    known = {figure.name: figure for figure in figures}
    for line in re.findall(r"^RESULT (\{.*\})\s*$", text, re.MULTILINE):
        for name, given in json.loads(line).items():
            spec = given if isinstance(given, dict) else {"value": given}
            figure = known.get(name)
            if figure is None:
                figure = known[name] = Figure(name, float(spec["value"]))
                figures.append(figure)
            figure.value = float(spec["value"])
            figure.unit = spec.get("unit", figure.unit)
            if "goal" in spec:
                figure.goal = Goal.parse(spec["goal"])
    return figures


# -- the benchmarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    name: str
    command: tuple[str, ...]
    """The script (in bench/) and its mode."""
    sizes: dict[str, tuple[str, ...]]
    parse: Callable[[str], list[Figure]]
    databases: tuple[str, ...] = DATABASES
    database_url: bool = False
    """Takes ``--database-url`` (a fresh PostgreSQL database is made for it), not ``--database``."""
    timeout_s: dict[str, int] = field(default_factory=lambda: {"quick": 900, "full": 3 * 3600})

    def argv(self, size: str, database: str, url: str | None = None) -> list[str]:
        argv = [sys.executable, str(HERE / self.command[0]), *self.command[1:], *self.sizes[size]]
        if self.database_url:
            return argv + (["--database-url", url] if url else [])
        if self.databases == DATABASES:
            return [*argv, "--database", database]
        return argv


BENCHMARKS = [
    Benchmark(
        "create-customers",
        ("bench_create_customers.py",),
        {
            "quick": ("--seconds", "5", "--rounds", "1"),
            "full": ("--seconds", "10", "--rounds", "3"),
        },
        parse_create_customers,
        database_url=True,
    ),
    Benchmark(
        "api-overhead",
        ("bench_api_overhead.py",),
        {
            "quick": ("--requests", "3000", "--rounds", "1"),
            "full": ("--requests", "6000", "--rounds", "3"),
        },
        parse_api_overhead,
        databases=("sqlite",),
    ),
    Benchmark(
        "delivery-throughput",
        ("bench_delivery.py", "throughput"),
        {
            "quick": ("--events", "5000", "--rounds", "1"),
            "full": ("--events", "20000", "--rounds", "3"),
        },
        parse_delivery_throughput,
    ),
    Benchmark(
        "delivery-latency",
        ("bench_delivery.py", "latency"),
        {
            "quick": ("--rate", "200", "--seconds", "5"),
            "full": ("--rate", "200", "--seconds", "10"),
        },
        parse_delivery_latency,
    ),
    Benchmark(
        "delivery-isolation",
        ("bench_delivery.py", "isolation"),
        {
            "quick": ("--events", "5000", "--rounds", "1"),
            "full": ("--events", "20000", "--rounds", "3"),
        },
        parse_delivery_isolation,
    ),
    Benchmark(
        "delivery-backlog",
        ("bench_delivery.py", "backlog"),
        {
            "quick": ("--backlog", "100000", "--small", "10000"),
            "full": ("--backlog", "1000000", "--small", "20000"),
        },
        parse_delivery_backlog,
    ),
    Benchmark(
        "dashboard",
        ("bench_dashboard.py",),
        {
            "quick": ("--deliveries", "100000", "--requests", "20"),
            "full": ("--deliveries", "1000000", "--requests", "50"),
        },
        parse_dashboard,
        databases=("postgres",),
    ),
    Benchmark(
        "capacity",
        ("bench_capacity.py",),
        {
            "quick": ("--writes", "1000", "--deliveries", "5000"),
            "full": ("--writes", "3000", "--deliveries", "20000"),
        },
        parse_capacity,
        databases=("postgres",),
    ),
    Benchmark(
        "messaging-accept",
        ("bench_messaging.py", "accept"),
        {
            "quick": ("--seconds", "5", "--rounds", "1"),
            "full": ("--seconds", "10", "--rounds", "3"),
        },
        parse_messaging_accept,
    ),
    Benchmark(
        "messaging-drain",
        ("bench_messaging.py", "drain"),
        {
            "quick": ("--events", "5000", "--rounds", "1"),
            "full": ("--events", "20000", "--rounds", "3"),
        },
        parse_messaging_drain,
    ),
    Benchmark(
        "messaging-inbound",
        ("bench_messaging.py", "inbound"),
        {
            "quick": ("--rate", "200", "--seconds", "5"),
            "full": ("--rate", "200", "--seconds", "10"),
        },
        parse_messaging_inbound,
    ),
]
BY_NAME = {benchmark.name: benchmark for benchmark in BENCHMARKS}


@dataclass
class Run:
    """One benchmark on one database: how it ended and the figures it printed."""

    benchmark: str
    database: str
    command: list[str]
    exit_code: int
    seconds: float
    output: str
    """The raw output's file name, in the run's folder."""
    figures: list[Figure]

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


@contextmanager
def database_url_for(
    benchmark: Benchmark, database: str
) -> Iterator[tuple[str | None, dict[str, str]]]:
    """A fresh PostgreSQL database for a script that takes a URL (dropped afterwards), and the
    environment to run it in; None for SQLite, where the scripts make their own file.

    ``bitbybit`` refuses PostgreSQL without ``BITBYBIT_SECRET_KEY``, which such a script passes
    on from its environment: the benchmarks' throwaway key, unless one is set already."""
    if not benchmark.database_url or database == "sqlite":
        yield None, dict(os.environ)
        return
    from common import SECRET_KEY
    from common import database as fresh_database

    with fresh_database("postgres") as url:
        yield url, {"BITBYBIT_SECRET_KEY": SECRET_KEY, **os.environ}


def run_one(benchmark: Benchmark, database: str, size: str, folder: Path) -> Run:
    """The script as a subprocess of its own session (so that a timeout stops the servers it
    started too), its output shown as it comes and saved."""
    name = f"{benchmark.name}-{database}"
    out_path, err_path = folder / f"{name}.txt", folder / f"{name}.stderr.txt"
    started = time.perf_counter()
    with database_url_for(benchmark, database) as (url, env):
        argv = benchmark.argv(size, database, url)
        print(f"\n== {name}: {' '.join(shown(argv[1:]))}", flush=True)
        with out_path.open("w") as out, err_path.open("w") as err:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env=env, text=True, start_new_session=True
            )
            timer = threading.Timer(benchmark.timeout_s[size], stop_group, (process,))
            timer.start()
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    out.write(line)
                    print(f"   {line}", end="", flush=True)
                code = process.wait()
            except BaseException:  # Ctrl-C reaches this process only: its own session ends too
                stop_group(process)
                raise
            finally:
                timer.cancel()
    if err_path.stat().st_size == 0:
        err_path.unlink()
    seconds = time.perf_counter() - started
    print(f"== {name}: exit {code} after {seconds:.0f} s", flush=True)
    figures = figures_of(benchmark, out_path.read_text())
    return Run(benchmark.name, database, shown(argv[1:]), code, seconds, out_path.name, figures)


def figures_of(benchmark: Benchmark, text: str) -> list[Figure]:
    """The figures of a benchmark's output; none (and a warning) when a line does not read as
    its parser expects: an hour of results is not lost to one malformed line."""
    try:
        return with_result_lines(benchmark.parse(text), text)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        print(f"== {benchmark.name}: its output did not parse: {error!r}", flush=True)
        return []


def shown(argv: list[str]) -> list[str]:
    """The command as one would type it from the repository's root (``bench/…``)."""
    root = str(HERE.parent) + os.sep
    return [part.removeprefix(root) for part in argv]


def stop_group(process: subprocess.Popen[str]) -> None:
    """A benchmark past its time: its session (the script and the servers it started) ends."""
    print(f"== timed out: stopping process group {process.pid}", flush=True)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- the machine ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on: they mean little without it."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return {
        "CPU": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{int(memory.group(1)) / 1024 / 1024:.1f} GiB" if memory else "unknown",
        "load average at start": " ".join(f"{n:.2f}" for n in os.getloadavg()),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "PostgreSQL": postgres_version(),
        "commit": git_commit(),
    }


def postgres_version() -> str:
    """The local server's version, as the PostgreSQL benchmarks reach it."""
    try:
        import asyncio

        import asyncpg

        from common import PG_ADMIN_URL

        async def version() -> str:
            connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()

        return asyncio.run(version())
    except Exception as error:  # the SQLite figures are still worth a table
        return f"unavailable ({type(error).__name__})"


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


# -- the reports ----------------------------------------------------------------------------------


def markdown(runs: list[Run], about: dict[str, str], title: str) -> str:
    """results.md: the machine, a row per figure, then the runs themselves."""
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in about.items()]
    lines += ["", row("benchmark", "database", "figure", "value", "goal", "met?")]
    lines.append("|---|---|---|---:|---|---|")
    for run in runs:
        if run.failed:
            failed = f"failed (exit {run.exit_code})"
            lines.append(row(run.benchmark, run.database, "run", failed, "", "failed"))
        elif not run.figures:
            lines.append(row(run.benchmark, run.database, "run", "no figures found", "", ""))
        for figure in run.figures:
            if not figure.table:
                continue
            met = figure.met()
            lines.append(
                row(
                    run.benchmark,
                    run.database,
                    figure.name,
                    formatted(figure.value, figure.unit),
                    figure.goal.text(figure.unit) if figure.goal else "",
                    "" if met is None else "yes" if met else "**no**",
                )
            )
    lines += ["", row("run", "exit", "seconds", "command"), "|---|---:|---:|---|"]
    for run in runs:
        output = f"[{run.output}]({run.output})"
        command = f"`{' '.join(run.command)}`"
        lines.append(row(output, str(run.exit_code), f"{run.seconds:.0f}", command))
    return "\n".join(lines) + "\n"


def row(*cells: str) -> str:
    """A Markdown table row (an empty cell is ``| |``)."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def as_json(runs: list[Run], about: dict[str, str], title: str) -> str:
    def run_json(run: Run) -> dict[str, Any]:
        data = asdict(run)
        for figure, raw in zip(run.figures, data["figures"], strict=True):
            raw["goal"] = figure.goal.text(figure.unit) if figure.goal else None
            raw["met"] = figure.met()
        return data

    return json.dumps(
        {"title": title, "machine": about, "runs": [run_json(r) for r in runs]},
        indent=2,
        ensure_ascii=False,
    )


def charted(runs: list[Run], panel: str) -> dict[str, dict[str, float]]:
    """The plot's groups of one panel: ``benchmark · database · group`` → bar → value."""
    groups: dict[str, dict[str, float]] = {}
    for run in runs:
        for figure in run.figures:
            if figure.chart and figure.chart.panel == panel:
                key = f"{run.benchmark} · {run.database}\n{figure.chart.group}"
                groups.setdefault(key, {})[figure.chart.bar] = figure.value
    return groups


RATE_BARS = {
    "measured": ("tab:blue", "bitbybit"),
    "alternative": ("lightsteelblue", "what it is compared with (bare loop, hello-world, alone …)"),
}
LATENCY_BARS = {
    "p50": ("tab:green", "p50"),
    "p90": ("gold", "p90"),
    "p95": ("tab:orange", "p95"),
    "p99": ("tab:red", "p99"),
}


def plot(runs: list[Run], title: str, path: Path) -> None:
    """results.png: rates beside their alternative, and latency percentiles on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates, latencies = charted(runs, "throughput"), charted(runs, "latency")
    heights = [max(1, len(rates)), max(1, len(latencies))]
    figure, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(12, 2 + 0.5 * sum(heights)),
        height_ratios=heights,
        layout="constrained",
    )
    bars(top, rates, RATE_BARS, "/s")
    top.set_title("Throughput (per second): bitbybit beside what it is compared with")
    bars(bottom, latencies, LATENCY_BARS, "ms")
    if latencies:
        bottom.set_xscale("log")
        for goal in (10, 50):
            bottom.axvline(goal, color="grey", linestyle="--", linewidth=0.8)
    bottom.set_title("Latency percentiles (ms, log scale; dashed: 10 and 50 ms, the goals)")
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def bars(
    axes: Any, groups: dict[str, dict[str, float]], kinds: dict[str, tuple[str, str]], unit: str
) -> None:
    """Horizontal bars, one row per group, the bars a group has side by side within its row;
    ``kinds`` gives each bar's colour and legend text, in the order they are drawn."""
    if not groups:
        axes.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=axes.transAxes)
        axes.set_yticks([])
        return
    labelled: set[str] = set()
    for row, group in enumerate(groups.values()):
        present = [name for name in kinds if name in group]
        width = 0.8 / len(present)
        for index, name in enumerate(present):
            colour, legend = kinds[name]
            y = row - 0.4 + width * (index + 0.5)
            axes.barh(
                y,
                group[name],
                height=width,
                color=colour,
                label=None if name in labelled else legend,
            )
            labelled.add(name)
            text = f"{name} {group[name]:,.1f}" if unit == "ms" else f"{group[name]:,.0f}"
            axes.annotate(f" {text}", (group[name], y), va="center", fontsize=7)
    axes.set_yticks(range(len(groups)), list(groups), fontsize=8)
    axes.invert_yaxis()
    axes.margins(x=0.15)
    order = [legend for _, legend in kinds.values()]
    handles, labels = axes.get_legend_handles_labels()
    shown = sorted(zip(handles, labels, strict=True), key=lambda pair: order.index(pair[1]))
    axes.legend([h for h, _ in shown], [label for _, label in shown], loc="lower right", fontsize=8)


def point_latest(folder: Path) -> None:
    """bench/results/latest → the newest run's folder (replaced in one step)."""
    link = folder.parent / "latest"
    staging = folder.parent / f".latest-{os.getpid()}"
    staging.symlink_to(folder.name, target_is_directory=True)
    os.replace(staging, link)


# -- the command ----------------------------------------------------------------------------------


def chosen(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(BY_NAME)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("quick", "full"), default="quick")
    parser.add_argument(
        "--only",
        type=chosen,
        default=list(BY_NAME),
        help=f"comma-separated benchmarks to run (default: all): {', '.join(BY_NAME)}",
    )
    parser.add_argument("--database", choices=DATABASES, help="one database only")
    args = parser.parse_args()

    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    folder = RESULTS / stamp
    folder.mkdir(parents=True)
    about = machine()
    title = f"Benchmarks of {stamp} (--size {args.size})"
    runs = []
    for name in args.only:
        benchmark = BY_NAME[name]
        for database in benchmark.databases:
            if args.database in (None, database):
                runs.append(run_one(benchmark, database, args.size, folder))
    about["duration"] = f"{sum(run.seconds for run in runs) / 60:.1f} min"
    (folder / "results.md").write_text(markdown(runs, about, title))
    (folder / "results.json").write_text(as_json(runs, about, title))
    point_latest(folder)
    plot(
        runs,
        f"{title}\n{about['CPU']}, {about['cores']} cores, commit {about['commit']}",
        folder / "results.png",
    )
    print(f"\n{(folder / 'results.md').read_text()}\nwritten to {folder}")
    failed = [f"{run.benchmark}-{run.database}" for run in runs if run.failed]
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
