"""``/dashboard/deliveries``: the delivery history with its filters and chart, one delivery's
attempts and the requests they sent, and retrying a delivery.

The filter form is a plain GET form (it works without JavaScript); htmx sends it for the results
region alone (``viewer.htmx``) and pushes the URL, so the address always reproduces the page.
Pages go by cursor (``?before=``/``?after=`` a ``<created_at>:<id>``), never by number: see
``services.history``. Times in the form are UTC (``datetime-local``); ``to`` is exclusive.

A delivery's page rebuilds each attempt's request headers; the signature is recomputed with the
endpoint's current secret(s) and shown to admins alone (``services.history.SentAttempt`` says
why). Bad filters answer 400 with the form and the problems; to htmx, which does not swap an
error's content, the same 400 says to load the page whole (``HX-Redirect``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.responses import Response

from bitbybit.dashboard.web import PATH, DashboardRoute, Editor, Signed, Viewer, done, render
from bitbybit.errors import ValidationFailed
from bitbybit.services import history, webhooks
from bitbybit.services.events import EVENT_TYPES
from bitbybit.services.history import Cursor, DeliveryFilters, Slice
from bitbybit.services.operators import DELIVERY_STATUSES

router = APIRouter(route_class=DashboardRoute)

FILTERS: Final = ("endpoint", "type", "status", "from", "to", "hours")
"""The query parameters that narrow the list (and the chart's hours), kept in every link."""
LABELS: Final = {
    "endpoint": "Endpoint",
    "type": "Event type",
    "status": "Status",
    "from": "From",
    "to": "To",
    "hours": "Chart hours",
    "before": "Older page",
    "after": "Newer page",
}
CHART_CHOICES: Final = (1, 3, 6, 12, 24)
_TIME_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f")


def form_time(text: str, name: str) -> int | None:
    """A ``datetime-local`` value (``2026-12-02T10:30``, seconds optional) read as UTC, in
    milliseconds; ``None`` when empty."""
    if not text:
        return None
    for layout in _TIME_FORMATS:
        try:
            parsed = datetime.strptime(text, layout)  # read as UTC just below
        except ValueError:
            continue
        if parsed.year >= 1970:
            return round(parsed.replace(tzinfo=UTC).timestamp() * 1000)
    raise ValidationFailed.field(name, "must be a date and time in UTC, such as 2026-12-02T10:30")


def error_lines(error: ValidationFailed) -> list[str]:
    """The problems of ``error`` as sentences naming the form's labels."""
    if not error.details:
        return [str(error)]
    return [f"{LABELS.get(d.field, d.field)}: {d.message}" for d in error.details]


def link(base: str, given: dict[str, str], **cursor: str) -> str:
    """``base`` with the filters given and a cursor, as a link keeps them."""
    query = urlencode({**{k: v for k, v in given.items() if v}, **cursor})
    return f"{base}?{query}" if query else base


def pager_links(base: str, given: dict[str, str], page: Slice[Any]) -> dict[str, str | None]:
    return {
        "newer": None if page.newer is None else link(base, given, after=str(page.newer)),
        "older": None if page.older is None else link(base, given, before=str(page.older)),
    }


def cursors(viewer: Viewer) -> tuple[Cursor | None, Cursor | None]:
    params = viewer.request.query_params
    before, after = params.get("before", ""), params.get("after", "")
    return (
        Cursor.parse(before, "before") if before else None,
        Cursor.parse(after, "after") if after else None,
    )


def invalid(viewer: Viewer, template: str, **values: Any) -> Response:
    """Bad filters: the page (or, to htmx, the region) with the problems, status 400. htmx
    does not swap an error's content, so it is told to load the page whole instead."""
    request = viewer.request
    headers = {}
    if viewer.htmx:
        headers["hx-redirect"] = request.url.path + (
            f"?{request.url.query}" if request.url.query else ""
        )
    return render(viewer, template, status=400, headers=headers, **values)


@router.get("/deliveries")
async def deliveries(viewer: Signed) -> Response:
    """The history, newest first, with the filters of the query; the chart above it."""
    platform, tenant = viewer.platform, viewer.tenant
    params = viewer.request.query_params
    given = {name: params.get(name, "").strip() for name in FILTERS}
    endpoints = await webhooks.list_endpoints(platform, tenant)
    values: dict[str, Any] = {
        "endpoints": {endpoint.id: endpoint for endpoint in endpoints},
        "given": given,
        "event_types": EVENT_TYPES,
        "statuses": DELIVERY_STATUSES,
        "chart_choices": CHART_CHOICES,
        "base": f"{PATH}/deliveries",
    }
    try:
        hours = history.chart_hours(given["hours"])
        filters = DeliveryFilters(
            endpoint_id=given["endpoint"] or None,
            event_type=given["type"] or None,
            status=given["status"] or None,
            since=form_time(given["from"], "from"),
            until=form_time(given["to"], "to"),
        )
        before, after = cursors(viewer)
        page = await history.delivery_history(
            platform, tenant, filters, before=before, after=after, limit=history.PAGE_SIZE
        )
    except ValidationFailed as error:
        template = "deliveries/_results.html" if viewer.htmx else "deliveries/list.html"
        return invalid(
            viewer,
            template,
            **values,
            page=Slice([]),
            links={},
            errors=error_lines(error),
            fields={d.field for d in error.details},
            filtered=True,
            chart=None,
            hours=3,
        )
    values.update(
        page=page,
        links=pager_links(f"{PATH}/deliveries", given, page),
        errors=[],
        fields=set(),
        filtered=filters.active,
        hours=hours,
    )
    if viewer.htmx:
        return render(viewer, "deliveries/_results.html", **values)
    chart = await history.delivery_chart(platform, tenant, hours)
    return render(viewer, "deliveries/list.html", chart=chart, **values)


@router.get("/deliveries/{delivery_id}")
async def delivery(viewer: Signed, delivery_id: str) -> Response:
    """A delivery: its event, endpoint and state, and every attempt with its request."""
    detail = await history.delivery_detail(viewer.platform, viewer.tenant, delivery_id)
    return render(viewer, "deliveries/detail.html", detail=detail)


@router.post("/deliveries/{delivery_id}/retry")
async def retry(viewer: Editor, delivery_id: str) -> Response:
    """Send the delivery again now (a new series of attempts); the endpoint must be active."""
    retried = await webhooks.retry_delivery(viewer.platform, viewer.tenant, delivery_id)
    return done(
        viewer,
        f"{PATH}/deliveries/{retried.id}",
        f"Delivery {retried.id} is queued to be sent again.",
    )
