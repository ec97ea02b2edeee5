"""One HTTP attempt: vet the target, sign, POST on a kept-alive connection, read ≤ 4 KB.

The client (``delivery.http``) keeps connections alive, never follows redirects, knows no proxy,
and resolves every new connection of a webhook through the SSRF guard, so the connection goes
to the address that was checked. Each attempt has one overall deadline (connect, send, answer,
body); the answer's body is read up to 4 KB and the connection dropped if more is left.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiohttp.resolver import ThreadedResolver

from bitbybit.config import Settings
from bitbybit.delivery.http import BadResponse, ConnectFailed, Disconnected, HttpClient
from bitbybit.delivery.policy import SendResult, parse_retry_after
from bitbybit.delivery.ssrf import (
    GuardedResolver,
    ParsedTarget,
    TargetPolicy,
    TargetRefused,
    check_url,
)
from bitbybit.limits import MAX_PAYLOAD_BYTES
from bitbybit.webhooks.signing import webhook_headers

MAX_RESPONSE_BYTES = 4096
DEADLINE_TICK_S = 0.05
"""How often attempts are checked against their deadline: an attempt that runs out of time ends
within this much (or a tenth of the timeout, if less) of its deadline."""
OPERATOR_URLS = TargetPolicy(allow_private=True, allow_http=True)
"""What an unguarded sender's URLs (the operator's own configuration) are parsed with."""


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
    """POSTs with one shared client. ``guarded`` (webhooks): every URL is vetted and every
    connection resolved through the SSRF guard; an operator-configured API (the Graph API) is
    called unguarded."""

    def __init__(
        self,
        settings: Settings,
        *,
        guarded: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = TargetPolicy.from_settings(settings)
        self.guarded = guarded
        self.clock = settings.clock
        self.timeout = settings.delivery_timeout
        self.ssl_context = ssl_context
        """The certificates TLS trusts (default: the system's)."""
        self.deadlines = Deadlines(self.timeout)
        self._client: HttpClient | None = None

    @property
    def client(self) -> HttpClient:
        if self._client is None or self._client.closed:
            resolver = GuardedResolver(self.policy) if self.guarded else ThreadedResolver()
            self._client = HttpClient(resolver, ssl_context=self.ssl_context)
        return self._client

    async def close(self) -> None:
        self.deadlines.close()
        if self._client is not None:
            await self._client.close()
            self._client = None

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
            target = check_url(url, self.policy)
        except TargetRefused as refused:
            return SendResult(started_at=started, latency_ms=0, error=refused.message)
        headers = webhook_headers(event_id, event_type, body, secrets, started // 1000)
        return await self._post(target, body, headers, started)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], started: int | None = None
    ) -> SendResult:
        """POST ``body`` to an operator-configured ``url`` (unvetted when the sender is not
        guarded) within the delivery timeout; never raises for trouble with the target."""
        started = self.clock() if started is None else started
        try:
            target = check_url(url, self.policy if self.guarded else OPERATOR_URLS)
        except TargetRefused as refused:
            return SendResult(started_at=started, latency_ms=0, error=refused.message, ours=True)
        return await self._post(target, body, headers, started)

    async def _post(
        self, target: ParsedTarget, body: bytes, headers: dict[str, str], started: int
    ) -> SendResult:
        """POST within the delivery timeout and read up to 4 KB of the answer."""
        clock = time.monotonic()
        task = asyncio.current_task()
        assert task is not None  # (an attempt always runs in a task)
        cancelling = task.cancelling()
        self.deadlines.start(task)
        try:
            answer = await self.client.post(target, body, headers, MAX_RESPONSE_BYTES)
        except asyncio.CancelledError:
            if not self.deadlines.expired(task) or task.uncancel() > cancelling:
                raise  # cancelled by someone else
            timed_out = f"timed out after {self.timeout:g} s"
            return _result(started, clock, error=timed_out, unreachable=True)
        except Disconnected as error:
            return _result(
                started, clock, status_code=error.status, error=_cut_short(error), unreachable=True
            )
        except (ConnectFailed, BadResponse, OSError) as error:  # (TLS errors are OSErrors)
            return _result(started, clock, error=_describe(error), unreachable=True)
        except ValueError as error:  # a header that cannot be sent: ours, not the target's
            return _result(started, clock, error=str(error), ours=True)
        finally:
            self.deadlines.end(task)
        status = answer.status
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
            response_body=answer.body,
            retry_after_s=parse_retry_after(answer.retry_after, started),
        )


def _result(started: int, clock: float, **fields: Any) -> SendResult:
    latency = round((time.monotonic() - clock) * 1000)
    return SendResult(started_at=started, latency_ms=latency, **fields)


def _describe(error: Exception) -> str:
    if isinstance(error, ConnectFailed):
        return f"connection failed: {error.os_error}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate error: {error.verify_message or error}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, BadResponse):
        return f"the answer is not HTTP/1.1: {error}"
    return f"connection failed: {error}"


def _cut_short(error: Disconnected) -> str:
    if error.status is not None:
        return f"the connection closed before the end of the answer (HTTP {error.status})"
    if error.error is not None:
        return f"the connection was lost before an answer: {error.error}"
    return "the server closed the connection without answering"
