"""Remember which webhook ids were handled, so at-least-once delivery is processed once.

Key on ``X-BitByBit-Webhook-Id`` (``Event.id``): it is the same for every endpoint and every retry
of one event. Call ``seen_or_mark`` before you act; if your handler then fails, call ``forget`` so
the sender's retry is processed instead of skipped::

    if store.seen_or_mark(event.id):
        return 200          # a duplicate: already handled (or being handled)
    try:
        handle(event)
    except Exception:
        store.forget(event.id)
        raise

Three stores answer the same :class:`IdempotencyStore` protocol: :class:`MemoryStore` (one
process), :class:`SQLiteStore` (one machine, many processes) and :class:`RedisStore` (many
machines). Each ``seen_or_mark`` is atomic: of two concurrent calls with one id, exactly one
returns ``False``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyStore",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
]

DEFAULT_TTL = 86_400
"""Seconds an id is remembered: 24 h, longer than the sender's whole retry schedule."""


def _check(event_id: str, ttl_seconds: int) -> None:
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event_id must be a non-empty string")
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool) or ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be a positive int")


@runtime_checkable
class IdempotencyStore(Protocol):
    """Where handled webhook ids are remembered."""

    def seen_or_mark(self, event_id: str, ttl_seconds: int = DEFAULT_TTL) -> bool:
        """Atomically mark ``event_id``; return ``True`` if it was already marked and unexpired."""
        ...

    def forget(self, event_id: str) -> None:
        """Unmark ``event_id`` (processing failed, so the retry must run)."""
        ...


class MemoryStore:
    """A thread-safe in-process store; ids expire after their TTL. Lost on restart."""

    _SWEEP_EVERY = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = clock() + self._SWEEP_EVERY

    def seen_or_mark(self, event_id: str, ttl_seconds: int = DEFAULT_TTL) -> bool:
        """Atomically mark ``event_id``; return ``True`` if it was already marked and unexpired."""
        _check(event_id, ttl_seconds)
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
                self._next_sweep = now + self._SWEEP_EVERY
            expires = self._expiry.get(event_id)
            if expires is not None and expires > now:
                return True
            self._expiry[event_id] = now + ttl_seconds
            return False

    def forget(self, event_id: str) -> None:
        """Unmark ``event_id``."""
        with self._lock:
            self._expiry.pop(event_id, None)

    def __len__(self) -> int:
        """Number of ids held, expired ones included until the next sweep."""
        return len(self._expiry)


class SQLiteStore:
    """A store in a SQLite file, shared safely by threads and processes on one machine.

    Uses one table (``bitbybit_webhook_ids``); expiry is wall-clock time, checked on each call,
    and expired rows are swept from time to time. ``":memory:"`` works for tests.
    """

    _SWEEP_EVERY = 1000  # calls between deletes of expired rows

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._calls = 0
        self._db = sqlite3.connect(
            os.fspath(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if os.fspath(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS bitbybit_webhook_ids ("
            " event_id TEXT PRIMARY KEY NOT NULL,"
            " expires_at REAL NOT NULL"
            ") WITHOUT ROWID"
        )

    def seen_or_mark(self, event_id: str, ttl_seconds: int = DEFAULT_TTL) -> bool:
        """Atomically mark ``event_id``; return ``True`` if it was already marked and unexpired."""
        _check(event_id, ttl_seconds)
        now = self._clock()
        with self._lock:
            # one statement: insert, or take over an expired row; no change means "seen"
            cursor = self._db.execute(
                "INSERT INTO bitbybit_webhook_ids (event_id, expires_at) VALUES (?, ?)"
                " ON CONFLICT (event_id) DO UPDATE SET expires_at = excluded.expires_at"
                " WHERE bitbybit_webhook_ids.expires_at <= ?",
                (event_id, now + ttl_seconds, now),
            )
            seen = cursor.rowcount == 0
            self._calls += 1
            if self._calls % self._SWEEP_EVERY == 0:
                self._db.execute("DELETE FROM bitbybit_webhook_ids WHERE expires_at <= ?", (now,))
        return seen

    def forget(self, event_id: str) -> None:
        """Unmark ``event_id``."""
        with self._lock:
            self._db.execute("DELETE FROM bitbybit_webhook_ids WHERE event_id = ?", (event_id,))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClient(Protocol):
    """The two commands :class:`RedisStore` uses, spelt as redis-py (and compatibles) spell them."""

    def set(self, name: str, value: str, *, ex: int, nx: bool) -> Any:
        """``SET name value EX ex NX``; truthy if the key was set."""
        ...

    def delete(self, *names: str) -> Any:
        """``DEL names…``."""
        ...


class RedisStore:
    """A store in Redis (``SET key 1 NX EX ttl``), shared by every process that reaches it.

    ``client`` is a synchronous redis-py ``Redis`` (or compatible) client; this module never
    imports redis itself. Keys are ``prefix + event_id``.
    """

    def __init__(self, client: RedisClient, *, prefix: str = "bitbybit:webhook:") -> None:
        self._client = client
        self.prefix = prefix

    def seen_or_mark(self, event_id: str, ttl_seconds: int = DEFAULT_TTL) -> bool:
        """Atomically mark ``event_id``; return ``True`` if it was already marked and unexpired."""
        _check(event_id, ttl_seconds)
        return not self._client.set(self.prefix + event_id, "1", ex=ttl_seconds, nx=True)

    def forget(self, event_id: str) -> None:
        """Unmark ``event_id``."""
        self._client.delete(self.prefix + event_id)
