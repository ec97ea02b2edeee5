"""SSRF guard: which webhook targets may be called, checked at creation and at every attempt.

``check_url`` vets a URL without DNS (scheme, host form, literal addresses, metadata names);
``GuardedResolver`` resolves a name, refuses it if ANY address is not allowed, and hands aiohttp
only the checked addresses, so the connection goes where the check looked (no DNS rebinding).
Addresses that embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by the
embedded address too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from bitbybit.config import Settings
from bitbybit.errors import FieldError, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z", re.IGNORECASE)


class TargetRefused(ValidationFailed):
    """A webhook URL or address that may not be called."""

    def __init__(self, reason: str) -> None:
        message = f"webhook URL refused: {reason}"
        super().__init__(message, [FieldError("url", reason)])


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    allow_private: bool = False
    allow_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        return cls(settings.allow_private_targets, settings.allow_http_targets)


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    scheme: str
    host: str
    port: int
    address: IPAddress | None
    """The host as an address when the URL names one literally."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the known embeddings."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(packed)
    return None


def _judge(address: IPAddress, policy: TargetPolicy, shown: str) -> None:
    if address in METADATA_ADDRESSES:
        raise TargetRefused(f"{shown} is a cloud metadata address")
    if address.is_unspecified:
        raise TargetRefused(f"{shown} is an unspecified address")
    if address.is_multicast:
        raise TargetRefused(f"{shown} is a multicast address")
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        raise TargetRefused(f"{shown} is the broadcast address")
    if policy.allow_private or address.is_global:
        return
    kind = (
        "loopback"
        if address.is_loopback
        else "link-local"
        if address.is_link_local
        else "private"
        if address.is_private
        else "non-public"
    )
    raise TargetRefused(f"{shown} is a {kind} address")


def check_address(address: IPAddress | str, policy: TargetPolicy) -> None:
    """Refuse an address (and any IPv4 address it embeds) that policy does not allow."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        raise TargetRefused(f"{address!r} is not an IP address") from None
    shown = str(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise TargetRefused(f"{shown} has a zone id")
        inner = embedded_ipv4(ip)
        if inner is not None:
            _judge(inner, policy, f"{shown} (embedding {inner})")
    _judge(ip, policy, shown)


def _numeric_host(host: str) -> bool:
    """True when every label parses as an inet_aton number: the host is an IPv4 address."""
    labels = host.split(".")
    if labels and labels[-1] == "":
        labels = labels[:-1]
    return bool(labels) and all(_NUMERIC_LABEL.match(label) for label in labels)


def _canonical_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) != 4 or not all(
        p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts
    ):
        return None
    if not all(int(p) <= 255 for p in parts):
        return None
    return ipaddress.IPv4Address(host)


def check_url(url: str, policy: TargetPolicy) -> ParsedTarget:
    """Vet a webhook URL without DNS; raises ``TargetRefused`` naming the reason."""
    if not isinstance(url, str) or not url:
        raise TargetRefused("the URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port_value = parts.port
    except ValueError as error:
        raise TargetRefused(f"the URL cannot be parsed ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise TargetRefused(f"scheme {scheme or '(none)'!r} is not allowed; use https")
    if scheme == "http" and not policy.allow_http:
        raise TargetRefused("plain http is not allowed; use https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("credentials in the URL are not allowed")
    raw_host = parts.hostname
    if not raw_host:
        raise TargetRefused("the URL has no host")
    port = port_value or (443 if scheme == "https" else 80)
    if not 1 <= port <= 65535:
        raise TargetRefused(f"port {port} is out of range")
    if "%" in raw_host:
        raise TargetRefused("IPv6 zone ids are not allowed")
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        try:
            v6 = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise TargetRefused(f"{raw_host!r} is not an IPv6 address") from None
        check_address(v6, policy)
        return ParsedTarget(scheme, raw_host, port, v6)
    try:
        host = raw_host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetRefused(f"{raw_host!r} is not a valid host name") from None
    if host.rstrip(".") in METADATA_NAMES:
        raise TargetRefused(f"{host} is a cloud metadata host")
    if _numeric_host(host):
        v4 = _canonical_ipv4(host)
        if v4 is None:
            raise TargetRefused(f"{host} is a non-canonical numeric address")
        check_address(v4, policy)
        return ParsedTarget(scheme, host, port, v4)
    bare = host.rstrip(".")
    if (bare == "localhost" or bare.endswith(".localhost")) and not policy.allow_private:
        raise TargetRefused(f"{host} is a loopback name")
    return ParsedTarget(scheme, host, port, None)


class RefusedAddress(OSError):
    """A name resolved to an address the policy refuses (aiohttp reports a connection error)."""


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and returns only checked addresses; any refused one refuses all."""

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        if self._inner is None:
            self._inner = ThreadedResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() in METADATA_NAMES:
            raise RefusedAddress(f"webhook URL refused: {host} is a cloud metadata host")
        results = await self.inner.resolve(host, port, family)
        if not results:
            raise RefusedAddress(f"{host} resolved to no address")
        for result in results:
            try:
                check_address(result["host"], self.policy)
            except TargetRefused as refused:
                raise RefusedAddress(f"{host}: {refused.message}") from None
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def new_connector(policy: TargetPolicy, **options: Any) -> aiohttp.TCPConnector:
    """A connector whose every new connection re-resolves and re-checks its host."""
    return aiohttp.TCPConnector(resolver=GuardedResolver(policy), use_dns_cache=False, **options)
