"""``bench/run_all.py``: the figures it reads from each benchmark's printed text, and its table.

The samples are what the scripts printed at tiny sizes (2026-12-02), cut to the lines the
parsers read and a few around them: a parser that loses a figure when a script's wording
changes fails here, not in the middle of an hour-long ``make bench``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load_run_all() -> ModuleType:
    """bench/ is not a package: the module is loaded from its file (registered first, as its
    dataclasses look their module up)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"
    spec = importlib.util.spec_from_file_location("run_all", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


run_all = load_run_all()

CREATE_CUSTOMERS = """\
bitbybit: committed 1753 customers, 1753 customer.created events
round 1: hello-world 3,440 req/s, 140 µs CPU a request (0 non-2xx); bitbybit 859 req/s, 836 µs CPU a request (1722 responses); ratio 0.25
Running 2s test @ http://127.0.0.1:42359
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    52.49ms   75.00ms 618.97ms   93.05%
    Req/Sec     0.86k   161.97     1.12k    65.00%
  Latency Distribution
     50%   33.30ms
     75%   43.79ms
     90%   66.72ms
     99%  440.43ms
  1722 requests in 2.00s, 0.86MB read
Requests/sec:    859.47
Transfer/sec:    440.11KB

bitbybit: committed 1593 customers, 1593 customer.created events
round 2: hello-world 5,402 req/s, 124 µs CPU a request (0 non-2xx); bitbybit 778 req/s, 846 µs CPU a request (1561 responses); ratio 0.14
Running 2s test @ http://127.0.0.1:51377
  Latency Distribution
     50%   35.83ms
     75%   50.52ms
     90%   62.05ms
     99%  169.42ms
  1561 requests in 2.01s, 801.01KB read
Requests/sec:    777.93

dialect: sqlite; 2s, 32 connections a run; ratio to hello-world 0.20 (median; rounds: 0.25, 0.14) (goal >= 0.4)
"""  # noqa: E501

CREATE_CUSTOMERS_BEFORE_HELLO_WORLD = """\
  Latency Distribution
     50%  850.00us
     75%   26.31ms
     90%   28.63ms
     99%    1.20s
  2761 requests in 2.10s, 1.38MB read
Requests/sec:   1314.20

dialect: sqlite
POST /customers: 1314 req/s over 2s, 32 connections
responses: 2761 (0 non-2xx)
"""

THROUGHPUT = """\
round 1: created 639 customers/s through the API; delivered 3,595 webhooks/s at the sink, every attempt recorded as succeeded; bare aiohttp loop at its best 8,062 requests/s (64 connections; 16: 6,739/s, 64: 8,062/s); ratio 0.45; CPU per request: worker 163 us (event loop 163), bare loop 109 us
database: sqlite, events: 500, concurrency: 256
delivered: median 3,595 webhooks/s
bare aiohttp loop: median 8,062 requests/s
ratio: median 0.45 (rounds: 0.45) (goal >= 0.80 of the best bare configuration)
the bare loop on the worker's own HTTP client: median 20,123 requests/s; the worker made 0.18 of it (median)
CPU-time ratio (bare loop's CPU per request / the worker's): median 0.66; the rate ratio when neither is short of CPU
"""  # noqa: E501

LATENCY = """\
database: sqlite, 50 events/s for 2 s
arrived: 100 of 100
createdAt -> receipt: p50 3.0 ms, p99 58.8 ms, max 78.8 ms (goals for commit -> receipt: p50 <= 10 ms, p99 <= 50 ms)
API response time (POST /customers): p50 3.5 ms, p99 7.8 ms
"""  # noqa: E501

ISOLATION = """\
round 1: healthy endpoint alone 3,863 deliveries/s, beside 9 silent endpoints 4,392/s: 114%
round 2: healthy endpoint alone 4,000 deliveries/s, beside 9 silent endpoints 3,000/s: 75%
round 3: healthy endpoint alone 5,000 deliveries/s, beside 9 silent endpoints 4,500/s: 90%
database: sqlite; kept 90% of its solo throughput (median; rounds: 75%, 90%, 114%) (goal >= 90%)
"""

BACKLOG = """\
small backlog: seeded 500 pending deliveries in 0 s
small backlog: 4,544 deliveries/s, worker peak RSS 78 MB
large backlog: seeded 2,000 pending deliveries in 0 s
large backlog: 4,872 deliveries/s, worker peak RSS 79 MB
small backlog: seeded 500 pending deliveries in 0 s
small backlog: 3,994 deliveries/s, worker peak RSS 78 MB
database: sqlite; large/small drain rate 114% (small: mean of the runs before and after) (goal >= 90%, RSS < 300 MB)
"""  # noqa: E501

DASHBOARD = """\
seeded in 0.9 s

10,000 deliveries of one company (plus 5,000 of two others), 5 requests per case, one client in turn; milliseconds

| case                                            | p50 | p95 | p99 | max |
|-------------------------------------------------|----:|----:|----:|----:|
| first page (with the 3 h chart)                 | 10.2 | 16.4 | 16.4 | 16.4 |
| filter: status failed (2 %)                     | 7.9 | 8.6 | 8.6 | 8.6 |
| API: … status failed, page 1 (+ total)          | 11.7 | 21.8 | 51.8 | 61.8 |
| API: events cursor (startingAfter)              | 4.7 | 8.7 | 8.7 | 8.7 |
"""  # noqa: E501

CAPACITY = """\

| operation | count | rate here | PostgreSQL CPU per op | WAL per op | statements per op | per PostgreSQL core |
|---|---:|---:|---:|---:|---:|---:|
| API write (POST /customers) | 100 | 187/s | 800 µs | 19,706 B | 8.02 | 1,250/s |
| webhook delivery (one attempt) | 600 | 1,270/s | 183 µs | 2,166 B | 0.04 | 5,455/s |
"""  # noqa: E501

ACCEPT = """\
round 1: POST /messages/send-template 613 req/s (p50 53.44ms, p99 494.23ms, 1239 answered 200, each left one message and one queued job); POST /customers 602 req/s (p50 50.80ms, p99 415.54ms); ratio 1.02
database: sqlite, 2 s a run, 32 connections, no worker in the server
send-template: median 613 req/s
POST /customers: median 602 req/s
ratio: median 1.02 (rounds: 1.02) (goal >= 0.80)
"""  # noqa: E501

DRAIN = """\
round 1: sends 1,897/s until all sent (1,903/s at the fake Graph API); webhooks 2,906/s until all recorded (2,957/s at the sink); ratio 0.65
database: sqlite, 500 each, concurrency 256
sends: median 1,897/s until sent
webhooks: median 2,906/s until recorded
ratio: median 0.65 (rounds: 0.65) (goal >= 0.70); at nginx: median 0.64
"""  # noqa: E501

INBOUND = """\
database: sqlite, 50 callbacks/s for 2 s, 50 senders
message.received arrived: 100 of 100
callback sent -> message.received at the receiver: p50 5.6 ms, p99 20.3 ms, max 20.3 ms (goals: p50 <= 10 ms, p99 <= 50 ms)
callback response time (POST /whatsapp/webhooks/meta, 200 once stored): p50 4.1 ms, p99 18.1 ms
"""  # noqa: E501


API_OVERHEAD = """\
round 1: served 420 us CPU a request, bare 184 us; the framework's share 56%
round 2: served 468 us CPU a request, bare 239 us; the framework's share 49%
POST /customers in process, SQLite, 6000 requests a round, 32 in flight: served 444 us CPU a \
request (median), bare 212 us; routing, dependencies and middleware 232 us (52%)
"""


def table(figures: list[Any]) -> dict[str, tuple[Any, bool | None]]:
    """name → (value, goal met?) of the figures a parser found."""
    return {figure.name: (pytest.approx(figure.value), figure.met()) for figure in figures}


def test_create_customers_reads_the_rounds_the_ratio_and_wrk_percentiles() -> None:
    found = table(run_all.parse_create_customers(CREATE_CUSTOMERS))
    assert found["POST /customers"] == (818.5, None)  # the median of 859 and 778
    assert found["hello-world FastAPI POST"] == (4421, None)
    assert found["ratio to hello-world (median)"] == (0.20, False)
    assert found["CPU per request, bitbybit"] == (841, None)
    assert found["POST /customers response p99"] == ((440.43 + 169.42) / 2, None)


def test_create_customers_reads_the_output_from_before_the_hello_world_comparison() -> None:
    figures = run_all.parse_create_customers(CREATE_CUSTOMERS_BEFORE_HELLO_WORLD)
    found = table(figures)
    assert found["POST /customers"] == (1314, None)
    assert found["POST /customers response p50"] == (0.85, None)  # wrk's us
    assert found["POST /customers response p99"] == (1200, None)  # and s
    assert "hello-world FastAPI POST" not in found
    assert not any(figure.goal for figure in figures)


def test_delivery_throughput_reads_the_medians_and_the_ratio_to_the_best_bare_loop() -> None:
    found = table(run_all.parse_delivery_throughput(THROUGHPUT))
    assert found["webhooks delivered (median)"] == (3595, None)
    assert found["bare aiohttp loop, best (median)"] == (8062, None)
    assert found["ratio to the best bare loop (median)"] == (0.45, False)
    assert found["CPU-time ratio, bare loop / worker (median)"] == (0.66, None)
    assert found["bare loop on the worker's own client (median)"] == (20123, None)
    assert found["ratio to the own-client loop (median)"] == (0.18, None)
    assert found["CPU per delivery, worker (median)"] == (163, None)
    assert found["CPU per request, bare loop (median)"] == (109, None)


def test_delivery_latency_holds_p50_and_p99_to_their_goals() -> None:
    found = table(run_all.parse_delivery_latency(LATENCY))
    assert found["createdAt → receipt p50"] == (3.0, True)
    assert found["createdAt → receipt p99"] == (58.8, False)
    assert found["createdAt → receipt max"] == (78.8, None)
    assert found["API response p99"] == (7.8, None)
    assert found["deliveries arrived (of 100)"] == (100, None)


def test_a_p95_is_read_when_a_script_prints_one() -> None:
    line = "createdAt -> receipt: p50 3.0 ms, p95 6.1 ms, p99 8.8 ms, max 9.0 ms"
    found = table(run_all.parse_delivery_latency(line))
    assert found["createdAt → receipt p95"] == (6.1, None)


def test_delivery_isolation_reads_the_median_of_the_rounds() -> None:
    figures = run_all.parse_delivery_isolation(ISOLATION)
    found = table(figures)
    assert found["kept of its solo throughput (median)"] == (90, True)
    assert found["alone (median)"] == (4000, None)
    assert found["beside 9 silent endpoints (median)"] == (4392, None)
    bars = {figure.chart.bar for figure in figures if figure.chart}
    assert bars == {"measured", "alternative"}


def test_delivery_backlog_reads_the_rates_the_ratio_and_the_peak_rss() -> None:
    found = table(run_all.parse_delivery_backlog(BACKLOG))
    assert found["large backlog drained"] == (4872, None)
    assert found["small backlog drained (mean)"] == (4269, None)
    assert found["large/small drain rate"] == (114, True)
    assert found["worker peak RSS"] == (79, True)


def test_dashboard_holds_each_case_to_50_ms_at_p99_and_plots_the_slowest() -> None:
    figures = run_all.parse_dashboard(DASHBOARD)
    found = table(figures)
    assert found["first page (with the 3 h chart) p99"] == (16.4, True)
    assert found["API: … status failed, page 1 (+ total) p99"] == (51.8, False)
    assert found["filter: status failed (2 %) p50"] == (7.9, None)
    charted = {(f.chart.group, f.chart.bar): f.value for f in figures if f.chart}
    assert charted[("slowest API list (API: … status failed, page 1 (+ total))", "p99")] == 51.8
    assert charted[("slowest dashboard page (first page (with the 3 h chart))", "p95")] == 16.4
    shown = [figure.name for figure in figures if figure.table]
    assert len(shown) == 4  # one p99 row per case in results.md; p50/p95 in the JSON


def test_capacity_reads_both_rows_of_its_table() -> None:
    found = table(run_all.parse_capacity(CAPACITY))
    assert found["API write: PostgreSQL CPU"] == (800, None)
    assert found["API write: WAL"] == (19706, None)
    assert found["API write: statements"] == (8.02, None)
    assert found["deliveries one PostgreSQL core sustains"] == (5455, None)
    assert found["delivery: rate here"] == (1270, None)


def test_messaging_accept_reads_the_ratio_and_wrk_percentiles_of_both() -> None:
    found = table(run_all.parse_messaging_accept(ACCEPT))
    assert found["send-template (median)"] == (613, None)
    assert found["POST /customers (median)"] == (602, None)
    assert found["ratio to POST /customers (median)"] == (1.02, True)
    assert found["send-template response p99"] == (494.23, None)
    assert found["POST /customers response p50"] == (50.80, None)


def test_messaging_drain_reads_both_ratios() -> None:
    found = table(run_all.parse_messaging_drain(DRAIN))
    assert found["sends drained (median)"] == (1897, None)
    assert found["webhooks drained (median)"] == (2906, None)
    assert found["ratio to webhooks (median)"] == (0.65, False)
    assert found["ratio at nginx (median)"] == (0.64, None)


def test_messaging_inbound_holds_p50_and_p99_to_their_goals() -> None:
    found = table(run_all.parse_messaging_inbound(INBOUND))
    assert found["callback → message.received p50"] == (5.6, True)
    assert found["callback → message.received p99"] == (20.3, True)
    assert found["callback response p50"] == (4.1, None)
    assert found["message.received arrived (of 100)"] == (100, None)


def test_api_overhead_reads_the_medians_and_the_difference() -> None:
    found = table(run_all.parse_api_overhead(API_OVERHEAD))
    assert found == {
        "CPU per request, served (median)": (444, None),
        "CPU per request, bare ASGI handler (median)": (212, None),
        "routing, dependencies and middleware": (232, None),
        "their share of the served request": (52, None),
    }


def test_output_without_the_expected_lines_gives_no_figures() -> None:
    for benchmark in run_all.BENCHMARKS:
        assert benchmark.parse("Traceback (most recent call last):\n  boom\n") == []


def test_a_result_line_adds_figures_and_overrides_known_ones() -> None:
    text = (
        THROUGHPUT
        + 'RESULT {"ratio to the best bare loop (median)": 0.85,'
        + ' "worker CPU": {"value": 120, "unit": "µs", "goal": "<= 130"}}\n'
    )
    figures = run_all.with_result_lines(run_all.parse_delivery_throughput(text), text)
    found = table(figures)
    assert found["ratio to the best bare loop (median)"] == (0.85, True)  # goal kept
    assert found["worker CPU"] == (120, True)
    assert [f.unit for f in figures if f.name == "worker CPU"] == ["µs"]


@pytest.mark.parametrize(
    ("text", "value", "met"),
    [(">= 0.4", 0.4, True), ("≤ 50 ms", 50.1, False), ("< 300", 299, True), (">=0.8", 0.79, False)],
)
def test_goals_are_read_as_result_lines_state_them(text: str, value: float, met: bool) -> None:
    assert run_all.Goal.parse(text).met(value) is met


def test_the_markdown_table_has_the_machine_a_row_per_figure_and_failed_runs() -> None:
    throughput = run_all.Run(
        "delivery-throughput",
        "sqlite",
        ["bench/bench_delivery.py", "throughput", "--database", "sqlite"],
        0,
        42.0,
        "delivery-throughput-sqlite.txt",
        run_all.parse_delivery_throughput(THROUGHPUT),
    )
    failed = run_all.Run(
        "delivery-backlog", "postgres", ["bench/bench_delivery.py", "backlog"], 1, 3.0, "b.txt", []
    )
    dashboard = run_all.Run(
        "dashboard", "postgres", ["bench/bench_dashboard.py"], 0, 9.0, "d.txt",
        run_all.parse_dashboard(DASHBOARD),
    )  # fmt: skip
    silent = run_all.Run("capacity", "postgres", ["bench/bench_capacity.py"], 0, 1.0, "c.txt", [])
    text = run_all.markdown(
        [throughput, failed, dashboard, silent],
        {"CPU": "Test CPU", "cores": "2", "commit": "abc1234"},
        "Benchmarks of now",
    )
    lines = text.splitlines()
    assert lines[0] == "# Benchmarks of now"
    assert "- CPU: Test CPU" in lines
    assert "- commit: abc1234" in lines
    assert "| benchmark | database | figure | value | goal | met? |" in lines
    assert (
        "| delivery-throughput | sqlite | ratio to the best bare loop (median) | 0.45 | ≥ 0.80"
        " | **no** |" in lines
    )
    assert "| delivery-throughput | sqlite | webhooks delivered (median) | 3,595/s | | |" in lines
    assert "| delivery-backlog | postgres | run | failed (exit 1) | | failed |" in lines
    assert (
        "| dashboard | postgres | first page (with the 3 h chart) p99 | 16.4 ms | ≤ 50 ms | yes |"
        in lines
    )
    assert not any("p95" in line for line in lines if line.startswith("| dashboard |"))
    assert "| capacity | postgres | run | no figures found | | |" in lines
    assert (
        "| [delivery-throughput-sqlite.txt](delivery-throughput-sqlite.txt) | 0 | 42"
        " | `bench/bench_delivery.py throughput --database sqlite` |" in lines
    )
    rows = lines[lines.index("| benchmark | database | figure | value | goal | met? |") :]
    rows = rows[: rows.index("")]
    assert all(row.count("|") == 7 for row in rows)  # every row has the six columns


def test_each_benchmark_is_run_with_its_database_and_size() -> None:
    throughput = run_all.BY_NAME["delivery-throughput"]
    argv = throughput.argv("full", "postgres")
    assert argv[-6:] == ["--events", "20000", "--rounds", "3", "--database", "postgres"]
    backlog = run_all.BY_NAME["delivery-backlog"].argv("full", "sqlite")
    assert backlog[backlog.index("--backlog") + 1] == "1000000"
    dashboard = run_all.BY_NAME["dashboard"]
    assert dashboard.databases == ("postgres",)
    assert "--database" not in dashboard.argv("quick", "postgres")
    create = run_all.BY_NAME["create-customers"]
    assert "--database-url" not in create.argv("quick", "sqlite")
    url = "postgresql://postgres@127.0.0.1:5432/bench_1"
    assert create.argv("quick", "postgres", url)[-2:] == ["--database-url", url]


def test_a_line_that_does_not_parse_costs_its_benchmark_figures_not_the_run() -> None:
    latency = run_all.BY_NAME["delivery-latency"]
    assert run_all.figures_of(latency, LATENCY + 'RESULT {"x": {"goal": "soon"}}\n') == []
    assert len(run_all.figures_of(latency, LATENCY)) == 6
