"""The store calls behind the Open API's cursor pages, on both databases: ``event_position`` and
``events_from`` (the events in ``list_events``'s order: newest first, the events of one instant
in the order they were written), ``delivery_position`` for ``delivery_history``, and
``list_deliveries``'s exact count by status.

The last tests read the plans (never the time) on a few thousand rows: the counts of the
numbered pages read an index alone (PostgreSQL: an index-only scan; SQLite: a covering index),
or, for the few deliveries that are not succeeded, deliveries_unsettled; no statement reads a
whole table.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bitbybit.models import Delivery, Endpoint, Event, ListQuery, Tenant
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sql import Row
from tests.contract.test_delivery_history import make_endpoint
from tests.contract.test_store import (
    COMPANY_A,
    COMPANY_B,
    LIVE_A,
    LIVE_B,
    T0,
    TEST_A,
    make_company,
    make_event,
)


async def add_companies(store: Store) -> None:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_company(make_company(COMPANY_B, "Globex"))


async def write(store: Store, tenant: Tenant, *events: Event) -> None:
    """The events in one transaction, in this order."""
    async with store.write() as tx:
        for event in events:
            await tx.insert_event(tenant, event)


async def walk(store: Store, tenant: Tenant, limit: int, **filters: Any) -> list[list[Event]]:
    """Every page of ``limit`` from the newest, each by ``before`` the last one's place."""
    pages: list[list[Event]] = []
    before = None
    async with store.read() as tx:
        while True:
            items, more = await tx.events_from(tenant, before=before, limit=limit, **filters)
            pages.append(items)
            if not more:
                return pages
            before = await tx.event_position(tenant, items[-1].id)


# -- events ------------------------------------------------------------------------------------


async def test_events_of_one_instant_come_in_the_order_written_whatever_their_ids(
    store: Store,
) -> None:
    await add_companies(store)
    # Ids that sort against the order written, all in one millisecond, then two later ones.
    same = [make_event("customer.created", T0, id=f"evt_{letter}") for letter in "zyxw"]
    await write(store, LIVE_A, *same[:2])
    await write(store, LIVE_A, *same[2:])
    later = [make_event("order.created", T0 + 1, id="evt_b"), make_event(created_at=T0 + 2)]
    await write(store, LIVE_A, *later)
    expected = [later[1], later[0], same[3], same[2], same[1], same[0]]

    async with store.read() as tx:
        listed = await tx.list_events(LIVE_A, ListQuery(limit=100))
        everything, more = await tx.events_from(LIVE_A, limit=100)
    assert listed.items == expected
    assert (everything, more) == (expected, False)
    for limit in (1, 2, 4, 5, 6):
        pages = await walk(store, LIVE_A, limit)
        assert [e for page in pages for e in page] == expected, limit
        for number, page in enumerate(pages, start=1):
            async with store.read() as tx:
                numbered = await tx.list_events(LIVE_A, ListQuery(page=number, limit=limit))
            assert numbered.items == page


async def test_events_from_pages_both_ways_around_a_place(store: Store) -> None:
    await add_companies(store)
    events = [make_event(created_at=T0 + n // 2) for n in range(7)]  # in pairs per millisecond
    for event in events:
        await write(store, LIVE_A, event)
    newest_first = events[::-1]
    async with store.read() as tx:
        middle = await tx.event_position(LIVE_A, events[3].id)
        assert middle is not None
        older, more = await tx.events_from(LIVE_A, before=middle, limit=2)
        assert (older, more) == (newest_first[4:6], True)
        older, more = await tx.events_from(LIVE_A, before=middle, limit=3)
        assert (older, more) == (newest_first[4:7], False)
        newer, more = await tx.events_from(LIVE_A, after=middle, limit=2)
        assert (newer, more) == (newest_first[1:3], True)  # the two just newer, newest first
        newer, more = await tx.events_from(LIVE_A, after=middle, limit=3)
        assert (newer, more) == (newest_first[0:3], False)
        newest = await tx.event_position(LIVE_A, events[-1].id)
        assert await tx.events_from(LIVE_A, after=newest) == ([], False)
        oldest = await tx.event_position(LIVE_A, events[0].id)
        assert await tx.events_from(LIVE_A, before=oldest) == ([], False)
        with pytest.raises(ValueError, match="not both"):
            await tx.events_from(LIVE_A, before=middle, after=middle)


async def test_events_from_filters_like_list_events(store: Store) -> None:
    await add_companies(store)
    kinds = ["customer.created", "order.created", "customer.updated", "order.created"]
    events = [make_event(kinds[n % 4], T0 + 10 * n) for n in range(12)]
    for event in events:
        await write(store, LIVE_A, event)
    cases: list[tuple[dict[str, Any], dict[str, tuple[str, ...]]]] = [
        ({"types": ("order.created",)}, {"type": ("order.created",)}),
        (
            {"types": ("order.created", "customer.updated")},
            {"type": ("order.created", "customer.updated")},
        ),
        ({"since": T0 + 30}, {"since": (str(T0 + 30),)}),
        ({"until": T0 + 30}, {"until": (str(T0 + 30),)}),
        (
            {"since": T0 + 20, "until": T0 + 90, "types": ("order.created",)},
            {"since": (str(T0 + 20),), "until": (str(T0 + 90),), "type": ("order.created",)},
        ),
    ]
    for keywords, filters in cases:
        async with store.read() as tx:
            listed = await tx.list_events(LIVE_A, ListQuery(limit=100, filters=filters))
        pages = await walk(store, LIVE_A, 2, **keywords)
        assert [e for page in pages for e in page] == listed.items, keywords
        assert listed.total == len(listed.items)
    # A place need not match the filters.
    async with store.read() as tx:
        place = await tx.event_position(LIVE_A, events[6].id)  # a customer.updated
        older, _ = await tx.events_from(LIVE_A, types=("customer.created",), before=place)
        assert older == [events[4], events[0]]
        newer, _ = await tx.events_from(LIVE_A, types=("customer.created",), after=place)
        assert newer == [events[8]]


async def test_event_places_and_pages_are_the_tenants_own(store: Store) -> None:
    await add_companies(store)
    mine = make_event(created_at=T0)
    theirs = make_event(created_at=T0 + 1)
    in_test = make_event(created_at=T0 + 2)
    await write(store, LIVE_A, mine)
    await write(store, LIVE_B, theirs)
    await write(store, TEST_A, in_test)
    async with store.read() as tx:
        assert await tx.event_position(LIVE_A, theirs.id) is None
        assert await tx.event_position(LIVE_A, in_test.id) is None
        assert await tx.event_position(LIVE_A, "evt_missing") is None
        their_place = await tx.event_position(LIVE_B, theirs.id)
        assert their_place is not None
        assert await tx.events_from(LIVE_A) == ([mine], False)
        # Even a place taken from another tenant shows nothing of that tenant's.
        assert await tx.events_from(LIVE_A, after=(T0 - 1, 0)) == ([mine], False)
        assert await tx.events_from(LIVE_B, before=their_place) == ([], False)


# -- deliveries --------------------------------------------------------------------------------


STATUSES = ("succeeded", "pending", "failed", "held")


async def deliveries_world(store: Store) -> tuple[Endpoint, Endpoint, Endpoint, list[Delivery]]:
    """Twelve events of A (live), each queued to ``one`` and ``two``; ``one``'s deliveries get
    the statuses in turn; B's endpoint gets deliveries too. Returns ``one``'s newest first."""
    await add_companies(store)
    one, two, theirs = make_endpoint(), make_endpoint(), make_endpoint()
    async with store.write() as tx:
        await tx.insert_endpoint(LIVE_A, one)
        await tx.insert_endpoint(LIVE_A, two)
        await tx.insert_endpoint(LIVE_B, theirs)
        for n in range(12):
            event = make_event(created_at=T0 + n // 3)
            await tx.insert_event(LIVE_A, event)
            await tx.queue_deliveries(LIVE_A, event, [one, two], event.created_at)
            other = make_event(created_at=T0 + n)
            await tx.insert_event(LIVE_B, other)
            await tx.queue_deliveries(LIVE_B, other, [theirs], other.created_at)
    async with store.read() as tx:
        made = (await tx.list_deliveries(LIVE_A, endpoint_id=one.id, limit=100)).items
    async with store.write() as tx:
        for n, delivery in enumerate(made):
            await tx.db.execute(  # type: ignore[attr-defined]  # the SQL store's driver
                "UPDATE deliveries SET status = $1 WHERE id = $2", STATUSES[n % 4], delivery.id
            )
    async with store.read() as tx:
        listed = (await tx.list_deliveries(LIVE_A, endpoint_id=one.id, limit=100)).items
    assert [d.id for d in listed] == [d.id for d in made]
    return one, two, theirs, listed


async def test_delivery_counts_by_status_are_exact(store: Store) -> None:
    one, _, theirs, listed = await deliveries_world(store)
    combinations: list[tuple[str, ...]] = [
        (),
        *((status,) for status in STATUSES),
        ("succeeded", "failed"),
        ("pending", "held"),
        ("succeeded", "pending", "failed"),
        ("failed", "held", "pending"),
        STATUSES,
        ("succeeded", "lost"),
        ("lost",),
        (*STATUSES, "lost"),
    ]
    for statuses in combinations:
        expected = [d for d in listed if not statuses or d.status in statuses]
        async with store.read() as tx:
            page = await tx.list_deliveries(
                LIVE_A, endpoint_id=one.id, statuses=statuses, page=2, limit=2
            )
            whole, more = await tx.delivery_history(
                LIVE_A, endpoint_id=one.id, statuses=statuses, limit=100
            )
        assert page.total == len(expected), statuses
        assert page.items == expected[2:4], statuses
        if "lost" not in statuses or set(STATUSES) <= set(statuses):
            assert (whole, more) == (expected, False), statuses
    async with store.read() as tx:
        succeeded = await tx.list_deliveries(LIVE_A, statuses=("succeeded",))
        assert succeeded.total == 3  # one's three
        pending = await tx.list_deliveries(LIVE_A, statuses=("pending",))
        assert pending.total == 3 + 12  # one's three, and all of two's (never sent)
        # Another tenant's endpoint shows nothing, and counts nothing, here.
        for statuses in ((), ("succeeded",), ("pending",)):
            foreign = await tx.list_deliveries(LIVE_A, endpoint_id=theirs.id, statuses=statuses)
            assert (foreign.items, foreign.total) == ([], 0)
            in_test = await tx.list_deliveries(TEST_A, endpoint_id=one.id, statuses=statuses)
            assert (in_test.items, in_test.total) == ([], 0)
        own = await tx.list_deliveries(LIVE_B, endpoint_id=theirs.id)
        assert own.total == 12


async def test_delivery_places_are_the_tenants_and_the_endpoints(store: Store) -> None:
    one, two, theirs, listed = await deliveries_world(store)
    async with store.read() as tx:
        of_two = (await tx.list_deliveries(LIVE_A, endpoint_id=two.id, limit=1)).items[0]
        of_theirs = (await tx.list_deliveries(LIVE_B, endpoint_id=theirs.id, limit=1)).items[0]
        first = listed[0]
        assert await tx.delivery_position(LIVE_A, first.id) == (first.created_at, first.id)
        assert await tx.delivery_position(LIVE_A, first.id, endpoint_id=one.id) == (
            first.created_at,
            first.id,
        )
        assert await tx.delivery_position(LIVE_A, of_two.id, endpoint_id=one.id) is None
        assert await tx.delivery_position(LIVE_A, of_theirs.id) is None
        assert await tx.delivery_position(TEST_A, first.id) is None
        assert await tx.delivery_position(LIVE_A, "dlv_missing") is None
        place = await tx.delivery_position(LIVE_A, listed[5].id, endpoint_id=one.id)
        older, more = await tx.delivery_history(LIVE_A, endpoint_id=one.id, before=place, limit=3)
        assert (older, more) == (listed[6:9], True)
        newer, more = await tx.delivery_history(LIVE_A, endpoint_id=one.id, after=place, limit=3)
        assert (newer, more) == (listed[2:5], True)


# -- plans -------------------------------------------------------------------------------------

EVENTS = 6000
"""Events of company A (live); B has a quarter as many. Each of A's is delivered to two
endpoints, one delivery in a hundred failing and one in three hundred held."""


class Recorder:
    """The store's driver, keeping the statements it runs."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        self.statements.append((sql, args))
        rows: list[Row] = await self.driver.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        self.statements.append((sql, args))
        row: Row | None = await self.driver.fetchrow(sql, *args)
        return row


async def fill(store: Store) -> tuple[Endpoint, Endpoint]:
    await add_companies(store)
    one, two, theirs = make_endpoint(), make_endpoint(), make_endpoint()
    async with store.write() as tx:
        for tenant, endpoint in ((LIVE_A, one), (LIVE_A, two), (LIVE_B, theirs)):
            await tx.insert_endpoint(tenant, endpoint)
        db: Any = tx.db  # type: ignore[attr-defined]  # the SQL store's driver
        await db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)"
            " INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " SELECT 'evt_' || (1000000 + i), CASE WHEN i % 5 = 0 THEN $2 ELSE $3 END, 'live',"
            " CASE i % 4 WHEN 0 THEN 'customer.created' WHEN 1 THEN 'order.created'"
            " ELSE 'order.updated' END, $4, CAST($5 AS BIGINT) + i * 10 FROM n",
            EVENTS * 5 // 4,
            COMPANY_B,
            COMPANY_A,
            b"x" * 600,  # the size of a small event
            T0,
        )
        await db.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
            " event_type, attempts, next_attempt_at, created_at, updated_at)"
            " SELECT 'dlv_' || substr(ev.id, 5) || w.n, ev.id,"
            " CASE WHEN ev.company_id = $1 THEN $2 WHEN w.n = 1 THEN $3 ELSE $4 END,"
            " ev.company_id, 'live', CASE WHEN ev.seq % 100 = 0 THEN 'failed'"
            " WHEN ev.seq % 300 = 0 THEN 'held' ELSE 'succeeded' END, ev.type, 1, 0,"
            " ev.created_at, ev.created_at"
            " FROM events ev, (SELECT 1 AS n UNION ALL SELECT 2) w"
            " WHERE w.n = 1 OR ev.company_id <> $1",
            COMPANY_B,
            theirs.id,
            one.id,
            two.id,
        )
    if isinstance(store, PostgresStore):
        async with store.pool.acquire() as connection:
            await connection.execute("VACUUM (ANALYZE) events, deliveries, webhook_endpoints")
    else:
        async with store.write() as tx:
            await tx.db.execute("ANALYZE")  # type: ignore[attr-defined]
    return one, two


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", ()) for node in nodes(child))]


BIG = {"events", "deliveries"}
FEW = "deliveries_unsettled"


def big(relation: str | None) -> bool:
    """Whether ``relation`` is one of the big tables or one of their partitions."""
    return relation is not None and relation.split("_")[0] in BIG


async def plans(store: Store, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
    """Each statement's plan: on PostgreSQL the nodes of its custom and of its generic plan (the
    one a prepared statement settles on), on SQLite the lines of its query plan."""
    found: list[list[Any]] = []
    if isinstance(store, PostgresStore):
        async with store.pool.acquire() as connection:
            for sql, args in statements:
                both: list[Any] = []
                for generic in (False, True):
                    async with connection.transaction():
                        if generic:
                            await connection.execute(
                                "SET LOCAL plan_cache_mode = force_generic_plan"
                            )
                        text = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
                    both += nodes(orjson.loads(text)[0]["Plan"])
                found.append(both)
        return found
    async with store.read() as tx:
        for sql, args in statements:
            rows = await tx.db.fetch(f"EXPLAIN QUERY PLAN {sql}", *args)  # type: ignore[attr-defined]
            found.append([str(row["detail"]) for row in rows])
    return found


def index_alone_or_the_few(postgres: bool, plan: list[Any]) -> bool:
    """Whether each read of a big table reads an index alone, or deliveries_unsettled (the
    deliveries that are not succeeded)."""
    if postgres:
        bitmaps = {n["Index Name"] for n in plan if n["Node Type"] == "Bitmap Index Scan"}
        return all(
            node["Node Type"] == "Index Only Scan"
            or node.get("Index Name") == FEW
            or (node["Node Type"] == "Bitmap Heap Scan" and bitmaps <= {FEW})
            for node in plan
            if node.get("Relation Name") in BIG
        )
    return all(
        "COVERING INDEX" in line or FEW in line
        for line in plan
        if line.startswith(("SCAN", "SEARCH")) and line.split(" ")[1] in BIG
    )


def whole_table_read(postgres: bool, plan: list[Any]) -> bool:
    if postgres:
        return any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") in BIG for n in plan)
    return any(line.split(" ")[:2] in (["SCAN", "events"], ["SCAN", "deliveries"]) for line in plan)


async def test_counts_read_an_index_alone_and_nothing_reads_a_whole_table(store: Store) -> None:
    one, _ = await fill(store)
    type_filter = {"type": ("order.created",)}
    window = {"since": (str(T0 + 5000),), "until": (str(T0 + 9000),)}
    async with store.read() as tx:
        recorder = Recorder(tx.db)  # type: ignore[attr-defined]
        tx.db = recorder  # type: ignore[attr-defined]
        counted: list[int] = []
        for query in (
            ListQuery(page=40, limit=20),
            ListQuery(limit=20, filters=type_filter),
            ListQuery(limit=20, filters=window),
            ListQuery(limit=20, filters={**type_filter, **window}),
        ):
            await tx.list_events(LIVE_A, query)
            counted.append(len(recorder.statements) - 2)
        for statuses in (
            (),
            ("succeeded",),
            ("failed",),
            ("failed", "held"),
            ("succeeded", "held"),
        ):
            await tx.list_deliveries(
                LIVE_A, endpoint_id=one.id, statuses=statuses, page=30, limit=20
            )
            counted.append(len(recorder.statements) - 2)
        place = await tx.event_position(LIVE_A, "evt_1003001")
        await tx.events_from(LIVE_A, before=place, limit=20)
        await tx.events_from(LIVE_A, after=place, limit=20)
        await tx.events_from(LIVE_A, types=("order.created",), before=place, limit=20)
        spot = await tx.delivery_position(LIVE_A, "dlv_10030011", endpoint_id=one.id)
        assert spot is not None
        await tx.delivery_history(LIVE_A, endpoint_id=one.id, before=spot, limit=20)
        await tx.delivery_history(LIVE_A, endpoint_id=one.id, after=spot, limit=20)
        await tx.delivery_history(
            LIVE_A, endpoint_id=one.id, statuses=("failed",), before=spot, limit=20
        )
        statements = recorder.statements
    postgres = isinstance(store, PostgresStore)
    # PostgreSQL sums its kept counts, and counts a time filter within two days from the index
    # (store.sql.counts); SQLite counts from the index.
    kept = ("FROM event_counts", "FROM delivery_counts") if postgres else ()
    assert all(
        "COUNT(*)" in statements[n][0] or any(table in statements[n][0] for table in kept)
        for n in counted
    )
    if postgres:
        assert "FROM event_counts" in statements[counted[0]][0]
        assert all("FROM delivery_counts" in statements[n][0] for n in counted[4:])
    found = await plans(store, statements)
    for number, (plan, (sql, _)) in enumerate(zip(found, statements, strict=True)):
        assert not whole_table_read(postgres, plan), (sql, plan)
        if number in counted:
            assert index_alone_or_the_few(postgres, plan), (sql, plan)


def indexes_read(postgres: bool, plan: list[Any]) -> list[str]:
    """The indexes of the big tables a plan reads, by name (SQLite: its plan's lines)."""
    if postgres:
        return [
            str(node["Index Name"])
            for node in plan
            if big(node.get("Relation Name")) and "Index Name" in node
        ]
    return [line for line in plan if " INDEX " in line]


async def test_a_type_filter_and_the_chart_read_the_deliveries_indexes_alone(
    store: Store,
) -> None:
    """A delivery's event type is its own (migration 0011): the history filtered by a type
    reads ``deliveries_type`` and never ``events``; the chart reads two indexes, not the rows."""
    one, _ = await fill(store)
    async with store.read() as tx:
        recorder = Recorder(tx.db)  # type: ignore[attr-defined]
        tx.db = recorder  # type: ignore[attr-defined]
        found, _ = await tx.delivery_history(LIVE_A, event_type="order.created", limit=20)
        await tx.delivery_history(LIVE_A, event_type="order.created", endpoint_id=one.id)
        await tx.delivery_chart(LIVE_A, T0, T0 + 10**7)
        statements = recorder.statements
    assert found
    assert {delivery.event_type for delivery in found} == {"order.created"}
    assert not any(" events " in f"{sql} " or "JOIN events" in sql for sql, _ in statements)
    postgres = isinstance(store, PostgresStore)
    by_type, by_type_and_endpoint, chart = await plans(store, statements)
    for plan in (by_type, by_type_and_endpoint, chart):
        assert not whole_table_read(postgres, plan), plan
    assert any(
        "event_type" in name or "deliveries_type" in name
        for name in indexes_read(postgres, by_type)
    ), by_type
    read = indexes_read(postgres, chart)
    # (a partition's copy of deliveries_troubled is named ``…_company_id_mode_created_at_idx``)
    assert any("troubled" in name or name.endswith("mode_created_at_idx") for name in read), read
    if postgres:  # counted from the indexes alone: no row of the table is read
        assert all(
            node["Node Type"] == "Index Only Scan"
            for node in chart
            if big(node.get("Relation Name")) and "Index Name" in node
        ), chart
    else:
        assert any("COVERING INDEX deliveries_history" in line for line in read), read
        assert any("deliveries_troubled" in line for line in read), read
