"""Settings: every option has a ``BITBYBIT_<NAME>`` environment variable (SPEC §10).

``Settings`` is the one source of every option: its variable (``BITBYBIT_`` + the field's name),
type, default, validation and the line that documents it (the field's description). The
configuration table of ``docs/operations.md`` is rendered from it (``settings_table``), and
``bitbybit config`` prints the effective values with ``effective``.

Two ways to build one, on purpose different:

- ``Settings.from_env(env)`` reads the environment (``os.environ`` when none is given): the
  server, the worker and every command.
- ``Settings(rate_limit=…, clock=…)`` takes only what it is given, never the process's
  environment, so a test's settings do not change with the shell that runs it.

A bad value is a ``ConfigurationError`` with one line naming the variable, raised by the field's
validator (an exception that is not a ``ValueError`` passes through pydantic unchanged).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bitbybit.clock import Clock, system_clock
from bitbybit.errors import ConfigurationError
from bitbybit.logs import FORMATS

PREFIX = "BITBYBIT_"
DEFAULT_DATABASE_URL = "sqlite:///./bitbybit.db"
DEFAULT_RETRY_SCHEDULE = (30.0, 300.0, 1800.0, 7200.0)
DEFAULT_DATABASE_TIMEOUT = 5.0
Channel = Literal["sandbox", "whatsapp-cloud"]
CHANNELS: tuple[str, ...] = get_args(Channel)
LogFormat = Literal["json", "console"]
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v21.0"
MASK = "****"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _variable(info: ValidationInfo) -> str:
    return f"{PREFIX}{(info.field_name or '').upper()}"


# -- parsers: a raw environment string, or a value given to the constructor --------------------


def _whole(value: object, info: ValidationInfo, *, zero_allowed: bool = False) -> object:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ConfigurationError(
                f"{_variable(info)} must be a whole number, got {value!r}"
            ) from None
    if isinstance(value, int) and not isinstance(value, bool):
        if zero_allowed and value < 0:
            raise ConfigurationError(f"{_variable(info)} must be zero or more, got {value}")
        if not zero_allowed and value <= 0:
            raise ConfigurationError(f"{_variable(info)} must be positive, got {value}")
    return value


def _whole_or_zero(value: object, info: ValidationInfo) -> object:
    return _whole(value, info, zero_allowed=True)


def _port(value: object, info: ValidationInfo) -> object:
    value = _whole(value, info)
    if isinstance(value, int) and value > 65535:
        raise ConfigurationError(f"{_variable(info)} must be a port from 1 to 65535, got {value}")
    return value


def _seconds(value: object, info: ValidationInfo, *, zero_allowed: bool = False) -> object:
    raw = value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(f"{_variable(info)} must be a number, got {raw!r}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = raw.strip() if isinstance(raw, str) else raw
        if zero_allowed and not 0 <= value < math.inf:
            raise ConfigurationError(f"{_variable(info)} must be zero or more, got {shown}")
        if not zero_allowed and not value > 0:
            raise ConfigurationError(f"{_variable(info)} must be positive, got {shown}")
    return value


def _seconds_or_zero(value: object, info: ValidationInfo) -> object:
    return _seconds(value, info, zero_allowed=True)


def _flag(value: object, info: ValidationInfo) -> object:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ConfigurationError(
            f"{_variable(info)} must be 1, true, yes or on (or 0, false, no, off), got {value!r}"
        )
    return word in _TRUE


def _one_of(choices: tuple[str, ...], wording: Callable[[str, str, str], str]) -> Any:
    """A parser that takes one of ``choices``; ``wording(variable, allowed, got)`` refuses."""

    def check(value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value not in choices:
                raise ConfigurationError(wording(_variable(info), ", ".join(choices), value))
        return value

    return check


def _not_a_format(variable: str, allowed: str, got: str) -> str:
    return f"{variable} must be json or console, not {got!r}"  # as ``logs.log_format`` says


def _not_a_channel(variable: str, allowed: str, got: str) -> str:
    return f"{variable} must be one of {allowed}; got {got!r}"


def _numbers(value: object, info: ValidationInfo) -> object:
    """A comma list of E.164 numbers (``+6281…``)."""
    if isinstance(value, str):
        value = tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, tuple | list):
        for number in value:
            text = str(number)
            if not (text.startswith("+") and text[1:].isdigit() and 8 <= len(text) <= 16):
                raise ConfigurationError(
                    f"{_variable(info)} must list E.164 numbers such as +6281234567890;"
                    f" got {number!r}"
                )
    return value


def _address(value: object, info: ValidationInfo) -> object:
    if isinstance(value, str):
        return parse_address(value, _variable(info).removeprefix(PREFIX))
    return value


def _schedule(value: object, info: ValidationInfo) -> object:
    if isinstance(value, str):
        return parse_retry_schedule(value)
    if isinstance(value, tuple | list) and any(
        isinstance(delay, int | float) and delay < 0 for delay in value
    ):
        raise ConfigurationError("BITBYBIT_RETRY_SCHEDULE delays must not be negative")
    return value


def _base_url(value: object, info: ValidationInfo) -> object:
    return value.strip().rstrip("/") if isinstance(value, str) else value


def parse_address(raw: str, name: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → ``(host, port)``, for ``BITBYBIT_<name>``."""
    host, colon, port_text = raw.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(
            f"BITBYBIT_{name} must be host:port (e.g. 127.0.0.1:9464), got {raw!r}"
        )
    return host, int(port_text)


def parse_retry_schedule(raw: str) -> tuple[float, ...]:
    """``"30,300,1800,7200"`` → delays in seconds; fractions allowed, empty means no retries."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    try:
        delays = tuple(float(part) for part in parts)
    except ValueError:
        raise ConfigurationError(
            f"BITBYBIT_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}"
        ) from None
    if any(delay < 0 for delay in delays):
        raise ConfigurationError("BITBYBIT_RETRY_SCHEDULE delays must not be negative")
    return delays


# -- the kinds of value, each with its parser ---------------------------------------------------

Whole = Annotated[int, BeforeValidator(_whole)]
WholeOrZero = Annotated[int, BeforeValidator(_whole_or_zero)]
Port = Annotated[int, BeforeValidator(_port)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
SecondsOrZero = Annotated[float, BeforeValidator(_seconds_or_zero)]
Flag = Annotated[bool, BeforeValidator(_flag)]


def _setting(
    default: Any,
    description: str,
    *,
    shown: str | None = None,
    secret: bool = False,
    empty_is_value: bool = False,
    environment: bool = True,
) -> Any:
    """A field with its one line of documentation and how the table and ``config`` show it:
    ``shown`` replaces the default in the table, ``secret`` masks the value in ``config``,
    ``empty_is_value`` keeps ``BITBYBIT_X=`` (else: the default), ``environment=False`` makes
    the field constructor-only (no variable)."""
    extra: JsonDict = {
        "shown": shown,
        "secret": secret,
        "empty": empty_is_value,
        "env": environment,
    }
    return Field(default=default, description=description, json_schema_extra=extra)


class _Mapping(PydanticBaseSettingsSource):
    """The ``BITBYBIT_*`` variables of one mapping: each field's variable looked up by name,
    a set-but-empty one left out (the default applies) unless empty means something."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.env.get(variable_of(field_name)), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _extra(field, "env"):
                continue
            raw, _, _ = self.get_field_value(field, name)
            if raw is not None and (raw != "" or _extra(field, "empty")):
                found[name] = raw
        return found


def _extra(field: FieldInfo, key: str) -> Any:
    extra = field.json_schema_extra
    return extra.get(key) if isinstance(extra, dict) else None


def variable_of(field_name: str) -> str:
    return f"{PREFIX}{field_name.upper()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        frozen=True,
        extra="forbid",
        arbitrary_types_allowed=True,  # the clock
    )

    database_url: str = _setting(
        DEFAULT_DATABASE_URL,
        "`sqlite:///relative/path` (relative to the current directory, see [Which database a"
        " command opens](#which-database-a-command-opens)), `sqlite:////absolute/path` or"
        " `postgresql://user:password@host:5432/db`",
    )
    host: str = _setting("127.0.0.1", "where `serve` listens (`--host`)")
    port: Port = _setting(8000, "the port `serve` listens on (`--port`)")
    concurrency: WholeOrZero = _setting(
        256,
        "delivery attempts in flight per process (`--concurrency`; `serve --concurrency 0` runs"
        " no worker)",
    )
    rate_limit: Whole = _setting(
        100, "requests per minute per API key, shared by every process on the database"
    )
    max_body_bytes: Whole = _setting(1024 * 1024, "request body limit in bytes")
    secret_key: str | None = _setting(
        None,
        "encrypts webhook signing secrets and WhatsApp access tokens and app secrets at rest;"
        " several keys comma-separated: the first encrypts, any decrypts (see [Secret"
        " key](#secret-key)); required on PostgreSQL; without it SQLite uses `<database>.key`"
        " (generated once, mode 0600)",
        secret=True,
    )
    retry_schedule: Annotated[tuple[float, ...], BeforeValidator(_schedule)] = _setting(
        DEFAULT_RETRY_SCHEDULE,
        "seconds between attempts; fractions allowed; its length sets the number of retries;"
        " set but empty: no retries",
        empty_is_value=True,
    )
    delivery_timeout: Seconds = _setting(30.0, "seconds for one whole attempt")
    lease_seconds: Annotated[float | None, BeforeValidator(_seconds)] = _setting(
        None,
        "how long a claimed delivery stays leased, in seconds",
        shown="timeout + 30",
    )
    database_timeout: Seconds = _setting(
        DEFAULT_DATABASE_TIMEOUT,
        "seconds one database operation may wait (PostgreSQL: for a pooled connection, a new"
        " connection and each statement; SQLite: for another process's write lock) before the"
        " request answers 503 (see [Database time limits](#database-time-limits)); fractions"
        " allowed",
    )
    allow_private_targets: Flag = _setting(
        False, "allow loopback/private webhook targets (local development only)"
    )
    allow_http_targets: Flag = _setting(False, "allow plain `http://` webhook targets")
    auth_failure_limit: Whole = _setting(
        20,
        "failed authentications a minute per client address, per process, before it is"
        " answered 429 (see [api.md](api.md#failed-authentications))",
    )
    session_idle: Seconds = _setting(
        1800.0,
        "seconds a dashboard session lasts without use before it must sign in again (see"
        " [dashboard.md](dashboard.md))",
    )
    session_max_age: Seconds = _setting(
        7 * 24 * 3600.0, "seconds a dashboard session lasts at most, however much it is used"
    )
    login_failure_limit: Whole = _setting(
        5,
        "failed dashboard sign-ins a minute per account and per client address, per process,"
        " before further tries are slowed (answered 429 with `Retry-After`)",
    )
    retention_days: WholeOrZero = _setting(
        30,
        "days events, their deliveries and attempts, and settled messaging jobs are kept;"
        " work in flight is kept until it settles; `0` keeps everything (see"
        " [retention.md](retention.md))",
    )
    retention_every: Seconds = _setting(
        3600.0,
        "seconds between retention runs of each `serve` and `worker` (one at a time across"
        " processes on PostgreSQL)",
    )
    metrics_address: Annotated[tuple[str, int] | None, BeforeValidator(_address)] = _setting(
        None,
        "`host:port` (`[v6]:port`) where `serve` and `worker` serve `/metrics` on their own,"
        " e.g. `127.0.0.1:9464` (see [Metrics](#metrics)); unset: on the API port (`serve`)",
    )
    log_format: Annotated[
        LogFormat | None,
        BeforeValidator(_one_of(FORMATS, _not_a_format)),
    ] = _setting(
        None,
        "`json` (one object a line) or `console` (`timestamp [level] event key=value`); anything"
        " else is refused at start (see [Logs](#logs))",
        shown="`json` off a terminal, `console` on one",
    )
    channel: Annotated[
        Channel,
        BeforeValidator(_one_of(CHANNELS, _not_a_channel)),
    ] = _setting(
        "sandbox",
        "`sandbox` or `whatsapp-cloud`: where live-mode WhatsApp sends go (test mode always uses"
        " the sandbox; see [messaging.md](messaging.md#which-channel-a-send-takes))",
    )
    sandbox_status_step: Seconds = _setting(
        1.0, "seconds between a sandbox message's `sent`, `delivered` and `read`"
    )
    sandbox_fail_numbers: Annotated[tuple[str, ...], BeforeValidator(_numbers)] = _setting(
        (), "comma-separated E.164 numbers the sandbox fails to deliver to (error 131026)"
    )
    graph_url: Annotated[str, BeforeValidator(_base_url)] = _setting(
        DEFAULT_GRAPH_URL, "the WhatsApp Cloud API's base URL (a local fake in tests)"
    )
    graph_version: str = _setting(DEFAULT_GRAPH_VERSION, "the Graph API version in the send URL")
    whatsapp_pace: Seconds = _setting(80.0, "messages a second one Cloud API number sends")
    whatsapp_coex_pace: Seconds = _setting(20.0, "messages a second one coexistence number sends")
    whatsapp_pair_interval: SecondsOrZero = _setting(
        6.0,
        "seconds between two sends from one number to one recipient (Meta's pair rate limit);"
        " `0` turns the pacing off",
    )
    default_country: str = _setting(
        "ID", "ISO country for local phone numbers of a new company", environment=False
    )
    clock: Clock = _setting(system_clock, "the time source (tests)", environment=False)

    @model_validator(mode="wrap")
    @classmethod
    def _in_one_line(cls, values: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """A value of the wrong type, given to the constructor: one line, as from the
        environment (a ``ConfigurationError`` passes through pydantic unchanged)."""
        try:
            return handler(values)
        except ValidationError as error:
            raise ConfigurationError(_one_line(error)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the constructor is given: the environment is read by ``from_env``."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings of ``env`` (``os.environ`` when none), ``overrides`` winning."""
        found = _Mapping(cls, os.environ if env is None else env)()
        return cls(**{**found, **overrides})

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (validated like the rest); unchanged fields keep their origin
        (see ``origin``)."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self)(**{**given, **changes})

    def origin(self, name: str) -> Literal["environment", "default"]:
        """Where a field's value came from: set (by the environment, in ``from_env``) or not."""
        return "environment" if name in self.model_fields_set else "default"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are frozen: use settings.replace({name}=…)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Settings are frozen")

    def __eq__(self, other: object) -> bool:
        """Equal when every option is; the clock is not an option (as before: compare=False)."""
        if not isinstance(other, Settings):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(tuple(self._compared().items()))

    def _compared(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields if name != "clock"}


def _one_line(error: ValidationError) -> str:
    """The first problem pydantic found, as ``BITBYBIT_X must be …, got …``."""
    problem = error.errors()[0]
    where = problem["loc"][0] if problem["loc"] else ""
    name = variable_of(str(where)) if str(where) in Settings.model_fields else str(where)
    return f"{name}: {problem['msg']} (got {problem.get('input')!r})"


# -- the documentation and ``bitbybit config`` --------------------------------------------------


def environment_fields() -> dict[str, FieldInfo]:
    """The fields read from a variable, in the order the table lists them."""
    return {name: field for name, field in Settings.model_fields.items() if _extra(field, "env")}


def as_text(value: object) -> str:
    """A value as its variable would spell it (``30,300``, ``1``, ``host:port``); none: ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        host = str(value[0])
        return f"[{host}]:{value[1]}" if ":" in host else f"{host}:{value[1]}"
    if isinstance(value, tuple):
        return ",".join(as_text(item) for item in value)
    return str(value)


def _shown_default(field: FieldInfo) -> str:
    shown = _extra(field, "shown")
    if shown is not None:
        return str(shown)
    if field.default is None or field.default == ():
        return "none"
    if field.default is False:
        return "off"
    return f"`{as_text(field.default)}`"


def settings_table() -> str:
    """The markdown table of every variable: its default and what it means."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in environment_fields().items():
        lines.append(f"| `{variable_of(name)}` | {_shown_default(field)} | {field.description} |")
    return "\n".join(lines) + "\n"


TABLE_START = "<!-- settings:start: generated from bitbybit.config.Settings -->"
TABLE_END = "<!-- settings:end -->"
REGENERATE = "bitbybit config --write-doc docs/operations.md"


def with_table(document: str) -> str:
    """``document`` with the text between its table markers replaced by ``settings_table()``."""
    start, end = document.find(TABLE_START), document.find(TABLE_END)
    if start < 0 or end < start:
        raise ConfigurationError(
            f"the document has no settings table markers ({TABLE_START} … {TABLE_END})"
        )
    head = document[: start + len(TABLE_START)]
    return f"{head}\n{settings_table()}{document[end:]}"


_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>[^@/]*)(?=@)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&]*)", re.I)


def masked(name: str, value: object) -> object:
    """``value`` fit to print: a secret field as ``****``, a URL's password as ``****``."""
    field = Settings.model_fields[name]
    if value is not None and _extra(field, "secret"):
        return MASK
    if isinstance(value, str):
        value = _PASSWORD.sub(lambda m: f"{m['head']}{MASK}", value)
        return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", value)
    return value


def effective(settings: Settings) -> list[dict[str, Any]]:
    """Every variable with its value (secrets masked) and where it came from."""
    return [
        {
            "variable": variable_of(name),
            "value": masked(name, getattr(settings, name)),
            "source": settings.origin(name),
        }
        for name in environment_fields()
    ]
