"""Every adapter forgets a webhook id whenever the request did not end in a 2xx.

Whatever failed — the handler raised, returned nothing, returned something that is not a response,
answered non-2xx, or the framework failed after it — the id must not stay marked: otherwise the
sender's retry is answered "duplicate" and the event is lost to the receiver. Each case runs on
each framework: the first delivery fails, the retry (same id, fresh signature) reaches the handler
and succeeds, and only then is a third copy answered as a duplicate.

No ``from __future__ import annotations``: FastAPI must evaluate the endpoints' annotations.
"""

import asyncio
from collections.abc import Callable, Iterator
from typing import Annotated, Any

# Django ships no type hints (django-stubs is not a dependency).
import django  # type: ignore[import-untyped]
import pytest
from django.conf import settings  # type: ignore[import-untyped]
from django.http import HttpResponse  # type: ignore[import-untyped]
from django.test import AsyncClient, Client, override_settings  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse as FastAPIJSONResponse
from fastapi.testclient import TestClient as FastAPIClient
from flask import Flask
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from bitbybit.webhooks import Event, MemoryStore
from bitbybit.webhooks.django import verify_webhook as django_webhook
from bitbybit.webhooks.fastapi import WebhookRoute, WebhookVerifier
from bitbybit.webhooks.flask import verify_webhook as flask_webhook
from bitbybit.webhooks.starlette import webhook_endpoint

MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]
Post = Callable[[bytes, dict[str, str]], tuple[int, Any]]

FAILURES = ["raise", "none", "not-a-response", "status-500", "status-409", "status-302"]
DUPLICATE = {"received": True, "duplicate": True}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        DEFAULT_CHARSET="utf-8",
    )
    django.setup()
urlpatterns: list[Any] = []


class Script:
    """What the handler does on each call, in order; then it succeeds."""

    def __init__(self, *steps: str) -> None:
        self.steps = list(steps)
        self.calls = 0

    def next(self) -> str:
        self.calls += 1
        return self.steps.pop(0) if self.steps else "ok"


def _status(step: str) -> int:
    return int(step.removeprefix("status-")) if step.startswith("status-") else 204


def starlette_app(secret: str, store: MemoryStore, script: Script) -> Post:
    @webhook_endpoint(secret, idempotency=store)
    async def receive(request: Request, event: Event) -> Response:
        step = script.next()
        if step == "raise":
            raise RuntimeError("handler crashed")
        if step == "none":
            return None  # type: ignore[return-value]  # the mistake under test
        if step == "not-a-response":
            return {"ok": True}  # type: ignore[return-value]  # the mistake under test
        return Response(status_code=_status(step))

    client = TestClient(
        Starlette(routes=[Route("/hook", receive, methods=["POST"])]),
        raise_server_exceptions=False,
    )

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        answer = client.post("/hook", content=body, headers=headers, follow_redirects=False)
        return answer.status_code, answer.json() if answer.status_code == 200 else None

    return post


class Shape(BaseModel):
    received: str


def fastapi_app(secret: str, store: MemoryStore, script: Script) -> Post:
    verified = WebhookVerifier(secret, idempotency=store)
    router = APIRouter(route_class=WebhookRoute)

    @router.post("/hook", status_code=204, response_model=None)
    def receive(event: Annotated[Event, Depends(verified)]) -> Any:
        step = script.next()
        if step == "raise":
            raise RuntimeError("handler crashed")
        if step == "none":
            return None  # a 204 route: returning nothing is a success in FastAPI
        if step == "not-a-response":
            raise HTTPException(status_code=503, detail="not ready")
        if step.startswith("status-"):
            return FastAPIJSONResponse({"error": step}, status_code=_status(step))
        return None

    @router.post("/shaped", response_model=Shape)
    def shaped(event: Annotated[Event, Depends(verified)]) -> Any:
        step = script.next()
        # FastAPI itself fails after the endpoint: the answer does not match response_model
        return {"unexpected": True} if step != "ok" else {"received": event.id}

    app = FastAPI()
    app.include_router(router)
    client = FastAPIClient(app, raise_server_exceptions=False)
    route = {"value": "/hook"}

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        answer = client.post(route["value"], content=body, headers=headers, follow_redirects=False)
        return answer.status_code, answer.json() if answer.status_code == 200 else None

    post.route = route  # type: ignore[attr-defined]  # lets one test switch to /shaped
    return post


def flask_app(secret: str, store: MemoryStore, script: Script) -> Post:
    app = Flask(__name__)

    @app.post("/hook")
    @flask_webhook(secret, idempotency=store)
    def receive(event: Event) -> Any:
        step = script.next()
        if step == "raise":
            raise RuntimeError("handler crashed")
        if step == "none":
            return None
        if step == "not-a-response":
            return object()
        return "", _status(step)

    client = app.test_client()

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        answer = client.post("/hook", data=body, headers=headers)
        return answer.status_code, answer.get_json() if answer.status_code == 200 else None

    return post


def _django_answer(step: str) -> Any:
    if step == "raise":
        raise RuntimeError("handler crashed")
    if step == "none":
        return None
    if step == "not-a-response":
        return {"ok": True}
    return HttpResponse(status=_status(step))


def django_app(secret: str, store: MemoryStore, script: Script, *, asynchronous: bool) -> Post:
    if asynchronous:

        @django_webhook(secret, idempotency=store)
        async def receive(request: Any, event: Event) -> Any:
            return _django_answer(script.next())

    else:

        @django_webhook(secret, idempotency=store)
        def receive(request: Any, event: Event) -> Any:
            return _django_answer(script.next())

    urlpatterns[:] = [path("hook", receive)]

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        if asynchronous:
            client = AsyncClient(raise_request_exception=False)
            answer = asyncio.run(
                client.post("/hook", data=body, content_type="application/json", headers=headers)
            )
        else:
            answer = Client(raise_request_exception=False).post(
                "/hook", data=body, content_type="application/json", headers=headers
            )
        return answer.status_code, answer.json() if answer.status_code == 200 else None

    return post


FRAMEWORKS: dict[str, Callable[[str, MemoryStore, Script], Post]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
    "django": lambda s, m, c: django_app(s, m, c, asynchronous=False),
    "django-async": lambda s, m, c: django_app(s, m, c, asynchronous=True),
}


@pytest.fixture(autouse=True)
def _django_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__):
        yield
    urlpatterns.clear()


def _deliver_three_times(
    post: Post, make_delivery: MakeDelivery
) -> tuple[int, tuple[int, Any], tuple[int, Any]]:
    first, _ = post(*make_delivery())
    return first, post(*make_delivery()), post(*make_delivery())


# In FastAPI a 204 route that returns None has succeeded: that case is a success there.
CASES = [
    (framework, failure)
    for framework in sorted(FRAMEWORKS)
    for failure in FAILURES
    if (framework, failure) != ("fastapi", "none")
]


@pytest.mark.parametrize(("framework", "failure"), CASES)
def test_a_request_that_did_not_end_in_2xx_forgets_the_id(
    framework: str, failure: str, make_delivery: MakeDelivery, secret: str
) -> None:
    store = MemoryStore()
    script = Script(failure)
    post = FRAMEWORKS[framework](secret, store, script)
    first, retry, third = _deliver_three_times(post, make_delivery)
    assert not 200 <= first < 300, (framework, failure, first)
    assert retry[0] in {200, 204}, (framework, failure, retry)
    assert retry[1] != DUPLICATE
    assert script.calls == 2, "the retry must reach the handler"
    assert third == (200, _duplicate_answer(framework))
    assert script.calls == 2


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_a_2xx_keeps_the_id(framework: str, make_delivery: MakeDelivery, secret: str) -> None:
    store = MemoryStore()
    script = Script()
    post = FRAMEWORKS[framework](secret, store, script)
    first, retry, _ = _deliver_three_times(post, make_delivery)
    assert 200 <= first < 300
    assert retry == (200, _duplicate_answer(framework))
    assert script.calls == 1
    assert store.seen_or_mark("evt_0001") is True


def test_fastapi_forgets_when_the_framework_fails_after_the_endpoint(
    make_delivery: MakeDelivery, secret: str
) -> None:
    store = MemoryStore()
    script = Script("bad-shape")
    post = fastapi_app(secret, store, script)
    post.route["value"] = "/shaped"  # type: ignore[attr-defined]
    first, retry, third = _deliver_three_times(post, make_delivery)
    assert first == 500
    assert retry == (200, {"received": "evt_0001"})
    assert third == (200, _duplicate_answer("fastapi"))


def _duplicate_answer(framework: str) -> dict[str, Any]:
    return {"detail": DUPLICATE} if framework == "fastapi" else DUPLICATE
