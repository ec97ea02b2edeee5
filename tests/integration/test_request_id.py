"""One request id from the client's error to the server's log line, and one log format.

Every response carries ``X-Request-Id`` (the client's own when it is a plain token, else a new
``req_…``); every error envelope names it as ``requestId``; every line the request causes carries
it as ``request_id``. A 500 is answered in the envelope with the key's ``RateLimit-*`` headers.
Off a terminal every line on stderr, uvicorn's included, is one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from bitbybit.api import errors as api_errors
from bitbybit.logs import log_format
from bitbybit.services import customers
from tests.conftest import CUSTOMERS, Account
from tests.integration.servers import BITBYBIT, serve


async def test_a_request_id_is_made_when_none_is_sent(
    client: httpx.AsyncClient, account: Account
) -> None:
    first = await client.get(CUSTOMERS, headers=account.headers)
    second = await client.get(CUSTOMERS, headers=account.headers)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(rid.startswith("req_") for rid in ids), ids
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("3f2a9c1e-7b4d-4e8a-9f00-123456789abc", True),
        ("client.trace:42_A-b", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long
        ("has space", False),
        ('quote"d', False),
        ("", False),
    ],
)
async def test_a_client_request_id_is_kept_when_it_is_a_plain_token(
    client: httpx.AsyncClient, account: Account, sent: str, kept: bool
) -> None:
    response = await client.get(CUSTOMERS, headers={**account.headers, "x-request-id": sent})
    echoed = response.headers["x-request-id"]
    assert (echoed == sent) is kept, echoed
    if not kept:
        assert echoed.startswith("req_")


async def test_every_error_envelope_names_the_request_id(
    client: httpx.AsyncClient, account: Account
) -> None:
    answers = [
        await client.get(CUSTOMERS),  # 401
        await client.get(f"{CUSTOMERS}/cust_missing", headers=account.headers),  # 404
        await client.post(CUSTOMERS, json={"email": "nope"}, headers=account.headers),  # 400
        await client.post(  # 415, answered before routing
            CUSTOMERS, content=b"a=b", headers={**account.headers, "content-type": "text/plain"}
        ),
        await client.get("/customer/open/v1/nowhere", headers=account.headers),  # 404 route
    ]
    assert [r.status_code for r in answers] == [401, 404, 400, 415, 404]
    for response in answers:
        assert response.json()["error"]["requestId"] == response.headers["x-request-id"]
    mine = await client.get(
        f"{CUSTOMERS}/cust_missing", headers={**account.headers, "x-request-id": "trace-7"}
    )
    assert mine.json()["error"]["requestId"] == "trace-7"


async def test_a_500_is_the_envelope_with_rate_headers_and_its_log_line_names_the_request(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(customers, "search", explode)
    lines: list[dict[str, Any]] = []

    class Log:
        """The API's logger, keeping each line with the context bound when it was written."""

        def exception(self, event: str, **fields: Any) -> None:
            lines.append({**structlog.contextvars.get_contextvars(), "event": event, **fields})

    monkeypatch.setattr(api_errors, "log", Log())
    response = await client.get(CUSTOMERS, headers={**account.headers, "x-request-id": "trace-500"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "an internal error occurred; it has been logged",
            "requestId": "trace-500",
        }
    }
    assert response.headers["x-request-id"] == "trace-500"
    for header in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert header in response.headers, header
    assert "secret detail" not in response.text
    errors = [line for line in lines if line["event"] == "internal_error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "trace-500"
    assert errors[0]["path"] == CUSTOMERS


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_log_format_is_json_off_a_terminal_and_readable_on_one() -> None:
    assert log_format({}, _Stream(tty=False)) == "json"
    assert log_format({}, _Stream(tty=True)) == "console"
    assert log_format({"BITBYBIT_LOG_FORMAT": "json"}, _Stream(tty=True)) == "json"
    assert log_format({"BITBYBIT_LOG_FORMAT": "console"}, _Stream(tty=False)) == "console"
    with pytest.raises(ValueError, match="BITBYBIT_LOG_FORMAT must be json or console"):
        log_format({"BITBYBIT_LOG_FORMAT": "xml"}, _Stream(tty=False))


def serve_lines(tmp_path: Path, **env: str) -> list[str]:
    """The stderr lines of a ``serve`` that answered one request and was stopped."""
    log = tmp_path / "serve.log"
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with serve(database, log, **env) as server:
        httpx.get(f"{server.base_url}/healthz", timeout=5)
    return [line for line in log.read_text().splitlines() if line.strip()]


def test_serve_writes_every_line_as_json_off_a_terminal(tmp_path: Path) -> None:
    lines = serve_lines(tmp_path)
    records = [json.loads(line) for line in lines]  # each line one JSON object, or this fails
    events = {record["event"] for record in records}
    assert any(event.startswith("Uvicorn running on") for event in events), events
    assert "worker_started" in events
    assert all({"level", "timestamp"} <= set(record) for record in records)


def test_serve_writes_readable_lines_when_asked(tmp_path: Path) -> None:
    lines = serve_lines(tmp_path, BITBYBIT_LOG_FORMAT="console")
    assert not any(line.startswith("{") for line in lines), lines
    assert any("[info" in line and "Uvicorn running on" in line for line in lines), lines
    assert any("worker_started" in line and "concurrency=" in line for line in lines), lines


def test_a_library_line_with_an_exception_carries_its_traceback_as_json() -> None:
    """uvicorn logs a request that failed (or was cancelled at shutdown) with ``exc_info``: the
    JSON line must carry the traceback as text, not the repr of a traceback object."""
    program = (
        "import logging\n"
        "from bitbybit.logs import configure_logging\n"
        "configure_logging(chosen='json')\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    logging.getLogger('uvicorn.error').exception('Exception in ASGI application')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    (record,) = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert record["event"] == "Exception in ASGI application"
    assert record["logger"] == "uvicorn.error"
    assert "exc_info" not in record
    assert "Traceback (most recent call last)" in record["exception"]
    assert "ValueError: boom" in record["exception"]


def test_a_mistyped_log_format_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*BITBYBIT, "companies", "create", "Acme"],
        env={
            **os.environ,
            "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "BITBYBIT_LOG_FORMAT": "xml",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BITBYBIT_LOG_FORMAT must be json or console" in done.stderr
    assert "Traceback" not in done.stderr
