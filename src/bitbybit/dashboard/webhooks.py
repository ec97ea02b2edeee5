"""``/dashboard/webhooks``: the tenant's webhook endpoints with their health over 24 hours, and
one endpoint's page: its recent deliveries, its settings, Send Test (shown inline with htmx, on
the page again without it), secret rotation, suspension, reactivation with recovery, deletion.

The same services as the API's ``/webhooks`` routes, called the same way; every endpoint is
looked up through the viewer's tenant, so another company's endpoint id is not found.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel
from pydantic import ValidationError as SchemaError
from starlette.responses import Response

from bitbybit.dashboard import web
from bitbybit.dashboard.web import (
    PATH,
    DashboardRoute,
    Editor,
    Signed,
    Viewer,
    done,
    form_list,
    form_of,
    render,
)
from bitbybit.delivery.ssrf import TargetRefused
from bitbybit.errors import FieldError, ValidationFailed
from bitbybit.models import Endpoint
from bitbybit.schemas import EndpointCreate, EndpointUpdate, RotateSecret
from bitbybit.services import webhooks
from bitbybit.services.events import EVENT_TYPES

router = APIRouter(route_class=DashboardRoute)

M = TypeVar("M", bound=BaseModel)
RECENT_DELIVERIES: Final = 20
DEFAULT_TEST_EVENT: Final = "customer.created"
SUSPENDED_HERE: Final = "suspended from the dashboard"
LABELS: Final = {
    "url": "URL",
    "description": "Description",
    "events": "Events",
    "graceHours": "Grace period",
    "recoverSince": "Recover since",
    "eventType": "Event type",
    "confirm": "Confirmation",
}
"""The form's name for each field a service or a schema names in its errors."""


def problem(error: ValidationFailed) -> str:
    """What went wrong, in the form's words (a refused URL's message says why and what would
    allow it)."""
    if isinstance(error, TargetRefused):
        return error.message
    return web.problem(error, LABELS)


def _parsed(schema: type[M], fields: dict[str, Any]) -> M:
    """``schema`` built from a form's values; a ``ValidationFailed`` naming the fields if not."""
    try:
        return schema.model_validate(fields)
    except SchemaError as error:
        details = [
            FieldError(str(item["loc"][0]) if item["loc"] else "form", item["msg"])
            for item in error.errors()
        ]
        raise ValidationFailed("; ".join(d.message for d in details), details) from None


def _recover_since(text: str) -> int | None:
    """A ``datetime-local`` value (``2026-01-15T10:30``, read as UTC) in milliseconds."""
    text = text.strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed.field(
            "recoverSince", f"{text[:40]!r} is not a date and time such as 2026-01-15T10:30"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


# -- the list ----------------------------------------------------------------------------------


async def _list(
    viewer: Viewer,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    invalid: Collection[str] = (),
) -> Response:
    platform, tenant = viewer.platform, viewer.tenant
    endpoints = await webhooks.list_endpoints(platform, tenant)
    health = await webhooks.endpoint_health(platform, tenant, [e.id for e in endpoints])
    return render(
        viewer,
        "webhooks/list.html",
        status=status,
        title="Webhooks",
        endpoints=endpoints,
        health=health,
        event_types=EVENT_TYPES,
        form=form or {"url": "", "description": "", "events": []},
        error=error,
        invalid=set(invalid),
    )


@router.get("/webhooks")
async def webhooks_page(viewer: Signed) -> Response:
    return await _list(viewer)


@router.post("/webhooks")
async def create_webhook(viewer: Editor) -> Response:
    form = await form_of(viewer.request)
    events = await form_list(viewer.request, "events")
    url, description = form.get("url", "").strip(), form.get("description", "").strip()
    try:
        data = _parsed(
            EndpointCreate,
            {"url": url, "description": description or None, "events": events or None},
        )
        endpoint, secret = await webhooks.create_endpoint(viewer.platform, viewer.tenant, data)
    except ValidationFailed as error:
        shown = {"url": url, "description": description, "events": events}
        return await _list(
            viewer,
            status=400,
            error=problem(error),
            form=shown,
            invalid={detail.field for detail in error.details},
        )
    return render(
        viewer,
        "webhooks/secret.html",
        title="Endpoint added",
        endpoint=endpoint,
        secret=secret,
        rotated=False,
    )


# -- one endpoint ------------------------------------------------------------------------------


async def _detail(
    viewer: Viewer,
    endpoint: Endpoint,
    *,
    status: int = 200,
    test: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    recover_since: str = "",
) -> Response:
    platform, tenant = viewer.platform, viewer.tenant
    health = await webhooks.endpoint_health(platform, tenant, [endpoint.id])
    recent = await webhooks.list_deliveries(platform, tenant, endpoint.id, (), 1, RECENT_DELIVERIES)
    now = platform.now()
    return render(
        viewer,
        "webhooks/detail.html",
        status=status,
        title=endpoint.description or endpoint.url,
        endpoint=endpoint,
        health=health[endpoint.id],
        deliveries=recent,
        rotating=endpoint.next_secret_at is not None and endpoint.next_secret_at > now,
        event_types=EVENT_TYPES,
        test=test,
        errors=errors or {},
        form=form or {"description": endpoint.description or "", "events": endpoint.events},
        recover_since=recover_since,
    )


async def _own(viewer: Viewer, endpoint_id: str) -> Endpoint:
    """The tenant's endpoint (404 for any other), looked up before the form is read, so another
    company's id is not found whatever the form says."""
    return await webhooks.get_endpoint(viewer.platform, viewer.tenant, endpoint_id)


@router.get("/webhooks/{endpoint_id}")
async def webhook_page(endpoint_id: str, viewer: Signed) -> Response:
    return await _detail(viewer, await _own(viewer, endpoint_id))


@router.post("/webhooks/{endpoint_id}")
async def save_webhook(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    form = await form_of(viewer.request)
    events = await form_list(viewer.request, "events")
    description = form.get("description", "").strip()
    try:
        data = _parsed(
            EndpointUpdate, {"description": description or None, "events": events or None}
        )
        await webhooks.update_endpoint(viewer.platform, viewer.tenant, endpoint.id, data)
    except ValidationFailed as error:
        shown = {"description": description, "events": events}
        return await _detail(
            viewer, endpoint, status=400, errors={"edit": problem(error)}, form=shown
        )
    return done(viewer, f"{PATH}/webhooks/{endpoint.id}", "Saved the endpoint's settings.")


@router.post("/webhooks/{endpoint_id}/test")
async def send_test(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    event_type = (await form_of(viewer.request)).get("event_type") or DEFAULT_TEST_EVENT
    if event_type not in EVENT_TYPES:
        raise ValidationFailed.field("eventType", f"unknown event type {event_type[:100]!r}")
    attempt = await webhooks.send_test(viewer.platform, viewer.tenant, endpoint.id, event_type)
    shown = attempt.resource()
    if viewer.htmx:
        return render(viewer, "webhooks/_test_result.html", test=shown)
    return await _detail(viewer, endpoint, test=shown)


@router.post("/webhooks/{endpoint_id}/rotate-secret")
async def rotate_secret(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    grace_text = (await form_of(viewer.request)).get("grace_hours", "").strip() or "24"
    try:
        grace = _parsed(RotateSecret, {"graceHours": grace_text}).graceHours
    except ValidationFailed as error:
        return await _detail(viewer, endpoint, status=400, errors={"rotate": problem(error)})
    rotated, secret = await webhooks.rotate_secret(
        viewer.platform, viewer.tenant, endpoint.id, grace
    )
    return render(
        viewer,
        "webhooks/secret.html",
        title="Secret rotated",
        endpoint=rotated,
        secret=secret,
        rotated=True,
    )


@router.post("/webhooks/{endpoint_id}/suspend")
async def suspend(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    await webhooks.suspend_endpoint(viewer.platform, viewer.tenant, endpoint.id, SUSPENDED_HERE)
    return done(
        viewer,
        f"{PATH}/webhooks/{endpoint.id}",
        "Suspended: its deliveries are held until you reactivate it.",
    )


@router.post("/webhooks/{endpoint_id}/reactivate")
async def reactivate(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    text = (await form_of(viewer.request)).get("recover_since", "")
    try:
        since = _recover_since(text)
    except ValidationFailed as error:
        return await _detail(
            viewer,
            endpoint,
            status=400,
            errors={"reactivate": problem(error)},
            recover_since=text[:40],
        )
    _, recovered = await webhooks.reactivate_since(
        viewer.platform, viewer.tenant, endpoint.id, since
    )
    queued = f"{recovered} deliver{'y' if recovered == 1 else 'ies'} queued again"
    return done(viewer, f"{PATH}/webhooks/{endpoint.id}", f"Reactivated: {queued}.")


@router.post("/webhooks/{endpoint_id}/delete")
async def delete(endpoint_id: str, viewer: Editor) -> Response:
    endpoint = await _own(viewer, endpoint_id)
    if (await form_of(viewer.request)).get("confirm") != "yes":
        message = "Tick “I understand” to delete the endpoint."
        return await _detail(viewer, endpoint, status=400, errors={"delete": message})
    await webhooks.delete_endpoint(viewer.platform, viewer.tenant, endpoint.id)
    return done(viewer, f"{PATH}/webhooks", f"Deleted the endpoint {endpoint.url}.")
