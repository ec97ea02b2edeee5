"""The committed ``docs/openapi.json`` is the document the server serves, and names its
operations the way generated clients will: short, unique, lowerCamelCase ``operationId``s."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
LOWER_CAMEL_CASE = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts/openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def document(script: ModuleType) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(script.render())
    return loaded


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_committed_document_is_the_apps(script: ModuleType) -> None:
    committed = script.DOCUMENT.read_text(encoding="utf-8")
    assert committed == script.render(), (
        f"docs/openapi.json differs from the application's schema: run `{script.COMMAND}` "
        "and commit the result"
    )


def test_every_operation_has_a_unique_lower_camel_case_id(document: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for method, path, operation in _operations(document):
        operation_id = operation.get("operationId")
        assert operation_id, f"{method} {path} has no operationId"
        assert LOWER_CAMEL_CASE.fullmatch(operation_id), f"{operation_id!r} is not lowerCamelCase"
        assert operation_id not in seen, f"{operation_id!r}: {seen.get(operation_id)} and {path}"
        seen[operation_id] = f"{method} {path}"
    assert {"createCustomer", "listDeliveries", "retryDelivery", "sendMessage"} <= set(seen)


def test_alias_prefixes_are_served_but_not_documented(document: dict[str, Any]) -> None:
    paths = list(document["paths"])
    assert any(path.startswith("/customer/open/v1/") for path in paths)
    assert any(path.startswith("/whatsapp/open/v1/") for path in paths)
    assert not [path for path in paths if "/api/open/v1" in path]


def test_links_lead_from_each_create_to_what_uses_its_id(document: dict[str, Any]) -> None:
    ids = {op["operationId"] for _, _, op in _operations(document)}
    for method, path, operation in _operations(document):
        if not operation["operationId"].startswith("create"):
            continue
        success = next(code for code in operation["responses"] if code.startswith("2"))
        links = operation["responses"][success].get("links", {})
        assert links, f"{method} {path} has no links"
        for link in links.values():
            assert link["operationId"] in ids, link
        noun = operation["operationId"].removeprefix("create")
        assert f"get{noun}" in links, f"{method} {path} does not link to get{noun}"


def test_response_headers_are_declared(document: dict[str, Any]) -> None:
    headers = document["components"]["headers"]
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(headers)
    assert headers["Retry-After"]["required"] is True
    assert headers["X-Request-Id"]["required"] is True
    error_body = document["components"]["schemas"]["ErrorBody"]["properties"]
    assert "requestId" in error_body
    for method, path, operation in _operations(document):
        responses = {code: _resolve(document, r) for code, r in operation["responses"].items()}
        for code, response in responses.items():
            assert "X-Request-Id" in response.get("headers", {}), (method, path, code)
        for code in ("429", "503"):
            if code in responses:
                assert "Retry-After" in responses[code]["headers"], (method, path)
        keyed = any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", ()))
        success = next(code for code in responses if code.startswith("2"))
        replayed = "Idempotent-Replayed" in responses[success].get("headers", {})
        assert replayed == keyed, (method, path)


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """``item``, or what its local ``$ref`` points to."""
    if "$ref" not in item:
        return item
    found: dict[str, Any] = document
    for part in item["$ref"].removeprefix("#/").split("/"):
        found = found[part]
    return found


def test_query_checks_are_declared(document: dict[str, Any]) -> None:
    def parameter(path: str, name: str) -> dict[str, Any]:
        found = document["paths"][path]["get"]["parameters"]
        schema: dict[str, Any] = next(p for p in found if p["name"] == name)["schema"]
        return schema

    sort = re.compile(parameter("/customer/open/v1/customers", "sort")["pattern"])
    assert sort.match("createdAt:asc")
    assert sort.match("email")
    assert sort.match("")
    assert not sort.match("name:asc")
    assert not sort.match("createdAt:up")
    status = re.compile(parameter("/customer/open/v1/orders", "status")["pattern"])
    assert status.match("active, refunded")
    assert not status.match("active,shipped")
    since = parameter("/customer/open/v1/events", "since")
    assert since["format"] == "date-time"
    limit = parameter("/customer/open/v1/customers", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 100)
