"""Starlette adapter: verify a request, or wrap a whole endpoint.

::

    from bitbybit.webhooks.starlette import webhook_endpoint

    @webhook_endpoint(secret=os.environ["BITBYBIT_WEBHOOK_SECRET"], idempotency=MemoryStore())
    async def receive(request: Request, event: Event) -> Response:
        ...
        return Response(status_code=204)

    app = Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])

The handler must return a ``Response``. Refusals answer 400 ``{"error": {"code", "message"}}``;
duplicates answer 200 ``{"received": true, "duplicate": true}`` without calling the handler. The
id is forgotten whenever the request does not end in a 2xx: the handler raises, returns anything
but a ``Response`` (``None`` included: a ``TypeError``, so a 500), or answers non-2xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bitbybit.webhooks._adapter import (
    DUPLICATE_BODY,
    Receiver,
    SecretSource,
    error_body,
    is_success,
)
from bitbybit.webhooks.errors import ConfigurationError, WebhookVerificationError
from bitbybit.webhooks.idempotency import IdempotencyStore
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event, Verifier

__all__ = ["forget", "verify_request", "webhook_endpoint"]

Handler = Callable[[Request, Event], Awaitable[Response]]


async def verify_request(
    request: Request,
    secret: SecretSource,
    tolerance: float = DEFAULT_TOLERANCE,
    now: datetime | float | None = None,
) -> Event:
    """Read the raw body of ``request`` and verify it; raises ``WebhookVerificationError``."""
    body = await request.body()
    resolved = secret() if callable(secret) else secret
    return Verifier(resolved, tolerance).verify(body, request.headers, now)


async def forget(store: IdempotencyStore, event_id: str) -> None:
    """Forget ``event_id`` even while the request is being cancelled (the client went away)."""
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(store.forget, event_id)


def _checked(response: object) -> Response:
    """The handler's answer, or a ``TypeError`` that says what a handler must return."""
    if not isinstance(response, Response):
        raise TypeError(
            f"a webhook handler must return a starlette Response, got {type(response).__name__}"
            " (return Response(status_code=204) once the event is handled)"
        )
    return response


def webhook_endpoint(
    secret: SecretSource,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    idempotency: IdempotencyStore | None = None,
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Turn ``async def handler(request, event) -> Response`` into a verified Starlette endpoint."""
    receiver = Receiver(secret, tolerance, idempotency)

    def decorate(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                event = receiver.verify(await request.body(), request.headers)
            except ConfigurationError:
                raise
            except WebhookVerificationError as exc:
                return JSONResponse(error_body(exc), status_code=400)
            store = receiver.idempotency
            if store is None:
                return _checked(await handler(request, event))
            if await run_in_threadpool(store.seen_or_mark, event.id):
                return JSONResponse(DUPLICATE_BODY)
            handled = False
            try:
                response = _checked(await handler(request, event))
                handled = is_success(response.status_code)
                return response
            finally:
                if not handled:  # raised, returned nothing, or answered non-2xx: let the retry run
                    await forget(store, event.id)

        return endpoint

    return decorate
