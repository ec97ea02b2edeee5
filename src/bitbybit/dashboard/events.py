"""``/dashboard/events``: the company's events newest first (filtered by type, paged by cursor
like the deliveries), one event's payload and deliveries, and replaying an event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from bitbybit.dashboard.deliveries import cursors, error_lines, invalid, pager_links
from bitbybit.dashboard.web import PATH, DashboardRoute, Editor, Signed, done, form_of, render
from bitbybit.errors import ValidationFailed
from bitbybit.services import history, webhooks
from bitbybit.services.events import EVENT_TYPES
from bitbybit.services.history import Slice

router = APIRouter(route_class=DashboardRoute)


@router.get("/events")
async def events(viewer: Signed) -> Response:
    """The events, newest first, of the type asked for (``?type=``)."""
    given = {"type": viewer.request.query_params.get("type", "").strip()}
    template = "events/_results.html" if viewer.htmx else "events/list.html"
    values: dict[str, Any] = {"given": given, "event_types": EVENT_TYPES}
    try:
        before, after = cursors(viewer)
        page = await history.event_history(
            viewer.platform,
            viewer.tenant,
            given["type"] or None,
            before=before,
            after=after,
            limit=history.PAGE_SIZE,
        )
    except ValidationFailed as error:
        return invalid(
            viewer, template, **values, page=Slice([]), links={}, errors=error_lines(error)
        )
    links = pager_links(f"{PATH}/events", given, page)
    return render(viewer, template, **values, page=page, links=links, errors=[])


@router.get("/events/{event_id}")
async def event(viewer: Signed, event_id: str) -> Response:
    """An event: its payload, pretty-printed, and its deliveries."""
    detail = await history.event_detail(viewer.platform, viewer.tenant, event_id)
    return render(viewer, "events/detail.html", detail=detail)


@router.post("/events/{event_id}/replay")
async def replay(viewer: Editor, event_id: str) -> Response:
    """Queue the event again (same id, same body) to one endpoint (``endpoint``) or to every
    endpoint subscribed to it; back to the event with what was queued."""
    endpoint_id = (await form_of(viewer.request)).get("endpoint", "").strip() or None
    queued = await webhooks.replay_event(viewer.platform, viewer.tenant, event_id, endpoint_id)
    if not queued:
        message = "Nothing was sent: no active endpoint is subscribed to this event."
    elif len(queued) == 1:
        message = f"Replayed: delivery {queued[0]} created."
    else:
        message = f"Replayed: {len(queued)} deliveries created."
    return done(viewer, f"{PATH}/events/{event_id}", message)
