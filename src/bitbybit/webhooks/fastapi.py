"""FastAPI adapter: a dependency that yields the verified :class:`Event`.

::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from bitbybit.webhooks import Event, SQLiteStore
    from bitbybit.webhooks.fastapi import WebhookVerifier

    verified = WebhookVerifier(["whsec_new…", "whsec_old…"], idempotency=SQLiteStore("ids.db"))
    app = FastAPI()

    @app.post("/webhooks", status_code=204)
    def receive(event: Annotated[Event, Depends(verified)]) -> None:
        ...

- A refused delivery never reaches the endpoint: the answer is 400
  ``{"detail": {"code": "bad_signature", "message": "..."}}``.
- With ``idempotency``, a duplicate id never reaches the endpoint either: the answer is 200
  ``{"detail": {"received": true, "duplicate": true}}`` (the dependency raises an
  ``HTTPException`` with status 200, which FastAPI's default handler answers as is).
- If the endpoint raises (any exception, ``HTTPException`` included), the id is forgotten so the
  sender's retry is processed. An endpoint that *returns* an error response is not seen by the
  dependency: raise instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from bitbybit.webhooks._adapter import DUPLICATE_BODY, Receiver, SecretSource, error_body
from bitbybit.webhooks.errors import ConfigurationError, WebhookVerificationError
from bitbybit.webhooks.idempotency import IdempotencyStore
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event

__all__ = ["DuplicateDelivery", "WebhookVerifier"]


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
        try:
            yield event
        except BaseException:
            await run_in_threadpool(store.forget, event.id)
            raise
