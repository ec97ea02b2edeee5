"""Webhook endpoints, events and deliveries as the API and the CLI see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from bitbybit.clock import parse_iso
from bitbybit.delivery.policy import SendResult, signing_secrets
from bitbybit.delivery.ssrf import TargetPolicy, check_url
from bitbybit.errors import Conflict, NotFound, ValidationFailed
from bitbybit.ids import new_id, random_base62
from bitbybit.limits import MAX_PAYLOAD_BYTES
from bitbybit.models import Attempt, Delivery, Endpoint, Event, ListQuery, Page, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate, EndpointUpdate
from bitbybit.services import payloads
from bitbybit.services.samples import SAMPLES
from bitbybit.store import Tx

MAX_ENDPOINTS = 10
T = TypeVar("T")
HOUR_MS = 60 * 60 * 1000


def new_secret() -> str:
    return f"whsec_{random_base62(32)}"


def _vet(platform: Platform, url: str) -> str:
    check_url(url, TargetPolicy.from_settings(platform.settings))
    return url


async def create_endpoint(
    platform: Platform, tenant: Tenant, data: EndpointCreate
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret, which is returned this once."""
    _vet(platform, data.url)
    secret = new_secret()
    now = platform.now()
    endpoint = Endpoint(
        id=new_id("we"),
        url=data.url,
        description=data.description,
        events=sorted(set(data.events or [])),
        status="active",
        secret=platform.secrets.seal(secret),
        next_secret=None,
        next_secret_at=None,
        multi_signature=data.multiSignature,
        exhausted_in_row=0,
        status_reason=None,
        created_at=now,
        updated_at=now,
    )
    async with platform.store.write() as tx:
        if await tx.count_endpoints(tenant.company_id) >= MAX_ENDPOINTS:
            raise ValidationFailed.field(
                "url", f"a company can have at most {MAX_ENDPOINTS} webhook endpoints"
            )
        await tx.insert_endpoint(tenant, endpoint)
    return endpoint, secret


async def _endpoint(tx: Tx, tenant: Tenant, endpoint_id: str, *, lock: bool = False) -> Endpoint:
    """The endpoint or ``NotFound``; ``lock`` when the transaction changes it from what it read
    (else a suspension or a failure counted meanwhile would be written over)."""
    endpoint = await tx.get_endpoint(tenant, endpoint_id, lock=lock)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def get_endpoint(platform: Platform, tenant: Tenant, endpoint_id: str) -> Endpoint:
    async with platform.store.read() as tx:
        return await _endpoint(tx, tenant, endpoint_id)


async def list_endpoints(platform: Platform, tenant: Tenant) -> list[Endpoint]:
    async with platform.store.read() as tx:
        return await tx.list_endpoints(tenant)


async def update_endpoint(
    platform: Platform, tenant: Tenant, endpoint_id: str, data: EndpointUpdate
) -> Endpoint:
    sent = data.model_fields_set
    if "url" in sent and data.url is not None:
        _vet(platform, data.url)
    now = platform.now()
    async with platform.store.write() as tx:
        endpoint = await _endpoint(tx, tenant, endpoint_id, lock=True)
        if "url" in sent and data.url is not None:
            endpoint.url = data.url
        if "events" in sent:
            endpoint.events = sorted(set(data.events or []))
        if "description" in sent:
            endpoint.description = data.description
        if "multiSignature" in sent and data.multiSignature is not None:
            endpoint.multi_signature = data.multiSignature
        if "status" in sent and data.status is not None and data.status != endpoint.status:
            if endpoint.status == "suspended" and data.status == "active":
                raise Conflict("the endpoint is suspended: use POST …/reactivate")
            endpoint.status = data.status
            endpoint.status_reason = (
                "disabled through the API" if data.status == "disabled" else None
            )
            if data.status == "disabled":
                await tx.hold_pending(endpoint.id, now)
        endpoint.updated_at = max(now, endpoint.updated_at + 1)
        await tx.update_endpoint(tenant, endpoint)
    return endpoint


async def delete_endpoint(platform: Platform, tenant: Tenant, endpoint_id: str) -> str:
    async with platform.store.write() as tx:
        if not await tx.delete_endpoint(tenant, endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_id


async def rotate_secret(
    platform: Platform, tenant: Tenant, endpoint_id: str, grace_hours: float
) -> tuple[Endpoint, str]:
    """A new secret, shown now, signing from the end of the grace period (at once for 0)."""
    secret = new_secret()
    now = platform.now()
    async with platform.store.write() as tx:
        endpoint = await _endpoint(tx, tenant, endpoint_id, lock=True)
        rotated = endpoint.next_secret_at is not None and endpoint.next_secret_at <= now
        if endpoint.next_secret is not None and rotated:  # the previous rotation took effect
            endpoint.secret = endpoint.next_secret
        if grace_hours == 0:
            endpoint.secret, endpoint.next_secret, endpoint.next_secret_at = (
                platform.secrets.seal(secret),
                None,
                None,
            )
        else:
            endpoint.next_secret = platform.secrets.seal(secret)
            endpoint.next_secret_at = now + round(grace_hours * HOUR_MS)
        endpoint.updated_at = max(now, endpoint.updated_at + 1)
        await tx.update_endpoint(tenant, endpoint)
    return endpoint, secret


async def reactivate(
    platform: Platform, tenant: Tenant, endpoint_id: str, recover_since: str | None
) -> tuple[Endpoint, int]:
    """Make the endpoint active again and re-queue what was held (and failed since a time)."""
    since = None
    if recover_since is not None:
        try:
            since = parse_iso(recover_since)
        except ValueError:
            raise ValidationFailed.field(
                "recoverSince", "must be an ISO-8601 time such as 2024-01-15T10:30:00.000Z"
            ) from None
    return await reactivate_since(platform, tenant, endpoint_id, since)


async def reactivate_since(
    platform: Platform, tenant: Tenant, endpoint_id: str, since: int | None
) -> tuple[Endpoint, int]:
    """``reactivate`` with the time to recover failed deliveries from in milliseconds (the
    dashboard's form), or ``None`` for the held ones only."""
    now = platform.now()
    async with platform.store.write() as tx:
        endpoint = await _endpoint(tx, tenant, endpoint_id, lock=True)
        endpoint.status, endpoint.status_reason, endpoint.exhausted_in_row = "active", None, 0
        endpoint.updated_at = max(now, endpoint.updated_at + 1)
        await tx.update_endpoint(tenant, endpoint)
        recovered = await tx.requeue(await tx.recoverable(endpoint.id, since), now)
    return endpoint, recovered


async def suspend_endpoint(
    platform: Platform, tenant: Tenant, endpoint_id: str, reason: str
) -> Endpoint:
    """Suspend the endpoint by hand, as the worker does when it keeps failing: its pending
    deliveries are held, and so are those of new events, until it is reactivated (which
    re-queues them). Suspending a suspended endpoint changes nothing."""
    now = platform.now()
    async with platform.store.write() as tx:
        endpoint = await _endpoint(tx, tenant, endpoint_id, lock=True)
        if endpoint.status == "suspended":
            return endpoint
        endpoint.status, endpoint.status_reason = "suspended", reason
        endpoint.updated_at = max(now, endpoint.updated_at + 1)
        await tx.update_endpoint(tenant, endpoint)
        await tx.hold_pending(endpoint.id, now)
    return endpoint


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """An endpoint's attempts over a recent period: how many, how many succeeded, the last."""

    attempts: int = 0
    succeeded: int = 0
    last: Attempt | None = None

    @property
    def success_rate(self) -> float | None:
        """Succeeded attempts / attempts, or ``None`` without attempts."""
        return None if self.attempts == 0 else self.succeeded / self.attempts


HEALTH_WINDOW_MS = 24 * HOUR_MS


async def endpoint_health(
    platform: Platform, tenant: Tenant, endpoint_ids: list[str], window_ms: int = HEALTH_WINDOW_MS
) -> dict[str, EndpointHealth]:
    """The health of each endpoint over the last ``window_ms`` (24 hours), one query for all;
    an endpoint without attempts in that time has an empty ``EndpointHealth``."""
    since = platform.now() - window_ms
    async with platform.store.read() as tx:
        found = await tx.endpoint_health(tenant, endpoint_ids, since)
    return {
        endpoint_id: EndpointHealth(*found[endpoint_id])
        if endpoint_id in found
        else EndpointHealth()
        for endpoint_id in endpoint_ids
    }


@dataclass(frozen=True, slots=True)
class TestAttempt:
    event_id: str
    event_type: str
    result: SendResult

    def resource(self) -> dict[str, Any]:
        """What the API and ``bitbybit endpoints test --json`` show of it."""
        sent = self.result
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "succeeded": sent.succeeded,
            "statusCode": sent.status_code,
            "latencyMs": sent.latency_ms,
            "error": sent.error,
            "responseBody": payloads.response_text(sent.response_body),
        }


async def send_test(
    platform: Platform, tenant: Tenant, endpoint_id: str, event_type: str
) -> TestAttempt:
    """Send a signed sample of ``event_type`` now and return what happened."""
    from bitbybit.delivery.sender import Sender
    from bitbybit.services.events import body_of  # events imports this module

    body = body_of(event_type, SAMPLES[event_type])
    endpoint = await get_endpoint(platform, tenant, endpoint_id)
    now = platform.now()
    secrets = signing_secrets(
        platform.secrets.open(endpoint.secret),
        platform.secrets.open(endpoint.next_secret) if endpoint.next_secret else None,
        endpoint.next_secret_at,
        endpoint.multi_signature,
        now,
    )
    event_id = f"evt_test_{random_base62(20)}"
    sender = Sender(platform.settings)
    try:
        result = await sender.send(endpoint.url, event_id, event_type, body, secrets)
    finally:
        await sender.close()
    return TestAttempt(event_id, event_type, result)


# events --------------------------------------------------------------------------------------


async def list_events(platform: Platform, tenant: Tenant, query: ListQuery) -> Page:
    """A page of events by number, with the exact count of all that match (``total``)."""
    async with platform.store.read(snapshot=True) as tx:
        return await tx.list_events(tenant, query)


@dataclass(frozen=True, slots=True)
class ListCursor:
    """Where a list paged by cursor goes on from, as Stripe's lists do: the page just older than
    the object ``starting_after`` (further down the list, which is newest first), or just newer
    than ``ending_before``; neither: the newest page. Either is the id of an object of the list
    the client was shown."""

    starting_after: str | None = None
    ending_before: str | None = None

    def __post_init__(self) -> None:
        if self.starting_after is not None and self.ending_before is not None:
            raise ValidationFailed.field(
                "endingBefore", "give startingAfter or endingBefore, not both"
            )

    @property
    def id(self) -> str | None:
        return self.starting_after or self.ending_before

    @property
    def parameter(self) -> str:
        return "startingAfter" if self.starting_after is not None else "endingBefore"

    def around(self, place: T | None) -> tuple[T | None, T | None]:
        """``place`` (the cursor object's) as the store's ``before``/``after``."""
        return (place, None) if self.starting_after is not None else (None, place)


@dataclass(frozen=True, slots=True)
class CursorPage:
    """A page of a list paged by cursor: its items in the list's order (newest first) and
    whether there are more beyond them, in the direction paged (older after ``startingAfter``
    and on the newest page, newer before ``endingBefore``). Nothing is counted."""

    items: list[Any]
    limit: int
    has_more: bool


async def list_events_by_cursor(
    platform: Platform,
    tenant: Tenant,
    cursor: ListCursor,
    *,
    event_type: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 20,
) -> CursorPage:
    """A page of events in ``list_events``'s order, next to the cursor's event (which need not
    match the filters, so a client may narrow them as it goes). ``since`` and ``until`` are
    milliseconds, both inclusive. An event id that is not the tenant's is not found (404)."""
    async with platform.store.read() as tx:
        place = None
        if cursor.id is not None:
            place = await tx.event_position(tenant, cursor.id)
            if place is None:
                raise NotFound(f"{cursor.parameter}: no event {cursor.id}")
        before, after = cursor.around(place)
        items, more = await tx.events_from(
            tenant,
            types=() if event_type is None else (event_type,),
            since=since,
            until=until,
            before=before,
            after=after,
            limit=limit,
        )
    return CursorPage(items, limit, more)


async def get_event(
    platform: Platform, tenant: Tenant, event_id: str
) -> tuple[Event, list[Delivery]]:
    async with platform.store.read() as tx:
        event = await tx.get_event(tenant, event_id)
        if event is None:
            raise NotFound(f"no event {event_id}")
        deliveries = await tx.list_deliveries(tenant, event_id=event_id, limit=100)
    return event, deliveries.items


async def replay_event(
    platform: Platform, tenant: Tenant, event_id: str, endpoint_id: str | None
) -> list[str]:
    """Queue the event again (same id, same body) to one endpoint or every subscribed one."""
    now = platform.now()
    async with platform.store.write() as tx:
        # Locked: retention cannot remove it under the deliveries queued here (it skips a
        # locked event), and one it is removing is waited for, then not found.
        event = await tx.get_event(tenant, event_id, lock=True)
        if event is None:
            raise NotFound(f"no event {event_id}")
        if len(event.payload) > MAX_PAYLOAD_BYTES:  # written before the API refused such events
            raise ValidationFailed(
                f"event {event_id} is {len(event.payload):,} bytes; events are limited to "
                f"{MAX_PAYLOAD_BYTES:,} bytes, so it cannot be sent"
            )
        if endpoint_id is not None:
            # locked as a fan-out locks its targets, against a delete or a suspension meanwhile
            endpoint = await tx.get_endpoint(tenant, endpoint_id, lock=True)
            if endpoint is None:
                raise ValidationFailed.field("endpointId", f"no webhook endpoint {endpoint_id}")
            targets = [endpoint]
        else:
            targets = [e for e in await tx.fan_out_targets(tenant) if subscribed(e, event.type)]
        targets = [e for e in targets if e.status != "disabled"]
        return await tx.queue_deliveries(tenant, event, targets, now)


def subscribed(endpoint: Endpoint, event_type: str) -> bool:
    return endpoint.status != "disabled" and (not endpoint.events or event_type in endpoint.events)


async def fan_out(tx: Tx, tenant: Tenant, event: Event, now: int) -> None:
    """Queue ``event`` to every subscribed endpoint, in the caller's transaction (the one that
    wrote the event)."""
    endpoints = [e for e in await tx.fan_out_targets(tenant) if subscribed(e, event.type)]
    if endpoints:
        await tx.queue_deliveries(tenant, event, endpoints, now)


# deliveries ----------------------------------------------------------------------------------


async def list_deliveries(
    platform: Platform,
    tenant: Tenant,
    endpoint_id: str,
    statuses: tuple[str, ...],
    page: int,
    limit: int,
) -> Page:
    """A page of the endpoint's deliveries by number, with the exact count of all that match."""
    async with platform.store.read(snapshot=True) as tx:
        await _endpoint(tx, tenant, endpoint_id)
        return await tx.list_deliveries(
            tenant, endpoint_id=endpoint_id, statuses=statuses, page=page, limit=limit
        )


async def list_deliveries_by_cursor(
    platform: Platform,
    tenant: Tenant,
    endpoint_id: str,
    statuses: tuple[str, ...],
    cursor: ListCursor,
    limit: int = 20,
) -> CursorPage:
    """A page of the endpoint's deliveries in ``list_deliveries``'s order, next to the cursor's
    delivery, which must be one of the endpoint's (404 otherwise) but need not be in
    ``statuses`` any longer: a delivery that settled while a client paged still marks its
    place."""
    async with platform.store.read() as tx:
        await _endpoint(tx, tenant, endpoint_id)
        place = None
        if cursor.id is not None:
            place = await tx.delivery_position(tenant, cursor.id, endpoint_id=endpoint_id)
            if place is None:
                raise NotFound(
                    f"{cursor.parameter}: no delivery {cursor.id} to webhook endpoint {endpoint_id}"
                )
        before, after = cursor.around(place)
        items, more = await tx.delivery_history(
            tenant,
            endpoint_id=endpoint_id,
            statuses=statuses,
            before=before,
            after=after,
            limit=limit,
        )
    return CursorPage(items, limit, more)


async def get_delivery(
    platform: Platform, tenant: Tenant, delivery_id: str
) -> tuple[Delivery, list[Attempt]]:
    async with platform.store.read() as tx:
        delivery = await tx.get_delivery(tenant, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        return delivery, await tx.list_attempts(delivery_id)


async def retry_delivery(platform: Platform, tenant: Tenant, delivery_id: str) -> Delivery:
    """Send a delivery again now (a new series of attempts)."""
    now = platform.now()
    async with platform.store.write() as tx:
        delivery = await tx.get_delivery(tenant, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        endpoint = await _endpoint(tx, tenant, delivery.endpoint_id, lock=True)
        if endpoint.status != "active":
            raise Conflict(f"the endpoint is {endpoint.status}: reactivate it first")
        if delivery.status != "pending":
            await tx.requeue([delivery_id], now)
        updated = await tx.get_delivery(tenant, delivery_id)
    assert updated is not None  # it was there a moment ago in this transaction
    return updated


def payload_json(event: Event) -> Any:
    return orjson.loads(event.payload)
