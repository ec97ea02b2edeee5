"""Identifiers: a type prefix, the creation time and random text (``cust_0mh5k2x9a4kT…``).

The time comes first, so ids made close together sort together: a database index over them
grows at its end and a batch of recent rows shares a few pages, instead of every insert and
every lookup landing on a random page of the index.
"""

from __future__ import annotations

import os
import string
import threading
import time
from functools import lru_cache

BASE62 = string.digits + string.ascii_letters
_USABLE = 62 * 4  # bytes below 248 map evenly onto 62 characters; the rest are dropped
_TABLE = bytes(BASE62[b % 62].encode()[0] if b < _USABLE else 0 for b in range(256))
_DROP = bytes(range(_USABLE, 256))


_POOL_BYTES = 4096
"""Random bytes drawn from the OS at a time: one system call serves some 300 ids."""


class _Pool:
    """Random base62 characters drawn ahead from the OS's CSPRNG and handed out once each.
    A forked child starts empty, so it never hands out what its parent also will; threads
    take their turn."""

    def __init__(self) -> None:
        self.text = b""
        self.lock = threading.Lock()

    def take(self, length: int) -> str:
        with self.lock:
            while len(self.text) < length:
                self.text += os.urandom(_POOL_BYTES).translate(_TABLE, _DROP)
            taken, self.text = self.text[:length], self.text[length:]
        return taken.decode("ascii")

    def forget(self) -> None:
        self.text = b""


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


def random_base62(length: int) -> str:
    """``length`` uniformly random base62 characters from the OS's CSPRNG."""
    return _pool.take(length)


TIME_DIGITS = string.digits + string.ascii_lowercase
"""Base 36 in ASCII order, which every collation sorts the same way."""
TIME_LENGTH = 9
"""Milliseconds since 1970 in 9 base-36 digits: good until the year 5188."""


@lru_cache(maxsize=64)
def time_prefix(now_ms: int) -> str:
    """``now_ms`` as ``TIME_LENGTH`` base-36 digits, so text order is time order."""
    digits = []
    for _ in range(TIME_LENGTH):
        now_ms, digit = divmod(now_ms, 36)
        digits.append(TIME_DIGITS[digit])
    return "".join(reversed(digits))


def new_id(prefix: str, length: int = 20) -> str:
    """A fresh id such as ``cust_…``: the time in 9 characters, then ``length - 9`` random
    base62 characters (65 bits for the default 20)."""
    now_ms = time.time_ns() // 1_000_000
    return f"{prefix}_{time_prefix(now_ms)}{random_base62(length - TIME_LENGTH)}"
