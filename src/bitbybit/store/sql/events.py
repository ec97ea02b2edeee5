"""Events: the transactional outbox, written in the transaction of the change they announce."""

from __future__ import annotations

from collections.abc import Sequence

from bitbybit.models import Event, ListQuery, Page, Tenant
from bitbybit.store.sql.driver import ListsSql, Row, _Where

_NEWEST_FIRST = "created_at DESC, seq DESC"
"""The Open API's order of events: newest first, those of one instant (one transaction's) in the
order they were written."""


def _event(row: Row) -> Event:
    return Event(
        id=row["id"], type=row["type"], payload=bytes(row["payload"]), created_at=row["created_at"]
    )


class EventsSql(ListsSql):
    """Implements ``store.base.EventsTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    page_key = "seq"
    """The column a page of events is read back by, once its place is found: SQLite's rowid,
    which every index of the table ends with. PostgreSQL's ``events`` is partitioned by id
    (migration 0009), so there the id finds a row's partition and its primary key."""

    async def insert_event(self, tenant: Tenant, event: Event) -> None:
        await self.db.execute(
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            event.id,
            tenant.company_id,
            tenant.mode,
            event.type,
            event.payload,
            event.created_at,
        )

    async def insert_events(self, tenant: Tenant, events: Sequence[Event]) -> None:
        await self.db.executemany(
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (e.id, tenant.company_id, tenant.mode, e.type, e.payload, e.created_at)
                for e in events
            ],
        )

    async def get_event(self, tenant: Tenant, event_id: str, *, lock: bool = False) -> Event | None:
        row = await self.db.fetchrow(
            "SELECT id, type, payload, created_at FROM events"
            " WHERE company_id = $1 AND mode = $2 AND id = $3"
            + (self.db.key_share if lock else ""),
            tenant.company_id,
            tenant.mode,
            event_id,
        )
        return None if row is None else _event(row)

    async def list_events(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        total = await self._events_total(tenant, where, query)
        limit = where.param(query.limit)
        offset = where.param((query.page - 1) * query.limit)
        # The rows skipped by OFFSET are found by their place alone, and only the page's rows
        # are read whole (on SQLite every index of the table ends with seq, its rowid).
        rows = await self.db.fetch(
            "SELECT e.id, e.type, e.payload, e.created_at FROM events e JOIN"
            f" (SELECT {self.page_key} FROM events WHERE {where.sql()} ORDER BY {_NEWEST_FIRST}"
            f" LIMIT {limit} OFFSET {offset}) shown ON e.{self.page_key} = shown.{self.page_key}"
            " ORDER BY e.created_at DESC, e.seq DESC",
            *where.args,
        )
        return Page([_event(row) for row in rows], total, query.page, query.limit)

    async def _events_total(self, tenant: Tenant, where: _Where, query: ListQuery) -> int:
        """The number of events ``where`` (``query``'s filters) matches. Counted from
        events_company, or events_type with a type (on SQLite; PostgreSQL keeps counts:
        ``store.sql.counts``)."""
        row = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM events WHERE {where.sql()}", *where.args
        )
        return 0 if row is None else int(row["n"])

    async def event_position(self, tenant: Tenant, event_id: str) -> tuple[int, int] | None:
        row = await self.db.fetchrow(
            "SELECT created_at, seq FROM events WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            event_id,
        )
        return None if row is None else (int(row["created_at"]), int(row["seq"]))

    async def events_from(
        self,
        tenant: Tenant,
        *,
        types: tuple[str, ...] = (),
        since: int | None = None,
        until: int | None = None,
        before: tuple[int, int] | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 20,
    ) -> tuple[list[Event], bool]:
        if before is not None and after is not None:
            raise ValueError("a page is either before a place or after one, not both")
        where = _Where(tenant)
        if len(types) == 1:
            where.add(f"type = {where.param(types[0])}")
        elif types:
            where.add(f"type IN ({', '.join(where.param(t) for t in types)})")
        if since is not None:
            where.add(f"created_at >= {where.param(since)}")
        if until is not None:
            where.add(f"created_at <= {where.param(until)}")
        order = _NEWEST_FIRST
        # The bound on created_at alone, said besides the pair, is what both planners start the
        # index range from.
        if before is not None:
            at, seq = where.param(before[0]), where.param(before[1])
            where.add(f"created_at <= {at} AND (created_at, seq) < ({at}, {seq})")
        elif after is not None:
            at, seq = where.param(after[0]), where.param(after[1])
            where.add(f"created_at >= {at} AND (created_at, seq) > ({at}, {seq})")
            order = "created_at ASC, seq ASC"
        rows = await self.db.fetch(
            f"SELECT id, type, payload, created_at FROM events WHERE {where.sql()}"
            f" ORDER BY {order} LIMIT {where.param(limit + 1)}",
            *where.args,
        )
        items = [_event(row) for row in rows[:limit]]
        if after is not None:
            items.reverse()
        return items, len(rows) > limit

    async def event_history(
        self,
        tenant: Tenant,
        *,
        event_type: str | None = None,
        before: tuple[int, str] | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[Event], bool]:
        if before is not None and after is not None:
            raise ValueError("a page is either before a cursor or after one, not both")
        where = _Where(tenant)
        if event_type is not None:
            where.add(f"type = {where.param(event_type)}")
        direction = "DESC"
        if before is not None:
            where.add(f"(created_at, id) < ({where.param(before[0])}, {where.param(before[1])})")
        elif after is not None:
            where.add(f"(created_at, id) > ({where.param(after[0])}, {where.param(after[1])})")
            direction = "ASC"
        rows = await self.db.fetch(
            f"SELECT id, type, payload, created_at FROM events WHERE {where.sql()}"
            f" ORDER BY created_at {direction}, id {direction} LIMIT {where.param(limit + 1)}",
            *where.args,
        )
        items = [_event(row) for row in rows[:limit]]
        if after is not None:
            items.reverse()
        return items, len(rows) > limit
