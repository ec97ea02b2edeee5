"""``FailedAuthLimiter``: token buckets of failed authentications per client, bounded memory."""

from __future__ import annotations

import ipaddress

import pytest

from bitbybit.services.access import FailedAuthLimiter, client_of

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("client_ip", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::10", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        (None, "unknown"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_who_failures_are_counted_against(client_ip: str | None, counted_as: str) -> None:
    assert client_of(client_ip) == counted_as


def test_a_bucket_empties_and_refills_at_the_rate() -> None:
    limiter = FailedAuthLimiter(6)  # one failure back every 10 s
    for _ in range(6):
        assert limiter.blocked_for("203.0.113.7", None, T0) is None
        limiter.failed("203.0.113.7", None, T0)
    assert limiter.blocked_for("203.0.113.7", None, T0) == 10
    assert limiter.blocked_for("203.0.113.7", None, T0 + 4_001) == 6
    assert limiter.blocked_for("203.0.113.7", None, T0 + 10_000) is None
    assert limiter.blocked_for("203.0.113.8", None, T0) is None  # others have their own
    assert limiter.blocked_for("203.0.113.7", None, T0 - 60_000) == 10  # a clock stepping back


def test_a_trusted_key_passes_a_block_until_it_fails() -> None:
    limiter = FailedAuthLimiter(1)
    limiter.succeeded("good")
    limiter.failed("203.0.113.7", "bad", T0)
    assert limiter.blocked_for("203.0.113.7", "bad", T0) == 60
    assert limiter.blocked_for("203.0.113.7", None, T0) == 60
    assert limiter.blocked_for("203.0.113.7", "good", T0) is None
    limiter.failed("203.0.113.7", "good", T0)  # e.g. revoked meanwhile
    assert limiter.blocked_for("203.0.113.7", "good", T0) == 60


def test_memory_stays_bounded_under_a_spray_of_addresses_and_keys() -> None:
    limiter = FailedAuthLimiter(20, addresses=1000, trusted=100)
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    for n in range(50_000):
        limiter.failed(str(ipaddress.IPv4Address(base + n)), f"key{n}", T0)
        limiter.succeeded(f"good{n}")
    assert len(limiter._buckets._buckets) == 1000
    assert len(limiter._trusted) == 100
    # the least recently used went first: the newest are still counted
    newest = str(ipaddress.IPv4Address(base + 49_999))
    assert client_of(newest) in limiter._buckets._buckets
    assert "good49999" in limiter._trusted
    assert "good0" not in limiter._trusted


def test_an_address_that_keeps_trying_is_not_evicted_by_a_spray() -> None:
    limiter = FailedAuthLimiter(1, addresses=10)
    limiter.failed("198.51.100.1", None, T0)
    for n in range(100):
        limiter.failed(f"203.0.113.{n}", None, T0)
        assert limiter.blocked_for("198.51.100.1", None, T0) == 60  # keeps it recent
