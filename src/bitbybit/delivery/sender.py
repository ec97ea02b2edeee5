"""One HTTP attempt: vet the target, sign, POST with one shared aiohttp session, read ≤ 4 KB.

The session keeps connections alive, never follows redirects, ignores proxy environment
variables, and resolves every new connection through the SSRF guard so the connection goes to
the address that was checked. Each attempt has one overall deadline (connect, send, response,
body); the response body is read up to 4 KB and the connection dropped if more is left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bitbybit.config import Settings
from bitbybit.delivery.policy import SendResult, parse_retry_after
from bitbybit.delivery.ssrf import TargetPolicy, TargetRefused, check_url, new_connector
from bitbybit.limits import MAX_PAYLOAD_BYTES
from bitbybit.webhooks.signing import webhook_headers

MAX_RESPONSE_BYTES = 4096
DEADLINE_TICK_S = 0.05
"""How often attempts are checked against their deadline: an attempt that runs out of time ends
within this much (or a tenth of the timeout, if less) of its deadline."""


class Deadlines:
    """Cancels attempts that outlive the timeout, all with one timer: a timer of its own for
    each attempt (``asyncio.timeout``) cost several microseconds an attempt, a few percent of
    all the worker's CPU. Every attempt has the same timeout, so attempts are registered in the
    order of their deadlines and each check looks at the oldest only."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tick = min(DEADLINE_TICK_S, timeout / 10)
        self._running: dict[asyncio.Task[Any], float] = {}
        """Attempts in flight and their deadlines (``loop.time()``), oldest first."""
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        loop = task.get_loop()
        self._running[task] = loop.time() + self.timeout
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._check)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled because its attempt ran out of time."""
        return task in self._expired

    def end(self, task: asyncio.Task[Any]) -> None:
        """The attempt of ``task`` ended (in time or not)."""
        self._running.pop(task, None)
        self._expired.discard(task)

    def _check(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        running = self._running
        while running:
            task = next(iter(running))
            if running[task] > now:
                break
            del running[task]
            self._expired.add(task)
            task.cancel()
        self._timer = self._loop.call_later(self.tick, self._check) if running else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop = None
        self._running.clear()
        self._expired.clear()


class Sender:
    """POSTs with one shared session. ``guarded`` (webhooks): every URL is vetted and every
    connection resolved through the SSRF guard; an operator-configured API (the Graph API) is
    called unguarded."""

    def __init__(self, settings: Settings, *, connections: int = 500, guarded: bool = True) -> None:
        self.policy = TargetPolicy.from_settings(settings)
        self.guarded = guarded
        self.clock = settings.clock
        self.timeout = settings.delivery_timeout
        self.connections = connections
        self.deadlines = Deadlines(self.timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = (
                new_connector(
                    self.policy, limit=self.connections, limit_per_host=0, keepalive_timeout=30
                )
                if self.guarded
                else aiohttp.TCPConnector(
                    limit=self.connections, limit_per_host=0, keepalive_timeout=30
                )
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def close(self) -> None:
        self.deadlines.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, url: str, event_id: str, event_type: str, body: bytes, secrets: list[str]
    ) -> SendResult:
        """Sign ``body`` with a fresh timestamp and POST it; never raises for target trouble."""
        started = self.clock()
        if len(body) > MAX_PAYLOAD_BYTES:
            return SendResult(
                started_at=started,
                latency_ms=0,
                error=f"payload of {len(body)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit",
                permanent=True,
                ours=True,
            )
        try:
            check_url(url, self.policy)
        except TargetRefused as refused:
            return SendResult(started_at=started, latency_ms=0, error=refused.message)
        headers = webhook_headers(event_id, event_type, body, secrets, started // 1000)
        return await self.post(url, body, headers, started)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], started: int | None = None
    ) -> SendResult:
        """POST ``body`` within the delivery timeout and read up to 4 KB of the answer; never
        raises for trouble with the target (that is a failed result)."""
        started = self.clock() if started is None else started
        clock = time.monotonic()
        task = asyncio.current_task()
        assert task is not None  # (an attempt always runs in a task)
        cancelling = task.cancelling()
        status: int | None = None
        self.deadlines.start(task)
        try:
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), started)
                content = await _read_some(response)
        except asyncio.CancelledError:
            if not self.deadlines.expired(task) or task.uncancel() > cancelling:
                raise  # cancelled by someone else
            timed_out = f"timed out after {self.timeout:g} s"
            return _result(started, clock, status_code=status, error=timed_out, unreachable=True)
        except aiohttp.ClientError as error:
            failed = _describe(error)
            return _result(started, clock, status_code=status, error=failed, unreachable=True)
        except OSError as error:
            failed = f"connection failed: {error}"
            return _result(started, clock, status_code=status, error=failed, unreachable=True)
        finally:
            self.deadlines.end(task)
        problem = None
        if 300 <= status < 400:
            problem = f"redirect ({status}) not followed"
        elif not 200 <= status < 300:
            problem = f"HTTP {status}"
        return _result(
            started,
            clock,
            status_code=status,
            error=problem,
            response_body=content,
            retry_after_s=retry_after,
        )


async def _read_some(response: aiohttp.ClientResponse) -> bytes:
    """Up to 4 KB of the body; a body longer than that drops the connection, unread."""
    content = b""
    stream = response.content
    while len(content) < MAX_RESPONSE_BYTES and not stream.at_eof():
        chunk = await stream.read(MAX_RESPONSE_BYTES - len(content))
        if not chunk:
            break
        content += chunk
    if not stream.at_eof():
        response.close()  # more than we keep: drop the connection, not read on
    return content


def _result(started: int, clock: float, **fields: Any) -> SendResult:
    latency = round((time.monotonic() - clock) * 1000)
    return SendResult(started_at=started, latency_ms=latency, **fields)


def _describe(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error: {error.certificate_error}"
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS error: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connection failed: {error.os_error or error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"{type(error).__name__}: {error}"
