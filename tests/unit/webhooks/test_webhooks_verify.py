"""verify(): each check, each headers container, each configuration mistake."""

from __future__ import annotations

import email.message
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.datastructures import Headers as StarletteHeaders
from werkzeug.datastructures import EnvironHeaders
from werkzeug.datastructures import Headers as WerkzeugHeaders

from bitbybit.webhooks import (
    MAX_HEADER_LENGTH,
    BadPayload,
    BadSignature,
    ConfigurationError,
    Customer,
    Event,
    GenericPayload,
    MalformedHeader,
    MissingHeader,
    TimestampOutOfTolerance,
    Verifier,
    WebhookVerificationError,
    compute_signature,
    sign,
    verify,
)

TS = 1_700_000_000
SIG = "X-BitByBit-Webhook-Signature"
STAMP = "X-BitByBit-Webhook-Timestamp"
ID = "X-BitByBit-Webhook-Id"
TYPE = "X-BitByBit-Webhook-Event"
MakeDelivery = Callable[..., tuple[bytes, dict[str, str]]]


@pytest.fixture
def delivery(make_delivery: MakeDelivery) -> tuple[bytes, dict[str, str]]:
    return make_delivery(timestamp=TS)


def test_valid_delivery_gives_a_typed_event(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    event = verify(body, headers, secret, now=TS)
    assert isinstance(event, Event)
    assert event.id == "evt_0001"
    assert event.type == "customer.created"
    assert event.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert event.timestamp.tzinfo is not None
    assert event.payload["email"] == "john@example.com"
    assert isinstance(event.data, Customer)
    assert event.data.first_name == "John"
    assert event.raw_body == body


def test_unknown_event_type_still_verifies(make_delivery: MakeDelivery, secret: str) -> None:
    body, headers = make_delivery({"anything": [1, 2]}, event_type="invoice.paid", timestamp=TS)
    event = verify(body, headers, secret, now=TS)
    assert event.data == GenericPayload(type="invoice.paid")
    assert isinstance(event.data, GenericPayload)
    assert event.data.raw == {"anything": [1, 2]}


def _containers(headers: dict[str, str]) -> list[tuple[str, object]]:
    lower = {k.lower(): v for k, v in headers.items()}
    message = email.message.Message()
    for key, value in headers.items():
        message[key] = value
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}

    class GetOnly:
        """A case-insensitive headers object with nothing but .get."""

        def get(self, name: str) -> str | None:
            return lower.get(name.lower())

    return [
        ("dict", headers),
        ("lower-case dict", lower),
        ("upper-case dict", {k.upper(): v for k, v in headers.items()}),
        ("str pairs", list(headers.items())),
        ("bytes pairs (ASGI)", [(k.lower().encode(), v.encode()) for k, v in headers.items()]),
        ("tuple of pairs", tuple(headers.items())),
        ("email.message.Message", message),
        ("starlette Headers", StarletteHeaders(headers)),
        ("werkzeug Headers", WerkzeugHeaders(headers)),
        ("werkzeug EnvironHeaders", EnvironHeaders(environ)),
        ("object with .get", GetOnly()),
    ]


@pytest.mark.parametrize("index", range(11))
def test_every_common_headers_container_works(
    delivery: tuple[bytes, dict[str, str]], secret: str, index: int
) -> None:
    body, headers = delivery
    name, container = _containers(headers)[index]
    assert verify(body, container, secret, now=TS).id == "evt_0001", name


@pytest.mark.parametrize("missing", [ID, TYPE, STAMP, SIG])
def test_each_missing_header_is_named(
    delivery: tuple[bytes, dict[str, str]], secret: str, missing: str
) -> None:
    body, headers = delivery
    del headers[missing]
    with pytest.raises(MissingHeader) as caught:
        verify(body, headers, secret, now=TS)
    assert caught.value.header == missing
    assert missing in str(caught.value)


def test_no_headers_at_all(delivery: tuple[bytes, dict[str, str]], secret: str) -> None:
    with pytest.raises(MissingHeader):
        verify(delivery[0], None, secret, now=TS)
    with pytest.raises(MissingHeader):
        verify(delivery[0], {}, secret, now=TS)
    with pytest.raises(MissingHeader):
        verify(delivery[0], [], secret, now=TS)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (STAMP, "１７００００００００"),  # full-width digits: int() would accept them
        (STAMP, "1_700_000_000"),  # int() would accept this too
        (STAMP, "+1700000000"),
        (STAMP, "01700000000"),
        (STAMP, "1700000000.0"),
        (STAMP, "-1"),
        (STAMP, ""),
        (STAMP, "1" * 5000),  # beyond int()'s digit limit: must not raise ValueError
        (SIG, ""),
        (SIG, "v1=" + "0" * 64),
        (SIG, "t=1700000000"),
        (SIG, "t=1700000000,v1=" + "A" * 64),
        (SIG, "t=1700000000,v1=" + "0" * 63),
        (SIG, "t=1700000000,v1=" + "0" * 65),
        (SIG, "t=1700000000,t=1700000000,v1=" + "0" * 64),
        (SIG, "t=1700000000,,v1=" + "0" * 64),
        (SIG, "t=1700000000;v1=" + "0" * 64),
        (SIG, "t=1700000001,v1=" + "0" * 64),  # t differs from the timestamp header
        (SIG, "t=1700000000,v1=" + "0" * 64 + ",v1=" + "x" * 64),
        (SIG, "sha256=" + "0" * 64),
        (SIG, "t=1700000000,v1=" + "0" * 64 + "\x00"),
        (SIG, "t=1700000000,v1=" + "0" * 64 + ",v1=" + "0" * 64 * 200),  # over 8 KB
        (SIG, "t=1700000000,v1=é" + "0" * 63),
        (ID, "evt 1"),
        (ID, "x" * 256),
        (ID, "évt"),
        (TYPE, "customer created"),
        (TYPE, ".customer"),
        (TYPE, "customer..created"),
    ],
)
def test_malformed_headers(
    delivery: tuple[bytes, dict[str, str]], secret: str, header: str, value: str
) -> None:
    body, headers = delivery
    headers[header] = value
    with pytest.raises(MalformedHeader) as caught:
        verify(body, headers, secret, now=TS)
    assert caught.value.code == "malformed_header"


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe", "1700000000".encode("utf-16"), 1700000000, None, ["1700000000"], object()],
)
def test_header_values_of_the_wrong_kind(
    delivery: tuple[bytes, dict[str, str]], secret: str, value: object
) -> None:
    body, headers = delivery
    pairs: list[tuple[str, object]] = [(k, v) for k, v in headers.items() if k != STAMP]
    pairs.append((STAMP, value))
    with pytest.raises((MalformedHeader, MissingHeader)):
        verify(body, pairs, secret, now=TS)


def test_bytes_header_values_are_accepted(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    as_bytes = {k: v.encode() for k, v in headers.items()}
    assert verify(body, as_bytes, secret, now=TS).type == "customer.created"


def test_huge_header_is_refused_before_any_work(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    headers[SIG] = "t=" + "9" * (MAX_HEADER_LENGTH + 1)
    with pytest.raises(MalformedHeader, match="longer than"):
        verify(body, headers, secret, now=TS)
    headers[SIG] = b"x" * 10_000_000  # type: ignore[assignment]
    with pytest.raises(MalformedHeader, match="longer than"):
        verify(body, headers, secret, now=TS)


def test_repeated_header_with_different_values_is_refused(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    pairs = [*headers.items(), (ID, "evt_other")]
    with pytest.raises(MalformedHeader, match="more than once"):
        verify(body, pairs, secret, now=TS)
    same = [*headers.items(), (ID.lower(), headers[ID])]
    assert verify(body, same, secret, now=TS).id == "evt_0001"


def test_surrounding_spaces_are_optional_whitespace(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    padded = {k: f" {v}\t" for k, v in headers.items()}
    padded[SIG] = padded[SIG].replace(",", " , ")
    assert verify(body, padded, secret, now=TS).id == "evt_0001"


def test_unknown_signature_schemes_are_ignored_beside_v1(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    headers[SIG] += ",v2=whatever-a-future-scheme-sends"
    assert verify(body, headers, secret, now=TS).id == "evt_0001"


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        (TS, True),
        (TS + 300, True),
        (TS - 300, True),
        (TS + 301, False),
        (TS - 301, False),
        (TS + 300.5, False),
        (datetime.fromtimestamp(TS + 299, UTC), True),
        (datetime.fromtimestamp(TS + 301, UTC), False),
        # the same instant in another zone is the same instant
        (datetime.fromtimestamp(TS, UTC).astimezone(timezone(timedelta(hours=7))), True),
    ],
)
def test_tolerance_window_both_ways(
    delivery: tuple[bytes, dict[str, str]], secret: str, now: Any, ok: bool
) -> None:
    body, headers = delivery
    if ok:
        assert verify(body, headers, secret, now=now).id == "evt_0001"
        return
    with pytest.raises(TimestampOutOfTolerance) as caught:
        verify(body, headers, secret, now=now)
    assert caught.value.timestamp == TS
    assert caught.value.tolerance == 300


def test_tolerance_is_configurable(delivery: tuple[bytes, dict[str, str]], secret: str) -> None:
    body, headers = delivery
    assert verify(body, headers, secret, tolerance=3600, now=TS + 3000).id == "evt_0001"
    with pytest.raises(TimestampOutOfTolerance, match="old"):
        verify(body, headers, secret, tolerance=10, now=TS + 11)
    with pytest.raises(TimestampOutOfTolerance, match="future"):
        verify(body, headers, secret, tolerance=0, now=TS - 1)


def test_far_future_timestamp_is_out_of_tolerance_not_a_crash(
    make_delivery: MakeDelivery, secret: str
) -> None:
    body, headers = make_delivery(timestamp=10**17)
    with pytest.raises(TimestampOutOfTolerance):
        verify(body, headers, secret, now=TS)
    with pytest.raises(MalformedHeader, match="date range"):
        verify(body, headers, secret, now=10**17)


def test_wrong_secret_is_a_bad_signature(delivery: tuple[bytes, dict[str, str]]) -> None:
    body, headers = delivery
    with pytest.raises(BadSignature) as caught:
        verify(body, headers, "whsec_someone-else", now=TS)
    assert caught.value.code == "bad_signature"
    # the secret without its whsec_ prefix is a different key
    with pytest.raises(BadSignature):
        verify(body, headers, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=TS)


def test_rotation_any_secret_matches_any_v1(make_delivery: MakeDelivery) -> None:
    old, new = "whsec_old", "whsec_new"
    body, signed_old = make_delivery(secret=old, timestamp=TS)
    _, signed_both = make_delivery(secret=[new, old], timestamp=TS)
    for headers in (signed_old, signed_both):
        assert verify(body, headers, [new, old], now=TS).id == "evt_0001"
        assert verify(body, headers, [old], now=TS).id == "evt_0001"
    assert verify(body, signed_both, new, now=TS).id == "evt_0001"
    with pytest.raises(BadSignature):
        verify(body, signed_old, new, now=TS)


def test_signature_over_a_reserialised_body_does_not_verify(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    with pytest.raises(BadSignature):
        verify(body.replace(b",", b", "), headers, secret, now=TS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1,2]", "not a JSON object"),
        (b"\xff{}", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"a":NaN}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not"),
        (b'{"n":' + b"1" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_signed_but_bad_body(
    make_delivery: MakeDelivery, secret: str, body: bytes, message: str
) -> None:
    _, headers = make_delivery(body, timestamp=TS)
    with pytest.raises(BadPayload, match=message):
        verify(body, headers, secret, now=TS)


def test_signed_body_of_the_wrong_shape_for_its_type(
    make_delivery: MakeDelivery, secret: str
) -> None:
    body, headers = make_delivery({"id": 5}, event_type="customer.created", timestamp=TS)
    with pytest.raises(BadPayload, match=r"payload\.id must be a string"):
        verify(body, headers, secret, now=TS)


def test_body_may_be_bytearray_memoryview_or_text(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    body, headers = delivery
    for same in (bytearray(body), memoryview(body), body.decode()):
        assert verify(same, headers, secret, now=TS).raw_body == body  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [None, {"id": "cust_abc123"}, 12, "\ud800"])
def test_body_that_is_not_raw_bytes(
    delivery: tuple[bytes, dict[str, str]], secret: str, body: object
) -> None:
    with pytest.raises(BadPayload):
        verify(body, delivery[1], secret, now=TS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret",
    [[], (), "", [""], None, b"whsec_bytes", [b"whsec_bytes"], 42, ["\ud800"], [None]],
)
def test_unusable_secrets_are_configuration_errors(
    delivery: tuple[bytes, dict[str, str]], secret: object
) -> None:
    with pytest.raises(ConfigurationError):
        verify(delivery[0], delivery[1], secret, now=TS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tolerance", "now"),
    [
        (-1, TS),
        (float("nan"), TS),
        (float("inf"), TS),
        (True, TS),
        ("300", TS),
        (300, datetime(2023, 11, 14, 22, 13, 20)),  # naive: refused, not guessed
        (300, float("nan")),
        (300, "now"),
        (300, True),
    ],
)
def test_unusable_tolerance_or_now(
    delivery: tuple[bytes, dict[str, str]], secret: str, tolerance: object, now: object
) -> None:
    with pytest.raises(ConfigurationError):
        verify(delivery[0], delivery[1], secret, tolerance=tolerance, now=now)  # type: ignore[arg-type]


def test_every_error_is_one_family() -> None:
    for cls in (
        MissingHeader,
        MalformedHeader,
        TimestampOutOfTolerance,
        BadSignature,
        BadPayload,
        ConfigurationError,
    ):
        assert issubclass(cls, WebhookVerificationError)
        assert not issubclass(cls, ValueError | KeyError | TypeError | UnicodeError)
    codes = {
        cls.code for cls in (MissingHeader, MalformedHeader, TimestampOutOfTolerance, BadSignature)
    }
    assert len(codes) == 4


def test_headers_object_that_blows_up_is_wrapped(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    class Broken:
        def items(self) -> list[tuple[str, str]]:
            raise RuntimeError("boom")

    class BrokenGet:
        def get(self, name: str) -> str:
            raise KeyError(name)

    for headers in (Broken(), BrokenGet(), 42, "t=1,v1=x", [("only-one",)], [42]):
        with pytest.raises(MalformedHeader):
            verify(delivery[0], headers, secret, now=TS)


def test_default_now_is_the_clock(make_delivery: MakeDelivery, secret: str) -> None:
    body, headers = make_delivery()  # signed now
    assert verify(body, headers, secret).id == "evt_0001"
    body, headers = make_delivery(timestamp=TS)  # signed in 2023
    with pytest.raises(TimestampOutOfTolerance):
        verify(body, headers, secret)


def test_verifier_object_reuses_its_configuration(
    delivery: tuple[bytes, dict[str, str]], secret: str
) -> None:
    verifier = Verifier([secret], tolerance=60)
    assert verifier.verify(delivery[0], delivery[1], now=TS + 60).id == "evt_0001"
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(delivery[0], delivery[1], now=TS + 61)
    with pytest.raises(ConfigurationError):
        Verifier([])


def test_one_good_v1_among_stale_ones_passes(secret: str) -> None:
    body = b'{"id":"cust_1"}'
    good = compute_signature(body, secret, TS)
    stale = hmac.new(b"whsec_retired", b"%d." % TS + body, hashlib.sha256).hexdigest()
    headers = {
        ID: "evt_1",
        TYPE: "customer.deleted",
        STAMP: str(TS),
        SIG: f"t={TS},v1={stale},v1={good}",
    }
    assert verify(body, headers, secret, now=TS).type == "customer.deleted"
    headers[SIG] = sign(body, "whsec_retired", TS)
    with pytest.raises(BadSignature):
        verify(body, headers, secret, now=TS)


def test_numbers_are_read_as_javascript_reads_them(
    make_delivery: MakeDelivery, secret: str
) -> None:
    # a whole float beyond 2**53 is written without exponent; it must come back as that float
    body, headers = make_delivery(
        {"big": 5.331681459453189e16, "safe": 2**53 - 1, "tiny": 1e-7}, event_type="test.n"
    )
    payload = verify(body, headers, secret).payload
    assert body == b'{"big":53316814594531890,"safe":9007199254740991,"tiny":1e-7}'
    assert payload == {"big": 5.331681459453189e16, "safe": 2**53 - 1, "tiny": 1e-7}
    assert isinstance(payload["big"], float)
    assert isinstance(payload["safe"], int)
