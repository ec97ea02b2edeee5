"""Starlette adapter through Starlette's own TestClient."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from bitbybit.webhooks import BadSignature, Event, MemoryStore
from bitbybit.webhooks.starlette import verify_request, webhook_endpoint

MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]


def _client(
    secret: str, store: MemoryStore | None, answers: list[int]
) -> tuple[TestClient, list[Event]]:
    seen: list[Event] = []

    @webhook_endpoint(secret, idempotency=store)
    async def receive(request: Request, event: Event) -> Response:
        seen.append(event)
        status = answers.pop(0) if answers else 204
        if status == 500:
            raise RuntimeError("handler crashed")
        return Response(status_code=status)

    async def manual(request: Request) -> Response:
        try:
            event = await verify_request(request, lambda: [secret])
        except BadSignature as exc:
            return JSONResponse({"refused": exc.code}, status_code=401)
        return JSONResponse({"type": event.type})

    app = Starlette(
        routes=[
            Route("/hook", receive, methods=["POST"]),
            Route("/manual", manual, methods=["POST"]),
        ]
    )
    return TestClient(app, raise_server_exceptions=False), seen


def test_endpoint_sees_verified_events(make_delivery: MakeDelivery, secret: str) -> None:
    client, seen = _client(secret, None, [])
    body, headers = make_delivery()
    assert client.post("/hook", content=body, headers=headers).status_code == 204
    assert [event.id for event in seen] == ["evt_0001"]
    assert client.post("/manual", content=body, headers=headers).json() == {
        "type": "customer.created"
    }


def test_refusal_is_400_with_error_envelope(make_delivery: MakeDelivery, secret: str) -> None:
    client, seen = _client(secret, None, [])
    body, headers = make_delivery(secret="whsec_other")
    response = client.post("/hook", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert seen == []
    assert client.post("/manual", content=body, headers=headers).status_code == 401


@pytest.mark.parametrize("first_status", [500, 503, 409, 302])
def test_non_2xx_or_crash_forgets_the_id(
    make_delivery: MakeDelivery, secret: str, first_status: int
) -> None:
    client, seen = _client(secret, MemoryStore(), [first_status])
    body, headers = make_delivery()
    first = client.post("/hook", content=body, headers=headers, follow_redirects=False)
    assert first.status_code == first_status
    assert client.post("/hook", content=body, headers=headers).status_code == 204
    duplicate = client.post("/hook", content=body, headers=headers)
    assert duplicate.status_code == 200
    assert duplicate.json() == {"received": True, "duplicate": True}
    assert len(seen) == 2
