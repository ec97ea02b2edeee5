"""The OpenAPI document, built from the routes and then completed with what FastAPI cannot infer:
the checks the request models make in validators, the response headers the middleware and the
error handlers add, the error responses shared once, and the links a client follows from a create
to what it made. ``scripts/openapi.py`` writes it to ``docs/openapi.json``; a test fails when the
two differ."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import BaseRoute

from bitbybit import schemas as request_bodies
from bitbybit.api.schemas import declare_body_checks


def openapi_document(app: FastAPI, routes: list[BaseRoute]) -> dict[str, Any]:
    """FastAPI's document of ``routes``, plus what the server checks that FastAPI cannot see,
    without FastAPI's 422 body: validation errors are our 400 envelope."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
            _declare_headers(operation)
            _declare_no_nul(operation)
            _declare_idempotency_key(operation)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    declare_body_checks(components, _body_models())
    schema.setdefault("components", {})["headers"] = copy.deepcopy(HEADERS)
    _share_error_responses(schema)
    return schema


ERROR_RESPONSES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "409": "Conflict",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
    "500": "InternalError",
    "503": "ServiceUnavailable",
}


def _share_error_responses(schema: dict[str, Any]) -> None:
    """Declare each error response once under ``components/responses`` and refer to it from
    every operation that gives it word for word (the rest stay as they are): half the document's
    size, and one error type per status in a generated client."""
    shared: dict[str, dict[str, Any]] = {}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            for code, response in responses.items():
                name = ERROR_RESPONSES.get(code)
                if name is not None and shared.setdefault(name, response) == response:
                    responses[code] = {"$ref": f"#/components/responses/{name}"}
    schema.setdefault("components", {})["responses"] = shared


def _body_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(request_bodies).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel
    ]


COUNT = {"type": "integer", "minimum": 0}
HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {"description": "Requests a minute allowed to the key", "schema": COUNT},
    "RateLimit-Remaining": {"description": "Requests left in the current window", "schema": COUNT},
    "RateLimit-Reset": {"description": "Seconds until the window ends", "schema": COUNT},
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": COUNT,
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "X-Request-Id": {
        "description": "The request's id: the client's own `X-Request-Id` when it is a token of "
        "at most 128 letters, digits, `.`, `_`, `:` or `-`, else a new `req_…`; also the error "
        "envelope's `requestId` and the `request_id` of the server's log lines",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
}
"""The response headers the server sets, declared once under ``components/headers``."""


def _declare_headers(operation: dict[str, Any]) -> None:
    """The headers ``Guard`` and the error handlers add: ``X-Request-Id`` on every answer,
    ``RateLimit-*`` on every answer to a request with a known key (none without one, so they
    are optional), ``Retry-After`` on every 429 and 503, and ``Idempotent-Replayed`` on a
    replayed create."""
    keyed = "security" in operation
    replays = any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", ()))
    for code, response in operation.get("responses", {}).items():
        names = ["X-Request-Id"]
        if keyed:
            names += ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
        if code in ("429", "503"):
            names.append("Retry-After")
        if replays and code.startswith("2"):
            names.append("Idempotent-Replayed")
        if names:
            headers = response.setdefault("headers", {})
            headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in names})


def _declare_idempotency_key(operation: dict[str, Any]) -> None:
    """``services.idempotency`` takes 1 to 255 printable ASCII characters, and answers a replay
    with the first answer whatever happened to the resource since."""
    for parameter in operation.get("parameters", ()):
        if parameter["name"] == "Idempotency-Key":
            parameter["description"] += (
                "; the replay is the first answer, even if the resource was changed or deleted "
                "since. 1 to 255 printable ASCII characters"
            )
            for kind in parameter["schema"].get("anyOf", [parameter["schema"]]):
                if kind.get("type") == "string":
                    kind["pattern"] = "^[ -~]+$"


NO_NUL = r"^[^\u0000]*$"


def _declare_no_nul(operation: dict[str, Any]) -> None:
    """Path and query values reach the database, which refuses NUL (``deps.refuse_nul``)."""
    if "security" not in operation:
        return
    for parameter in operation.get("parameters", ()):
        if parameter["in"] not in ("path", "query"):
            continue
        kinds = parameter["schema"].get("anyOf", [parameter["schema"]])
        if any(kind.get("type") == "string" for kind in kinds):
            parameter["schema"].setdefault("pattern", NO_NUL)
