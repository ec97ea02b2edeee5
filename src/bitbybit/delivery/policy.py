"""What an attempt's outcome means for its delivery: done, retry when, or give up (SPEC §6)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from bitbybit.models import AttemptResult, Job

JITTER = 0.1
"""Retries wait up to 10 % longer than the schedule says, so failures don't return in lockstep."""
MAX_RETRY_AFTER_S = 24 * 60 * 60
SUSPEND_AFTER = 3
"""Consecutive events that exhausted every retry before an endpoint is suspended."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """When an endpoint is suspended (SPEC §6): at once on 410 Gone, or after ``after``
    consecutive events whose deliveries exhausted every retry (a success resets the run). A
    failure that is the platform's own never counts."""

    after: int = SUSPEND_AFTER

    def counts(self, result: AttemptResult) -> bool:
        return result.status == "failed" and not result.ours

    def reason(self, result: AttemptResult, exhausted_in_row: int | None) -> str | None:
        if result.gone:
            return "the endpoint answered 410 Gone"
        if exhausted_in_row is not None and exhausted_in_row >= self.after:
            return f"{exhausted_in_row} events in a row exhausted every retry"
        return None


SUSPENSION = Suspension()


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one HTTP attempt gave, before any decision."""

    started_at: int
    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    response_body: bytes | None = None
    retry_after_s: float | None = None
    permanent: bool = False
    """Retrying cannot help (the payload is over the size limit)."""
    unreachable: bool = False
    """No HTTP answer at all: timeout, connection or TLS failure."""
    ours: bool = False
    """The platform's own failure, not the endpoint's (a payload over the size limit, a signing
    secret it cannot decrypt, a bug): it never counts toward suspending the endpoint."""
    wait_s: float | None = None
    """The least the channel knows the retry must wait (Meta's throttling), whatever the
    answer's status."""
    deferred: bool = False
    """Not attempted at all (a limit of the target's, such as WhatsApp's per-recipient pace,
    says not yet): the job is due again after ``wait_s``, its attempts unchanged."""

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # ("¹" and "٣" are digits to str.isdigit)
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - now_ms / 1000, MAX_RETRY_AFTER_S))


def decide(
    job: Job, sent: SendResult, schedule: tuple[float, ...], now_ms: int, rng: random.Random
) -> AttemptResult:
    if sent.deferred:
        return AttemptResult(
            delivery_id=job.delivery_id,
            target=job.target,
            number=job.attempts,
            started_at=sent.started_at,
            latency_ms=0,
            status_code=None,
            error=sent.error,
            response_body=None,
            status="pending",
            next_attempt_at=now_ms + round((sent.wait_s or 0) * 1000),
            kind=job.kind,
            deferred=True,
        )
    number = job.attempts + 1
    status = "failed"
    next_attempt_at = now_ms
    gone = sent.status_code == 410
    if sent.succeeded:
        status = "succeeded"
    elif not gone and not sent.permanent and number <= len(schedule):
        delay = schedule[number - 1] * (1 + rng.uniform(0, JITTER))
        if sent.retry_after_s is not None and sent.status_code in (429, 503):
            delay = max(delay, sent.retry_after_s)
        if sent.wait_s is not None:
            delay = max(delay, sent.wait_s)
        status = "pending"
        next_attempt_at = now_ms + round(delay * 1000)
    return AttemptResult(
        delivery_id=job.delivery_id,
        target=job.target,
        number=number,
        started_at=sent.started_at,
        latency_ms=sent.latency_ms,
        status_code=sent.status_code,
        error=sent.error,
        response_body=sent.response_body,
        status=status,
        next_attempt_at=next_attempt_at,
        gone=gone,
        ours=sent.ours,
        kind=job.kind,
    )


def signing_secrets(
    job_secret: str, next_secret: str | None, next_at: int | None, multi: bool, now_ms: int
) -> list[str]:
    """The secrets to sign with now, given decrypted current and rotated-to secrets.

    A rotated-to secret takes effect when its grace period ends; during the grace period the old
    one signs alone, or both (new first) for endpoints that opted in to ``multiSignature``.
    """
    if next_secret is None or next_at is None:
        return [job_secret]
    if now_ms >= next_at:
        return [next_secret]
    return [next_secret, job_secret] if multi else [job_secret]
