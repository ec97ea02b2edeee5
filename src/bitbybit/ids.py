"""Identifiers: a type prefix and random base62 text (``cust_4kT…``)."""

from __future__ import annotations

import os
import string

BASE62 = string.digits + string.ascii_letters
_USABLE = 62 * 4  # bytes below 248 map evenly onto 62 characters; the rest are dropped
_TABLE = bytes(BASE62[b % 62].encode()[0] if b < _USABLE else 0 for b in range(256))
_DROP = bytes(range(_USABLE, 256))


def random_base62(length: int) -> str:
    """``length`` uniformly random base62 characters from the OS's CSPRNG."""
    text = b""
    while len(text) < length:
        text += os.urandom(length + 8).translate(_TABLE, _DROP)
    return text[:length].decode("ascii")


def new_id(prefix: str, length: int = 20) -> str:
    """A fresh id such as ``cust_…``; 20 base62 characters carry 119 bits."""
    return f"{prefix}_{random_base62(length)}"
