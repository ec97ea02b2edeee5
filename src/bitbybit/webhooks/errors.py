"""The one error family raised by webhook verification.

::

    WebhookVerificationError          every failure below; catch this one
    ├── MissingHeader                 a required X-BitByBit-Webhook-* header is absent
    ├── MalformedHeader               a header is present but not in the documented form
    ├── TimestampOutOfTolerance       the attempt is older (or further ahead) than the tolerance
    ├── BadSignature                  no v1 signature matches any configured secret
    ├── BadPayload                    the signed body is not a UTF-8 JSON object of the right shape
    └── ConfigurationError            the receiver's own arguments are wrong (no secret, naive now)

Each class carries a stable ``code`` (``"bad_signature"``, …) that adapters put in their 400
answers, so the sender's delivery log shows why a delivery was refused.
"""

from __future__ import annotations

__all__ = [
    "BadPayload",
    "BadSignature",
    "ConfigurationError",
    "MalformedHeader",
    "MissingHeader",
    "TimestampOutOfTolerance",
    "WebhookVerificationError",
]


class WebhookVerificationError(Exception):
    """Root of every error ``verify`` raises; nothing else ever escapes it."""

    code = "verification_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingHeader(WebhookVerificationError):
    """A required header is absent (or the headers object itself is missing)."""

    code = "missing_header"

    def __init__(self, header: str, message: str | None = None) -> None:
        super().__init__(message or f"missing header {header}")
        self.header = header


class MalformedHeader(WebhookVerificationError):
    """A header is present but not well-formed (syntax, encoding, size, duplicates, mismatch)."""

    code = "malformed_header"

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header = header


class TimestampOutOfTolerance(WebhookVerificationError):
    """The signed timestamp is too old (a replay) or too far in the future (clock skew).

    ``timestamp`` is the signed unix time, ``now`` the receiver's, ``tolerance`` the window (s).
    """

    code = "timestamp_out_of_tolerance"

    def __init__(self, timestamp: int, now: float, tolerance: float) -> None:
        age = now - timestamp
        where = f"{age:.0f} s old" if age >= 0 else f"{-age:.0f} s in the future"
        super().__init__(f"timestamp {timestamp} is {where} (tolerance {tolerance:g} s)")
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance


class BadSignature(WebhookVerificationError):
    """No ``v1`` signature in the header matches the body under any configured secret."""

    code = "bad_signature"


class BadPayload(WebhookVerificationError):
    """The signed body is not a UTF-8 JSON object, or a field has the wrong JSON type."""

    code = "bad_payload"


class ConfigurationError(WebhookVerificationError):
    """The receiver's own arguments are unusable: no secret, a non-text secret, a naive ``now``."""

    code = "configuration_error"
