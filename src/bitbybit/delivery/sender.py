"""One HTTP attempt: vet the target, sign, POST with one shared aiohttp session, read ≤ 4 KB.

The session keeps connections alive, never follows redirects, ignores proxy environment
variables, and resolves every new connection through the SSRF guard so the connection goes to
the address that was checked. Each attempt has one overall deadline (connect, send, response,
body); the response body is read up to 4 KB and the connection dropped if more is left.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bitbybit.config import Settings
from bitbybit.delivery.policy import SendResult, parse_retry_after
from bitbybit.delivery.ssrf import TargetPolicy, TargetRefused, check_url, new_connector
from bitbybit.limits import MAX_PAYLOAD_BYTES
from bitbybit.webhooks.signing import webhook_headers

MAX_RESPONSE_BYTES = 4096


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

        def result(**fields: object) -> SendResult:
            latency = round((time.monotonic() - clock) * 1000)
            return SendResult(started_at=started, latency_ms=latency, **fields)  # type: ignore[arg-type]  # fields of SendResult

        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), started)
                    content = bytearray()
                    while len(content) < MAX_RESPONSE_BYTES:
                        chunk = await response.content.read(MAX_RESPONSE_BYTES - len(content))
                        if not chunk:
                            break
                        content += chunk
                    if not response.content.at_eof():
                        response.close()  # more than we keep: drop the connection, not read on
        except TimeoutError:
            timed_out = f"timed out after {self.timeout:g} s"
            return result(status_code=status, error=timed_out, unreachable=True)
        except aiohttp.ClientError as error:
            return result(status_code=status, error=_describe(error), unreachable=True)
        except OSError as error:
            return result(status_code=status, error=f"connection failed: {error}", unreachable=True)
        problem = None
        if 300 <= status < 400:
            problem = f"redirect ({status}) not followed"
        elif not 200 <= status < 300:
            problem = f"HTTP {status}"
        return result(
            status_code=status,
            error=problem,
            response_body=bytes(content),
            retry_after_s=retry_after,
        )


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
