"""Every API call a guide names is one the server has: ``METHOD /path`` in the docs must be an
operation of the committed OpenAPI document (``docs/openapi.json``), under its full prefix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
CALL = re.compile(r"\b(GET|POST|PUT|DELETE) (/[A-Za-z0-9_{}./…-]+)")
API = ("/customer/", "/whatsapp/")
GUIDES = ("receiving-webhooks.md", "quickstart.md", "messaging.md", "api.md", "delivery.md")


def operations() -> list[tuple[str, re.Pattern[str]]]:
    """Each documented operation's method and path pattern (a ``{parameter}`` is one segment;
    the alias prefixes ``/…/api/open/v1`` are the same operations)."""
    document = json.loads((DOCS / "openapi.json").read_text())
    found = []
    for path, item in document["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        for method in item:
            if method in {"get", "post", "put", "delete"}:
                found.append((method.upper(), re.compile(pattern + "$")))
    return found


@pytest.mark.parametrize("guide", GUIDES)
def test_every_api_call_a_guide_names_exists(guide: str) -> None:
    known = operations()
    missing = []
    for method, path in CALL.findall((DOCS / guide).read_text()):
        if not path.startswith(API):
            continue  # a receiver's own path, /healthz, /metrics …
        canonical = path.rstrip(".").replace("/api/open/v1", "/open/v1", 1)
        if not any(m == method and pattern.match(canonical) for m, pattern in known):
            missing.append(f"{method} {path}")
    assert not missing, f"{guide} names calls the server does not have: {missing}"


def test_the_receiver_guide_names_api_paths_with_their_prefix() -> None:
    """A path such as ``POST /webhooks/{id}/rotate-secret`` without ``/customer/open/v1`` is not
    one a reader can call."""
    text = (DOCS / "receiving-webhooks.md").read_text()
    bare = [
        f"{method} {path}"
        for method, path in CALL.findall(text)
        if path.startswith(("/webhooks", "/events", "/deliveries", "/customers", "/orders"))
    ]
    assert not bare, bare
