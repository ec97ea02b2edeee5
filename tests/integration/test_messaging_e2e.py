"""Messaging from outside, as a newcomer would try it (issue 11): a fresh ``bitbybit serve`` on the
sandbox, a webhook endpoint on a loopback receiver, an inbound message injected with the CLI and
answered through the API. The receiver verifies every delivery as an integrator's would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from bitbybit.webhooks import verify
from tests.integration.servers import cli, serve

API = "/whatsapp/open/v1"
CUSTOMER = "081234567001"
CUSTOMER_E164 = "+6281234567001"


class Hook:
    """A receiver in a thread of its own: records each delivery's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, secret: str) -> list[tuple[str, dict[str, Any]]]:
        """Every delivery so far, verified: (type, payload) in arrival order."""
        with self.lock:
            got = list(self.received)
        verified = [verify(body, headers, secret) for headers, body in got]
        return [
            (event.type, orjson.loads(body)) for event, (_, body) in zip(verified, got, strict=True)
        ]

    def wait(
        self, secret: str, done: Any, within: float = 60.0
    ) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + within
        while True:
            events = self.events(secret)
            if done(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"not arrived in time; got {events}")
            time.sleep(0.05)


@contextmanager
def hook() -> Iterator[Hook]:
    receiver = Hook()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def of_type(events: list[tuple[str, dict[str, Any]]], event_type: str) -> list[dict[str, Any]]:
    return [payload for kind, payload in events if kind == event_type]


def test_inject_answer_and_see_every_event_in_the_spec_shapes(tmp_path: Path) -> None:
    env = {
        "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
        "BITBYBIT_SECRET_KEY": "messaging-e2e-test-key",
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
        "BITBYBIT_SANDBOX_STATUS_STEP": "0.2",
    }
    with (
        hook() as receiver,
        serve(env["BITBYBIT_DATABASE_URL"], tmp_path / "serve.log", **env) as server,
    ):
        company = cli("companies", "create", "Warung Sejahtera", env=env).strip()
        key = cli("keys", "create", "--company", company, env=env).strip()
        _, secret = cli(
            "endpoints", "create", "--company", company, "--url", receiver.url, env=env
        ).split()
        headers = {"x-api-key": key}
        http = httpx.Client(base_url=server.base_url, headers=headers, timeout=30)

        # Before the customer writes, free text is refused: WhatsApp's 24-hour rule.
        early = http.post(f"{API}/messages/send", json={"to": CUSTOMER, "message": "Hello?"})
        assert early.status_code == 400
        assert early.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"

        inbound_id = cli(
            "messages",
            "inject",
            "--company",
            company,
            "--from",
            CUSTOMER,
            "--body",
            "Is my order on its way?",
            env=env,
        ).strip()
        answer = http.post(
            f"{API}/messages/send", json={"to": CUSTOMER, "message": "Yes, it ships today"}
        )
        assert answer.status_code == 200, answer.text
        sent_id = answer.json()["data"]["messageId2"]

        events = receiver.wait(secret, lambda got: len(of_type(got, "message.status.updated")) >= 3)
        # customer.created was written before message.received (the events list is newest
        # first); deliveries themselves may arrive in either order.
        assert sorted(kind for kind, _ in events)[:2] == ["customer.created", "message.received"]
        written = http.get("/customer/open/v1/events").json()["data"]
        assert [e["type"] for e in written][-2:] == ["message.received", "customer.created"]
        (received,) = of_type(events, "message.received")
        assert list(received)[:5] == ["messageId", "from", "body", "source", "receivedAt"]
        assert received["messageId"] == inbound_id
        assert received["from"] == CUSTOMER_E164
        assert received["body"] == "Is my order on its way?"
        assert received["source"] == "SANDBOX"
        assert received["receivedAt"].endswith("Z")
        # (no order is promised across events: receivers compare the timestamps)
        statuses = sorted(of_type(events, "message.status.updated"), key=lambda s: s["timestamp"])
        assert [s["status"] for s in statuses] == ["sent", "delivered", "read"], statuses
        for status in statuses:
            assert list(status)[:4] == ["messageId", "status", "to", "templateName"]
            assert status["messageId"] == sent_id
            assert status["to"] == CUSTOMER_E164
            assert status["templateName"] is None
            assert "error" not in status

        # The conversation, both ways, newest first; the send's history.
        customer_id = received["customerId"]
        conversation = http.get(f"{API}/messages", params={"customerId": customer_id}).json()
        assert [m["id"] for m in conversation["data"]] == [sent_id, inbound_id]
        assert conversation["data"][0]["status"] == "read"

        # An open ticket holds automated sends back until it is closed or ignored.
        ticket = http.post(f"{API}/tickets", json={"customerId": customer_id}).json()["data"]
        held = http.post(f"{API}/messages/send", json={"to": CUSTOMER, "message": "Bot here"})
        assert held.status_code == 409
        assert held.json()["error"]["code"] == "ACTIVE_TICKET"
        assert http.post(f"{API}/tickets/{ticket['id']}/close").status_code == 200
        after = http.post(f"{API}/messages/send", json={"to": CUSTOMER, "message": "Bot here"})
        assert after.status_code == 200

        # `trigger` makes the real change for both message events.
        received_event, _ = cli(
            "trigger", "message.received", "--company", company, env=env
        ).split()
        status_event, _ = cli(
            "trigger", "message.status.updated", "--company", company, env=env
        ).split()
        receiver.wait(
            secret,
            lambda got: (
                {received_event, status_event}
                <= {headers.get("X-BitByBit-Webhook-Id") for headers, _ in receiver.received}
            ),
        )
