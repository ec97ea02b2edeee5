"""What the framework adapters share: secret resolution, answers, duplicate bookkeeping.

Every adapter behaves the same way:

- a delivery that fails verification is answered ``400`` with
  ``{"error": {"code": "bad_signature", "message": "..."}}`` (FastAPI: under ``"detail"``), so
  the sender's delivery log shows why; a :class:`ConfigurationError` (your secret setting is
  wrong) is raised instead, because it is a server error, not the sender's;
- with an idempotency store, an id already marked is answered ``200``
  ``{"received": true, "duplicate": true}`` (FastAPI: under ``"detail"``) without calling your
  handler;
- once marked, the id is forgotten again whenever the request does not end in a 2xx, whatever
  failed (the handler raised, returned nothing or no response, answered non-2xx, or the adapter
  or framework failed after it), so the sender's retry runs the handler instead of being
  answered "duplicate". Each adapter marks, then runs everything else in ``try``/``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bitbybit.webhooks.errors import ConfigurationError, WebhookVerificationError
from bitbybit.webhooks.idempotency import IdempotencyStore
from bitbybit.webhooks.verification import DEFAULT_TOLERANCE, Event, Verifier
from bitbybit.webhooks.verification import _tolerance as check_tolerance

__all__ = ["DUPLICATE_BODY", "Receiver", "SecretSource", "error_body", "is_success"]

SecretSource = str | Sequence[str] | Callable[[], str | Sequence[str]]
"""One secret, several (during a rotation), or a function returning them at each request."""

DUPLICATE_BODY: dict[str, Any] = {"received": True, "duplicate": True}


def error_body(exc: WebhookVerificationError) -> dict[str, Any]:
    """The JSON answer for a refused delivery."""
    return {"error": {"code": exc.code, "message": exc.message}}


class Receiver:
    """Verification plus optional duplicate tracking, configured once per route."""

    __slots__ = ("_secret_source", "_tolerance", "_verifier", "idempotency")

    def __init__(
        self,
        secret: SecretSource,
        tolerance: float = DEFAULT_TOLERANCE,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self._tolerance = tolerance
        self._secret_source: Callable[[], str | Sequence[str]] | None = None
        self._verifier: Verifier | None = None
        if callable(secret):
            self._secret_source = secret
            check_tolerance(tolerance)  # the secret is read per request; the tolerance now
        else:
            # a fixed secret is checked now, so a bad setting fails at start-up, not per request
            self._verifier = Verifier(secret, tolerance)
        if idempotency is not None and not isinstance(idempotency, IdempotencyStore):
            raise ConfigurationError("idempotency must have seen_or_mark() and forget()")
        self.idempotency = idempotency

    def verify(self, body: bytes, headers: object) -> Event:
        """Verify one request; raises the error family."""
        if self._verifier is not None:
            return self._verifier.verify(body, headers)
        assert self._secret_source is not None
        return Verifier(self._secret_source(), self._tolerance).verify(body, headers)


def is_success(status: int) -> bool:
    """Whether an answer keeps the id marked as handled."""
    return 200 <= status < 300
