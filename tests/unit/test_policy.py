"""``delivery/policy.py``: what an attempt's outcome means for its delivery (SPEC §6).

Pure functions, so every rule is checked here without a worker, a receiver or a database: the
retry schedule and its jitter, ``Retry-After`` (429 and 503 only, and only when longer), 410
Gone, permanent failures, the platform's own failures, exhaustion, the ``Retry-After`` parser,
and which secrets sign during a secret rotation.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbybit.delivery.policy import (
    JITTER,
    MAX_RETRY_AFTER_S,
    SUSPENSION,
    SendResult,
    Suspension,
    decide,
    parse_retry_after,
    signing_secrets,
)
from bitbybit.models import AttemptResult, Job

SCHEDULE = (30.0, 300.0, 1800.0, 7200.0)
NOW = 1_700_000_000_000
"""Milliseconds since the epoch: the moment each decision is taken."""


def job(attempts: int = 0) -> Job:
    """A claimed delivery that has had ``attempts`` attempts before this one."""
    return Job(
        delivery_id="dlv_1",
        event_id="evt_1",
        event_type="customer.created",
        payload=b"{}",
        kind="webhook",
        target="we_1",
        url="https://example.com/hook",
        secret="sealed",
        next_secret=None,
        next_secret_at=None,
        multi_signature=False,
        attempts=attempts,
    )


def failed(status_code: int | None = 500, **fields: Any) -> SendResult:
    """An attempt that did not succeed: ``status_code`` and any other ``SendResult`` field."""
    return SendResult(started_at=NOW - 120, latency_ms=120, status_code=status_code, **fields)


class Extremes(random.Random):
    """A random source whose ``uniform`` answers one end of the range, and remembers the range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b if self.high else a


# decide: success and the record of the attempt ----------------------------------------------


def test_a_2xx_succeeds_and_carries_the_attempt() -> None:
    sent = SendResult(NOW - 40, 40, status_code=204, response_body=b"ok")
    result = decide(job(attempts=2), sent, SCHEDULE, NOW, random.Random(1))
    assert result.status == "succeeded"
    assert result.number == 3
    assert result.next_attempt_at == NOW
    assert (result.delivery_id, result.target, result.kind) == ("dlv_1", "we_1", "webhook")
    assert (result.started_at, result.latency_ms) == (NOW - 40, 40)
    assert (result.status_code, result.error, result.response_body) == (204, None, b"ok")
    assert not result.gone
    assert not result.ours


@pytest.mark.parametrize(
    ("sent", "succeeded"),
    [
        (SendResult(0, 1, status_code=200), True),
        (SendResult(0, 1, status_code=299), True),
        (SendResult(0, 1, status_code=300), False),
        (SendResult(0, 1, status_code=199), False),
        (SendResult(0, 1, status_code=200, error="body cut short"), False),
        (SendResult(0, 1, error="timeout", unreachable=True), False),
    ],
)
def test_only_a_2xx_without_an_error_succeeds(sent: SendResult, succeeded: bool) -> None:
    assert sent.succeeded is succeeded
    expected = "succeeded" if succeeded else "pending"
    assert decide(job(), sent, SCHEDULE, NOW, random.Random(1)).status == expected


# decide: the schedule and its jitter ---------------------------------------------------------


@pytest.mark.parametrize("attempts", range(len(SCHEDULE)))
def test_each_retry_waits_its_step_of_the_schedule(attempts: int) -> None:
    """The delay after attempt n is ``schedule[n - 1]``, up to ``JITTER`` longer, never shorter."""
    step_ms = SCHEDULE[attempts] * 1000
    early = decide(job(attempts), failed(), SCHEDULE, NOW, Extremes(high=False))
    late = decide(job(attempts), failed(), SCHEDULE, NOW, Extremes(high=True))
    assert early.status == late.status == "pending"
    assert early.number == late.number == attempts + 1
    assert early.next_attempt_at == NOW + round(step_ms)
    assert late.next_attempt_at == NOW + round(step_ms * (1 + JITTER))


def test_jitter_is_drawn_from_zero_to_jitter() -> None:
    rng = Extremes(high=True)
    decide(job(), failed(), SCHEDULE, NOW, rng)
    assert rng.ranges == [(0, JITTER)]


@given(
    attempts=st.integers(min_value=0, max_value=len(SCHEDULE) - 1),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_real_random_source_stays_within_the_jitter_bounds(attempts: int, seed: int) -> None:
    result = decide(job(attempts), failed(), SCHEDULE, NOW, random.Random(seed))
    step_ms = SCHEDULE[attempts] * 1000
    assert NOW + round(step_ms) <= result.next_attempt_at <= NOW + round(step_ms * (1 + JITTER))


def test_fractions_of_a_second_are_kept_to_the_millisecond() -> None:
    result = decide(job(), failed(), (0.25,), NOW, Extremes(high=False))
    assert result.next_attempt_at == NOW + 250


def test_the_same_seed_gives_the_same_delay() -> None:
    first = decide(job(1), failed(), SCHEDULE, NOW, random.Random(7))
    second = decide(job(1), failed(), SCHEDULE, NOW, random.Random(7))
    assert first.next_attempt_at == second.next_attempt_at


# decide: exhaustion ----------------------------------------------------------------------------


def test_the_attempt_after_the_last_step_fails_for_good() -> None:
    result = decide(job(attempts=len(SCHEDULE)), failed(), SCHEDULE, NOW, random.Random(1))
    assert result.status == "failed"
    assert result.number == len(SCHEDULE) + 1
    assert result.next_attempt_at == NOW
    assert not result.gone


def test_an_empty_schedule_means_one_attempt() -> None:
    result = decide(job(), failed(), (), NOW, random.Random(1))
    assert (result.status, result.number, result.next_attempt_at) == ("failed", 1, NOW)


def test_a_failure_without_any_answer_is_retried() -> None:
    sent = failed(None, error="connect timeout", unreachable=True)
    result = decide(job(), sent, SCHEDULE, NOW, random.Random(1))
    assert result.status == "pending"
    assert (result.status_code, result.error) == (None, "connect timeout")


# decide: Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize("status_code", [429, 503])
def test_a_longer_retry_after_on_429_or_503_is_honoured(status_code: int) -> None:
    sent = failed(status_code, retry_after_s=600.0)
    result = decide(job(), sent, SCHEDULE, NOW, Extremes(high=True))
    assert result.next_attempt_at == NOW + 600_000


@pytest.mark.parametrize("status_code", [429, 503])
def test_a_shorter_retry_after_does_not_hasten_the_schedule(status_code: int) -> None:
    sent = failed(status_code, retry_after_s=1.0)
    result = decide(job(), sent, SCHEDULE, NOW, Extremes(high=False))
    assert result.next_attempt_at == NOW + 30_000


@pytest.mark.parametrize("status_code", [500, 502, 504, 400, 408, None])
def test_retry_after_is_ignored_on_other_answers(status_code: int | None) -> None:
    sent = failed(status_code, retry_after_s=600.0)
    result = decide(job(), sent, SCHEDULE, NOW, Extremes(high=False))
    assert result.next_attempt_at == NOW + 30_000


def test_a_fractional_retry_after_is_kept_to_the_millisecond() -> None:
    sent = failed(503, retry_after_s=45.5)
    result = decide(job(), sent, SCHEDULE, NOW, Extremes(high=False))
    assert result.next_attempt_at == NOW + 45_500


def test_retry_after_does_not_buy_an_attempt_past_the_schedule() -> None:
    sent = failed(429, retry_after_s=60.0)
    result = decide(job(attempts=len(SCHEDULE)), sent, SCHEDULE, NOW, random.Random(1))
    assert result.status == "failed"


# decide: 410, permanent, ours ------------------------------------------------------------------


def test_410_gone_fails_at_once_and_says_so() -> None:
    result = decide(job(), failed(410), SCHEDULE, NOW, random.Random(1))
    assert (result.status, result.gone, result.next_attempt_at) == ("failed", True, NOW)


@pytest.mark.parametrize("status_code", [404, 500, None])
def test_only_410_is_gone(status_code: int | None) -> None:
    result = decide(job(len(SCHEDULE)), failed(status_code), SCHEDULE, NOW, random.Random(1))
    assert result.status == "failed"
    assert not result.gone


def test_a_permanent_failure_is_not_retried_and_is_not_gone() -> None:
    sent = failed(None, error="payload over the limit", permanent=True, ours=True)
    result = decide(job(), sent, SCHEDULE, NOW, random.Random(1))
    assert (result.status, result.gone, result.next_attempt_at) == ("failed", False, NOW)
    assert result.ours


def test_our_own_failure_is_marked_but_retried_like_any_other() -> None:
    sent = failed(None, error="cannot decrypt the signing secret", ours=True)
    result = decide(job(), sent, SCHEDULE, NOW, Extremes(high=False))
    assert result.ours
    assert (result.status, result.next_attempt_at) == ("pending", NOW + 30_000)


def test_the_endpoints_failure_is_not_ours() -> None:
    assert not decide(job(), failed(500), SCHEDULE, NOW, random.Random(1)).ours


# parse_retry_after ---------------------------------------------------------------------------


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("  7 ", 7.0), ("86400", 86400.0)],
)
def test_delta_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_delta_seconds_are_capped_at_a_day() -> None:
    assert MAX_RETRY_AFTER_S == 24 * 60 * 60
    assert parse_retry_after("86401", NOW) == MAX_RETRY_AFTER_S
    assert parse_retry_after("99999999999999999999", NOW) == MAX_RETRY_AFTER_S


def test_an_http_date_counts_from_now() -> None:
    now = datetime.fromtimestamp(NOW / 1000, UTC)
    assert parse_retry_after(http_date(now + timedelta(seconds=90)), NOW) == 90.0


def test_the_other_http_date_forms_are_read() -> None:
    """RFC 9110 also allows the obsolete RFC 850 form; any explicit zone is honoured."""
    now_ms = 784_111_777_000 - 60_000  # a minute before Sun, 06 Nov 1994 08:49:37 GMT
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_ms) == 60.0
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now_ms) == 60.0
    assert parse_retry_after("Sun, 06 Nov 1994 09:49:37 +0100", now_ms) == 60.0


def test_a_date_in_the_past_means_now() -> None:
    now = datetime.fromtimestamp(NOW / 1000, UTC)
    assert parse_retry_after(http_date(now - timedelta(hours=1)), NOW) == 0.0


def test_a_date_is_capped_at_a_day() -> None:
    now = datetime.fromtimestamp(NOW / 1000, UTC)
    assert parse_retry_after(http_date(now + timedelta(days=30)), NOW) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",  # delta seconds are digits only
        "1.5",
        "1e3",
        "Wed, 21 Oct 2015 07:28:00",  # a date without a zone is no HTTP date
        "Wed, 21 Oct 2015 07:28:00 -0000",  # nor is "zone unknown"
        "Sun Nov  6 08:49:37 1994",  # asctime form: no zone either
        "Wed, 99 Foo 2015 07:28:00 GMT",
    ],
)
def test_junk_is_no_retry_after(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


@given(st.text(max_size=40))
def test_no_header_text_raises(header: str) -> None:
    seconds = parse_retry_after(header, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_S


# signing_secrets -------------------------------------------------------------------------------

NEXT_AT = NOW + 3_600_000


def test_without_a_rotation_the_current_secret_signs() -> None:
    assert signing_secrets("whsec_old", None, None, False, NOW) == ["whsec_old"]
    assert signing_secrets("whsec_old", None, None, True, NOW) == ["whsec_old"]


def test_a_next_secret_without_a_time_is_not_used() -> None:
    assert signing_secrets("whsec_old", "whsec_new", None, True, NOW) == ["whsec_old"]


def test_during_the_grace_period_the_old_secret_signs_alone() -> None:
    assert signing_secrets("whsec_old", "whsec_new", NEXT_AT, False, NOW) == ["whsec_old"]
    assert signing_secrets("whsec_old", "whsec_new", NEXT_AT, False, NEXT_AT - 1) == ["whsec_old"]


def test_during_the_grace_period_multi_signature_signs_with_both_new_first() -> None:
    expected = ["whsec_new", "whsec_old"]
    assert signing_secrets("whsec_old", "whsec_new", NEXT_AT, True, NOW) == expected
    assert signing_secrets("whsec_old", "whsec_new", NEXT_AT, True, NEXT_AT - 1) == expected


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("now_ms", [NEXT_AT, NEXT_AT + 1, NEXT_AT + 86_400_000])
def test_from_the_end_of_the_grace_period_the_new_secret_signs_alone(
    multi: bool, now_ms: int
) -> None:
    assert signing_secrets("whsec_old", "whsec_new", NEXT_AT, multi, now_ms) == ["whsec_new"]


# -- suspension ------------------------------------------------------------------------------


def outcome(status: str, *, gone: bool = False, ours: bool = False) -> AttemptResult:
    return AttemptResult(
        "dlv_1", "we_1", 5, NOW, 10, 410 if gone else 500, None, None, status, NOW, gone, ours
    )


def test_an_exhausted_delivery_counts_toward_suspension_unless_the_platform_failed() -> None:
    assert SUSPENSION.counts(outcome("failed"))
    assert not SUSPENSION.counts(outcome("failed", ours=True))
    assert not SUSPENSION.counts(outcome("pending"))
    assert not SUSPENSION.counts(outcome("succeeded"))


def test_the_third_exhausted_event_in_a_row_suspends() -> None:
    failed_ = outcome("failed")
    assert SUSPENSION.reason(failed_, 2) is None
    assert SUSPENSION.reason(failed_, 3) == "3 events in a row exhausted every retry"
    assert SUSPENSION.reason(failed_, None) is None  # not counted (or the endpoint is gone)
    assert Suspension(after=1).reason(failed_, 1) is not None


def test_410_gone_suspends_at_once() -> None:
    assert SUSPENSION.reason(outcome("failed", gone=True), None) == "the endpoint answered 410 Gone"
