"""Django adapter through Django's own test clients, with CSRF checks on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Django ships no type hints (django-stubs is not a dependency).
import django  # type: ignore[import-untyped]
import pytest
from django.conf import settings  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped]
from django.test import AsyncClient, Client  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from bitbybit.webhooks import Event, MemoryStore, MessageReceived
from bitbybit.webhooks.django import verify_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()

store = MemoryStore()
seen: list[Event] = []
answers: list[int] = []


def _answer(event: Event) -> HttpResponse:
    seen.append(event)
    status = answers.pop(0) if answers else 204
    if status == 500:
        raise RuntimeError("handler crashed")
    return HttpResponse(status=status)


@verify_webhook(SECRET)
def plain(request: HttpRequest, event: Event, tenant: str) -> HttpResponse:
    assert tenant == "acme"
    return JsonResponse({"type": event.type, "tenant": tenant})


@verify_webhook(lambda: SECRET, idempotency=store)
def deduplicated(request: HttpRequest, event: Event) -> HttpResponse:
    return _answer(event)


@verify_webhook(SECRET, idempotency=store)
async def async_view(request: HttpRequest, event: Event) -> HttpResponse:
    return _answer(event)


urlpatterns = [
    path("plain/<str:tenant>", plain),
    path("dedup", deduplicated),
    path("async", async_view),
]


@pytest.fixture(autouse=True)
def _reset() -> None:
    store._expiry.clear()
    seen.clear()
    answers.clear()


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True, raise_request_exception=False)


def _post(client: Any, url: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(url, data=body, content_type="application/json", headers=headers)


def test_verified_post_reaches_the_view_despite_csrf(
    client: Client, make_delivery: MakeDelivery
) -> None:
    body, headers = make_delivery(
        {"messageId": "msg_1", "from": "+6281234567890", "body": "hi", "source": "SANDBOX"},
        event_type="message.received",
    )
    response = _post(client, "/plain/acme", body, headers)
    assert response.status_code == 200
    assert response.json() == {"type": "message.received", "tenant": "acme"}


def test_refusal_is_400_and_other_methods_405(client: Client, make_delivery: MakeDelivery) -> None:
    body, headers = make_delivery(secret="whsec_other")
    response = _post(client, "/plain/acme", body, headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert client.get("/plain/acme").status_code == 405


@pytest.mark.parametrize("first_status", [500, 502, 404])
def test_failures_forget_and_duplicates_are_skipped(
    client: Client, make_delivery: MakeDelivery, first_status: int
) -> None:
    answers.append(first_status)
    body, headers = make_delivery()
    assert _post(client, "/dedup", body, headers).status_code == first_status
    assert _post(client, "/dedup", body, headers).status_code == 204
    duplicate = _post(client, "/dedup", body, headers)
    assert (duplicate.status_code, duplicate.json()) == (200, {"received": True, "duplicate": True})
    assert len(seen) == 2


async def test_async_view(make_delivery: MakeDelivery) -> None:
    client = AsyncClient(enforce_csrf_checks=True, raise_request_exception=False)
    answers.append(500)
    body, headers = make_delivery(
        {"messageId": "msg_1", "from": "+62", "body": "hi"}, event_type="message.received"
    )
    assert (await _post(client, "/async", body, headers)).status_code == 500
    assert (await _post(client, "/async", body, headers)).status_code == 204
    assert (await _post(client, "/async", body, headers)).status_code == 200
    assert [type(event.data) for event in seen] == [MessageReceived, MessageReceived]
    body, headers = make_delivery(secret="whsec_other")
    assert (await _post(client, "/async", body, headers)).status_code == 400
