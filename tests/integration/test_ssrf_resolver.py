"""Real requests through the worker's HTTP client with a stub DNS: the SSRF guard at connect time.

A real ``aiohttp.web`` server listens on loopback; names are "resolved" by a stub, so no DNS query
leaves the machine. An autouse socket guard wraps ``socket.socket.connect``/``connect_ex``, the
event loop's ``sock_connect`` and ``socket.getaddrinfo``: any connection to a non-loopback
address (or a DNS lookup of a real name) is stopped before it reaches the kernel and fails the
test, even if the code under test swallows the error. A test may declare one public-looking
address (``93.184.215.14``, only ever named by the stub) as *expected*: attempts to it are still
stopped and answered with ``ConnectionRefusedError``, and recorded, so a test can prove the
client dialled exactly the address that was checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bitbybit.delivery import ssrf
from bitbybit.delivery.http import ConnectFailed, HttpClient
from bitbybit.delivery.ssrf import (
    GuardedResolver,
    ParsedTarget,
    RefusedAddress,
    TargetPolicy,
    refusal_from,
)

PUBLIC = "93.184.215.14"  # global per ``ipaddress``; only the stub ever names it
HOST = "hooks.example.com"
TIMEOUT = aiohttp.ClientTimeout(total=10)

STRICT_HTTP = TargetPolicy(allow_private=False, allow_http=True)
OPEN = TargetPolicy(allow_private=True, allow_http=True)


# --- the socket guard ------------------------------------------------------------------------


class GuardTripped(AssertionError):
    """A test tried to reach beyond loopback."""


@dataclass
class SocketGuard:
    attempts: list[tuple[str, int]] = field(default_factory=list)
    """Every TCP/UDP connect seen (host, port), allowed or not, in order."""
    violations: list[str] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)
    """Non-loopback addresses a test declared it will dial; stopped, refused, not violations."""

    def connect(self, address: Any, layer: str) -> None:
        if not isinstance(address, tuple):  # AF_UNIX path: local by definition
            return
        host, port = str(address[0]), int(address[1])
        self.attempts.append((host, port))
        if _is_loopback(host):
            return
        if host in self.expected:
            raise ConnectionRefusedError(111, f"socket guard stopped {host}:{port}")
        self.violations.append(f"{layer} to {host}:{port}")
        raise GuardTripped(f"socket guard: {layer} to non-loopback {host}:{port}")

    def lookup(self, host: Any) -> None:
        if host is None or (isinstance(host, str | bytes) and _is_local_name(host)):
            return
        self.violations.append(f"DNS lookup of {host!r}")
        raise GuardTripped(f"socket guard: DNS lookup of {host!r}")

    def dialled(self) -> list[tuple[str, int]]:
        """Distinct addresses dialled, in order (each layer records the same dial once)."""
        return list(dict.fromkeys(self.attempts))

    def assert_clean(self) -> None:
        if self.violations:
            pytest.fail(f"connections beyond loopback were attempted: {self.violations}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_local_name(host: str | bytes) -> bool:
    name = host.decode() if isinstance(host, bytes) else host
    if name.lower().removesuffix(".") == "localhost":
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])  # a literal needs no DNS
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def socket_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketGuard]:
    guard = SocketGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo
    selector_loop = asyncio.selector_events.BaseSelectorEventLoop
    real_sock_connect = selector_loop.sock_connect

    def connect(self: socket.socket, address: Any) -> None:
        guard.connect(address, "socket.connect")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard.connect(address, "socket.connect_ex")
        return real_connect_ex(self, address)

    async def sock_connect(self: Any, sock: socket.socket, address: Any) -> None:
        guard.connect(address, "loop.sock_connect")
        await real_sock_connect(self, sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.lookup(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(selector_loop, "sock_connect", sock_connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
    guard.assert_clean()


def test_guard_stops_and_fails_a_non_loopback_connect(socket_guard: SocketGuard) -> None:
    with socket.socket() as sock, pytest.raises(GuardTripped):
        sock.connect(("192.0.2.1", 9))
    with socket.socket() as sock, pytest.raises(GuardTripped):
        sock.connect_ex(("192.0.2.1", 9))
    with pytest.raises(GuardTripped):
        socket.getaddrinfo("example.com", 443)
    assert socket_guard.violations == [
        "socket.connect to 192.0.2.1:9",
        "socket.connect_ex to 192.0.2.1:9",
        "DNS lookup of 'example.com'",
    ]
    with pytest.raises(pytest.fail.Exception, match=r"192\.0\.2\.1:9"):
        socket_guard.assert_clean()
    socket_guard.violations.clear()  # proven; let this test's teardown pass


async def test_guard_fails_the_test_even_when_the_error_is_swallowed(
    socket_guard: SocketGuard,
) -> None:
    """Code that catches every error cannot hide an attempt: the guard still fails the test."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(GuardTripped):
            await loop.sock_connect(sock, ("192.0.2.1", 9))
    # A plain aiohttp connector (no SSRF guard) and a caller that swallows everything:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with contextlib.suppress(BaseException):
            await session.get("http://192.0.2.1:9/")
    assert ("192.0.2.1", 9) in socket_guard.attempts
    with pytest.raises(pytest.fail.Exception):
        socket_guard.assert_clean()
    socket_guard.violations.clear()


async def test_guard_lets_loopback_through(receiver: Receiver, socket_guard: SocketGuard) -> None:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"http://127.0.0.1:{receiver.port}/hook") as response,
    ):
        assert response.status == 200
    assert socket_guard.dialled() == [("127.0.0.1", receiver.port)]


# --- a receiver on loopback and a stub DNS ---------------------------------------------------


@dataclass
class Receiver:
    port: int
    hosts: list[str] = field(default_factory=list)
    """The Host header of every request received."""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    seen: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Host", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Receiver(port=port, hosts=seen)
    finally:
        await runner.cleanup()


class StubResolver(AbstractResolver):
    """Answers from a script: each lookup takes the next answer; the last one repeats."""

    def __init__(self, *answers: Sequence[str], host: str = HOST) -> None:
        self.host = host
        self.answers = [list(answer) for answer in answers]
        self.calls: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host != self.host:
            raise socket.gaierror(socket.EAI_NONAME, f"stub knows only {self.host}")
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in answer
        ]

    async def close(self) -> None:
        self.closed = True


@contextlib.asynccontextmanager
async def session_for(
    policy: TargetPolicy, stub: AbstractResolver, *, keepalive_s: float = 30.0
) -> AsyncIterator[HttpClient]:
    client = HttpClient(GuardedResolver(policy, stub), keepalive_s=keepalive_s)
    try:
        yield client
    finally:
        await client.close()


def target_of(url: str) -> ParsedTarget:
    """The URL as the client gets it, with none of ``check_url``'s checks: what is tested here
    is the guard at connect time alone."""
    parsed = URL(url)
    assert parsed.raw_host is not None
    assert parsed.port is not None
    return ParsedTarget(parsed.scheme, parsed.raw_host, parsed.port, None, parsed.raw_path)


async def attempt(client: HttpClient, url: str) -> int:
    answer = await asyncio.wait_for(client.post(target_of(url), b"{}", {}, 4096), 10)
    return answer.status


# --- the guard at connect time ---------------------------------------------------------------


async def test_allowed_private_target_gets_the_request_for_its_name(
    receiver: Receiver, socket_guard: SocketGuard
) -> None:
    stub = StubResolver(["127.0.0.1"])
    async with session_for(OPEN, stub) as session:
        assert await attempt(session, f"http://{HOST}:{receiver.port}/hook") == 200
    assert receiver.hosts == [f"{HOST}:{receiver.port}"]
    assert stub.calls == [HOST]
    assert socket_guard.dialled() == [("127.0.0.1", receiver.port)]


class LogRecorder:
    """Stands in for ``ssrf.log``: keeps each warning's event and fields."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append({"event": event, **fields})


@pytest.fixture
def ssrf_log(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(ssrf, "log", recorder, raising=False)
    return recorder


async def test_refused_private_target_is_never_dialled(
    receiver: Receiver, socket_guard: SocketGuard, ssrf_log: LogRecorder
) -> None:
    stub = StubResolver(["127.0.0.1"])
    async with session_for(STRICT_HTTP, stub) as session:
        with pytest.raises(ConnectFailed) as caught:
            await attempt(session, f"http://{HOST}:{receiver.port}/hook")
    error = caught.value
    assert isinstance(error.os_error, RefusedAddress)
    refused = refusal_from(error)
    assert refused is not None
    # What the tenant reads names no address; the operator's log does.
    assert refused.reason == f"{HOST} resolves to a non-public address"
    assert str(error.os_error) == refused.message  # what the sender records as the failure
    assert refused.message in str(error)
    assert "127.0.0.1" not in str(error)
    assert ssrf_log.warnings == [
        {
            "event": "target_refused",
            "host": HOST,
            "address": "127.0.0.1",
            "verdict": "is a loopback address",
        }
    ]
    assert stub.calls == [HOST]
    assert socket_guard.attempts == []
    assert receiver.hosts == []


async def test_dns_rebinding_each_new_connection_is_checked_again(
    receiver: Receiver, socket_guard: SocketGuard, ssrf_log: LogRecorder
) -> None:
    """Public, then loopback, then public again: the loopback answer is refused undialled."""
    socket_guard.expected.add(PUBLIC)
    stub = StubResolver([PUBLIC], ["127.0.0.1"], [PUBLIC])
    url = f"http://{HOST}:{receiver.port}/hook"
    async with session_for(STRICT_HTTP, stub) as session:
        # 1: allowed, and the client dials exactly the address that was checked (the guard stops it)
        with pytest.raises(ConnectFailed) as first:
            await attempt(session, url)
        assert refusal_from(first.value) is None
        assert socket_guard.dialled() == [(PUBLIC, receiver.port)]
        # 2: the name now points at loopback: refused before any connect
        with pytest.raises(ConnectFailed) as second:
            await attempt(session, url)
        refused = refusal_from(second.value)
        assert refused is not None
        assert refused.reason == f"{HOST} resolves to a non-public address"
        assert [(w["address"], w["verdict"]) for w in ssrf_log.warnings] == [
            ("127.0.0.1", "is a loopback address")
        ]
        assert socket_guard.dialled() == [(PUBLIC, receiver.port)]
        # 3: no DNS cache: a third connection resolves (and is checked) afresh
        with pytest.raises(ConnectFailed):
            await attempt(session, url)
    assert stub.calls == [HOST, HOST, HOST]
    assert [a for a in socket_guard.attempts if a[0] != PUBLIC] == []
    assert receiver.hosts == []


@pytest.mark.parametrize(
    ("answer", "policy", "verdict"),
    [
        ([PUBLIC, "127.0.0.1"], STRICT_HTTP, "is a loopback address"),
        (["127.0.0.1", PUBLIC], STRICT_HTTP, "is a loopback address"),
        ([PUBLIC, "10.0.0.7"], STRICT_HTTP, "is a private address"),
        ([PUBLIC, "::ffff:127.0.0.1"], STRICT_HTTP, "embeds 127.0.0.1, a loopback address"),
        ([PUBLIC, "64:ff9b::a00:1"], STRICT_HTTP, "embeds 10.0.0.1, a private address"),
        ([PUBLIC, "fd12::1"], STRICT_HTTP, "is a unique-local address"),
        (["127.0.0.1", "169.254.169.254"], OPEN, "is a cloud metadata address"),
        (["127.0.0.1", "::ffff:169.254.169.254"], OPEN, "embeds 169.254.169.254"),
        (["127.0.0.1", "fd00:ec2::254"], OPEN, "is a cloud metadata address"),
        (["127.0.0.1", "0.0.0.0"], OPEN, "is an unspecified address"),  # noqa: S104  # an answer, not a bind
    ],
)
async def test_one_refused_address_refuses_the_whole_answer(
    receiver: Receiver,
    socket_guard: SocketGuard,
    ssrf_log: LogRecorder,
    answer: list[str],
    policy: TargetPolicy,
    verdict: str,
) -> None:
    stub = StubResolver(answer)
    async with session_for(policy, stub) as session:
        with pytest.raises(ConnectFailed) as caught:
            await attempt(session, f"http://{HOST}:{receiver.port}/hook")
    refused = refusal_from(caught.value)
    assert refused is not None
    assert refused.reason == f"{HOST} resolves to a non-public address"
    assert [w["host"] for w in ssrf_log.warnings] == [HOST]
    assert verdict in str(ssrf_log.warnings[0]["verdict"])
    assert socket_guard.attempts == []
    assert receiver.hosts == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "１２７．０．０．１"]
)
async def test_literal_addresses_are_checked_by_the_connector(
    receiver: Receiver, socket_guard: SocketGuard, host: str
) -> None:
    """A literal IP is checked by the guard without a lookup."""
    stub = StubResolver(["127.0.0.1"])
    async with session_for(STRICT_HTTP, stub) as session:
        with pytest.raises(ConnectFailed) as caught:
            await attempt(session, f"http://{host}:{receiver.port}/hook")
    refused = refusal_from(caught.value)
    assert refused is not None
    assert refused.reason.endswith(" resolves to a non-public address")
    assert stub.calls == []
    assert socket_guard.attempts == []
    assert receiver.hosts == []


async def test_literal_loopback_is_allowed_with_allow_private(
    receiver: Receiver, socket_guard: SocketGuard
) -> None:
    stub = StubResolver(["127.0.0.1"])
    async with session_for(OPEN, stub) as session:
        assert await attempt(session, f"http://127.0.0.1:{receiver.port}/hook") == 200
    assert stub.calls == []
    assert receiver.hosts == [f"127.0.0.1:{receiver.port}"]
    assert socket_guard.dialled() == [("127.0.0.1", receiver.port)]


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal."])
async def test_metadata_name_is_refused_whatever_it_resolves_to(
    receiver: Receiver, socket_guard: SocketGuard, host: str
) -> None:
    stub = StubResolver(["127.0.0.1"], host=host)
    async with session_for(OPEN, stub) as session:
        with pytest.raises(ConnectFailed) as caught:
            await attempt(session, f"http://{host}:{receiver.port}/hook")
    refused = refusal_from(caught.value)
    assert refused is not None
    assert "cloud metadata host" in refused.reason
    assert stub.calls == []
    assert socket_guard.attempts == []


async def test_every_new_connection_resolves_again(
    receiver: Receiver, socket_guard: SocketGuard
) -> None:
    stub = StubResolver(["127.0.0.1"])
    async with session_for(OPEN, stub, keepalive_s=0) as session:
        for _ in range(3):
            assert await attempt(session, f"http://{HOST}:{receiver.port}/hook") == 200
    assert stub.calls == [HOST] * 3
    assert len(receiver.hosts) == 3


async def test_kept_alive_connection_stays_on_the_checked_address(
    receiver: Receiver, socket_guard: SocketGuard
) -> None:
    """A pooled connection was checked when it was opened; reusing it dials nothing new."""
    stub = StubResolver(["127.0.0.1"], ["10.0.0.1"])
    async with session_for(OPEN, stub) as session:
        for _ in range(3):
            assert await attempt(session, f"http://{HOST}:{receiver.port}/hook") == 200
    assert stub.calls == [HOST]
    assert socket_guard.dialled() == [("127.0.0.1", receiver.port)]
    assert len(receiver.hosts) == 3


async def test_closing_the_client_closes_the_resolver(socket_guard: SocketGuard) -> None:
    stub = StubResolver(["127.0.0.1"])
    client = HttpClient(GuardedResolver(STRICT_HTTP, stub))
    await client.close()
    assert stub.closed
    assert client.closed


async def test_the_default_inner_resolver_is_the_system_one(socket_guard: SocketGuard) -> None:
    """``localhost`` through the real resolver (no DNS: the hosts file): loopback, refused."""
    strict = GuardedResolver(STRICT_HTTP)
    try:
        with pytest.raises(RefusedAddress, match="localhost resolves to a non-public address"):
            await strict.resolve("localhost", 80, socket.AF_INET)
    finally:
        await strict.close()
    open_guard = GuardedResolver(OPEN)
    try:
        results = await open_guard.resolve("localhost", 80, socket.AF_INET)
    finally:
        await open_guard.close()
    assert results
    assert all(ipaddress.ip_address(r["host"]).is_loopback for r in results)
    assert socket_guard.attempts == []
