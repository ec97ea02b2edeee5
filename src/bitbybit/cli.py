"""The ``bitbybit`` command: thin wrappers that parse options and call the services.

Options that configure a run read an environment variable: the shared ones (the database, the
company) ``BITBYBIT_<NAME>``, a command's own ones ``BITBYBIT_<COMMAND>_<NAME>`` (``listen``'s port
is ``BITBYBIT_LISTEN_PORT``), so exporting one command's setting never moves another command.
Output meant for scripts is one value per line (a list: one tab-separated row per line), or one
JSON document with ``--json``. Every error is one ``error: …`` line on standard error and a
non-zero exit: 1 when the command could not do its work, 2 when it was called wrongly.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

import bitbybit
from bitbybit.config import DEFAULT_DATABASE_URL, Settings
from bitbybit.errors import BitbybitError, ConfigurationError, NotFound
from bitbybit.runtime import Platform
from bitbybit.services import access
from bitbybit.stopping import GracefulStop

if TYPE_CHECKING:
    from pydantic import BaseModel
    from typer._click.core import Context as ClickContext
    from typer._click.core import Parameter

    from bitbybit.models import ApiKey, Mode, Tenant
    from bitbybit.store import Tx

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


# -- help text without type tags ---------------------------------------------------------------
#
# Typer (≥ 0.25) prints a type tag beside every option in --help (``--test <bool>``,
# ``--allow-ip <list[str]>``). These classes show what a user types instead: a flag bare, a value
# by its metavar (``--company ID``), an argument by its name.


class _HelpOption(TyperOption):
    def display_type_rich(self, ctx: ClickContext) -> str | None:
        if self.is_flag or self.count:
            return None
        return self.metavar or (self.name or "value").upper()


class _HelpArgument(TyperArgument):
    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return None


def _plain(params: list[Parameter]) -> list[Parameter]:
    """``params`` shown as ``_HelpOption``/``_HelpArgument`` (same objects: Typer builds them
    itself and has no hook to choose their class)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _HelpOption
        elif type(param) is TyperArgument:
            param.__class__ = _HelpArgument
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: ClickContext) -> list[Parameter]:
        return _plain(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: ClickContext) -> list[Parameter]:
        return _plain(super().get_params(ctx))


class _Typer(typer.Typer):
    """A command group whose help shows options without type tags."""

    def __init__(self, *, help: str, **options: Any) -> None:
        super().__init__(
            cls=_Group,
            help=help,
            no_args_is_help=True,
            rich_markup_mode="markdown",  # docstrings wrap as paragraphs, ``code`` shows as code
            pretty_exceptions_show_locals=False,  # locals hold tokens and secrets
            **options,
        )

    def command(
        self, *args: Any, **options: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(*args, cls=_Command, **options)


app = _Typer(
    name="bitbybit",
    help="Open API, signed webhooks and WhatsApp messaging for commerce.",
    add_completion=True,
)
companies_app = _Typer(help="Companies (tenants).")
keys_app = _Typer(help="API keys.")
endpoints_app = _Typer(help="Webhook endpoints.")
events_app = _Typer(help="Events (what the webhooks carry).")
deliveries_app = _Typer(help="Deliveries of events to webhook endpoints.")
secrets_app = _Typer(help="The secret key that encrypts webhook signing secrets.")
messages_app = _Typer(help="WhatsApp messages.")
templates_app = _Typer(help="WhatsApp message templates.")
tickets_app = _Typer(help="Agent tickets on customers.")
whatsapp_app = _Typer(help="WhatsApp Business numbers (Cloud API).")
users_app = _Typer(help="Dashboard users (docs/dashboard.md).")
for group, group_name in (
    (companies_app, "companies"),
    (keys_app, "keys"),
    (endpoints_app, "endpoints"),
    (events_app, "events"),
    (deliveries_app, "deliveries"),
    (secrets_app, "secrets"),
    (messages_app, "messages"),
    (templates_app, "templates"),
    (tickets_app, "tickets"),
    (whatsapp_app, "whatsapp"),
    (users_app, "users"),
):
    app.add_typer(group, name=group_name)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"bitbybit {bitbybit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Open API, signed webhooks and WhatsApp messaging for commerce."""


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="BITBYBIT_DATABASE_URL",
        metavar="URL",
        help="sqlite:///… or postgresql://…",
    ),
]
Concurrency = Annotated[
    int,
    typer.Option(
        "--concurrency",
        envvar="BITBYBIT_CONCURRENCY",
        metavar="N",
        min=0,
        help="Delivery attempts in flight at once (0: no worker in this process)",
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of plain lines")
]
Company = Annotated[
    str,
    typer.Option("--company", envvar="BITBYBIT_COMPANY", metavar="ID", help="Company id (comp_…)"),
]
TestMode = Annotated[bool, typer.Option("--test", help="In test mode")]
PageNumber = Annotated[
    int, typer.Option("--page", metavar="N", min=1, max=1_000_000, help="Page number, from 1")
]
Limit = Annotated[int, typer.Option("--limit", metavar="N", min=1, max=100, help="Rows per page")]


META_CALLBACK_PATH = "/whatsapp/webhooks/meta"
"""Where Meta posts a connected number's messages and statuses (``api/routes/meta.py``)."""


DEFAULTS = Settings()
"""The options' defaults, from the one configuration object (``serve``'s host, port, …)."""


def _settings(database_url: str | None) -> Settings:
    if database_url:
        return Settings.from_env(database_url=database_url)
    return Settings.from_env()


def _sqlite_file(settings: Settings) -> Path | None:
    """The absolute path of a SQLite database, or ``None`` on PostgreSQL."""
    from bitbybit.store.sqlite import database_path

    if not settings.database_url.startswith("sqlite:"):
        return None
    return Path(database_path(settings.database_url)).resolve()


def _log_database(settings: Settings) -> None:
    """Say on stderr which database this process uses: a SQLite file by its absolute path."""
    import structlog

    from bitbybit.config import masked

    path = _sqlite_file(settings)
    where = str(path) if path is not None else masked("database_url", settings.database_url)
    structlog.get_logger("bitbybit.cli").info("database", database=where)


def _refuse_a_stray_database(settings: Settings) -> None:
    """Only ``serve`` and ``migrate`` create a database at the default location.

    The default, ``sqlite:///./bitbybit.db``, is relative to the current directory: another
    command run elsewhere would otherwise make a second, empty database there and report
    success against it (docs/operations.md, "Which database a command opens"). A database
    named on purpose (the variable or ``--database-url``) is created wherever it says."""
    path = _sqlite_file(settings)
    if settings.origin("database_url") != "default" or path is None or path.exists():
        return
    raise ConfigurationError(
        f"no database at {path}: BITBYBIT_DATABASE_URL is not set and its default,"
        f" {DEFAULT_DATABASE_URL}, is relative to the current directory; set"
        " BITBYBIT_DATABASE_URL to the database `bitbybit serve` uses (e.g."
        " sqlite:////srv/bitbybit/bitbybit.db), or run `bitbybit migrate` here to create one"
    )


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
    creates: bool = False,
) -> T:
    """Open the platform (migrated), run ``work``, close; domain errors print and exit 1.

    ``fast_loop`` runs on uvloop (as ``serve`` does through uvicorn): the delivery worker spends
    most of its time in the event loop's networking. Without ``creates`` (``serve``,
    ``migrate``), a database missing at the default location is refused, not created.
    """

    async def main() -> T:
        settings = _settings(database_url)
        if not creates:
            _refuse_a_stray_database(settings)
        platform = Platform.from_settings(settings)
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
    """One object: its values one per line (``-`` for none), or with ``--json`` one JSON object."""
    if as_json:
        typer.echo(orjson.dumps(values).decode())
    else:
        for value in values.values():
            typer.echo("-" if value is None else value)


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


def _tenant(company_id: str, test: bool) -> Tenant:
    from bitbybit.models import Tenant

    mode: Mode = "test" if test else "live"
    return Tenant(company_id, mode)


def _in_company(
    database_url: str | None, company_id: str, work: Callable[[Platform], Awaitable[T]]
) -> T:
    """``_run(work)`` once the company is known to exist: a mistyped company id is an error,
    never an empty list or a silent no-op."""

    async def checked(platform: Platform) -> T:
        async with platform.store.read() as tx:
            await _company_exists(tx, company_id)
        return await work(platform)

    return _run(database_url, checked)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(envvar="BITBYBIT_HOST", metavar="HOST", help="Address to listen on"),
    ] = DEFAULTS.host,
    port: Annotated[
        int, typer.Option(envvar="BITBYBIT_PORT", metavar="PORT", help="Port to listen on")
    ] = DEFAULTS.port,
    concurrency: Concurrency = DEFAULTS.concurrency,
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate if needed, then run the API, the dashboard and a delivery worker."""
    import uvicorn

    from bitbybit.api.app import create_app
    from bitbybit.api.server import Server

    settings = _settings(database_url)
    _run(database_url, lambda platform: platform.migrate(), migrate=False, creates=True)
    _log_database(settings)
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
def worker(
    concurrency: Concurrency = DEFAULTS.concurrency, database_url: DatabaseUrl = None
) -> None:
    """Run delivery workers only, until SIGINT or SIGTERM (in-flight attempts then finish and
    are recorded; a second signal exits at once)."""
    from bitbybit.channels import delivery_worker
    from bitbybit.delivery.metrics_server import serving_metrics
    from bitbybit.services.idempotency import pruning
    from bitbybit.services.retention import retaining

    async def work(platform: Platform) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopper = GracefulStop(stop.set)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopper, signum)
        _freeze_startup_objects()
        async with (
            serving_metrics(platform.settings.metrics_address),
            pruning(platform),
            retaining(platform),
        ):
            await delivery_worker(platform, max(concurrency, 1)).run(stop)

    _run(database_url, work, fast_loop=True)


@app.command()
def migrate(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """Create or upgrade the schema; prints the migrations it applied."""
    applied = _run(database_url, lambda platform: platform.migrate(), migrate=False, creates=True)
    if as_json:
        _print({"applied": applied}, as_json)
        return
    for name in applied:
        typer.echo(f"applied {name}")
    if not applied:
        typer.echo("schema is up to date")


@app.command("config")
def show_config(
    as_json: JsonOutput = False,
    markdown: Annotated[
        bool,
        typer.Option("--markdown", help="Print the table of every variable, as docs/operations.md"),
    ] = False,
    write_doc: Annotated[
        Path | None,
        typer.Option(
            "--write-doc",
            metavar="FILE",
            help="Rewrite the settings table between FILE's markers (docs/operations.md)",
        ),
    ] = None,
) -> None:
    """Print the effective settings: each variable, its value and where it came from
    (environment or default), tab-separated; secrets are masked. A bad value is an error, so
    this also checks a configuration before a start."""
    from bitbybit.config import as_text, effective, settings_table, with_table

    if write_doc is not None:
        try:
            write_doc.write_text(with_table(write_doc.read_text(encoding="utf-8")), "utf-8")
        except OSError as error:
            raise ConfigurationError(f"cannot rewrite {write_doc}: {error.strerror}") from None
        return
    if markdown:
        typer.echo(settings_table(), nl=False)
        return
    settings = Settings.from_env()
    rows = effective(settings)
    database = _sqlite_file(settings)
    if as_json:
        found = {"settings": rows, "databaseFile": None if database is None else str(database)}
        typer.echo(orjson.dumps(found).decode())
        return
    _rows([{**row, "value": as_text(row["value"]) or None} for row in rows], as_json=False)
    if database is not None:
        state = "" if database.exists() else " (does not exist yet)"
        typer.echo(f"database file: {database}{state}", err=True)


@companies_app.command("create")
def companies_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The company's name")],
    country: Annotated[
        str, typer.Option(metavar="CC", help="ISO country for local phone numbers")
    ] = "ID",
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a company; prints its id."""
    company = _run(database_url, lambda platform: access.create_company(platform, name, country))
    _print({"id": company.id}, as_json)


@companies_app.command("list")
def companies_list(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """List every company, oldest first: id, name, country and creation time, tab-separated."""
    from bitbybit.clock import iso
    from bitbybit.services.operators import list_companies

    found = _run(database_url, list_companies)
    _rows(
        [
            {"id": c.id, "name": c.name, "country": c.country, "createdAt": iso(c.created_at)}
            for c in found
        ],
        as_json,
    )


Password = Annotated[
    str,
    typer.Option(
        "--password",
        metavar="P",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="At least 10 characters; asked for (twice, hidden) when left out",
    ),
]
Email = Annotated[str, typer.Option("--email", metavar="E", help="The user's email address")]


@users_app.command("create")
def users_create(
    company: Company,
    email: Email,
    password: Password,
    role: Annotated[
        str, typer.Option(metavar="ROLE", help="admin (may change things) or viewer (looks only)")
    ] = "admin",
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a dashboard user who signs in at /dashboard; prints the user's id. The password
    is stored only as an argon2id hash."""
    from bitbybit.services import users

    user = _run(
        database_url,
        lambda platform: users.create_user(platform, company, email, password, role),
    )
    _print({"id": user.id}, as_json)


@users_app.command("list")
def users_list(
    company: Company, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """List a company's dashboard users: id, email, role and creation time, tab-separated."""
    from bitbybit.clock import iso
    from bitbybit.services import users

    found = _run(database_url, lambda platform: users.list_users(platform, company))
    _rows(
        [
            {"id": u.id, "email": u.email, "role": u.role, "createdAt": iso(u.created_at)}
            for u in found
        ],
        as_json,
    )


@users_app.command("set-password")
def users_set_password(email: Email, password: Password, database_url: DatabaseUrl = None) -> None:
    """Give a user a new password; every session of theirs is signed out."""
    from bitbybit.services import users

    user = _run(database_url, lambda platform: users.set_password(platform, email, password))
    typer.echo(f"password changed for {user.email}; their sessions were signed out")


KeyId = Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (key_…)")]


def _key_created(key: ApiKey, raw: str, as_json: bool) -> None:
    """The key once on standard output (``KEY=$(bitbybit keys create …)``), its id beside it:
    in the JSON object, or as a ``key id: key_…`` line on standard error."""
    if as_json:
        _print({"key": raw, "id": key.id}, as_json)
    else:
        typer.echo(raw)
        typer.echo(f"key id: {key.id}", err=True)


@keys_app.command("create")
def keys_create(
    company: Company,
    scopes: Annotated[str, typer.Option(metavar="SCOPES", help="'all' or a comma list")] = "all",
    test: Annotated[bool, typer.Option("--test", help="A test-mode key (bbb_test_…)")] = False,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", metavar="CIDR", help="Allowed address or CIDR; repeatable"),
    ] = None,
    name: Annotated[str | None, typer.Option(metavar="TEXT", help="A label for the key")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an API key; prints the key once (only its hash is stored), and its id (which
    ``keys rotate`` and ``keys revoke`` take) on standard error, or both with ``--json``."""
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
    _key_created(key, raw, as_json)


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyId, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """Issue a successor key (printed like ``keys create``); the old one keeps working for
    24 hours."""
    key, raw = _run(database_url, lambda platform: access.rotate_api_key(platform, key_id))
    _key_created(key, raw, as_json)


@keys_app.command("revoke")
def keys_revoke(key_id: KeyId, database_url: DatabaseUrl = None) -> None:
    """Revoke a key at once."""
    _run(database_url, lambda platform: access.revoke_api_key(platform, key_id))
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(
    company: Company, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """List a company's keys: id, prefix, mode, scopes and state (active, expiring or revoked),
    tab-separated. Never the keys themselves."""

    async def work(platform: Platform) -> list[ApiKey]:
        async with platform.store.read() as tx:
            return await tx.list_api_keys(company)

    rows = [
        {
            "id": key.id,
            "prefix": key.prefix,
            "mode": key.mode,
            "scopes": ",".join(sorted(key.scopes)),
            "state": "revoked" if key.revoked_at else ("expiring" if key.expires_at else "active"),
        }
        for key in _in_company(database_url, company, work)
    ]
    _rows(rows, as_json)


EndpointId = Annotated[str, typer.Argument(metavar="ENDPOINT_ID", help="The endpoint's id (we_…)")]


@endpoints_app.command("create")
def endpoints_create(
    company: Company,
    url: Annotated[
        str, typer.Option("--url", metavar="URL", help="Where to POST events (https://…)")
    ],
    events: Annotated[
        str | None,
        typer.Option("--events", metavar="TYPES", help="Comma list of event types (default: all)"),
    ] = None,
    test: Annotated[bool, typer.Option("--test", help="Receive test-mode events")] = False,
    description: Annotated[str | None, typer.Option(metavar="TEXT", help="A label")] = None,
    multi_signature: Annotated[
        bool, typer.Option("--multi-signature", help="Sign with both secrets while rotating")
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a webhook endpoint; prints its id and its signing secret (shown once)."""
    from bitbybit.schemas import EndpointCreate
    from bitbybit.services import webhooks

    data = _parsed(
        EndpointCreate,
        url=url,
        events=[e.strip() for e in events.split(",") if e.strip()] if events else None,
        description=description,
        multiSignature=multi_signature,
    )
    tenant = _tenant(company, test)
    endpoint, secret = _in_company(
        database_url, company, lambda platform: webhooks.create_endpoint(platform, tenant, data)
    )
    _print({"id": endpoint.id, "secret": secret}, as_json)


@endpoints_app.command("list")
def endpoints_list(
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List a company's endpoints: id, URL, status and event types (``*``: all), tab-separated
    (``--json``: the endpoints as the API shows them). Never their secrets."""
    from bitbybit.services import payloads, webhooks

    tenant = _tenant(company, test)

    async def work(platform: Platform) -> list[dict[str, Any]]:
        now = platform.now()
        return [
            payloads.endpoint(endpoint, now)
            for endpoint in await webhooks.list_endpoints(platform, tenant)
        ]

    shown = _in_company(database_url, company, work)
    if as_json:
        _rows(shown, as_json)
    else:
        _rows(
            [
                {
                    "id": e["id"],
                    "url": e["url"],
                    "status": e["status"],
                    "events": ",".join(e["events"]),
                }
                for e in shown
            ],
            as_json,
        )


@endpoints_app.command("delete")
def endpoints_delete(
    endpoint_id: EndpointId,
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete an endpoint (its pending deliveries are dropped with it)."""
    from bitbybit.services import webhooks

    tenant = _tenant(company, test)
    _in_company(
        database_url,
        company,
        lambda platform: webhooks.delete_endpoint(platform, tenant, endpoint_id),
    )
    typer.echo(f"deleted {endpoint_id}")


@endpoints_app.command("rotate-secret")
def endpoints_rotate_secret(
    endpoint_id: EndpointId,
    company: Company,
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            metavar="HOURS",
            min=0,
            max=24 * 7,
            help="How long the old secret keeps signing (0: the new one signs at once)",
        ),
    ] = 24,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Give an endpoint a new signing secret; prints the endpoint's id, the new secret (shown
    once) and when it starts signing. Until then the old secret signs (with
    ``--multi-signature`` on the endpoint, both do), so receivers can switch without a gap."""
    from bitbybit.clock import iso
    from bitbybit.services import webhooks

    tenant = _tenant(company, test)
    endpoint, secret = _in_company(
        database_url,
        company,
        lambda platform: webhooks.rotate_secret(platform, tenant, endpoint_id, grace_hours),
    )
    effective = endpoint.next_secret_at or endpoint.updated_at
    _print({"id": endpoint.id, "secret": secret, "effectiveAt": iso(effective)}, as_json)


@endpoints_app.command("test")
def endpoints_test(
    endpoint_id: EndpointId,
    company: Company,
    event: Annotated[
        str,
        typer.Option("--event", metavar="TYPE", help="The event type of the signed sample to send"),
    ] = "customer.created",
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Send a signed sample event to an endpoint now (nothing is stored); prints the sample's
    event id, the status code the endpoint answered and how long it took. Exits 1 when the
    endpoint did not answer 2xx."""
    from bitbybit.schemas import TestSend
    from bitbybit.services import webhooks

    event_type = _parsed(TestSend, eventType=event).eventType
    tenant = _tenant(company, test)
    attempt = _in_company(
        database_url,
        company,
        lambda platform: webhooks.send_test(platform, tenant, endpoint_id, event_type),
    )
    sent = attempt.result
    if as_json:
        _print(attempt.resource(), as_json)
    else:
        _print(
            {
                "eventId": attempt.event_id,
                "statusCode": sent.status_code,
                "latency": f"{sent.latency_ms} ms",
            },
            as_json,
        )
    if not sent.succeeded:
        if sent.status_code is not None:
            problem = f"the endpoint answered {sent.status_code}"
        else:
            problem = f"the endpoint did not answer: {sent.error or 'no response'}"
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)


# -- events and deliveries --------------------------------------------------------------------


def _time_option(name: str, value: str | None) -> tuple[str, ...]:
    """An ISO-8601 option as the store's filter (milliseconds), or nothing when not given."""
    from bitbybit.clock import parse_iso

    if value is None:
        return ()
    try:
        return (str(parse_iso(value)),)
    except ValueError:
        typer.echo(
            f"error: {name}: {value!r} is not an ISO-8601 time such as 2024-01-15T10:30:00Z",
            err=True,
        )
        raise typer.Exit(1) from None


@events_app.command("list")
def events_list(
    company: Company,
    event_type: Annotated[
        str | None, typer.Option("--type", metavar="TYPE", help="Only events of this type")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Only events from then on (ISO-8601)"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="TIME", help="Only events until then (ISO-8601)"),
    ] = None,
    page: PageNumber = 1,
    limit: Limit = 20,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List a company's events, newest first: id, type and time, tab-separated (``--json``:
    the events with their payloads, as the API shows them)."""
    from bitbybit.models import ListQuery
    from bitbybit.services import payloads, webhooks
    from bitbybit.services.events import EVENT_TYPES

    if event_type is not None and event_type not in EVENT_TYPES:
        typer.echo(
            f"error: type: unknown event type {event_type!r}; use one of {', '.join(EVENT_TYPES)}",
            err=True,
        )
        raise typer.Exit(1)
    filters = {
        "type": (event_type,) if event_type else (),
        "since": _time_option("since", since),
        "until": _time_option("until", until),
    }
    query = ListQuery(page=page, limit=limit, filters={k: v for k, v in filters.items() if v})
    tenant = _tenant(company, test)
    found = _in_company(
        database_url, company, lambda platform: webhooks.list_events(platform, tenant, query)
    )
    shown = [payloads.event(event) for event in found.items]
    if as_json:
        _rows(shown, as_json)
    else:
        _rows([{k: e[k] for k in ("id", "type", "createdAt")} for e in shown], as_json)


@events_app.command("export")
def events_export(
    company: Company,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="TIME",
            help="From then on: an ISO-8601 time, or a duration ago (7d, 12h, P7D)",
        ),
    ],
    until: Annotated[
        str | None,
        typer.Option(
            "--until", metavar="TIME", help="Before then (exclusive); same forms as --since"
        ),
    ] = None,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Write a company's events to standard output as JSON Lines, oldest first: one event a
    line, as the API shows it (``id``, ``type``, ``createdAt``, ``payload``), read a page at a
    time. Take it before retention removes them (docs/retention.md): ``bitbybit events export
    --company ID --since 30d > events.jsonl``."""
    import os

    from bitbybit.clock import system_clock
    from bitbybit.services import payloads
    from bitbybit.services.retention import export_events, point_in_time

    now = system_clock()
    try:
        start = point_in_time(since, now, "since")
        end = None if until is None else point_in_time(until, now, "until")
    except BitbybitError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    tenant = _tenant(company, test)
    out = sys.stdout.buffer

    async def work(platform: Platform) -> int:
        written = 0
        async for event in export_events(platform, tenant, start, end):
            out.write(orjson.dumps(payloads.event(event), option=orjson.OPT_APPEND_NEWLINE))
            written += 1
        out.flush()
        return written

    try:
        written = _run(database_url, work)
    except BrokenPipeError:  # the reader went away (``| head``): nothing more to write to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        typer.echo("error: standard output was closed before the export ended", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported {written} events", err=True)


DELIVERY_COLUMNS = ("id", "status", "eventType", "eventId", "endpointId", "attemptCount")


@deliveries_app.command("list")
def deliveries_list(
    company: Company,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", metavar="ID", help="Only deliveries to this endpoint (we_…)"),
    ] = None,
    event: Annotated[
        str | None,
        typer.Option("--event", metavar="ID", help="Only deliveries of this event (evt_…)"),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUSES", help="Comma list of pending, succeeded, failed, held"
        ),
    ] = None,
    page: PageNumber = 1,
    limit: Limit = 20,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List a company's deliveries, newest first: id, status, event type, event id, endpoint id
    and attempts so far, tab-separated (``--json``: the deliveries as the API shows them)."""
    from bitbybit.services import payloads
    from bitbybit.services.operators import list_deliveries

    statuses = tuple(part.strip() for part in (status or "").split(",") if part.strip())
    tenant = _tenant(company, test)
    found = _run(
        database_url,
        lambda platform: list_deliveries(
            platform,
            tenant,
            endpoint_id=endpoint,
            event_id=event,
            statuses=statuses,
            page=page,
            limit=limit,
        ),
    )
    shown = [payloads.delivery(delivery) for delivery in found.items]
    if as_json:
        _rows(shown, as_json)
    else:
        _rows([{k: d[k] for k in DELIVERY_COLUMNS} for d in shown], as_json)


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[
        str, typer.Argument(metavar="DELIVERY_ID", help="The delivery's id (dlv_…)")
    ],
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Send a delivery again (a new series of attempts, made by a running ``serve`` or
    ``worker``); prints its id and status (``--json``: the delivery as the API shows it)."""
    from bitbybit.services import payloads, webhooks

    tenant = _tenant(company, test)
    delivery = _in_company(
        database_url,
        company,
        lambda platform: webhooks.retry_delivery(platform, tenant, delivery_id),
    )
    shown = payloads.delivery(delivery)
    _print(shown if as_json else {"id": shown["id"], "status": shown["status"]}, as_json)


@messages_app.command("inject")
def messages_inject(
    company: Company,
    sender: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="PHONE",
            help="The customer's number; local numbers use the company's country",
        ),
    ],
    body: Annotated[str, typer.Option("--body", metavar="TEXT", help="The message's text")],
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Receive a simulated inbound message from the sandbox, as if the customer had written:
    emits customer.created (for a new number) and message.received; prints the message id."""
    from bitbybit.services.messages import Inbound, receive

    tenant = _tenant(company, test)

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
    name: Annotated[
        str, typer.Option("--name", metavar="NAME", help="Lower-case letters, digits and _")
    ],
    body: Annotated[
        str,
        typer.Option("--body", metavar="TEXT", help="The text, with {{1}}, {{2}}… placeholders"),
    ],
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="CRM or AUTH")] = "CRM",
    language: Annotated[
        str, typer.Option("--language", metavar="CODE", help="Language code")
    ] = "en",
    header_media_url: Annotated[
        str | None,
        typer.Option("--header-media-url", metavar="URL", help="A header image (https://…)"),
    ] = None,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a message template; prints its name."""
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
    tenant = _tenant(company, test)

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
    from bitbybit.services import templates

    tenant = _tenant(company, test)

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
    customer: Annotated[str, typer.Option("--customer", metavar="ID", help="Customer id (cust_…)")],
    test: TestMode = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Open an agent ticket on a customer (automated sends are refused while it is open);
    prints its id."""
    from bitbybit.services import tickets

    tenant = _tenant(company, test)

    async def work(platform: Platform) -> Any:
        async def run(tx: Tx) -> Any:
            await _company_exists(tx, company)
            return await tickets.open_for(platform, tx, tenant, customer)

        return await platform.run(run)

    ticket = _run(database_url, work)
    _print({"id": ticket.id}, as_json)


@tickets_app.command("close")
def tickets_close(
    ticket_id: Annotated[str, typer.Argument(metavar="TICKET_ID", help="The ticket's id (tkt_…)")],
    company: Company,
    test: TestMode = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Close a ticket (closing a closed one changes nothing)."""
    from bitbybit.services import tickets

    tenant = _tenant(company, test)

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
        str,
        typer.Option("--phone-number-id", metavar="ID", help="Meta's numeric id of the number"),
    ],
    access_token: Annotated[
        str,
        typer.Option(
            "--access-token",
            envvar="BITBYBIT_WHATSAPP_ACCESS_TOKEN",
            metavar="TOKEN",
            help="A system user's token (better from the variable than typed here)",
        ),
    ],
    app_secret: Annotated[
        str,
        typer.Option(
            "--app-secret",
            envvar="BITBYBIT_WHATSAPP_APP_SECRET",
            metavar="SECRET",
            help="The Meta app's secret, which signs its callbacks",
        ),
    ],
    verify_token: Annotated[
        str,
        typer.Option(
            "--verify-token",
            envvar="BITBYBIT_WHATSAPP_VERIFY_TOKEN",
            metavar="TOKEN",
            help="What you enter as the callback's verify token in Meta's app settings",
        ),
    ],
    waba_id: Annotated[
        str | None,
        typer.Option("--waba-id", metavar="ID", help="The WhatsApp Business Account id"),
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
            "--pace",
            metavar="RATE",
            help="Messages a second (default BITBYBIT_WHATSAPP_PACE or _COEX_PACE)",
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
            envvar="BITBYBIT_LISTEN_SECRET",
            metavar="SECRET",
            help="Signing secret (whsec_…); repeat during a rotation",
        ),
    ],
    port: Annotated[
        int,
        typer.Option(
            envvar="BITBYBIT_LISTEN_PORT",
            metavar="PORT",
            min=0,
            max=65535,
            help="Port to listen on",
        ),
    ] = 8765,
    host: Annotated[
        str,
        typer.Option(envvar="BITBYBIT_LISTEN_HOST", metavar="HOST", help="Address to listen on"),
    ] = "127.0.0.1",
    tolerance: Annotated[
        float,
        typer.Option(
            envvar="BITBYBIT_LISTEN_TOLERANCE",
            metavar="SECONDS",
            min=1,
            help="How old a delivery's timestamp may be",
        ),
    ] = 300,
) -> None:
    """Receive webhooks locally: verify each delivery and print it (400 with the reason if not).

    Its options read their own variables (BITBYBIT_LISTEN_PORT, …), never the server's
    BITBYBIT_PORT, so a shell set up for ``serve`` does not move the listener."""
    from bitbybit.webhooks.listen import make_server, rich_printer

    try:
        server = make_server(host, port, secret, rich_printer(), tolerance)
    except OSError as error:
        typer.echo(f"error: cannot listen on {host}:{port}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from None
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
    event: Annotated[
        str, typer.Argument(metavar="EVENT", help="Event type, e.g. customer.created")
    ],
    company: Company,
    test: Annotated[bool, typer.Option("--test", help="Make the change in test mode")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            envvar="BITBYBIT_TRIGGER_WAIT",
            metavar="SECONDS",
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
    from bitbybit.services.trigger import NotSentYet
    from bitbybit.services.trigger import trigger as make_change

    tenant = _tenant(company, test)
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
    """Run the command; every error ends as one ``error: …`` line on standard error."""
    from bitbybit.logs import configure_logging

    try:
        configure_logging()  # one format on stderr: stdout is for values scripts read
    except ValueError as error:  # BITBYBIT_LOG_FORMAT mistyped
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    try:
        status = app(prog_name="bitbybit", standalone_mode=False)
    except NoArgsIsHelpError as error:  # a group called bare: its help, as Click shows it
        error.show()
        sys.exit(error.exit_code)
    except UsageError as error:  # bad usage: Click's message on one line, not its panel
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        typer.echo(f"error: {error.format_message()}{where}", err=True)
        sys.exit(error.exit_code)
    except ClickException as error:
        typer.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except BitbybitError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
