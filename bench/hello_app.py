"""A hello-world FastAPI application: the ceiling ``bench_create_customers.py`` compares with.

One POST route at the path ``bitbybit serve`` creates customers on, taking a small JSON body
(a pydantic model of the fields wrk sends) and answering 201 with JSON, and nothing else: no
middleware, no database. Served by uvicorn as ``bitbybit serve`` serves the API (src/bitbybit/
cli.py: one worker, uvloop, httptools, no access log, no proxy headers), so the two differ only
in what bitbybit does per request.

    .venv/bin/python bench/hello_app.py --port 8000
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Customer(BaseModel):
    email: str
    firstName: str | None = None
    lastName: str | None = None
    tags: list[str] = []


@app.post("/customer/open/v1/customers", status_code=201)
async def create_customer(body: Customer) -> dict[str, object]:
    return {"data": body.model_dump()}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
