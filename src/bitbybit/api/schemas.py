"""Response shapes for the OpenAPI document (the handlers render with orjson directly)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Meta(BaseModel):
    page: int
    limit: int
    total: int
    hasNextPage: bool


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
    meta: Meta


class EventOut(BaseModel):
    id: str
    type: str
    createdAt: str
    payload: Any


class EventDetail(EventOut):
    deliveries: list[DeliveryOut]


class EventList(BaseModel):
    data: list[EventOut]
    meta: Meta


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
