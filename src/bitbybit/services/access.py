"""Companies, API keys and who may do what: authentication, scopes, IP allowlists, rate limits."""

from __future__ import annotations

import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter

from bitbybit.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from bitbybit.ids import new_id, random_base62
from bitbybit.models import ApiKey, Company, Mode, Tenant
from bitbybit.runtime import Platform

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
MAX_IP_LABEL: Final = 100
MAX_KEY_NAME: Final = 200
KEY_RANDOM_CHARS: Final = 40
WINDOW_MS: Final = 60_000
TRACKED_ADDRESSES: Final = 10_000
TRUSTED_KEYS: Final = 10_000

AUTH_FAILURES = Counter(
    "bitbybit_auth_failures_total",
    "Failed authentications: refused (401) or throttled (429 before the database, the client"
    " address having failed too often)",
    ["outcome"],
)


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


def parse_labelled_allowlist(text: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """An allowlist written one entry a line, ``CIDR optional label`` (``203.0.113.0/24
    office``): the entries as ``parse_allowlist`` checks them, and a label per labelled entry
    (keyed by the entry as stored). Blank lines are skipped; an entry given twice counts once."""
    entries: list[str] = []
    labels: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        (entry,) = parse_allowlist([parts[0]])
        label = parts[1].strip() if len(parts) > 1 else ""
        if entry not in entries:
            entries.append(entry)
        if label and entry not in labels:
            labels[entry] = _label(label)
    return parse_allowlist(entries), labels


def _label(text: str) -> str:
    if len(text) > MAX_IP_LABEL:
        raise ValidationFailed.field("ipAllowlist", f"labels are at most {MAX_IP_LABEL} characters")
    if not text.isprintable():
        raise ValidationFailed.field("ipAllowlist", "labels cannot hold control characters")
    return text


def _labels_for(allowlist: tuple[str, ...], labels: Mapping[str, str]) -> dict[str, str]:
    """The labels of entries on ``allowlist``, keyed as it stores them."""
    kept: dict[str, str] = {}
    for entry, label in labels.items():
        (stored,) = parse_allowlist([entry])
        if stored in allowlist and label.strip():
            kept[stored] = _label(label.strip())
    return kept


def _key_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if len(name) > MAX_KEY_NAME:
        raise ValidationFailed.field("name", f"at most {MAX_KEY_NAME} characters")
    if not name.isprintable():
        raise ValidationFailed.field("name", "cannot hold control characters")
    return name or None


async def create_api_key(
    platform: Platform,
    company_id: str,
    *,
    mode: Mode = "live",
    scopes: str | Iterable[str] = "all",
    ip_allowlist: Iterable[str] = (),
    name: str | None = None,
    ip_labels: Mapping[str, str] | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its text, which is shown this once and stored only as a hash.
    ``ip_labels`` names allowlist entries (``{"203.0.113.0/24": "office"}``)."""
    raw = f"bbb_{mode}_{random_base62(KEY_RANDOM_CHARS)}"
    allowlist = parse_allowlist(ip_allowlist)
    key = ApiKey(
        id=new_id("key"),
        company_id=company_id,
        mode=mode,
        prefix=raw[: len(f"bbb_{mode}_") + 4],
        scopes=parse_scopes(scopes),
        ip_allowlist=allowlist,
        name=_key_name(name),
        created_at=platform.now(),
        expires_at=None,
        revoked_at=None,
        ip_labels=_labels_for(allowlist, ip_labels or {}),
    )
    async with platform.store.write() as tx:
        if await tx.get_company(company_id) is None:
            raise NotFound(f"no company {company_id}")
        await tx.insert_api_key(key, hash_key(raw))
    return key, raw


async def rotate_api_key(
    platform: Platform, key_id: str, *, company_id: str | None = None
) -> tuple[ApiKey, str]:
    """Issue a successor with the same scopes and allowlist; the old key lives 24 more hours.
    With ``company_id``, a key of another company is not found."""
    async with platform.store.read() as tx:
        old = await tx.get_api_key(key_id)
    if old is None or old.revoked_at is not None or not _of(old, company_id):
        raise NotFound(f"no active key {key_id}")
    new, raw = await create_api_key(
        platform,
        old.company_id,
        mode=old.mode,
        scopes=old.scopes,
        ip_allowlist=old.ip_allowlist,
        name=old.name,
        ip_labels=old.ip_labels,
    )
    async with platform.store.write() as tx:
        await tx.expire_api_key(old.id, platform.now() + ROTATION_GRACE_MS)
    return new, raw


async def revoke_api_key(platform: Platform, key_id: str, *, company_id: str | None = None) -> None:
    """Revoke a key at once. With ``company_id``, a key of another company is not found."""
    async with platform.store.write() as tx:
        key = await tx.get_api_key(key_id)
        if key is None or not _of(key, company_id):
            raise NotFound(f"no key {key_id}")
        await tx.revoke_api_key(key_id, platform.now())


def _of(key: ApiKey, company_id: str | None) -> bool:
    return company_id is None or key.company_id == company_id


async def list_keys(platform: Platform, company_id: str, mode: Mode) -> list[ApiKey]:
    """The company's keys of ``mode``, oldest first."""
    async with platform.store.read() as tx:
        keys = await tx.list_api_keys(company_id)
    return [key for key in keys if key.mode == mode]


async def company_key(platform: Platform, company_id: str, key_id: str) -> ApiKey:
    """The company's key ``key_id``; another company's key is not found."""
    async with platform.store.read() as tx:
        key = await tx.get_api_key(key_id)
    if key is None or key.company_id != company_id:
        raise NotFound(f"no key {key_id}")
    return key


async def set_allowlist(
    platform: Platform,
    company_id: str,
    key_id: str,
    entries: Iterable[str],
    labels: Mapping[str, str] | None = None,
) -> ApiKey:
    """Replace the allowlist (and its labels) of the company's key; empty allows any address.
    A revoked key's allowlist cannot change."""
    allowlist = parse_allowlist(entries)
    kept = _labels_for(allowlist, labels or {})
    async with platform.store.write() as tx:
        key = await tx.get_api_key(key_id)
        if key is None or key.company_id != company_id:
            raise NotFound(f"no key {key_id}")
        if key.revoked_at is not None:
            raise Conflict(f"key {key_id} is revoked")
        await tx.set_api_key_allowlist(key_id, allowlist, kept)
        changed = await tx.get_api_key(key_id)
    assert changed is not None  # it was there a moment ago in this transaction
    return changed


def key_state(key: ApiKey, now: int) -> str:
    """``active``, ``expiring`` (rotated: in its grace period, until ``expires_at``),
    ``expired`` or ``revoked``."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is None:
        return "active"
    return "expiring" if now < key.expires_at else "expired"


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


def client_of(client_ip: str | None) -> str:
    """Whom failed authentications are counted against: the address, an IPv6 client by its
    /64 (one host usually holds a whole /64, so counting single addresses would let it rotate
    through 2^64 of them), an IPv4-mapped address as the IPv4 one."""
    if client_ip is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureBuckets:
    """Failures per client (any string), a token bucket each, counted in this process's memory:
    ``per_minute`` failures, refilled at ``per_minute`` a minute; at most ``size`` clients are
    kept, the least recently used going first (an evicted bucket starts full again)."""

    def __init__(self, per_minute: int, size: int) -> None:
        self.per_minute = per_minute
        self.size = size
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Client → (tokens left, when they were counted); absent means a full bucket."""

    def _tokens(self, client: str, now: int) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            return float(self.per_minute)
        tokens, at = bucket
        refilled = tokens + max(0, now - at) * self.per_minute / WINDOW_MS
        return min(float(self.per_minute), refilled)

    def wait_for(self, client: str, now: int) -> int | None:
        """Seconds until ``client`` may try again, or ``None`` when it may now."""
        tokens = self._tokens(client, now)
        if tokens >= 1:
            return None
        self._buckets.move_to_end(client)  # a client that keeps trying stays tracked
        wait_ms = (1 - tokens) * WINDOW_MS / self.per_minute
        return max(1, -(-int(wait_ms) // 1000))

    def failed(self, client: str, now: int) -> None:
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.size:
            self._buckets.popitem(last=False)

    def forget(self, client: str) -> None:
        self._buckets.pop(client, None)


class FailedAuthLimiter:
    """Failed authentications per client address, counted in this process's memory.

    Missing, unknown, revoked and expired keys cost nothing in the database when they come
    too often: each client address (see ``client_of``) has a token bucket of ``per_minute``
    failures, refilled at ``per_minute`` a minute, and while it is empty the address is
    answered 429 before the database is asked anything. A key that authenticated in this
    process before is trusted to try even then (it is still checked and counted in the
    database as usual), so an attacker behind a shared address (a NAT, a proxy) cannot lock
    out the keys in use there; only keys this process has not seen wait out the block.

    Memory is bounded whatever the spray of addresses: at most ``addresses`` buckets and
    ``trusted`` key hashes are kept, the least recently used going first (an evicted bucket
    starts full again, which costs an attacker those addresses' worth of traffic).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        addresses: int = TRACKED_ADDRESSES,
        trusted: int = TRUSTED_KEYS,
    ) -> None:
        self.per_minute = per_minute
        self.max_trusted = trusted
        self._buckets = FailureBuckets(per_minute, addresses)
        self._trusted: OrderedDict[str, None] = OrderedDict()

    def blocked_for(self, client_ip: str | None, key_hash: str | None, now: int) -> int | None:
        """Seconds until the address may try again, or ``None`` when this request may go on."""
        if key_hash is not None and key_hash in self._trusted:
            return None
        return self._buckets.wait_for(client_of(client_ip), now)

    def failed(self, client_ip: str | None, key_hash: str | None, now: int) -> None:
        """Count a failed authentication against the address (and stop trusting the key)."""
        if key_hash is not None:
            self._trusted.pop(key_hash, None)
        self._buckets.failed(client_of(client_ip), now)

    def succeeded(self, key_hash: str) -> None:
        """Remember a key that authenticated: it may try even from a blocked address."""
        self._trusted[key_hash] = None
        self._trusted.move_to_end(key_hash)
        while len(self._trusted) > self.max_trusted:
            self._trusted.popitem(last=False)


async def authenticate(
    platform: Platform,
    raw_key: str | None,
    client_ip: str | None = None,
    failures: FailedAuthLimiter | None = None,
) -> Caller:
    """Find the key and count the request against its limit.

    Raises ``AuthError``, or ``RateLimited`` when ``failures`` says the address failed too
    often (answered before the database is asked). Every request with a known key counts,
    refused ones included (revoked and expired keys too), so a client hammering with a bad
    address or scope is throttled too. ``admit`` then applies the other checks.
    """
    now = platform.now()
    key_hash = hash_key(raw_key) if raw_key else None
    if failures is not None:
        wait = failures.blocked_for(client_ip, key_hash, now)
        if wait is not None:
            AUTH_FAILURES.labels("throttled").inc()
            raise RateLimited("too many failed authentications from this address", retry_after=wait)
    if key_hash is None:
        if failures is not None:
            failures.failed(client_ip, None, now)
        AUTH_FAILURES.labels("refused").inc()
        raise AuthError("send your API key in the x-api-key header", code="MISSING_API_KEY")
    window_start = now - now % WINDOW_MS
    counted = await platform.store.count_key_request(key_hash, window_start)
    if counted is None or not counted[0].usable_at(now):
        if failures is not None:
            failures.failed(client_ip, key_hash, now)
        AUTH_FAILURES.labels("refused").inc()
        raise AuthError("the API key is invalid, revoked or expired")
    if failures is not None:
        failures.succeeded(key_hash)
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
    """SPEC §2's ladder after authentication, as the public reference checks it: scope (403
    ``INSUFFICIENT_SCOPE``), then address (403 ``IP_NOT_ALLOWED``), then rate (429)."""
    if scope not in caller.key.scopes:
        raise AccessDenied(f"this key lacks the {scope} scope")
    if not ip_allowed(caller.key.ip_allowlist, client_ip):
        raise AccessDenied(
            f"requests from {client_ip} are not allowed for this key", code="IP_NOT_ALLOWED"
        )
    if caller.rate.exceeded:
        raise RateLimited(
            f"rate limit of {caller.rate.limit} requests per minute exceeded",
            retry_after=caller.rate.reset_seconds,
        )
