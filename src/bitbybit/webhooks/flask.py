"""Flask adapter: ``@verify_webhook(secret)`` passes the verified :class:`Event` to the view.

::

    from bitbybit.webhooks.flask import verify_webhook

    @app.post("/webhooks")
    @verify_webhook(lambda: current_app.config["WEBHOOK_SECRETS"], idempotency=MemoryStore())
    def receive(event: Event) -> tuple[str, int]:
        ...
        return "", 204

The event comes first, then any URL variables; the view must return a response (Flask turns a
``None`` into a ``TypeError``, so a 500). Refusals answer 400 ``{"error": {"code", "message"}}``;
duplicates answer 200 ``{"received": true, "duplicate": true}`` without calling the view. The id
is forgotten whenever the request does not end in a 2xx: the view raises, returns nothing or
something Flask cannot turn into a response, or answers non-2xx.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec

from flask import Response, jsonify, make_response, request
from flask.typing import ResponseReturnValue

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

P = ParamSpec("P")


def verify_webhook(
    secret: SecretSource,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    idempotency: IdempotencyStore | None = None,
) -> Callable[[Callable[Concatenate[Event, P], ResponseReturnValue]], Callable[P, Response]]:
    """Decorate a view ``view(event, **url_vars)`` so it only sees verified deliveries."""
    receiver = Receiver(secret, tolerance, idempotency)

    def decorate(
        view: Callable[Concatenate[Event, P], ResponseReturnValue],
    ) -> Callable[P, Response]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                event = receiver.verify(request.get_data(cache=True), request.headers)
            except ConfigurationError:
                raise
            except WebhookVerificationError as exc:
                return make_response(jsonify(error_body(exc)), 400)
            store = receiver.idempotency
            if store is None:
                return make_response(view(event, *args, **kwargs))
            if store.seen_or_mark(event.id):
                return make_response(jsonify(DUPLICATE_BODY), 200)
            handled = False
            try:
                response = make_response(view(event, *args, **kwargs))
                handled = is_success(response.status_code)
                return response
            finally:
                if not handled:  # raised, returned nothing, or answered non-2xx: let the retry run
                    store.forget(event.id)

        return wrapper

    return decorate
