"""The dashboard: server-rendered pages under ``/dashboard`` over the same services as the API.

Jinja2 templates with htmx (vendored, served from ``/dashboard/static``), one module per section:
``auth`` (sign in and out), ``home``, ``keys``, ``webhooks``, ``deliveries``, ``events``,
``messages`` and ``commerce`` (customers, orders, products, read-only). ``web`` holds what they
share: sessions, CSRF, rendering and errors as pages. See docs/dashboard.md.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from bitbybit.dashboard import auth, commerce, deliveries, events, home, keys, messages, webhooks
from bitbybit.dashboard.web import HERE, PATH, DashboardRoute, Signed, render
from bitbybit.errors import NotFound
from bitbybit.services.users import LoginThrottle

SECTIONS = (auth, home, keys, webhooks, messages, commerce, deliveries, events)
"""The modules whose ``router`` is mounted under ``/dashboard``, in order."""


def install(app: FastAPI, login_failure_limit: int) -> None:
    """Mount the dashboard's pages and static files on ``app``."""
    app.state.login_throttle = LoginThrottle(login_failure_limit)
    app.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    for section in SECTIONS:
        app.include_router(section.router, prefix=PATH, include_in_schema=False)
    app.include_router(_fallback, prefix=PATH, include_in_schema=False)


def pages() -> list[tuple[str, frozenset[str]]]:
    """Every page's full path (``/dashboard/…``) and its methods, the fallback excepted (the
    isolation tests try each one)."""
    return [
        (PATH + route.path, frozenset(route.methods or ()))
        for section in SECTIONS
        for route in section.router.routes
        if isinstance(route, APIRoute)
    ]


_fallback = APIRouter(route_class=DashboardRoute)


@_fallback.api_route("/{rest:path}", methods=["GET", "POST", "HEAD"])
async def not_a_page(viewer: Signed, request: Request) -> Response:
    """Any other path under /dashboard: a 404 page (after signing in)."""
    raise NotFound(f"there is no page {request.url.path}")


__all__ = ["install", "pages", "render"]
