"""``/metrics`` on an address of its own (``BITBYBIT_METRICS_ADDRESS``), in the process's loop.

On the API port the metrics would be open to everyone who can reach the API; on their own
address (typically loopback or a private interface) only the scraper sees them. ``bitbybit
worker``, which has no HTTP server otherwise, exposes its delivery metrics the same way.

The server is a small ``aiohttp.web`` application on the running event loop (no thread), started
and stopped with the process: ``serving_metrics`` is an async context manager.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bitbybit.errors import ConfigurationError

log = structlog.get_logger("bitbybit.metrics")

SHUTDOWN_SECONDS = 2.0
"""How long stopping waits for a scrape in progress (one takes milliseconds)."""


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@asynccontextmanager
async def serving_metrics(address: tuple[str, int] | None) -> AsyncIterator[None]:
    """Serve ``GET /metrics`` on ``address`` (``(host, port)``) for the block; nothing if ``None``.

    An address that cannot be listened on (in use, not local) is a ``ConfigurationError``: the
    process refuses to start rather than run without the metrics it was told to expose.
    """
    if address is None:
        yield
        return
    host, port = address
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise ConfigurationError(
            f"cannot serve metrics on BITBYBIT_METRICS_ADDRESS {host}:{port}:"
            f" {error.strerror or error}"
        ) from None
    log.info("metrics_listening", host=host, port=port)
    try:
        yield
    finally:
        await runner.cleanup()
