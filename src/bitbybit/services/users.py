"""Dashboard users: accounts with argon2id password hashes, sign-in slowed after failures, and
server-side sessions that end on sign-out, after idle time or at a fixed age (docs/dashboard.md).

The browser holds a random session token in a cookie; the database keeps only its SHA-256, so a
copy of the database (or of its backups) signs nobody in. Each session has its own CSRF token,
which every form and htmx request must send back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bitbybit.errors import AuthError, Conflict, NotFound, RateLimited, ValidationFailed
from bitbybit.ids import new_id, random_base62
from bitbybit.models import DashboardSession, Mode, Role, User
from bitbybit.runtime import Platform
from bitbybit.services.access import TRACKED_ADDRESSES, FailureBuckets, client_of

ROLES: Final[tuple[str, ...]] = get_args(Role)
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024
"""Longer passwords only cost hashing time (argon2 takes any length; a megabyte is a DoS)."""
MAX_EMAIL: Final = 254
TOKEN_CHARS: Final = 43  # ≥ 256 random bits
SESSION_PRUNE_BATCH: Final = 100

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH: Final = _hasher.hash("not a password anyone has: equalises sign-in timing")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def normal_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > MAX_EMAIL or " " in email:
        raise ValidationFailed.field("email", "enter an email address such as ana@example.com")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed.field(
            "password", f"a password needs at least {MIN_PASSWORD} characters"
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationFailed.field("password", f"at most {MAX_PASSWORD} characters")


async def hash_password(password: str) -> str:
    """argon2id, off the event loop (it takes tens of milliseconds on purpose)."""
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def create_user(
    platform: Platform, company_id: str, email: str, password: str, role: str = "admin"
) -> User:
    email = normal_email(email)
    check_password(password)
    if role not in ROLES:
        raise ValidationFailed.field("role", f"use one of: {', '.join(ROLES)}")
    now = platform.now()
    user = User(new_id("user"), company_id, email, role, now, now)  # type: ignore[arg-type]  # checked against ROLES above
    password_hash = await hash_password(password)
    async with platform.store.write() as tx:
        if await tx.get_company(company_id) is None:
            raise NotFound(f"no company {company_id}")
        if await tx.find_user(email) is not None:
            raise Conflict(f"a user with the email {email} exists already")
        await tx.insert_user(user, password_hash)
    return user


async def list_users(platform: Platform, company_id: str) -> list[User]:
    async with platform.store.read() as tx:
        return await tx.list_users(company_id)


async def set_password(platform: Platform, email: str, password: str) -> User:
    """A new password for the user, and every session of theirs ended."""
    check_password(password)
    password_hash = await hash_password(password)
    async with platform.store.write() as tx:
        found = await tx.find_user(normal_email(email))
        if found is None:
            raise NotFound(f"no user {email}")
        user, _ = found
        await tx.set_password_hash(user.id, password_hash, platform.now())
        await tx.revoke_user_sessions(user.id, platform.now())
    return user


class LoginThrottle:
    """Failed sign-ins slowed per account and per client address, in this process's memory:
    ``per_minute`` failures each, then 429 until a token comes back (ADR in docs/dashboard.md).
    A success clears the account's count, not the address's."""

    def __init__(self, per_minute: int) -> None:
        self.accounts = FailureBuckets(per_minute, TRACKED_ADDRESSES)
        self.addresses = FailureBuckets(per_minute, TRACKED_ADDRESSES)

    def wait_for(self, email: str, client_ip: str | None, now: int) -> int | None:
        waits = [
            wait
            for wait in (
                self.accounts.wait_for(email, now),
                self.addresses.wait_for(client_of(client_ip), now),
            )
            if wait is not None
        ]
        return max(waits) if waits else None

    def failed(self, email: str, client_ip: str | None, now: int) -> None:
        self.accounts.failed(email, now)
        self.addresses.failed(client_of(client_ip), now)

    def succeeded(self, email: str) -> None:
        self.accounts.forget(email)


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str
    """The cookie's value, given to the browser once; the database keeps its hash."""
    session: DashboardSession


async def sign_in(
    platform: Platform,
    throttle: LoginThrottle,
    email: str,
    password: str,
    client_ip: str | None,
) -> SignedIn:
    """A new session for the user with this email and password, or ``AuthError`` (which never
    says which of the two was wrong), or ``RateLimited`` after too many failures."""
    now = platform.now()
    email = email.strip().lower()[:MAX_EMAIL]
    wait = throttle.wait_for(email, client_ip, now)
    if wait is not None:
        raise RateLimited(f"too many failed sign-ins: try again in {wait} s", wait)
    async with platform.store.read() as tx:
        found = await tx.find_user(email)
    # A missing user costs the same hashing time as a wrong password.
    ok = await _verify(found[1] if found else _DUMMY_HASH, password[:MAX_PASSWORD])
    if found is None or not ok:
        throttle.failed(email, client_ip, now)
        raise AuthError("the email or the password is not right")
    throttle.succeeded(email)
    user, _ = found
    token = random_base62(TOKEN_CHARS)
    session = DashboardSession(
        user=user,
        csrf_token=random_base62(TOKEN_CHARS),
        mode="live",
        created_at=now,
        last_seen_at=now,
        expires_at=now + round(platform.settings.session_max_age * 1000),
    )
    idle_before = now - round(platform.settings.session_idle * 1000)
    async with platform.store.write() as tx:
        await tx.insert_session(token_hash(token), session)
        # Ended sessions go a bounded batch at each sign-in: no background task needed.
        await tx.prune_sessions(now, idle_before, SESSION_PRUNE_BATCH)
    return SignedIn(token, session)


TOUCH_EVERY_MS: Final = 60_000
"""A session's last use is written at most once a minute (not on every page and fragment)."""


async def session_of(platform: Platform, token: str | None) -> DashboardSession | None:
    """The live session of this cookie value, its use noted; ``None`` when there is none or it
    ended (signed out, idle too long, too old)."""
    if not token or len(token) > 100:
        return None
    hashed = token_hash(token)
    async with platform.store.read() as tx:
        session = await tx.get_session(hashed)
    if session is None:
        return None
    now = platform.now()
    idle_ms = round(platform.settings.session_idle * 1000)
    if now >= session.expires_at or now - session.last_seen_at >= idle_ms:
        return None
    if now - session.last_seen_at >= TOUCH_EVERY_MS:
        async with platform.store.write(durable=False) as tx:
            await tx.touch_session(hashed, now)
    return session


def csrf_ok(session: DashboardSession, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(
        session.csrf_token.encode(), sent.encode("utf-8", "surrogatepass")
    )


async def switch_mode(platform: Platform, token: str, mode: Mode) -> None:
    async with platform.store.write() as tx:
        await tx.touch_session(token_hash(token), platform.now(), mode)


async def sign_out(platform: Platform, token: str | None) -> None:
    if not token or len(token) > 100:
        return
    async with platform.store.write() as tx:
        await tx.revoke_session(token_hash(token), platform.now())
