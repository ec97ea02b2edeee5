"""Verify one delivery: headers, timestamp window, signature, then the JSON body.

Every input that is not a valid, fresh, correctly signed delivery raises a subclass of
:class:`~bitbybit.webhooks.errors.WebhookVerificationError`, whatever its type or size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bitbybit.webhooks.body import MAX_SAFE_INTEGER
from bitbybit.webhooks.errors import (
    BadPayload,
    BadSignature,
    ConfigurationError,
    MalformedHeader,
    MissingHeader,
    TimestampOutOfTolerance,
)
from bitbybit.webhooks.models import EventData, parse_event
from bitbybit.webhooks.signing import (
    EVENT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

__all__ = ["DEFAULT_TOLERANCE", "MAX_HEADER_LENGTH", "Event", "Verifier", "verify"]

DEFAULT_TOLERANCE = 300
MAX_HEADER_LENGTH = 8192
"""Longest header value accepted (characters); longer values raise ``MalformedHeader``."""

_HEADERS = (ID_HEADER, EVENT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
_WANTED = {name.lower(): name for name in _HEADERS}
# plain ASCII decimal: no sign, no zero padding, no "_" or Unicode digits as int() would allow
_TIMESTAMP = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,255}\Z")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,7}\Z")
_SCHEME = re.compile(r"[a-z][a-z0-9]{0,15}\Z")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class Event:
    """One verified delivery.

    ``timestamp`` is the (timezone-aware, UTC) time of this attempt, ``payload`` the parsed JSON
    body, ``data`` its typed model (``GenericPayload`` for types this library does not know).
    """

    id: str
    type: str
    timestamp: datetime
    payload: dict[str, Any]
    data: EventData
    raw_body: bytes = field(repr=False)


def _secret_keys(secret: object) -> tuple[bytes, ...]:
    if isinstance(secret, str):
        secrets: Sequence[object] = [secret]
    elif isinstance(secret, Sequence) and not isinstance(secret, bytes | bytearray):
        secrets = secret
    else:
        raise ConfigurationError(
            "secret must be the signing secret text (whsec_…) or a list of them, "
            f"not {type(secret).__name__}"
        )
    if not secrets:
        raise ConfigurationError("at least one signing secret is required")
    keys = []
    for one in secrets:
        if not isinstance(one, str) or not one:
            raise ConfigurationError("every signing secret must be non-empty text (whsec_…)")
        try:
            keys.append(one.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ConfigurationError("a signing secret is not valid Unicode text") from exc
    return tuple(keys)


def _tolerance(tolerance: object) -> float:
    if (
        not isinstance(tolerance, int | float)
        or isinstance(tolerance, bool)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ConfigurationError(f"tolerance must be non-negative seconds, not {tolerance!r}")
    return float(tolerance)


def _now_seconds(now: object) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigurationError("now must be a timezone-aware datetime")
        return now.timestamp()
    if isinstance(now, int | float) and not isinstance(now, bool) and math.isfinite(now):
        return float(now)
    raise ConfigurationError(f"now must be an aware datetime or unix seconds, not {now!r}")


def _text(name: str, value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
        if len(value) > MAX_HEADER_LENGTH:
            raise MalformedHeader(name, f"longer than {MAX_HEADER_LENGTH} bytes")
        if not value.isascii():
            raise MalformedHeader(name, "not ASCII")
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise MalformedHeader(name, f"value must be str or bytes, not {type(value).__name__}")
    if len(value) > MAX_HEADER_LENGTH:
        raise MalformedHeader(name, f"longer than {MAX_HEADER_LENGTH} characters")
    if not value.isascii():
        raise MalformedHeader(name, "not ASCII")
    return value.strip(_OWS)


def _key_name(key: object) -> str | None:
    if isinstance(key, str):
        return key.lower() if len(key) <= 64 else None
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("latin-1").lower() if len(key) <= 64 else None
    return None


def _collect(headers: object) -> dict[str, str]:
    """Find our four headers, case-insensitively, in any common headers container."""
    if headers is None:
        raise MissingHeader(ID_HEADER, "no headers were given")
    items = getattr(headers, "items", None)
    if isinstance(headers, list | tuple):
        pairs: Iterable[Any] = headers
    elif not callable(items):
        return _collect_by_get(headers)
    found: dict[str, str] = {}
    try:
        if callable(items):  # Mapping; Starlette, Werkzeug, Django headers; Message; multidicts
            pairs = items()
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise MalformedHeader("headers", "expected (name, value) pairs")
            name = _WANTED.get(_key_name(pair[0]) or "")
            if name is None:
                continue
            value = _text(name, pair[1])
            if found.setdefault(name, value) != value:
                raise MalformedHeader(name, "sent more than once with different values")
    except MalformedHeader:
        raise
    except Exception as exc:  # a custom headers object failed while we read it
        raise MalformedHeader("headers", f"could not read headers: {type(exc).__name__}") from exc
    return found


def _collect_by_get(headers: object) -> dict[str, str]:
    get = getattr(headers, "get", None)
    if not callable(get):
        raise MalformedHeader(
            "headers", f"{type(headers).__name__} is not a mapping, .get object or list of pairs"
        )
    found: dict[str, str] = {}
    for lower, name in _WANTED.items():
        try:
            value = get(name)
            if value is None:
                value = get(lower)
        except Exception as exc:  # a custom headers object failed while we read it
            raise MalformedHeader(name, f"could not read header: {type(exc).__name__}") from exc
        if value is not None:
            found[name] = _text(name, value)
    return found


def _parse_signature(value: str) -> tuple[str, list[str]]:
    t: str | None = None
    v1: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip(_OWS).partition("=")
        if not sep or not _SCHEME.match(key):
            raise MalformedHeader(SIGNATURE_HEADER, "expected t=<timestamp>,v1=<hex>")
        if key == "t":
            if t is not None:
                raise MalformedHeader(SIGNATURE_HEADER, "t appears more than once")
            if not _TIMESTAMP.match(item):
                raise MalformedHeader(SIGNATURE_HEADER, "t is not plain decimal unix seconds")
            t = item
        elif key == "v1":
            if not _HEX64.match(item):
                raise MalformedHeader(SIGNATURE_HEADER, "v1 is not 64 lowercase hex digits")
            v1.append(item)
        # other schemes (v0, v2, …) are ignored so a future scheme can be sent beside v1
    if t is None:
        raise MalformedHeader(SIGNATURE_HEADER, "no t= timestamp")
    if not v1:
        raise MalformedHeader(SIGNATURE_HEADER, "no v1= signature")
    return t, v1


def _payload(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadPayload("body is not UTF-8") from exc
    except (ValueError, OverflowError, RecursionError) as exc:
        raise BadPayload(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadPayload("body is not a JSON object")
    return payload


def _parse_int(text: str) -> int | float:
    """Integers as JavaScript reads them: beyond 2**53 - 1 they were sent as (whole) floats."""
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _as_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadPayload("body text is not valid Unicode") from exc
    raise BadPayload(f"body must be the raw request bytes, not {type(body).__name__}")


class Verifier:
    """Checks deliveries against fixed secrets; build once, call :meth:`verify` per request.

    Secrets are the full text the dashboard shows (``whsec_…``), used as UTF-8 bytes verbatim.
    Give several during a rotation: a delivery passes if any ``v1`` matches any secret.
    """

    __slots__ = ("_keys", "tolerance")

    def __init__(self, secret: str | Sequence[str], tolerance: float = DEFAULT_TOLERANCE) -> None:
        self._keys = _secret_keys(secret)
        self.tolerance = _tolerance(tolerance)

    def verify(
        self,
        body: bytes,
        headers: object,
        now: datetime | float | None = None,
    ) -> Event:
        """Verify one delivery and return its :class:`Event`."""
        now_s = _now_seconds(now)
        raw = _as_bytes(body)
        found = _collect(headers)
        for name in _HEADERS:
            if name not in found:
                raise MissingHeader(name)
        event_id = found[ID_HEADER]
        if not _EVENT_ID.match(event_id):
            raise MalformedHeader(ID_HEADER, "not a visible-ASCII id of 1 to 255 characters")
        event_type = found[EVENT_HEADER]
        if not _EVENT_TYPE.match(event_type):
            raise MalformedHeader(EVENT_HEADER, "not a dotted event type")
        ts_text = found[TIMESTAMP_HEADER]
        if not _TIMESTAMP.match(ts_text):
            raise MalformedHeader(TIMESTAMP_HEADER, "not plain decimal unix seconds")
        t, candidates = _parse_signature(found[SIGNATURE_HEADER])
        if t != ts_text:
            raise MalformedHeader(SIGNATURE_HEADER, f"t={t} differs from {TIMESTAMP_HEADER}")
        ts = int(t)
        if abs(now_s - ts) > self.tolerance:
            raise TimestampOutOfTolerance(ts, now_s, self.tolerance)
        message = t.encode("ascii") + b"." + raw
        expected = [hmac.new(key, message, hashlib.sha256).hexdigest() for key in self._keys]
        if not any(hmac.compare_digest(e, c) for e in expected for c in candidates):
            raise BadSignature("no v1 signature matches the body under any configured secret")
        payload = _payload(raw)
        return Event(
            id=event_id,
            type=event_type,
            timestamp=_aware(ts),
            payload=payload,
            data=parse_event(event_type, payload),
            raw_body=raw,
        )


def _aware(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError) as exc:
        raise MalformedHeader(TIMESTAMP_HEADER, "outside the representable date range") from exc


def verify(
    body: bytes,
    headers: object,
    secret: str | Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    now: datetime | float | None = None,
) -> Event:
    """Verify one delivery and return its :class:`Event`, or raise ``WebhookVerificationError``.

    ``body`` is the raw request body, byte for byte. ``headers`` may be a mapping, any headers
    object with ``.items()`` or a case-insensitive ``.get`` (Starlette, Werkzeug, Django,
    ``email.message.Message``) or a list of ``(name, value)`` pairs, with ``str`` or ``bytes``.
    ``secret`` is one secret or several (during a rotation). ``tolerance`` bounds the age of the
    attempt in seconds, in both directions; ``now`` (aware datetime or unix seconds) is for tests.
    """
    return Verifier(secret, tolerance).verify(body, headers, now)
