"""Identifiers: a type prefix and random base62 text (``cust_4kT…``)."""

from __future__ import annotations

import secrets
import string

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_id(prefix: str, length: int = 20) -> str:
    """A fresh id such as ``cust_…``; 20 base62 characters carry 119 bits."""
    return f"{prefix}_{random_base62(length)}"
