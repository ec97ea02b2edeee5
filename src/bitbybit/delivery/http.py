"""The worker's HTTP/1.1 client: POSTs on kept-alive connections, each answer read ≤ a limit.

Built on an asyncio protocol and httptools (llhttp, the parser uvicorn and Node.js use), for
one kind of request: a POST with a body in memory, no redirects, no proxies, no cookies, no
compression, and at most ``limit`` bytes of the answer kept. aiohttp's general client spent
about half of the worker's CPU on each delivery (ADR 0014); this one does what the worker
needs and nothing else.

- **Connections** are kept per (scheme, host, port) and reused newest first; an idle one is
  closed after ``KEEPALIVE_S``. A request that finds its kept connection closed by the server
  before any byte of an answer (the server's idle timeout racing the request) is sent once more
  on a new connection: a webhook is delivered at least once whatever happens, and nothing of it
  was answered.
- **Every new connection** resolves the host through ``resolver`` (for webhooks, the SSRF
  guard's ``GuardedResolver``: one refused address refuses the name) and dials the addresses it
  returned, in order, so the connection goes where the check looked. TLS verifies the
  certificate against the host name.
- **The answer**: its status, its ``Retry-After`` and up to ``limit`` bytes of its body. A body
  longer than that closes the connection, unread. Interim (1xx) answers are skipped.
- **Errors** are ``ConnectFailed`` (with the ``OSError``: refused, unreachable, the guard's
  ``RefusedAddress``, a DNS failure), ``ssl.SSLError`` (the handshake), ``Disconnected`` (the
  connection ended before the whole answer) and ``BadResponse`` (not HTTP/1.x). Cancelling a
  request closes its connection.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Mapping
from typing import cast

import httptools
from aiohttp.abc import AbstractResolver

from bitbybit.delivery.ssrf import ParsedTarget

KEEPALIVE_S = 30.0
"""An idle connection is closed after this long (servers close theirs after 5 to 75 s)."""
SWEEP_S = 5.0
_UNSAFE = re.compile(r"[\r\n\0]")


class HttpError(Exception):
    """An attempt that got no usable answer."""


class ConnectFailed(HttpError):
    """No connection: ``os_error`` says why (it may be the SSRF guard's ``RefusedAddress``)."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class Disconnected(HttpError):
    """The connection ended before the whole answer; ``status`` if its head had arrived."""

    def __init__(self, status: int | None, error: BaseException | None) -> None:
        super().__init__(str(error) if error else "")
        self.status = status
        self.error = error


class BadResponse(HttpError):
    """What came back is not an HTTP/1.x answer."""


class Answer:
    """An HTTP answer: its status, its ``Retry-After`` header, and the first bytes of its body."""

    __slots__ = ("body", "retry_after", "status")

    def __init__(self, status: int, retry_after: str | None, body: bytes) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body


class _Connection(asyncio.Protocol):
    """One connection, one request at a time; the parser's callbacks fill the answer."""

    def __init__(self, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.open = False
        self.received = False
        """Whether any byte of an answer to the current request has arrived."""
        self.idle_since = 0.0
        self.limit = 0
        self.status: int | None = None
        self.retry_after: str | None = None
        self.body = b""
        self.framed = False
        """The answer's body is delimited (a length, chunks, or none by its status); if not,
        it runs until the server closes the connection."""
        self.reusable = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing was asked: a server that talks out of turn
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # (101 Switching Protocols): an answer, not kept
            self._answered(keep=False)
        except httptools.HttpParserError as error:
            self._failed(BadResponse(f"{error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is None:
            return
        if self.status is not None and not self.framed:  # the body ran until the close
            self._answered(keep=False)
        else:
            self._failed(Disconnected(self.status, exc))

    # -- the parser's callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer to one request: the connection is not sane
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.status = status
        if status < 200 or status in (204, 304):
            self.framed = True

    def on_body(self, body: bytes) -> None:
        if self.waiter is None:
            return
        self.body += body
        if len(self.body) > self.limit:  # more than is kept: the rest is never read
            self.body = self.body[: self.limit]
            self._answered(keep=False)

    def on_message_complete(self) -> None:
        if self.waiter is None:
            return
        if self.status is not None and 100 <= self.status < 200 and self.status != 101:
            self.status, self.retry_after, self.framed = None, None, False  # interim: wait on
            return
        self._answered(keep=self.parser.should_keep_alive())

    # -- one request -----------------------------------------------------------------------------

    def request(self, data: bytes, limit: int) -> asyncio.Future[Answer]:
        assert self.transport is not None
        waiter = self.waiter = self.loop.create_future()
        if not self.open:  # closed by the server between its making and this request
            self._failed(Disconnected(None, None))
            return waiter
        self.received = False
        self.limit = limit
        self.status = self.retry_after = None
        self.body = b""
        self.framed = self.reusable = False
        self.transport.write(data)
        return waiter

    def _answered(self, *, keep: bool) -> None:
        waiter, self.waiter = self.waiter, None
        assert self.status is not None
        self.reusable = keep and self.open
        if not self.reusable:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self.status, self.retry_after, self.body))

    def _failed(self, error: HttpError) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.open = self.reusable = False
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """POSTs over kept-alive HTTP/1.1 connections; see the module's text."""

    def __init__(
        self,
        resolver: AbstractResolver,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        """``keepalive_s``: how long an idle connection is kept (0: a connection a request)."""
        self.resolver = resolver
        self._ssl = ssl_context
        self.keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        """Kept connections per (scheme, host, port), the most recently used last."""
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def post(
        self, target: ParsedTarget, body: bytes, headers: Mapping[str, str], limit: int
    ) -> Answer:
        """POST ``body`` to ``target`` with ``headers`` (``Host`` and ``Content-Length`` are
        added); the answer keeps at most ``limit`` bytes of its body."""
        data = _request(target, body, headers)
        key = (target.scheme, target.host, target.port)
        connection = self._take(key)
        if connection is not None:
            try:
                return await self._exchange(connection, data, limit)
            except Disconnected:
                if connection.received:
                    raise
                # The server had closed the kept connection: nothing was answered, send anew.
        connection = await self._connect(target, key)
        return await self._exchange(connection, data, limit)

    async def _exchange(self, connection: _Connection, data: bytes, limit: int) -> Answer:
        try:
            answer = await connection.request(data, limit)
        except BaseException:  # a failure, or cancelled (the deadline): never reuse it
            connection.close()
            raise
        if not connection.reusable or self.closed or self.keepalive_s <= 0:
            connection.close()
        else:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.key, []).append(connection)
            if self._sweeper is None:
                self._sweeper = connection.loop.call_later(SWEEP_S, self._sweep)
        return answer

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.open:
                return connection
        return None

    async def _connect(self, target: ParsedTarget, key: tuple[str, str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = target.scheme == "https"
        try:
            found = await self.resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
        except OSError as error:  # no such name, or the SSRF guard refused what it resolves to
            raise ConnectFailed(error) from error
        failed: OSError | None = None
        for address in found:
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(key, loop),
                    address["host"],
                    address["port"],
                    family=address["family"],
                    ssl=self.ssl_context if tls else None,
                    server_hostname=target.host.removesuffix(".") if tls else None,
                )
            except ssl.SSLError:
                raise  # the server's certificate or handshake: another address will not help
            except OSError as error:
                failed = error
                continue
            return connection
        raise ConnectFailed(failed or OSError(f"{target.host} has no address")) from failed

    def _sweep(self) -> None:
        """Close the connections idle longer than ``keepalive_s``."""
        self._sweeper = None
        oldest = time.monotonic() - self.keepalive_s
        for key, idle in list(self._idle.items()):
            fresh = []
            for connection in idle:
                if connection.open and connection.idle_since > oldest:
                    fresh.append(connection)
                else:
                    connection.close()
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    async def close(self) -> None:
        """Close every kept connection (requests in flight keep theirs until they end)."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        await self.resolver.close()

    def idle_connections(self) -> int:
        return sum(c.open for idle in self._idle.values() for c in idle)


def _request(target: ParsedTarget, body: bytes, headers: Mapping[str, str]) -> bytes:
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != default_port:
        host = f"{host}:{target.port}"
    path = f"{target.path}?{target.query}" if target.query else target.path
    fields = [f"{name}: {value}" for name, value in headers.items()]
    if _UNSAFE.search("".join(fields)):  # one search a request; the culprit named only if found
        name = next(n for n, v in headers.items() if _UNSAFE.search(n) or _UNSAFE.search(v))
        raise ValueError(f"the header {name!r} holds a line break or NUL")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *fields]
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + body
