"""Property tests: sign→verify round-trips; every one-byte change is refused with the right error;
no input whatsoever escapes the error family."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitbybit.webhooks import (
    BadSignature,
    MalformedHeader,
    TimestampOutOfTolerance,
    WebhookVerificationError,
    sign,
    verify,
    webhook_headers,
)
from bitbybit.webhooks.body import MAX_SAFE_INTEGER, encode_body

SIG = "X-BitByBit-Webhook-Signature"
STAMP = "X-BitByBit-Webhook-Timestamp"
NAMES = [
    "X-BitByBit-Webhook-Id",
    "X-BitByBit-Webhook-Event",
    STAMP,
    SIG,
    "x-bitbybit-webhook-signature",
    "X-BITBYBIT-WEBHOOK-TIMESTAMP",
    "Content-Type",
]
_INDEX_KEY = re.compile(r"(?:0|[1-9][0-9]*)\Z")

text = st.text(st.characters(exclude_categories=["Cs"]))  # JSON text has no lone surrogates
keys = text.filter(lambda k: not (_INDEX_KEY.match(k) and int(k) < 2**32 - 1))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)
payloads = st.dictionaries(keys, json_values, max_size=6)
secrets = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)
timestamps = st.integers(0, 2**34)
event_ids = st.from_regex(r"evt_[A-Za-z0-9_]{1,40}", fullmatch=True)
# types this library does not model, so any payload shape is acceptable
event_types = st.from_regex(r"test\.[a-z]{1,10}(\.[a-z]{1,10})?", fullmatch=True)


def _headers(body: bytes, secret: Any, ts: int, event_id: str, event_type: str) -> dict[str, str]:
    return webhook_headers(event_id, event_type, body, secret, ts)


@given(payloads, secrets, timestamps, event_ids, event_types)
def test_sign_then_verify_round_trips(
    payload: dict[str, Any], secret: str, ts: int, event_id: str, event_type: str
) -> None:
    body = encode_body(payload)
    event = verify(body, _headers(body, secret, ts, event_id, event_type), secret, now=ts)
    assert event.payload == payload
    assert event.raw_body == body
    assert (event.id, event.type, int(event.timestamp.timestamp())) == (event_id, event_type, ts)


@given(payloads, st.lists(secrets, min_size=1, max_size=3), st.data())
def test_any_configured_secret_verifies_a_multi_signature(
    payload: dict[str, Any], sent: list[str], data: st.DataObject
) -> None:
    body = encode_body(payload)
    headers = _headers(body, sent, 1_700_000_000, "evt_1", "test.multi")
    one = data.draw(st.sampled_from(sent))
    assert verify(body, headers, ["whsec_unrelated", one], now=1_700_000_000).id == "evt_1"


@given(payloads, secrets, st.data())
def test_any_single_byte_change_of_the_body_is_a_bad_signature(
    payload: dict[str, Any], secret: str, data: st.DataObject
) -> None:
    body = encode_body(payload)
    headers = _headers(body, secret, 1_700_000_000, "evt_1", "test.body")
    index = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([byte]) + body[index + 1 :]
    with pytest.raises(BadSignature):
        verify(changed, headers, secret, now=1_700_000_000)


def _mutate(value: str, data: st.DataObject) -> tuple[bytes, int, int]:
    raw = value.encode()
    index = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]))
    return raw[:index] + bytes([byte]) + raw[index + 1 :], index, byte


@given(secrets, timestamps, st.data())
def test_any_single_byte_change_of_the_timestamp_header_is_malformed(
    secret: str, ts: int, data: st.DataObject
) -> None:
    body = b'{"id":"cust_1"}'
    headers: dict[str, Any] = _headers(body, secret, ts, "evt_1", "test.stamp")
    headers[STAMP], _, _ = _mutate(headers[STAMP], data)
    # it no longer equals the signed t, or is no longer plain decimal
    with pytest.raises(MalformedHeader):
        verify(body, headers, secret, now=ts)


@given(secrets, timestamps, st.data())
def test_any_single_byte_change_of_the_signature_header_is_refused(
    secret: str, ts: int, data: st.DataObject
) -> None:
    body = b'{"id":"cust_1"}'
    headers: dict[str, Any] = _headers(body, secret, ts, "evt_1", "test.sig")
    original = headers[SIG]
    headers[SIG], index, byte = _mutate(original, data)
    hex_start = original.index("v1=") + 3
    still_hex = chr(byte) in "0123456789abcdef"
    # a different lowercase hex digit inside v1 is well-formed but wrong; anything else is malformed
    expected = BadSignature if index >= hex_start and still_hex else MalformedHeader
    with pytest.raises(expected):
        verify(body, headers, secret, now=ts)


@given(secrets, st.integers(-10_000, 10_000).filter(bool))
def test_consistently_changed_timestamp(secret: str, shift: int) -> None:
    ts = 1_700_000_000
    body = b'{"id":"cust_1"}'
    headers = _headers(body, secret, ts, "evt_1", "test.shift")
    headers[STAMP] = str(ts + shift)
    headers[SIG] = headers[SIG].replace(f"t={ts}", f"t={ts + shift}")
    expected = TimestampOutOfTolerance if abs(shift) > 300 else BadSignature
    with pytest.raises(expected):
        verify(body, headers, secret, now=ts)


def _assert_in_family(call: Callable[[], object]) -> WebhookVerificationError | None:
    """Run ``call``; any exception other than our family fails the test by propagating."""
    error: WebhookVerificationError | None = None
    try:
        call()
    except WebhookVerificationError as exc:
        error = exc
    if error is not None:
        assert error.message
        assert error.code
        assert str(error)
    return error


header_values = (
    st.text()
    | st.binary()
    | st.text(st.characters(codec="ascii"))
    | st.integers(0, 200_000).map(lambda n: "t=1," + "v1=" * n)
    | st.integers(0, 200_000).map(lambda n: b"\xe9" * n)
    | st.none()
    | st.integers()
    | st.lists(st.text(), max_size=2)
)
header_names = st.sampled_from(NAMES) | st.text() | st.binary()
containers = (
    st.dictionaries(header_names, header_values, max_size=6)
    | st.lists(st.tuples(header_names, header_values), max_size=6)
    | st.lists(st.one_of(st.none(), st.text(), st.tuples(st.text())), max_size=3)
    | st.none()
    | st.text()
    | st.integers()
)
any_secret = (
    secrets
    | st.text()
    | st.lists(st.text(), max_size=3)
    | st.binary()
    | st.none()
    | st.lists(st.one_of(st.none(), st.binary(), st.integers()), max_size=2)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary() | st.text() | st.none(),
    containers,
    any_secret,
    st.integers(-5, 10**6) | st.floats() | st.none(),
    st.floats() | st.integers() | st.none() | st.text(),
)
def test_nothing_escapes_the_error_family(
    body: Any, headers: Any, secret: Any, tolerance: Any, now: Any
) -> None:
    kwargs: dict[str, Any] = {"now": now}
    if tolerance is not None:
        kwargs["tolerance"] = tolerance
    _assert_in_family(lambda: verify(body, headers, secret, **kwargs))


@settings(max_examples=300)
@given(secrets, st.data())
def test_random_header_values_beside_valid_ones_stay_in_the_family(
    secret: str, data: st.DataObject
) -> None:
    """Valid headers except one, so the random value reaches the deep checks."""
    ts = 1_700_000_000
    body = b'{"id":"cust_1"}'
    headers: dict[str, Any] = _headers(body, secret, ts, "evt_1", "test.fuzz")
    name = data.draw(st.sampled_from(NAMES[:4]))
    value = data.draw(
        header_values
        | st.from_regex(r"t=[0-9 ]{0,12}(,v[0-9]=[0-9a-fA-F ]{0,66}){0,3},?", fullmatch=True)
    )
    assume(value != headers[name])
    headers[name] = value
    if _assert_in_family(lambda: verify(body, headers, secret, now=ts)) is None:
        # only a value equivalent to the original (e.g. bytes of it) can pass
        assert isinstance(value, str | bytes)


def test_header_with_two_thousand_v1_values_is_bounded() -> None:
    body = b"{}"
    sig = sign(body, "whsec_x", 1)
    headers = _headers(body, "whsec_x", 1, "evt_1", "test.big")
    headers[SIG] = sig + ",v1=" + ",v1=".join(["0" * 64] * 2000)
    with pytest.raises(MalformedHeader, match="longer than"):
        verify(body, headers, "whsec_x", now=1)
