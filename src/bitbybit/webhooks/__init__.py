"""Receive bitbybit webhooks: verify signatures, parse typed events, skip duplicates.

Standard library only. Framework adapters live in submodules that are imported on demand:
``bitbybit.webhooks.fastapi``, ``.starlette``, ``.flask`` and ``.django``.

>>> event = verify(body, request.headers, secret="whsec_…")  # doctest: +SKIP
>>> event.type, event.data                                     # doctest: +SKIP
"""

from __future__ import annotations

from bitbybit.webhooks.errors import (
    BadPayload,
    BadSignature,
    ConfigurationError,
    MalformedHeader,
    MissingHeader,
    TimestampOutOfTolerance,
    WebhookVerificationError,
)
from bitbybit.webhooks.idempotency import (
    DEFAULT_TTL,
    IdempotencyStore,
    MemoryStore,
    RedisStore,
    SQLiteStore,
)
from bitbybit.webhooks.models import (
    EVENT_TYPES,
    Address,
    Customer,
    Deleted,
    EventData,
    GenericPayload,
    LineItem,
    MessageError,
    MessageReceived,
    MessageStatusUpdated,
    Order,
    OrderCustomer,
    Product,
    Variant,
    parse_event,
)
from bitbybit.webhooks.signing import (
    EVENT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    USER_AGENT,
    compute_signature,
    sign,
    webhook_headers,
)
from bitbybit.webhooks.verification import (
    DEFAULT_TOLERANCE,
    MAX_HEADER_LENGTH,
    Event,
    Verifier,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "DEFAULT_TTL",
    "EVENT_HEADER",
    "EVENT_TYPES",
    "ID_HEADER",
    "MAX_HEADER_LENGTH",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "USER_AGENT",
    "Address",
    "BadPayload",
    "BadSignature",
    "ConfigurationError",
    "Customer",
    "Deleted",
    "Event",
    "EventData",
    "GenericPayload",
    "IdempotencyStore",
    "LineItem",
    "MalformedHeader",
    "MemoryStore",
    "MessageError",
    "MessageReceived",
    "MessageStatusUpdated",
    "MissingHeader",
    "Order",
    "OrderCustomer",
    "Product",
    "RedisStore",
    "SQLiteStore",
    "TimestampOutOfTolerance",
    "Variant",
    "Verifier",
    "WebhookVerificationError",
    "compute_signature",
    "parse_event",
    "sign",
    "verify",
    "webhook_headers",
]
