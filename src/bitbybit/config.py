"""Settings: every option has a ``BITBYBIT_<NAME>`` environment variable (SPEC §10)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bitbybit.clock import Clock, system_clock
from bitbybit.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///./bitbybit.db"
DEFAULT_RETRY_SCHEDULE = (30.0, 300.0, 1800.0, 7200.0)
DEFAULT_DATABASE_TIMEOUT = 5.0
CHANNELS = ("sandbox", "whatsapp-cloud")
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v21.0"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(f"BITBYBIT_{name}")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"BITBYBIT_{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"BITBYBIT_{name} must be positive, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _float(env, name, default, zero_allowed=False)


def _float(env: Mapping[str, str], name: str, default: float, *, zero_allowed: bool) -> float:
    raw = env.get(f"BITBYBIT_{name}")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"BITBYBIT_{name} must be a number, got {raw!r}") from None
    if zero_allowed and not 0 <= value < float("inf"):
        raise ConfigurationError(f"BITBYBIT_{name} must be zero or more, got {raw}")
    if not zero_allowed and not value > 0:
        raise ConfigurationError(f"BITBYBIT_{name} must be positive, got {raw}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(f"BITBYBIT_{name}") or choices[0]).strip()
    if raw not in choices:
        allowed = ", ".join(choices)
        raise ConfigurationError(f"BITBYBIT_{name} must be one of {allowed}; got {raw!r}")
    return raw


def _numbers(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma list of E.164 numbers (``+6281…``)."""
    raw = env.get(f"BITBYBIT_{name}") or ""
    numbers = tuple(part.strip() for part in raw.split(",") if part.strip())
    for number in numbers:
        if not (number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16):
            raise ConfigurationError(
                f"BITBYBIT_{name} must list E.164 numbers such as +6281234567890; got {number!r}"
            )
    return numbers


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


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    rate_limit: int = 100
    """Requests per minute per API key, shared by every process on one database."""
    max_body_bytes: int = 1024 * 1024
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    delivery_timeout: float = 30.0
    lease_seconds: float | None = None
    """How long a claimed delivery stays leased; default: the delivery timeout plus 30 s."""
    allow_private_targets: bool = False
    allow_http_targets: bool = False
    channel: str = "sandbox"
    secret_key: str | None = None
    default_country: str = "ID"
    database_timeout: float = DEFAULT_DATABASE_TIMEOUT
    """Seconds one database operation may wait: on PostgreSQL for a pooled connection, a new
    connection and each statement; on SQLite for another process's write lock. Past it the
    request answers 503 instead of hanging."""
    auth_failure_limit: int = 20
    """Failed authentications a minute per client address (each process counts its own)."""
    metrics_address: tuple[str, int] | None = None
    """Where ``/metrics`` is served on its own; ``None``: on the API port (``serve`` only)."""
    sandbox_status_step: float = 1.0
    """Seconds between a sandbox message's statuses (sent → delivered → read)."""
    sandbox_fail_numbers: tuple[str, ...] = ()
    """Numbers (E.164) the sandbox fails to deliver to, with WhatsApp's error 131026."""
    graph_url: str = DEFAULT_GRAPH_URL
    """The WhatsApp Cloud API's base URL (a local fake in tests)."""
    graph_version: str = DEFAULT_GRAPH_VERSION
    whatsapp_pace: float = 80.0
    """Messages a second one Cloud API number sends (Meta's default throughput)."""
    whatsapp_coex_pace: float = 20.0
    """Messages a second one coexistence number sends."""
    whatsapp_pair_interval: float = 6.0
    """Seconds between two messages from one number to one recipient (Meta's pair rate limit;
    0 turns the pacing off)."""
    clock: Clock = field(default=system_clock, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        schedule = env.get("BITBYBIT_RETRY_SCHEDULE")
        metrics = env.get("BITBYBIT_METRICS_ADDRESS")
        settings = cls(
            database_url=env.get("BITBYBIT_DATABASE_URL") or DEFAULT_DATABASE_URL,
            rate_limit=_positive_int(env, "RATE_LIMIT", 100),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", 1024 * 1024),
            retry_schedule=(
                parse_retry_schedule(schedule) if schedule is not None else DEFAULT_RETRY_SCHEDULE
            ),
            delivery_timeout=_positive_float(env, "DELIVERY_TIMEOUT", 30.0),
            lease_seconds=(
                _positive_float(env, "LEASE_SECONDS", 1.0)
                if env.get("BITBYBIT_LEASE_SECONDS")
                else None
            ),
            allow_private_targets=_flag(env.get("BITBYBIT_ALLOW_PRIVATE_TARGETS")),
            allow_http_targets=_flag(env.get("BITBYBIT_ALLOW_HTTP_TARGETS")),
            channel=_choice(env, "CHANNEL", CHANNELS),
            secret_key=env.get("BITBYBIT_SECRET_KEY") or None,
            database_timeout=_positive_float(env, "DATABASE_TIMEOUT", DEFAULT_DATABASE_TIMEOUT),
            auth_failure_limit=_positive_int(env, "AUTH_FAILURE_LIMIT", 20),
            metrics_address=(parse_address(metrics, "METRICS_ADDRESS") if metrics else None),
            sandbox_status_step=_positive_float(env, "SANDBOX_STATUS_STEP", 1.0),
            sandbox_fail_numbers=_numbers(env, "SANDBOX_FAIL_NUMBERS"),
            graph_url=(env.get("BITBYBIT_GRAPH_URL") or DEFAULT_GRAPH_URL).rstrip("/"),
            graph_version=env.get("BITBYBIT_GRAPH_VERSION") or DEFAULT_GRAPH_VERSION,
            whatsapp_pace=_positive_float(env, "WHATSAPP_PACE", 80.0),
            whatsapp_coex_pace=_positive_float(env, "WHATSAPP_COEX_PACE", 20.0),
            whatsapp_pair_interval=_float(env, "WHATSAPP_PAIR_INTERVAL", 6.0, zero_allowed=True),
        )
        return replace(settings, **overrides)  # type: ignore[arg-type]  # overrides are fields
