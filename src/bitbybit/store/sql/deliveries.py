"""Deliveries as the API sees them: queued by the outbox, listed, retried by hand, recovered.

The delivery worker's side of the same tables (leases, attempts recorded) is ``queue.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bitbybit.ids import new_id
from bitbybit.models import Attempt, Delivery, Endpoint, Event, Page, Tenant
from bitbybit.store.sql.driver import Driver, Row, _in, _Where

MINUTE_MS = 60_000
_STATUSES = ("succeeded", "pending", "failed", "held")
"""Every status a delivery has; all but the first are the few (deliveries_unsettled)."""


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        endpoint_id=row["endpoint_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        row["number"],
        row["started_at"],
        row["latency_ms"],
        row["status_code"],
        row["error"],
        None if row["response_body"] is None else bytes(row["response_body"]),
    )


class DeliveriesSql:
    """Implements ``store.base.DeliveriesTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    # A delivery is pending exactly while it has a row in ``delivery_queue``, which holds when it
    # is due and who leases it. The worker's frequent writes go to that narrow table; a delivery's
    # own row changes once per attempt, and of its indexed columns only the status, once: when
    # the delivery settles (the dashboard's status filter, migration 0007).

    queue_key = "delivery_id"
    """The queue's key: SQLite keys it by target first (migration 0012)."""

    deliveries_created = False
    """Set when this transaction made deliveries pending, so the store wakes workers on commit."""
    woken: frozenset[str] | None = frozenset()
    """The endpoints those deliveries are for (``None``: not known), so a woken worker can claim
    for them at once instead of first asking which endpoints have work."""

    def _made_pending(self, endpoint_ids: frozenset[str] | None) -> None:
        self.deliveries_created = True
        self.woken = (
            None if endpoint_ids is None or self.woken is None else self.woken | endpoint_ids
        )

    async def queue_deliveries(
        self, tenant: Tenant, event: Event, endpoints: list[Endpoint], now: int
    ) -> list[str]:
        """One delivery of ``event`` per endpoint: pending, or held if the endpoint is suspended."""
        rows = [
            (
                new_id("dlv"),
                event.id,
                endpoint.id,
                tenant.company_id,
                tenant.mode,
                "pending" if endpoint.status == "active" else "held",
                now,
                event.type,
            )
            for endpoint in endpoints
        ]
        if not rows:
            return []
        await self._insert_deliveries(rows, now)
        pending = frozenset(row[2] for row in rows if row[5] == "pending")
        if pending:
            self._made_pending(pending)
        return [row[0] for row in rows]

    _DELIVERY_INSERT = (
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
        " event_type, attempts, next_attempt_at, created_at, updated_at)"
    )

    async def _insert_deliveries(self, rows: Sequence[tuple[Any, ...]], now: int) -> None:
        """The delivery rows, and a queue row for each pending one."""
        await self.db.executemany(
            self._DELIVERY_INSERT + " VALUES ($1, $2, $3, $4, $5, $6, $8, 0, $7, $7, $7)", rows
        )
        await self.db.executemany(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " VALUES ($1, $2, $3, 'webhook')",
            [(row[0], row[2], now) for row in rows if row[5] == "pending"],
        )

    # A delivery's own row holds all it shows, its event's type included (migration 0011):
    # listing a page never looks its events up.
    _DELIVERY_COLUMNS = (
        "d.id, d.event_id, d.event_type, d.endpoint_id, d.status, d.attempts,"
        " d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at"
    )

    async def get_delivery(self, tenant: Tenant, delivery_id: str) -> Delivery | None:
        row = await self.db.fetchrow(
            f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d"
            " WHERE d.company_id = $1 AND d.mode = $2 AND d.id = $3",
            tenant.company_id,
            tenant.mode,
            delivery_id,
        )
        return None if row is None else _delivery(row)

    @staticmethod
    def _listed(tenant: Tenant, endpoint_id: str | None, event_id: str | None) -> _Where:
        """The deliveries ``list_deliveries`` is about, before any status."""
        where = _Where(tenant)
        if endpoint_id is not None:
            # An endpoint's deliveries are all of its company and mode: the tenant is checked
            # once, on the endpoint (a constant to both planners, evaluated once), so that the
            # endpoint's deliveries are counted, and the rows OFFSET skips found, from
            # deliveries_endpoint alone: an index-only scan on PostgreSQL, a covering index on
            # SQLite, never the table.
            endpoint = where.param(endpoint_id)
            where.conditions = [
                f"EXISTS (SELECT 1 FROM webhook_endpoints we WHERE we.id = {endpoint}"
                " AND we.company_id = $1 AND we.mode = $2)",
                f"endpoint_id = {endpoint}",
            ]
        if event_id is not None:
            where.add(f"event_id = {where.param(event_id)}")
        return where

    @staticmethod
    def _in_statuses(where: _Where, statuses: Sequence[str]) -> None:
        if len(statuses) == 1:
            where.add(f"status = {where.param(statuses[0])}")
        else:
            where.add(f"status IN ({', '.join(where.param(s) for s in statuses)})")
        if "succeeded" not in statuses:
            # Written out, so that both planners see that deliveries_unsettled (the few that
            # are not succeeded) applies; it leads with the tenant, said here again.
            where.add("company_id = $1 AND mode = $2 AND status <> 'succeeded'")

    async def list_deliveries(
        self,
        tenant: Tenant,
        *,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        statuses: tuple[str, ...] = (),
        page: int = 1,
        limit: int = 100,
    ) -> Page:
        known = [s for s in _STATUSES if s in statuses]
        unknown = sorted(set(statuses) - set(_STATUSES))  # none is stored: they match nothing
        wanted = [] if len(known) == len(_STATUSES) else known + unknown
        total = await self._deliveries_total(tenant, endpoint_id, event_id, wanted)

        where = self._listed(tenant, endpoint_id, event_id)
        if wanted:
            self._in_statuses(where, wanted)
        limit_param = where.param(limit)
        offset_param = where.param((page - 1) * limit)
        # OFFSET skips ids alone; the page's rows alone are read whole.
        rows = await self.db.fetch(
            f"SELECT {self._DELIVERY_COLUMNS} FROM (SELECT id FROM deliveries WHERE {where.sql()}"
            f" ORDER BY created_at DESC, id DESC LIMIT {limit_param} OFFSET {offset_param}) shown"
            " JOIN deliveries d ON d.id = shown.id"
            " ORDER BY d.created_at DESC, d.id DESC",
            *where.args,
        )
        return Page([_delivery(row) for row in rows], total, page, limit)

    async def _deliveries_total(
        self,
        tenant: Tenant,
        endpoint_id: str | None,
        event_id: str | None,
        wanted: Sequence[str],
    ) -> int:
        """The number of ``list_deliveries``'s deliveries in the statuses ``wanted`` (none:
        all); PostgreSQL keeps counts (``store.sql.counts``)."""
        # The exact count, from an index alone for the bulk: the succeeded deliveries are
        # counted as all of them less the few others (read from deliveries_unsettled), never
        # by reading each one's status in the table.
        counted = self._listed(tenant, endpoint_id, event_id)
        if "succeeded" in wanted:
            others = self._listed(tenant, endpoint_id, event_id)
            self._in_statuses(others, [s for s in _STATUSES[1:] if s not in wanted])
            count_sql = (
                f"SELECT (SELECT COUNT(*) FROM deliveries WHERE {counted.sql()})"
                f" - (SELECT COUNT(*) FROM deliveries WHERE {others.sql()}) AS n"
            )
            count_args = others.args  # the same parameters, and the others' statuses after
        else:
            if wanted:
                self._in_statuses(counted, wanted)
            count_sql = f"SELECT COUNT(*) AS n FROM deliveries WHERE {counted.sql()}"
            count_args = counted.args
        count_row = await self.db.fetchrow(count_sql, *count_args)
        return int(count_row["n"]) if count_row is not None else 0

    async def delivery_position(
        self, tenant: Tenant, delivery_id: str, *, endpoint_id: str | None = None
    ) -> tuple[int, str] | None:
        where = _Where(tenant)
        where.add(f"id = {where.param(delivery_id)}")
        if endpoint_id is not None:
            where.add(f"endpoint_id = {where.param(endpoint_id)}")
        row = await self.db.fetchrow(
            f"SELECT created_at FROM deliveries WHERE {where.sql()}", *where.args
        )
        return None if row is None else (int(row["created_at"]), delivery_id)

    async def delivery_history(
        self,
        tenant: Tenant,
        *,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        statuses: tuple[str, ...] = (),
        since: int | None = None,
        until: int | None = None,
        before: tuple[int, str] | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[Delivery], bool]:
        if before is not None and after is not None:
            raise ValueError("a page is either before a cursor or after one, not both")
        where = _Where(tenant)
        where.conditions = ["d.company_id = $1", "d.mode = $2"]
        if event_type is not None:  # deliveries_type: a page's worth of rows, rare type or not
            where.add(f"d.event_type = {where.param(event_type)}")
        if endpoint_id is not None:
            where.add(f"d.endpoint_id = {where.param(endpoint_id)}")
        if len(statuses) == 1:  # an equality, so deliveries_unsettled gives them in order
            where.add(f"d.status = {where.param(statuses[0])}")
        elif statuses:
            where.add(self.db.in_texts("d.status", where.param(self.db.text_array(statuses))))
        if statuses and "succeeded" not in statuses:  # written out, so both planners see that
            where.add("d.status <> 'succeeded'")  # the partial deliveries_unsettled applies
        if since is not None:
            where.add(f"d.created_at >= {where.param(since)}")
        if until is not None:
            where.add(f"d.created_at < {where.param(until)}")
        direction = "DESC"
        if before is not None:
            where.add(
                f"(d.created_at, d.id) < ({where.param(before[0])}, {where.param(before[1])})"
            )
        elif after is not None:
            where.add(f"(d.created_at, d.id) > ({where.param(after[0])}, {where.param(after[1])})")
            direction = "ASC"
        rows = await self.db.fetch(
            f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d WHERE {where.sql()}"
            f" ORDER BY d.created_at {direction}, d.id {direction}"
            f" LIMIT {where.param(limit + 1)}",
            *where.args,
        )
        items = [_delivery(row) for row in rows[:limit]]
        if after is not None:
            items.reverse()
        return items, len(rows) > limit

    async def delivery_chart(
        self, tenant: Tenant, since: int, until: int
    ) -> list[tuple[int, int, int]]:
        # Deliveries counted from deliveries_history, failures from deliveries_troubled (the
        # failed, and those whose last attempt failed): two indexes, not the table's rows.
        in_window = "company_id = $1 AND mode = $2 AND created_at >= $3 AND created_at < $4"
        rows = await self.db.fetch(
            "SELECT minute, SUM(deliveries) AS deliveries, SUM(failures) AS failures FROM ("
            f"SELECT created_at / {MINUTE_MS} AS minute, COUNT(*) AS deliveries, 0 AS failures"
            f" FROM deliveries WHERE {in_window} GROUP BY created_at / {MINUTE_MS} UNION ALL"
            f" SELECT created_at / {MINUTE_MS}, 0, COUNT(*) FROM deliveries WHERE {in_window}"
            f" AND (status = 'failed' OR last_error IS NOT NULL) GROUP BY created_at / {MINUTE_MS}"
            ") counted GROUP BY minute ORDER BY minute",
            tenant.company_id,
            tenant.mode,
            since,
            until,
        )
        return [
            (int(row["minute"]) * MINUTE_MS, int(row["deliveries"]), int(row["failures"] or 0))
            for row in rows
        ]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self.db.fetch(
            "SELECT number, started_at, latency_ms, status_code, error, response_body"
            " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY number, seq",
            delivery_id,
        )
        return [attempt_from_row(row) for row in rows]

    async def requeue(self, delivery_ids: Sequence[str], now: int) -> int:
        """Make deliveries pending and due now (manual retry, recovery)."""
        if not delivery_ids:
            return 0
        touched = await self.db.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1"
            f" WHERE id IN ({_in(2, len(delivery_ids))})",
            now,
            *delivery_ids,
        )
        await self.db.execute(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind) SELECT id,"
            f" endpoint_id, $1, 'webhook' FROM deliveries WHERE id IN ({_in(2, len(delivery_ids))})"
            f" ON CONFLICT ({self.queue_key}) DO UPDATE SET due_at = excluded.due_at,"
            " lease_owner = NULL, lease_expires_at = NULL",
            now,
            *delivery_ids,
        )
        if touched:
            self._made_pending(None)
        return touched

    async def recoverable(self, endpoint_id: str, since: int | None) -> list[str]:
        """Deliveries reactivation re-queues: every held one, and failed ones since ``since``."""
        if since is None:
            rows = await self.db.fetch(
                "SELECT id FROM deliveries WHERE endpoint_id = $1 AND status = 'held'",
                endpoint_id,
            )
        else:
            rows = await self.db.fetch(
                "SELECT id FROM deliveries WHERE endpoint_id = $1 AND (status = 'held'"
                " OR (status = 'failed' AND updated_at >= $2))",
                endpoint_id,
                since,
            )
        return [row["id"] for row in rows]

    async def count_deliveries(self, status: str) -> int:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n FROM deliveries WHERE status = $1", status
        )
        return int(row["n"]) if row is not None else 0
