"""The worker's HTTP/1.1 client (``delivery.http``) and the ``Sender`` on it, against raw servers.

Each server is a few lines of asyncio on loopback that answer with exactly the bytes a test
gives, so every way an answer can go (kept, closed, cut short, too long, not HTTP, never sent)
is played on the wire. Every scenario runs on the standard event loop and on uvloop (the loop
``bitbybit worker`` runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
import uvloop

from bitbybit.config import Settings
from bitbybit.delivery import http
from bitbybit.delivery.http import BadResponse, ConnectFailed, HttpClient
from bitbybit.delivery.sender import MAX_RESPONSE_BYTES, Sender
from bitbybit.delivery.ssrf import GuardedResolver, ParsedTarget, TargetPolicy, check_url

OPEN = TargetPolicy(allow_private=True, allow_http=True)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SECRET = "whsec_" + "A" * 32

Run = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on a new event loop of the parametrized kind."""

    def runner(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
        factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as loop:
            loop.run(asyncio.wait_for(scenario(), 30))

    return runner


@dataclass
class Raw:
    """A loopback server: ``answer`` is called with each request's bytes (and the connection's
    number) and writes what it likes."""

    answer: Callable[[Raw, int, bytes, asyncio.StreamWriter], Awaitable[None]]
    port: int = 0
    connections: int = 0
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    """(connection number, the request's bytes) of every request read."""
    closed: list[int] = field(default_factory=list)
    """Connections the client closed (EOF seen)."""
    server: asyncio.Server | None = None
    ssl: ssl.SSLContext | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> Raw:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append((number, request))
                await self.answer(self, number, request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.append(number)
        finally:
            writer.close()

    def target(self, path: str = "/hook", scheme: str = "http") -> ParsedTarget:
        return check_url(f"{scheme}://127.0.0.1:{self.port}{path}", OPEN)


def answering(*answers: bytes, close: bool = False) -> Any:
    """Answers each request with the next of ``answers`` (the last repeats); ``close``: then
    closes the connection."""

    async def answer(raw: Raw, number: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answers[min(len(raw.requests), len(answers)) - 1])
        await writer.drain()
        if close:
            writer.close()

    return answer


@contextlib.asynccontextmanager
async def client(**options: Any) -> AsyncIterator[HttpClient]:
    web = HttpClient(GuardedResolver(OPEN), **options)
    try:
        yield web
    finally:
        await web.close()


@contextlib.asynccontextmanager
async def sender(
    ssl_context: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[Sender]:
    settings = Settings(allow_private_targets=True, allow_http_targets=True, **options)
    delivery = Sender(settings, ssl_context=ssl_context)
    try:
        yield delivery
    finally:
        await delivery.close()


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110  # state the servers' and the client's callbacks set
        await asyncio.sleep(0.01)


# --- what is sent ------------------------------------------------------------------------------


def test_the_request_is_written_as_before(run: Run) -> None:
    """The bytes of a webhook: the request line, ``Host``, the signed headers in their order,
    ``Content-Length``, the body; nothing else (no Accept, no Connection, no chunking)."""

    async def scenario() -> None:
        async with Raw(answering(OK)) as raw, sender() as delivery:
            url = f"http://127.0.0.1:{raw.port}/hook?a=1&b=%20#fragment"
            result = await delivery.send(url, "evt_1", "customer.created", b'{"a":1}', [SECRET])
        assert result.succeeded, result
        [(_, request)] = raw.requests
        head, body = request.split(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /hook?a=1&b=%20 HTTP/1.1"
        assert [line.split(":")[0] for line in lines[1:]] == [
            "Host",
            "Content-Type",
            "User-Agent",
            "X-BitByBit-Webhook-Id",
            "X-BitByBit-Webhook-Event",
            "X-BitByBit-Webhook-Timestamp",
            "X-BitByBit-Webhook-Signature",
            "Content-Length",
        ]
        assert lines[1] == f"Host: 127.0.0.1:{raw.port}"
        assert lines[2] == "Content-Type: application/json"
        assert lines[-1] == "Content-Length: 7"
        assert body == b'{"a":1}'

    run(scenario)


@pytest.mark.parametrize(
    ("url", "line", "host"),
    [
        ("https://hooks.example.com/h", "POST /h HTTP/1.1", "Host: hooks.example.com"),
        ("http://hooks.example.com/", "POST / HTTP/1.1", "Host: hooks.example.com"),
        ("http://hooks.example.com", "POST / HTTP/1.1", "Host: hooks.example.com"),
        ("https://hooks.example.com:80/h", "POST /h HTTP/1.1", "Host: hooks.example.com:80"),
        ("https://[::1]:8443/h?x=%C3%A9", "POST /h?x=%C3%A9 HTTP/1.1", "Host: [::1]:8443"),
        ("https://bücher.example/ü", "POST /%C3%BC HTTP/1.1", "Host: xn--bcher-kva.example"),
    ],
)
def test_request_line_and_host(url: str, line: str, host: str) -> None:
    data = http._request(check_url(url, OPEN), b"{}", {"X-A": "1"})
    assert data == f"{line}\r\n{host}\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{{}}".encode()


@pytest.mark.parametrize(
    "headers", [{"X-A": "1\r\nX-Injected: 1"}, {"X-A\n": "1"}, {"X-A": "a\0b"}]
)
def test_a_header_that_would_break_the_request_is_ours_and_nothing_is_sent(
    run: Run, headers: dict[str, str]
) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK)) as raw, sender() as delivery:
            result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", headers)
        assert result.ours
        assert not result.succeeded
        assert result.error is not None
        assert "line break or NUL" in result.error
        assert raw.requests == []
        assert raw.connections == 0

    run(scenario)


# --- connections -------------------------------------------------------------------------------


def test_one_connection_serves_one_request_after_another(run: Run) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK)) as raw:
            async with client() as web:
                for _ in range(5):
                    answer = await web.post(raw.target(), b"{}", {}, 4096)
                    assert (answer.status, answer.body) == (200, b"ok")
                assert web.idle_connections() == 1
            await until(lambda: raw.closed == [1])
        assert [number for number, _ in raw.requests] == [1] * 5

    run(scenario)


def test_concurrent_requests_open_at_most_one_connection_each(run: Run) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK)) as raw, client() as web:
            for _ in range(3):
                await asyncio.gather(*(web.post(raw.target(), b"{}", {}, 4096) for _ in range(10)))
            assert web.idle_connections() == raw.connections
        assert len(raw.requests) == 30
        assert raw.connections <= 10

    run(scenario)


def test_a_kept_connection_the_server_dropped_unanswered_is_replaced_once(run: Run) -> None:
    """The server's idle timeout races a request: it closes a kept connection as the request
    arrives, unanswered. The request is sent again on a new connection, once."""

    async def answer(raw: Raw, number: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        if len(raw.requests) == 2:  # the second request, on the kept connection: dropped
            writer.close()
            return
        writer.write(OK)
        await writer.drain()

    async def scenario() -> None:
        async with Raw(answer) as raw, client() as web:
            assert (await web.post(raw.target(), b"1", {}, 4096)).status == 200
            assert (await web.post(raw.target(), b"2", {}, 4096)).status == 200
        assert [(number, request[-1:]) for number, request in raw.requests] == [
            (1, b"1"),
            (1, b"2"),
            (2, b"2"),
        ]

    run(scenario)


def test_a_new_connection_dropped_unanswered_is_not_sent_again(run: Run) -> None:
    async def scenario() -> None:
        async with Raw(answering(b"", close=True)) as raw, sender() as delivery:
            result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
        assert len(raw.requests) == 1
        assert result.unreachable
        assert result.status_code is None
        assert result.error == "the server closed the connection without answering"

    run(scenario)


def test_idle_connections_are_closed_after_the_keepalive(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "SWEEP_S", 0.05)

    async def scenario() -> None:
        async with Raw(answering(OK)) as raw, client(keepalive_s=0.2) as web:
            await web.post(raw.target(), b"{}", {}, 4096)
            assert web.idle_connections() == 1
            await until(lambda: raw.closed == [1])  # the client hung up, unasked
            assert web.idle_connections() == 0
            await web.post(raw.target(), b"{}", {}, 4096)
        assert raw.connections == 2

    run(scenario)


def test_keepalive_zero_is_a_connection_a_request(run: Run) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK)) as raw, client(keepalive_s=0) as web:
            for _ in range(3):
                await web.post(raw.target(), b"{}", {}, 4096)
            assert web.idle_connections() == 0
        assert [number for number, _ in raw.requests] == [1, 2, 3]

    run(scenario)


def test_connection_refused(run: Run) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK)) as raw:
            port = raw.port
        async with client() as web:
            with pytest.raises(ConnectFailed) as caught:
                await web.post(check_url(f"http://127.0.0.1:{port}/", OPEN), b"", {}, 10)
        assert isinstance(caught.value.os_error, ConnectionRefusedError)
        async with sender() as delivery:
            result = await delivery.post(f"http://127.0.0.1:{port}/", b"{}", {})
        assert result.unreachable
        assert result.error is not None
        assert result.error.startswith("connection failed: [Errno 111]")

    run(scenario)


# --- answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status", "body", "kept"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 503, b"", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            200,
            b"hello",
            True,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            201,
            b"ok",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", 302, b"", True),
    ],
)
def test_answers(run: Run, wire: bytes, status: int, body: bytes, kept: bool) -> None:
    async def scenario() -> None:
        async with Raw(answering(wire)) as raw, client() as web:
            answer = await web.post(raw.target(), b"{}", {}, 4096)
            assert (answer.status, answer.body) == (status, body)
            assert web.idle_connections() == int(kept)

    run(scenario)


def test_an_answer_without_a_length_runs_until_the_server_closes(run: Run) -> None:
    async def scenario() -> None:
        until_closed = answering(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True)
        async with Raw(until_closed) as raw, client() as web:
            answer = await web.post(raw.target(), b"{}", {}, 4096)
            assert web.idle_connections() == 0
        assert (answer.status, answer.body) == (200, b"until the end")

    run(scenario)


def test_retry_after_and_status_reach_the_result(run: Run) -> None:
    wire = b"HTTP/1.1 429 Slow down\r\nretry-after: 120\r\nContent-Length: 4\r\n\r\nslow"

    async def scenario() -> None:
        async with Raw(answering(wire)) as raw, sender() as delivery:
            result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
        assert (result.status_code, result.retry_after_s, result.response_body) == (
            429,
            120.0,
            b"slow",
        )
        assert result.error == "HTTP 429"
        assert not result.unreachable

    run(scenario)


def test_a_long_answer_keeps_4_kb_and_drops_the_connection(run: Run) -> None:
    long = b"x" * 100_000
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(long), long)

    async def scenario() -> None:
        async with Raw(answering(wire)) as raw, sender() as delivery:
            for _ in range(2):
                result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
                assert result.succeeded, result
                assert result.response_body == long[:MAX_RESPONSE_BYTES]
        assert raw.connections == 2  # the rest of the first was never read: a new connection

    run(scenario)


def test_an_answer_cut_short_keeps_its_status(run: Run) -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"

    async def scenario() -> None:
        async with Raw(answering(wire, close=True)) as raw, sender() as delivery:
            result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
        assert result.status_code == 200
        assert result.unreachable
        assert not result.succeeded
        assert result.error == "the connection closed before the end of the answer (HTTP 200)"

    run(scenario)


@pytest.mark.parametrize(
    "wire", [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nA\r\n\r\n"]
)
def test_what_is_not_http_is_a_bad_response(run: Run, wire: bytes) -> None:
    async def scenario() -> None:
        async with Raw(answering(wire)) as raw:
            async with client() as web:
                with pytest.raises(BadResponse):
                    await web.post(raw.target(), b"{}", {}, 4096)
                assert web.idle_connections() == 0
            async with sender() as delivery:
                result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
        assert result.unreachable
        assert result.status_code is None
        assert result.error is not None
        assert result.error.startswith("the answer is not HTTP/1.1")

    run(scenario)


def test_an_answer_nobody_asked_for_closes_the_connection(run: Run) -> None:
    async def answer(raw: Raw, number: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(OK + OK)  # one answer too many
        await writer.drain()

    async def scenario() -> None:
        async with Raw(answer) as raw, client() as web:
            assert (await web.post(raw.target(), b"{}", {}, 4096)).status == 200
            await until(lambda: web.idle_connections() == 0)
            assert (await web.post(raw.target(), b"{}", {}, 4096)).status == 200
        assert raw.connections == 2

    run(scenario)


# --- deadlines and cancellation ------------------------------------------------------------------


def test_an_attempt_past_its_deadline_closes_its_connection(run: Run) -> None:
    async def silent(raw: Raw, number: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        return None  # never answers

    async def scenario() -> None:
        async with Raw(silent) as raw, sender(delivery_timeout=0.2) as delivery:
            result = await delivery.post(f"http://127.0.0.1:{raw.port}/x", b"{}", {})
            assert result.error == "timed out after 0.2 s"
            assert result.unreachable
            await until(lambda: raw.closed == [1])
            assert delivery.client.idle_connections() == 0

    run(scenario)


def test_a_cancelled_request_is_cancelled_and_its_connection_closed(run: Run) -> None:
    async def silent(raw: Raw, number: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        return None

    async def scenario() -> None:
        async with Raw(silent) as raw, client() as web:
            task = asyncio.create_task(web.post(raw.target(), b"{}", {}, 4096))
            await until(lambda: len(raw.requests) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: raw.closed == [1])
            assert web.idle_connections() == 0

    run(scenario)


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def trusting(authority: trustme.CA) -> ssl.SSLContext:
    """A client's context that trusts the test CA (and nothing else)."""
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


def test_tls_verifies_the_certificate(
    run: Run, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK), ssl=server_tls) as raw:
            url = f"https://127.0.0.1:{raw.port}/hook"
            async with sender(ssl_context=trusting) as trusted, sender() as untrusted:
                for _ in range(2):
                    ok = await trusted.send(url, "evt_1", "customer.created", b"{}", [SECRET])
                    assert ok.succeeded, ok
                refused = await untrusted.send(url, "evt_1", "customer.created", b"{}", [SECRET])
        assert [number for number, _ in raw.requests] == [1, 1]  # TLS connections are kept too
        assert refused.unreachable
        assert refused.status_code is None
        assert refused.error is not None
        assert refused.error.startswith("TLS certificate error: "), refused.error
        assert "certificate" in refused.error.removeprefix("TLS certificate error: ")

    run(scenario)


def test_tls_refuses_a_certificate_for_another_name(
    run: Run, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        async with Raw(answering(OK), ssl=server_tls) as raw:
            # The guard is asked for "localhost"; the certificate names only 127.0.0.1.
            target = check_url(f"https://localhost:{raw.port}/hook", OPEN)
            async with client(ssl_context=trusting) as web:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await web.post(target, b"{}", {}, 4096)
        assert raw.requests == []

    run(scenario)
