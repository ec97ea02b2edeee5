"""Flask adapter through Flask's own test client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient

from bitbybit.webhooks import ConfigurationError, Event, MemoryStore, Order
from bitbybit.webhooks.flask import verify_webhook

MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]


def _client(store: MemoryStore | None, answers: list[int]) -> tuple[FlaskClient, list[Event]]:
    app = Flask(__name__)
    app.config["WEBHOOK_SECRETS"] = ["whsec_new", "whsec_old"]
    seen: list[Event] = []

    @app.post("/hook/<tenant>")
    @verify_webhook(lambda: current_app.config["WEBHOOK_SECRETS"], idempotency=store)
    def receive(event: Event, tenant: str) -> tuple[dict[str, str], int]:
        seen.append(event)
        status = answers.pop(0) if answers else 200
        if status == 500:
            raise RuntimeError("handler crashed")
        return {"tenant": tenant, "id": event.id}, status

    return app.test_client(), seen


def test_view_gets_the_event_then_url_variables(make_delivery: MakeDelivery) -> None:
    client, seen = _client(None, [])
    body, headers = make_delivery(
        {"id": "order_1", "total": 150000, "currency": None},
        event_type="order.created",
        secret="whsec_old",
    )
    response = client.post("/hook/acme", data=body, headers=headers)
    assert response.status_code == 200
    assert response.json == {"tenant": "acme", "id": "evt_0001"}
    [event] = seen
    assert isinstance(event.data, Order)
    assert event.data.total == 150000


def test_refusal_is_400_with_error_envelope(make_delivery: MakeDelivery) -> None:
    client, seen = _client(None, [])
    body, headers = make_delivery(secret="whsec_new")
    headers["X-BitByBit-Webhook-Timestamp"] = "１７"
    response = client.post("/hook/acme", data=body, headers=headers)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "malformed_header"
    assert seen == []


@pytest.mark.parametrize("first_status", [500, 503, 400])
def test_failures_forget_and_duplicates_are_skipped(
    make_delivery: MakeDelivery, first_status: int
) -> None:
    client, seen = _client(MemoryStore(), [first_status])
    body, headers = make_delivery(secret="whsec_new")
    assert client.post("/hook/acme", data=body, headers=headers).status_code == first_status
    assert client.post("/hook/acme", data=body, headers=headers).status_code == 200
    duplicate = client.post("/hook/acme", data=body, headers=headers)
    assert duplicate.status_code == 200
    assert duplicate.json == {"received": True, "duplicate": True}
    assert len(seen) == 2


def test_a_bad_secret_setting_is_a_server_error_not_a_400(make_delivery: MakeDelivery) -> None:
    app = Flask(__name__)

    @app.post("/hook")
    @verify_webhook(lambda: [])
    def receive(event: Event) -> str:
        raise AssertionError("not reached")

    body, headers = make_delivery()
    assert app.test_client().post("/hook", data=body, headers=headers).status_code == 500
    with pytest.raises(ConfigurationError):
        verify_webhook("")
