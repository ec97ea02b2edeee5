"""``POST /customers`` requests/s through a real ``bitbybit serve`` process, events committed.

Drives the server with wrk (Debian's package; ``make bench-deps``) from the other core, then
checks that every 201 left exactly one customer and one ``customer.created`` event behind.

    .venv/bin/python bench/bench_create_customers.py [--seconds 10] [--connections 32]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.integration

from tests.integration.servers import cli, serve

from bitbybit.config import Settings
from bitbybit.models import ListQuery, Tenant
from bitbybit.runtime import Platform

HERE = Path(__file__).resolve().parent


async def count_rows(database_url: str, company: str) -> tuple[int, int]:
    platform = Platform.from_settings(Settings(database_url=database_url))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")

    with tempfile.TemporaryDirectory() as folder:
        database_url = args.database_url or f"sqlite:///{folder}/bench.db"
        env = {"BITBYBIT_DATABASE_URL": database_url}
        cli("migrate", env=env)
        company = cli("companies", "create", "Bench", env=env).strip()
        key = cli("keys", "create", "--company", company, env=env).strip()
        with serve(
            database_url, Path(folder) / "serve.log", BITBYBIT_RATE_LIMIT="1000000000"
        ) as server:
            run = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{args.seconds}s",
                    "--latency",
                    "-s",
                    str(HERE / "create_customers.lua"),
                    server.base_url,
                    "--",
                    key,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        print(run.stdout)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", run.stdout).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", run.stdout).group(1))  # type: ignore[union-attr]
        failed = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
        customers, events = asyncio.run(count_rows(database_url, company))
        dialect = database_url.split(":", 1)[0]
        print(f"dialect: {dialect}")
        print(
            f"POST /customers: {rate:.0f} req/s over {args.seconds}s,"
            f" {args.connections} connections"
        )
        print(f"responses: {total} ({failed.group(1) if failed else 0} non-2xx)")
        print(f"committed: {customers} customers, {events} customer.created events")
        if failed or customers != events or customers < total - args.connections:
            sys.exit("mismatch: every 201 must leave one customer and one event")


if __name__ == "__main__":
    main()
