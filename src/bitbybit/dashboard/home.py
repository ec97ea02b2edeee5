"""``/dashboard``: the company at a glance, with a way into each section."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from bitbybit.dashboard.web import DashboardRoute, Signed, render
from bitbybit.services import webhooks

router = APIRouter(route_class=DashboardRoute)


@router.get("")
@router.get("/")
async def overview(viewer: Signed) -> Response:
    platform = viewer.platform
    async with platform.store.read() as tx:
        company = await tx.get_company(viewer.company_id)
        keys = await tx.list_api_keys(viewer.company_id)
    endpoints = await webhooks.list_endpoints(platform, viewer.tenant)
    now = platform.now()
    usable = [key for key in keys if key.mode == viewer.tenant.mode and key.usable_at(now)]
    return render(
        viewer,
        "home.html",
        company=company,
        usable_keys=len(usable),
        endpoints=endpoints,
        active=sum(1 for endpoint in endpoints if endpoint.status == "active"),
    )
