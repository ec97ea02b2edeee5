"""``/webhooks``, ``/events``, ``/deliveries``: SPEC §3 "Webhooks, events, deliveries"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, get_args

import orjson
from fastapi import APIRouter, Query, Request, Response

from bitbybit.api import schemas as out
from bitbybit.api.deps import (
    JSON_TYPE,
    Limit,
    PageNumber,
    PlatformDep,
    WebhooksRead,
    WebhooksWrite,
    many,
    one,
    split,
)
from bitbybit.api.routes import (
    WRITE,
    Route,
    by_id,
    comma_list_query,
    errors,
    in_body,
    links,
    time_query,
)
from bitbybit.clock import iso, parse_iso
from bitbybit.errors import ValidationFailed
from bitbybit.models import ListQuery, Page
from bitbybit.schemas import (
    EndpointCreate,
    EndpointUpdate,
    EventType,
    Reactivate,
    Replay,
    RotateSecret,
    TestSend,
)
from bitbybit.services import payloads, webhooks
from bitbybit.services.events import EVENT_TYPES

router = APIRouter(tags=["webhooks"], route_class=Route)
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "held")


def cursor_query(alias: str, prefix: str, what: str, direction: str) -> Any:
    """``startingAfter`` or ``endingBefore``: the id of an object of the list (docs/api.md,
    "Pagination")."""
    return Query(
        alias=alias,
        min_length=len(prefix) + 2,
        max_length=64,
        pattern=f"^{prefix}_[0-9A-Za-z]+$",
        description=f"The id of {what} of this list: the page just {direction} it, newest "
        "first; no count is made. Not with `page`, nor with the other cursor",
    )


def by_cursor(request: Request, starting_after: str | None, ending_before: str | None) -> bool:
    """Whether the list is asked for by cursor; 400 for a cursor with a page number (the two
    cursors together are refused by ``webhooks.ListCursor``)."""
    if starting_after is None and ending_before is None:
        return False
    if "page" in request.query_params:
        raise ValidationFailed.field(
            "page",
            "a page number and a cursor (startingAfter, endingBefore) cannot be combined; "
            "page by one or the other",
        )
    return True


def many_by_cursor(found: webhooks.CursorPage, render: Callable[[Any], Any]) -> Response:
    body = {
        "data": [render(item) for item in found.items],
        "meta": {"limit": found.limit, "hasMore": found.has_more},
    }
    return Response(orjson.dumps(body), media_type=JSON_TYPE)


@router.get(
    "/webhooks",
    response_model=out.WebhookEndpointList,
    responses=errors(),
    operation_id="listWebhooks",
)
async def list_webhooks(
    platform: PlatformDep, who: WebhooksRead, page: PageNumber = 1, limit: Limit = 20
) -> Response:
    """Oldest first, paged like every list (a company has at most ten endpoints, so the page is
    cut from the whole list, read at one instant)."""
    endpoints = await webhooks.list_endpoints(platform, who.tenant)
    now = platform.now()
    start = (page - 1) * limit
    shown = Page(endpoints[start : start + limit], len(endpoints), page, limit)
    return many(shown, lambda endpoint: payloads.endpoint(endpoint, now))


@router.post(
    "/webhooks",
    status_code=201,
    response_model=out.WebhookEndpointSecretEnvelope,
    responses={
        **errors(*WRITE),
        **links(
            201,
            by_id(
                "/data/id",
                "endpoint_id",
                "getWebhook",
                "updateWebhook",
                "deleteWebhook",
                "testWebhook",
                "rotateWebhookSecret",
                "reactivateWebhook",
                "listDeliveries",
            ),
            in_body("/data/id", "endpointId", "replayEvent"),
        ),
    },
    operation_id="createWebhook",
)
async def create_webhook(
    body: EndpointCreate, platform: PlatformDep, who: WebhooksWrite
) -> Response:
    endpoint, secret = await webhooks.create_endpoint(platform, who.tenant, body)
    return one({**payloads.endpoint(endpoint, platform.now()), "secret": secret}, 201)


@router.get(
    "/webhooks/{endpoint_id}",
    response_model=out.WebhookEndpointEnvelope,
    responses=errors(404),
    operation_id="getWebhook",
)
async def get_webhook(endpoint_id: str, platform: PlatformDep, who: WebhooksRead) -> Response:
    endpoint = await webhooks.get_endpoint(platform, who.tenant, endpoint_id)
    return one(payloads.endpoint(endpoint, platform.now()))


@router.put(
    "/webhooks/{endpoint_id}",
    response_model=out.WebhookEndpointEnvelope,
    responses=errors(404, *WRITE),
    operation_id="updateWebhook",
)
async def update_webhook(
    endpoint_id: str, body: EndpointUpdate, platform: PlatformDep, who: WebhooksWrite
) -> Response:
    endpoint = await webhooks.update_endpoint(platform, who.tenant, endpoint_id, body)
    return one(payloads.endpoint(endpoint, platform.now()))


@router.delete(
    "/webhooks/{endpoint_id}",
    response_model=out.DeletedEnvelope,
    responses=errors(404),
    operation_id="deleteWebhook",
)
async def delete_webhook(endpoint_id: str, platform: PlatformDep, who: WebhooksWrite) -> Response:
    return one(payloads.deleted(await webhooks.delete_endpoint(platform, who.tenant, endpoint_id)))


@router.post(
    "/webhooks/{endpoint_id}/test",
    response_model=out.TestAttemptEnvelope,
    responses=errors(404, *WRITE),
    operation_id="testWebhook",
)
async def send_test_webhook(
    endpoint_id: str, platform: PlatformDep, who: WebhooksWrite, body: TestSend | None = None
) -> Response:
    event_type = (body or TestSend()).eventType
    attempt = await webhooks.send_test(platform, who.tenant, endpoint_id, event_type)
    return one(attempt.resource())


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    response_model=out.RotatedSecretEnvelope,
    responses=errors(404, *WRITE),
    operation_id="rotateWebhookSecret",
)
async def rotate_webhook_secret(
    endpoint_id: str, platform: PlatformDep, who: WebhooksWrite, body: RotateSecret | None = None
) -> Response:
    grace = (body or RotateSecret()).graceHours
    endpoint, secret = await webhooks.rotate_secret(platform, who.tenant, endpoint_id, grace)
    effective = endpoint.next_secret_at or endpoint.updated_at
    return one({"id": endpoint.id, "secret": secret, "effectiveAt": iso(effective)})


@router.post(
    "/webhooks/{endpoint_id}/reactivate",
    response_model=out.ReactivatedEnvelope,
    responses=errors(404, *WRITE),
    operation_id="reactivateWebhook",
)
async def reactivate_webhook(
    endpoint_id: str, platform: PlatformDep, who: WebhooksWrite, body: Reactivate | None = None
) -> Response:
    since = (body or Reactivate()).recoverSince
    endpoint, recovered = await webhooks.reactivate(platform, who.tenant, endpoint_id, since)
    return one({**payloads.endpoint(endpoint, platform.now()), "recovered": recovered})


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    response_model=out.DeliveryList,
    responses={
        **errors(404),
        **links(200, by_id("/data/0/id", "delivery_id", "getDelivery", "retryDelivery")),
    },
    operation_id="listDeliveries",
)
async def list_webhook_deliveries(
    request: Request,
    endpoint_id: str,
    platform: PlatformDep,
    who: WebhooksRead,
    page: PageNumber = 1,
    limit: Limit = 20,
    status: Annotated[str | None, comma_list_query(DELIVERY_STATUSES)] = None,
    starting_after: Annotated[
        str | None, cursor_query("startingAfter", "dlv", "a delivery", "older than")
    ] = None,
    ending_before: Annotated[
        str | None, cursor_query("endingBefore", "dlv", "a delivery", "newer than")
    ] = None,
) -> Response:
    """Newest first. By page number, with the exact `total`; or by cursor (`startingAfter`,
    `endingBefore`: a delivery of this endpoint, whatever its status now), with `hasMore` and
    no count, as fast on the thousandth page as on the first."""
    statuses = split(status)
    for value in statuses:
        if value not in DELIVERY_STATUSES:
            raise ValidationFailed.field(
                "status", f"unknown status {value!r}; use {', '.join(DELIVERY_STATUSES)}"
            )
    if by_cursor(request, starting_after, ending_before):
        cursor = webhooks.ListCursor(starting_after, ending_before)
        shown = await webhooks.list_deliveries_by_cursor(
            platform, who.tenant, endpoint_id, statuses, cursor, limit
        )
        return many_by_cursor(shown, payloads.delivery)
    found = await webhooks.list_deliveries(platform, who.tenant, endpoint_id, statuses, page, limit)
    return many(found, payloads.delivery)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=out.DeliveryDetailEnvelope,
    responses={
        **errors(404),
        **links(
            200,
            by_id("/data/id", "delivery_id", "retryDelivery"),
            by_id("/data/eventId", "event_id", "getEvent", "replayEvent"),
        ),
    },
    operation_id="getDelivery",
)
async def get_delivery(delivery_id: str, platform: PlatformDep, who: WebhooksRead) -> Response:
    delivery, attempts = await webhooks.get_delivery(platform, who.tenant, delivery_id)
    return one({**payloads.delivery(delivery), "attempts": [payloads.attempt(a) for a in attempts]})


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=out.DeliveryEnvelope,
    responses=errors(404, *WRITE),
    operation_id="retryDelivery",
)
async def retry_delivery(delivery_id: str, platform: PlatformDep, who: WebhooksWrite) -> Response:
    return one(payloads.delivery(await webhooks.retry_delivery(platform, who.tenant, delivery_id)))


def _time(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(parse_iso(value))
    except ValueError:
        raise ValidationFailed.field(field, "must be an ISO-8601 time") from None


@router.get(
    "/events",
    response_model=out.EventList,
    responses={
        **errors(404),
        **links(200, by_id("/data/0/id", "event_id", "getEvent", "replayEvent")),
    },
    operation_id="listEvents",
)
async def list_events(
    request: Request,
    platform: PlatformDep,
    who: WebhooksRead,
    page: PageNumber = 1,
    limit: Limit = 20,
    type: Annotated[EventType | None, Query(description="One event type")] = None,
    since: Annotated[str | None, time_query("From, inclusive", max_length=40)] = None,
    until: Annotated[str | None, time_query("Until, inclusive", max_length=40)] = None,
    starting_after: Annotated[
        str | None, cursor_query("startingAfter", "evt", "an event", "older than")
    ] = None,
    ending_before: Annotated[
        str | None, cursor_query("endingBefore", "evt", "an event", "newer than")
    ] = None,
) -> Response:
    """Newest first (the events of one change in the order written). By page number, with the
    exact `total`; or by cursor (`startingAfter`, `endingBefore`: an event of this company and
    mode, matching the filters or not), with `hasMore` and no count."""
    times = {name: _time(name, value) for name, value in (("since", since), ("until", until))}
    if by_cursor(request, starting_after, ending_before):
        cursor = webhooks.ListCursor(starting_after, ending_before)
        shown = await webhooks.list_events_by_cursor(
            platform,
            who.tenant,
            cursor,
            event_type=type,
            since=_ms(times["since"]),
            until=_ms(times["until"]),
            limit=limit,
        )
        return many_by_cursor(shown, payloads.event)
    filters: dict[str, tuple[str, ...]] = {"type": (type,) if type else ()}
    for name, parsed in times.items():
        if parsed is not None:
            filters[name] = (parsed,)
    query = ListQuery(page=page, limit=limit, filters={k: v for k, v in filters.items() if v})
    return many(await webhooks.list_events(platform, who.tenant, query), payloads.event)


def _ms(parsed: str | None) -> int | None:
    return None if parsed is None else int(parsed)


@router.get(
    "/events/{event_id}",
    response_model=out.EventDetailEnvelope,
    responses={
        **errors(404),
        **links(
            200,
            by_id("/data/id", "event_id", "replayEvent"),
            by_id("/data/deliveries/0/id", "delivery_id", "getDelivery", "retryDelivery"),
        ),
    },
    operation_id="getEvent",
)
async def get_event(event_id: str, platform: PlatformDep, who: WebhooksRead) -> Response:
    event, deliveries = await webhooks.get_event(platform, who.tenant, event_id)
    return one({**payloads.event(event), "deliveries": [payloads.delivery(d) for d in deliveries]})


@router.post(
    "/events/{event_id}/replay",
    response_model=out.ReplayedEnvelope,
    responses={
        **errors(404, *WRITE),
        **links(200, by_id("/data/deliveryIds/0", "delivery_id", "getDelivery", "retryDelivery")),
    },
    operation_id="replayEvent",
)
async def replay_event(
    event_id: str, platform: PlatformDep, who: WebhooksWrite, body: Replay | None = None
) -> Response:
    endpoint_id = (body or Replay()).endpointId
    created = await webhooks.replay_event(platform, who.tenant, event_id, endpoint_id)
    return one({"eventId": event_id, "deliveryIds": created})


assert set(EVENT_TYPES) == set(get_args(EventType))  # the schema and the outbox agree
