"""Companies, API keys and who may do what: authentication, scopes, IP allowlists, rate limits."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bitbybit.errors import AccessDenied, AuthError, NotFound, RateLimited, ValidationFailed
from bitbybit.ids import new_id, random_base62
from bitbybit.models import ApiKey, Company, Mode, Tenant
from bitbybit.services import Platform

SCOPES: Final = frozenset(
    {
        "customers:read",
        "customers:write",
        "customers:delete",
        "orders:read",
        "orders:write",
        "products:read",
        "products:write",
        "products:delete",
        "messages:read",
        "messages:write",
        "webhooks:read",
        "webhooks:write",
    }
)
ROTATION_GRACE_MS: Final = 24 * 60 * 60 * 1000
MAX_ALLOWLIST: Final = 20
KEY_RANDOM_CHARS: Final = 40
WINDOW_MS: Final = 60_000


def hash_key(raw: str) -> str:
    """Keys carry ≥ 238 random bits, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """``"all"`` or a comma list (or an iterable) of scope names."""
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = [name for name in names if name]
    if names == ["all"]:
        return SCOPES
    unknown = sorted(set(names) - SCOPES)
    if unknown:
        raise ValidationFailed.field("scopes", f"unknown scope(s): {', '.join(unknown)}")
    if not names:
        raise ValidationFailed.field("scopes", "at least one scope is required")
    return frozenset(names)


def parse_allowlist(entries: Iterable[str]) -> tuple[str, ...]:
    """Validate an IP allowlist: ≤ 20 addresses or CIDRs, no wider than /9 (v4) or /33 (v6)."""
    parsed = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ValidationFailed.field(
                "ipAllowlist", f"{entry!r} is not an IP address or CIDR"
            ) from None
        widest = 9 if network.version == 4 else 33
        if network.prefixlen < widest:
            raise ValidationFailed.field(
                "ipAllowlist", f"{entry} is wider than /{widest}, the widest range allowed"
            )
        parsed.append(str(network))
    if len(parsed) > MAX_ALLOWLIST:
        raise ValidationFailed.field("ipAllowlist", f"at most {MAX_ALLOWLIST} entries")
    return tuple(parsed)


def ip_allowed(allowlist: tuple[str, ...], client_ip: str | None) -> bool:
    if not allowlist:
        return True
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(entry) for entry in allowlist)


async def create_company(platform: Platform, name: str, country: str = "ID") -> Company:
    name = name.strip()
    if not name:
        raise ValidationFailed.field("name", "a company needs a name")
    country = country.strip().upper()
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise ValidationFailed.field("country", "use a two-letter ISO 3166 country code")
    company = Company(new_id("comp"), name, country, platform.now())
    async with platform.store.write() as tx:
        await tx.insert_company(company)
    return company


async def create_api_key(
    platform: Platform,
    company_id: str,
    *,
    mode: Mode = "live",
    scopes: str | Iterable[str] = "all",
    ip_allowlist: Iterable[str] = (),
    name: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its text, which is shown this once and stored only as a hash."""
    raw = f"bbb_{mode}_{random_base62(KEY_RANDOM_CHARS)}"
    key = ApiKey(
        id=new_id("key"),
        company_id=company_id,
        mode=mode,
        prefix=raw[: len(f"bbb_{mode}_") + 4],
        scopes=parse_scopes(scopes),
        ip_allowlist=parse_allowlist(ip_allowlist),
        name=name,
        created_at=platform.now(),
        expires_at=None,
        revoked_at=None,
    )
    async with platform.store.write() as tx:
        if await tx.get_company(company_id) is None:
            raise NotFound(f"no company {company_id}")
        await tx.insert_api_key(key, hash_key(raw))
    return key, raw


async def rotate_api_key(platform: Platform, key_id: str) -> tuple[ApiKey, str]:
    """Issue a successor with the same scopes and allowlist; the old key lives 24 more hours."""
    async with platform.store.read() as tx:
        old = await tx.get_api_key(key_id)
    if old is None or old.revoked_at is not None:
        raise NotFound(f"no active key {key_id}")
    new, raw = await create_api_key(
        platform,
        old.company_id,
        mode=old.mode,
        scopes=old.scopes,
        ip_allowlist=old.ip_allowlist,
        name=old.name,
    )
    async with platform.store.write() as tx:
        await tx.expire_api_key(old.id, platform.now() + ROTATION_GRACE_MS)
    return new, raw


async def revoke_api_key(platform: Platform, key_id: str) -> None:
    async with platform.store.write() as tx:
        if await tx.get_api_key(key_id) is None:
            raise NotFound(f"no key {key_id}")
        await tx.revoke_api_key(key_id, platform.now())


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its key, whose data it sees, and its rate-limit state."""

    key: ApiKey
    rate: RateState

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.key.company_id, self.key.mode)


async def authenticate(platform: Platform, raw_key: str | None) -> Caller:
    """Find the key and count the request against its limit (raises only ``AuthError``).

    Every request with a known key counts, refused ones included (revoked and expired keys too),
    so a client hammering with a bad address or scope is throttled too. ``admit`` then applies
    the other checks.
    """
    if not raw_key:
        raise AuthError("send your API key in the x-api-key header", code="MISSING_API_KEY")
    now = platform.now()
    window_start = now - now % WINDOW_MS
    counted = await platform.store.count_key_request(hash_key(raw_key), window_start)
    if counted is None or not counted[0].usable_at(now):
        raise AuthError("the API key is invalid, revoked or expired")
    key, count = counted
    limit = platform.settings.rate_limit
    rate = RateState(
        limit=limit,
        remaining=max(0, limit - count),
        reset_seconds=max(1, -(-(window_start + WINDOW_MS - now) // 1000)),
        exceeded=count > limit,
    )
    return Caller(key, rate)


def admit(caller: Caller, client_ip: str | None, scope: str) -> None:
    """SPEC §2's ladder after authentication: address (403), rate (429), scope (403)."""
    if not ip_allowed(caller.key.ip_allowlist, client_ip):
        raise AccessDenied(
            f"requests from {client_ip} are not allowed for this key", code="IP_NOT_ALLOWED"
        )
    if caller.rate.exceeded:
        raise RateLimited(
            f"rate limit of {caller.rate.limit} requests per minute exceeded",
            retry_after=caller.rate.reset_seconds,
        )
    if scope not in caller.key.scopes:
        raise AccessDenied(f"this key lacks the {scope} scope")
