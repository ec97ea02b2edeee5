"""One pure-ASGI middleware for what every request needs before routing and after it.

Before: refuse bodies over the limit (413) and bodies that are not JSON (415), counting the bytes
actually received, not only ``Content-Length`` (bodies are read here, at most the limit).
After: add the ``RateLimit-*`` headers of the caller's key (set by authentication in
``scope["state"]``) to whatever response goes out.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bitbybit.api.errors import envelope
from bitbybit.services.access import RateState

JSON_TYPES = ("application/json", "application/merge-patch+json")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def rate_headers(rate: RateState) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(rate.limit).encode()),
        (b"ratelimit-remaining", str(rate.remaining).encode()),
        (b"ratelimit-reset", str(rate.reset_seconds).encode()),
    ]


def _replay(body: bytes, then: Receive) -> Receive:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
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
            receive = _replay(body, receive)

        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_rate(message: Message) -> None:
            if message["type"] == "http.response.start":
                rate = state.get("rate")
                if isinstance(rate, RateState):
                    message["headers"] = [*message.get("headers", []), *rate_headers(rate)]
            await send(message)

        await self.app(scope, receive, send_with_rate)

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
