"""Signing: golden vector, header format, multi-signature, server-side misuse."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bitbybit.webhooks import compute_signature, sign, verify, webhook_headers

GOLDEN_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOLDEN_BODY = b'{"id":"cust_abc123","email":"john@example.com"}'
GOLDEN_TS = 1700000000
GOLDEN_V1 = "4e8baf8531205febc3edcf52c6502f28c5b09516534c6db237371d175fd9e008"
GOLDEN_HEADER = f"t=1700000000,v1={GOLDEN_V1}"


def test_golden_vector() -> None:
    assert compute_signature(GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_TS) == GOLDEN_V1
    assert sign(GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_TS) == GOLDEN_HEADER


def test_signature_is_hmac_sha256_of_timestamp_dot_body_keyed_by_full_secret_text() -> None:
    expected = hmac.new(
        GOLDEN_SECRET.encode(), b"1700000000." + GOLDEN_BODY, hashlib.sha256
    ).hexdigest()
    assert compute_signature(GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_TS) == expected
    # the whsec_ prefix is part of the key: dropping it gives another signature
    assert compute_signature(GOLDEN_BODY, GOLDEN_SECRET.removeprefix("whsec_"), GOLDEN_TS) != (
        expected
    )


def test_non_ascii_secret_is_keyed_as_utf8() -> None:
    expected = hmac.new("clé-🔑".encode(), b"5.{}", hashlib.sha256).hexdigest()
    assert compute_signature(b"{}", "clé-🔑", 5) == expected


def test_several_secrets_give_one_v1_each_in_order() -> None:
    header = sign(GOLDEN_BODY, ["whsec_new", GOLDEN_SECRET], GOLDEN_TS)
    new = compute_signature(GOLDEN_BODY, "whsec_new", GOLDEN_TS)
    assert header == f"t=1700000000,v1={new},v1={GOLDEN_V1}"
    assert sign(GOLDEN_BODY, (GOLDEN_SECRET,), GOLDEN_TS) == GOLDEN_HEADER


def test_webhook_headers_exact_names_values_and_order() -> None:
    headers = webhook_headers("evt_abc", "customer.created", GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_TS)
    assert list(headers.items()) == [
        ("Content-Type", "application/json"),
        ("User-Agent", "BitByBit-Webhooks/1.0"),
        ("X-BitByBit-Webhook-Id", "evt_abc"),
        ("X-BitByBit-Webhook-Event", "customer.created"),
        ("X-BitByBit-Webhook-Timestamp", "1700000000"),
        ("X-BitByBit-Webhook-Signature", GOLDEN_HEADER),
    ]
    event = verify(GOLDEN_BODY, headers, GOLDEN_SECRET, now=GOLDEN_TS)
    assert (event.id, event.type) == ("evt_abc", "customer.created")


@pytest.mark.parametrize(
    ("secret", "timestamp"),
    [
        ([], 1),
        ("", 1),
        ([GOLDEN_SECRET, ""], 1),
        ("\ud800", 1),
        (GOLDEN_SECRET, -1),
        (GOLDEN_SECRET, True),
        (GOLDEN_SECRET, 1.5),
    ],
)
def test_sign_refuses_unusable_arguments(secret: object, timestamp: object) -> None:
    with pytest.raises(ValueError, match=r"secret|timestamp"):
        sign(GOLDEN_BODY, secret, timestamp)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "evt\r\nX-Injected: 1", "évt"])
def test_webhook_headers_refuse_header_injection(bad: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        webhook_headers(bad, "customer.created", b"{}", GOLDEN_SECRET, 1)
    with pytest.raises(ValueError, match="printable ASCII"):
        webhook_headers("evt_1", bad, b"{}", GOLDEN_SECRET, 1)
