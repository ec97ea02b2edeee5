"""Signing: the exact bytes and headers the server sends, shared by sender and receiver.

``v1 = hex(HMAC-SHA256(key=secret as UTF-8 text, msg=b"{t}." + raw body))``. The secret is the
full text the dashboard shows, ``whsec_`` prefix included; nothing is base64-decoded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = [
    "EVENT_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "USER_AGENT",
    "compute_signature",
    "secret_list",
    "sign",
    "webhook_headers",
]

ID_HEADER = "X-BitByBit-Webhook-Id"
EVENT_HEADER = "X-BitByBit-Webhook-Event"
TIMESTAMP_HEADER = "X-BitByBit-Webhook-Timestamp"
SIGNATURE_HEADER = "X-BitByBit-Webhook-Signature"
USER_AGENT = "BitByBit-Webhooks/1.0"


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret:
        raise ValueError("a signing secret must be non-empty text")
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("a signing secret must be valid Unicode text") from exc


def _check_timestamp(timestamp: int) -> None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative int (unix seconds)")


def secret_list(secret: str | Sequence[str]) -> list[str]:
    """Normalise one secret or several to a list; order is kept (newest first by convention)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one signing secret is required")
    return secrets


def compute_signature(body: bytes, secret: str, timestamp: int) -> str:
    """Return the lowercase hex ``v1`` signature of ``body`` at ``timestamp``."""
    _check_timestamp(timestamp)
    return hmac.new(_key(secret), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | Sequence[str], timestamp: int) -> str:
    """Return the signature header value ``t=<ts>,v1=<hex>[,v1=<hex>…]``, one ``v1`` per secret."""
    _check_timestamp(timestamp)
    message = b"%d." % timestamp + body
    parts = [f"t={timestamp}"]
    for one in secret_list(secret):
        parts.append("v1=" + hmac.new(_key(one), message, hashlib.sha256).hexdigest())
    return ",".join(parts)


def _header_text(name: str, value: str) -> str:
    if not value or not value.isascii() or not value.isprintable():
        raise ValueError(f"{name} must be non-empty printable ASCII, got {value!r}")
    return value


def webhook_headers(
    event_id: str,
    event_type: str,
    body: bytes,
    secrets: str | Sequence[str],
    timestamp: int,
) -> dict[str, str]:
    """Return every header of one delivery attempt, in wire order."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: _header_text("event id", event_id),
        EVENT_HEADER: _header_text("event type", event_type),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(body, secrets, timestamp),
    }
