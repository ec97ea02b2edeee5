"""One pure-ASGI middleware for what every request needs before routing and after it.

First: the request's id (``X-Request-Id`` as sent when it is a plain token of at most 128
characters, else a new ``req_…``), bound to every log line the request causes, named in any
error envelope (``requestId``) and echoed on every response.
Before: refuse bodies over the limit (413) and bodies that are not JSON (415), counting the bytes
actually received, not only ``Content-Length`` (bodies are read here, at most the limit).
After: add the ``RateLimit-*`` headers of the caller's key (set by authentication in
``scope["state"]``) to whatever response goes out, a 500 included: an unexpected exception is
answered here, in the envelope, not by the server's bare fallback.
Last: count the request and its duration under its route's template, method and status
(``api/metrics.py``), here rather than in a middleware of its own: one layer less per request.
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bitbybit.api.errors import envelope, internal_error
from bitbybit.api.metrics import NO_ANSWER, RouteMetrics
from bitbybit.ids import new_id
from bitbybit.services.access import RateState

REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
"""A client's own request id is kept when it is a token of this shape (no spaces, quotes or
control characters that would break a log line or a header), else replaced."""


def request_id(sent: bytes | None) -> str:
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent.decode("ascii")
    return new_id("req")


JSON_TYPES = ("application/json", "application/merge-patch+json")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def rate_headers(rate: RateState) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(rate.limit).encode()),
        (b"ratelimit-remaining", str(rate.remaining).encode()),
        (b"ratelimit-reset", str(rate.reset_seconds).encode()),
    ]


def replay(body: bytes, then: Receive) -> Receive:
    """Hand the buffered body to the app, then pass through (to see a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = RouteMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        root_path = scope.get("root_path", "")
        headers = dict(scope["headers"])
        rid = request_id(headers.get(b"x-request-id"))
        state: dict[str, Any] = scope.setdefault("state", {})
        status = NO_ANSWER

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", rid.encode())]
                rate = state.get("rate")
                if isinstance(rate, RateState):
                    extra.extend(rate_headers(rate))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        # Bound and then reset with its token, which restores what was bound before: what
        # ``bound_contextvars`` does, without reading every context variable twice a request.
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self._guarded(scope, receive, send_with_headers, headers)
        except Exception as error:
            # Too late for an answer once one started: the server closes the connection.
            if status != NO_ANSWER:
                raise
            response = internal_error(scope["path"], error)
            await response(scope, receive, send_with_headers)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            self.metrics.record(scope, root_path, status, time.perf_counter() - arrived)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        if scope["method"] in BODY_METHODS and scope["path"].startswith(("/customer", "/whatsapp")):
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                await self._refuse_size(scope, receive, send)
                return
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            has_body = length not in (None, b"0") or b"transfer-encoding" in headers
            if has_body and content_type and content_type.decode("latin-1") not in JSON_TYPES:
                response = envelope(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"send the body as application/json, not {content_type.decode('latin-1')}",
                )
                await response(scope, receive, send)
                return

            body = await self._read_body(receive)
            if body is None:
                await self._refuse_size(scope, receive, send)
                return
            receive = replay(body, receive)

        await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse_size(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = envelope(
            413,
            "PAYLOAD_TOO_LARGE",
            f"the request body is larger than {self.max_body_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
