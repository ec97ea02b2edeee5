"""SSRF guard: which webhook targets may be called, checked at creation and at every attempt.

Three layers, each usable alone (SPEC §6):

``check_url``
    Vets a URL without DNS: scheme, userinfo, port, host form, literal addresses, metadata names.
    The URL is parsed once, with ``yarl``, and the client is handed the parsed target, so the
    host judged is the host connected to (no parser differential).
``check_address``
    Judges one IP address. Addresses that embed an IPv4 address (IPv4-mapped, -compatible,
    -translated, NAT64, 6to4, Teredo) are judged by the embedded address too.
``GuardedResolver``
    Resolves a name, refuses it whole if ANY address is not allowed, and hands the HTTP client
    (``delivery.http``) only the checked addresses, which it dials, so the connection goes where
    the check looked (no DNS rebinding). Literal-IP hosts are checked without a lookup. Nothing
    is cached: every new connection re-resolves and re-checks.

A refusal at connection time is raised as ``RefusedAddress`` (an ``OSError`` carrying the
``TargetRefused``); the client reports it as ``ConnectFailed`` whose ``os_error`` is the
``RefusedAddress``. ``refusal_from`` finds it.
Its message reaches the tenant (the attempt's error), so it says that the name resolves to a
non-public address and never which one: what an internal name resolves to is the operator's
business. The operator's log line ``target_refused`` carries the address and the verdict.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from bitbybit.config import Settings
from bitbybit.errors import FieldError, ValidationFailed

log = structlog.get_logger("bitbybit.delivery")

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_NAMES",
    "GuardedResolver",
    "ParsedTarget",
    "RefusedAddress",
    "TargetPolicy",
    "TargetRefused",
    "check_address",
    "check_url",
    "embedded_ipv4",
    "refusal_from",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

METADATA_ADDRESSES: Final = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack …
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
METADATA_NAMES: Final = frozenset({"metadata.google.internal", "metadata"})

# Refused whatever the policy: (network, what it is). First match names the reason.
_ALWAYS_V4: Final = (
    (_V4("0.0.0.0/32"), "an unspecified address"),
    (_V4("0.0.0.0/8"), "a 'this network' address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
)
_ALWAYS_V6: Final = (
    (_V6("::/128"), "an unspecified address"),
    (_V6("ff00::/8"), "a multicast address"),
)
# Refused unless the operator allows private targets. Python's ``is_global`` is the fallback; the
# tables make the verdict the same on every Python version and name the reason (IANA special-
# purpose registries).
_NON_PUBLIC_V4: Final = (
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay anycast address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
_NON_PUBLIC_V6: Final = (
    (_V6("::1/128"), "a loopback address"),
    (_V6("::ffff:0:0/96"), "an IPv4-mapped address"),
    (_V6("::ffff:0:0:0/96"), "an IPv4-translated address"),
    (_V6("::/96"), "an IPv4-compatible address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("2001::/32"), "a Teredo address"),
    (_V6("2001::/23"), "an IETF protocol assignment address"),
    (_V6("fc00::/7"), "a unique-local address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
)
_GLOBAL_UNICAST_V6: Final = _V6("2000::/3")
_NAT64_WELL_KNOWN: Final = _V6("64:ff9b::/96")
_NAT64_LOCAL: Final = _V6("64:ff9b:1::/48")
_IPV4_TRANSLATED: Final = _V6("::ffff:0:0:0/96")

_SCHEME_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?\Z")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")
_CANONICAL_OCTET = re.compile(r"(?:0|[1-9][0-9]{0,2})\Z")


class TargetRefused(ValidationFailed):
    """A webhook URL or address that may not be called; ``reason`` says why.

    ``message`` (and ``str()``) reads ``webhook URL refused: <reason>``; the one detail is on the
    ``url`` field, so the API answers 400 ``VALIDATION_ERROR`` naming the reason.
    """

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(f"webhook URL refused: {reason}{hint}", [FieldError("url", reason)])
        self.reason = reason


ALLOW_HTTP_HINT = " (for local development, the server's BITBYBIT_ALLOW_HTTP_TARGETS=1 allows it)"
ALLOW_PRIVATE_HINT = (
    " (for local development, the server's BITBYBIT_ALLOW_PRIVATE_TARGETS=1 allows private and"
    " loopback targets)"
)
"""What the message of a refusal that a setting would lift adds (the field's own message stays the
reason alone): a local set-up with ``bitbybit listen`` needs both settings."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """What the operator allows beyond public ``https://`` targets."""

    allow_private: bool = False
    allow_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        return cls(
            allow_private=settings.allow_private_targets, allow_http=settings.allow_http_targets
        )


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A vetted URL: what the client connects to, and the path and query it asks for (as
    written in the URL, percent-encoded)."""

    scheme: str
    host: str
    """Lower-case; punycode (IDNA) for names; an IPv6 address without brackets."""
    port: int
    address: IPAddress | None
    """The host as an address when the URL names one literally (already checked)."""
    path: str = "/"
    query: str = ""


# --- addresses ------------------------------------------------------------------------------


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for every embedding we know; else ``None``.

    IPv4-mapped ``::ffff:a.b.c.d``, IPv4-translated ``::ffff:0:a.b.c.d``, IPv4-compatible
    ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48`` (the last 32 bits, the /96 layout
    of RFC 6052), 6to4 ``2002::/16`` and Teredo ``2001::/32`` (the de-obfuscated client address).
    """
    value = int(address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_TRANSLATED or address in _NAT64_WELL_KNOWN or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 32 == 0 and value > 1:  # IPv4-compatible; :: and ::1 embed nothing
        return ipaddress.IPv4Address(value)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _first(address: IPAddress, table: Sequence[tuple[_V4 | _V6, str]]) -> str | None:
    for network, what in table:
        if address in network:
            return what
    return None


def _always_refused(address: IPAddress) -> str | None:
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv4Address):
        return _first(address, _ALWAYS_V4)
    return _first(address, _ALWAYS_V6)


def _non_public(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv4Address):
        what = _first(address, _NON_PUBLIC_V4)
    else:
        what = _first(address, _NON_PUBLIC_V6)
        if what is None and address not in _GLOBAL_UNICAST_V6 and address not in _NAT64_WELL_KNOWN:
            what = "an address outside the global unicast range"
    if what is None and not address.is_global:
        what = "a non-public address"
    return what


def _verdict(address: IPAddress, policy: TargetPolicy) -> str | None:
    """``None`` when ``address`` may be called, else what follows the address in the reason."""
    what = _always_refused(address)
    if what is not None:
        return f"is {what}"
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            what = _always_refused(inner) or (None if policy.allow_private else _non_public(inner))
            if what is not None:
                return f"embeds {inner}, {what}"
    if not policy.allow_private:
        what = _non_public(address)
        if what is not None:
            return f"is {what}"
    return None


def _as_address(address: IPAddress | str) -> IPAddress:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise TargetRefused(f"{address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise TargetRefused(f"{address} has an IPv6 zone id, which is not allowed")
    return ip


def check_address(address: IPAddress | str, policy: TargetPolicy) -> None:
    """Return if ``policy`` allows connecting to ``address``; else raise ``TargetRefused``.

    Refused always: cloud metadata addresses, unspecified, 'this network' (0/8), multicast,
    broadcast, zone ids, and any IPv6 address embedding one of these. Refused unless
    ``allow_private``: every address that is not publicly routable (loopback, private, link-local,
    CGNAT, documentation, reserved, ULA …), directly or through an embedded IPv4 address.
    """
    ip = _as_address(address)
    verdict = _verdict(ip, policy)
    if verdict is not None:
        lifted = _verdict(ip, replace(policy, allow_private=True)) is None
        raise TargetRefused(f"{ip} {verdict}", ALLOW_PRIVATE_HINT if lifted else "")


# --- URLs -----------------------------------------------------------------------------------


def _is_numeric_host(host: str) -> bool:
    """True when every label parses as an ``inet_aton`` number: libc would read an address."""
    labels = host.removesuffix(".").split(".")
    return all(_NUMERIC_LABEL.match(label) for label in labels)


def _canonical_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) != 4 or not all(_CANONICAL_OCTET.match(p) and int(p) <= 255 for p in parts):
        return None
    return ipaddress.IPv4Address(host)


def check_url(url: str, policy: TargetPolicy) -> ParsedTarget:
    """Vet a webhook URL without DNS; raises ``TargetRefused`` naming the reason (and only that).

    The verdict depends on the URL and the policy alone, so accepted URLs are remembered (the
    worker asks at every attempt); the addresses names resolve to are checked by
    ``GuardedResolver`` at every connection.
    """
    if not isinstance(url, str):
        raise TargetRefused(f"the URL must be a string, not {type(url).__name__}")
    return _check_url(url, policy)


@functools.lru_cache(maxsize=4096)
def _check_url(url: str, policy: TargetPolicy) -> ParsedTarget:
    if not url:
        raise TargetRefused("the URL is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    try:
        parsed = URL(url)
        explicit_port = parsed.explicit_port
        raw_host = parsed.raw_host
    except Exception as error:  # yarl documents ValueError, but e.g. "0://[]@" is IndexError
        raise TargetRefused(f"the URL cannot be parsed ({error or type(error).__name__})") from None
    scheme = parsed.scheme
    if scheme not in {"http", "https"}:
        raise TargetRefused(f"the scheme {scheme or '(none)'!r} is not allowed; use https")
    if scheme == "http" and not policy.allow_http:
        raise TargetRefused("plain http is not allowed; use https", ALLOW_HTTP_HINT)
    authority_match = _SCHEME_AUTHORITY.match(url)
    if not parsed.is_absolute() or not raw_host or authority_match is None:
        raise TargetRefused("the URL has no host")
    authority = authority_match.group(1)
    if "@" in authority or parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("credentials in the URL are not allowed")
    if explicit_port == 0:
        raise TargetRefused("port 0 is not allowed")
    port = parsed.port
    if port is None or not 1 <= port <= 65535:
        raise TargetRefused(f"port {port} is out of range")
    path, query = parsed.raw_path or "/", parsed.raw_query_string

    if authority.startswith("["):
        if "%" in raw_host:
            raise TargetRefused(f"{raw_host} has an IPv6 zone id, which is not allowed")
        try:
            v6 = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise TargetRefused(f"[{raw_host}] is not an IPv6 address") from None
        check_address(v6, policy)
        return ParsedTarget(scheme, str(v6), port, v6, path, query)

    host = raw_host.lower()  # yarl has already applied IDNA (UTS #46) and lower-cased
    if not _HOST_NAME.match(host) or len(host.removesuffix(".")) > 253:
        raise TargetRefused(f"{host!r} is not a valid host name")
    if any(len(label) > 63 for label in host.split(".")):
        raise TargetRefused(f"{host!r} has a label longer than 63 characters")
    bare = host.removesuffix(".")
    if bare in METADATA_NAMES:
        raise TargetRefused(f"{host} is a cloud metadata host")
    if _is_numeric_host(host):
        v4 = _canonical_ipv4(host)
        if v4 is None:
            raise TargetRefused(
                f"{host} is a non-canonical numeric address; write it as a dotted quad"
            )
        check_address(v4, policy)
        return ParsedTarget(scheme, host, port, v4, path, query)
    if (bare == "localhost" or bare.endswith(".localhost")) and not policy.allow_private:
        raise TargetRefused(f"{host} is a loopback name", ALLOW_PRIVATE_HINT)
    return ParsedTarget(scheme, host, port, None, path, query)


# --- connections ----------------------------------------------------------------------------


class RefusedAddress(OSError):
    """A connection the policy refuses; ``refused`` is the ``TargetRefused`` that says why.

    An ``OSError``, so the client reports it as a connection failure (``ConnectFailed``, whose
    ``os_error`` is this). ``str()`` is the refusal message.
    """

    def __init__(self, refused: TargetRefused) -> None:
        super().__init__(errno.EACCES, refused.message)
        self.refused = refused

    def __str__(self) -> str:
        return self.refused.message


def refusal_from(error: BaseException) -> TargetRefused | None:
    """The ``TargetRefused`` behind an error the client raised, if the SSRF guard caused it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TargetRefused):
            return current
        if isinstance(current, RefusedAddress):
            return current.refused
        os_error = getattr(current, "os_error", None)  # the client's ``ConnectFailed``
        if isinstance(os_error, OSError):
            current = os_error
        else:
            current = current.__cause__ or current.__context__
    return None


def _family(address: IPAddress) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _refuse_answer(host: str, address: str, verdict: str, told: str) -> RefusedAddress:
    """The refusal of a resolver's answer: the address and verdict go to the operator's log,
    the tenant is told only ``told`` (a webhook URL must not become a probe of internal DNS)."""
    log.warning("target_refused", host=host, address=address, verdict=verdict)
    return RefusedAddress(TargetRefused(f"{host} resolves to {told}"))


def _vet_results(host: str, results: Sequence[ResolveResult], policy: TargetPolicy) -> None:
    for result in results:
        raw = str(result["host"])
        try:
            address = _as_address(raw)
        except TargetRefused as refused:
            # A zone id marks a scoped (link-local) IPv6 address: non-public like the rest.
            told = "a non-public address" if "%" in raw else "something that is not an IP address"
            raise _refuse_answer(host, raw, refused.reason, told) from None
        verdict = _verdict(address, policy)
        if verdict is not None:
            raise _refuse_answer(host, str(address), verdict, "a non-public address")


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and returns only checked addresses; one refused refuses them all.

    Raises ``RefusedAddress`` (an ``OSError``) on refusal, which the client reports as
    ``ConnectFailed``. Literal IP hosts are checked without asking ``inner``.
    ``inner`` defaults to aiohttp's ``ThreadedResolver`` (the system resolver).
    """

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        if self._inner is None:
            self._inner = ThreadedResolver()  # needs a running loop: made on first use
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower()
        if name.removesuffix(".") in METADATA_NAMES:
            raise RefusedAddress(TargetRefused(f"{host} is a cloud metadata host"))
        if _is_numeric_host(name) and _canonical_ipv4(name) is None:
            raise RefusedAddress(TargetRefused(f"{host} is a non-canonical numeric address"))
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            results = [
                ResolveResult(
                    hostname=host,
                    host=host,
                    port=port,
                    family=_family(literal),
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            ]
        else:
            results = await self.inner.resolve(host, port, family)
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        checked = [result.copy() for result in results]  # copies: what we checked
        _vet_results(host, checked, self.policy)
        return checked

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
