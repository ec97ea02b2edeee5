"""Time as the server sees it: integer milliseconds since the epoch, formatted ISO-8601 UTC."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

Clock = Callable[[], int]
"""Returns the current time in milliseconds since the epoch; injectable for tests."""


def system_clock() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``2024-01-15T10:30:00.000Z`` for a millisecond timestamp."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=1024)
def _second(seconds: int) -> str:
    """The whole second's part of ``iso``: a write formats the same instant several times."""
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}"


def parse_iso(text: str) -> int:
    """Milliseconds for an ISO-8601 timestamp; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
