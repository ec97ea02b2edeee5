"""The dashboard's history queries on both databases: ``delivery_history`` (each filter, keyset
pages both ways, ties on the creation time), ``delivery_chart`` (deliveries and failing ones per
minute) and ``event_history``; another company's and the other mode's rows never appear.

Rows are made the way production makes them: events queued to endpoints by
``queue_deliveries``, claimed and recorded by the worker's store calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bitbybit.models import AttemptResult, Delivery, Endpoint, Event, Tenant
from bitbybit.store import Store
from tests.contract.test_store import (
    COMPANY_A,
    COMPANY_B,
    LIVE_A,
    LIVE_B,
    T0,
    TEST_A,
    make_company,
    make_event,
    uid,
)

MINUTE = 60_000
TYPES = ["customer.created", "order.created", "customer.created", "order.updated", "order.created"]


def make_endpoint(status: str = "active") -> Endpoint:
    return Endpoint(
        id=uid("we"),
        url=f"https://hooks.example.com/{uid('path')}",
        description=None,
        events=[],
        status=status,
        secret="sealed",
        next_secret=None,
        next_secret_at=None,
        multi_signature=False,
        exhausted_in_row=0,
        status_reason=None,
        created_at=T0,
        updated_at=T0,
    )


@dataclass
class World:
    """Company A (live): five events a minute apart from ``T0 + 10 s`` (the last two in the same
    millisecond), each delivered to ``ok`` (succeeded), ``bad`` (failed; the last one pending
    after a failed attempt) and ``held`` (a suspended endpoint: held). The same events for
    company B and for A's test mode, which A's live lists never show."""

    ok: Endpoint
    bad: Endpoint
    held: Endpoint
    events: list[Event]


def times() -> list[int]:
    at = [T0 + 10_000 + n * MINUTE for n in range(4)]
    return [*at, at[-1]]  # a tie: two events in the same millisecond


async def queue(store: Store, tenant: Tenant, endpoints: list[Endpoint]) -> list[Event]:
    events = []
    async with store.write() as tx:
        for endpoint in endpoints:
            await tx.insert_endpoint(tenant, endpoint)
        for event_type, at in zip(TYPES, times(), strict=True):
            event = make_event(event_type, at)
            await tx.insert_event(tenant, event)
            await tx.queue_deliveries(tenant, event, endpoints, at)
            events.append(event)
    return events


class NeverSuspend:
    """A suspension rule that never suspends (so ``bad`` keeps its pending delivery)."""

    def counts(self, result: AttemptResult) -> bool:
        return False

    def reason(self, result: AttemptResult, exhausted_in_row: int | None) -> str | None:
        return None


def result(job_id: str, target: str, status: str, code: int, at: int) -> AttemptResult:
    error = None if status == "succeeded" else f"HTTP {code}"
    return AttemptResult(job_id, target, 1, at, 7, code, error, b"answer", status, at + MINUTE)


async def settle(store: Store, ok: Endpoint, bad: Endpoint, pending_event: str) -> None:
    """Send every queued delivery once: ``ok``'s succeed, ``bad``'s fail (the one of
    ``pending_event`` is to be retried)."""
    now = T0 + 10 * MINUTE
    claimed = await store.claim_due("w", now, now + MINUTE, {ok.id: 100, bad.id: 100})
    results = [
        result(job.delivery_id, job.target, "succeeded", 200, now)
        if job.target == ok.id
        else result(
            job.delivery_id,
            job.target,
            "pending" if job.event_id == pending_event else "failed",
            500,
            now,
        )
        for job in claimed
    ]
    async with store.write(durable=False) as tx:
        await tx.record_attempts("w", results, now, NeverSuspend())


@pytest.fixture
async def world(store: Store) -> World:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_company(make_company(COMPANY_B, "Globex"))
    made = []
    for tenant in (LIVE_A, LIVE_B, TEST_A):
        ok, bad, held = make_endpoint(), make_endpoint(), make_endpoint("suspended")
        events = await queue(store, tenant, [ok, bad, held])
        await settle(store, ok, bad, events[-1].id)
        made.append(World(ok, bad, held, events))
    return made[0]


async def history(store: Store, tenant: Tenant = LIVE_A, **filters: Any) -> list[Delivery]:
    """Every delivery the filters give, read in one page."""
    async with store.read() as tx:
        items, more = await tx.delivery_history(tenant, limit=1000, **filters)
    assert not more
    return items


def key(delivery: Delivery | Event) -> tuple[int, str]:
    return delivery.created_at, delivery.id


async def test_the_history_is_the_tenants_deliveries_newest_first(
    store: Store, world: World
) -> None:
    every = await history(store)
    assert len(every) == 15
    assert [key(d) for d in every] == sorted((key(d) for d in every), reverse=True)
    assert {d.endpoint_id for d in every} == {world.ok.id, world.bad.id, world.held.id}
    assert {d.event_id for d in every} == {e.id for e in world.events}
    by_endpoint = {d.endpoint_id: d.status for d in every if d.event_id == world.events[0].id}
    assert by_endpoint == {world.ok.id: "succeeded", world.bad.id: "failed", world.held.id: "held"}
    pending = [d for d in every if d.status == "pending"]
    assert [(d.event_id, d.endpoint_id) for d in pending] == [(world.events[-1].id, world.bad.id)]
    assert pending[0].last_error == "HTTP 500"
    assert all(d.event_type == e.type for d in every for e in world.events if e.id == d.event_id)
    others = {d.id for d in await history(store, LIVE_B)} | {
        d.id for d in await history(store, TEST_A)
    }
    assert len(others) == 30
    assert not others & {d.id for d in every}


async def test_each_filter_and_their_combinations(store: Store, world: World) -> None:
    every = await history(store)

    def expect(keep: Callable[[Delivery], bool]) -> list[str]:
        return [d.id for d in every if keep(d)]

    async def got(**filters: Any) -> list[str]:
        return [d.id for d in await history(store, **filters)]

    assert await got(endpoint_id=world.bad.id) == expect(lambda d: d.endpoint_id == world.bad.id)
    assert await got(event_type="order.created") == expect(
        lambda d: d.event_type == "order.created"
    )
    assert len(await got(event_type="order.created")) == 6
    assert await got(event_type="product.deleted") == []
    for status, count in (("succeeded", 5), ("failed", 4), ("held", 5), ("pending", 1)):
        found = await got(statuses=(status,))
        assert found == [d.id for d in every if d.status == status]
        assert len(found) == count
    assert await got(statuses=("failed", "pending")) == expect(
        lambda d: d.status in ("failed", "pending")
    )
    assert await got(statuses=("succeeded", "held")) == expect(
        lambda d: d.status in ("succeeded", "held")
    )
    since, until = times()[1], times()[3]
    assert await got(since=since, until=until) == expect(lambda d: since <= d.created_at < until)
    assert len(await got(since=since, until=until)) == 6  # until is not included
    assert await got(since=times()[3]) == expect(lambda d: d.created_at >= times()[3])
    assert await got(until=times()[1]) == expect(lambda d: d.created_at < times()[1])
    combined = await got(
        endpoint_id=world.bad.id,
        event_type="customer.created",
        statuses=("failed",),
        since=times()[0],
        until=times()[3],
    )
    assert combined == expect(
        lambda d: (
            d.endpoint_id == world.bad.id
            and d.event_type == "customer.created"
            and d.status == "failed"
        )
    )
    assert len(combined) == 2
    assert await got(endpoint_id=world.ok.id, statuses=("failed",)) == []
    # another tenant's endpoint gives nothing here
    b_world = await history(store, LIVE_B)
    assert await got(endpoint_id=b_world[0].endpoint_id) == []


@pytest.mark.parametrize("limit", [1, 2, 4, 15, 16])
async def test_keyset_pages_walk_older_and_back_newer_without_gaps(
    store: Store, world: World, limit: int
) -> None:
    every = [d.id for d in await history(store)]
    walked: list[list[Delivery]] = []
    before = None
    async with store.read() as tx:
        while True:
            items, more = await tx.delivery_history(LIVE_A, before=before, limit=limit)
            walked.append(items)
            if not more:
                break
            before = key(items[-1])
        assert [d.id for page in walked for d in page] == every
        assert all(len(page) == limit for page in walked[:-1])
        # and back: the pages newer than the last one, in the same order
        back: list[list[Delivery]] = []
        after = key(walked[-1][0])
        while True:
            items, more = await tx.delivery_history(LIVE_A, after=after, limit=limit)
            if not items:
                break
            back.append(items)
            if not more:
                break
            after = key(items[0])
        newer = [d.id for page in reversed(back) for d in page]
        assert newer == every[: every.index(walked[-1][0].id)]
        assert all(len(page) == limit for page in back[:-1])


async def test_keyset_pages_keep_the_filters(store: Store, world: World) -> None:
    failing = [d.id for d in await history(store, statuses=("failed", "pending"))]
    async with store.read() as tx:
        first, more = await tx.delivery_history(LIVE_A, statuses=("failed", "pending"), limit=3)
        assert more
        assert [d.id for d in first] == failing[:3]
        rest, more = await tx.delivery_history(
            LIVE_A, statuses=("failed", "pending"), before=key(first[-1]), limit=3
        )
        assert not more
        assert [d.id for d in rest] == failing[3:]
        again, more = await tx.delivery_history(
            LIVE_A, statuses=("failed", "pending"), after=key(rest[0]), limit=3
        )
        assert not more
        assert [d.id for d in again] == failing[:3]
        with pytest.raises(ValueError, match="not both"):
            await tx.delivery_history(LIVE_A, before=(1, "a"), after=(1, "a"))


async def test_the_chart_counts_each_minute_and_its_failing_deliveries(
    store: Store, world: World
) -> None:
    start = T0 // MINUTE * MINUTE
    async with store.read() as tx:
        rows = await tx.delivery_chart(LIVE_A, start, start + 10 * MINUTE)
        later = await tx.delivery_chart(LIVE_A, start + 2 * MINUTE, start + 3 * MINUTE)
        other = await tx.delivery_chart(TEST_A, start, start + 10 * MINUTE)
        none = await tx.delivery_chart(LIVE_A, start + 5 * MINUTE, start + 10 * MINUTE)
    # each minute: one delivery per endpoint of each event; failing: bad's (failed, or pending
    # after a failed attempt); held ones have not failed, succeeded ones have not either
    assert rows == [
        (start, 3, 1),
        (start + MINUTE, 3, 1),
        (start + 2 * MINUTE, 3, 1),
        (start + 3 * MINUTE, 6, 2),
    ]
    assert later == [(start + 2 * MINUTE, 3, 1)]
    assert other == rows  # the same events in test mode, counted apart
    assert none == []


async def test_the_event_history_filters_by_type_and_pages_both_ways(
    store: Store, world: World
) -> None:
    expected = sorted(world.events, key=key, reverse=True)
    async with store.read() as tx:
        every, more = await tx.event_history(LIVE_A, limit=100)
        assert not more
        assert [e.id for e in every] == [e.id for e in expected]
        assert every[0].payload == expected[0].payload
        typed, _ = await tx.event_history(LIVE_A, event_type="order.created", limit=100)
        assert [e.id for e in typed] == [e.id for e in expected if e.type == "order.created"]
        first, more = await tx.event_history(LIVE_A, limit=2)
        assert more
        assert first == expected[:2]
        second, more = await tx.event_history(LIVE_A, before=key(first[-1]), limit=2)
        assert more
        assert second == expected[2:4]
        last, more = await tx.event_history(LIVE_A, before=key(second[-1]), limit=2)
        assert not more
        assert last == expected[4:]
        back, more = await tx.event_history(LIVE_A, after=key(last[0]), limit=2)
        assert more
        assert back == expected[2:4]
        top, more = await tx.event_history(LIVE_A, after=key(back[0]), limit=2)
        assert not more
        assert top == expected[:2]
        b_events, _ = await tx.event_history(LIVE_B, limit=100)
        test_events, _ = await tx.event_history(TEST_A, limit=100)
    assert not {e.id for e in b_events + test_events} & {e.id for e in every}
    assert len(b_events) == len(test_events) == 5
