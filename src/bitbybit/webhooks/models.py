"""Typed, immutable models of the ten event payloads (stdlib dataclasses, no pydantic).

Attributes are snake_case (``phone_number`` for ``phoneNumber``, ``from_`` for ``from``);
every model keeps the JSON object it came from in ``raw``. Parsing is lenient about absence and
strict about type: a missing field becomes ``None`` (a missing list becomes ``()``; look in
``raw`` to tell "absent" from "empty"), while a field of the wrong JSON type raises
:class:`~bitbybit.webhooks.errors.BadPayload`. Timestamps (ISO-8601 text; unix seconds are
tolerated) become timezone-aware datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from bitbybit.webhooks.errors import BadPayload

__all__ = [
    "EVENT_TYPES",
    "Address",
    "Customer",
    "Deleted",
    "EventData",
    "GenericPayload",
    "LineItem",
    "MessageError",
    "MessageReceived",
    "MessageStatusUpdated",
    "Order",
    "OrderCustomer",
    "Product",
    "Variant",
    "parse_event",
]

Number = int | float
_T = TypeVar("_T")
_Raw = Mapping[str, Any]


def _get(raw: _Raw, key: str, kind: type[_T] | tuple[type, ...], what: str, where: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise BadPayload(f"{where}.{key} must be {what}, not a boolean")
    if not isinstance(value, kind):
        raise BadPayload(f"{where}.{key} must be {what}, not {type(value).__name__}")
    return value


def _str(raw: _Raw, key: str, where: str) -> str | None:
    value: str | None = _get(raw, key, str, "a string", where)
    return value


def _required_str(raw: _Raw, key: str, where: str) -> str:
    value = _str(raw, key, where)
    if value is None:
        raise BadPayload(f"{where}.{key} is required")
    return value


def _number(raw: _Raw, key: str, where: str) -> Number | None:
    value: Number | None = _get(raw, key, (int, float), "a number", where)
    return value


def _int(raw: _Raw, key: str, where: str) -> int | None:
    value: int | None = _get(raw, key, int, "an integer", where)
    return value


def _bool(raw: _Raw, key: str, where: str) -> bool | None:
    value: bool | None = _get(raw, key, bool, "a boolean", where)
    return value


def _time(raw: _Raw, key: str, where: str) -> datetime | None:
    value: str | Number | None = _get(raw, key, (str, int, float), "a timestamp", where)
    try:
        if value is None:
            return None
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        return datetime.fromtimestamp(value, UTC)  # unix seconds, tolerated
    except (ValueError, OverflowError, OSError) as exc:
        raise BadPayload(f"{where}.{key} is not an ISO-8601 timestamp: {value!r}") from exc


def _object(raw: _Raw, key: str, where: str) -> _Raw | None:
    value: _Raw | None = _get(raw, key, Mapping, "an object", where)
    return value


def _list(raw: _Raw, key: str, where: str) -> list[Any]:
    value: list[Any] | None = _get(raw, key, list, "an array", where)
    return value or []


def _strings(raw: _Raw, key: str, where: str) -> tuple[str, ...]:
    items = _list(raw, key, where)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise BadPayload(f"{where}.{key}[{index}] must be a string")
    return tuple(items)


def _objects(raw: _Raw, key: str, where: str, parse: Callable[[_Raw, str], _T]) -> tuple[_T, ...]:
    out = []
    for index, item in enumerate(_list(raw, key, where)):
        path = f"{where}.{key}[{index}]"
        if not isinstance(item, Mapping):
            raise BadPayload(f"{path} must be an object")
        out.append(parse(item, path))
    return tuple(out)


def _nested(raw: _Raw, key: str, where: str, parse: Callable[[_Raw, str], _T]) -> _T | None:
    value = _object(raw, key, where)
    return None if value is None else parse(value, f"{where}.{key}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A customer address (with ``id``) or an order's shipping address (``id`` is ``None``)."""

    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    country: str | None = None
    zip: str | None = None
    main_address: bool | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "address") -> Address:
        """Build from the JSON object."""
        return cls(
            id=_str(raw, "id", where),
            first_name=_str(raw, "firstName", where),
            last_name=_str(raw, "lastName", where),
            phone=_str(raw, "phone", where),
            address1=_str(raw, "address1", where),
            address2=_str(raw, "address2", where),
            city=_str(raw, "city", where),
            province=_str(raw, "province", where),
            country=_str(raw, "country", where),
            zip=_str(raw, "zip", where),
            main_address=_bool(raw, "mainAddress", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    """Payload of ``customer.created`` and ``customer.updated``."""

    id: str
    email: str | None = None
    phone_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    image_url: str | None = None
    tags: tuple[str, ...] = ()
    addresses: tuple[Address, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "customer") -> Customer:
        """Build from the JSON object."""
        return cls(
            id=_required_str(raw, "id", where),
            email=_str(raw, "email", where),
            phone_number=_str(raw, "phoneNumber", where),
            first_name=_str(raw, "firstName", where),
            last_name=_str(raw, "lastName", where),
            image_url=_str(raw, "imageUrl", where),
            tags=_strings(raw, "tags", where),
            addresses=_objects(raw, "addresses", where, Address.from_dict),
            created_at=_time(raw, "createdAt", where),
            updated_at=_time(raw, "updatedAt", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCustomer:
    """The customer summary inside an order."""

    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "customer") -> OrderCustomer:
        """Build from the JSON object."""
        return cls(
            id=_str(raw, "id", where),
            first_name=_str(raw, "firstName", where),
            last_name=_str(raw, "lastName", where),
            email=_str(raw, "email", where),
            phone_number=_str(raw, "phoneNumber", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LineItem:
    """One order line: the variant's price at order time times ``quantity``."""

    id: str | None = None
    quantity: int | None = None
    price: Number | None = None
    title: str | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "lineItem") -> LineItem:
        """Build from the JSON object."""
        return cls(
            id=_str(raw, "id", where),
            quantity=_int(raw, "quantity", where),
            price=_number(raw, "price", where),
            title=_str(raw, "title", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """Payload of ``order.created`` and ``order.updated`` (``currency`` may be ``None``)."""

    id: str
    order_id: str | None = None
    order_number: str | None = None
    status: str | None = None
    fulfillment_status: str | None = None
    financial_status: str | None = None
    total: Number | None = None
    currency: str | None = None
    customer: OrderCustomer | None = None
    line_items: tuple[LineItem, ...] = ()
    shipping_address: Address | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "order") -> Order:
        """Build from the JSON object."""
        return cls(
            id=_required_str(raw, "id", where),
            order_id=_str(raw, "orderId", where),
            order_number=_str(raw, "orderNumber", where),
            status=_str(raw, "status", where),
            fulfillment_status=_str(raw, "fulfillmentStatus", where),
            financial_status=_str(raw, "financialStatus", where),
            total=_number(raw, "total", where),
            currency=_str(raw, "currency", where),
            customer=_nested(raw, "customer", where, OrderCustomer.from_dict),
            line_items=_objects(raw, "lineItems", where, LineItem.from_dict),
            shipping_address=_nested(raw, "shippingAddress", where, Address.from_dict),
            notes=_str(raw, "notes", where),
            tags=_strings(raw, "tags", where),
            created_at=_time(raw, "createdAt", where),
            updated_at=_time(raw, "updatedAt", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """A product variant: ``key`` is its title, ``inventory_sku`` its SKU."""

    id: str | None = None
    key: str | None = None
    price: Number | None = None
    compare_at_price: Number | None = None
    inventory_sku: str | None = None
    media: Any = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "variant") -> Variant:
        """Build from the JSON object."""
        return cls(
            id=_str(raw, "id", where),
            key=_str(raw, "key", where),
            price=_number(raw, "price", where),
            compare_at_price=_number(raw, "compareAtPrice", where),
            inventory_sku=_str(raw, "inventorySku", where),
            media=raw.get("media"),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """Payload of ``product.created`` and ``product.updated``.

    ``media`` and ``options`` are kept as the JSON values sent (their shape is open).
    """

    id: str
    product_id: str | None = None
    name: str | None = None
    description: str | None = None
    media: Any = None
    status: str | None = None
    variants: tuple[Variant, ...] = ()
    options: tuple[Any, ...] = ()
    tags: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "product") -> Product:
        """Build from the JSON object."""
        return cls(
            id=_required_str(raw, "id", where),
            product_id=_str(raw, "productId", where),
            name=_str(raw, "name", where),
            description=_str(raw, "description", where),
            media=raw.get("media"),
            status=_str(raw, "status", where),
            variants=_objects(raw, "variants", where, Variant.from_dict),
            options=tuple(_list(raw, "options", where)),
            tags=_strings(raw, "tags", where),
            types=_strings(raw, "types", where),
            created_at=_time(raw, "createdAt", where),
            updated_at=_time(raw, "updatedAt", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted:
    """Payload of ``customer.deleted`` and ``product.deleted``: only the id."""

    id: str
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "payload") -> Deleted:
        """Build from the JSON object."""
        return cls(id=_required_str(raw, "id", where), raw=raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """Payload of ``message.received``; ``source`` is the channel code (``WHATSAPP_META``, …)."""

    message_id: str
    from_: str | None = None
    body: str | None = None
    source: str | None = None
    received_at: datetime | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "message") -> MessageReceived:
        """Build from the JSON object."""
        return cls(
            message_id=_required_str(raw, "messageId", where),
            from_=_str(raw, "from", where),
            body=_str(raw, "body", where),
            source=_str(raw, "source", where),
            received_at=_time(raw, "receivedAt", where),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageError:
    """Why an outbound message failed."""

    code: str | int | None = None
    message: str | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "error") -> MessageError:
        """Build from the JSON object."""
        code: str | int | None = _get(raw, "code", (str, int), "a string or integer", where)
        return cls(code=code, message=_str(raw, "message", where), raw=raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStatusUpdated:
    """Payload of ``message.status.updated``: ``sent`` → ``delivered`` → ``read``, or ``failed``.

    ``template_name`` is ``None`` for free text; ``error`` is set when ``status`` is ``failed``.
    """

    message_id: str
    status: str | None = None
    to: str | None = None
    template_name: str | None = None
    timestamp: datetime | None = None
    error: MessageError | None = None
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: _Raw, where: str = "message") -> MessageStatusUpdated:
        """Build from the JSON object."""
        return cls(
            message_id=_required_str(raw, "messageId", where),
            status=_str(raw, "status", where),
            to=_str(raw, "to", where),
            template_name=_str(raw, "templateName", where),
            timestamp=_time(raw, "timestamp", where),
            error=_nested(raw, "error", where, MessageError.from_dict),
            raw=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericPayload:
    """Payload of an event type this library version does not know; see ``raw``."""

    type: str
    raw: _Raw = field(default_factory=dict, repr=False, compare=False)


EventData = (
    Customer | Order | Product | Deleted | MessageReceived | MessageStatusUpdated | GenericPayload
)

_PARSERS: dict[str, Callable[[_Raw, str], EventData]] = {
    "customer.created": Customer.from_dict,
    "customer.updated": Customer.from_dict,
    "customer.deleted": Deleted.from_dict,
    "order.created": Order.from_dict,
    "order.updated": Order.from_dict,
    "product.created": Product.from_dict,
    "product.updated": Product.from_dict,
    "product.deleted": Deleted.from_dict,
    "message.received": MessageReceived.from_dict,
    "message.status.updated": MessageStatusUpdated.from_dict,
}

EVENT_TYPES: frozenset[str] = frozenset(_PARSERS)
"""The ten event types this version models."""


def parse_event(event_type: str, payload: Mapping[str, Any]) -> EventData:
    """Return the typed model of ``payload``; unknown types give a :class:`GenericPayload`."""
    if not isinstance(payload, Mapping):
        raise BadPayload(f"a {event_type} payload must be a JSON object")
    parse = _PARSERS.get(event_type)
    if parse is None:
        return GenericPayload(type=event_type, raw=payload)
    return parse(payload, "payload")
