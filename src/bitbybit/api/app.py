"""``create_app(settings)``: the FastAPI application, built without import-time globals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from bitbybit import __version__
from bitbybit.api import errors
from bitbybit.api.middleware import Guard
from bitbybit.api.routes import customers, orders, products, webhooks
from bitbybit.config import Settings
from bitbybit.logs import configure_logging
from bitbybit.services import Platform

CUSTOMER_PREFIXES = ("/customer/open/v1", "/customer/api/open/v1")

DESCRIPTION = """The bitbybit Open API: customers, orders and products, with every change
delivered as a signed webhook event.

Authenticate with `x-api-key: bbb_live_…` (or `x-bitbybit-key`). Every answer is
`{"data": …}` (lists add `meta`), every error `{"error": {"code", "message", "details"?}}`.
`/customer/api/open/v1` is an alias of `/customer/open/v1`."""


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
        stop = asyncio.Event()
        worker = None
        if worker_concurrency > 0:
            from bitbybit.delivery.worker import Worker

            worker = asyncio.create_task(
                Worker(the_platform, concurrency=worker_concurrency).run(stop)
            )
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
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
    for index, prefix in enumerate(CUSTOMER_PREFIXES):
        for module in (customers, products, orders, webhooks):
            app.include_router(module.router, prefix=prefix, include_in_schema=index == 0)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    errors.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override hook
    app.add_middleware(Guard, max_body_bytes=settings.max_body_bytes)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, without its 422 body: validation errors are our 400 envelope."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema
