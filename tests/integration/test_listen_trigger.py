"""``bitbybit listen`` verifies what a live ``bitbybit serve`` delivers for ``bitbybit trigger``."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitbybit.webhooks.signing import webhook_headers
from tests.integration.servers import BITBYBIT, cli, free_port, serve


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, str, queue.Queue[str]]]:
    """``bitbybit listen`` on a free port; yields its URL, its secret and its output lines."""
    secret = "whsec_listenTestSecret0123456789abcd"
    port = free_port()
    process = subprocess.Popen(
        [*BITBYBIT, "listen", "--port", str(port), "--secret", secret],
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("bitbybit listen did not start") from None
                time.sleep(0.1)
        yield url, secret, lines
    finally:
        process.terminate()
        process.wait(10)


def wait_for_line(lines: queue.Queue[str], needle: str, within: float = 30.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never printed; got {seen}")


def test_listen_rejects_deliveries_signed_with_another_secret(
    tmp_path: Path, listener: tuple[str, str, queue.Queue[str]]
) -> None:
    url, _, lines = listener
    database_url = f"sqlite:///{tmp_path / 'live.db'}"
    env = {
        "BITBYBIT_DATABASE_URL": database_url,
        "BITBYBIT_SECRET_KEY": "listen-trigger-test-key",
    }
    company = cli("companies", "create", "Acme", env=env).strip()
    out = cli(
        "endpoints",
        "create",
        "--company",
        company,
        "--url",
        url,
        env={**env, "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1", "BITBYBIT_ALLOW_HTTP_TARGETS": "1"},
    )
    endpoint_id, endpoint_secret = out.split()
    assert endpoint_id.startswith("we_")
    assert endpoint_secret.startswith("whsec_")
    # the listener was started with a secret other than the endpoint's: it must refuse
    delivery_env = {
        **env,
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
        "BITBYBIT_RETRY_SCHEDULE": "0.2,0.2",
    }
    with serve(database_url, tmp_path / "serve.log", **delivery_env):
        made = cli("trigger", "order.created", "--company", company, env=env).split()
        _event_id, event_type = made
        assert event_type == "order.created"
        seen = wait_for_line(lines, "rejected")
    assert any("signature" in line.lower() for line in seen), seen


def test_listen_accepts_and_prints_triggered_events(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'live.db'}"
    env = {
        "BITBYBIT_DATABASE_URL": database_url,
        "BITBYBIT_SECRET_KEY": "listen-trigger-test-key",
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
    }
    port = free_port()
    company = cli("companies", "create", "Acme", env=env).strip()
    _endpoint_id, secret = cli(
        "endpoints", "create", "--company", company, "--url", f"http://127.0.0.1:{port}/", env=env
    ).split()
    process = subprocess.Popen(
        [*BITBYBIT, "listen", "--port", str(port), "--secret", secret],
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        with serve(database_url, tmp_path / "serve.log", **env):
            for event_type in ("customer.created", "product.updated", "order.created"):
                event_id, printed_type = cli(
                    "trigger", event_type, "--company", company, env=env
                ).split()
                assert printed_type == event_type
                seen = wait_for_line(lines, event_id)
                assert any(f"✓ {event_type}" in line for line in seen), seen
        # a forged delivery is refused with the reason, and printed as such
        body = b'{"id":"cust_forged"}'
        headers = webhook_headers(
            "evt_forged", "customer.created", body, ["whsec_wrong"], int(time.time())
        )
        response = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_signature"
        wait_for_line(lines, "rejected")
    finally:
        process.terminate()
        process.wait(10)


def test_trigger_refuses_what_it_cannot_make(tmp_path: Path) -> None:
    env = {
        "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "BITBYBIT_SECRET_KEY": "listen-trigger-test-key",
    }
    company = cli("companies", "create", "Acme", env=env).strip()
    for event_type, reason in (("order.shipped", "unknown"), ("message.read", "unknown")):
        done = subprocess.run(
            [*BITBYBIT, "trigger", event_type, "--company", company],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert reason in done.stderr
