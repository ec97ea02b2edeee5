"""Webhook receivers on loopback for delivery tests: they record what arrives and answer as told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Handler = Callable[[web.Request, "Receiver"], Awaitable[web.StreamResponse]]


async def ok(request: web.Request, receiver: Receiver) -> web.StreamResponse:
    return web.Response(status=200, text="ok")


@dataclass
class Receiver:
    handler: Handler = ok
    received: list[Received] = field(default_factory=list)
    base_url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        self.arrived.set()
        return await self.handler(request, self)

    async def wait_for(self, count: int, within: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.monotonic()))
        return self.received


@asynccontextmanager
async def receiver(handler: Handler = ok) -> AsyncIterator[Receiver]:
    """An aiohttp server on 127.0.0.1 with a free port."""
    recorder = Receiver(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # a started TCPSite has a server
    recorder.base_url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()
