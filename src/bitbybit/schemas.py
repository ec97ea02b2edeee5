"""Request bodies: the Create/Update schemas of each resource, shared by the API and the CLI.

Every string is checked to be storable and signable (no NUL, no lone surrogates), every number to
be an exact amount; unknown fields are refused so a typo never passes silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bitbybit.limits import MAX_JSON_DEPTH, json_depth
from bitbybit.webhooks.body import UnencodableBody, encode_body

MAX_MONEY = 1_000_000_000_000  # a trillion in whole units keeps every total exact


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must not contain lone UTF-16 surrogates")
    return value


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in value):
        raise ValueError("is not an email address")
    return value


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError("must be an http(s) URL")
    return value


def _money(value: float) -> float:
    # The float nearest the value rounded to cents is the value itself exactly when it was
    # written with at most two decimals (a tolerance on value * 100 fails for large prices).
    if round(value, 2) != value:
        raise ValueError("must have at most two decimal places")
    return value


Text = Annotated[str, Field(max_length=1000), AfterValidator(_storable)]
Name = Annotated[str, Field(max_length=255), AfterValidator(_storable)]
LongText = Annotated[str, Field(max_length=20_000), AfterValidator(_storable)]
Email = Annotated[str, Field(max_length=254), AfterValidator(_storable), AfterValidator(_email)]
Phone = Annotated[str, Field(min_length=3, max_length=32), AfterValidator(_storable)]
Url = Annotated[str, Field(max_length=2048), AfterValidator(_storable), AfterValidator(_http_url)]
Tag = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]
Tags = Annotated[list[Tag], Field(max_length=50)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, strict=True), AfterValidator(_money)]


def _signable(value: Any) -> Any:
    """Free-form JSON must be storable and signable, like every other field.

    Its depth is measured first (without recursion): the API refuses deeper bodies before they
    are parsed, and this keeps the same bound for schemas built in Python (CLI, trigger).
    """
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"may nest at most {MAX_JSON_DEPTH} arrays and objects deep")
    try:
        encoded = encode_body(value)
    except UnencodableBody as error:
        raise ValueError(str(error)) from None
    if b"\\u0000" in encoded:
        raise ValueError("must not contain NUL characters")
    return value


Json = Annotated[Any, Field(description="Any JSON value"), AfterValidator(_signable)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AddressIn(Body):
    id: Name | None = Field(
        default=None, description="Keep an existing address's id on replacement"
    )
    firstName: Name | None = None
    lastName: Name | None = None
    phone: Phone | None = None
    address1: Text
    address2: Text | None = None
    city: Name | None = None
    province: Name | None = None
    country: Name | None = None
    zip: Name | None = None
    mainAddress: bool | None = None


class CustomerCreate(Body):
    email: Email | None = None
    phoneNumber: Phone | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    imageUrl: Url | None = None
    tags: Tags = []
    addresses: Annotated[list[AddressIn], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _reachable(self) -> CustomerCreate:
        if not self.email and not self.phoneNumber:
            raise ValueError("email or phoneNumber is required")
        return self


class CustomerUpdate(Body):
    """Only the fields sent change; ``tags`` and ``addresses`` replace the whole list."""

    email: Email | None = None
    phoneNumber: Phone | None = None
    firstName: Name | None = None
    lastName: Name | None = None
    imageUrl: Url | None = None
    tags: Tags | None = None
    addresses: Annotated[list[AddressIn], Field(max_length=20)] | None = None


class VariantIn(Body):
    title: Name = Field(min_length=1)
    price: Money
    sku: Name | None = None
    compareAtPrice: Money | None = None
    media: Json = None


Medias = Annotated[
    list[Json],
    Field(
        max_length=100,
        description="The product's media as the public reference sends them (a list); kept and "
        "returned as `media`. Give `media` or `medias`, not both",
    ),
]


class _TakesMedias(Body):
    media: Json = None
    medias: Medias | None = None

    @model_validator(mode="after")
    def _medias_are_media(self) -> _TakesMedias:
        if "medias" in self.model_fields_set:
            if "media" in self.model_fields_set:
                raise ValueError("give media or medias, not both")
            self.media = list(self.medias or [])
            self.model_fields_set.add("media")
        return self


class ProductCreate(_TakesMedias):
    name: Name = Field(min_length=1)
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=100)]
    description: LongText | None = None
    tags: Tags = []
    types: Tags = []
    status: Literal["active", "draft", "archived"] | None = None


class ProductUpdate(_TakesMedias):
    name: Name | None = Field(default=None, min_length=1)
    description: LongText | None = None
    tags: Tags | None = None
    types: Tags | None = None
    status: Literal["active", "draft", "archived"] | None = None
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=100)] | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> ProductUpdate:
        for field in ("name", "variants"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null: a product keeps a {field}")
        return self


class LineItemIn(Body):
    productVariantId: Name
    quantity: int = Field(ge=1, le=1_000_000, strict=True)


class ShippingAddressIn(Body):
    firstName: Name
    lastName: Name
    phone: Phone
    address1: Text
    address2: Text | None = None
    city: Name
    province: Name
    country: Name | None = None
    zip: Name


class OrderCustomerIn(Body):
    """The buyer, found by phone, then email, else created. As in the public reference, names
    alone are enough: without a phone or an email the shipping address's phone is the buyer's."""

    firstName: Name | None = None
    lastName: Name | None = None
    phone: Phone | None = None
    email: Email | None = None


class OrderCreate(Body):
    lineItems: Annotated[list[LineItemIn], Field(min_length=1, max_length=250)]
    shippingAddress: ShippingAddressIn
    customerId: Name | None = None
    customer: OrderCustomerIn | None = None
    notes: LongText | None = None
    tags: Tags = []

    @model_validator(mode="after")
    def _one_customer(self) -> OrderCreate:
        if (self.customerId is None) == (self.customer is None):
            raise ValueError("give either customerId or customer, not both or neither")
        return self


class OrderUpdate(Body):
    status: Literal["active", "archived", "cancelled", "refunded"] | None = None
    fulfillmentStatus: Literal["unfulfilled", "fulfilled"] | None = None
    financialStatus: Literal["pending", "paid", "refunded"] | None = None
    notes: LongText | None = None


EventType = Literal[
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "order.created",
    "order.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "message.received",
    "message.status.updated",
]
WebhookUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_storable)]


class EndpointCreate(Body):
    url: WebhookUrl
    events: Annotated[list[EventType], Field(min_length=1, max_length=10)] | None = Field(
        default=None, description="Event types to receive; omit for every type"
    )
    description: Text | None = None
    multiSignature: bool = Field(
        default=False, description="Sign with both secrets during a rotation's grace period"
    )


class EndpointUpdate(Body):
    url: WebhookUrl | None = None
    events: Annotated[list[EventType], Field(min_length=1, max_length=10)] | None = None
    description: Text | None = None
    status: Literal["active", "disabled"] | None = None
    multiSignature: bool | None = None


class RotateSecret(Body):
    graceHours: float = Field(default=24, ge=0, le=24 * 7)


class Reactivate(Body):
    recoverSince: Annotated[str, Field(max_length=40)] | None = Field(
        default=None, description="ISO-8601 time: re-queue deliveries that failed since then"
    )


class TestSend(Body):
    eventType: EventType = "customer.created"


class Replay(Body):
    endpointId: Name | None = None


# -- messaging (SPEC §3 Messages, §7) ----------------------------------------------------------

MessageText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_storable)]
"""WhatsApp's limit for a text message (a caption's, 1,024, is checked with ``imageUrl``)."""
Sources = Literal["whatsapp cloud api", "whatsapp coex"]
CountryCode = Annotated[str, Field(min_length=2, max_length=2, pattern="^[A-Za-z]{2}$")]
TemplateName = Annotated[
    str,
    Field(min_length=1, max_length=512, pattern="^[a-z0-9_]+$"),
    AfterValidator(_storable),
]
TemplateParam = Annotated[str, Field(max_length=1024), AfterValidator(_storable)]


class MessageSend(Body):
    to: Phone
    message: MessageText
    sources: Sources = "whatsapp cloud api"
    imageUrl: Url | None = Field(default=None, description="Send an image, `message` its caption")
    ignoreActiveTicket: bool = False
    countryCode: CountryCode | None = Field(
        default=None, description="For a local `to`; the company's country by default"
    )

    @model_validator(mode="after")
    def _caption_fits(self) -> MessageSend:
        if self.imageUrl is not None and len(self.message) > 1024:
            raise ValueError("message: an image's caption is limited to 1024 characters")
        return self


class TemplateSend(Body):
    to: Phone
    template_name: TemplateName
    template_source: Literal["CRM", "AUTH"] = "CRM"
    params: Annotated[list[TemplateParam], Field(max_length=100)] = []
    mediaUrl: Url | None = Field(
        default=None, description="The header image, if the template has one"
    )
    sources: Sources = "whatsapp cloud api"
    ignoreActiveTicket: bool = False
    countryCode: CountryCode | None = None


class TemplateCreate(Body):
    name: TemplateName
    source: Literal["CRM", "AUTH"] = "CRM"
    language: Annotated[str, Field(min_length=2, max_length=15, pattern="^[A-Za-z_]+$")] = "en"
    body: Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_storable)]
    headerMediaUrl: Url | None = None


class TemplateUpdate(Body):
    """Only the fields sent change."""

    source: Literal["CRM", "AUTH"] | None = None
    language: Annotated[str, Field(min_length=2, max_length=15, pattern="^[A-Za-z_]+$")] | None = (
        None
    )
    body: Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_storable)] | None = (
        None
    )
    headerMediaUrl: Url | None = None


class TicketCreate(Body):
    customerId: Name
