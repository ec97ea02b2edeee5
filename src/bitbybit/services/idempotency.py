"""``Idempotency-Key``: the same key and body within 24 h replays the first response.

The key is claimed at the start of the operation's own transaction, so a concurrent duplicate
waits on the key's row (PostgreSQL) or on the write lock (SQLite) and then replays; two objects
are never created. Only successful responses are kept: a refused request may be retried with the
same key once its cause is fixed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bitbybit.errors import Conflict, IntegrityViolation, ValidationFailed
from bitbybit.models import StoredResponse, Tenant
from bitbybit.services import Platform
from bitbybit.store import Tx

T = TypeVar("T")
TTL_MS = 24 * 60 * 60 * 1000
MAX_KEY_LENGTH = 255
Render = Callable[[T], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int
    body: bytes
    replayed: bool


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _replay(stored: StoredResponse, fingerprint: str) -> Outcome:
    if stored.request_hash != fingerprint:
        raise Conflict("this Idempotency-Key was already used with a different request")
    if stored.status_code == 0:
        raise Conflict("a request with this Idempotency-Key is still in progress")
    return Outcome(stored.status_code, stored.body, replayed=True)


async def run_once(
    platform: Platform,
    tenant: Tenant,
    key: str | None,
    fingerprint: str,
    operation: Callable[[Tx], Awaitable[T]],
    render: Render[T],
) -> Outcome:
    """Run ``operation`` in one write transaction, at most once per idempotency key."""
    if key is None:
        async with platform.store.write() as tx:
            status, body = render(await operation(tx))
        return Outcome(status, body, replayed=False)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationFailed.field(
            "Idempotency-Key", f"must be 1–{MAX_KEY_LENGTH} printable ASCII characters"
        )
    now = platform.now()
    try:
        async with platform.store.write() as tx:
            stored = await tx.get_stored_response(tenant, key)
            if stored is not None and now - stored.created_at < TTL_MS:
                return _replay(stored, fingerprint)
            if stored is not None:
                await tx.delete_stored_response(tenant, key)
            await tx.store_response(tenant, key, StoredResponse(fingerprint, 0, b"", now))
            status, body = render(await operation(tx))
            await tx.finish_stored_response(tenant, key, status, body)
    except IntegrityViolation:
        # A concurrent request with the same key committed first: answer as it did.
        async with platform.store.read() as tx:
            stored = await tx.get_stored_response(tenant, key)
        if stored is None:
            raise
        return _replay(stored, fingerprint)
    return Outcome(status, body, replayed=False)
