"""schemathesis over ``/openapi.json`` against a real server: every phase (examples, coverage,
fuzzing, and the stateful phase that follows the document's links from each create to its
get/update/delete), every check, no failure.

The run is schemathesis's own command line, so that CI runs exactly what a reader would type;
this module is also its hooks module (``CONFIG``'s ``hooks``): it teaches schemathesis the
``phone`` format the document declares.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st

from tests.integration.servers import Server, cli, serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 40
"""Examples per operation in the coverage and fuzzing phases."""
SCENARIOS = 120
"""Stateful scenarios; with ``EXAMPLES``, some two minutes on two cores."""
SEED = os.environ.get("BITBYBIT_FUZZ_SEED", "13")
"""Fixed, so that a failure reproduces; set the variable to explore other inputs."""

PHONES = st.sampled_from(["+6281234567890", "+14155552671", "+442071838750", "+4915112345678"])
"""Valid numbers: libphonenumber's validity (the ``phone`` format) has no JSON Schema form."""
schemathesis.openapi.format("phone", PHONES)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Make each valid ``Idempotency-Key`` unique to its request.

    Generated keys repeat (``0``, ``A``…), and a repeated key with the same body is answered
    with the first answer, as documented, even when the resource it created was deleted since:
    right, but it reads to the stateful checks as a created resource that is missing. Replays
    are tested in ``test_api_resources``; invalid keys, and negative cases, are sent as
    generated.
    """
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return  # an edit would make schemathesis revalidate the case as a positive one
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 0 < len(key) <= 200 and key.isascii() and key.isprintable():
        case.headers["Idempotency-Key"] = f"{key}-{next(UNIQUE)}"


UNIQUE = itertools.count()

STATEFUL_VALIDITY = (
    *("createOrder", "replayEvent", "sendMessage", "sendTemplate", "createWebhook"),
    *("updateWebhook", "createCustomer", "updateCustomer", "listMessages"),
    *("listEvents", "listDeliveries"),  # a cursor with `page` is refused (docs/api.md)
)
"""Operations whose schema-valid requests the server may still refuse (see ``CONFIG``)."""
LAX_TYPES = (
    *("createCustomer", "updateCustomer", "createWebhook", "updateWebhook"),
    *("rotateWebhookSecret", "sendMessage", "sendTemplate"),
)
"""Operations with a boolean or a non-strict number in their body (see ``CONFIG``)."""

CONFIG = f"""
hooks = "tests.integration.test_openapi_fuzz"
seed = {SEED}
workers = 1
continue-on-failure = true

[generation]
max-examples = {EXAMPLES}

# Chains of calls along the document's links: valid data only, so that each step creates what
# the next one uses.
[phases.stateful]
max-steps = 30

[phases.stateful.generation]
max-examples = {SCENARIOS}
mode = "positive"

[checks]
enabled = true

# A schema-valid request that the server may still refuse, each for a reason the document states
# in words where JSON Schema has no form for it (docs/api.md, "What the OpenAPI document
# declares"): ids that must exist (createOrder's variants, replayEvent's endpoint), the service
# window and a template's parameter count (sendMessage, sendTemplate), the webhook URL policy
# (createWebhook, updateWebhook), libphonenumber's validity of a phone number (customers,
# listMessages).
[[operations]]
include-operation-id-regex = "^({"|".join(STATEFUL_VALIDITY)})$"
checks.positive_data_acceptance.enabled = false

# pydantic's lax mode also takes 0/1 and "true"/"false" for a boolean and a boolean or a numeric
# string for a number; the document declares the canonical types only.
[[operations]]
include-operation-id-regex = "^({"|".join(LAX_TYPES)})$"
checks.negative_data_rejection.enabled = false
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("fuzz")
    env = {
        "BITBYBIT_DATABASE_URL": f"sqlite:///{folder / 'fuzz.db'}",
        "BITBYBIT_SECRET_KEY": "fuzz-secret-key",
    }
    company = cli("companies", "create", "Fuzz", env=env).strip()
    key = cli("keys", "create", "--company", company, env=env).strip().splitlines()[0]
    # No delivery worker, and the one operation that sends at once is left out below: fuzzed
    # endpoint URLs may name public hosts, and tests never leave loopback. The limits are
    # lifted: the run sends thousands of requests, a third of them without a valid key.
    with serve(
        env["BITBYBIT_DATABASE_URL"],
        folder / "serve.log",
        BITBYBIT_RATE_LIMIT="1000000",
        BITBYBIT_AUTH_FAILURE_LIMIT="1000000",
        BITBYBIT_CONCURRENCY="0",
        BITBYBIT_SECRET_KEY="fuzz-secret-key",
    ) as running:
        yield running, key


def test_api_conforms_to_its_openapi_document(server: tuple[Server, str], tmp_path: Path) -> None:
    running, key = server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        *(sys.executable, "-m", "schemathesis.cli"),
        *("--config-file", str(config), "--no-color", "run"),
        f"{running.base_url}/openapi.json",
        *("--header", f"x-api-key: {key}"),
        *("--exclude-operation-id", "testWebhook"),
        *("--report", "junit", "--report-dir", str(tmp_path / "report")),
    ]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert "Stateful" in done.stdout, done.stdout[-5_000:]
    assert "API Links" in done.stdout, done.stdout[-5_000:]


def test_openapi_documents_the_envelope_not_fastapis_422(server: tuple[Server, str]) -> None:
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
