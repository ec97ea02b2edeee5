"""Flask adapter: ``@verify_webhook(secret)`` passes the verified :class:`Event` to the view.

::

    from bitbybit.webhooks.flask import verify_webhook

    @app.post("/webhooks")
    @verify_webhook(lambda: current_app.config["BITBYBIT_WEBHOOK_SECRETS"], idempotency=store)
    def receive(event: Event) -> tuple[str, int]:
        ...
        return "", 204

The event comes first, then any URL variables. Refusals answer 400
``{"error": {"code", "message"}}``; duplicates answer 200 without calling the view; the id is
forgotten when the view raises or answers non-2xx.
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
            try:
                response = make_response(view(event, *args, **kwargs))
            except BaseException:
                store.forget(event.id)
                raise
            if not is_success(response.status_code):
                store.forget(event.id)
            return response

        return wrapper

    return decorate
