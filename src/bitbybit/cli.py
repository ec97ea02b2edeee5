"""The ``bitbybit`` command: thin wrappers that parse options and call the services.

Every option also reads ``BITBYBIT_<NAME>``; output meant for scripts is one value per line, or
JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

from bitbybit.config import Settings
from bitbybit.errors import BitbybitError, NotFound
from bitbybit.runtime import Platform
from bitbybit.services import access
from bitbybit.stopping import GracefulStop

if TYPE_CHECKING:
    from pydantic import BaseModel

    from bitbybit.store import Tx

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")

app = typer.Typer(
    name="bitbybit",
    help="Open API, signed webhooks and WhatsApp messaging for commerce.",
    no_args_is_help=True,
    add_completion=False,
)
companies_app = typer.Typer(help="Companies (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
endpoints_app = typer.Typer(help="Webhook endpoints.", no_args_is_help=True)
app.add_typer(companies_app, name="companies")
app.add_typer(keys_app, name="keys")
app.add_typer(endpoints_app, name="endpoints")
secrets_app = typer.Typer(
    help="The secret key that encrypts webhook signing secrets.", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")
messages_app = typer.Typer(help="WhatsApp messages.", no_args_is_help=True)
templates_app = typer.Typer(help="WhatsApp message templates.", no_args_is_help=True)
tickets_app = typer.Typer(help="Agent tickets on customers.", no_args_is_help=True)
whatsapp_app = typer.Typer(help="WhatsApp Business numbers (Cloud API).", no_args_is_help=True)
app.add_typer(messages_app, name="messages")
app.add_typer(templates_app, name="templates")
app.add_typer(tickets_app, name="tickets")
app.add_typer(whatsapp_app, name="whatsapp")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="BITBYBIT_DATABASE_URL", help="sqlite:///… or postgresql://…"
    ),
]
Concurrency = Annotated[
    int,
    typer.Option(
        "--concurrency",
        envvar="BITBYBIT_CONCURRENCY",
        min=0,
        help="Delivery attempts in flight at once (0: no worker in this process)",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of plain lines")]
Company = Annotated[str, typer.Option("--company", help="Company id (comp_…)")]
TestMode = Annotated[bool, typer.Option("--test", help="In test mode")]


META_CALLBACK_PATH = "/whatsapp/webhooks/meta"
"""Where Meta posts a connected number's messages and statuses (``api/routes/meta.py``)."""


def _settings(database_url: str | None) -> Settings:
    if database_url:
        return Settings.from_env(database_url=database_url)
    return Settings.from_env()


def _freeze_startup_objects() -> None:
    """Hide what start-up made (modules, the application, its schemas) from the garbage
    collector: a full collection walks every tracked object, and over all of them it paused the
    event loop for 30-60 ms, in the middle of requests and deliveries."""
    gc.collect()
    gc.freeze()


def _run(
    database_url: str | None,
    work: Callable[[Platform], Awaitable[T]],
    *,
    migrate: bool = True,
    fast_loop: bool = False,
) -> T:
    """Open the platform (migrated), run ``work``, close; domain errors print and exit 1.

    ``fast_loop`` runs on uvloop (as ``serve`` does through uvicorn): the delivery worker spends
    most of its time in the event loop's networking.
    """

    async def main() -> T:
        platform = Platform.from_settings(_settings(database_url))
        await platform.open(migrate=migrate)
        try:
            return await work(platform)
        finally:
            await platform.close()

    try:
        if fast_loop:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main())
        return asyncio.run(main())
    except BitbybitError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _print(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(values).decode())
    else:
        for value in values.values():
            typer.echo(value)


def _rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    """A list: one tab-separated line per row, or with ``--json`` one JSON array."""
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        typer.echo("\t".join("-" if value is None else str(value) for value in row.values()))


def _parsed(schema: type[M], **fields: Any) -> M:
    """``schema`` built from options; invalid ones print one line naming them and exit 1."""
    from pydantic import ValidationError

    try:
        return schema(**fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        typer.echo(f"error: {problems}", err=True)
        raise typer.Exit(1) from None


async def _company_exists(tx: Tx, company_id: str) -> None:
    if await tx.get_company(company_id) is None:
        raise NotFound(f"no company {company_id}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="BITBYBIT_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="BITBYBIT_PORT")] = 8000,
    concurrency: Concurrency = 256,
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate if needed, then run the API, the dashboard and a delivery worker."""
    import uvicorn

    from bitbybit.api.app import create_app
    from bitbybit.api.server import Server

    settings = _settings(database_url)
    _run(database_url, lambda platform: platform.migrate(), migrate=False)
    app = create_app(settings, worker_concurrency=concurrency)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        proxy_headers=False,
        timeout_graceful_shutdown=round(settings.delivery_timeout) + 5,
    )
    _freeze_startup_objects()
    server = Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command()
def worker(concurrency: Concurrency = 256, database_url: DatabaseUrl = None) -> None:
    """Run delivery workers only, until SIGINT or SIGTERM (in-flight attempts then finish and
    are recorded; a second signal exits at once)."""
    from bitbybit.channels import delivery_worker
    from bitbybit.delivery.metrics_server import serving_metrics
    from bitbybit.services.idempotency import pruning

    async def work(platform: Platform) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopper = GracefulStop(stop.set)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopper, signum)
        _freeze_startup_objects()
        async with serving_metrics(platform.settings.metrics_address), pruning(platform):
            await delivery_worker(platform, max(concurrency, 1)).run(stop)

    _run(database_url, work, fast_loop=True)


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the schema."""
    applied = _run(database_url, lambda platform: platform.migrate(), migrate=False)
    for name in applied:
        typer.echo(f"applied {name}")
    if not applied:
        typer.echo("schema is up to date")


@companies_app.command("create")
def companies_create(
    name: str,
    country: Annotated[str, typer.Option(help="ISO country for local phone numbers")] = "ID",
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a company; prints its id."""
    company = _run(database_url, lambda platform: access.create_company(platform, name, country))
    _print({"id": company.id}, as_json)


@keys_app.command("create")
def keys_create(
    company: Annotated[str, typer.Option("--company", help="Company id (comp_…)")],
    scopes: Annotated[str, typer.Option(help="'all' or a comma list")] = "all",
    test: Annotated[bool, typer.Option("--test", help="A test-mode key (bbb_test_…)")] = False,
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Allowed address or CIDR; repeatable")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an API key; prints the key once (only its hash is stored)."""
    key, raw = _run(
        database_url,
        lambda platform: access.create_api_key(
            platform,
            company,
            mode="test" if test else "live",
            scopes=scopes,
            ip_allowlist=allow_ip or (),
            name=name,
        ),
    )
    _print({"key": raw, "id": key.id} if as_json else {"key": raw}, as_json)


@keys_app.command("rotate")
def keys_rotate(key_id: str, database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """Issue a successor key; the old one keeps working for 24 hours."""
    key, raw = _run(database_url, lambda platform: access.rotate_api_key(platform, key_id))
    _print({"key": raw, "id": key.id} if as_json else {"key": raw}, as_json)


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a key at once."""
    _run(database_url, lambda platform: access.revoke_api_key(platform, key_id))
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(
    company: Annotated[str, typer.Option("--company")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List a company's keys (prefixes only)."""

    async def work(platform: Platform) -> list[Any]:
        async with platform.store.read() as tx:
            return await tx.list_api_keys(company)

    for key in _run(database_url, work):
        values = {
            "id": key.id,
            "prefix": key.prefix,
            "mode": key.mode,
            "scopes": ",".join(sorted(key.scopes)),
            "state": "revoked" if key.revoked_at else ("expiring" if key.expires_at else "active"),
        }
        if as_json:
            typer.echo(orjson.dumps(values).decode())
        else:
            typer.echo("\t".join(str(v) for v in values.values()))


@endpoints_app.command("create")
def endpoints_create(
    company: Annotated[str, typer.Option("--company", help="Company id (comp_…)")],
    url: Annotated[str, typer.Option("--url", help="Where to POST events (https://…)")],
    events: Annotated[
        str | None, typer.Option("--events", help="Comma list of event types (default: all)")
    ] = None,
    test: Annotated[bool, typer.Option("--test", help="Receive test-mode events")] = False,
    description: Annotated[str | None, typer.Option(help="A label")] = None,
    multi_signature: Annotated[
        bool, typer.Option("--multi-signature", help="Sign with both secrets while rotating")
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a webhook endpoint; prints its id and its signing secret (shown once)."""
    from pydantic import ValidationError

    from bitbybit.models import Tenant
    from bitbybit.schemas import EndpointCreate
    from bitbybit.services import webhooks

    try:
        data = EndpointCreate(
            url=url,
            events=[e.strip() for e in events.split(",") if e.strip()] if events else None,  # type: ignore[misc]  # validated by the schema
            description=description,
            multiSignature=multi_signature,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        typer.echo(f"error: {problems}", err=True)
        raise typer.Exit(1) from None
    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> tuple[Any, str]:
        async with platform.store.read() as tx:
            if await tx.get_company(company) is None:
                raise NotFound(f"no company {company}")
        return await webhooks.create_endpoint(platform, tenant, data)

    endpoint, secret = _run(database_url, work)
    _print({"id": endpoint.id, "secret": secret}, as_json)


@messages_app.command("inject")
def messages_inject(
    company: Company,
    sender: Annotated[
        str,
        typer.Option(
            "--from", help="The customer's number; local numbers use the company's country"
        ),
    ],
    body: Annotated[str, typer.Option("--body", help="The message's text")],
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Receive a simulated inbound message from the sandbox, as if the customer had written:
    emits customer.created (for a new number) and message.received; prints the message id."""
    from bitbybit.models import Tenant
    from bitbybit.services.messages import Inbound, receive

    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> Any:
        async def run(tx: Tx) -> Any:
            message = await receive(platform, tx, tenant, Inbound(sender=sender, body=body))
            assert message is not None  # a new WhatsApp id: never a repeat
            return message

        return await platform.run(run)

    message = _run(database_url, work)
    values = {"id": message.id}
    if as_json:
        values |= {"from": message.phone, "customerId": message.customer_id}
    _print(values, as_json)


@templates_app.command("create")
def templates_create(
    company: Company,
    name: Annotated[str, typer.Option("--name", help="Lower-case letters, digits and _")],
    body: Annotated[str, typer.Option("--body", help="The text, with {{1}}, {{2}}… placeholders")],
    source: Annotated[str, typer.Option("--source", help="CRM or AUTH")] = "CRM",
    language: Annotated[str, typer.Option("--language", help="Language code")] = "en",
    header_media_url: Annotated[
        str | None, typer.Option("--header-media-url", help="A header image (https://…)")
    ] = None,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a message template; prints its name."""
    from bitbybit.models import Tenant
    from bitbybit.schemas import TemplateCreate
    from bitbybit.services import templates

    data = _parsed(
        TemplateCreate,
        name=name,
        source=source,
        language=language,
        body=body,
        headerMediaUrl=header_media_url,
    )
    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> Any:
        async def run(tx: Tx) -> Any:
            await _company_exists(tx, company)
            return await templates.create(platform, tx, tenant, data)

        return await platform.run(run)

    template = _run(database_url, work)
    _print({"name": template.name}, as_json)


@templates_app.command("list")
def templates_list(
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List a company's templates: name, source, parameter count and language, tab-separated
    (``--json``: the templates as the API shows them)."""
    from bitbybit.models import Tenant
    from bitbybit.services import templates

    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> list[Any]:
        found: list[Any] = []
        async with platform.store.read() as tx:
            await _company_exists(tx, company)
            page = 1
            while True:
                listed = await templates.listing(tx, tenant, page, 100)
                found.extend(listed.items)
                if not listed.has_next_page:
                    return found
                page += 1

    listed = _run(database_url, work)
    if as_json:
        _rows([templates.resource(template) for template in listed], as_json)
    else:
        _rows(
            [
                {
                    "name": template.name,
                    "source": template.source,
                    "paramCount": template.param_count,
                    "language": template.language,
                }
                for template in listed
            ],
            as_json,
        )


@tickets_app.command("open")
def tickets_open(
    company: Company,
    customer: Annotated[str, typer.Option("--customer", help="Customer id (cust_…)")],
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Open an agent ticket on a customer (automated sends are refused while it is open);
    prints its id."""
    from bitbybit.models import Tenant
    from bitbybit.services import tickets

    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> Any:
        async def run(tx: Tx) -> Any:
            await _company_exists(tx, company)
            return await tickets.open_for(platform, tx, tenant, customer)

        return await platform.run(run)

    ticket = _run(database_url, work)
    _print({"id": ticket.id}, as_json)


@tickets_app.command("close")
def tickets_close(
    ticket_id: str,
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Close a ticket (closing a closed one changes nothing)."""
    from bitbybit.models import Tenant
    from bitbybit.services import tickets

    tenant = Tenant(company, "test" if test else "live")

    async def work(platform: Platform) -> Any:
        async def run(tx: Tx) -> Any:
            await _company_exists(tx, company)
            return await tickets.close(platform, tx, tenant, ticket_id)

        return await platform.run(run)

    _run(database_url, work)
    typer.echo(f"closed {ticket_id}")


@whatsapp_app.command("connect")
def whatsapp_connect(
    company: Company,
    phone_number_id: Annotated[
        str, typer.Option("--phone-number-id", help="Meta's numeric id of the number")
    ],
    access_token: Annotated[
        str,
        typer.Option(
            "--access-token",
            envvar="BITBYBIT_WHATSAPP_ACCESS_TOKEN",
            help="A system user's token (better from the variable than typed here)",
        ),
    ],
    app_secret: Annotated[
        str,
        typer.Option(
            "--app-secret",
            envvar="BITBYBIT_WHATSAPP_APP_SECRET",
            help="The Meta app's secret, which signs its callbacks",
        ),
    ],
    verify_token: Annotated[
        str,
        typer.Option(
            "--verify-token",
            envvar="BITBYBIT_WHATSAPP_VERIFY_TOKEN",
            help="What you enter as the callback's verify token in Meta's app settings",
        ),
    ],
    waba_id: Annotated[
        str | None, typer.Option("--waba-id", help="The WhatsApp Business Account id")
    ] = None,
    coex: Annotated[
        bool,
        typer.Option(
            "--coex", help="A coexistence number (also used in the WhatsApp Business app)"
        ),
    ] = False,
    pace: Annotated[
        float | None,
        typer.Option(
            "--pace", help="Messages a second (default BITBYBIT_WHATSAPP_PACE or _COEX_PACE)"
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Connect a company's WhatsApp number on the Cloud API (replacing its number of the same
    kind); prints the phone-number id and the callback path to give Meta.

    The access token, app secret and verify token can come from BITBYBIT_WHATSAPP_ACCESS_TOKEN,
    BITBYBIT_WHATSAPP_APP_SECRET and BITBYBIT_WHATSAPP_VERIFY_TOKEN instead of the command line
    (where other users and the shell's history could see them). The token and secret are stored
    encrypted, the verify token only as a hash."""
    from bitbybit.services import numbers

    connection = numbers.Connection(
        company_id=company,
        phone_number_id=phone_number_id,
        access_token=access_token,
        app_secret=app_secret,
        verify_token=verify_token,
        waba_id=waba_id,
        source="whatsapp coex" if coex else "whatsapp cloud api",
        pace=pace,
    )

    async def work(platform: Platform) -> Any:
        return await platform.run(lambda tx: numbers.connect(platform, tx, connection))

    number = _run(database_url, work)
    _print({"phoneNumberId": number.phone_number_id, "callback": META_CALLBACK_PATH}, as_json)


@whatsapp_app.command("list")
def whatsapp_list(
    company: Company, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """List a company's numbers: phone-number id, source, WABA id and the pace in effect
    (messages a second), tab-separated. Never their secrets."""

    async def work(platform: Platform) -> tuple[list[Any], Settings]:
        async with platform.store.read() as tx:
            await _company_exists(tx, company)
            return await tx.list_whatsapp_numbers(company), platform.settings

    found, settings = _run(database_url, work)
    rows = [
        {
            "phoneNumberId": number.phone_number_id,
            "source": number.source,
            "wabaId": number.waba_id,
            "pace": number.pace
            or (
                settings.whatsapp_coex_pace
                if number.source == "whatsapp coex"
                else settings.whatsapp_pace
            ),
        }
        for number in found
    ]
    _rows(rows, as_json)


@app.command()
def listen(
    secret: Annotated[
        list[str],
        typer.Option(
            "--secret",
            envvar="BITBYBIT_SECRET",
            help="Signing secret (whsec_…); repeat during a rotation",
        ),
    ],
    port: Annotated[int, typer.Option(envvar="BITBYBIT_PORT")] = 8765,
    host: Annotated[str, typer.Option(envvar="BITBYBIT_HOST")] = "127.0.0.1",
    tolerance: Annotated[float, typer.Option(envvar="BITBYBIT_TOLERANCE", min=1)] = 300,
) -> None:
    """Receive webhooks locally: verify each delivery and print it (400 with the reason if not)."""
    from bitbybit.webhooks.listen import make_server, rich_printer

    server = make_server(host, port, secret, rich_printer(), tolerance)
    bound_host, bound_port = server.server_address[:2]
    typer.echo(f"listening on http://{bound_host!s}:{bound_port}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def trigger(
    event: Annotated[str, typer.Argument(help="Event type, e.g. customer.created")],
    company: Annotated[str, typer.Option("--company", help="Company id (comp_…)")],
    test: Annotated[bool, typer.Option("--test", help="Make the change in test mode")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            help="message.status.updated: seconds to wait for a serve or worker to send",
        ),
    ] = 10.0,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Make a real change (a sample customer, order, product, message…) so the real event goes
    out; prints the event's id and type.

    message.received: a message from a sample number. message.status.updated: that message and
    a reply to it; its statuses are written when a running `bitbybit serve` or `worker` sends
    the reply, so this waits for the first (exit 1, printing the reply's id, if none comes)."""
    from bitbybit.models import Tenant
    from bitbybit.services.trigger import NotSentYet
    from bitbybit.services.trigger import trigger as make_change

    tenant = Tenant(company, "test" if test else "live")
    made = _run(database_url, lambda platform: make_change(platform, tenant, event, wait=wait))
    if isinstance(made, NotSentYet):
        _print({"messageId": made.message_id}, as_json)
        typer.echo(
            f"error: no running `bitbybit serve` or `bitbybit worker` on this database has sent"
            f" message {made.message_id} within {wait:g} s; its {event} events are written"
            " when one does",
            err=True,
        )
        raise typer.Exit(1)
    _print({"id": made.id, "type": made.type}, as_json)


@secrets_app.command("rotate")
def secrets_rotate(
    reset_unreadable: Annotated[
        bool,
        typer.Option(
            "--reset-unreadable",
            help="Give endpoints whose secret no key decrypts a new secret (printed; lost key)",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Re-encrypt every stored webhook signing secret with the first key of BITBYBIT_SECRET_KEY
    (safe while servers and workers run); prints how many were re-encrypted."""
    from bitbybit.services.secret_keys import Rotation, rotate_secret_key

    async def work(platform: Platform) -> Rotation:
        await platform.store.migrate()  # not platform.migrate(): its key check would refuse
        return await rotate_secret_key(platform, reset_unreadable=reset_unreadable)

    done = _run(database_url, work, migrate=False)
    if as_json:
        summary = {"reencrypted": done.resealed, "current": done.current, "reset": done.reset}
        typer.echo(orjson.dumps(summary).decode())
    else:
        typer.echo(
            f"re-encrypted {done.resealed} secrets ({done.current} already used the first key)"
        )
        for endpoint_id, secret in done.reset.items():
            typer.echo(f"new secret for {endpoint_id}: {secret}")
    if done.unreadable:
        named = ", ".join(done.unreadable[:10]) + (", …" if len(done.unreadable) > 10 else "")
        typer.echo(
            f"error: no secret key decrypts the signing secrets of {len(done.unreadable)}"
            f" endpoints ({named}): add the key they were encrypted with to BITBYBIT_SECRET_KEY,"
            " or if it is lost, run again with --reset-unreadable to give them new secrets",
            err=True,
        )
    if done.unreadable_numbers:
        typer.echo(
            "error: no secret key decrypts the access token or app secret of the WhatsApp"
            f" numbers {', '.join(done.unreadable_numbers)}: add the key they were encrypted"
            " with to BITBYBIT_SECRET_KEY, or connect them again (bitbybit whatsapp connect)",
            err=True,
        )
    if done.unreadable or done.unreadable_numbers:
        raise typer.Exit(1)


def main() -> None:
    from bitbybit.logs import configure_logging

    configure_logging()  # JSON lines on stderr: stdout is for values scripts read
    try:
        app()
    except BitbybitError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
