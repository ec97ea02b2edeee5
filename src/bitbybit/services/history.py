"""Delivery and event history as the dashboard shows it: filtered, newest first, paged by a
keyset cursor, a chart of deliveries and failures per minute, and each attempt's request.

Pages go by ``(created_at, id)``: "older" asks for the rows before the last one shown, "newer"
for the rows just after the first one shown. There is no page number, no ``OFFSET`` and no
``COUNT(*)`` over the deliveries: a company with a million of them pages as fast at the
thousandth page as at the first (bench/bench_dashboard.py measures it).

The chart counts deliveries by the minute they were *created* (the event's minute, or the
minute of a replay), from one grouped query over ``deliveries_history``; a delivery counts as a
failure when it has failed or its latest attempt failed (it is being retried or was held after
failing). Counting attempts instead would put a retry in the minute it ran, but attempts carry
no company, so that query would read every company's attempts of the period.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from bitbybit.delivery.policy import signing_secrets
from bitbybit.errors import ConfigurationError, NotFound, ValidationFailed
from bitbybit.models import Attempt, Delivery, Endpoint, Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import payloads, webhooks
from bitbybit.services.events import EVENT_TYPES
from bitbybit.services.operators import DELIVERY_STATUSES
from bitbybit.webhooks.signing import SIGNATURE_HEADER, webhook_headers

PAGE_SIZE: Final = 50
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
CHART_HOURS: Final = (1, 24)
"""The fewest and the most hours the chart covers."""
_CURSOR = re.compile(r"(\d{1,15}):([A-Za-z0-9_]{1,64})")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in a list: the row's creation time and id (``1733131800000:dlv_…``)."""

    created_at: int
    id: str

    def __str__(self) -> str:
        return f"{self.created_at}:{self.id}"

    @property
    def key(self) -> tuple[int, str]:
        return self.created_at, self.id

    @classmethod
    def parse(cls, text: str, name: str) -> Cursor:
        """``text`` as a cursor, or a validation error naming the parameter ``name``."""
        found = _CURSOR.fullmatch(text.strip())
        if found is None:
            raise ValidationFailed.field(
                name, "is not a place in the list (expected <milliseconds>:<id>)"
            )
        return cls(int(found.group(1)), found.group(2))


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """One page of a list paged by cursor: its rows, newest first, and where the pages just
    newer and just older than it start (``None``: there is none)."""

    items: list[T]
    newer: Cursor | None = None
    older: Cursor | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    """What the delivery history is narrowed to; times are milliseconds, ``until`` exclusive."""

    endpoint_id: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: int | None = None
    until: int | None = None

    @property
    def active(self) -> bool:
        return any(
            value is not None
            for value in (self.endpoint_id, self.event_type, self.status, self.since, self.until)
        )


def _check_type(event_type: str | None) -> None:
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ValidationFailed.field(
            "type", f"unknown event type {event_type!r}; use one of {', '.join(EVENT_TYPES)}"
        )


def _check(filters: DeliveryFilters) -> None:
    _check_type(filters.event_type)
    if filters.status is not None and filters.status not in DELIVERY_STATUSES:
        raise ValidationFailed.field(
            "status", f"unknown status {filters.status!r}; use {', '.join(DELIVERY_STATUSES)}"
        )
    since, until = filters.since, filters.until
    if since is not None and until is not None and since >= until:
        raise ValidationFailed.field("to", "must be later than from")


def _key(row: Delivery | Event) -> Cursor:
    return Cursor(row.created_at, row.id)


def _slice(
    items: list[T],
    more: bool,
    before: Cursor | None,
    after: Cursor | None,
    key: Callable[[T], Cursor],
) -> Slice[T]:
    """The links of a page read newest first (``after``: read oldest first, then reversed)."""
    if after is not None:
        return Slice(
            items,
            newer=key(items[0]) if more and items else None,
            older=key(items[-1]) if items else after,
        )
    return Slice(
        items,
        newer=(key(items[0]) if items else before) if before is not None else None,
        older=key(items[-1]) if more and items else None,
    )


async def delivery_history(
    platform: Platform,
    tenant: Tenant,
    filters: DeliveryFilters,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Slice[Delivery]:
    """A page of the tenant's deliveries matching ``filters``, newest first: the newest, the
    ones older than ``before`` or the ones just newer than ``after``. Paging newer up to the
    newest shows the newest page whole. An endpoint of another company is unknown here."""
    _check(filters)
    if before is not None and after is not None:
        raise ValidationFailed("ask for the page before a place or after it, not both")
    statuses = () if filters.status is None else (filters.status,)

    async with platform.store.read() as tx:
        endpoint_id = filters.endpoint_id
        if endpoint_id is not None and await tx.get_endpoint(tenant, endpoint_id) is None:
            raise ValidationFailed.field("endpoint", f"no webhook endpoint {endpoint_id}")

        async def read(before: Cursor | None, after: Cursor | None) -> tuple[list[Delivery], bool]:
            return await tx.delivery_history(
                tenant,
                endpoint_id=filters.endpoint_id,
                event_type=filters.event_type,
                statuses=statuses,
                since=filters.since,
                until=filters.until,
                before=None if before is None else before.key,
                after=None if after is None else after.key,
                limit=limit,
            )

        items, more = await read(before, after)
        if after is not None and not more and len(items) < limit:
            items, more = await read(None, None)  # back at the newest: the newest page, whole
            after = None
    return _slice(items, more, before, after, _key)


async def event_history(
    platform: Platform,
    tenant: Tenant,
    event_type: str | None = None,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Slice[Event]:
    """A page of the tenant's events (of ``event_type``), newest first, paged like
    ``delivery_history``."""
    _check_type(event_type)
    if before is not None and after is not None:
        raise ValidationFailed("ask for the page before a place or after it, not both")
    async with platform.store.read() as tx:

        async def read(before: Cursor | None, after: Cursor | None) -> tuple[list[Event], bool]:
            return await tx.event_history(
                tenant,
                event_type=event_type,
                before=None if before is None else before.key,
                after=None if after is None else after.key,
                limit=limit,
            )

        items, more = await read(before, after)
        if after is not None and not more and len(items) < limit:
            items, more = await read(None, None)
            after = None
    return _slice(items, more, before, after, _key)


# -- the chart ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chart:
    """Deliveries created and failing per minute over the last ``hours``, oldest minute first;
    the last minute is the current one (still filling)."""

    hours: int
    minutes: list[int]
    """Each minute's start, in milliseconds."""
    deliveries: list[int]
    failures: list[int]

    @property
    def data(self) -> dict[str, list[int]]:
        """What the page's script draws (``data-chart``): times in unix seconds."""
        return {
            "t": [minute // 1000 for minute in self.minutes],
            "deliveries": self.deliveries,
            "failures": self.failures,
        }

    @property
    def total(self) -> int:
        return sum(self.deliveries)

    @property
    def failed(self) -> int:
        return sum(self.failures)

    @property
    def busiest(self) -> tuple[int, int] | None:
        """The minute with the most deliveries and how many (the earliest of equals)."""
        if self.total == 0:
            return None
        most = max(self.deliveries)
        return self.minutes[self.deliveries.index(most)], most

    @property
    def step(self) -> str:
        """What a row of ``figures`` covers: a minute, or an hour over more than 3 hours."""
        return "minute" if self.hours <= 3 else "hour"

    @property
    def figures(self) -> list[tuple[int, int, int]]:
        """(start in ms, deliveries, failures) of each ``step`` with deliveries, oldest first:
        the chart as text, for reading without the drawing (a screen reader, no script)."""
        size = MINUTE_MS if self.step == "minute" else HOUR_MS
        grouped: dict[int, tuple[int, int]] = {}
        for minute, count, failed in zip(self.minutes, self.deliveries, self.failures, strict=True):
            if count:
                start = minute // size * size
                before = grouped.get(start, (0, 0))
                grouped[start] = (before[0] + count, before[1] + failed)
        return [(start, count, failed) for start, (count, failed) in grouped.items()]


def chart_hours(text: str | None, default: int = 3) -> int:
    """``?hours=`` as a whole number of hours from 1 to 24 (``default`` when absent)."""
    if text is None or not text.strip():
        return default
    low, high = CHART_HOURS
    try:
        hours = int(text)
    except ValueError:
        hours = 0
    if not low <= hours <= high:
        raise ValidationFailed.field("hours", f"must be a whole number from {low} to {high}")
    return hours


async def delivery_chart(platform: Platform, tenant: Tenant, hours: int = 3) -> Chart:
    """Deliveries and failures per minute over the last ``hours`` (1 to 24), zeros included."""
    low, high = CHART_HOURS
    if not low <= hours <= high:
        raise ValidationFailed.field("hours", f"must be a whole number from {low} to {high}")
    now = platform.now()
    last = now // MINUTE_MS * MINUTE_MS
    first = last - (hours * 60 - 1) * MINUTE_MS
    async with platform.store.read() as tx:
        rows = await tx.delivery_chart(tenant, first, last + MINUTE_MS)
    counted = {minute: (count, failed) for minute, count, failed in rows}
    minutes = list(range(first, last + MINUTE_MS, MINUTE_MS))
    return Chart(
        hours,
        minutes,
        [counted.get(minute, (0, 0))[0] for minute in minutes],
        [counted.get(minute, (0, 0))[1] for minute in minutes],
    )


# -- one delivery, one event -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentAttempt:
    """An attempt and the request it sent.

    The headers are rebuilt with ``webhook_headers``, the function the sender signs with:
    ``X-BitByBit-Webhook-Timestamp`` is the attempt's start in unix seconds, as sent. Signing
    secrets are not kept per attempt, so the signature is *recomputed* with the endpoint's
    secret(s) of today, chosen as the sender would have chosen them at the attempt's start
    (rotation and ``multiSignature`` included): it is the header that was sent unless the secret
    was rotated since. ``signature_recomputed`` says so on the page; when no secret can be
    opened (the secret key changed) the header is shown without a value. The page shows the
    signature to admins alone: it is valid for that body and timestamp, so whoever sees it
    could replay the request within a receiver's five-minute tolerance.
    """

    attempt: Attempt
    headers: list[tuple[str, str]]
    signature_recomputed: bool

    @property
    def response_text(self) -> str | None:
        return payloads.response_text(self.attempt.response_body)


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    delivery: Delivery
    event: Event
    endpoint: Endpoint
    attempts: list[SentAttempt]
    secret_problem: str | None = None
    """Why the signature could not be recomputed, if it could not."""

    @property
    def body_text(self) -> str:
        """The request body as sent (the event's bytes, the same for every attempt)."""
        return self.event.payload.decode("utf-8", "replace")


def _sent(
    platform: Platform, endpoint: Endpoint, event: Event, attempts: list[Attempt]
) -> tuple[list[SentAttempt], str | None]:
    current: str | None
    rotated_to: str | None
    problem: str | None
    try:
        current = platform.secrets.open(endpoint.secret)
        rotated_to = platform.secrets.open(endpoint.next_secret) if endpoint.next_secret else None
    except ConfigurationError as error:
        current, rotated_to, problem = None, None, str(error)
    else:
        problem = None
    sent = []
    for attempt in attempts:
        timestamp = attempt.started_at // 1000
        if current is None:
            headers = webhook_headers(event.id, event.type, event.payload, "-", timestamp)
            headers[SIGNATURE_HEADER] = ""
        else:
            secrets = signing_secrets(
                current,
                rotated_to,
                endpoint.next_secret_at,
                endpoint.multi_signature,
                attempt.started_at,
            )
            headers = webhook_headers(event.id, event.type, event.payload, secrets, timestamp)
        sent.append(SentAttempt(attempt, list(headers.items()), current is not None))
    return sent, problem


async def delivery_detail(platform: Platform, tenant: Tenant, delivery_id: str) -> DeliveryDetail:
    """A delivery of the tenant with its event, endpoint and every attempt's request."""
    async with platform.store.read() as tx:
        delivery = await tx.get_delivery(tenant, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        event = await tx.get_event(tenant, delivery.event_id)
        endpoint = await tx.get_endpoint(tenant, delivery.endpoint_id)
        attempts = await tx.list_attempts(delivery.id)
    if event is None or endpoint is None:  # a delivery's event and endpoint outlive it
        raise NotFound(f"no delivery {delivery_id}")
    sent, problem = _sent(platform, endpoint, event, attempts)
    return DeliveryDetail(delivery, event, endpoint, sent, problem)


@dataclass(frozen=True, slots=True)
class EventDetail:
    event: Event
    deliveries: list[Delivery]
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    """The tenant's endpoints by id (to name a delivery's, and to replay to one)."""

    @property
    def payload_text(self) -> str:
        """The payload pretty-printed (key order kept), or as stored if it is not JSON."""
        text = self.event.payload.decode("utf-8", "replace")
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text


async def event_detail(platform: Platform, tenant: Tenant, event_id: str) -> EventDetail:
    """An event of the tenant and its deliveries (newest first, at most 100)."""
    event, deliveries = await webhooks.get_event(platform, tenant, event_id)
    endpoints = await webhooks.list_endpoints(platform, tenant)
    return EventDetail(event, deliveries, {endpoint.id: endpoint for endpoint in endpoints})
