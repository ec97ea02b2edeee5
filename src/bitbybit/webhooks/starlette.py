"""Starlette adapter: verify a request, or wrap a whole endpoint.

::

    from bitbybit.webhooks.starlette import webhook_endpoint

    @webhook_endpoint(secret=os.environ["BITBYBIT_WEBHOOK_SECRET"], idempotency=MemoryStore())
    async def receive(request: Request, event: Event) -> Response:
        ...
        return Response(status_code=204)

    app = Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])

Refusals answer 400 ``{"error": {"code", "message"}}``; duplicates answer 200 without calling
the handler; the id is forgotten when the handler raises or answers non-2xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps

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

__all__ = ["verify_request", "webhook_endpoint"]

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
                return await handler(request, event)
            if await run_in_threadpool(store.seen_or_mark, event.id):
                return JSONResponse(DUPLICATE_BODY)
            try:
                response = await handler(request, event)
            except BaseException:
                await run_in_threadpool(store.forget, event.id)
                raise
            if not is_success(response.status_code):
                await run_in_threadpool(store.forget, event.id)
            return response

        return endpoint

    return decorate
