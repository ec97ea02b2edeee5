"""Django adapter: ``@verify_webhook(secret)`` for function views, sync or async.

::

    from bitbybit.webhooks.django import verify_webhook

    @verify_webhook(lambda: settings.BITBYBIT_WEBHOOK_SECRETS, idempotency=MemoryStore())
    def receive(request: HttpRequest, event: Event) -> HttpResponse:
        ...
        return HttpResponse(status=204)

The view is CSRF-exempt (the sender has no CSRF token; the signature is the proof) and answers
405 to anything but POST. The view must return an ``HttpResponse``. Refusals answer 400
``{"error": {"code", "message"}}``; duplicates answer 200 ``{"received": true, "duplicate": true}``
without calling the view. The id is forgotten whenever the request does not end in a 2xx: the
view raises, returns anything but a response (``None`` included: a ``TypeError``, so a 500), or
answers non-2xx.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any

# Django ships no type hints and django-stubs is not a dependency: its objects are Any here.
from django.http import (  # type: ignore[import-untyped]
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
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


def _checked(response: Any) -> Any:
    """The view's answer, or a ``TypeError`` that says what a view must return."""
    if not isinstance(response, HttpResponseBase):
        raise TypeError(
            f"a webhook view must return an HttpResponse, got {type(response).__name__}"
            " (return HttpResponse(status=204) once the event is handled)"
        )
    return response


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
                    return _checked(await view(request, event, *args, **kwargs))
                if await asyncio.to_thread(store.seen_or_mark, event.id):
                    return JsonResponse(DUPLICATE_BODY)
                handled = False
                try:
                    response = _checked(await view(request, event, *args, **kwargs))
                    handled = is_success(response.status_code)
                    return response
                finally:
                    if not handled:  # raised, returned nothing, or answered non-2xx
                        await asyncio.shield(asyncio.to_thread(store.forget, event.id))

            return csrf_exempt(async_wrapper)  # type: ignore[no-any-return]  # untyped django

        @wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            event = check(request)
            if not isinstance(event, Event):
                return event
            store = receiver.idempotency
            if store is None:
                return _checked(view(request, event, *args, **kwargs))
            if store.seen_or_mark(event.id):
                return JsonResponse(DUPLICATE_BODY)
            handled = False
            try:
                response = _checked(view(request, event, *args, **kwargs))
                handled = is_success(response.status_code)
                return response
            finally:
                if not handled:  # raised, returned nothing, or answered non-2xx: let the retry run
                    store.forget(event.id)

        return csrf_exempt(wrapper)  # type: ignore[no-any-return]  # untyped django

    return decorate
