"""Every code sample of ``docs/receiving-webhooks.md`` runs as written and does what the guide says.

Each sample is marked in the guide by an HTML comment, ``<!-- sample: NAME -->``, on the line
before its code block. The test extracts each receiver sample byte for byte, writes it to a file,
runs it as a real process (Python adapters with this project's interpreter, Node, a Go binary
built from it) on a loopback port, and then:

- the real platform (API + worker, in this process) delivers a ``customer.created`` to it: the
  delivery succeeds and the sample handles the event once; a replay of the same event is answered
  as the guide says for a duplicate, and is not handled again;
- deliveries signed here with the library's own helpers check the rest: the old secret during a
  rotation, two ``v1`` values, a tampered body, stale and future timestamps, and hostile requests
  (missing headers, a non-ASCII ``v1``, a garbage signature, a non-JSON content type or body, an
  oversized header). Refusals are a 400; nothing is ever answered 5xx.

Node and Go must be installed: locally a missing one skips with the reason, with ``CI=true`` it
fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitbybit.runtime import Platform
from bitbybit.webhooks import compute_signature, webhook_headers
from bitbybit.webhooks.body import encode_body
from tests.conftest import CUSTOMERS, IN_CI, Account, client_for
from tests.integration.test_delivery import deliveries, running, until

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "receiving-webhooks.md"
MARKED = re.compile(r"<!-- sample: ([a-z-]+) -->\n```([a-z]+)\n(.*?)\n```\n", re.DOTALL)
FENCE = re.compile(r"^```([a-z]+)$", re.MULTILINE)
CODE_LANGUAGES = {"python", "js", "javascript", "go", "sh", "bash", "console"}

SERVERS = ["fastapi", "starlette", "flask", "django", "node", "go"]
FILENAMES = {"node": "receiver.js", "go": "receiver.go"}
DUPLICATE = {"received": True, "duplicate": True}
NEW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_old_Zm9yIHJvdGF0aW9uIHRlc3Rz"


def extract(guide: Path | None = None) -> dict[str, tuple[str, str]]:
    """Every marked sample of the guide (by default ``GUIDE``): name -> (language, code)."""
    found: dict[str, tuple[str, str]] = {}
    for name, language, code in MARKED.findall((guide or GUIDE).read_text("utf-8")):
        assert name not in found, f"two samples are named {name!r}"
        found[name] = (language, code + "\n")
    return found


def duplicate_answer(name: str) -> dict[str, Any]:
    """What the guide says a duplicate is answered with (FastAPI puts it under ``detail``)."""
    return {"detail": DUPLICATE} if name == "fastapi" else DUPLICATE


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed: the guide's {name} sample cannot be run"
    if IN_CI:
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Running:
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def handled(self, event_id: str) -> int:
        """How many times the sample's handler ran for ``event_id``."""
        return len(re.findall(rf"handled \S+ {re.escape(event_id)}\b", self.output()))


def command_for(name: str, source: Path, workdir: Path) -> list[str]:
    if name == "node":
        return [tool("node"), str(source)]
    if name == "go":
        binary = workdir / "receiver"
        env = dict(os.environ)
        if not any(env.get(name) for name in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
            env["GOCACHE"] = str(workdir / "go-cache")  # go refuses to build without a cache
        built = subprocess.run(
            [tool("go"), "build", "-o", str(binary), str(source)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert built.returncode == 0, f"the Go sample does not build:\n{built.stderr}"
        return [str(binary)]
    return [sys.executable, str(source)]


@contextmanager
def sample_server(name: str, workdir: Path, *secrets: str) -> Iterator[Running]:
    """Run the guide's sample ``name`` with ``secrets``; yields its URL. Always stopped on exit."""
    _, code = extract()[name]
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / FILENAMES.get(name, f"receiver_{name}.py")
    source.write_text(code, "utf-8")
    command = command_for(name, source, workdir)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEBHOOK_SECRET": secrets[0],
        "DJANGO_SECRET_KEY": "a-key-for-this-test-run-only",
    }
    env.pop("WEBHOOK_SECRET_OLD", None)
    if len(secrets) > 1:
        env["WEBHOOK_SECRET_OLD"] = secrets[1]
    log = workdir / "output.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # the guide's own sample, run on purpose
            command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(process, port, log)
        yield Running(f"http://127.0.0.1:{port}/webhooks", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the sample accepts connections; fails with its output if it exits first."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the sample exited ({process.returncode}):\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the sample never listened:\n{log.read_text()}") from None
            time.sleep(0.05)


# -- the guide's samples are all there and all marked ------------------------------------------


def test_every_code_block_of_the_guide_is_a_marked_sample() -> None:
    text = GUIDE.read_text("utf-8")
    code_blocks = [m for m in FENCE.findall(text) if m in CODE_LANGUAGES]
    samples = extract()
    assert len(code_blocks) == len(samples), "a code block of the guide is not marked as a sample"
    assert set(samples) == {"install", "verify", *SERVERS}
    assert {name: language for name, (language, _) in samples.items()} == {
        "install": "sh",
        "verify": "python",
        "fastapi": "python",
        "starlette": "python",
        "flask": "python",
        "django": "python",
        "node": "js",
        "go": "go",
    }


def test_the_verify_sample_checks_the_golden_vector(tmp_path: Path) -> None:
    source = tmp_path / "check.py"
    source.write_text(extract()["verify"][1], "utf-8")
    done = subprocess.run(
        [sys.executable, str(source)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "customer.created evt_golden john@example.com\n"
    body = b'{"id":"cust_abc123","email":"john@example.com"}'
    vector = "4e8baf8531205febc3edcf52c6502f28c5b09516534c6db237371d175fd9e008"
    assert compute_signature(body, NEW_SECRET, 1_700_000_000) == vector
    assert f"t=1700000000,v1={vector}" in GUIDE.read_text("utf-8")


# -- real deliveries from the platform ---------------------------------------------------------


@pytest.mark.parametrize("name", SERVERS)
async def test_sample_handles_a_real_delivery_and_its_replay_once(
    name: str, fast: Platform, account: Account, tmp_path: Path
) -> None:
    if name in {"node", "go"}:
        tool(name)  # skip (or fail in CI) before anything is set up
    # The secret is only known once the endpoint exists, and the URL once the sample listens.
    async with client_for(fast) as http:
        created = await http.post(
            "/customer/open/v1/webhooks",
            json={"url": "http://127.0.0.1:9/placeholder", "events": ["customer.created"]},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["data"]
    with sample_server(name, tmp_path / name, endpoint["secret"]) as sample:
        await point(fast, account, endpoint["id"], sample.url)
        async with running(fast), client_for(fast) as http:
            made = await http.post(
                CUSTOMERS, json={"email": "zoe@example.com"}, headers=account.headers
            )
            assert made.status_code == 201, made.text

            async def settled(count: int) -> bool:
                found = await deliveries(fast, account, endpoint["id"])
                return len(found) == count and all(d.status != "pending" for d in found)

            await until(lambda: settled(1), within=60)
            (first,) = await deliveries(fast, account, endpoint["id"])
            assert (first.status, first.last_status_code) == ("succeeded", 204), sample.output()
            assert sample.handled(first.event_id) == 1, sample.output()

            replay = await http.post(
                f"/customer/open/v1/events/{first.event_id}/replay", headers=account.headers
            )
            assert replay.status_code == 200, replay.text
            await until(lambda: settled(2), within=60)
            again = next(
                d for d in await deliveries(fast, account, endpoint["id"]) if d.id != first.id
            )
            detail = await http.get(
                f"/customer/open/v1/deliveries/{again.id}", headers=account.headers
            )
        (attempt,) = detail.json()["data"]["attempts"]
        assert attempt["statusCode"] == 200, attempt
        assert json.loads(attempt["responseBody"]) == duplicate_answer(name)
        assert sample.handled(first.event_id) == 1, sample.output()


async def point(platform: Platform, account: Account, endpoint_id: str, url: str) -> None:
    async with client_for(platform) as http:
        moved = await http.put(
            f"/customer/open/v1/webhooks/{endpoint_id}", json={"url": url}, headers=account.headers
        )
    assert moved.status_code == 200, moved.text


# -- signed here: rotation, tampering, staleness and hostile requests -------------------------

CUSTOMER = {"id": "cust_abc123", "email": "john@example.com", "tags": ["vip"], "addresses": []}


class Sender:
    """Signs deliveries as the platform does and posts them to one sample."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30)
        self.counter = 0

    def fresh_id(self) -> str:
        self.counter += 1
        return f"evt_sample_{self.counter:04d}"

    def delivery(
        self,
        *,
        event_id: str | None = None,
        secrets: str | list[str] = NEW_SECRET,
        body: bytes | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, Any]]:
        raw = encode_body(CUSTOMER) if body is None else body
        stamp = int(time.time()) if timestamp is None else timestamp
        headers: dict[str, Any] = webhook_headers(
            event_id or self.fresh_id(), "customer.created", raw, secrets, stamp
        )
        return raw, headers

    def post(self, body: bytes, headers: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.url, content=body, headers=headers)


def hostile_requests(sender: Sender) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Requests a receiver must refuse with a 400, never a 5xx."""
    cases: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for header in (
        "X-BitByBit-Webhook-Id",
        "X-BitByBit-Webhook-Event",
        "X-BitByBit-Webhook-Timestamp",
        "X-BitByBit-Webhook-Signature",
    ):
        body, headers = sender.delivery()
        del headers[header]
        cases[f"missing {header}"] = (body, headers)
    body, headers = sender.delivery()
    cases["no headers at all"] = (body, {"Content-Type": "application/json"})
    stamp = headers["X-BitByBit-Webhook-Timestamp"]
    for label, value in {
        "non-ASCII v1": f"t={stamp},v1=é{'a' * 63}".encode(),
        "non-ASCII v1 of the right byte length": f"t={stamp},v1=é{'a' * 62}".encode(),
        "garbage signature": "nonsense",
        "v1 not hex": f"t={stamp},v1={'z' * 64}",
        "t not a number": f"t=abc,v1={'a' * 64}",
        "t differs from the timestamp header": f"t={int(stamp) + 1},v1={'a' * 64}",
        "empty signature": "",
        "only commas and equals": ",,=,=,t=,v1=",
        "an oversized header": f"t={stamp}," + ",".join([f"v1={'a' * 64}"] * 200),
    }.items():
        body, headers = sender.delivery()
        headers["X-BitByBit-Webhook-Signature"] = value
        cases[label] = (body, headers)
    body, headers = sender.delivery()
    headers["X-BitByBit-Webhook-Timestamp"] = "١٧٠٠".encode()  # Arabic-Indic digits
    cases["non-ASCII timestamp"] = (body, headers)
    body, headers = sender.delivery(body=b"\xff\xfe not JSON \x00")
    headers["Content-Type"] = "text/plain"
    cases["signed, but not JSON"] = (body, headers)
    body, headers = sender.delivery()
    headers["Content-Type"] = "text/plain"
    cases["not JSON, unsigned"] = (b"hello", headers)
    return cases


@pytest.mark.parametrize("name", SERVERS)
def test_sample_verifies_refuses_and_never_answers_5xx(name: str, tmp_path: Path) -> None:
    with sample_server(name, tmp_path / name, NEW_SECRET, OLD_SECRET) as sample:
        sender = Sender(sample.url)

        accepted: dict[str, tuple[bytes, dict[str, Any]]] = {
            "signed with the new secret": sender.delivery(),
            "signed with the old secret": sender.delivery(secrets=OLD_SECRET),
            "two v1 (multiSignature)": sender.delivery(secrets=[NEW_SECRET, OLD_SECRET]),
            "only the other secret's v1 matches": sender.delivery(
                secrets=["whsec_someone_else", OLD_SECRET]
            ),
            "just inside the window": sender.delivery(timestamp=int(time.time()) - 240),
        }
        body, headers = sender.delivery()
        headers["Content-Type"] = "text/plain"  # the signature, not the content type, decides
        accepted["a non-JSON content type"] = (body, headers)
        for label, (body, headers) in accepted.items():
            answer = sender.post(body, headers)
            assert answer.status_code == 204, (label, answer.status_code, answer.text)
            assert sample.handled(headers["X-BitByBit-Webhook-Id"]) == 1, label

        event_id = sender.fresh_id()
        first = sender.post(*sender.delivery(event_id=event_id))
        assert first.status_code == 204, first.text
        retry = sender.post(*sender.delivery(event_id=event_id))  # same id, fresh signature
        assert retry.status_code == 200, retry.text
        assert retry.json() == duplicate_answer(name)
        assert sample.handled(event_id) == 1

        body, headers = sender.delivery()
        refused: dict[str, tuple[bytes, dict[str, Any]]] = {
            "tampered body": (body.replace(b"john", b"mallory"), headers),
            "wrong secret": sender.delivery(secrets="whsec_someone_else"),
            "stale timestamp": sender.delivery(timestamp=int(time.time()) - 600),
            "future timestamp": sender.delivery(timestamp=int(time.time()) + 600),
            **hostile_requests(sender),
        }
        for label, (body, headers) in refused.items():
            answer = sender.post(body, headers)
            assert answer.status_code == 400, (label, answer.status_code, answer.text)
            event_id = headers.get("X-BitByBit-Webhook-Id")
            if isinstance(event_id, str):
                assert sample.handled(event_id) == 0, label
        assert "Traceback" not in sample.output()
