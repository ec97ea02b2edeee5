"""The one place where errors become HTTP: the public envelope and its status codes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from bitbybit.api.deps import check_access
from bitbybit.delivery.ssrf import TargetRefused
from bitbybit.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageUnavailable,
    ValidationFailed,
)

log = structlog.get_logger("bitbybit.api")

RETRY_AFTER_SECONDS = 2
"""``Retry-After`` of every 503: the database is down, restarting, locked or too slow, and a
retry a moment later may well succeed (a failover or a restart takes seconds)."""

STATUS: dict[type[DomainError], int] = {
    DomainError: 400,
    ValidationFailed: 400,
    TargetRefused: 400,
    AuthError: 401,
    AccessDenied: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    RateLimited: 429,
}
"""The HTTP status of each domain error class, looked up by the error's own class: a subclass
does not inherit its parent's status, so a new ``DomainError`` must be given one here
(``tests/unit/test_errors.py`` fails until it is) instead of answering 400 by chance."""

HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def envelope(
    status: int,
    code: str,
    message: str,
    details: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [{"field": d.field, "message": d.message} for d in details]
    rid = structlog.contextvars.get_contextvars().get("request_id")
    if rid is not None:  # bound by the middleware for the request's duration
        error["requestId"] = rid
    return Response(
        orjson.dumps({"error": error}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def status_of(error: DomainError) -> int:
    """``error``'s status from ``STATUS``; a class missing there is a bug, answered 500."""
    try:
        return STATUS[type(error)]
    except KeyError:
        raise LookupError(
            f"{type(error).__qualname__} has no HTTP status: add it to STATUS in api/errors.py"
        ) from None


def _field(location: tuple[int | str, ...]) -> str:
    parts = list(location)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in {"function-after[_storable(), str]"}:
            text += f".{part}" if text else str(part)
    return text or str(location[0] if location else "body")


def validation_details(error: RequestValidationError) -> list[FieldError]:
    details = []
    for item in error.errors():
        location = tuple(item.get("loc", ()))
        if item.get("type") == "json_invalid":
            return [FieldError("body", "the request body is not valid JSON")]
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        details.append(FieldError(_field(location), message))
    return details


async def _domain(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    details = error.details if isinstance(error, ValidationFailed) else None
    return envelope(status_of(error), error.code, error.message, details, headers)


async def _validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    unparsed = any(item.get("type") == "json_invalid" for item in error.errors())
    if unparsed and getattr(request.state, "rate", None) is None:
        try:  # authentication answers first, as for every other request
            await check_access(request)
        except DomainError as denied:
            return await _domain(request, denied)
        except StorageUnavailable as down:
            return await _unavailable(request, down)
    details = validation_details(error)
    summary = "; ".join(f"{d.field}: {d.message}" for d in details[:5])
    return envelope(400, "VALIDATION_ERROR", f"invalid request: {summary}", details)


RouteMethods = list[tuple[re.Pattern[str], bool, frozenset[str]]]


def route_methods(routers: list[tuple[str, APIRouter]]) -> RouteMethods:
    """Each route's full path pattern (under the prefix it is mounted at), whether the path is
    literal (no ``{parameter}``), and its methods."""
    return [
        (
            compile_path(prefix + route.path)[0],
            "{" not in route.path,
            frozenset(route.methods or ()),
        )
        for prefix, router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
    ]


def allowed_methods(request: Request) -> str:
    """Every method the resource at this path answers, for a 405's ``Allow`` (the router names
    only the first route it matched). A literal path is its own resource: ``/messages/send``
    is not also a message id."""
    table: RouteMethods = getattr(request.app.state, "route_methods", [])
    path = request.url.path
    matching = [(literal, ms) for pattern, literal, ms in table if pattern.match(path)]
    if any(literal for literal, _ in matching):
        matching = [(literal, ms) for literal, ms in matching if literal]
    return ", ".join(sorted({m for _, ms in matching for m in ms}))


async def _http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = HTTP_CODES.get(error.status_code, "ERROR")
    message = error.detail if isinstance(error.detail, str) else code
    headers = dict(error.headers or {})
    if error.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    if error.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed
        message = f"{request.method} is not allowed here; use {allowed}"
    return envelope(error.status_code, code, message, headers=headers)


def unavailable() -> Response:
    """503 ``SERVICE_UNAVAILABLE`` with ``Retry-After``: what a client sees whenever the database
    cannot answer in time (and ``/readyz`` while it cannot)."""
    return envelope(
        503,
        "SERVICE_UNAVAILABLE",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unavailable(request: Request, error: Exception) -> Response:
    log.warning("storage_unavailable", error=str(error), path=request.url.path)
    return unavailable()


def internal_error(path: str, error: BaseException) -> Response:
    """500 ``INTERNAL_ERROR``, never the error's text; the trace goes to the log."""
    log.exception("internal_error", path=path, exc_info=error)
    return envelope(500, "INTERNAL_ERROR", "an internal error occurred; it has been logged")


async def _internal(request: Request, error: Exception) -> Response:
    return internal_error(request.url.path, error)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(StorageUnavailable, _unavailable)
    app.add_exception_handler(Exception, _internal)
