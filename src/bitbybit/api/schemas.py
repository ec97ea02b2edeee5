"""Response shapes for the OpenAPI document (the handlers render with orjson directly)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field
from pydantic.fields import FieldInfo

from bitbybit.schemas import Phone


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None
    requestId: str | None = Field(
        default=None, description="The request's id, as in the `X-Request-Id` response header"
    )


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Meta(BaseModel):
    page: int
    limit: int
    total: int
    hasNextPage: bool


class CursorMeta(BaseModel):
    """The `meta` of a page asked for by cursor (`startingAfter` or `endingBefore`): nothing
    is counted."""

    limit: int
    hasMore: bool = Field(
        description="More objects beyond this page in the direction paged: older ones after "
        "`startingAfter` (page on with `startingAfter` = the last object's id), newer ones "
        "before `endingBefore` (page on with `endingBefore` = the first object's id)"
    )


PAGED_META = (
    "`{page, limit, total, hasNextPage}` for a page by number (`page`, or no cursor); "
    "`{limit, hasMore}` for a page by cursor"
)


class Address(BaseModel):
    id: str
    firstName: str | None
    lastName: str | None
    phone: str | None
    address1: str
    address2: str | None
    city: str | None
    province: str | None
    country: str | None
    zip: str | None
    mainAddress: bool | None


class Customer(BaseModel):
    id: str
    email: str | None
    phoneNumber: str | None
    firstName: str | None
    lastName: str | None
    imageUrl: str | None
    tags: list[str]
    addresses: list[Address]
    createdAt: str
    updatedAt: str
    source: str


class Variant(BaseModel):
    id: str
    key: str
    price: float
    compareAtPrice: float | None
    inventorySku: str | None
    media: Any


class Product(BaseModel):
    id: str
    productId: str
    name: str
    description: str | None
    media: Any
    status: str | None
    variants: list[Variant]
    options: list[Any]
    tags: list[str]
    types: list[str]
    createdAt: str
    updatedAt: str


class CustomerSummary(BaseModel):
    id: str
    firstName: str | None
    lastName: str | None
    email: str | None
    phoneNumber: str | None


class LineItem(BaseModel):
    id: str
    quantity: int
    price: float
    title: str
    productVariantId: str | None


class ShippingAddress(BaseModel):
    firstName: str
    lastName: str
    phone: str
    address1: str
    address2: str | None
    city: str
    province: str
    country: str | None
    zip: str


class Order(BaseModel):
    id: str
    orderId: str
    orderNumber: str
    status: str
    fulfillmentStatus: str
    financialStatus: str
    total: float
    currency: str | None
    customer: CustomerSummary | None
    lineItems: list[LineItem]
    shippingAddress: ShippingAddress | None
    tags: list[str]
    createdAt: str
    updatedAt: str
    notes: str | None


class Deleted(BaseModel):
    id: str


class CustomerEnvelope(BaseModel):
    data: Customer


class CustomerList(BaseModel):
    data: list[Customer]
    meta: Meta


class ProductEnvelope(BaseModel):
    data: Product


class ProductList(BaseModel):
    data: list[Product]
    meta: Meta


class OrderEnvelope(BaseModel):
    data: Order


class OrderList(BaseModel):
    data: list[Order]
    meta: Meta


class DeletedEnvelope(BaseModel):
    data: Deleted


class SecretRotation(BaseModel):
    newSecretEffectiveAt: str


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    description: str | None
    events: list[str]
    status: str
    statusReason: str | None
    multiSignature: bool
    secretRotation: SecretRotation | None
    createdAt: str
    updatedAt: str


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str


class WebhookEndpointEnvelope(BaseModel):
    data: WebhookEndpoint


class WebhookEndpointSecretEnvelope(BaseModel):
    data: WebhookEndpointWithSecret


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpoint]
    meta: Meta


class RotatedSecret(BaseModel):
    id: str
    secret: str
    effectiveAt: str


class RotatedSecretEnvelope(BaseModel):
    data: RotatedSecret


class Reactivated(WebhookEndpoint):
    recovered: int


class ReactivatedEnvelope(BaseModel):
    data: Reactivated


class TestAttemptOut(BaseModel):
    eventId: str
    eventType: str
    succeeded: bool
    statusCode: int | None
    latencyMs: int
    error: str | None
    responseBody: str | None


class TestAttemptEnvelope(BaseModel):
    data: TestAttemptOut


class DeliveryOut(BaseModel):
    id: str
    eventId: str
    eventType: str
    endpointId: str
    status: str
    attemptCount: int
    nextAttemptAt: str | None
    lastStatusCode: int | None
    lastError: str | None
    createdAt: str
    updatedAt: str


class AttemptOut(BaseModel):
    number: int
    startedAt: str
    statusCode: int | None
    latencyMs: int
    error: str | None
    responseBody: str | None


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]


class DeliveryEnvelope(BaseModel):
    data: DeliveryOut


class DeliveryDetailEnvelope(BaseModel):
    data: DeliveryDetail


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    meta: Meta | CursorMeta = Field(description=PAGED_META)


class EventOut(BaseModel):
    id: str
    type: str
    createdAt: str
    payload: Any


class EventDetail(EventOut):
    deliveries: list[DeliveryOut]


class EventList(BaseModel):
    data: list[EventOut]
    meta: Meta | CursorMeta = Field(description=PAGED_META)


class EventDetailEnvelope(BaseModel):
    data: EventDetail


class Replayed(BaseModel):
    eventId: str
    deliveryIds: list[str]


class ReplayedEnvelope(BaseModel):
    data: Replayed


# -- messaging -----------------------------------------------------------------------------------


class SendAccepted(BaseModel):
    messageId2: str
    timestamp: str


class SendEnvelope(BaseModel):
    data: SendAccepted


class MessageErrorOut(BaseModel):
    code: int | None
    message: str | None


class StatusOut(BaseModel):
    status: str
    timestamp: str
    applied: bool
    error: MessageErrorOut | None = None


class MessageOut(BaseModel):
    id: str
    direction: str
    to: str | None = Field(default=None, description="The customer's number, outbound")
    from_: str | None = Field(default=None, alias="from", description="Theirs, inbound")
    customerId: str | None
    type: str
    body: str | None
    mediaUrl: str | None
    mediaId: str | None
    templateName: str | None
    templateSource: str | None
    params: list[str]
    source: str
    status: str
    error: MessageErrorOut | None
    whatsappMessageId: str | None
    createdAt: str
    updatedAt: str
    statuses: list[StatusOut] | None = Field(
        default=None, description="Every status reported, with the one request (`requests`)"
    )


class MessageList(BaseModel):
    data: list[MessageOut]
    meta: Meta


class TemplateOut(BaseModel):
    name: str
    source: str
    language: str
    body: str
    headerMediaUrl: str | None
    paramCount: int
    createdAt: str
    updatedAt: str


class TemplateEnvelope(BaseModel):
    data: TemplateOut


class TemplateList(BaseModel):
    data: list[TemplateOut]
    meta: Meta


class DeletedTemplate(BaseModel):
    name: str


class DeletedTemplateEnvelope(BaseModel):
    data: DeletedTemplate


class TicketOut(BaseModel):
    id: str
    customerId: str
    status: str
    openedAt: str
    closedAt: str | None


class TicketEnvelope(BaseModel):
    data: TicketOut


class TicketList(BaseModel):
    data: list[TicketOut]
    meta: Meta


class MessageEnvelope(BaseModel):
    data: MessageOut


# -- what the request bodies' validators check, declared in the document -----------------------
#
# ``bitbybit.schemas`` checks some things in Python (``AfterValidator``s, model validators) that
# pydantic cannot write into JSON Schema. ``declare_body_checks`` writes them into the document,
# derived from the models themselves so that the two cannot drift: a string field gets the
# pattern of what its validators accept, a money field ``multipleOf: 0.01``.

FORBIDDEN = r"\u0000"
"""NUL, refused in every string (``_storable``; so are lone UTF-16 surrogates, which a JSON
Schema pattern cannot name portably: most regex engines have no such characters)."""
TRIMMED = r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""What ``str_strip_whitespace`` removes from both ends (Unicode ``White_Space``)."""
TEXT = rf"^[^{FORBIDDEN}]*$"
NON_BLANK = rf"^[^{FORBIDDEN}]*[^{TRIMMED}{FORBIDDEN}][^{FORBIDDEN}]*$"
"""A string that is not empty once trimmed (fields with a minimum length)."""
EMAIL = rf"^[^\s{FORBIDDEN}]+@[^\s@{FORBIDDEN}]*\.[^\s@{FORBIDDEN}]*$"
"""What ``_email`` accepts: something, ``@``, then a domain with a dot, no whitespace."""
HTTP_URL = (
    rf"^(?:[Hh][Tt][Tt][Pp]://[^{FORBIDDEN}]{{2,}}|[Hh][Tt][Tt][Pp][Ss]://[^{FORBIDDEN}]+)"
    rf"[^\s{FORBIDDEN}]$"
)
"""What ``_http_url`` accepts: ``http://`` or ``https://`` (any case), 10 characters at least.
(Both patterns leave out the whitespace the server trims from either end first.)"""
PHONE_FORMAT = "phone"
STRING_CHECKS: dict[str, dict[str, Any]] = {
    "_email": {
        "pattern": EMAIL,
        "description": "An email address: something, `@`, a domain with a dot; no whitespace",
    },
    "_http_url": {
        "pattern": HTTP_URL,
        "description": "An `http://` or `https://` URL, at least 10 characters",
    },
}
"""Patterns, not ``format: email|uri``: those formats are stricter than what the server
accepts, so a client that trusted them would refuse values the server keeps."""
NUMBER_CHECKS: dict[str, dict[str, Any]] = {"_money": {"multipleOf": 0.01}}
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
JSON_VALUE: dict[str, Any] = {
    "description": (
        "Any JSON value that `JSON.stringify` writes back byte for byte: integers written "
        "without a fraction or exponent within ±(2^53−1), no NUL (nor lone surrogates) in "
        "strings, no object keys that look like array indexes, at most 64 levels deep"
    ),
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},  # JSON Schema cannot tell `1e16` (kept) from `10000000000000000`
        {"type": "string", "pattern": TEXT},
        {"type": "array", "items": JSON_VALUE_REF},
        {
            "type": "object",
            "propertyNames": {"pattern": rf"^(?!(?:0|[1-9][0-9]{{0,9}})$)[^{FORBIDDEN}]*$"},
            "additionalProperties": JSON_VALUE_REF,
        },
    ],
}
"""What ``_signable`` accepts, declared once as ``components/schemas/JsonValue``."""
MODEL_CHECKS: dict[str, dict[str, Any]] = {
    "CustomerCreate": {
        "anyOf": [
            {"required": ["email"], "properties": {"email": {"type": "string"}}},
            {"required": ["phoneNumber"], "properties": {"phoneNumber": {"type": "string"}}},
        ],
        "description": "`email` or `phoneNumber` is required.",
    },
    "OrderCreate": {
        "oneOf": [
            {"required": ["customerId"], "properties": {"customerId": {"type": "string"}}},
            {"required": ["customer"], "properties": {"customer": {"type": "object"}}},
        ],
        "description": (
            "Either `customerId` (an existing customer) or `customer`, not both. Each "
            "`productVariantId` must name an existing variant (else 400)."
        ),
    },
    "ProductCreate": {"not": {"required": ["media", "medias"]}},
    "ProductUpdate": {"not": {"required": ["media", "medias"]}},
    "MessageSend": {
        "anyOf": [
            {"properties": {"message": {"maxLength": 1024}}},
            {"properties": {"imageUrl": {"type": "null"}}},
        ],
        "description": "With `imageUrl`, `message` is its caption: at most 1,024 characters.",
    },
}
NOT_NULL = {"ProductUpdate": ("name", "variants")}
WEBHOOK_URL = {
    "pattern": rf"^[{TRIMMED}]*[Hh][Tt][Tt][Pp][Ss]://",
    "description": (
        "An https URL of a public host: no credentials, no loopback, private or metadata "
        "addresses unless the server allows them (`BITBYBIT_ALLOW_HTTP_TARGETS`, "
        "`BITBYBIT_ALLOW_PRIVATE_TARGETS`); refused with 400 naming the reason"
    ),
}
FIELD_CHECKS: dict[str, dict[str, dict[str, Any]]] = {
    "EndpointCreate": {"url": WEBHOOK_URL},
    "EndpointUpdate": {"url": WEBHOOK_URL},
    "Reactivate": {"recoverSince": {"format": "date-time"}},
    "Replay": {"endpointId": {"description": "An existing endpoint's id (else 400)"}},
    "LineItemIn": {"productVariantId": {"description": "An existing variant's id (else 400)"}},
    "TicketCreate": {"customerId": {"description": "An existing customer's id (else 404)"}},
}
"""What a field's own validation does beyond its type, where no validator names it."""
"""Fields that may be left out but not sent as ``null``."""


def declare_body_checks(components: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Write into ``components`` what the validators of ``models`` (by name) check."""
    for model in models:
        schema = components.get(model.__name__)
        if schema is None:
            continue
        for name, field in model.model_fields.items():
            found = schema["properties"].get(field.alias or name)
            if found is not None:
                _declare(field.annotation, list(field.metadata), found)
        for name, checks in FIELD_CHECKS.get(model.__name__, {}).items():
            prop = schema["properties"][name]
            strings = [kind for kind in prop.get("anyOf", [prop]) if kind.get("type") == "string"]
            for kind in strings:
                kind.update(checks)
        for name in NOT_NULL.get(model.__name__, ()):
            prop = schema["properties"][name]
            prop["anyOf"] = [kind for kind in prop["anyOf"] if kind.get("type") != "null"]
        schema.update(MODEL_CHECKS.get(model.__name__, {}))
    components["JsonValue"] = JSON_VALUE


def _declare(annotation: Any, metadata: list[Any], schema: dict[str, Any]) -> None:
    """Walk ``annotation`` beside its JSON ``schema`` and add what ``metadata`` checks."""
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        _declare(inner, [*metadata, *extra], schema)
        return
    validators = _validators(metadata)
    if annotation is str:
        _declare_string(validators, schema, PHONE_FORMAT if _is_phone(metadata) else None)
    elif annotation is float:
        for name in validators:
            schema.update(NUMBER_CHECKS.get(name, {}))
    elif annotation is Any and "_signable" in validators:
        schema.update(JSON_VALUE_REF)
    elif get_origin(annotation) in (Union, UnionType):
        branches = [kind for kind in schema.get("anyOf", ()) if kind.get("type") != "null"]
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        for option, branch in zip(options, branches, strict=False):
            _declare(option, metadata if len(options) == 1 else [], branch)
    elif get_origin(annotation) is list and "items" in schema:
        _declare(get_args(annotation)[0], [], schema["items"])


def _validators(metadata: list[Any]) -> list[str]:
    names = []
    for item in metadata:
        if isinstance(item, AfterValidator):
            names.append(getattr(item.func, "__name__", ""))
        elif isinstance(item, FieldInfo):
            names.extend(_validators(list(item.metadata)))
    return names


def _is_phone(metadata: list[Any]) -> bool:
    """Whether the constraints are ``Phone``'s, the one string type that the services parse as
    a phone number (pydantic keeps a field's constraints, not the alias it was written with)."""
    return repr(_constraints(metadata)) == repr(_constraints(list(get_args(Phone)[1:])))


def _constraints(metadata: list[Any]) -> list[Any]:
    found = []
    for item in metadata:
        found.extend(_constraints(list(item.metadata)) if isinstance(item, FieldInfo) else [item])
    return found


def _declare_string(validators: list[str], schema: dict[str, Any], format_: str | None) -> None:
    for name in validators:
        schema.update(STRING_CHECKS.get(name, {}))
    if "_storable" in validators and "pattern" not in schema:
        schema["pattern"] = NON_BLANK if schema.get("minLength", 0) > 0 else TEXT
    if format_ is not None:
        schema["format"] = format_
        schema["description"] = (
            "A phone number that libphonenumber accepts as valid: E.164 (`+62812…`), or a "
            "national number of the company's country"
        )
