"""``config.py``: every ``BITBYBIT_*`` variable, its default, and a clear refusal of a bad value.

A refusal is a ``ConfigurationError`` whose message names the variable, so an operator reading
the one line a failed start prints knows which setting to fix.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bitbybit.clock import system_clock
from bitbybit.config import (
    DEFAULT_DATABASE_TIMEOUT,
    DEFAULT_DATABASE_URL,
    DEFAULT_RETRY_SCHEDULE,
    Settings,
    as_text,
    effective,
    environment_fields,
    masked,
    parse_address,
    parse_retry_schedule,
    settings_table,
    variable_of,
)
from bitbybit.errors import ConfigurationError
from bitbybit.logs import log_format
from tests.conftest import FakeClock

VARIABLES = {
    "BITBYBIT_DATABASE_URL",
    "BITBYBIT_HOST",
    "BITBYBIT_PORT",
    "BITBYBIT_CONCURRENCY",
    "BITBYBIT_LOG_FORMAT",
    "BITBYBIT_RATE_LIMIT",
    "BITBYBIT_MAX_BODY_BYTES",
    "BITBYBIT_RETRY_SCHEDULE",
    "BITBYBIT_DELIVERY_TIMEOUT",
    "BITBYBIT_LEASE_SECONDS",
    "BITBYBIT_ALLOW_PRIVATE_TARGETS",
    "BITBYBIT_ALLOW_HTTP_TARGETS",
    "BITBYBIT_CHANNEL",
    "BITBYBIT_SECRET_KEY",
    "BITBYBIT_DATABASE_TIMEOUT",
    "BITBYBIT_AUTH_FAILURE_LIMIT",
    "BITBYBIT_METRICS_ADDRESS",
    "BITBYBIT_SANDBOX_STATUS_STEP",
    "BITBYBIT_SANDBOX_FAIL_NUMBERS",
    "BITBYBIT_GRAPH_URL",
    "BITBYBIT_GRAPH_VERSION",
    "BITBYBIT_WHATSAPP_PACE",
    "BITBYBIT_WHATSAPP_COEX_PACE",
    "BITBYBIT_WHATSAPP_PAIR_INTERVAL",
    "BITBYBIT_SESSION_IDLE",
    "BITBYBIT_SESSION_MAX_AGE",
    "BITBYBIT_LOGIN_FAILURE_LIMIT",
    "BITBYBIT_RETENTION_DAYS",
    "BITBYBIT_RETENTION_EVERY",
}
"""Every variable ``Settings.from_env`` reads. A new one belongs here, with tests below."""

WHOLE_NUMBERS = {
    "BITBYBIT_RATE_LIMIT": ("rate_limit", 100),
    "BITBYBIT_MAX_BODY_BYTES": ("max_body_bytes", 1024 * 1024),
    "BITBYBIT_AUTH_FAILURE_LIMIT": ("auth_failure_limit", 20),
    "BITBYBIT_PORT": ("port", 8000),
    "BITBYBIT_LOGIN_FAILURE_LIMIT": ("login_failure_limit", 5),
}
SECONDS = {
    "BITBYBIT_DELIVERY_TIMEOUT": ("delivery_timeout", 30.0),
    "BITBYBIT_DATABASE_TIMEOUT": ("database_timeout", DEFAULT_DATABASE_TIMEOUT),
    "BITBYBIT_LEASE_SECONDS": ("lease_seconds", None),
    "BITBYBIT_SANDBOX_STATUS_STEP": ("sandbox_status_step", 1.0),
    "BITBYBIT_WHATSAPP_PACE": ("whatsapp_pace", 80.0),
    "BITBYBIT_WHATSAPP_COEX_PACE": ("whatsapp_coex_pace", 20.0),
    "BITBYBIT_SESSION_IDLE": ("session_idle", 1800.0),
    "BITBYBIT_SESSION_MAX_AGE": ("session_max_age", 604800.0),
    "BITBYBIT_RETENTION_EVERY": ("retention_every", 3600.0),
}


class Watched(dict[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]  # dict.get's overloads
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(env)
    return str(refused.value)


# which variables, and their defaults ---------------------------------------------------------


def test_from_env_reads_exactly_the_known_variables() -> None:
    env = Watched()
    Settings.from_env(env)
    assert env.asked == VARIABLES


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///./bitbybit.db"
    assert settings.rate_limit == 100
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE == (30.0, 300.0, 1800.0, 7200.0)
    assert settings.delivery_timeout == 30.0
    assert settings.lease_seconds is None
    assert settings.allow_private_targets is False
    assert settings.allow_http_targets is False
    assert settings.channel == "sandbox"
    assert settings.secret_key is None
    assert settings.default_country == "ID"
    assert settings.database_timeout == DEFAULT_DATABASE_TIMEOUT == 5.0
    assert settings.auth_failure_limit == 20
    assert settings.metrics_address is None
    assert settings.clock is system_clock


def test_empty_values_mean_the_default() -> None:
    """``BITBYBIT_X=`` (set but empty, as compose files often leave them) is not a value.

    The exception is the retry schedule, where empty says "no retries" (next test)."""
    env = {name: "" for name in VARIABLES - {"BITBYBIT_RETRY_SCHEDULE"}}
    assert Settings.from_env(env) == Settings()


def test_the_os_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITBYBIT_RATE_LIMIT", "7")
    monkeypatch.setenv("BITBYBIT_CHANNEL", "whatsapp-cloud")
    settings = Settings.from_env()
    assert (settings.rate_limit, settings.channel) == (7, "whatsapp-cloud")


def test_overrides_win_over_the_environment() -> None:
    env = {"BITBYBIT_DATABASE_URL": "sqlite:///from-env.db", "BITBYBIT_RATE_LIMIT": "7"}
    settings = Settings.from_env(env, database_url="sqlite:///given.db")
    assert (settings.database_url, settings.rate_limit) == ("sqlite:///given.db", 7)


def test_text_values_are_taken_as_given() -> None:
    env = {
        "BITBYBIT_DATABASE_URL": "postgresql://bitbybit@db/bitbybit",
        "BITBYBIT_CHANNEL": "whatsapp-cloud",
        "BITBYBIT_SECRET_KEY": "first key,second key",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == "postgresql://bitbybit@db/bitbybit"
    assert settings.channel == "whatsapp-cloud"
    assert settings.secret_key == "first key,second key"


# whole numbers and seconds -------------------------------------------------------------------


@pytest.mark.parametrize("variable", sorted(WHOLE_NUMBERS))
def test_whole_numbers_are_read(variable: str) -> None:
    attribute, default = WHOLE_NUMBERS[variable]
    assert getattr(Settings.from_env({}), attribute) == default
    assert getattr(Settings.from_env({variable: "42"}), attribute) == 42
    assert getattr(Settings.from_env({variable: " 42 "}), attribute) == 42


@pytest.mark.parametrize("variable", sorted(WHOLE_NUMBERS))
@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("many", "must be a whole number, got 'many'"),
        ("1.5", "must be a whole number, got '1.5'"),
        ("0", "must be positive, got 0"),
        ("-3", "must be positive, got -3"),
    ],
)
def test_bad_whole_numbers_are_refused_by_name(variable: str, raw: str, complaint: str) -> None:
    assert refusal({variable: raw}) == f"{variable} {complaint}"


@pytest.mark.parametrize("variable", sorted(SECONDS))
def test_seconds_are_read_with_fractions(variable: str) -> None:
    attribute, default = SECONDS[variable]
    assert getattr(Settings.from_env({}), attribute) == default
    assert getattr(Settings.from_env({variable: "2.5"}), attribute) == 2.5
    assert getattr(Settings.from_env({variable: "90"}), attribute) == 90.0


@pytest.mark.parametrize("variable", sorted(SECONDS))
@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("soon", "must be a number, got 'soon'"),
        ("0", "must be positive, got 0"),
        ("-1.5", "must be positive, got -1.5"),
        ("nan", "must be positive, got nan"),
    ],
)
def test_bad_seconds_are_refused_by_name(variable: str, raw: str, complaint: str) -> None:
    assert refusal({variable: raw}) == f"{variable} {complaint}"


# flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["BITBYBIT_ALLOW_PRIVATE_TARGETS", "BITBYBIT_ALLOW_HTTP_TARGETS"]
)
def test_flags(variable: str) -> None:
    attribute = variable.removeprefix("BITBYBIT_").lower()
    for raw in ("1", "true", "TRUE", "yes", "on", " On "):
        assert getattr(Settings.from_env({variable: raw}), attribute) is True, raw
    for raw in ("", "0", "false", "no", "off"):
        assert getattr(Settings.from_env({variable: raw}), attribute) is False, raw


# the metrics address ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),  # noqa: S104  # an address parsed, not bound
        ("metrics.internal:65535", ("metrics.internal", 65535)),
        ("[::1]:9464", ("::1", 9464)),
        (" [::]:9464 ", ("::", 9464)),
    ],
)
def test_the_metrics_address_is_host_and_port(raw: str, address: tuple[str, int]) -> None:
    assert Settings.from_env({"BITBYBIT_METRICS_ADDRESS": raw}).metrics_address == address
    assert parse_address(raw, "METRICS_ADDRESS") == address


@pytest.mark.parametrize(
    "raw", ["9464", "localhost", ":9464", "127.0.0.1:", "127.0.0.1:0", "host:65536", "host:http"]
)
def test_a_bad_metrics_address_is_refused_by_name(raw: str) -> None:
    expected = f"BITBYBIT_METRICS_ADDRESS must be host:port (e.g. 127.0.0.1:9464), got {raw!r}"
    assert refusal({"BITBYBIT_METRICS_ADDRESS": raw}) == expected


# the retry schedule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "schedule"),
    [
        ("30,300,1800,7200", (30.0, 300.0, 1800.0, 7200.0)),
        (" 5 , 60 ", (5.0, 60.0)),
        ("0.25,0.5", (0.25, 0.5)),
        ("0", (0.0,)),
        ("1,,2,", (1.0, 2.0)),
        ("", ()),
        (" , ", ()),
    ],
)
def test_the_retry_schedule_is_comma_separated_seconds(
    raw: str, schedule: tuple[float, ...]
) -> None:
    assert parse_retry_schedule(raw) == schedule
    assert Settings.from_env({"BITBYBIT_RETRY_SCHEDULE": raw}).retry_schedule == schedule


def test_an_empty_retry_schedule_means_no_retries_not_the_default() -> None:
    assert Settings.from_env({"BITBYBIT_RETRY_SCHEDULE": ""}).retry_schedule == ()
    assert Settings.from_env({}).retry_schedule == DEFAULT_RETRY_SCHEDULE


@pytest.mark.parametrize("raw", ["30;300", "30s,5m", "thirty", "1,two"])
def test_a_schedule_that_is_not_numbers_is_refused_by_name(raw: str) -> None:
    expected = f"BITBYBIT_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}"
    assert refusal({"BITBYBIT_RETRY_SCHEDULE": raw}) == expected


@pytest.mark.parametrize("raw", ["-1", "30,-300"])
def test_a_negative_delay_is_refused_by_name(raw: str) -> None:
    expected = "BITBYBIT_RETRY_SCHEDULE delays must not be negative"
    assert refusal({"BITBYBIT_RETRY_SCHEDULE": raw}) == expected


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError, match=r"settings\.replace"):
        settings.rate_limit = 5  # the point: it cannot be assigned


# messaging -------------------------------------------------------------------------------------


def test_the_channel_must_be_one_of_the_two() -> None:
    assert Settings.from_env({"BITBYBIT_CHANNEL": "whatsapp-cloud"}).channel == "whatsapp-cloud"
    message = refusal({"BITBYBIT_CHANNEL": "whatsapp"})
    assert "BITBYBIT_CHANNEL" in message
    assert "sandbox, whatsapp-cloud" in message


def test_sandbox_fail_numbers_are_e164() -> None:
    settings = Settings.from_env({"BITBYBIT_SANDBOX_FAIL_NUMBERS": "+6281234567999, +15550001"})
    assert settings.sandbox_fail_numbers == ("+6281234567999", "+15550001")
    assert "E.164" in refusal({"BITBYBIT_SANDBOX_FAIL_NUMBERS": "081234567999"})


def test_graph_url_loses_its_trailing_slash_and_the_pair_interval_may_be_zero() -> None:
    settings = Settings.from_env(
        {"BITBYBIT_GRAPH_URL": "http://127.0.0.1:9/", "BITBYBIT_WHATSAPP_PAIR_INTERVAL": "0"}
    )
    assert settings.graph_url == "http://127.0.0.1:9"
    assert settings.whatsapp_pair_interval == 0.0
    assert "zero or more" in refusal({"BITBYBIT_WHATSAPP_PAIR_INTERVAL": "-1"})
    assert "zero or more" in refusal({"BITBYBIT_WHATSAPP_PAIR_INTERVAL": "inf"})


def test_retention_days_are_whole_and_zero_keeps_everything() -> None:
    assert Settings.from_env({}).retention_days == 30
    assert Settings.from_env({"BITBYBIT_RETENTION_DAYS": "90"}).retention_days == 90
    assert Settings.from_env({"BITBYBIT_RETENTION_DAYS": "0"}).retention_days == 0
    assert refusal({"BITBYBIT_RETENTION_DAYS": "-1"}) == (
        "BITBYBIT_RETENTION_DAYS must be zero or more, got -1"
    )
    assert refusal({"BITBYBIT_RETENTION_DAYS": "1.5"}) == (
        "BITBYBIT_RETENTION_DAYS must be a whole number, got '1.5'"
    )


# the server's own options ----------------------------------------------------------------------


def test_serve_and_worker_options_have_variables_too() -> None:
    settings = Settings.from_env(
        {"BITBYBIT_HOST": "0.0.0.0", "BITBYBIT_PORT": "9000", "BITBYBIT_CONCURRENCY": "0"}  # noqa: S104  # parsed, not bound
    )
    assert (settings.host, settings.port, settings.concurrency) == ("0.0.0.0", 9000, 0)  # noqa: S104
    assert refusal({"BITBYBIT_PORT": "65536"}) == (
        "BITBYBIT_PORT must be a port from 1 to 65535, got 65536"
    )
    assert refusal({"BITBYBIT_CONCURRENCY": "-1"}) == (
        "BITBYBIT_CONCURRENCY must be zero or more, got -1"
    )


def test_the_log_format_is_refused_in_the_words_the_logger_uses() -> None:
    assert Settings.from_env({"BITBYBIT_LOG_FORMAT": "console"}).log_format == "console"
    assert Settings.from_env({}).log_format is None  # the terminal decides
    assert refusal({"BITBYBIT_LOG_FORMAT": "xml"}) == (
        "BITBYBIT_LOG_FORMAT must be json or console, not 'xml'"
    )
    with pytest.raises(ValueError, match="BITBYBIT_LOG_FORMAT must be json or console, not 'xml'"):
        log_format({"BITBYBIT_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_a_flag_that_is_neither_yes_nor_no_is_refused(raw: str) -> None:
    message = refusal({"BITBYBIT_ALLOW_HTTP_TARGETS": raw})
    assert message == (
        f"BITBYBIT_ALLOW_HTTP_TARGETS must be 1, true, yes or on (or 0, false, no, off),"
        f" got {raw!r}"
    )


# construction, copies and equality -------------------------------------------------------------


def test_the_constructor_never_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build ``Settings(...)`` and expect exactly what they wrote, whatever the shell."""
    monkeypatch.setenv("BITBYBIT_RATE_LIMIT", "7")
    monkeypatch.setenv("BITBYBIT_ALLOW_PRIVATE_TARGETS", "1")
    settings = Settings(secret_key="k")
    assert (settings.rate_limit, settings.allow_private_targets) == (100, False)


def test_constructor_values_are_validated_like_the_environments() -> None:
    with pytest.raises(ConfigurationError, match=r"^BITBYBIT_RATE_LIMIT must be positive, got 0$"):
        Settings(rate_limit=0)
    with pytest.raises(ConfigurationError, match=r"^BITBYBIT_MAX_BODY_BYTES: .*integer"):
        Settings(max_body_bytes=1.5)  # type: ignore[arg-type]  # the point: a wrong type
    with pytest.raises(ConfigurationError, match=r"^nonsense: "):
        Settings(nonsense=1)  # type: ignore[call-arg]  # the point: no such setting


def test_replace_copies_with_changes_validated_and_origins_kept() -> None:
    clock = FakeClock()
    settings = Settings.from_env({"BITBYBIT_RATE_LIMIT": "7"}, clock=clock)
    copy = settings.replace(secret_key="other", allow_http_targets=True)
    assert (copy.rate_limit, copy.secret_key, copy.allow_http_targets) == (7, "other", True)
    assert copy.clock is clock
    assert settings.secret_key is None  # the original is untouched
    assert copy.origin("rate_limit") == "environment"
    assert copy.origin("max_body_bytes") == "default"
    with pytest.raises(ConfigurationError, match="BITBYBIT_DELIVERY_TIMEOUT must be positive"):
        settings.replace(delivery_timeout=0)


def test_equality_ignores_the_clock_as_before() -> None:
    assert Settings(clock=FakeClock()) == Settings()
    assert Settings(rate_limit=5) != Settings()
    assert hash(Settings(clock=FakeClock())) == hash(Settings())


def test_origin_says_environment_only_for_variables_with_a_value() -> None:
    settings = Settings.from_env(
        {"BITBYBIT_RATE_LIMIT": "7", "BITBYBIT_CHANNEL": "", "BITBYBIT_RETRY_SCHEDULE": ""}
    )
    assert settings.origin("rate_limit") == "environment"
    assert settings.origin("channel") == "default"  # set but empty: the default
    assert settings.origin("retry_schedule") == "environment"  # empty: no retries, on purpose
    assert settings.origin("max_body_bytes") == "default"


# the one source: every variable documented, its default spelled as the variable takes it ----


def test_every_variable_is_a_field_with_one_line_of_documentation() -> None:
    fields = environment_fields()
    assert {variable_of(name) for name in fields} == VARIABLES
    for name, field in fields.items():
        assert field.description, name
        assert "\n" not in field.description, name
    assert "clock" not in fields
    assert "default_country" not in fields


@pytest.mark.parametrize("name", sorted(environment_fields()))
def test_each_default_read_back_from_its_variable_is_the_default(name: str) -> None:
    """``config`` prints values as the variables spell them: pasted back, they mean the same."""
    default = Settings.model_fields[name].default
    if default is None:
        return  # unset is the only spelling of none
    assert getattr(Settings.from_env({variable_of(name): as_text(default)}), name) == default


def test_the_table_lists_every_variable_in_order() -> None:
    table = settings_table().splitlines()
    assert table[:2] == ["| variable | default | meaning |", "|---|---|---|"]
    assert [row.split(" | ")[0].strip("| `") for row in table[2:]] == [
        variable_of(name) for name in environment_fields()
    ]
    assert "| `BITBYBIT_RATE_LIMIT` | `100` | requests per minute" in settings_table()
    assert "| `BITBYBIT_ALLOW_HTTP_TARGETS` | off |" in settings_table()
    assert "| `BITBYBIT_SECRET_KEY` | none |" in settings_table()


# what ``bitbybit config`` prints --------------------------------------------------------------


def test_effective_settings_mask_secrets_and_passwords() -> None:
    settings = Settings.from_env(
        {
            "BITBYBIT_SECRET_KEY": "first key,second key",
            "BITBYBIT_DATABASE_URL": "postgresql://bitbybit:s3cr3t@db:5432/bitbybit",
            "BITBYBIT_GRAPH_URL": "https://user:token@graph.example?password=hunter2&x=1",
        }
    )
    rows = {row["variable"]: row for row in effective(settings)}
    assert rows["BITBYBIT_SECRET_KEY"] == {
        "variable": "BITBYBIT_SECRET_KEY",
        "value": "****",
        "source": "environment",
    }
    assert rows["BITBYBIT_DATABASE_URL"]["value"] == "postgresql://bitbybit:****@db:5432/bitbybit"
    assert rows["BITBYBIT_GRAPH_URL"]["value"] == (
        "https://user:****@graph.example?password=****&x=1"
    )
    assert rows["BITBYBIT_RATE_LIMIT"] == {
        "variable": "BITBYBIT_RATE_LIMIT",
        "value": 100,
        "source": "default",
    }
    assert list(rows) == [variable_of(name) for name in environment_fields()]
    printed = repr(effective(settings))
    assert "s3cr3t" not in printed
    assert "first key" not in printed
    assert "hunter2" not in printed


def test_an_unset_secret_key_is_shown_as_none_not_masked() -> None:
    rows = {row["variable"]: row for row in effective(Settings.from_env({}))}
    assert rows["BITBYBIT_SECRET_KEY"]["value"] is None
    assert masked("database_url", "postgresql://bitbybit@db/bitbybit") == (
        "postgresql://bitbybit@db/bitbybit"
    )
