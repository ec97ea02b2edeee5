"""The operator's commands, run as real ``bitbybit`` processes on a temporary database (SQLite, and
a fresh PostgreSQL schema): ``companies list``, ``keys``, ``endpoints list|delete|rotate-secret|
test``, ``events list``, ``deliveries list|retry``; their plain and ``--json`` output, their
refusals (one ``error:`` line, a non-zero exit, no traceback); ``--version``, help text without
type tags, shell completion, and ``listen`` reading its own variables, not the server's."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import typer

import bitbybit
from bitbybit.cli import app
from bitbybit.webhooks import verify
from tests.conftest import DIALECTS, POSTGRES_URL, require_postgres
from tests.integration.servers import BITBYBIT, free_port
from tests.integration.test_cli_messaging import ok, refused, run

SECRET_KEY = "cli-operator-test-key"
ENDPOINT_KEYS = {
    "id",
    "url",
    "description",
    "events",
    "status",
    "statusReason",
    "multiSignature",
    "secretRotation",
    "createdAt",
    "updatedAt",
}
DELIVERY_KEYS = {
    "id",
    "eventId",
    "eventType",
    "endpointId",
    "status",
    "attemptCount",
    "nextAttemptAt",
    "lastStatusCode",
    "lastError",
    "createdAt",
    "updatedAt",
}


def _inherited() -> dict[str, str]:
    """This process's environment without any ``BITBYBIT_`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BITBYBIT_")}


@pytest.fixture(params=DIALECTS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of every command: a fresh database of the dialect and our secret key."""
    base = {**_inherited(), "BITBYBIT_SECRET_KEY": SECRET_KEY}
    if request.param == "sqlite":
        yield {**base, "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
        return
    await require_postgres()
    schema = f"cli_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        yield {**base, "BITBYBIT_DATABASE_URL": url}
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
def local(env: dict[str, str]) -> dict[str, str]:
    """``env`` allowing this test's loopback http receivers as webhook targets."""
    return {
        **env,
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
    }


@pytest.fixture
def company(env: dict[str, str]) -> str:
    return ok("companies", "create", "Acme", env=env)[0]


def as_json(*args: str, env: dict[str, str]) -> Any:
    """What ``bitbybit *args --json`` printed: exactly one JSON document."""
    done = run(*args, "--json", env=env)
    assert done.returncode == 0, f"bitbybit {' '.join(args)}: {done.stderr}"
    return orjson.loads(done.stdout)


def misused(*args: str, env: dict[str, str], saying: str) -> None:
    """``bitbybit *args`` is a usage mistake: exit 2, one ``error:`` line, no Click panel."""
    done = run(*args, env=env)
    assert done.returncode == 2, f"exit {done.returncode}: {done.stdout} {done.stderr}"
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert saying in lines[0], done.stderr


@dataclass
class Hook:
    """A webhook receiver on loopback: records each request and answers ``status``."""

    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@contextmanager
def hook(status: int = 200) -> Iterator[Hook]:
    recorder = Hook(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recorder.received.append((dict(self.headers.items()), body))
            self.send_response(recorder.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


CONCURRENT_COMMANDS = 4
"""Independent commands run side by side: each is a process that spends most of its second
importing, so the machine's cores share the work instead of taking turns."""


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """What each of ``calls`` returned, in their order, the calls made side by side (each
    starts its own commands: they must not depend on one another)."""
    with ThreadPoolExecutor(CONCURRENT_COMMANDS) as pool:
        return list(pool.map(lambda call: call(), calls))


def run_each(
    commands: list[list[str]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """``run(*command)`` for each of ``commands``, side by side; the results in their order."""
    return side_by_side(*(partial(run, *command, env=env) for command in commands))


def create_endpoint(company: str, url: str, env: dict[str, str], *extra: str) -> tuple[str, str]:
    """A new endpoint's id and secret, as ``endpoints create`` prints them."""
    endpoint_id, secret = ok("endpoints", "create", "--company", company, "--url", url, *extra,
                             env=env)  # fmt: skip
    return endpoint_id, secret


# -- the command itself --------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    done = run("--version", env=_inherited())
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"bitbybit {bitbybit.__version__}\n",
        "",
    )


def _command_paths() -> list[list[str]]:
    """Every group and command of the CLI, as the words that name it."""
    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_help_shows_flags_bare_and_values_by_metavar() -> None:
    """No Typer type tags (``<bool>``, ``<list[str]>``) anywhere in any command's help."""
    tag = re.compile(r"<(?:bool|str|int|float|list\[[a-z]+\]|[a-z ]+ range)>")
    paths = _command_paths()
    assert ["endpoints", "rotate-secret"] in paths
    assert ["deliveries", "retry"] in paths
    helps = run_each([[*path, "--help"] for path in paths], env={**_inherited(), "COLUMNS": "200"})
    for path, done in zip(paths, helps, strict=True):
        assert done.returncode == 0, done.stderr
        assert not tag.search(done.stdout), f"bitbybit {' '.join(path)} --help:\n{done.stdout}"
    shown = run("keys", "create", "--help", env={**_inherited(), "COLUMNS": "200"}).stdout
    assert re.search(r"--company\s+ID\s+Company id", shown)
    assert re.search(r"--allow-ip\s+CIDR\s+Allowed address", shown)
    assert re.search(r"--test\s+A test-mode key", shown)  # a flag: no value shown


def test_shell_completion_is_available() -> None:
    done = run("--show-completion", "bash", env=_inherited())
    assert done.returncode == 0, done.stderr
    assert "_BITBYBIT_COMPLETE" in done.stdout
    assert "--install-completion" in run("--help", env=_inherited()).stdout


def test_usage_mistakes_are_one_line_and_exit_2() -> None:
    env = _inherited()
    misused("keys", "create", env=env, saying="Missing option '--company'")
    misused("events", "list", "--company", "c", "--limit", "many", env=env, saying="'--limit'")
    misused("endpoints", "frobnicate", env=env, saying="No such command 'frobnicate'")


def test_an_unreachable_database_is_one_line() -> None:
    env = {**_inherited(), "BITBYBIT_SECRET_KEY": SECRET_KEY}
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    refused("companies", "list", "--database-url", closed, env=env, saying="unreachable")
    refused("companies", "list", "--database-url", "mysql://x", env=env, saying="unsupported")


def test_every_command_refuses_an_unknown_company(tmp_path: Path) -> None:
    env = {
        **_inherited(),
        "BITBYBIT_SECRET_KEY": SECRET_KEY,
        "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "BITBYBIT_COMPANY": "comp_unknown",  # --company's variable
    }
    commands = [
        ["keys", "list"],
        ["keys", "create"],
        ["endpoints", "create", "--url", "https://example.com/hook"],
        ["endpoints", "list"],
        ["endpoints", "delete", "we_x"],
        ["endpoints", "rotate-secret", "we_x"],
        ["endpoints", "test", "we_x"],
        ["events", "list"],
        ["deliveries", "list"],
        ["deliveries", "retry", "dlv_x"],
        ["messages", "inject", "--from", "081234567001", "--body", "hi"],
        ["templates", "list"],
        ["tickets", "open", "--customer", "cust_x"],
        ["whatsapp", "list"],
        ["trigger", "customer.created"],
    ]
    # The first alone: it creates the database the others then read side by side.
    refused(*commands[0], env=env, saying="no company comp_unknown")
    side_by_side(
        *(partial(refused, *c, env=env, saying="no company comp_unknown") for c in commands[1:])
    )


def test_migrate_json_lists_what_it_applied(tmp_path: Path) -> None:
    env = {
        **_inherited(),
        "BITBYBIT_SECRET_KEY": SECRET_KEY,
        "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    first = as_json("migrate", env=env)
    assert list(first) == ["applied"]
    assert first["applied"]
    assert as_json("migrate", env=env) == {"applied": []}


# -- listen reads its own variables ---------------------------------------------------------------


def _first_stderr_line(args: list[str], env: dict[str, str]) -> tuple[str, int | None]:
    """Start ``bitbybit listen``; its first line on stderr, and its exit status when that line
    is an error (``None`` when it is listening; it is then stopped)."""
    process = subprocess.Popen(
        [*BITBYBIT, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().strip()
        if line.startswith("error: "):  # it refused to start: it ends now
            return line, process.wait(30)
        return line, None
    finally:
        process.terminate()
        process.wait(30)


def test_listen_ignores_the_servers_port_and_reads_its_own() -> None:
    server_port, listen_port = free_port(), free_port()
    secret = ["--secret", "whsec_listenTestSecret0123456789abcd"]
    env = {**_inherited(), "BITBYBIT_PORT": str(server_port), "BITBYBIT_HOST": "::"}
    line, _ = _first_stderr_line(
        ["listen", *secret], {**env, "BITBYBIT_LISTEN_PORT": str(listen_port)}
    )
    assert line == f"listening on http://127.0.0.1:{listen_port}"
    line, _ = _first_stderr_line(["listen", *secret], env)  # its default, whatever the server's
    assert line in {"listening on http://127.0.0.1:8765", "error: cannot listen on 127.0.0.1:8765: "
                    "Address already in use"}  # fmt: skip
    secret_env = {**env, "BITBYBIT_LISTEN_PORT": str(listen_port),
                  "BITBYBIT_LISTEN_SECRET": "whsec_fromTheVariable0123456789abcd"}  # fmt: skip
    line, _ = _first_stderr_line(["listen"], secret_env)
    assert line == f"listening on http://127.0.0.1:{listen_port}"


def test_listen_on_a_busy_port_is_one_line() -> None:
    with hook() as busy:
        port = busy.url.split(":")[2].split("/")[0]
        line, status = _first_stderr_line(
            ["listen", "--port", port, "--secret", "whsec_x"], _inherited()
        )
    assert status == 1
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}")


# -- companies and keys ---------------------------------------------------------------------------


def test_companies_list_in_creation_order(env: dict[str, str]) -> None:
    assert ok("companies", "list", env=env) == []
    assert as_json("companies", "list", env=env) == []
    first = ok("companies", "create", "Acme", env=env)[0]
    second = ok("companies", "create", "Tokobaju", "--country", "sg", env=env)[0]
    rows = [line.split("\t") for line in ok("companies", "list", env=env)]
    assert [row[:3] for row in rows] == [[first, "Acme", "ID"], [second, "Tokobaju", "SG"]]
    listed = as_json("companies", "list", env=env)
    assert [set(c) for c in listed] == [{"id", "name", "country", "createdAt"}] * 2
    assert [(c["id"], c["name"]) for c in listed] == [(first, "Acme"), (second, "Tokobaju")]


def test_keys_create_names_the_key_id_that_rotate_and_revoke_take(
    env: dict[str, str], company: str
) -> None:
    done = run("keys", "create", "--company", company, env=env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert done.stdout == f"{key}\n"  # scripts read the key alone
    assert key.startswith("bbb_live_")
    key_id = re.findall(r"^key id: (key_\w+)$", done.stderr, re.MULTILINE)
    assert len(key_id) == 1
    created = as_json("keys", "create", "--company", company, "--test", env=env)
    assert set(created) == {"key", "id"}
    assert created["key"].startswith("bbb_test_")

    rotated = as_json("keys", "rotate", key_id[0], env=env)
    assert set(rotated) == {"key", "id"}
    assert rotated["id"] != key_id[0]
    assert ok("keys", "revoke", created["id"], env=env) == [f"revoked {created['id']}"]
    states = {k["id"]: (k["mode"], k["state"]) for k in as_json("keys", "list", "--company",
                                                                  company, env=env)}  # fmt: skip
    assert states == {
        key_id[0]: ("live", "expiring"),
        rotated["id"]: ("live", "active"),
        created["id"]: ("test", "revoked"),
    }
    plain = [line.split("\t") for line in ok("keys", "list", "--company", company, env=env)]
    assert {row[0] for row in plain} == set(states)
    assert all(len(row) == 5 and not row[1].endswith(key[-8:]) for row in plain)


def test_keys_refuse_unknown_companies_and_ids(env: dict[str, str], company: str) -> None:
    refused("keys", "list", "--company", "comp_unknown", env=env, saying="no company comp_unknown")
    refused("keys", "create", "--company", "comp_unknown", env=env, saying="no company")
    refused("keys", "rotate", "key_unknown", env=env, saying="no active key key_unknown")
    refused("keys", "revoke", "key_unknown", env=env, saying="no key key_unknown")
    refused("keys", "create", "--company", company, "--scopes", "root", env=env, saying="scopes")


# -- endpoints ------------------------------------------------------------------------------------


def test_endpoints_list_shows_each_mode_and_never_secrets(
    local: dict[str, str], company: str
) -> None:
    live, live_secret = create_endpoint(company, "http://127.0.0.1:9/live", local,
                                        "--events", "order.created,customer.created")  # fmt: skip
    test, _ = create_endpoint(company, "http://127.0.0.1:9/test", local, "--test")
    rows = [line.split("\t") for line in ok("endpoints", "list", "--company", company, env=local)]
    assert rows == [[live, "http://127.0.0.1:9/live", "active", "customer.created,order.created"]]
    listed = as_json("endpoints", "list", "--company", company, "--test", env=local)
    assert [e["id"] for e in listed] == [test]
    assert set(listed[0]) == ENDPOINT_KEYS
    assert listed[0]["events"] == ["*"]
    shown = run("endpoints", "list", "--company", company, "--json", env=local).stdout
    assert live_secret not in shown
    assert "whsec_" not in shown


def test_endpoints_delete(local: dict[str, str], company: str) -> None:
    endpoint, _ = create_endpoint(company, "http://127.0.0.1:9/x", local)
    refused("endpoints", "delete", endpoint, "--company", company, "--test", env=local,
            saying=f"no webhook endpoint {endpoint}")  # fmt: skip
    assert ok("endpoints", "delete", endpoint, "--company", company, env=local) == [
        f"deleted {endpoint}"
    ]
    assert ok("endpoints", "list", "--company", company, env=local) == []
    refused("endpoints", "delete", endpoint, "--company", company, env=local,
            saying=f"no webhook endpoint {endpoint}")  # fmt: skip
    refused("endpoints", "delete", endpoint, "--company", "comp_unknown", env=local,
            saying="no company comp_unknown")  # fmt: skip


def test_endpoints_test_sends_a_signed_sample_and_reports_the_answer(
    local: dict[str, str], company: str
) -> None:
    with hook() as receiver:
        endpoint, secret = create_endpoint(company, receiver.url, local)
        event_id, status, latency = ok("endpoints", "test", endpoint, "--company", company,
                                       "--event", "order.created", env=local)  # fmt: skip
        assert event_id.startswith("evt_test_")
        assert status == "200"
        assert latency.endswith(" ms")
        headers, body = receiver.received[-1]
        event = verify(body, headers, secret)
        assert (event.id, event.type) == (event_id, "order.created")

        shown = as_json("endpoints", "test", endpoint, "--company", company, env=local)
        assert set(shown) == {"eventId", "eventType", "succeeded", "statusCode", "latencyMs",
                              "error", "responseBody"}  # fmt: skip
        assert (shown["eventType"], shown["succeeded"], shown["responseBody"]) == (
            "customer.created",
            True,
            "ok",
        )

        receiver.status = 500
        done = run("endpoints", "test", endpoint, "--company", company, env=local)
        assert done.returncode == 1
        assert done.stdout.splitlines()[1] == "500"
        assert done.stderr.strip().splitlines() == ["error: the endpoint answered 500"]
    refused("endpoints", "test", endpoint, "--company", company, "--event", "nope", env=local,
            saying="eventType")  # fmt: skip
    refused("endpoints", "test", "we_unknown", "--company", company, env=local,
            saying="no webhook endpoint we_unknown")  # fmt: skip


def test_endpoints_rotate_secret_with_and_without_grace(
    local: dict[str, str], company: str
) -> None:
    with hook() as receiver:
        endpoint, old = create_endpoint(company, receiver.url, local)
        rotated = as_json("endpoints", "rotate-secret", endpoint, "--company", company, env=local)
        assert set(rotated) == {"id", "secret", "effectiveAt"}
        assert rotated["id"] == endpoint
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != old
        listed = as_json("endpoints", "list", "--company", company, env=local)
        assert listed[0]["secretRotation"] == {"newSecretEffectiveAt": rotated["effectiveAt"]}
        ok("endpoints", "test", endpoint, "--company", company, env=local)
        verify(receiver.received[-1][1], receiver.received[-1][0], old)  # the old one still signs

        got_id, new, effective = ok("endpoints", "rotate-secret", endpoint, "--company", company,
                                    "--grace-hours", "0", env=local)  # fmt: skip
        assert got_id == endpoint
        assert effective < rotated["effectiveAt"]
        ok("endpoints", "test", endpoint, "--company", company, env=local)
        verify(receiver.received[-1][1], receiver.received[-1][0], new)  # at once
    refused("endpoints", "rotate-secret", "we_unknown", "--company", company, env=local,
            saying="no webhook endpoint we_unknown")  # fmt: skip
    misused("endpoints", "rotate-secret", endpoint, "--company", company, "--grace-hours", "-1",
            env=local, saying="--grace-hours")  # fmt: skip


# -- events and deliveries ------------------------------------------------------------------------


def test_events_list_filters_by_type_and_time(local: dict[str, str], company: str) -> None:
    create_endpoint(company, "http://127.0.0.1:9/x", local)
    customer = ok("trigger", "customer.created", "--company", company, env=local)[0]
    product = ok("trigger", "product.created", "--company", company, env=local)[0]
    rows = [line.split("\t") for line in ok("events", "list", "--company", company, env=local)]
    assert [row[:2] for row in rows] == [
        [product, "product.created"],
        [customer, "customer.created"],
    ]
    since = rows[0][2]
    listing = partial(ok, "events", "list", "--company", company, env=local)
    in_json = partial(as_json, "events", "list", "--company", company, env=local)
    only, since_json, until, test_mode, limited, *_ = side_by_side(  # reads, side by side
        partial(in_json, "--type", "customer.created"),
        partial(in_json, "--since", since),
        partial(listing, "--until", "2001-01-01T00:00:00Z"),
        partial(listing, "--test"),
        partial(listing, "--limit", "1"),
        partial(refused, "events", "list", "--company", company, "--type", "order.shipped",
                env=local, saying="unknown event type 'order.shipped'"),
        partial(refused, "events", "list", "--company", company, "--since", "yesterday",
                env=local, saying="since: 'yesterday' is not an ISO-8601 time"),
        partial(refused, "events", "list", "--company", "comp_unknown", env=local,
                saying="no company"),
    )  # fmt: skip
    assert [e["id"] for e in only] == [customer]
    assert set(only[0]) == {"id", "type", "createdAt", "payload"}
    assert only[0]["payload"]["id"].startswith("cust_")
    assert [e["id"] for e in since_json] == [product]
    assert until == []
    assert test_mode == []
    assert len(limited) == 1


def test_deliveries_list_filters_and_refusals(local: dict[str, str], company: str) -> None:
    first, _ = create_endpoint(company, "http://127.0.0.1:9/a", local)
    second, _ = create_endpoint(company, "http://127.0.0.1:9/b", local)
    event = ok("trigger", "customer.created", "--company", company, env=local)[0]
    listed = as_json("deliveries", "list", "--company", company, env=local)
    assert {(d["endpointId"], d["eventId"], d["status"]) for d in listed} == {
        (first, event, "pending"),
        (second, event, "pending"),
    }
    assert all(set(d) == DELIVERY_KEYS for d in listed)
    rows = [line.split("\t") for line in ok("deliveries", "list", "--company", company,
                                             "--endpoint", second, env=local)]  # fmt: skip
    assert len(rows) == 1
    assert rows[0][1:] == ["pending", "customer.created", event, second, "0"]
    listing = partial(ok, "deliveries", "list", "--company", company, env=local)
    by_event, failed_or_held, test_mode, *_ = side_by_side(  # reads, side by side
        partial(listing, "--event", event),
        partial(listing, "--status", "failed,held"),
        partial(listing, "--test"),
        partial(refused, "deliveries", "list", "--company", company, "--status", "lost",
                env=local, saying="unknown status 'lost'"),
        partial(refused, "deliveries", "list", "--company", company, "--endpoint", "we_unknown",
                env=local, saying="no webhook endpoint we_unknown"),
        partial(refused, "deliveries", "list", "--company", company, "--event", "evt_unknown",
                env=local, saying="no event evt_unknown"),
        partial(refused, "deliveries", "list", "--company", "comp_unknown", env=local,
                saying="no company"),
        partial(refused, "deliveries", "retry", "dlv_unknown", "--company", company, env=local,
                saying="no delivery dlv_unknown"),
        partial(refused, "deliveries", "retry", rows[0][0], "--company", company, "--test",
                env=local, saying=f"no delivery {rows[0][0]}"),
    )  # fmt: skip
    assert len(by_event) == 2
    assert failed_or_held == []
    assert test_mode == []


def _wait_for_status(company: str, status: str, env: dict[str, str]) -> list[Any]:
    """The deliveries in ``status`` once there are any (a running worker gets there)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = as_json("deliveries", "list", "--company", company, "--status", status, env=env)
        if found:
            return list(found)
        time.sleep(0.2)
    raise AssertionError(f"no {status} delivery appeared")


def test_deliveries_retry_sends_a_failed_delivery_again(
    local: dict[str, str], company: str
) -> None:
    env = {**local, "BITBYBIT_RETRY_SCHEDULE": "", "BITBYBIT_DELIVERY_TIMEOUT": "5"}
    with hook(status=500) as receiver:
        endpoint, secret = create_endpoint(company, receiver.url, env)
        event = ok("trigger", "customer.created", "--company", company, env=env)[0]
        worker = subprocess.Popen(
            [*BITBYBIT, "worker", "--concurrency", "4"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            [failed] = _wait_for_status(company, "failed", env)
            assert (failed["eventId"], failed["lastStatusCode"]) == (event, 500)
            receiver.status = 200
            retried = as_json("deliveries", "retry", failed["id"], "--company", company, env=env)
            assert set(retried) == DELIVERY_KEYS
            assert (retried["id"], retried["status"]) == (failed["id"], "pending")
            [succeeded] = _wait_for_status(company, "succeeded", env)
        finally:
            worker.terminate()
            worker.wait(30)
    assert succeeded["id"] == failed["id"]
    headers, body = receiver.received[-1]
    assert verify(body, headers, secret).id == event
    assert ok("deliveries", "retry", failed["id"], "--company", company, env=env) == [
        failed["id"],
        "pending",
    ]
    assert endpoint == succeeded["endpointId"]
