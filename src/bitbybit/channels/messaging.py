"""The WhatsApp channels of the delivery worker: outbound sends and the sandbox's receipts.

``MessagingChannel`` sends the jobs that ``services.messages`` queued (kind ``whatsapp``), to the
sandbox or to the WhatsApp Cloud API as each job says, and once the worker records an attempt it
writes what the attempt means for the message (``sent`` with WhatsApp's id, or ``failed`` with
Meta's code and title) in the same transaction. The worker's machinery does the rest: leases,
retries on the schedule, crash safety (ADR 0008).

Meta's limits (docs/messaging.md): each sending number is paced (80 messages a second by
default, 20 for a coexistence number, per number configurable) and slowed to half for a minute
when Meta says it is throttled (130429, 80007, 4); one recipient gets at most one message every
``BITBYBIT_WHATSAPP_PAIR_INTERVAL`` seconds from one number: a job that comes sooner is put off,
not attempted, so the pair limit (131056) is never hit by our own pace.

``ReceiptChannel`` plays WhatsApp's part in the sandbox: the delivered and read receipts the
sandbox queues after a send are "sent" by applying them, exactly as a callback from Meta would be.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from bitbybit.channels.meta import GraphAnswer, classify
from bitbybit.delivery.policy import SendResult
from bitbybit.delivery.sender import Sender
from bitbybit.errors import BitbybitError
from bitbybit.ids import random_base62
from bitbybit.models import (
    WHATSAPP,
    WHATSAPP_RECEIPT,
    AttemptResult,
    Job,
    Message,
    StatusReport,
    Tenant,
    WhatsAppNumber,
)
from bitbybit.runtime import Platform
from bitbybit.services import messages
from bitbybit.store import Tx

log = structlog.get_logger("bitbybit.channels")

NUMBER_TTL_S = 30.0
"""How long a number's credentials are used before they are read again (a rotated token is
picked up within this long)."""
THROTTLED_FOR_S = 60.0
"""How long a number Meta throttled sends at half its pace."""


@dataclass(frozen=True, slots=True)
class _Sending:
    """What the channel keeps of a job between its attempt and its record."""

    tenant: Tenant
    message_id: str
    channel: str
    to: str
    phone_number_id: str | None
    pace: float | None
    """The number's own pace, if it has one."""
    coex: bool
    request: bytes


def _parse(job: Job) -> _Sending:
    data: dict[str, Any] = orjson.loads(job.payload)
    return _Sending(
        Tenant(data["company"], data["mode"]),
        data["message"],
        data["channel"],
        data["request"]["to"],
        data.get("phoneNumberId"),
        data.get("pace") if data["channel"] != "sandbox" else None,
        bool(data.get("coex")),
        orjson.dumps(data["request"]),
    )


class MessagingChannel:
    kind = WHATSAPP

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.sender = Sender(settings, guarded=False)
        self.base = f"{settings.graph_url}/{settings.graph_version}"
        self.pair_interval = settings.whatsapp_pair_interval
        self.fail_numbers = frozenset(n.removeprefix("+") for n in settings.sandbox_fail_numbers)
        self._jobs: dict[str, _Sending] = {}
        """Jobs attempted and not yet recorded, by id."""
        self._numbers: dict[str, tuple[float, WhatsAppNumber | None, str]] = {}
        """Each number's record and opened access token, with when it was read."""
        self._next_to: dict[tuple[str, str], float] = {}
        """When (``time.monotonic()``) a number may next send to a recipient."""
        self._throttled: dict[str, float] = {}
        """Numbers Meta throttled, until when (``time.monotonic()``)."""
        self._answers: dict[str, GraphAnswer] = {}
        """What the last attempt of each job attempted and not yet recorded got."""

    def _sending(self, job: Job) -> _Sending:
        sending = self._jobs.get(job.delivery_id)
        if sending is None:
            sending = self._jobs[job.delivery_id] = _parse(job)
        return sending

    def pace(self, job: Job) -> float | None:
        """The number's own pace, else this process's default for its kind of number; half
        that for a minute after Meta throttled it. The sandbox is not paced."""
        sending = self._sending(job)
        if sending.channel == "sandbox":
            return None
        settings = self.platform.settings
        pace = sending.pace or (
            settings.whatsapp_coex_pace if sending.coex else settings.whatsapp_pace
        )
        if self._throttled.get(job.target, 0.0) > time.monotonic():
            return pace / 2
        return pace

    async def send(self, job: Job) -> SendResult:
        sending = self._sending(job)
        if sending.channel == "sandbox":
            return self._sandbox(sending)
        wait = self._pair_wait(job.target, sending.to)
        if wait > 0:
            return SendResult(
                started_at=self.platform.now(),
                latency_ms=0,
                error=f"waiting {wait:.1f} s for the recipient's pair rate limit",
                wait_s=wait,
                deferred=True,
            )
        return await self._graph(job, sending)

    def _pair_wait(self, target: str, to: str) -> float:
        """Seconds until this number may send to ``to``; 0 takes the turn."""
        if self.pair_interval <= 0:
            return 0.0
        now = time.monotonic()
        key = (target, to)
        allowed = self._next_to.get(key, 0.0)
        if allowed > now:
            return allowed - now
        self._next_to[key] = now + self.pair_interval
        if len(self._next_to) > 100_000:  # forget turns that have passed
            self._next_to = {k: t for k, t in self._next_to.items() if t > now}
        return 0.0

    def _sandbox(self, sending: _Sending) -> SendResult:
        now = self.platform.now()
        if sending.to in self.fail_numbers:
            code, title = messages.UNDELIVERABLE
            body = {
                "error": {"message": f"(#{code}) {title}", "code": code, "type": "OAuthException"}
            }
            return SendResult(
                started_at=now,
                latency_ms=0,
                status_code=400,
                error=f"({code}) {title}",
                response_body=orjson.dumps(body),
                permanent=True,
            )
        wa_id = f"wamid.sandbox.{random_base62(24)}"
        answer = {"messaging_product": "whatsapp", "messages": [{"id": wa_id}]}
        return SendResult(
            started_at=now, latency_ms=0, status_code=200, response_body=orjson.dumps(answer)
        )

    async def _number(self, phone_number_id: str) -> tuple[WhatsAppNumber | None, str]:
        cached = self._numbers.get(phone_number_id)
        if cached is not None and time.monotonic() - cached[0] < NUMBER_TTL_S:
            return cached[1], cached[2]
        async with self.platform.store.read() as tx:
            found = await tx.route_whatsapp_numbers([phone_number_id], [])
        number = found[0] if found else None
        token = self.platform.secrets.open(number.access_token) if number else ""
        self._numbers[phone_number_id] = (time.monotonic(), number, token)
        return number, token

    async def _graph(self, job: Job, sending: _Sending) -> SendResult:
        started = self.platform.now()
        phone_number_id = sending.phone_number_id or ""
        try:
            number, token = await self._number(phone_number_id)
        except BitbybitError as error:  # the database, or a token the key cannot open
            return SendResult(started_at=started, latency_ms=0, error=str(error), ours=True)
        if number is None:  # disconnected since: retried, in case it is connected again
            problem = f"WhatsApp number {phone_number_id} is no longer connected"
            return SendResult(started_at=started, latency_ms=0, error=problem, ours=True)
        sent = await self.sender.post(
            f"{self.base}/{phone_number_id}/messages",
            sending.request,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            started,
        )
        answer = self._answers[job.delivery_id] = classify(
            sent.status_code, sent.response_body, error=sent.error
        )
        if answer.succeeded:
            return sent
        if answer.throttled:
            self._throttled[job.target] = time.monotonic() + THROTTLED_FOR_S
            log.warning("whatsapp_throttled", target=job.target, code=answer.error_code)
        code = f"({answer.error_code}) " if answer.error_code is not None else ""
        return SendResult(
            started_at=sent.started_at,
            latency_ms=sent.latency_ms,
            status_code=sent.status_code,
            error=f"{code}{answer.error_title or sent.error or 'no answer'}",  # for the history
            response_body=sent.response_body,
            permanent=not answer.retryable,
            unreachable=sent.unreachable,
            wait_s=answer.retry_after_s,
        )

    async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
        answers = {r.delivery_id: self._answers.pop(r.delivery_id, None) for r in results}
        done = [r for r in results if r.status != "pending"]  # a retry leaves it accepted
        for result in done:
            self._jobs.pop(result.delivery_id, None)
        if not done:
            return
        found = {
            m.job_id: (tenant, m)
            for tenant, m in await tx.messages_of_jobs([r.delivery_id for r in done])
        }
        outcomes: list[messages.Outcome] = []
        for result in done:
            mine = found.get(result.delivery_id)
            if mine is None:
                continue
            tenant, message = mine
            answer = answers.get(result.delivery_id) or classify(
                result.status_code, result.response_body, error=result.error
            )
            if result.status == "succeeded" and answer.wa_message_id is not None:
                outcome = messages.Outcome(tenant, message, result.started_at, answer.wa_message_id)
            else:
                title = answer.error_title or result.error or "not sent"
                outcome = messages.Outcome(
                    tenant, message, result.started_at, code=answer.error_code, title=title
                )
            outcomes.append(outcome)
        await messages.record_outcomes(self.platform, tx, outcomes)

    async def close(self) -> None:
        await self.sender.close()


class ReceiptChannel:
    """The sandbox's delivered and read receipts, applied when their time comes."""

    kind = WHATSAPP_RECEIPT

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._jobs: dict[str, tuple[Tenant, str, StatusReport]] = {}
        """Receipts "sent" and not yet recorded: whose, which message, which status when."""

    def pace(self, job: Job) -> float | None:
        return None

    async def send(self, job: Job) -> SendResult:
        receipt: dict[str, Any] = orjson.loads(job.payload)
        tenant = Tenant(receipt["company"], receipt["mode"])
        report = StatusReport(receipt["status"], receipt["at"])  # when WhatsApp would say it
        self._jobs[job.delivery_id] = (tenant, receipt["message"], report)
        return SendResult(started_at=self.platform.now(), latency_ms=0, status_code=200)

    async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
        receipts = []
        for result in results:
            receipt = self._jobs.pop(result.delivery_id, None)
            if receipt is not None and result.status == "succeeded":
                receipts.append(receipt)
        wanted: dict[Tenant, set[str]] = {}
        for tenant, message_id, _ in receipts:
            wanted.setdefault(tenant, set()).add(message_id)
        found: dict[str, Message] = {}
        for tenant, ids in wanted.items():
            for message in await tx.messages_for_update(tenant, sorted(ids)):
                found[message.id] = message
        reports = [
            (tenant, found[message_id], report)
            for tenant, message_id, report in sorted(receipts, key=lambda r: r[2].at)
            if message_id in found
        ]
        await messages.report_statuses(self.platform, tx, reports)

    async def close(self) -> None:
        return None
