"""PostgreSQL's plans for the worker's statements hold up on a large, analyzed queue.

A plan is read with EXPLAIN, never timed: a claim whose planner misjudges the rows it leases
reads whole tables to join them, which on 1,000,000 pending deliveries took 870 ms a claim
instead of 4 ms (ADR 0005).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from bitbybit.delivery.worker import FLUSH_BATCH
from bitbybit.models import AttemptResult, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import customers, webhooks
from bitbybit.store.postgres import PostgresStore, PostgresTx
from bitbybit.store.sql import Row
from tests.conftest import Account, make_account, make_store

QUEUED = 20_000


class Recorder:
    """A driver that keeps the statements it is given and answers every fetch with no rows."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        self.statements.append((sql, args))
        return []

    async def execute(self, sql: str, *args: Any) -> int:
        self.statements.append((sql, args))
        return 0


@pytest.fixture
async def platform(
    tmp_path_factory: pytest.TempPathFactory, settings: Any
) -> AsyncIterator[Platform]:
    async for store in make_store("postgres", tmp_path_factory, migrated=True):
        yield Platform(store, settings)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


async def queued(platform: Platform, connection: Any, count: int = QUEUED) -> str:
    """``count`` pending deliveries (ids ``dlv_0…1`` on), none leased, analyzed; their endpoint."""
    account: Account = await make_account(platform)
    tenant = Tenant(account.company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://example.com/hook")
    )
    data = CustomerCreate(email="plan@example.com", firstName="Plan")
    await platform.run(lambda tx: customers.insert(platform, tx, tenant, data))
    await connection.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
        " event_type, attempts, next_attempt_at, created_at, updated_at)"
        " SELECT 'dlv_0' || lpad(i::text, 19, '0'), event_id, endpoint_id, company_id, mode,"
        " status, event_type, 0, next_attempt_at, created_at, updated_at"
        " FROM deliveries, generate_series(1, $1) AS i",
        count,
    )
    await connection.execute(
        "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
        " SELECT id, endpoint_id, next_attempt_at, 'webhook' FROM deliveries"
        " WHERE id LIKE 'dlv_00%'"
    )
    await connection.execute("ANALYZE deliveries, delivery_queue")
    return endpoint.id


async def test_a_claim_looks_deliveries_up_by_index_on_a_large_analyzed_queue(
    platform: Platform,
) -> None:
    store = platform.store
    assert isinstance(store, PostgresStore)
    async with store.pool.acquire() as connection:
        endpoint_id = await queued(platform, connection)
        recorder = Recorder()
        tx = PostgresTx(recorder)  # type: ignore[arg-type]  # a recording driver
        await tx.claim_due("w", 2**62, 2**62, {endpoint_id: 32})
        results = [
            AttemptResult(f"dlv_0{i:019d}", endpoint_id, 1, 0, 5, 200, None, b"ok", "succeeded", 0)
            for i in range(1, 33)
        ]
        await tx._write_results("w", results, 0)
        plans = []
        for sql, args in recorder.statements:
            async with connection.transaction():
                # The plan a prepared statement settles on after its first executions.
                await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            plans.append(orjson.loads(explained)[0]["Plan"])

    assert len(plans) == 2  # the claim, the batch of results
    for plan in plans:
        scanned = {
            node.get("Relation Name") for node in nodes(plan) if node["Node Type"] == "Seq Scan"
        }
        assert not scanned & {"deliveries", "delivery_queue", "delivery_attempts"}, plan


class Rollback(Exception):
    """Ends a transaction whose statement was run for its plan only."""


@pytest.mark.parametrize("outcome", ["succeeded", "pending"])
async def test_a_full_batch_of_results_meets_its_leases_by_key_whatever_the_statistics_say(
    platform: Platform, outcome: str
) -> None:
    """Leased after the last ANALYZE, the rows a worker holds look like none to the planner: its
    results must still meet them by key (each result with its own queue row), not each leased
    row compared with every result of the batch. A queue of 100,000 with 2,000 leased took
    4,000,000 comparisons and 1.6 s a batch; more leased rows passed the database timeout."""
    store = platform.store
    assert isinstance(store, PostgresStore)
    async with store.pool.acquire() as connection:
        endpoint_id = await queued(platform, connection, 100_000)
        ids = [f"dlv_0{i:019d}" for i in range(1, FLUSH_BATCH + 1)]
        await connection.execute(
            "UPDATE delivery_queue SET lease_owner = 'w', lease_expires_at = $2"
            " WHERE delivery_id = ANY($1::text[])",
            ids,
            2**62,
        )
        due = 0 if outcome == "succeeded" else 2**61
        results = [
            AttemptResult(delivery_id, endpoint_id, 1, 0, 5, 200, None, b"", outcome, due)
            for delivery_id in ids
        ]
        recorder = Recorder()
        await PostgresTx(recorder)._write_results("w", results, 0)  # type: ignore[arg-type]
        ((sql, args),) = recorder.statements
        for mode in ("force_custom_plan", "force_generic_plan"):
            with contextlib.suppress(Rollback):
                async with connection.transaction():
                    await connection.execute(f"SET LOCAL plan_cache_mode = {mode}")
                    explained = await connection.fetchval(
                        f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args
                    )
                    raise Rollback
            plan = orjson.loads(explained)[0]["Plan"]
            compared = sum(node.get("Rows Removed by Join Filter", 0) for node in nodes(plan))
            assert compared <= len(ids), (mode, compared)
            settled = [
                node["Actual Rows"]
                for node in nodes(plan)
                if node["Node Type"] == "ModifyTable"
                and node.get("Relation Name") == "delivery_queue"
                and node["Actual Rows"]
            ]
            assert settled == [FLUSH_BATCH], mode  # every result met its own queue row
