"""The one exception tree of the server.

Every failure a caller can cause or meet is one of these; the API maps them to the public error
envelope in one place (``api/errors.py``), the CLI prints their message. Lower-level errors (driver,
HTTP) are translated where they are raised and never leak past the boundary that saw them.

    BitbybitError
    ├── DomainError                 a request cannot be carried out as asked     (400)
    │   ├── ValidationFailed        bad input, with per-field details            (400)
    │   │   └── TargetRefused       a webhook URL that may not be called         (400)
    │   ├── NotFound                no such object for this company and mode     (404)
    │   ├── Conflict                duplicate email/phone, idempotency clash …   (409)
    │   ├── AuthError               missing/invalid/revoked key                  (401)
    │   ├── AccessDenied            missing scope, address not allowed           (403)
    │   ├── RateLimited             too many requests for this key               (429)
    │   └── PayloadTooLarge         request body over the limit                  (413)
    ├── StorageError                the database failed or is unreachable
    │   ├── StorageUnavailable      unreachable, locked or slow (the API: 503, Retry-After)
    │   └── IntegrityViolation      a uniqueness constraint refused a write (a race)
    └── ConfigurationError          the process cannot start as configured

The statuses in parentheses are the API's answers to domain errors (``STATUS`` in
``api/errors.py``). Defined outside this module: ``TargetRefused``, in ``delivery/ssrf.py`` where
webhook URLs are vetted. ``tests/unit/test_errors.py`` keeps this tree whole and true: it fails
when a subclass of ``BitbybitError`` anywhere in bitbybit is missing here or sits under another
parent, when the tree names a class that does not exist, when a ``DomainError`` class has no
status of its own in ``STATUS``, or when a status written here differs from it."""

from __future__ import annotations

from dataclasses import dataclass


class BitbybitError(Exception):
    """Root of every error bitbybit raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class DomainError(BitbybitError):
    """A request that cannot be carried out; ``code`` is the public error code."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ValidationFailed(DomainError):
    code = "VALIDATION_ERROR"

    def __init__(
        self, message: str, details: list[FieldError] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.details = details or []

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class AuthError(DomainError):
    code = "INVALID_API_KEY"


class AccessDenied(DomainError):
    code = "INSUFFICIENT_SCOPE"


class RateLimited(DomainError):
    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class StorageError(BitbybitError):
    """The database failed in a way the caller did not cause."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or is locked for too long."""


class IntegrityViolation(StorageError):
    """A uniqueness constraint refused a write (raced with a concurrent writer)."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class ConfigurationError(BitbybitError):
    """The process cannot start as configured."""
