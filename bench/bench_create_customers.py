"""``POST /customers`` requests/s through a real ``bitbybit serve`` process, events committed,
against a hello-world FastAPI POST served the same way under the same load.

Each round drives ``bench/hello_app.py`` (one POST route, a small JSON body in, 201 JSON out,
under uvicorn with ``serve``'s settings) and then ``bitbybit serve`` on a fresh database with the
same wrk load (Debian's package; ``make bench-deps``) from the other core, and prints both rates,
their ratio and each server's CPU time per request (user + system, from ``/proc/<pid>/stat``,
over the wrk run), and the ratio of those: on a busy machine the two runs see different load, so
the rates move far more than the CPU a request takes. Then it checks that every 201 left exactly
one customer and one ``customer.created`` event behind. The ratios are the medians of the rounds'.

    .venv/bin/python bench/bench_create_customers.py [--seconds 10] [--connections 32]
        [--rounds 3] [--profile FILE] [--database-url postgresql://postgres@127.0.0.1:5432/test]

``--profile FILE`` runs py-spy on ``bitbybit serve`` during the first round (collapsed stacks,
one line per stack, in FILE); that round's CPU figures include py-spy's sampling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.integration

from tests.integration.servers import cli, free_port, serve, stop, wait_healthy

from bitbybit.config import Settings
from bitbybit.models import ListQuery, Tenant
from bitbybit.runtime import Platform

HERE = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("BITBYBIT_SECRET_KEY", "bitbybit-benchmark-secret-key")
"""PostgreSQL requires one (``bench/common.py`` uses the same)."""


@dataclass(frozen=True)
class Load:
    seconds: int
    connections: int
    key: str


@dataclass(frozen=True)
class Run:
    """What one server did under one wrk run."""

    rate: float
    responses: int
    failed: int
    cpu_us: float
    """CPU time (user + system, every thread) of the server per response, in microseconds."""
    report: str


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(base_url: str, pid: int, load: Load, profile: str | None = None) -> Run:
    """The wrk load against ``base_url``, with the CPU the server ``pid`` spent meanwhile."""
    spy = None
    if profile:
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            *("record", "--format", "raw", "--rate", "1000"),
        ]
        spy = subprocess.Popen(
            [*command, "--nonblocking", "-o", profile, "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)  # py-spy attaches
    before = cpu_seconds(pid)
    run = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{load.connections}",
            f"-d{load.seconds}s",
            "--latency",
            "-s",
            str(HERE / "create_customers.lua"),
            base_url,
            "--",
            load.key,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    used = cpu_seconds(pid) - before
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT (not SIGTERM)
        spy.wait(60)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", run.stdout).group(1))  # type: ignore[union-attr]
    responses = int(re.search(r"(\d+) requests in", run.stdout).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    return Run(
        rate,
        responses,
        int(failed.group(1)) if failed else 0,
        used / max(responses, 1) * 1e6,
        run.stdout,
    )


@contextmanager
def hello_world(log: Path) -> Iterator[tuple[str, int]]:
    """``bench/hello_app.py`` on a free port: yields its URL and pid; stopped on exit."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "hello_app.py"), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, log, "hello_app")
        yield base_url, process.pid
    finally:
        stop(process)


async def count_rows(database_url: str, company: str) -> tuple[int, int]:
    platform = Platform.from_settings(Settings(database_url=database_url, secret_key=SECRET_KEY))
    await platform.open(migrate=False)
    try:
        async with platform.store.read() as tx:
            tenant = Tenant(company, "live")
            customers = await tx.list_customers(tenant, ListQuery(limit=1))
            events = await tx.list_events(
                tenant, ListQuery(limit=1, filters={"type": ("customer.created",)})
            )
        return customers.total, events.total
    finally:
        await platform.close()


def bitbybit_round(
    database_url: str, folder: Path, seconds: int, connections: int, profile: str | None
) -> Run:
    """``bitbybit serve`` on ``database_url`` (empty) under the load; checks what it committed."""
    env = {"BITBYBIT_DATABASE_URL": database_url, "BITBYBIT_SECRET_KEY": SECRET_KEY}
    cli("migrate", env=env)
    company = cli("companies", "create", "Bench", env=env).strip()
    key = cli("keys", "create", "--company", company, env=env).strip()
    load = Load(seconds, connections, key)
    with serve(
        database_url,
        folder / "serve.log",
        BITBYBIT_RATE_LIMIT="1000000000",
        BITBYBIT_SECRET_KEY=SECRET_KEY,
    ) as server:
        run = drive(server.base_url, server.process.pid, load, profile)
    customers, events = asyncio.run(count_rows(database_url, company))
    print(f"bitbybit: committed {customers} customers, {events} customer.created events")
    if run.failed or customers != events or customers < run.responses - connections:
        print(run.report)
        sys.exit("mismatch: every 201 must leave one customer and one event")
    return run


def round_database(given: str | None, folder: Path, round_number: int) -> str:
    """A fresh SQLite file for the round, or the database given (shared by the rounds: each
    round's company is new, and the checks count that company's rows)."""
    return given or f"sqlite:///{folder}/bench-{round_number}.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="py-spy on bitbybit serve, round 1")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")

    ratios = []
    cpu_ratios = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for number in range(1, args.rounds + 1):
            with hello_world(folder / "hello.log") as (base_url, pid):
                hello = drive(base_url, pid, Load(args.seconds, args.connections, "unused"))
            database_url = round_database(args.database_url, folder, number)
            profile = args.profile if number == 1 else None
            ours = bitbybit_round(database_url, folder, args.seconds, args.connections, profile)
            ratio = ours.rate / hello.rate
            ratios.append(ratio)
            cpu_ratios.append(hello.cpu_us / ours.cpu_us)
            print(
                f"round {number}: hello-world {hello.rate:,.0f} req/s, {hello.cpu_us:.0f} µs CPU"
                f" a request ({hello.failed} non-2xx);"
                f" bitbybit {ours.rate:,.0f} req/s, {ours.cpu_us:.0f} µs CPU a request"
                f" ({ours.responses} responses); ratio {ratio:.2f},"
                f" of CPU a request {cpu_ratios[-1]:.2f}"
            )
            print(ours.report)
    dialect = (args.database_url or "sqlite").split(":", 1)[0]
    print(
        f"dialect: {dialect}; {args.seconds}s, {args.connections} connections a run;"
        f" ratio to hello-world {statistics.median(ratios):.2f} (median; rounds:"
        f" {', '.join(f'{r:.2f}' for r in ratios)}) (goal >= 0.4); hello-world's CPU a request"
        f" over bitbybit's {statistics.median(cpu_ratios):.2f} (median; the server process's"
        " own CPU, not PostgreSQL's)"
    )


if __name__ == "__main__":
    main()
