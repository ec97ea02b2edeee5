"""schemathesis over ``/openapi.json`` against a real server: no 5xx, no undocumented status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.servers import Server, cli, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("fuzz")
    env = {
        "BITBYBIT_DATABASE_URL": f"sqlite:///{folder / 'fuzz.db'}",
        "BITBYBIT_SECRET_KEY": "fuzz-secret-key",
    }
    company = cli("companies", "create", "Fuzz", env=env).strip()
    key = cli("keys", "create", "--company", company, env=env).strip()
    # No delivery worker, and the one operation that sends at once is left out below: fuzzed
    # endpoint URLs may name public hosts, and tests never leave loopback.
    with serve(
        env["BITBYBIT_DATABASE_URL"],
        folder / "serve.log",
        BITBYBIT_RATE_LIMIT="1000000",
        BITBYBIT_CONCURRENCY="0",
        BITBYBIT_SECRET_KEY="fuzz-secret-key",
    ) as running:
        yield running, key


@pytest.fixture(scope="module")
def api_schema(server: tuple[Server, str]) -> Any:
    running, _ = server
    loaded = schemathesis.openapi.from_url(f"{running.base_url}/openapi.json")
    loaded.config.update(base_url=running.base_url)
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(path_regex=r"/webhooks/\{endpoint_id\}/test$").parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_api_conforms_to_its_openapi_document(case: Any, server: tuple[Server, str]) -> None:
    _, key = server
    response = case.call(headers={"x-api-key": key}, timeout=10)
    case.validate_response(
        response,
        checks=(
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ),
    )


def test_openapi_documents_the_envelope_not_fastapis_422(server: tuple[Server, str]) -> None:
    import httpx

    running, _ = server
    document = httpx.get(f"{running.base_url}/openapi.json").json()
    for path in document["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]
            assert "400" in operation["responses"]
    assert "ErrorEnvelope" in document["components"]["schemas"]
    docs = httpx.get(f"{running.base_url}/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_log_is_kept(server: tuple[Server, str], tmp_path: Path) -> None:
    running, _ = server
    assert running.process.poll() is None
