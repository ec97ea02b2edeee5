"""Operator metrics (issue 14): requests per route template, method and status with their
latency, and the queue per target (pending, oldest pending age), on both databases.

Route labels are templates, never raw paths: ids and unknown paths never become label values
(``unmatched``), so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.samples import Sample

from bitbybit import dashboard
from bitbybit.api.metrics import UNMATCHED
from bitbybit.delivery import metrics as queue_metrics
from bitbybit.delivery.worker import Worker
from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import customers, webhooks
from bitbybit.store import Tx
from tests.conftest import CUSTOMERS, Account, FakeClock
from tests.dashboard import support

REQUESTS = "bitbybit_http_requests_total"
SECONDS = "bitbybit_http_request_duration_seconds"
CUSTOMER_PREFIXES = ("/customer/open/v1", "/customer/api/open/v1")
WHATSAPP_PREFIXES = ("/whatsapp/open/v1", "/whatsapp/api/open/v1")


def samples(name: str) -> Iterator[Sample]:
    """The registry's samples called ``name``. Only the metric that has them is collected: the
    registry holds every series the session's requests made, and collecting all of it (as
    ``REGISTRY.get_sample_value`` does) took some 30 ms a reading, seconds a test."""
    for metric in REGISTRY.restricted_registry([name]).collect():
        yield from (sample for sample in metric.samples if sample.name == name)


def sample_value(name: str, labels: dict[str, str]) -> float | None:
    """``REGISTRY.get_sample_value(name, labels)``, reading only that metric."""
    return next((sample.value for sample in samples(name) if sample.labels == labels), None)


def count(route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return sample_value(REQUESTS, labels) or 0.0


def answered(route: str, method: str) -> float:
    """Requests counted for ``route`` and ``method``, whatever their status."""
    return sum(
        sample.value
        for sample in samples(REQUESTS)
        if sample.labels["route"] == route and sample.labels["method"] == method
    )


def label_values() -> Iterator[str]:
    for metric in REGISTRY.collect():
        if metric.name in (REQUESTS.removesuffix("_total"), SECONDS):
            for sample in metric.samples:
                yield from sample.labels.values()


class Deltas:
    """Counts of requests (and of latency observations) before and after a block."""

    def __init__(self, *series: tuple[str, str, int]) -> None:
        self.series = series
        self.before = [self._now(s) for s in series]

    @staticmethod
    def _now(series: tuple[str, str, int]) -> tuple[float, float]:
        route, method, status = series
        labels = {"route": route, "method": method, "status": str(status)}
        observed = sample_value(f"{SECONDS}_count", labels) or 0.0
        return count(route, method, status), observed

    def changes(self) -> dict[tuple[str, str, int], tuple[float, float]]:
        return {
            s: (now[0] - then[0], now[1] - then[1])
            for s, then, now in zip(
                self.series, self.before, [self._now(s) for s in self.series], strict=True
            )
        }


# -- per route -----------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, account: Account
) -> None:
    one = f"{CUSTOMERS}/{{customer_id}}"
    alias = "/customer/api/open/v1/customers/{customer_id}"
    nowhere = f"/no/such/{secrets.token_hex(4)}"
    in_a_family = f"/customer/open/v1/{secrets.token_hex(4)}"
    unknown = f"cust_{secrets.token_hex(8)}"
    deltas = Deltas(
        (CUSTOMERS, "POST", 201),
        (one, "GET", 200),
        (alias, "GET", 200),
        (one, "GET", 404),
        (one, "GET", 401),
        (CUSTOMERS, "DELETE", 405),
        (UNMATCHED, "GET", 404),
        (UNMATCHED, "POST", 415),
        ("/healthz", "other", 405),
    )

    created = await client.post(CUSTOMERS, json={"email": "m@example.com"}, headers=account.headers)
    assert created.status_code == 201
    customer_id = created.json()["data"]["id"]
    assert (await client.get(f"{CUSTOMERS}/{customer_id}", headers=account.headers)).is_success
    got = await client.get(
        f"/customer/api/open/v1/customers/{customer_id}", headers=account.headers
    )
    assert got.is_success
    assert (await client.get(f"{CUSTOMERS}/{unknown}", headers=account.headers)).status_code == 404
    assert (await client.get(f"{CUSTOMERS}/{customer_id}")).status_code == 401
    assert (await client.delete(CUSTOMERS, headers=account.headers)).status_code == 405
    assert (await client.get(nowhere)).status_code == 404
    assert (await client.get(in_a_family, headers=account.headers)).status_code == 404
    refused = await client.post(CUSTOMERS, content=b"x", headers={"content-type": "text/plain"})
    assert refused.status_code == 415  # refused before routing: no route is known
    assert (await client.request("BREW", "/healthz")).status_code == 405

    changes = deltas.changes()
    expected = {series: (1.0, 1.0) for series in changes}
    expected[(UNMATCHED, "GET", 404)] = (2.0, 2.0)  # nowhere, and nowhere in a family
    assert changes == expected
    # No raw path, id or method ever becomes a label value.
    values = set(label_values())
    for raw in (customer_id, unknown, nowhere, in_a_family, "BREW"):
        assert not any(raw in value for value in values), raw


def _filled(template: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: f"p{secrets.token_hex(4)}", template)


def _template(path: str) -> str:
    """A route's declared path as the label shows it (``{rest:path}`` → ``{rest}``)."""
    return re.sub(r"\{([^}:]+):[^}]+\}", r"{\1}", path)


async def test_every_route_is_labelled_with_its_template(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Each route of the API (under each prefix of its family), the meta routes and each page
    of the dashboard: a request to it, with made-up ids, is counted under its template."""
    document = (await client.get("/openapi.json")).json()
    routes: list[tuple[str, str]] = []
    for path, operations in document["paths"].items():
        family = next(
            (p for p in (*CUSTOMER_PREFIXES, *WHATSAPP_PREFIXES) if path.startswith(p + "/")), None
        )
        aliases = [path]
        if family is not None:
            prefixes = CUSTOMER_PREFIXES if family in CUSTOMER_PREFIXES else WHATSAPP_PREFIXES
            aliases = [prefix + path.removeprefix(family) for prefix in prefixes]
        routes.extend((alias, method.upper()) for alias in aliases for method in operations)
    routes.extend(
        (_template(path), method) for path, methods in dashboard.pages() for method in methods
    )
    routes.extend([("/healthz", "GET"), ("/readyz", "GET"), ("/openapi.json", "GET")])
    assert len(routes) > 80

    for template, method in routes:
        before = answered(template, method)
        body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
        await client.request(method, _filled(template), headers=account.headers, json=body)
        assert answered(template, method) == before + 1, (template, method)


async def test_dashboard_pages_and_static_files_are_labelled(
    platform: Platform, account: Account
) -> None:
    endpoint_id = f"we_{secrets.token_hex(8)}"
    page = "/dashboard/webhooks/{endpoint_id}"
    deltas = Deltas(
        ("/dashboard/login", "GET", 200),
        (page, "GET", 404),
        (page, "GET", 303),
        ("/dashboard/static/{path}", "GET", 200),
        ("/dashboard/{rest}", "GET", 404),
    )
    browser = await support.sign_in(platform, account.company.id)
    async with browser:
        assert (await browser.get(f"/dashboard/webhooks/{endpoint_id}")).status_code == 404
        assert (await browser.get("/dashboard/static/app.css")).status_code == 200
        assert (await browser.get(f"/dashboard/{secrets.token_hex(4)}/x")).status_code == 404
    async with support.client(platform) as anonymous:
        assert (await anonymous.get(f"/dashboard/webhooks/{endpoint_id}")).status_code == 303
    changes = deltas.changes()
    assert changes.pop(("/dashboard/login", "GET", 200))[0] >= 1  # signing in shows the form
    assert changes == {series: (1.0, 1.0) for series in changes}
    assert not any(endpoint_id in value for value in label_values())


async def test_the_metrics_are_scraped(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert f'{REQUESTS}{{method="GET",route="/healthz",status="200"}}' in text
    assert f'{SECONDS}_bucket{{le="0.005",method="GET",route="/healthz",status="200"}}' in text


# -- per target ----------------------------------------------------------------------------------


def pending_of(target: str) -> float | None:
    return REGISTRY.get_sample_value("bitbybit_queue_pending", {"target": target})


def oldest_of(target: str) -> float | None:
    return REGISTRY.get_sample_value("bitbybit_queue_oldest_pending_seconds", {"target": target})


async def test_the_queue_per_target_is_shown_and_cleared(
    platform: Platform, account: Account, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = Tenant(account.company.id, "live")
    busy, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/busy")
    )

    async def created(count: int) -> None:
        async def make(tx: Tx) -> None:
            for _ in range(count):
                email = f"{secrets.token_hex(6)}@example.com"
                await customers.insert(platform, tx, tenant, CustomerCreate(email=email))

        await platform.run(make)
        # Ids begin with the real time in ms, which orders the batches when the clock is fake.
        await asyncio.sleep(0.002)

    await created(2)  # for `busy` alone
    clock.advance(60_000)
    quiet, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/quiet")
    )
    await created(1)  # for both
    clock.advance(30_000)

    worker = Worker(platform, concurrency=4)
    await worker.update_stats()
    assert (pending_of(busy.id), oldest_of(busy.id)) == (3, 90.0)
    assert (pending_of(quiet.id), oldest_of(quiet.id)) == (1, 30.0)
    assert REGISTRY.get_sample_value("bitbybit_delivery_queue_pending") == 4

    # Only the busiest targets are shown: the others' series go.
    monkeypatch.setattr(queue_metrics, "QUEUE_TARGETS_SHOWN", 1)
    await worker.update_stats()
    assert pending_of(busy.id) == 3
    assert (pending_of(quiet.id), oldest_of(quiet.id)) == (None, None)
    monkeypatch.undo()

    # A target whose queue emptied disappears (here: its endpoint was deleted).
    await worker.update_stats()
    assert pending_of(quiet.id) == 1
    await webhooks.delete_endpoint(platform, tenant, busy.id)
    await worker.update_stats()
    assert (pending_of(busy.id), oldest_of(busy.id)) == (None, None)
    assert (pending_of(quiet.id), oldest_of(quiet.id)) == (1, 30.0)
    assert REGISTRY.get_sample_value("bitbybit_delivery_queue_pending") == 1
