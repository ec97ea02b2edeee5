"""HTTP routes, one module per resource."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from bitbybit.api.deps import check_access
from bitbybit.api.schemas import ErrorEnvelope
from bitbybit.errors import ValidationFailed
from bitbybit.limits import MAX_JSON_DEPTH, too_deep, too_deep_field


class Route(APIRoute):
    """Every route of the API: a JSON body nested too deep is refused before it is parsed.

    The parser recurses once per level and the encoders that store, render and sign a value stop
    at 254 levels, so a body over ``MAX_JSON_DEPTH`` gets 400 ``VALIDATION_ERROR`` naming the
    member it nests under, whatever its depth, instead of a 500 or the parser's bare 400. Access
    is checked first, as for every other refused body.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def guarded(request: Request) -> Response:
            body = await request.body()  # kept on the request: the handler reads it again
            if too_deep(body):
                await check_access(request)
                raise ValidationFailed.field(
                    too_deep_field(body),
                    f"JSON may nest at most {MAX_JSON_DEPTH} arrays and objects deep, "
                    "counting the body itself",
                )
            return await handler(request)

        return guarded


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route can give, all in the one envelope."""
    common = (400, 401, 403, 429, 500, 503)
    return {
        code: {"model": ErrorEnvelope, "description": DESCRIPTIONS[code]}
        for code in sorted({*common, *codes})
    }


DESCRIPTIONS = {
    400: (
        "Invalid input (VALIDATION_ERROR), with per-field details; also a change whose event "
        "would be over 65,536 bytes, or JSON nested over 64 levels"
    ),
    401: "Missing or invalid API key (MISSING_API_KEY, INVALID_API_KEY)",
    403: "Key lacks the scope or the caller's address is not allowed",
    404: "No such object for this company and mode (NOT_FOUND)",
    409: "Duplicate email/phone or an Idempotency-Key clash (CONFLICT)",
    413: "Request body over 1 MiB (PAYLOAD_TOO_LARGE)",
    415: "Request body is not JSON (UNSUPPORTED_MEDIA_TYPE)",
    429: "Rate limit exceeded (RATE_LIMIT_EXCEEDED), see Retry-After",
    500: "Internal error (INTERNAL_ERROR), never a stack trace",
    503: "The database is down, locked or too slow (SERVICE_UNAVAILABLE), see Retry-After",
}
WRITE = (409, 413, 415)
