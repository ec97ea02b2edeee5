"""The secret key is checked at start, by real processes (issue 9, defect 4; item 7).

A wrong or missing ``BITBYBIT_SECRET_KEY`` used to start fine; then every delivery attempt failed
with "a stored signing secret cannot be decrypted", used up its retries and suspended the
endpoint. Now ``serve`` (before it binds its port), ``worker`` and ``migrate`` refuse to start,
exit 1 and name the variable; the right key starts them, also second in a comma-separated list,
and ``bitbybit secrets rotate`` moves every stored secret onto the first key so that the old
one can go. A new SQLite database and its generated key file are private to their owner (0600).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from bitbybit.config import Settings
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import access, webhooks
from bitbybit.store import Store
from bitbybit.webhooks import verify
from tests.conftest import DIALECTS
from tests.integration.receivers import receiver
from tests.integration.servers import BITBYBIT, free_port, serve
from tests.integration.test_crash import shared_database

KEY = "the-key-these-secrets-were-encrypted-with"
OTHER_KEY = "the-key-of-some-other-deployment"
STARTUP_WITHIN = 30.0
NO_HTTP_ENDPOINT = "http://127.0.0.1:9/hook"


def env_for(database_url: str, secret_key: str | None) -> dict[str, str]:
    """The environment of a process on ``database_url`` with ``secret_key`` (None: unset)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BITBYBIT_")}
    env.update(
        BITBYBIT_DATABASE_URL=database_url,
        BITBYBIT_ALLOW_PRIVATE_TARGETS="1",
        BITBYBIT_ALLOW_HTTP_TARGETS="1",
    )
    if secret_key is not None:
        env["BITBYBIT_SECRET_KEY"] = secret_key
    return env


def run(
    *args: str, env: dict[str, str], umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``bitbybit *args`` to its end (a hang fails the test after a minute)."""
    return subprocess.run(
        _command(args, umask), env=env, capture_output=True, text=True, timeout=60
    )


def _command(args: tuple[str, ...], umask: int | None) -> list[str]:
    if umask is None:
        return [*BITBYBIT, *args]
    return ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *BITBYBIT, *args]


def assert_refused(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, f"exit {done.returncode}: {done.stderr[-2000:]}"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors, done.stderr
    assert "BITBYBIT_SECRET_KEY" in errors[0], done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def serve_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bitbybit serve`` that must end by itself; its port is watched all the while."""
    port = free_port()
    process = subprocess.Popen(
        [*BITBYBIT, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bound = False
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                bound = bound or probe.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
        out, err = process.communicate(timeout=10)
    assert not bound, f"serve listened on its port: {err[-2000:]}"
    assert "Uvicorn running" not in err, err
    assert "application startup" not in err, err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def start_worker(
    env: dict[str, str], log: Path, umask: int | None = None
) -> subprocess.Popen[bytes]:
    """A ``bitbybit worker`` that logged ``worker_started`` (it fails the test otherwise)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(("worker", "--concurrency", "4"), umask),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + STARTUP_WITHIN
    while b'"worker_started"' not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"worker did not start: {log.read_text()}")
        time.sleep(0.02)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def make_endpoint(store: Store, url: str, database_url: str) -> tuple[str, str]:
    """A company and an endpoint at ``url``, its secret encrypted under ``KEY``: the company id
    and the secret."""
    env = env_for(database_url, KEY)
    platform = Platform(store, Settings.from_env(env))
    company = await access.create_company(platform, "Keyed", "ID")
    tenant = Tenant(company.id, "live")
    _, secret = await webhooks.create_endpoint(platform, tenant, EndpointCreate(url=url))
    return company.id, secret


def mode_of(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_wrong_key_stops_serve_worker_and_migrate(dialect: str, tmp_path: Path) -> None:
    async with shared_database(dialect, tmp_path) as (url, store):
        await make_endpoint(store, NO_HTTP_ENDPOINT, url)
        wrong = env_for(url, OTHER_KEY)

        for command in ("migrate", "worker"):
            done = await asyncio.to_thread(run, command, env=wrong)
            assert_refused(done)
            assert "cannot decrypt 1 of the 1 stored secrets" in done.stderr
        assert_refused(await asyncio.to_thread(serve_refused, wrong))


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_right_key_starts_them_also_second_in_the_list(
    dialect: str, tmp_path: Path
) -> None:
    async with shared_database(dialect, tmp_path) as (url, store):
        await make_endpoint(store, NO_HTTP_ENDPOINT, url)

        for secret_key in (KEY, f"{OTHER_KEY},{KEY}"):
            migrated = await asyncio.to_thread(run, "migrate", env=env_for(url, secret_key))
            assert migrated.returncode == 0, migrated.stderr
        env = env_for(url, f"{OTHER_KEY},{KEY}")
        worker = await asyncio.to_thread(start_worker, env, tmp_path / "worker.log")
        await asyncio.to_thread(stop, worker)
        with serve(url, tmp_path / "serve.log", **env) as server:
            assert server.process.poll() is None


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_after_secrets_rotate_the_old_key_can_go(dialect: str, tmp_path: Path) -> None:
    """Rotation step by step: new key in front, ``secrets rotate``, old key removed; a delivery
    then still verifies with the endpoint's secret, and the old key alone is refused."""
    new_key = "the-new-key-after-rotation"
    async with shared_database(dialect, tmp_path) as (url, store), receiver() as hooks:
        company_id, secret = await make_endpoint(store, hooks.url, url)

        rotated = await asyncio.to_thread(
            run, "secrets", "rotate", env=env_for(url, f"{new_key},{KEY}")
        )
        assert rotated.returncode == 0, rotated.stderr
        assert rotated.stdout.startswith("re-encrypted 1 secrets (0 already used the first key)")

        assert_refused(await asyncio.to_thread(run, "migrate", env=env_for(url, KEY)))
        env = env_for(url, new_key)
        with serve(url, tmp_path / "serve.log", **env):
            made = await asyncio.to_thread(
                run, "trigger", "customer.created", "--company", company_id, env=env
            )
            assert made.returncode == 0, made.stderr
            (delivery,) = await hooks.wait_for(1)

        assert verify(delivery.body, delivery.headers, secret).type == "customer.created"


def test_a_regenerated_key_file_is_refused_until_the_original_is_back(tmp_path: Path) -> None:
    """SQLite without ``BITBYBIT_SECRET_KEY``: the key file beside the database was deleted and
    a new one generated, the classic way to lose the key."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    env = env_for(url, None)
    key_file = tmp_path / "shop.db.key"
    assert run("migrate", env=env).returncode == 0
    company_id = run("companies", "create", "Keyed", env=env).stdout.strip()
    made = run("endpoints", "create", "--company", company_id, "--url", NO_HTTP_ENDPOINT, env=env)
    assert made.returncode == 0, made.stderr
    original = key_file.read_bytes()
    key_file.unlink()

    first = run("migrate", env=env)
    assert_refused(first)
    assert f"the key file {key_file} was generated just now" in first.stderr
    assert key_file.read_bytes() != original
    worker = run("worker", env=env)
    assert_refused(worker)
    assert str(key_file) in worker.stderr

    key_file.write_bytes(original)
    restored = run("migrate", env=env)
    assert restored.returncode == 0, restored.stderr


def test_a_new_sqlite_database_and_its_key_file_are_private(tmp_path: Path) -> None:
    """Created by ``migrate`` under a umask that lets everyone read and write: the database, its
    generated key file, and the ``-wal``/``-shm`` files SQLite adds while a process has the
    database open, are all 0600."""
    database = tmp_path / "shop.db"
    env = env_for(f"sqlite:///{database}", None)

    migrated = run("migrate", env=env, umask=0)
    assert migrated.returncode == 0, migrated.stderr

    key_file = database.with_name("shop.db.key")
    assert (mode_of(database), mode_of(key_file)) == ("0600", "0600")
    worker = start_worker(env, tmp_path / "worker.log", umask=0)
    try:
        wal, shm = database.with_name("shop.db-wal"), database.with_name("shop.db-shm")
        assert (mode_of(wal), mode_of(shm)) == ("0600", "0600")
    finally:
        stop(worker)
