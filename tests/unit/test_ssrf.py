"""The SSRF guard without sockets: ``check_url``, ``check_address``, ``GuardedResolver`` (stubbed).

The matrices pin every rule of SPEC §6 under the strict default policy and under the permissive
one (``allow_private`` + ``allow_http``); the property tests cover every IPv6 form that embeds a
non-public or metadata IPv4 address, and arbitrary text.
"""

from __future__ import annotations

import ipaddress
import socket
import string
from collections.abc import Callable

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from bitbybit.config import Settings
from bitbybit.delivery import ssrf
from bitbybit.delivery.ssrf import (
    GuardedResolver,
    ParsedTarget,
    RefusedAddress,
    TargetPolicy,
    TargetRefused,
    check_address,
    check_url,
    embedded_ipv4,
    refusal_from,
)
from bitbybit.errors import ValidationFailed

STRICT = TargetPolicy()
OPEN = TargetPolicy(allow_private=True, allow_http=True)
PRIVATE_ONLY = TargetPolicy(allow_private=True)
HTTP_ONLY = TargetPolicy(allow_http=True)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


# --- how IPv6 addresses embed IPv4 ones -------------------------------------------------------


def mapped(v4: V4) -> V6:
    return V6((0xFFFF << 32) | int(v4))


def translated(v4: V4) -> V6:
    return V6((0xFFFF << 48) | int(v4))


def compatible(v4: V4) -> V6:
    return V6(int(v4))


def nat64(v4: V4) -> V6:
    return V6(int(V6("64:ff9b::")) | int(v4))


def nat64_local(v4: V4, middle: int = 0) -> V6:
    return V6(int(V6("64:ff9b:1::")) | (middle << 32) | int(v4))


def six_to_four(v4: V4, low: int = 1) -> V6:
    return V6((0x2002 << 112) | (int(v4) << 80) | low)


TEREDO_SERVER = V4("93.184.215.14")


def teredo(client: V4, server: V4 = TEREDO_SERVER, flags: int = 0, port: int = 0) -> V6:
    """Teredo stores the client's address and port obfuscated (every bit flipped)."""
    return V6(
        (0x20010000 << 96)
        | (int(server) << 64)
        | (flags << 48)
        | ((port ^ 0xFFFF) << 32)
        | (int(client) ^ 0xFFFFFFFF)
    )


EMBEDDINGS: tuple[Callable[[V4], V6], ...] = (
    mapped,
    translated,
    compatible,
    nat64,
    nat64_local,
    six_to_four,
    teredo,
)


# --- check_url matrix ----------------------------------------------------------------------

OK = None

# (url, reason under STRICT or OK, reason under OPEN or OK); a reason is a substring of .reason
URL_CASES: list[tuple[str, str | None, str | None]] = [
    # public https targets
    ("https://hooks.example.com/webhooks", OK, OK),
    ("https://hooks.example.com:8443/x?y=1#frag", OK, OK),
    ("HTTPS://Hooks.Example.COM/", OK, OK),
    ("https://hooks.example.com./", OK, OK),
    ("https://hooks.example.com:1/", OK, OK),
    ("https://hooks.example.com:65535/", OK, OK),
    ("https://93.184.215.14/", OK, OK),
    ("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", OK, OK),
    ("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/", OK, OK),
    ("https://[64:ff9b::93.184.215.14]/", OK, OK),
    ("https://[2002:5db8:d70e::1]/", OK, OK),
    # real names that only look numeric
    ("https://cafe.be/", OK, OK),
    ("https://0x.example.com/", OK, OK),
    ("https://1.example.com/", OK, OK),
    ("https://0xdeadbeef.example/", OK, OK),
    ("https://123.example/", OK, OK),
    ("https://a_b.example.com/", OK, OK),
    # IDNA
    ("https://bücher.de/", OK, OK),
    ("https://xn--bcher-kva.de/", OK, OK),
    ("https://ＥＸＡＭＰＬＥ.com/", OK, OK),
    # plain http: only with allow_http
    ("http://hooks.example.com/", "plain http is not allowed", OK),
    ("HTTP://hooks.example.com/", "plain http is not allowed", OK),
    # non-public IPv4, allowed only with allow_private
    ("https://10.0.0.5/", "10.0.0.5 is a private address", OK),
    ("https://172.16.0.1/", "172.16.0.1 is a private address", OK),
    ("https://172.31.255.254/", "private address", OK),
    ("https://192.168.1.1/", "192.168.1.1 is a private address", OK),
    ("https://127.0.0.1/", "127.0.0.1 is a loopback address", OK),
    ("https://127.255.255.254:8080/", "loopback address", OK),
    ("https://169.254.1.1/", "169.254.1.1 is a link-local address", OK),
    ("https://100.64.0.1/", "carrier-grade NAT", OK),
    ("https://100.127.255.254/", "carrier-grade NAT", OK),
    ("https://192.0.2.1/", "documentation address", OK),
    ("https://198.51.100.1/", "documentation address", OK),
    ("https://203.0.113.1/", "documentation address", OK),
    ("https://198.18.0.1/", "benchmarking address", OK),
    ("https://240.0.0.1/", "reserved address", OK),
    ("https://192.0.0.8/", "IETF protocol assignment", OK),
    ("https://192.88.99.1/", "6to4 relay anycast", OK),
    ("https://１２７．０．０．１/", "127.0.0.1 is a loopback address", OK),
    # non-public IPv6
    ("https://[::1]/", "loopback address", OK),
    ("https://[fe80::1]/", "link-local address", OK),
    ("https://[fc00::1]/", "unique-local address", OK),
    ("https://[fd12:3456::1]/", "unique-local address", OK),
    ("https://[fec0::1]/", "site-local address", OK),
    ("https://[2001:db8::1]/", "documentation address", OK),
    ("https://[3fff::1]/", "documentation address", OK),
    ("https://[100::1]/", "discard-only address", OK),
    ("https://[2001:2::1]/", "IETF protocol assignment", OK),
    ("https://[5f00::1]/", "outside the global unicast range", OK),
    ("https://[::ffff:8.8.8.8]/", "IPv4-mapped address", OK),
    # IPv6 forms embedding non-public IPv4
    ("https://[::ffff:127.0.0.1]/", "embeds 127.0.0.1, a loopback address", OK),
    ("https://[::ffff:10.0.0.5]/", "embeds 10.0.0.5, a private address", OK),
    ("https://[::127.0.0.1]/", "embeds 127.0.0.1", OK),
    ("https://[::ffff:0:127.0.0.1]/", "embeds 127.0.0.1", OK),
    ("https://[64:ff9b::127.0.0.1]/", "embeds 127.0.0.1", OK),
    ("https://[64:ff9b::192.168.0.1]/", "embeds 192.168.0.1, a private address", OK),
    ("https://[64:ff9b:1::10.0.0.1]/", "embeds 10.0.0.1", OK),
    ("https://[2002:7f00:1::1]/", "embeds 127.0.0.1", OK),
    ("https://[2002:c0a8:101::1]/", "embeds 192.168.1.1", OK),
    (f"https://[{teredo(V4('127.0.0.1'))}]/", "embeds 127.0.0.1", OK),
    (f"https://[{teredo(V4('10.1.2.3'))}]/", "embeds 10.1.2.3", OK),
    # loopback names
    ("https://localhost/", "localhost is a loopback name", OK),
    ("https://LOCALHOST./", "loopback name", OK),
    ("https://api.localhost:8443/", "api.localhost is a loopback name", OK),
    # other schemes: always refused
    ("ftp://hooks.example.com/", "scheme 'ftp' is not allowed", "scheme 'ftp' is not allowed"),
    ("file:///etc/passwd", "scheme 'file'", "scheme 'file'"),
    ("file://localhost/etc/passwd", "scheme 'file'", "scheme 'file'"),
    ("gopher://hooks.example.com:70/_x", "scheme 'gopher'", "scheme 'gopher'"),
    ("data:text/plain,hello", "scheme 'data'", "scheme 'data'"),
    ("javascript:alert(1)", "scheme 'javascript'", "scheme 'javascript'"),
    ("ws://hooks.example.com/", "scheme 'ws'", "scheme 'ws'"),
    ("wss://hooks.example.com/", "scheme 'wss'", "scheme 'wss'"),
    ("dict://127.0.0.1:11211/", "scheme 'dict'", "scheme 'dict'"),
    ("mailto:ops@example.com", "scheme 'mailto'", "scheme 'mailto'"),
    ("hooks.example.com/webhooks", "scheme", "scheme"),
    ("//hooks.example.com/webhooks", "scheme '(none)'", "scheme '(none)'"),
    # userinfo
    ("https://user:pass@hooks.example.com/", "credentials", "credentials"),
    ("https://user@hooks.example.com/", "credentials", "credentials"),
    ("https://:@hooks.example.com/", "credentials", "credentials"),
    ("https://@hooks.example.com/", "credentials", "credentials"),
    ("https://hooks.example.com@127.0.0.1/", "credentials", "credentials"),
    ("https://127.0.0.1:80@hooks.example.com/", "credentials", "credentials"),
    # ports
    ("https://hooks.example.com:0/", "port 0", "port 0"),
    ("https://hooks.example.com:65536/", "cannot be parsed", "cannot be parsed"),
    ("https://hooks.example.com:99999/", "cannot be parsed", "cannot be parsed"),
    ("https://hooks.example.com:-1/", "cannot be parsed", "cannot be parsed"),
    ("https://hooks.example.com:http/", "cannot be parsed", "cannot be parsed"),
    ("https://hooks.example.com:443:443/", "cannot be parsed", "cannot be parsed"),
    # no host
    ("https://", "no host", "no host"),
    ("https:///webhooks", "no host", "no host"),
    ("https:hooks.example.com", "no host", "no host"),
    ("https://:443/", "host is required", "host is required"),
    # cloud metadata: always refused
    ("https://metadata.google.internal/", "cloud metadata host", "cloud metadata host"),
    ("http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/", "plain http", "cloud metadata"),
    ("https://Metadata.Google.Internal:443/", "cloud metadata host", "cloud metadata host"),
    ("https://metadata/", "cloud metadata host", "cloud metadata host"),
    ("https://169.254.169.254/latest/", "cloud metadata address", "cloud metadata address"),
    ("https://100.100.100.200/", "cloud metadata address", "cloud metadata address"),
    ("https://[fd00:ec2::254]/", "cloud metadata address", "cloud metadata address"),
    ("https://[::ffff:169.254.169.254]/", "embeds 169.254.169.254", "embeds 169.254.169.254"),
    ("https://[::ffff:100.100.100.200]/", "embeds 100.100.100.200", "embeds 100.100.100.200"),
    ("https://[64:ff9b::169.254.169.254]/", "cloud metadata", "cloud metadata"),
    ("https://[2002:a9fe:a9fe::1]/", "cloud metadata", "cloud metadata"),
    (f"https://[{teredo(V4('169.254.169.254'))}]/", "cloud metadata", "cloud metadata"),
    # unspecified, 'this network', multicast, broadcast: always refused
    ("https://0.0.0.0/", "0.0.0.0 is an unspecified address", "unspecified address"),
    ("https://0.1.2.3/", "'this network' address", "'this network' address"),
    ("https://[::]/", ":: is an unspecified address", "unspecified address"),
    ("https://[::ffff:0.0.0.0]/", "embeds 0.0.0.0", "embeds 0.0.0.0"),
    ("https://224.0.0.1/", "multicast address", "multicast address"),
    ("https://239.255.255.250/", "multicast address", "multicast address"),
    ("https://[ff02::1]/", "multicast address", "multicast address"),
    ("https://[::ffff:224.0.0.251]/", "multicast address", "multicast address"),
    ("https://255.255.255.255/", "broadcast address", "broadcast address"),
    ("https://[::ffff:255.255.255.255]/", "broadcast address", "broadcast address"),
    # non-canonical numeric hosts: always refused, even when the address would be public
    ("https://2130706433/", "non-canonical numeric", "non-canonical numeric"),
    ("https://0x7f.1/", "non-canonical numeric", "non-canonical numeric"),
    ("https://127.1/", "non-canonical numeric", "non-canonical numeric"),
    ("https://010.0.0.1/", "non-canonical numeric", "non-canonical numeric"),
    ("https://0x7f000001/", "non-canonical numeric", "non-canonical numeric"),
    ("https://0X7F000001/", "non-canonical numeric", "non-canonical numeric"),
    ("https://127.0.0.1./", "non-canonical numeric", "non-canonical numeric"),
    ("https://0177.0.0.1/", "non-canonical numeric", "non-canonical numeric"),
    ("https://0x7f.0.0.1/", "non-canonical numeric", "non-canonical numeric"),
    ("https://017700000001/", "non-canonical numeric", "non-canonical numeric"),
    ("https://8.8.8.8./", "non-canonical numeric", "non-canonical numeric"),
    ("https://1572395790/", "non-canonical numeric", "non-canonical numeric"),
    ("https://1.2.3.4.5/", "non-canonical numeric", "non-canonical numeric"),
    ("https://0/", "non-canonical numeric", "non-canonical numeric"),
    ("https://256.0.0.1/", "non-canonical numeric", "non-canonical numeric"),
    # IPv6 literal oddities
    ("https://[fe80::1%25eth0]/", "zone id", "zone id"),
    ("https://[::1%25lo]:8080/", "zone id", "zone id"),
    ("https://[v1.fe]/", "not an IPv6 address", "not an IPv6 address"),
    ("https://[::1/", "cannot be parsed", "cannot be parsed"),
    ("https://[::1]x/", "cannot be parsed", "cannot be parsed"),
    # malformed hosts and characters
    ("", "empty", "empty"),
    (" https://hooks.example.com/", "whitespace", "whitespace"),
    ("https://hooks.example.com/\n", "whitespace", "whitespace"),
    ("https://hooks\t.example.com/", "whitespace", "whitespace"),
    ("https://exa mple.com/", "whitespace", "whitespace"),
    ("https://hooks.example.com/\x00", "control characters", "control characters"),
    ("https://exa%41mple.com/", "not a valid host name", "not a valid host name"),
    ("https://%31%32%37.0.0.1/", "not a valid host name", "not a valid host name"),
    ("https://a..b/", "not a valid host name", "not a valid host name"),
    ("https://hooks.example.com\\@127.0.0.1/", "cannot be parsed", "cannot be parsed"),
    (f"https://{'a' * 64}.example.com/", "longer than 63", "longer than 63"),
    (f"https://{'a.' * 127}example/", "not a valid host name", "not a valid host name"),
]


def _verdict(url: str, policy: TargetPolicy) -> str | None:
    try:
        target = check_url(url, policy)
    except TargetRefused as refused:
        return refused.reason
    assert isinstance(target, ParsedTarget)
    return None


@pytest.mark.parametrize(("url", "strict", "permissive"), URL_CASES)
def test_check_url_matrix(url: str, strict: str | None, permissive: str | None) -> None:
    for policy, expected in ((STRICT, strict), (OPEN, permissive)):
        got = _verdict(url, policy)
        if expected is None:
            assert got is None, f"{url!r} under {policy}: refused ({got})"
        else:
            assert got is not None, f"{url!r} under {policy}: accepted, expected {expected!r}"
            assert expected in got, f"{url!r} under {policy}: {got!r}"


@pytest.mark.parametrize(
    ("url", "accepted_by"),
    [
        ("https://hooks.example.com/", {STRICT, PRIVATE_ONLY, HTTP_ONLY, OPEN}),
        ("http://hooks.example.com/", {HTTP_ONLY, OPEN}),
        ("https://10.0.0.5/", {PRIVATE_ONLY, OPEN}),
        ("https://localhost:8443/", {PRIVATE_ONLY, OPEN}),
        ("http://10.0.0.5/", {OPEN}),
        ("http://127.0.0.1:8765/hook", {OPEN}),
        ("http://[::1]:8765/hook", {OPEN}),
        ("http://localhost:8765/hook", {OPEN}),
        ("https://169.254.169.254/", set()),
    ],
)
def test_each_flag_allows_only_its_own_thing(url: str, accepted_by: set[TargetPolicy]) -> None:
    for policy in (STRICT, PRIVATE_ONLY, HTTP_ONLY, OPEN):
        assert (_verdict(url, policy) is None) == (policy in accepted_by), policy


def test_refusal_is_a_validation_error_on_the_url_field() -> None:
    with pytest.raises(TargetRefused) as caught:
        check_url("https://10.0.0.5/hook", STRICT)
    refused = caught.value
    assert isinstance(refused, ValidationFailed)
    assert refused.code == "VALIDATION_ERROR"
    assert refused.reason == "10.0.0.5 is a private address"
    assert refused.message == (
        "webhook URL refused: 10.0.0.5 is a private address (for local development, the"
        " server's BITBYBIT_ALLOW_PRIVATE_TARGETS=1 allows private and loopback targets)"
    )
    assert str(refused) == refused.message
    assert [(d.field, d.message) for d in refused.details] == [("url", refused.reason)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://Hooks.Example.COM/a/b?x=1&y=2#frag",
            ParsedTarget("https", "hooks.example.com", 443, None, "/a/b", "x=1&y=2"),
        ),
        ("https://hooks.example.com", ParsedTarget("https", "hooks.example.com", 443, None)),
        ("http://hooks.example.com:8080/", ParsedTarget("http", "hooks.example.com", 8080, None)),
        ("https://bücher.de/", ParsedTarget("https", "xn--bcher-kva.de", 443, None)),
        ("https://ＥＸＡＭＰＬＥ.com/", ParsedTarget("https", "example.com", 443, None)),
        ("https://hooks.example.com./", ParsedTarget("https", "hooks.example.com.", 443, None)),
        (
            "https://93.184.215.14:8443/h",
            ParsedTarget("https", "93.184.215.14", 8443, V4("93.184.215.14"), "/h"),
        ),
        (
            "https://[2606:2800:21F:CB07::1]/",
            ParsedTarget("https", "2606:2800:21f:cb07::1", 443, V6("2606:2800:21f:cb07::1")),
        ),
        (
            "http://[::1]:8765/",
            ParsedTarget("http", "::1", 8765, V6("::1")),
        ),
    ],
)
def test_parsed_target(url: str, expected: ParsedTarget) -> None:
    assert check_url(url, OPEN) == expected


def test_check_url_refuses_non_strings() -> None:
    with pytest.raises(TargetRefused, match="must be a string"):
        check_url(b"https://hooks.example.com/", STRICT)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(TargetRefused, match="must be a string"):
        check_url(None, STRICT)  # type: ignore[arg-type]  # on purpose


def test_policy_from_settings() -> None:
    assert TargetPolicy.from_settings(Settings()) == STRICT
    assert TargetPolicy.from_settings(
        Settings(allow_private_targets=True, allow_http_targets=True)
    ) == TargetPolicy(allow_private=True, allow_http=True)
    env = {"BITBYBIT_ALLOW_PRIVATE_TARGETS": "1"}
    assert TargetPolicy.from_settings(Settings.from_env(env)) == PRIVATE_ONLY
    env = {"BITBYBIT_ALLOW_HTTP_TARGETS": "true"}
    assert TargetPolicy.from_settings(Settings.from_env(env)) == HTTP_ONLY


# --- check_address matrix ------------------------------------------------------------------

# (address, reason under STRICT or OK, reason under PRIVATE_ONLY or OK)
ADDRESS_CASES: list[tuple[str, str | None, str | None]] = [
    ("93.184.215.14", OK, OK),
    ("8.8.8.8", OK, OK),
    ("1.1.1.1", OK, OK),
    ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", OK, OK),
    ("2001:4860:4860::8888", OK, OK),
    ("64:ff9b::808:808", OK, OK),
    ("2002:808:808::1", OK, OK),
    ("10.0.0.5", "10.0.0.5 is a private address", OK),
    ("10.255.255.255", "private address", OK),
    ("172.16.0.0", "private address", OK),
    ("192.168.255.255", "private address", OK),
    ("127.0.0.1", "loopback address", OK),
    ("127.53.0.1", "loopback address", OK),
    ("169.254.0.1", "link-local address", OK),
    ("100.64.0.0", "carrier-grade NAT", OK),
    ("192.0.2.1", "documentation address", OK),
    ("198.51.100.7", "documentation address", OK),
    ("203.0.113.200", "documentation address", OK),
    ("198.19.255.255", "benchmarking address", OK),
    ("240.0.0.1", "reserved address", OK),
    ("255.255.255.254", "reserved address", OK),
    ("::1", "::1 is a loopback address", OK),
    ("fe80::1", "link-local address", OK),
    ("febf::1", "link-local address", OK),
    ("fc00::", "unique-local address", OK),
    ("fdff:ffff::1", "unique-local address", OK),
    ("2001:db8::", "documentation address", OK),
    ("2001::1", "embeds 255.255.255.254, a reserved address", OK),  # client bits flipped
    (str(teredo(V4("93.184.215.14"))), "Teredo address", OK),
    ("::ffff:8.8.8.8", "IPv4-mapped address", OK),
    ("::ffff:127.0.0.1", "embeds 127.0.0.1, a loopback address", OK),
    ("::ffff:10.0.0.1", "embeds 10.0.0.1, a private address", OK),
    ("::ffff:169.254.0.1", "embeds 169.254.0.1, a link-local address", OK),
    ("::ffff:100.64.0.1", "embeds 100.64.0.1", OK),
    ("::10.0.0.1", "embeds 10.0.0.1", OK),
    ("::ffff:0:192.168.0.1", "embeds 192.168.0.1", OK),
    ("64:ff9b::10.0.0.1", "embeds 10.0.0.1", OK),
    ("64:ff9b:1::127.0.0.1", "embeds 127.0.0.1", OK),
    ("64:ff9b:1:abcd:ef01::8.8.8.8", "local-use NAT64 address", OK),
    ("2002:a00:1::", "embeds 10.0.0.1", OK),
    (str(teredo(V4("192.168.0.1"), flags=0x8000, port=40000)), "embeds 192.168.0.1", OK),
    ("169.254.169.254", "169.254.169.254 is a cloud metadata address", "cloud metadata"),
    ("100.100.100.200", "cloud metadata address", "cloud metadata address"),
    ("fd00:ec2::254", "cloud metadata address", "cloud metadata address"),
    ("::ffff:169.254.169.254", "embeds 169.254.169.254, a cloud metadata", "cloud metadata"),
    ("::169.254.169.254", "cloud metadata", "cloud metadata"),
    ("::ffff:0:169.254.169.254", "cloud metadata", "cloud metadata"),
    ("64:ff9b::169.254.169.254", "cloud metadata", "cloud metadata"),
    ("64:ff9b:1::100.100.100.200", "cloud metadata", "cloud metadata"),
    ("2002:a9fe:a9fe:1::1", "cloud metadata", "cloud metadata"),
    (str(teredo(V4("169.254.169.254"))), "cloud metadata", "cloud metadata"),
    (str(teredo(V4("100.100.100.200"), flags=0xFFFF, port=1)), "cloud metadata", "cloud metadata"),
    ("0.0.0.0", "unspecified address", "unspecified address"),  # noqa: S104  # not a bind
    ("0.255.255.255", "'this network' address", "'this network' address"),
    ("::", "unspecified address", "unspecified address"),
    ("::ffff:0.0.0.0", "embeds 0.0.0.0, an unspecified address", "unspecified address"),
    ("64:ff9b::", "embeds 0.0.0.0", "embeds 0.0.0.0"),
    ("224.0.0.1", "multicast address", "multicast address"),
    ("239.255.255.255", "multicast address", "multicast address"),
    ("ff02::1", "multicast address", "multicast address"),
    ("ff0e::1", "multicast address", "multicast address"),
    ("::ffff:224.0.0.1", "embeds 224.0.0.1, a multicast address", "multicast address"),
    ("2002:e000:1::1", "multicast address", "multicast address"),
    ("255.255.255.255", "the broadcast address", "the broadcast address"),
    ("::ffff:255.255.255.255", "broadcast address", "broadcast address"),
    ("fe80::1%eth0", "zone id", "zone id"),
    ("not-an-ip", "is not an IP address", "is not an IP address"),
    ("127.1", "is not an IP address", "is not an IP address"),
    ("", "is not an IP address", "is not an IP address"),
]


@pytest.mark.parametrize(("address", "strict", "private"), ADDRESS_CASES)
def test_check_address_matrix(address: str, strict: str | None, private: str | None) -> None:
    for policy, expected in ((STRICT, strict), (PRIVATE_ONLY, private)):
        for form in (address, _parsed_or_same(address)):
            try:
                check_address(form, policy)
                got = None
            except TargetRefused as refused:
                got = refused.reason
            if expected is None:
                assert got is None, f"{form!r} under {policy}: refused ({got})"
            else:
                assert got is not None, f"{form!r} under {policy}: accepted"
                assert expected in got, f"{form!r} under {policy}: {got!r}"


def _parsed_or_same(address: str) -> str | V4 | V6:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return address


def test_refused_address_names_itself() -> None:
    with pytest.raises(TargetRefused) as caught:
        check_address("10.0.0.5", STRICT)
    assert str(caught.value).startswith("webhook URL refused: 10.0.0.5 is a private address (")
    check_address("10.0.0.5", PRIVATE_ONLY)  # returns quietly


@pytest.mark.parametrize(
    ("url", "policy", "setting"),
    [
        ("http://hooks.example.com/", PRIVATE_ONLY, "BITBYBIT_ALLOW_HTTP_TARGETS=1"),
        ("https://127.0.0.1:8765/", STRICT, "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
        ("https://localhost:8765/", STRICT, "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
        ("https://[::1]:8765/", STRICT, "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
        ("https://192.168.1.1/", STRICT, "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
        ("https://169.254.169.254/", OPEN, None),  # metadata: no setting allows it
        ("https://0.0.0.0/", STRICT, None),  # nor this
    ],
)
def test_a_refusal_a_setting_would_lift_names_the_setting(
    url: str, policy: TargetPolicy, setting: str | None
) -> None:
    """`bitbybit listen` is plain http on loopback: the message says which settings allow it; a
    refusal no setting lifts names none (and the field's own message is the reason alone)."""
    with pytest.raises(TargetRefused) as caught:
        check_url(url, policy)
    refused = caught.value
    assert [d.message for d in refused.details] == [refused.reason]
    if setting is None:
        assert "BITBYBIT_" not in refused.message
    else:
        assert f"(for local development, the server's {setting} allows" in refused.message


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:0:10.1.2.3", "10.1.2.3"),
        ("::10.1.2.3", "10.1.2.3"),
        ("64:ff9b::c000:201", "192.0.2.1"),
        ("64:ff9b:1:ffff:ffff:ffff:a01:203", "10.1.2.3"),
        ("2002:c000:201:1234::5", "192.0.2.1"),
        (str(teredo(V4("203.0.113.9"), port=12345, flags=0x8000)), "203.0.113.9"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # RFC 4380's own example
        ("::", None),
        ("::1", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("fe80::1", None),
    ],
)
def test_embedded_ipv4(address: str, inner: str | None) -> None:
    assert embedded_ipv4(V6(address)) == (None if inner is None else V4(inner))


# --- properties ----------------------------------------------------------------------------

NON_PUBLIC_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
    )
]
METADATA_V4 = [V4("169.254.169.254"), V4("100.100.100.200")]


def _in(network: ipaddress.IPv4Network) -> st.SearchStrategy[V4]:
    low, high = int(network.network_address), int(network.broadcast_address)
    return st.integers(low, high).map(V4)


non_public_v4 = st.sampled_from(NON_PUBLIC_V4).flatmap(_in)


@st.composite
def embedded_forms(draw: st.DrawFn, v4: V4) -> V6:
    """``v4`` inside a random IPv6 embedding, with random bits wherever the form allows them."""
    kind = draw(st.sampled_from(EMBEDDINGS))
    if kind is nat64_local:
        return nat64_local(v4, draw(st.integers(0, 2**48 - 1)))
    if kind is six_to_four:
        return six_to_four(v4, draw(st.integers(0, 2**80 - 1)))
    if kind is teredo:
        server = V4(draw(st.integers(0, 2**32 - 1)))
        return teredo(v4, server, draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)))
    return kind(v4)


def _refused(address: V4 | V6, policy: TargetPolicy) -> bool:
    try:
        check_address(address, policy)
    except TargetRefused:
        return True
    return False


def _url_refused(url: str, policy: TargetPolicy) -> bool:
    try:
        check_url(url, policy)
    except TargetRefused:
        return True
    return False


@given(v4=non_public_v4)
@example(v4=V4("255.255.255.255"))
def test_non_public_ipv4_is_refused_without_allow_private(v4: V4) -> None:
    assert _refused(v4, STRICT)
    assert _url_refused(f"https://{v4}/", STRICT)
    broadcast = v4 == V4("255.255.255.255")  # inside 240/4, and refused always
    assert _refused(v4, PRIVATE_ONLY) == broadcast


@given(data=st.data(), v4=non_public_v4)
def test_non_public_ipv4_in_any_ipv6_form_is_refused(data: st.DataObject, v4: V4) -> None:
    v6 = data.draw(embedded_forms(v4))
    assert embedded_ipv4(v6) == v4
    assert _refused(v6, STRICT), v6
    assert _refused(V6(int(v6)), STRICT)
    assert _url_refused(f"https://[{v6}]/", STRICT)
    assert _url_refused(f"https://[{v6.exploded}]:8443/hook", STRICT)


@given(data=st.data(), v4=st.sampled_from(METADATA_V4))
def test_metadata_in_any_form_is_refused_always(data: st.DataObject, v4: V4) -> None:
    v6 = data.draw(embedded_forms(v4))
    for policy in (STRICT, OPEN):
        assert _refused(v4, policy)
        assert _refused(v6, policy), v6
        assert _url_refused(f"https://[{v6}]/", policy)


@given(data=st.data(), v4=_in(ipaddress.IPv4Network("224.0.0.0/4")))
def test_multicast_in_any_form_is_refused_always(data: st.DataObject, v4: V4) -> None:
    v6 = data.draw(embedded_forms(v4))
    assert _refused(v4, OPEN)
    assert _refused(v6, OPEN)


@given(address=st.ip_addresses())
@example(address=V4("93.184.215.14"))
@example(address=V6("::ffff:7f00:1"))
def test_allow_private_only_ever_widens(address: V4 | V6) -> None:
    """Whatever the strict policy allows, allow_private allows; refusals name the address."""
    try:
        check_address(address, STRICT)
        reason = None
    except TargetRefused as refused:
        reason = refused.reason
    if reason is None:
        check_address(address, PRIVATE_ONLY)
    else:
        assert reason.startswith(str(address))


@given(address=st.ip_addresses(v=4))
def test_public_ipv4_verdict_matches_the_url_verdict(address: V4) -> None:
    assert _refused(address, STRICT) == _url_refused(f"https://{address}/", STRICT)
    assert _refused(address, OPEN) == _url_refused(f"https://{address}:9/", OPEN)


URLISH = string.ascii_letters + string.digits + ":/?#[]@!$&'()*+,;=%.-_~\\ \t\n\x00é１．。"


@settings(max_examples=500)
@given(
    text=st.one_of(
        st.text(),
        st.text(alphabet=URLISH),
        st.builds(
            "".join,
            st.tuples(
                st.sampled_from(["https://", "http://", "HTTPS://", "https://[", "//", "ftp://"]),
                st.text(alphabet=URLISH),
            ),
        ),
    )
)
@example(text="https://[::ffff:127.0.0.1]/")
@example(text="https://\udcff/")
@example(text="https://[" + "0" * 100 + "]/")
@example(text="https://" + "a" * 300 + "/")
@example(text="https://xn--/")
@example(text="0://[]@")  # yarl raises IndexError here
@example(text="https://[]@hooks.example.com/")
def test_check_url_raises_only_target_refused(text: str) -> None:
    for policy in (STRICT, OPEN):
        try:
            target = check_url(text, policy)
        except TargetRefused as refused:
            message = refused.message
            assert message.startswith("webhook URL refused: ")
            continue
        # What was accepted is what aiohttp will see: same host, same port, allowed scheme.
        url = URL(text)
        assert target.scheme in ({"https", "http"} if policy.allow_http else {"https"})
        assert 1 <= target.port <= 65535
        assert target.port == url.port
        if target.address is None:
            assert target.host == (url.raw_host or "").lower()
        else:
            assert target.address == ipaddress.ip_address(url.raw_host or "")
            check_address(target.address, policy)


# --- GuardedResolver with a stub (no sockets) ----------------------------------------------


class StubResolver(AbstractResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers.get(host, [])
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_returns_the_checked_addresses() -> None:
    stub = StubResolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07::1"]})
    results = await GuardedResolver(STRICT, stub).resolve("hooks.example.com", 443)
    assert [r["host"] for r in results] == ["93.184.215.14", "2606:2800:21f:cb07::1"]
    assert stub.calls == ["hooks.example.com"]


class LogRecorder:
    """Stands in for ``ssrf.log``: keeps each warning's event and fields."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append({"event": event, **fields})


@pytest.fixture
def ssrf_log(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(ssrf, "log", recorder, raising=False)
    return recorder


NON_PUBLIC = "hooks.example.com resolves to a non-public address"


@pytest.mark.parametrize(
    ("answer", "policy", "address", "verdict", "told"),
    [
        (["127.0.0.1"], STRICT, "127.0.0.1", "is a loopback address", NON_PUBLIC),
        (["93.184.215.14", "10.0.0.1"], STRICT, "10.0.0.1", "is a private address", NON_PUBLIC),
        (["10.0.0.1", "93.184.215.14"], STRICT, "10.0.0.1", "is a private address", NON_PUBLIC),
        (
            ["93.184.215.14", "::ffff:127.0.0.1"],
            STRICT,
            "::ffff:7f00:1",
            "embeds 127.0.0.1, a loopback address",
            NON_PUBLIC,
        ),
        (
            ["93.184.215.14", "169.254.169.254"],
            OPEN,
            "169.254.169.254",
            "is a cloud metadata address",
            NON_PUBLIC,
        ),
        (["fd00:ec2::254"], OPEN, "fd00:ec2::254", "is a cloud metadata address", NON_PUBLIC),
        (["fe80::1%eth0"], OPEN, "fe80::1%eth0", "zone id", NON_PUBLIC),
        (["0.0.0.0"], OPEN, "0.0.0.0", "is an unspecified address", NON_PUBLIC),  # noqa: S104  # an answer, not a bind
        (
            ["not-an-address"],
            OPEN,
            "not-an-address",
            "is not an IP address",
            "hooks.example.com resolves to something that is not an IP address",
        ),
    ],
)
async def test_resolver_refuses_the_whole_answer(
    ssrf_log: LogRecorder,
    answer: list[str],
    policy: TargetPolicy,
    address: str,
    verdict: str,
    told: str,
) -> None:
    """The tenant reads that the name resolves to a non-public address, never which address;
    the operator's log names the address and why it was refused."""
    stub = StubResolver({"hooks.example.com": answer})
    with pytest.raises(RefusedAddress) as caught:
        await GuardedResolver(policy, stub).resolve("hooks.example.com", 443)
    error = caught.value
    assert isinstance(error, OSError)
    assert error.refused.reason == told
    for answered in answer:
        assert answered not in error.refused.message
    assert str(error) == error.refused.message
    assert error.strerror == error.refused.message
    assert refusal_from(error) is error.refused
    [logged] = ssrf_log.warnings
    assert logged["event"] == "target_refused"
    assert logged["host"] == "hooks.example.com"
    assert logged["address"] == address
    assert verdict in str(logged["verdict"])


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.google.internal.", "metadata"]
)
async def test_resolver_refuses_metadata_names_without_asking(host: str) -> None:
    stub = StubResolver({host: ["93.184.215.14"]})
    with pytest.raises(RefusedAddress, match="cloud metadata host"):
        await GuardedResolver(OPEN, stub).resolve(host, 80)
    assert stub.calls == []


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.0.0.1", "8.8.8.8."])
async def test_resolver_refuses_non_canonical_numbers_without_asking(host: str) -> None:
    stub = StubResolver({host: ["93.184.215.14"]})
    with pytest.raises(RefusedAddress, match="non-canonical numeric"):
        await GuardedResolver(OPEN, stub).resolve(host, 80)
    assert stub.calls == []


@pytest.mark.parametrize(
    ("host", "policy", "refused"),
    [
        ("127.0.0.1", STRICT, True),
        ("127.0.0.1", PRIVATE_ONLY, False),
        ("::1", STRICT, True),
        ("::ffff:127.0.0.1", STRICT, True),
        ("93.184.215.14", STRICT, False),
        ("2606:2800:21f:cb07::1", STRICT, False),
        ("169.254.169.254", OPEN, True),
    ],
)
async def test_resolver_checks_literals_without_asking(
    host: str, policy: TargetPolicy, refused: bool
) -> None:
    stub = StubResolver({})
    resolver = GuardedResolver(policy, stub)
    if refused:
        with pytest.raises(RefusedAddress):
            await resolver.resolve(host, 443)
    else:
        [result] = await resolver.resolve(host, 443)
        address = ipaddress.ip_address(host)
        assert result["host"] == host
        assert result["port"] == 443
        assert result["family"] == (socket.AF_INET if address.version == 4 else socket.AF_INET6)
    assert stub.calls == []


async def test_resolver_answer_without_addresses_is_a_lookup_failure() -> None:
    with pytest.raises(socket.gaierror):
        await GuardedResolver(STRICT, StubResolver({})).resolve("nowhere.example", 443)


async def test_resolver_hands_out_copies() -> None:
    answer = ["93.184.215.14"]
    stub = StubResolver({"hooks.example.com": answer})
    resolver = GuardedResolver(STRICT, stub)
    first = await resolver.resolve("hooks.example.com", 443)
    first[0]["host"] = "127.0.0.1"  # a caller scribbling on its copy changes nothing checked
    second = await resolver.resolve("hooks.example.com", 443)
    assert second[0]["host"] == "93.184.215.14"


async def test_resolver_close_closes_the_inner_one() -> None:
    stub = StubResolver({})
    await GuardedResolver(STRICT, stub).close()
    assert stub.closed
    await GuardedResolver(STRICT).close()  # nothing made yet, nothing to close


async def test_resolver_defaults_to_the_threaded_resolver() -> None:
    resolver = GuardedResolver(STRICT)
    assert isinstance(resolver.inner, ThreadedResolver)
    await resolver.close()


def test_refusal_from_unrelated_errors_is_none() -> None:
    assert refusal_from(ValueError("x")) is None
    assert refusal_from(OSError(111, "refused")) is None
    try:
        try:
            check_url("https://10.0.0.1/", STRICT)
        except TargetRefused as refused:
            raise RuntimeError("wrapped") from refused
    except RuntimeError as error:
        found = refusal_from(error)
    assert found is not None
    assert "10.0.0.1" in found.reason
