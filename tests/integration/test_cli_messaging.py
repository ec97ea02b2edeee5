"""The messaging commands, run as real ``bitbybit`` processes on a temporary SQLite database:
``messages inject``, ``templates``, ``tickets``, ``whatsapp`` and ``trigger`` for the two message
events, their output for scripts, their exit codes and their one-line errors. What they wrote is
read back in process through the services."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import orjson
import pytest

from bitbybit.config import Settings
from bitbybit.models import Event, ListQuery, Mode, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import customers, messages
from bitbybit.services.trigger import SAMPLE_NUMBER
from tests.integration.servers import BITBYBIT, serve

SECRET_KEY = "cli-messaging-test-key"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of every command here: only our database and key, nothing inherited."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BITBYBIT_")}
    return {
        **inherited,
        "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "BITBYBIT_SECRET_KEY": SECRET_KEY,
    }


@pytest.fixture
def company(env: dict[str, str]) -> str:
    return ok("companies", "create", "Acme", "--country", "ID", env=env)[0]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bitbybit *args`` to its end (a hang fails the test after two minutes)."""
    return subprocess.run([*BITBYBIT, *args], env=env, capture_output=True, text=True, timeout=120)


def ok(*args: str, env: dict[str, str]) -> list[str]:
    """The lines ``bitbybit *args`` printed, which must have succeeded."""
    done = run(*args, env=env)
    assert done.returncode == 0, f"bitbybit {' '.join(args)}: {done.stderr}"
    return done.stdout.splitlines()


def refused(*args: str, env: dict[str, str], saying: str) -> None:
    """``bitbybit *args`` exits 1 with one ``error:`` line containing ``saying``, prints
    nothing on standard output and shows no traceback."""
    done = run(*args, env=env)
    assert done.returncode == 1, f"exit {done.returncode}: {done.stdout} {done.stderr}"
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert saying in errors[0], done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@asynccontextmanager
async def opened(env: dict[str, str]) -> AsyncIterator[Platform]:
    """The commands' database, opened in this process to read what they wrote."""
    platform = Platform.from_settings(Settings.from_env(env))
    await platform.open(migrate=False)
    try:
        yield platform
    finally:
        await platform.close()


async def events_of(env: dict[str, str], tenant: Tenant) -> list[Event]:
    """Every event of ``tenant``, oldest first."""
    async with opened(env) as platform, platform.store.read() as tx:
        page = await tx.list_events(tenant, ListQuery(limit=100))
    return list(reversed(page.items))


def payload(event: Event) -> dict[str, object]:
    loaded: dict[str, object] = orjson.loads(event.payload)
    return loaded


# -- messages inject -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["live", "test"])
async def test_inject_stores_the_message_and_its_new_customer(
    env: dict[str, str], company: str, mode: Mode
) -> None:
    test = ["--test"] if mode == "test" else []
    lines = ok(
        "messages", "inject", "--company", company, "--from", "0812-3456-7001",
        "--body", "Where is my order?", *test, env=env,
    )  # fmt: skip
    assert len(lines) == 1
    message_id = lines[0]
    assert message_id.startswith("msg_")
    tenant = Tenant(company, mode)
    async with opened(env) as platform:
        async with platform.store.read() as tx:
            message = await messages.get(tx, tenant, message_id)
            other = Tenant(company, "live" if mode == "test" else "test")
            assert await tx.get_message(other, message_id) is None
        assert message.customer_id is not None
        customer = await customers.get(platform, tenant, message.customer_id)
    assert (message.direction, message.phone, message.body, message.source) == (
        "in",
        "+6281234567001",
        "Where is my order?",
        "SANDBOX",
    )
    assert (customer.phone_number, customer.source) == ("+6281234567001", "whatsapp")
    assert [event.type for event in await events_of(env, tenant)] == [
        "customer.created",
        "message.received",
    ]


async def test_inject_json_names_the_customer_it_reused(env: dict[str, str], company: str) -> None:
    args = ["messages", "inject", "--company", company, "--json"]
    first = orjson.loads(ok(*args, "--from", "+6281234567002", "--body", "hi", env=env)[0])
    again = orjson.loads(ok(*args, "--from", "081234567002", "--body", "again", env=env)[0])
    assert first["from"] == again["from"] == "+6281234567002"
    assert first["customerId"] == again["customerId"]
    assert first["id"] != again["id"]
    kinds = [event.type for event in await events_of(env, Tenant(company, "live"))]
    assert kinds == ["customer.created", "message.received", "message.received"]


def test_inject_refuses_an_unknown_company_and_a_bad_number(
    env: dict[str, str], company: str
) -> None:
    inject = ["messages", "inject", "--body", "hi"]
    refused(
        *inject, "--company", "comp_unknown", "--from", "+6281234567001",
        env=env, saying="no company comp_unknown",
    )  # fmt: skip
    refused(*inject, "--company", company, "--from", "12", env=env, saying="from: '12'")
    refused(*inject, "--company", company, "--from", "not a number", env=env, saying="from:")


# -- templates -------------------------------------------------------------------------------------


def test_templates_create_and_list(env: dict[str, str], company: str) -> None:
    assert ok(
        "templates", "create", "--company", company, "--name", "order_ready",
        "--body", "Hi {{1}}, order {{2}} is ready", env=env,
    ) == ["order_ready"]  # fmt: skip
    assert ok(
        "templates", "create", "--company", company, "--name", "login_code", "--source", "AUTH",
        "--language", "id", "--body", "Kode Anda {{1}}",
        "--header-media-url", "https://example.com/logo.png", env=env,
    ) == ["login_code"]  # fmt: skip
    listed = ok("templates", "list", "--company", company, env=env)
    assert sorted(listed) == ["login_code\tAUTH\t1\tid", "order_ready\tCRM\t2\ten"]
    as_json = orjson.loads(
        "\n".join(ok("templates", "list", "--company", company, "--json", env=env))
    )
    by_name = {template["name"]: template for template in as_json}
    assert by_name["login_code"]["headerMediaUrl"] == "https://example.com/logo.png"
    assert by_name["order_ready"]["body"] == "Hi {{1}}, order {{2}} is ready"
    assert by_name["order_ready"]["paramCount"] == 2
    # test mode has templates of its own
    assert ok("templates", "list", "--company", company, "--test", env=env) == []
    assert ok(
        "templates", "create", "--company", company, "--name", "order_ready", "--test",
        "--body", "Test {{1}}", env=env,
    ) == ["order_ready"]  # fmt: skip
    assert ok("templates", "list", "--company", company, "--test", env=env) == [
        "order_ready\tCRM\t1\ten"
    ]


def test_templates_refuse_bad_input(env: dict[str, str], company: str) -> None:
    create = ["templates", "create", "--company", company]
    refused(*create, "--name", "gaps", "--body", "Hi {{1}} {{3}}", env=env, saying="{{2}}")
    refused(*create, "--name", "Bad-Name", "--body", "x", env=env, saying="name:")
    refused(*create, "--name", "x", "--body", "x", "--source", "SMS", env=env, saying="source:")
    ok(*create, "--name", "twice", "--body", "x", env=env)
    refused(*create, "--name", "twice", "--body", "y", env=env, saying="already exists")
    refused(
        "templates", "create", "--company", "comp_unknown", "--name", "x", "--body", "x",
        env=env, saying="no company comp_unknown",
    )  # fmt: skip
    refused(
        "templates", "list", "--company", "comp_unknown", env=env, saying="no company comp_unknown"
    )


# -- tickets ---------------------------------------------------------------------------------------


def test_tickets_open_and_close(env: dict[str, str], company: str) -> None:
    injected = ok(
        "messages", "inject", "--company", company, "--from", "+6281234567003", "--body", "help",
        "--json", env=env,
    )  # fmt: skip
    customer = orjson.loads(injected[0])["customerId"]
    tickets = ["tickets", "open", "--company", company, "--customer"]
    opened_lines = ok(*tickets, customer, env=env)
    assert len(opened_lines) == 1
    ticket = opened_lines[0]
    assert ticket.startswith("tkt_")
    refused(*tickets, customer, env=env, saying="already open")
    refused(*tickets, "cust_unknown", env=env, saying="no customer cust_unknown")
    refused(
        "tickets", "open", "--company", "comp_unknown", "--customer", customer,
        env=env, saying="no company comp_unknown",
    )  # fmt: skip
    # the customer is live: test mode does not see it
    refused(*tickets, customer, "--test", env=env, saying=f"no customer {customer}")
    close = ["tickets", "close", "--company", company]
    assert ok(*close, ticket, env=env) == [f"closed {ticket}"]
    assert ok(*close, ticket, env=env) == [f"closed {ticket}"]  # closing again changes nothing
    refused(*close, "tkt_unknown", env=env, saying="no ticket tkt_unknown")
    assert ok(*tickets, customer, "--json", env=env)[0].startswith('{"id":"tkt_')


# -- whatsapp numbers ------------------------------------------------------------------------------


async def test_whatsapp_connect_and_list_never_show_secrets(
    env: dict[str, str], company: str
) -> None:
    connect = ["whatsapp", "connect", "--company", company]
    assert ok(
        *connect, "--phone-number-id", "106540352242922", "--waba-id", "102290129340398",
        "--access-token", "EAAG-typed-token", "--app-secret", "typed-app-secret",
        "--verify-token", "typed-verify", env=env,
    ) == ["106540352242922", "/whatsapp/webhooks/meta"]  # fmt: skip
    from_env = {
        **env,
        "BITBYBIT_WHATSAPP_ACCESS_TOKEN": "EAAG-env-token",
        "BITBYBIT_WHATSAPP_APP_SECRET": "env-app-secret",
        "BITBYBIT_WHATSAPP_VERIFY_TOKEN": "env-verify",
    }
    assert ok(
        *connect, "--phone-number-id", "207650463353033", "--coex", "--pace", "5", env=from_env
    ) == ["207650463353033", "/whatsapp/webhooks/meta"]
    listed = ok("whatsapp", "list", "--company", company, env=env)
    assert sorted(listed) == [
        "106540352242922\twhatsapp cloud api\t102290129340398\t80.0",
        "207650463353033\twhatsapp coex\t-\t5.0",
    ]
    as_json = ok("whatsapp", "list", "--company", company, "--json", env=env)
    shown = "\n".join(listed + as_json)
    for secret in ("token", "secret", "verify"):
        assert secret not in shown
    assert {number["phoneNumberId"] for number in orjson.loads(as_json[0])} == {
        "106540352242922",
        "207650463353033",
    }
    async with opened(env) as platform, platform.store.read() as tx:
        coex = await tx.get_whatsapp_number(company, "whatsapp coex")
    assert coex is not None
    assert coex.access_token != "EAAG-env-token"  # sealed
    assert platform.secrets.open(coex.access_token) == "EAAG-env-token"


def test_whatsapp_connect_refuses_bad_input(env: dict[str, str], company: str) -> None:
    secrets = ["--access-token", "t", "--app-secret", "s", "--verify-token", "v"]
    connect = ["whatsapp", "connect", "--company", company]
    refused(*connect, "--phone-number-id", "abc", *secrets, env=env, saying="phone_number_id")
    refused(*connect, "--phone-number-id", "1", *secrets, "--pace", "0", env=env, saying="pace")
    refused(
        "whatsapp", "connect", "--company", "comp_unknown", "--phone-number-id", "1", *secrets,
        env=env, saying="no company comp_unknown",
    )  # fmt: skip
    refused("whatsapp", "list", "--company", "comp_unknown", env=env, saying="no company")
    # a secret neither typed nor in its variable is a usage error, not a traceback
    done = run(*connect, "--phone-number-id", "1", "--access-token", "t", env=env)
    assert done.returncode == 2
    assert "--app-secret" in done.stderr
    assert "Traceback" not in done.stderr


# -- trigger ---------------------------------------------------------------------------------------


async def test_trigger_message_received_emits_customer_then_message(
    env: dict[str, str], company: str
) -> None:
    tenant = Tenant(company, "live")
    first = ok("trigger", "message.received", "--company", company, env=env)
    assert first[1] == "message.received"
    second = ok("trigger", "message.received", "--company", company, env=env)
    assert second[1] == "message.received"
    written = await events_of(env, tenant)
    # the sample number is a new customer the first time only
    assert [event.type for event in written] == [
        "customer.created",
        "message.received",
        "message.received",
    ]
    assert [written[1].id, written[2].id] == [first[0], second[0]]
    received = payload(written[1])
    assert (received["from"], received["source"]) == (SAMPLE_NUMBER, "SANDBOX")
    assert received["customerId"] == payload(written[0])["id"]
    assert await events_of(env, Tenant(company, "test")) == []


async def test_trigger_status_without_a_running_sender_exits_1(
    env: dict[str, str], company: str
) -> None:
    done = run("trigger", "message.status.updated", "--company", company, "--wait", "0", env=env)
    assert done.returncode == 1, done.stderr
    (message_id,) = done.stdout.splitlines()
    assert message_id.startswith("msg_")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "bitbybit serve" in errors[0]
    assert "bitbybit worker" in errors[0]
    assert message_id in errors[0]
    async with opened(env) as platform, platform.store.read() as tx:
        reply = await messages.get(tx, Tenant(company, "live"), message_id)
    assert (reply.direction, reply.phone, reply.status) == ("out", SAMPLE_NUMBER, "accepted")
    kinds = [event.type for event in await events_of(env, Tenant(company, "live"))]
    assert kinds == ["customer.created", "message.received"]


@contextmanager
def sender(command: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """``bitbybit serve`` or ``bitbybit worker`` on the commands' database while in the block."""
    if command == "serve":
        extra = {k: v for k, v in env.items() if k.startswith("BITBYBIT_")}
        database_url = extra.pop("BITBYBIT_DATABASE_URL")
        with serve(database_url, log, **extra):
            yield
        return
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*BITBYBIT, "worker", "--concurrency", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("command", "mode"), [("worker", "live"), ("serve", "test")])
async def test_trigger_status_prints_the_event_a_running_sender_writes(
    env: dict[str, str], company: str, tmp_path: Path, command: str, mode: Mode
) -> None:
    test = ["--test"] if mode == "test" else []
    with sender(command, env, tmp_path / f"{command}.log"):
        lines = ok(
            "trigger", "message.status.updated", "--company", company, "--wait", "60", *test,
            env=env,
        )  # fmt: skip
    event_id, event_type = lines
    assert event_type == "message.status.updated"
    written = await events_of(env, Tenant(company, mode))
    status = next(event for event in written if event.id == event_id)
    sent = payload(status)
    assert (sent["status"], sent["to"], sent["templateName"]) == ("sent", SAMPLE_NUMBER, None)
    # the first status of that reply, after the customer's message that opened the window
    kinds = [event.type for event in written]
    assert kinds[:3] == ["customer.created", "message.received", "message.status.updated"]
    firsts = [e for e in written if e.type == "message.status.updated"]
    assert firsts[0].id == event_id
    async with opened(env) as platform, platform.store.read() as tx:
        reply = await messages.get(tx, Tenant(company, mode), str(sent["messageId"]))
    assert (reply.direction, reply.source) == ("out", "SANDBOX")
    assert reply.status in ("sent", "delivered", "read")
