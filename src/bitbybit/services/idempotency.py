"""``Idempotency-Key``: the same key and body within 24 h replays the first response.

The key is claimed at the start of the operation's own transaction, so a concurrent duplicate
waits on the key's row (PostgreSQL) or on the write lock (SQLite) and then replays; two objects
are never created. Only successful responses are kept: a refused request may be retried with the
same key once its cause is fixed.

Expired responses are deleted by ``pruning``, which ``serve`` and ``worker`` run: at start, then
every few minutes. A request in progress is never pruned: its row is written in the request's
own transaction, invisible to the pruner (PostgreSQL) or behind the same write lock (SQLite)
until it commits, and it is not expired then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from bitbybit.errors import Conflict, IntegrityViolation, ValidationFailed
from bitbybit.models import StoredResponse, Tenant
from bitbybit.runtime import Platform
from bitbybit.store import Tx

T = TypeVar("T")
TTL_MS = 24 * 60 * 60 * 1000
MAX_KEY_LENGTH = 255
PRUNE_MARGIN_MS = 60 * 60 * 1000
"""Responses are deleted an hour after they expire, so that a process whose clock runs behind
the pruner's never finds a response it would still replay gone."""
PRUNE_BATCH = 500
PRUNE_EVERY_SECONDS = 300.0
"""Between pruning passes, ± 20 % so that processes started together spread out."""
Render = Callable[[T], tuple[int, bytes]]

log = structlog.get_logger("bitbybit.idempotency")


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


async def prune_expired(platform: Platform, *, batch: int = PRUNE_BATCH) -> int:
    """Delete the responses that expired over ``PRUNE_MARGIN_MS`` ago; returns how many.

    Batches of ``batch`` rows, each its own transaction, so a large backlog never holds the write
    lock for long and requests run between batches. Rows that expire during the pass wait for
    the next one. Any number of processes may prune at once: they delete each row once.
    """
    created_before = platform.now() - TTL_MS - PRUNE_MARGIN_MS
    total = 0
    while True:
        async with platform.store.write() as tx:
            deleted = await tx.prune_stored_responses(created_before, batch)
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let waiting requests have the database between batches


async def _keep_pruning(platform: Platform, every: float, rng: random.Random) -> None:
    while True:
        try:
            pruned = await prune_expired(platform)
        except Exception as error:  # the database may be down: try again next time
            log.warning("idempotency_prune_failed", error=f"{type(error).__name__}: {error}")
        else:
            if pruned:
                log.info("idempotency_pruned", rows=pruned)
        await asyncio.sleep(every * rng.uniform(0.8, 1.2))


@contextlib.asynccontextmanager
async def pruning(platform: Platform, *, every: float = PRUNE_EVERY_SECONDS) -> AsyncIterator[None]:
    """Prune expired responses in the background for the block: at once, then every ``every``
    seconds (± 20 %). Leaving the block stops it; a pass cut short rolls back its batch, which
    the next pass (of this or another process) deletes."""
    rng = random.Random()  # noqa: S311  # spreading passes out, not cryptography
    task = asyncio.create_task(_keep_pruning(platform, every, rng), name="idempotency-pruning")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])  # not ``await task``: that would swallow our own cancellation
