"""FastAPI adapter through FastAPI's own TestClient.

No ``from __future__ import annotations`` here: FastAPI must evaluate the endpoints' annotations,
which refer to a verifier local to ``_app``.
"""

from collections.abc import Callable
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient

from bitbybit.webhooks import ConfigurationError, Customer, Event, MemoryStore
from bitbybit.webhooks.fastapi import WebhookVerifier

MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail_next: Exception | None = None


def _app(verifier: WebhookVerifier, recorder: Recorder) -> TestClient:
    app = FastAPI()

    @app.post("/webhooks", status_code=204)
    def receive(event: Annotated[Event, Depends(verifier)]) -> None:
        recorder.events.append(event)
        if recorder.fail_next is not None:
            error, recorder.fail_next = recorder.fail_next, None
            raise error

    @app.post("/async-webhooks")
    async def receive_async(event: Annotated[Event, Depends(verifier)]) -> dict[str, str]:
        recorder.events.append(event)
        return {"received": event.id}

    return TestClient(app, raise_server_exceptions=False)


def test_verified_event_reaches_the_endpoint(make_delivery: MakeDelivery, secret: str) -> None:
    recorder = Recorder()
    client = _app(WebhookVerifier(secret), recorder)
    body, headers = make_delivery()
    response = client.post("/webhooks", content=body, headers=headers)
    assert response.status_code == 204
    [event] = recorder.events
    assert isinstance(event.data, Customer)
    assert event.raw_body == body
    response = client.post("/async-webhooks", content=body, headers=headers)
    assert response.json() == {"received": "evt_0001"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("secret", "bad_signature"),
        ("drop-signature", "missing_header"),
        ("stale", "timestamp_out_of_tolerance"),
        ("body", "bad_signature"),
    ],
)
def test_refusals_are_400_with_the_reason(
    make_delivery: MakeDelivery, secret: str, change: str, code: str
) -> None:
    recorder = Recorder()
    client = _app(WebhookVerifier(secret), recorder)
    body, headers = make_delivery(
        secret="whsec_other" if change == "secret" else secret,
        timestamp=1_700_000_000 if change == "stale" else None,
    )
    if change == "drop-signature":
        del headers["X-BitByBit-Webhook-Signature"]
    if change == "body":
        body = body.replace(b"John", b"Jane")
    response = client.post("/webhooks", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == code
    assert response.json()["detail"]["message"]
    assert recorder.events == []


def test_duplicates_are_answered_200_without_the_endpoint(
    make_delivery: MakeDelivery, secret: str
) -> None:
    recorder = Recorder()
    client = _app(WebhookVerifier(secret, idempotency=MemoryStore()), recorder)
    body, headers = make_delivery()
    assert client.post("/webhooks", content=body, headers=headers).status_code == 204
    body, headers = make_delivery()  # the retry: same id, fresh signature
    again = client.post("/webhooks", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == {"detail": {"received": True, "duplicate": True}}
    assert len(recorder.events) == 1


@pytest.mark.parametrize("failure", [RuntimeError("database down"), HTTPException(status_code=503)])
def test_a_failed_handler_forgets_the_id_so_the_retry_runs(
    make_delivery: MakeDelivery, secret: str, failure: Exception
) -> None:
    recorder = Recorder()
    store = MemoryStore()
    client = _app(WebhookVerifier(secret, idempotency=store), recorder)
    recorder.fail_next = failure
    body, headers = make_delivery()
    first = client.post("/webhooks", content=body, headers=headers)
    assert first.status_code in {500, 503}
    retry = client.post("/webhooks", content=body, headers=headers)
    assert retry.status_code == 204
    assert len(recorder.events) == 2
    assert store.seen_or_mark("evt_0001") is True


def test_rotation_and_secret_callable(make_delivery: MakeDelivery) -> None:
    current = ["whsec_new", "whsec_old"]
    recorder = Recorder()
    client = _app(WebhookVerifier(lambda: current), recorder)
    for sent in ("whsec_old", "whsec_new", ["whsec_new", "whsec_old"]):
        body, headers = make_delivery(secret=sent)
        assert client.post("/webhooks", content=body, headers=headers).status_code == 204
    current[:] = ["whsec_new"]  # the grace period is over
    body, headers = make_delivery(secret="whsec_old")
    assert client.post("/webhooks", content=body, headers=headers).status_code == 400


def test_bad_configuration_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError):
        WebhookVerifier([])
    with pytest.raises(ConfigurationError):
        WebhookVerifier("whsec_x", tolerance=-1)
    with pytest.raises(ConfigurationError):
        WebhookVerifier("whsec_x", idempotency=object())  # type: ignore[arg-type]
