"""FastAPI adapter: a dependency that yields the verified :class:`Event`.

::

    from typing import Annotated
    from fastapi import APIRouter, Depends, FastAPI
    from bitbybit.webhooks import Event, SQLiteStore
    from bitbybit.webhooks.fastapi import WebhookRoute, WebhookVerifier

    verified = WebhookVerifier(["whsec_new…", "whsec_old…"], idempotency=SQLiteStore("ids.db"))
    router = APIRouter(route_class=WebhookRoute)

    @router.post("/webhooks", status_code=204)
    def receive(event: Annotated[Event, Depends(verified)]) -> None:
        handle(event)  # raise to have the event retried

    app = FastAPI()
    app.include_router(router)

- A refused delivery never reaches the endpoint: the answer is 400
  ``{"detail": {"code": "bad_signature", "message": "..."}}``.
- With ``idempotency``, a duplicate id never reaches the endpoint either: the answer is 200
  ``{"detail": {"received": true, "duplicate": true}}`` (the dependency raises an
  ``HTTPException`` with status 200, and FastAPI puts every ``HTTPException`` under ``detail``).
- The id is forgotten whenever the request does not end in a 2xx, so the sender's retry runs: the
  endpoint raises (``HTTPException`` included), FastAPI fails after it (a response that does not
  match ``response_model``), or sending the answer fails. A dependency cannot see a response the
  endpoint *returns*: on routes built with ``route_class=WebhookRoute`` a returned non-2xx
  response forgets the id too; elsewhere, raise instead of returning an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from bitbybit.webhooks._adapter import (
    DUPLICATE_BODY,
    Receiver,
    SecretSource,
    error_body,
    is_success,
)
from bitbybit.webhooks.errors import ConfigurationError, WebhookVerificationError
from bitbybit.webhooks.idempotency import IdempotencyStore
from bitbybit.webhooks.starlette import forget
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event

__all__ = ["DuplicateDelivery", "WebhookRoute", "WebhookVerifier"]

FORGET_KEY = "bitbybit.webhooks.forget"
"""Where the dependency leaves, in the ASGI scope, how to forget the id it marked."""


class DuplicateDelivery(HTTPException):
    """Raised (as a 200 answer) when the webhook id was already handled."""

    def __init__(self, event: Event) -> None:
        super().__init__(status_code=200, detail=dict(DUPLICATE_BODY))
        self.event = event


class WebhookVerifier:
    """A FastAPI dependency: ``Annotated[Event, Depends(WebhookVerifier(secret))]``."""

    def __init__(
        self,
        secret: SecretSource,
        tolerance: float = DEFAULT_TOLERANCE,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self._receiver = Receiver(secret, tolerance, idempotency)

    async def __call__(self, request: Request) -> AsyncIterator[Event]:
        """Verify the request; yield the event; forget its id if the endpoint raises."""
        try:
            event = self._receiver.verify(await request.body(), request.headers)
        except ConfigurationError:
            raise
        except WebhookVerificationError as exc:
            detail: Any = error_body(exc)["error"]
            raise HTTPException(status_code=400, detail=detail) from exc
        store = self._receiver.idempotency
        if store is None:
            yield event
            return
        if await run_in_threadpool(store.seen_or_mark, event.id):
            raise DuplicateDelivery(event)
        forgotten = False

        async def forget_once() -> None:
            nonlocal forgotten
            if not forgotten:
                forgotten = True
                await forget(store, event.id)

        request.scope[FORGET_KEY] = forget_once
        try:
            yield event
        except BaseException:
            await forget_once()
            raise


class WebhookRoute(APIRoute):
    """A route that also forgets the id when the endpoint *returns* a non-2xx response.

    Use it as ``APIRouter(route_class=WebhookRoute)`` (or ``app.router.route_class``) for the
    routes that depend on a :class:`WebhookVerifier`; other routes behave as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            response = await handler(request)
            if not is_success(response.status_code):
                pending: Callable[[], Awaitable[None]] | None = request.scope.get(FORGET_KEY)
                if pending is not None:
                    await pending()
            return response

        return route
