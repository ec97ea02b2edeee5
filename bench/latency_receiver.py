"""A webhook receiver for the latency benchmark, in a process of its own.

Run by ``bench_delivery.py latency``: a receiver sharing the load generator's process would
timestamp arrivals only when the generator's thread let go of the GIL (up to 5 ms later), which
is the benchmark's noise, not the product's latency. Prints its port, then records for each
delivery the time from the event's ``createdAt`` to the arrival; ``GET /results`` returns them
(milliseconds, JSON), ``DELETE /results`` forgets them (after the warm-up).
"""

from __future__ import annotations

import asyncio
import datetime
import gc

import orjson
from aiohttp import web


async def main() -> None:
    latencies: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        arrived = datetime.datetime.now(datetime.UTC)
        created = datetime.datetime.fromisoformat(orjson.loads(await request.read())["createdAt"])
        latencies.append((arrived - created).total_seconds() * 1000)
        return web.Response(text="ok")

    async def results(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(latencies), content_type="application/json")

    async def forget(request: web.Request) -> web.Response:
        latencies.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    app.router.add_get("/results", results)
    app.router.add_delete("/results", forget)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gc.collect()
    gc.freeze()  # no full collection walks the start-up objects mid-run (a pause of tens of ms)
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]  # started
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
