"""HTTP routes, one module per resource."""

from __future__ import annotations

from typing import Any

from bitbybit.api.schemas import ErrorEnvelope


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route can give, all in the one envelope."""
    common = (400, 401, 403, 429, 500, 503)
    return {
        code: {"model": ErrorEnvelope, "description": DESCRIPTIONS[code]}
        for code in sorted({*common, *codes})
    }


DESCRIPTIONS = {
    400: "Invalid input (VALIDATION_ERROR), with per-field details",
    401: "Missing or invalid API key (MISSING_API_KEY, INVALID_API_KEY)",
    403: "Key lacks the scope or the caller's address is not allowed",
    404: "No such object for this company and mode (NOT_FOUND)",
    409: "Duplicate email/phone or an Idempotency-Key clash (CONFLICT)",
    413: "Request body over 1 MiB (PAYLOAD_TOO_LARGE)",
    415: "Request body is not JSON (UNSUPPORTED_MEDIA_TYPE)",
    429: "Rate limit exceeded (RATE_LIMIT_EXCEEDED), see Retry-After",
    500: "Internal error (INTERNAL_ERROR), never a stack trace",
    503: "The database is unavailable (SERVICE_UNAVAILABLE)",
}
WRITE = (409, 413, 415)
