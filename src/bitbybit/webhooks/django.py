"""Django adapter: ``@verify_webhook(secret)`` for function views, sync or async.

::

    from bitbybit.webhooks.django import verify_webhook

    @verify_webhook(lambda: settings.BITBYBIT_WEBHOOK_SECRETS, idempotency=store)
    def receive(request: HttpRequest, event: Event) -> HttpResponse:
        ...
        return HttpResponse(status=204)

The view is CSRF-exempt (the sender has no CSRF token; the signature is the proof) and answers
405 to anything but POST. Refusals answer 400 ``{"error": {"code", "message"}}``; duplicates
answer 200 without calling the view; the id is forgotten when the view raises or answers non-2xx.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any

# Django ships no type hints and django-stubs is not a dependency: its objects are Any here.
from django.http import HttpResponseNotAllowed, JsonResponse  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from bitbybit.webhooks._adapter import (
    DUPLICATE_BODY,
    Receiver,
    SecretSource,
    error_body,
    is_success,
)
from bitbybit.webhooks.errors import ConfigurationError, WebhookVerificationError
from bitbybit.webhooks.idempotency import IdempotencyStore
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event

__all__ = ["verify_webhook"]

View = Callable[..., Any]


def verify_webhook(
    secret: SecretSource,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    idempotency: IdempotencyStore | None = None,
) -> Callable[[View], View]:
    """Decorate ``view(request, event, *args, **kwargs)`` so it only sees verified deliveries."""
    receiver = Receiver(secret, tolerance, idempotency)

    def check(request: Any) -> Event | Any:
        """The event, or the response that ends the request."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            return receiver.verify(request.body, request.headers)
        except ConfigurationError:
            raise
        except WebhookVerificationError as exc:
            return JsonResponse(error_body(exc), status=400)

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                event = check(request)
                if not isinstance(event, Event):
                    return event
                store = receiver.idempotency
                if store is None:
                    return await view(request, event, *args, **kwargs)
                if await asyncio.to_thread(store.seen_or_mark, event.id):
                    return JsonResponse(DUPLICATE_BODY)
                try:
                    response = await view(request, event, *args, **kwargs)
                except BaseException:
                    await asyncio.to_thread(store.forget, event.id)
                    raise
                if not is_success(response.status_code):
                    await asyncio.to_thread(store.forget, event.id)
                return response

            return csrf_exempt(async_wrapper)  # type: ignore[no-any-return]  # untyped django

        @wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            event = check(request)
            if not isinstance(event, Event):
                return event
            store = receiver.idempotency
            if store is None:
                return view(request, event, *args, **kwargs)
            if store.seen_or_mark(event.id):
                return JsonResponse(DUPLICATE_BODY)
            try:
                response = view(request, event, *args, **kwargs)
            except BaseException:
                store.forget(event.id)
                raise
            if not is_success(response.status_code):
                store.forget(event.id)
            return response

        return csrf_exempt(wrapper)  # type: ignore[no-any-return]  # untyped django

    return decorate
