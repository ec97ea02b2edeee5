"""HTTP routes, one module per resource."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import Query, Request, Response
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


# -- what the server checks in query parameters, declared in the document only -----------------
# (``json_schema_extra``, not ``pattern=``: pydantic's own check would change the error messages)


def sort_query(sortable: frozenset[str]) -> Any:
    """``sort``: ``field``, ``field:asc`` or ``field:desc`` (``deps.list_query``)."""
    fields = sorted(sortable)
    return Query(
        description=f"`field:asc|desc` (default `updatedAt:desc`); fields: {', '.join(fields)}",
        json_schema_extra={"pattern": f"^(?:(?:{'|'.join(fields)})(?::(?:asc|desc)?)?)?$"},
    )


def comma_list_query(allowed: Iterable[str]) -> Any:
    """A comma-separated list of ``allowed`` values, blanks ignored (``deps.split``)."""
    values = sorted(allowed)
    one = rf"\s*(?:(?:{'|'.join(values)})\s*)?"
    return Query(
        description=f"Comma list of: {', '.join(values)}",
        json_schema_extra={"pattern": f"^{one}(?:,{one})*$"},
    )


def one_of_query(allowed: Iterable[str]) -> Any:
    """Exactly one of ``allowed`` (checked by the service, in its own words)."""
    values = sorted(allowed)
    return Query(
        description=f"One of: {', '.join(values)}",
        json_schema_extra={"pattern": f"^(?:{'|'.join(values)})$"},
    )


def time_query(description: str, **checks: Any) -> Any:
    """An ISO-8601 time or date (``clock.parse_iso``); naive values are UTC."""
    return Query(
        description=f"{description}; ISO-8601 (`2024-01-15T10:30:00Z`), naive values are UTC",
        json_schema_extra={"format": "date-time"},
        **checks,
    )


# -- links: where the id an answer carries can be used next (a stateful client follows them) ---


def links(code: int, *targets: dict[str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The ``code`` response's OpenAPI ``links``, one per operation id in ``targets``."""
    merged = {}
    for group in targets:
        merged.update({name: {"operationId": name, **spec} for name, spec in group.items()})
    return {code: {"links": merged}}


def by_id(pointer: str, parameter: str, *operation_ids: str) -> dict[str, dict[str, Any]]:
    """Links that fill ``parameter`` of each operation with the answer's ``pointer``."""
    value = f"$response.body#{pointer}"
    return {name: {"parameters": {parameter: value}} for name in operation_ids}


def in_body(pointer: str, member: str, *operation_ids: str) -> dict[str, dict[str, Any]]:
    """Links whose request body is ``{member: <the answer's pointer>}``."""
    return {name: {"requestBody": {member: f"$response.body#{pointer}"}} for name in operation_ids}
