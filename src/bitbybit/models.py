"""Domain records: what the store returns and the services work with.

Plain frozen dataclasses; money is kept in integer hundredths (``price_cents``) so sums are exact,
JSON-shaped sub-documents (addresses, line items, media) are kept as the dicts they are sent as.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Mode = Literal["live", "test"]
Role = Literal["admin", "viewer"]
JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    country: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    company_id: str
    mode: Mode
    prefix: str
    scopes: frozenset[str]
    ip_allowlist: tuple[str, ...]
    name: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    ip_labels: dict[str, str] = field(default_factory=dict)
    """A label per allowlist entry (``{"203.0.113.0/24": "office"}``), shown by the dashboard."""

    def usable_at(self, now: int) -> bool:
        """Neither revoked nor past its expiry (a rotated key's grace period ends)."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in to one company's dashboard; a viewer looks but changes nothing."""

    id: str
    company_id: str
    email: str
    role: Role
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A signed-in browser: whose it is, its CSRF token, the mode it shows, and when it ends."""

    user: User
    csrf_token: str
    mode: Mode
    created_at: int
    last_seen_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Tenant:
    """Whose data a request sees: one company in one mode."""

    company_id: str
    mode: Mode


@dataclass(slots=True)
class Customer:
    id: str
    email: str | None
    phone_number: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None
    tags: list[str]
    addresses: list[JSON]
    source: str
    created_at: int
    updated_at: int


@dataclass(slots=True)
class Variant:
    id: str
    key: str
    price_cents: int
    compare_at_price_cents: int | None
    inventory_sku: str | None
    media: Any = None


@dataclass(slots=True)
class Product:
    id: str
    product_id: str
    name: str
    description: str | None
    media: Any
    status: str | None
    variants: list[Variant]
    options: list[Any]
    tags: list[str]
    types: list[str]
    created_at: int
    updated_at: int


@dataclass(slots=True)
class Order:
    id: str
    order_id: str
    order_number: int
    status: str
    fulfillment_status: str
    financial_status: str
    total_cents: int
    currency: str | None
    customer_id: str | None
    customer: JSON | None
    line_items: list[JSON]
    shipping_address: JSON | None
    notes: str | None
    tags: list[str]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    payload: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list and how many there are in all."""

    items: list[Any]
    total: int
    page: int
    limit: int

    @property
    def has_next_page(self) -> bool:
        return self.page * self.limit < self.total


@dataclass(frozen=True, slots=True)
class ListQuery:
    page: int = 1
    limit: int = 20
    search: str | None = None
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sort_field: str = "updated_at"
    sort_desc: bool = True


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for ``Idempotency-Key`` replay."""

    request_hash: str
    status_code: int
    body: bytes
    created_at: int


@dataclass(slots=True)
class Endpoint:
    """A webhook endpoint; ``secret`` and ``next_secret`` are kept encrypted."""

    id: str
    url: str
    description: str | None
    events: list[str]
    status: str
    secret: str
    next_secret: str | None
    next_secret_at: int | None
    multi_signature: bool
    exhausted_in_row: int
    status_reason: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    """An endpoint's signing secrets as stored (encrypted), for checking and rotating the key."""

    endpoint_id: str
    tenant: Tenant
    secret: str
    next_secret: str | None

    @property
    def tokens(self) -> list[str]:
        return [self.secret] if self.next_secret is None else [self.secret, self.next_secret]


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: int
    latency_ms: int
    status_code: int | None
    error: str | None
    response_body: bytes | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: int
    last_status_code: int | None
    last_error: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job of a channel other than webhooks (``jobs``), as stored: its own record of status
    and attempts, like a delivery's."""

    id: str
    kind: str
    target: str
    payload: bytes
    status: str
    """``pending`` while queued, then ``succeeded`` or ``failed``."""
    attempts: int
    next_attempt_at: int
    last_status_code: int | None
    last_error: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job with everything its channel needs to send it (``delivery.channel``).

    Every kind has the first five fields; a webhook delivery also has its event and its
    endpoint's URL and sealed secrets (empty for other kinds, whose ``payload`` is all they
    carry)."""

    delivery_id: str
    """The job's id: a delivery's for a webhook, a ``jobs`` row's for other kinds."""
    kind: str
    """The channel that sends it."""
    target: str
    """What concurrency caps and pacing count against: the endpoint, for a webhook."""
    attempts: int
    """Attempts made before this one."""
    payload: bytes
    event_id: str = ""
    event_type: str = ""
    url: str = ""
    secret: str = ""
    next_secret: str | None = None
    next_secret_at: int | None = None
    multi_signature: bool = False


WEBHOOK = "webhook"
"""The kind of a webhook delivery's job."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One finished attempt and what it decided for its delivery."""

    delivery_id: str
    target: str
    number: int
    started_at: int
    latency_ms: int
    status_code: int | None
    error: str | None
    response_body: bytes | None
    status: str
    """The delivery's new status: ``succeeded``, ``pending`` (retry) or ``failed``."""
    next_attempt_at: int
    gone: bool = False
    """The endpoint answered 410 Gone: suspend it."""
    ours: bool = False
    """It failed for a reason of the platform's own: it never counts toward suspension."""
    kind: str = WEBHOOK
    deferred: bool = False
    """Not an attempt: the channel put the job off (``number`` is the attempts made so far);
    nothing goes into its history."""


class SuspensionRule(Protocol):
    """When results suspend their endpoint (``delivery.policy.SUSPENSION``); the store applies
    it while it records them, in the same transaction."""

    def counts(self, result: AttemptResult) -> bool:
        """Whether ``result`` adds one to its endpoint's run of events that exhausted every
        retry."""
        ...

    def reason(self, result: AttemptResult, exhausted_in_row: int | None) -> str | None:
        """Why the endpoint is suspended after ``result`` (with its run of exhausted events,
        when ``counts`` said to count it), or ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording a batch of attempt results did."""

    suspended: list[str]
    """Endpoints the batch suspended."""
    vanished: list[str]
    """Deliveries that no longer exist (their endpoint was deleted while they were attempted):
    nothing of theirs was recorded."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    pending: int
    due: int
    oldest_due_at: int | None


# -- messaging (ADR 0009) ------------------------------------------------------------------------

WHATSAPP = "whatsapp"
"""The kind of an outbound message's job (``channels.messaging``)."""
WHATSAPP_RECEIPT = "whatsapp-receipt"
"""The kind of a sandbox status receipt's job: the sandbox's stand-in for Meta's callbacks."""

STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3}
"""How far an outbound message has got; a status only ever moves up (``failed`` is final)."""


@dataclass(frozen=True, slots=True)
class WhatsAppNumber:
    """A company's WhatsApp Business number on the Cloud API; the access token and app secret
    are kept sealed (encrypted), the verify token only as a hash."""

    phone_number_id: str
    company_id: str
    source: str
    """``whatsapp cloud api`` or ``whatsapp coex`` (a coexistence number, paced slower)."""
    waba_id: str | None
    access_token: str
    app_secret: str
    verify_token_hash: str
    pace: float | None
    """Messages a second this number may send; ``None``: the default for its source."""
    created_at: int
    updated_at: int


@dataclass(slots=True)
class Template:
    name: str
    source: str
    """``CRM`` or ``AUTH``."""
    language: str
    body: str
    """With ``{{1}}``, ``{{2}}``, … placeholders, numbered from 1 without gaps."""
    header_media_url: str | None
    param_count: int
    created_at: int
    updated_at: int


@dataclass(slots=True)
class Ticket:
    """An agent's ticket on a customer: while it is open, automated sends are refused unless
    they say ``ignoreActiveTicket``."""

    id: str
    customer_id: str
    status: str
    """``open`` or ``closed``."""
    opened_at: int
    closed_at: int | None
    updated_at: int


@dataclass(slots=True)
class Message:
    """A WhatsApp message either way. ``phone`` is always the customer's number."""

    id: str
    direction: str
    """``in`` (from the customer) or ``out`` (sent through the API)."""
    phone: str
    customer_id: str | None
    type: str
    """``text``, ``image``, ``template``; inbound also ``audio``, ``document``, ``location``, …"""
    body: str | None
    """The text; for a template its rendered body; for inbound media the caption or a
    placeholder such as ``[image]``."""
    media_url: str | None
    media_id: str | None
    template_name: str | None
    template_source: str | None
    params: list[str]
    source: str
    """The channel code: ``SANDBOX``, ``WHATSAPP_META`` or ``WHATSAPP_COEX``."""
    status: str
    """Outbound: ``accepted``, ``sent``, ``delivered``, ``read`` or ``failed``; inbound:
    ``received``."""
    error_code: int | None
    error_message: str | None
    wa_id: str | None
    """WhatsApp's id of the message (``wamid.…``), once known."""
    job_id: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status reported for an outbound message, as kept in its history."""

    status: str
    at: int
    error_code: int | None = None
    error_message: str | None = None
    applied: bool = True
    """It moved the message forward (a late or repeated report is kept but changes nothing)."""
