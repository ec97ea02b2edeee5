"""``create_app(settings)``: the FastAPI application, built without import-time globals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from bitbybit import __version__, dashboard
from bitbybit.api import errors
from bitbybit.api.direct import Direct
from bitbybit.api.middleware import Guard
from bitbybit.api.openapi import openapi_document
from bitbybit.api.routes import customers, messages, meta, orders, products, webhooks
from bitbybit.channels import callbacks, delivery_worker
from bitbybit.config import Settings
from bitbybit.delivery.metrics_server import serving_metrics
from bitbybit.errors import StorageError
from bitbybit.logs import configure_logging
from bitbybit.runtime import Platform
from bitbybit.services.access import FailedAuthLimiter
from bitbybit.services.idempotency import pruning
from bitbybit.services.retention import retaining

CUSTOMER_PREFIXES = ("/customer/open/v1", "/customer/api/open/v1")
WHATSAPP_PREFIXES = ("/whatsapp/open/v1", "/whatsapp/api/open/v1")
READY_WITHIN = 2.0
"""Seconds ``/readyz`` gives the database (at most ``BITBYBIT_DATABASE_TIMEOUT``)."""

log = structlog.get_logger("bitbybit.api")

DESCRIPTION = """The bitbybit Open API: customers, orders, products and WhatsApp messages, with
every change delivered as a signed webhook event.

Authenticate with `x-api-key: bbb_live_…` (or `x-bitbybit-key`). Every answer is
`{"data": …}` (lists add `meta`), every error `{"error": {"code", "message", "details"?}}`.
`/customer/api/open/v1` is an alias of `/customer/open/v1`, `/whatsapp/api/open/v1` of
`/whatsapp/open/v1` (messages, templates, tickets)."""


def create_app(
    settings: Settings | None = None,
    platform: Platform | None = None,
    *,
    worker_concurrency: int = 0,
) -> FastAPI:
    """The application; ``platform`` lets tests share an already opened store.

    With ``worker_concurrency`` > 0 a delivery worker runs in the same process and event loop
    for the application's lifetime (``bitbybit serve``).
    """
    if not structlog.is_configured():
        configure_logging()
    settings = settings or (platform.settings if platform else Settings.from_env())
    owned = platform is None
    the_platform = platform or Platform.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await the_platform.open()
        try:
            # Left in reverse order: the worker drains while metrics are still served.
            async with (
                serving_metrics(settings.metrics_address),
                pruning(the_platform),
                retaining(the_platform),
                _delivering(app, the_platform, worker_concurrency),
            ):
                yield
        finally:
            if owned:
                await the_platform.close()

    app = FastAPI(
        title="bitbybit Open API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.platform = the_platform
    app.state.auth_failures = FailedAuthLimiter(settings.auth_failure_limit)
    app.state.meta_routes = callbacks.Routes()
    # Each family of routes is mounted under each of its prefixes, so that a request is matched
    # against one prefix per family and then its own family's routes, not every route in turn
    # (that was a tenth of a WhatsApp send's CPU); the document lists the first prefix only.
    families = (
        (CUSTOMER_PREFIXES, (customers, products, orders, webhooks)),
        (WHATSAPP_PREFIXES, (messages,)),
    )
    documented = APIRouter()
    for prefixes, modules in families:
        family = APIRouter()
        for module in modules:
            family.include_router(module.router)
            documented.include_router(module.router, prefix=prefixes[0])
        for prefix in prefixes:
            app.mount(prefix, family)
    app.include_router(meta.router)
    dashboard.install(app, settings.login_failure_limit)
    app.state.route_methods = errors.route_methods(
        [
            (prefix, module.router)
            for prefixes, modules in families
            for prefix in prefixes
            for module in modules
        ]
        + [("", meta.router)]
    )

    if settings.metrics_address is None:  # else only on that address: see metrics_server

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Readiness, where ``/healthz`` is liveness: the database answers a trivial read within
        a short limit, or 503 (a load balancer sends requests elsewhere; nothing restarts)."""
        try:
            await the_platform.store.ping(within=min(settings.database_timeout, READY_WITHIN))
        except StorageError as error:
            log.warning("not_ready", error=str(error))
            return errors.unavailable()
        return Response(b'{"status":"ready"}', media_type="application/json")

    errors.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, [*documented.routes, *app.routes])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override hook
    app.add_middleware(Direct, api=app)  # inside Guard: see api/direct.py
    app.add_middleware(Guard, max_body_bytes=settings.max_body_bytes)
    return app


@asynccontextmanager
async def _delivering(app: FastAPI, platform: Platform, concurrency: int) -> AsyncIterator[None]:
    """A delivery worker in this process and event loop while the block runs (none for 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # For the server's signal handler: stop claiming now, while HTTP connections drain.
    app.state.stop_worker = lambda: loop.call_soon_threadsafe(stop.set)
    if concurrency <= 0:
        yield
        return
    worker = asyncio.create_task(delivery_worker(platform, concurrency).run(stop))
    try:
        yield
    finally:
        stop.set()
        await worker
