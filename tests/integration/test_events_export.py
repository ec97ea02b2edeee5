"""``bitbybit events export``, run as a real process on SQLite and on a fresh PostgreSQL schema:
JSON Lines on standard output, one event a line as the API shows it, oldest first by
``(createdAt, id)`` across more than one page; ``--since``/``--until`` as ISO-8601 times or
durations ago (``--until`` exclusive); ``--test``; and its refusals (one ``error:`` line, exit 1;
a missing ``--since`` is a usage error, exit 2)."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from bitbybit.clock import iso, system_clock
from bitbybit.models import Event, Tenant
from bitbybit.services import payloads
from bitbybit.services.retention import DAY_MS, EXPORT_PAGE
from tests.conftest import DIALECTS, POSTGRES_URL, require_postgres
from tests.integration.servers import cli
from tests.integration.test_cli_messaging import ok, opened, refused, run

SECRET_KEY = "events-export-test-key"
TYPES = ("customer.created", "order.created", "product.updated")
OLD = 2 * EXPORT_PAGE + 203
"""Old events: more than two pages' worth."""


@pytest.fixture(params=DIALECTS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of every command: a fresh database of the dialect and our secret key."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BITBYBIT_")}
    base["BITBYBIT_SECRET_KEY"] = SECRET_KEY
    if request.param == "sqlite":
        yield {**base, "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'export.db'}"}
        return
    await require_postgres()
    schema = f"export_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {**base, "BITBYBIT_DATABASE_URL": f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"}
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


class History:
    """A company's events: ``old`` ones 20 days ago (two a millisecond, stored in a shuffled
    order), one ``recent`` (a day ago); two in test mode; one of another company."""

    def __init__(self, company: str, start: int) -> None:
        self.company = company
        self.start = start
        self.old = [
            Event(
                f"evt_{n:06d}",
                TYPES[n % 3],
                orjson.dumps({"id": f"cust_{n}", "n": n, "note": "ü"}),
                start + (n // 2) * 1000,
            )
            for n in range(OLD)
        ]
        self.recent = Event("evt_recent", "order.created", b'{"id":"ord_1"}', start + 19 * DAY_MS)
        self.test = [
            Event(f"evt_test_mode_{n}", "customer.created", b'{"id":"t"}', start + n)
            for n in range(2)
        ]

    @staticmethod
    def lines(events: list[Event]) -> list[dict[str, Any]]:
        """What the export prints for ``events``: the API's event resource, oldest first."""
        ordered = sorted(events, key=lambda e: (e.created_at, e.id))
        return [payloads.event(event) for event in ordered]


@pytest.fixture
async def history(env: dict[str, str]) -> History:
    company = ok("companies", "create", "Acme", env=env)[0]
    other = ok("companies", "create", "Globex", env=env)[0]
    made = History(company, system_clock() - 20 * DAY_MS)
    shuffled = [*made.old, made.recent]
    random.Random(7).shuffle(shuffled)
    async with opened(env) as platform, platform.store.write() as tx:
        await tx.insert_events(Tenant(company, "live"), shuffled)
        await tx.insert_events(Tenant(company, "test"), made.test)
        await tx.insert_event(Tenant(other, "live"), Event("evt_other", "order.created", b"{}", 0))
    return made


def exported(*args: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The JSON objects ``bitbybit events export *args`` printed, one a line."""
    out = cli("events", "export", *args, env=env)
    assert out == "" or out.endswith("\n")
    return [orjson.loads(line) for line in out.splitlines()]


def test_every_event_since_a_time_oldest_first_as_the_api_shows_it(
    env: dict[str, str], history: History
) -> None:
    done = run(
        "events", "export", "--company", history.company, "--since", iso(history.start), env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == OLD + 1
    assert [orjson.loads(line) for line in lines] == History.lines([*history.old, history.recent])
    first = orjson.loads(lines[0])
    assert list(first) == ["id", "type", "createdAt", "payload"]
    assert first["payload"] == {"id": "cust_0", "n": 0, "note": "ü"}
    assert "ü" in lines[0]  # UTF-8 as it is, not escaped
    assert f"exported {OLD + 1} events" in done.stderr


def test_since_and_until_take_times_and_durations_until_excluded(
    env: dict[str, str], history: History
) -> None:
    company = ["--company", history.company]
    recent = History.lines([history.recent])
    assert exported(*company, "--since", "7d", env=env) == recent
    assert exported(*company, "--since", "P7D", env=env) == recent
    assert exported(*company, "--since", "1w", env=env) == recent
    assert exported(*company, "--since", "30d", "--until", "P1W", env=env) == History.lines(
        history.old
    )
    # until is excluded: the events of the first millisecond and not those of the second.
    second = iso(history.start + 1000)
    assert exported(*company, "--since", "P30D", "--until", second, env=env) == History.lines(
        history.old[:2]
    )
    # since is included; a naive time is UTC.
    last_old = history.old[-1].created_at
    naive = iso(last_old).removesuffix("Z")
    assert exported(*company, "--since", naive, "--until", "7d", env=env) == History.lines(
        [e for e in history.old if e.created_at >= last_old]
    )
    assert exported(*company, "--since", "1h", env=env) == []


def test_test_mode_and_other_companies_apart(env: dict[str, str], history: History) -> None:
    assert exported(
        "--company", history.company, "--test", "--since", "30d", env=env
    ) == History.lines(history.test)


def test_refusals(env: dict[str, str], history: History) -> None:
    company = ["--company", history.company]
    refused(
        "events", "export", *company, "--since", "yesterday", env=env,
        saying="since: 'yesterday' is neither an ISO-8601 time",
    )  # fmt: skip
    refused(
        "events", "export", *company, "--since", "7d", "--until", "P1M", env=env,
        saying="until: 'P1M' is neither",
    )  # fmt: skip
    refused(
        "events", "export", *company, "--since", "7d", "--until", "8d", env=env,
        saying="until: must be later than since",
    )  # fmt: skip
    refused(
        "events", "export", "--company", "co_missing", "--since", "7d", env=env,
        saying="no company co_missing",
    )  # fmt: skip
    missing = run("events", "export", *company, env=env)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert "--since" in missing.stderr
    assert "Traceback" not in missing.stderr
