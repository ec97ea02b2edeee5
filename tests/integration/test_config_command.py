"""``bitbybit config``, and which database a command opens, as a user meets them: real
processes, the environment the only input.

``config`` prints every variable with its value and where it came from, never a secret; the
default database (``sqlite:///./bitbybit.db``, relative to the current directory) is created only
by ``serve`` and ``migrate``, so a command typed in the wrong directory says where it looked
instead of answering from a new, empty database.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bitbybit.config import environment_fields, variable_of
from tests.integration.servers import BITBYBIT, free_port

SECRET = "config-command-secret-key"
PASSWORD = "pg-passw0rd"


def _clean_env(**extra: str) -> dict[str, str]:
    """The process's environment without any ``BITBYBIT_*`` variable, plus ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BITBYBIT_")}
    return {**inherited, **extra}


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BITBYBIT, *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_prints_each_variable_its_value_and_its_source(tmp_path: Path) -> None:
    done = run(
        "config",
        cwd=tmp_path,
        BITBYBIT_RATE_LIMIT="7",
        BITBYBIT_RETRY_SCHEDULE="1,2.5",
        BITBYBIT_ALLOW_HTTP_TARGETS="yes",
        BITBYBIT_CHANNEL="",  # set but empty: the default
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [row[0] for row in rows] == [variable_of(name) for name in environment_fields()]
    table = {row[0]: (row[1], row[2]) for row in rows}
    assert table["BITBYBIT_RATE_LIMIT"] == ("7", "environment")
    assert table["BITBYBIT_RETRY_SCHEDULE"] == ("1,2.5", "environment")
    assert table["BITBYBIT_ALLOW_HTTP_TARGETS"] == ("1", "environment")
    assert table["BITBYBIT_CHANNEL"] == ("sandbox", "default")
    assert table["BITBYBIT_MAX_BODY_BYTES"] == ("1048576", "default")
    assert table["BITBYBIT_SECRET_KEY"] == ("-", "default")
    assert table["BITBYBIT_DATABASE_URL"] == ("sqlite:///./bitbybit.db", "default")
    database = (tmp_path / "bitbybit.db").resolve()
    assert done.stderr.strip() == f"database file: {database} (does not exist yet)"
    assert not database.exists()  # config never creates it


def test_config_masks_the_secret_key_and_database_passwords(tmp_path: Path) -> None:
    url = f"postgresql://bitbybit:{PASSWORD}@127.0.0.1:5432/test"
    for args in (["config"], ["config", "--json"]):
        done = run(*args, cwd=tmp_path, BITBYBIT_SECRET_KEY=SECRET, BITBYBIT_DATABASE_URL=url)
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        assert "postgresql://bitbybit:****@127.0.0.1:5432/test" in done.stdout
    found: dict[str, Any] = orjson.loads(done.stdout)
    rows = {row["variable"]: row for row in found["settings"]}
    assert rows["BITBYBIT_SECRET_KEY"] == {
        "variable": "BITBYBIT_SECRET_KEY",
        "value": "****",
        "source": "environment",
    }
    assert found["databaseFile"] is None  # PostgreSQL: no file


def test_config_json_gives_typed_values_and_the_database_file(tmp_path: Path) -> None:
    done = run("config", "--json", cwd=tmp_path, BITBYBIT_METRICS_ADDRESS="127.0.0.1:9464")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = orjson.loads(done.stdout)
    rows = {row["variable"]: row for row in found["settings"]}
    assert rows["BITBYBIT_RATE_LIMIT"] == {
        "variable": "BITBYBIT_RATE_LIMIT",
        "value": 100,
        "source": "default",
    }
    assert rows["BITBYBIT_RETRY_SCHEDULE"]["value"] == [30.0, 300.0, 1800.0, 7200.0]
    assert rows["BITBYBIT_ALLOW_PRIVATE_TARGETS"]["value"] is False
    assert rows["BITBYBIT_LEASE_SECONDS"]["value"] is None
    assert rows["BITBYBIT_METRICS_ADDRESS"] == {
        "variable": "BITBYBIT_METRICS_ADDRESS",
        "value": ["127.0.0.1", 9464],
        "source": "environment",
    }
    assert found["databaseFile"] == str((tmp_path / "bitbybit.db").resolve())


def test_config_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    done = run("config", cwd=tmp_path, BITBYBIT_DELIVERY_TIMEOUT="soon")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "error: BITBYBIT_DELIVERY_TIMEOUT must be a number, got 'soon'\n"


def test_config_markdown_prints_the_documented_table(tmp_path: Path) -> None:
    done = run("config", "--markdown", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert done.stdout in document
    assert done.stdout.startswith("| variable | default | meaning |\n")


def test_write_doc_regenerates_the_table_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "ops.md"
    page.write_text(
        "# Ops\n<!-- settings:start: generated from bitbybit.config.Settings -->\n"
        "| stale |\n<!-- settings:end -->\ntail\n"
    )
    done = run("config", "--write-doc", str(page), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = run("config", "--markdown", cwd=tmp_path).stdout
    assert page.read_text() == (
        "# Ops\n<!-- settings:start: generated from bitbybit.config.Settings -->\n"
        f"{table}<!-- settings:end -->\ntail\n"
    )
    missing = run("config", "--write-doc", str(tmp_path / "absent.md"), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot rewrite ")
    assert len(missing.stderr.splitlines()) == 1


# which database a command opens ---------------------------------------------------------------


def test_a_command_elsewhere_refuses_to_create_the_default_database(tmp_path: Path) -> None:
    """The README's steps typed in another directory: one line naming the path and the
    variable, exit 1, and no second database left behind."""
    for args in (
        ["companies", "create", "Acme"],
        ["companies", "list"],
        ["keys", "list", "--company", "comp_x"],
        ["worker"],
    ):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, lines
        database = (tmp_path / "bitbybit.db").resolve()
        assert lines[0].startswith(f"error: no database at {database}: "), lines
        assert "BITBYBIT_DATABASE_URL" in lines[0]
        assert "bitbybit migrate" in lines[0]
        assert list(tmp_path.iterdir()) == [], args  # no database, no key file


def test_migrate_creates_the_default_database_and_then_commands_use_it(tmp_path: Path) -> None:
    assert run("migrate", cwd=tmp_path).returncode == 0
    assert (tmp_path / "bitbybit.db").exists()
    made = run("companies", "create", "Acme", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    listed = run("companies", "list", cwd=tmp_path)
    assert listed.stdout.startswith(made.stdout.strip() + "\tAcme\t")


def test_a_named_database_is_created_where_it_says(tmp_path: Path) -> None:
    """A URL chosen on purpose (variable or option) is honoured: scripts start this way."""
    named = tmp_path / "named.db"
    done = run(
        "companies", "create", "Acme", cwd=tmp_path, BITBYBIT_DATABASE_URL=f"sqlite:///{named}"
    )
    assert done.returncode == 0, done.stderr
    assert named.exists()
    other = tmp_path / "option.db"
    done = run("companies", "list", "--database-url", f"sqlite:///{other}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert other.exists()


def test_serve_creates_the_default_database_and_logs_its_absolute_path(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as out:
        process = subprocess.Popen(
            [*BITBYBIT, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=_clean_env(BITBYBIT_LOG_FORMAT="json"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)
    database = (tmp_path / "bitbybit.db").resolve()
    assert database.exists()
    logged = [
        orjson.loads(line)
        for line in (tmp_path / "serve.log").read_text().splitlines()
        if line.startswith("{")
    ]
    said = [line for line in logged if line.get("event") == "database"]
    assert len(said) == 1, logged
    assert said[0]["database"] == str(database)


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str) -> None:
    """Until ``/healthz`` answers 200; a process that exits first fails the test."""
    deadline = time.monotonic() + 60  # a start that hangs ends the test, not the suite
    while time.monotonic() < deadline:
        assert process.poll() is None, "bitbybit serve exited"
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("bitbybit serve did not start")
