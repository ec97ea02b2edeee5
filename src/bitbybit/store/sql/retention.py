"""Retention (``store.base.RetentionTx``): old events with their deliveries and attempts, and old
settled jobs with theirs, removed one bounded batch per transaction; and the pages of an events
export.

A batch first *looks* at up to ``limit`` rows older than the cutoff, oldest first after a
``(created_at, id)`` cursor, and notes which of them something keeps (work in flight, or activity
since the cutoff). The ones nothing keeps are then locked with that condition checked again
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so a row another transaction is changing, a manual
retry say, is left for the next run instead of waited for) and removed children first:
attempts, deliveries, then the events that no delivery names any more. Each statement takes
its ids as one array parameter (``Driver.in_texts``), so a batch is the same few statements
whatever its size.

Events are looked up per tenant through ``events_company (company_id, mode, created_at)``, the
index the API's lists already keep, so retention adds no index (and no write) to the API's write
path; jobs, written at the pace of WhatsApp sends, through ``jobs_created (created_at, id)``
(migration 0008).
"""

from __future__ import annotations

from typing import Any

from bitbybit.models import Event, Tenant
from bitbybit.store.base import Swept
from bitbybit.store.sql.driver import Driver, Row
from bitbybit.store.sql.queue import TARGET_COLUMN

_SETTLED = "status NOT IN ('pending', 'held') AND updated_at < $2"
"""What lets a delivery or a job go (``$2``: the cutoff), beside having no queue row: it is
neither pending nor held, and was not attempted or changed (a retry by hand, a hold) at or after
the cutoff."""


def _event(row: Row) -> Event:
    return Event(
        id=row["id"], type=row["type"], payload=bytes(row["payload"]), created_at=row["created_at"]
    )


def _swept(rows: list[Row], limit: int, removed: dict[str, int]) -> Swept:
    last = (int(rows[-1]["created_at"]), str(rows[-1]["id"])) if rows else None
    return Swept(
        removed={k: v for k, v in removed.items() if v}, last=last, more=len(rows) >= limit
    )


class RetentionSql:
    """Implements ``store.base.RetentionTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    def _locked(self) -> str:
        """The locking clause for the rows a batch removes: ``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL, nothing on SQLite (its writers take turns)."""
        return f"{self.db.for_update} SKIP LOCKED" if self.db.for_update else ""

    async def _queued(self, table: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` (deliveries or jobs, in ``table``) have a queue row: in flight,
        whatever their status says. Asked by the list, so each is one primary-key lookup (as a
        subquery per row, PostgreSQL may choose to read and hash the whole queue instead).
        SQLite keys the queue by target first, and asks through ``table``."""
        if not ids:
            return set()
        rows = await self.db.fetch(
            f"SELECT delivery_id FROM delivery_queue WHERE {self.db.in_texts('delivery_id', '$1')}",
            self.db.text_array(ids),
        )
        return {row["delivery_id"] for row in rows}

    async def _lock_settled(self, table: str, ids: list[str], cutoff: int) -> list[str]:
        """Those of ``ids`` in ``table`` still settled, old and unqueued, locked for removal."""
        if not ids:
            return []
        rows = await self.db.fetch(
            f"SELECT id FROM {table} t WHERE {self.db.in_texts('t.id', '$1')} AND {_SETTLED}"
            " AND NOT EXISTS (SELECT 1 FROM delivery_queue q"
            f" WHERE q.target = t.{TARGET_COLUMN[table]} AND q.delivery_id = t.id)"
            f"{self._locked()}",
            self.db.text_array(ids),
            cutoff,
        )
        return [row["id"] for row in rows]

    async def sweep_events(
        self,
        tenant: Tenant,
        cutoff: int,
        after: tuple[int, str] | None,
        limit: int,
        leave: tuple[str, int] | None = None,
    ) -> Swept:
        args: list[Any] = [tenant.company_id, tenant.mode, cutoff, limit]
        where = "company_id = $1 AND mode = $2 AND created_at < $3"
        if after is not None:
            # The plain bound lets the index start at the cursor; the row value breaks ties.
            where += " AND created_at >= $5 AND (created_at, id) > ($5, $6)"
            args += [after[0], after[1]]
        if leave is not None:  # a week that will be dropped whole (PostgreSQL's partitions)
            args += [leave[0], leave[1]]
            where += f" AND (id < ${len(args) - 1} OR created_at < ${len(args)})"
        rows = await self.db.fetch(
            f"SELECT id, created_at FROM events WHERE {where} ORDER BY created_at, id LIMIT $4",
            *args,
        )
        removed = {"events": 0, "deliveries": 0, "delivery_attempts": 0}
        if rows:
            removed.update(await self._remove_events([row["id"] for row in rows], cutoff))
        return _swept(rows, limit, removed)

    async def _remove_events(self, event_ids: list[str], cutoff: int) -> dict[str, int]:
        """Remove those of ``event_ids`` none of whose deliveries keeps them, with the
        deliveries and their attempts."""
        found = await self.db.fetch(
            f"SELECT id, event_id, ({_SETTLED}) AS settled FROM deliveries"
            f" WHERE {self.db.in_texts('event_id', '$1')}",
            self.db.text_array(event_ids),
            cutoff,
        )
        settled = [row["id"] for row in found if row["settled"]]
        queued = await self._queued("deliveries", settled)
        kept = {row["event_id"] for row in found if not row["settled"] or row["id"] in queued}
        free = [event_id for event_id in event_ids if event_id not in kept]
        if not free:
            return {}
        events = await self.db.fetch(
            f"SELECT id FROM events WHERE {self.db.in_texts('id', '$1')}{self._locked()}",
            self.db.text_array(free),
        )
        if not events:
            return {}
        # Under the events' locks no delivery can be added to them (a replay locks the event it
        # queues again, FOR KEY SHARE, which waits for ours): read their deliveries again, lock the
        # ones still settled, and remove an event only with every one of its deliveries (a
        # delivery made pending since the look, by a retry by hand, keeps its event whole).
        of_event: dict[str, list[str]] = {row["id"]: [] for row in events}
        for row in await self.db.fetch(
            f"SELECT id, event_id FROM deliveries WHERE {self.db.in_texts('event_id', '$1')}",
            self.db.text_array(list(of_event)),
        ):
            of_event[row["event_id"]].append(row["id"])
        lockable = set(
            await self._lock_settled(
                "deliveries", [d for ids in of_event.values() for d in ids], cutoff
            )
        )
        whole = sorted(e for e, ids in of_event.items() if all(d in lockable for d in ids))
        if not whole:
            return {}
        deliveries = [d for e in whole for d in of_event[e]]
        removed = {}
        if deliveries:
            delivery_ids = self.db.text_array(deliveries)
            removed["delivery_attempts"] = await self.db.execute(
                f"DELETE FROM delivery_attempts WHERE {self.db.in_texts('delivery_id', '$1')}",
                delivery_ids,
            )
            removed["deliveries"] = await self.db.execute(
                f"DELETE FROM deliveries WHERE {self.db.in_texts('id', '$1')}", delivery_ids
            )
        removed["events"] = await self.db.execute(
            f"DELETE FROM events WHERE {self.db.in_texts('id', '$1')}"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
            self.db.text_array(whole),
        )
        return removed

    async def sweep_jobs(self, cutoff: int, after: tuple[int, str] | None, limit: int) -> Swept:
        args: list[Any] = [limit, cutoff]
        where = "created_at < $2"
        if after is not None:
            where += " AND created_at >= $3 AND (created_at, id) > ($3, $4)"
            args += [after[0], after[1]]
        rows = await self.db.fetch(
            f"SELECT id, created_at, ({_SETTLED}) AS settled FROM jobs"
            f" WHERE {where} ORDER BY created_at, id LIMIT $1",
            *args,
        )
        removed = {"jobs": 0, "job_attempts": 0}
        settled = [row["id"] for row in rows if row["settled"]]
        queued = await self._queued("jobs", settled)
        jobs = await self._lock_settled("jobs", [j for j in settled if j not in queued], cutoff)
        if jobs:
            job_ids = self.db.text_array(jobs)
            removed["job_attempts"] = await self.db.execute(
                f"DELETE FROM job_attempts WHERE {self.db.in_texts('job_id', '$1')}", job_ids
            )
            removed["jobs"] = await self.db.execute(
                f"DELETE FROM jobs WHERE {self.db.in_texts('id', '$1')}", job_ids
            )
        return _swept(rows, limit, removed)

    async def export_events(
        self,
        tenant: Tenant,
        since: int,
        until: int | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Event]:
        args: list[Any] = [tenant.company_id, tenant.mode, since, limit]
        where = "company_id = $1 AND mode = $2 AND created_at >= $3"
        if until is not None:
            args.append(until)
            where += f" AND created_at < ${len(args)}"
        if after is not None:
            args += [after[0], after[1]]
            first, second = len(args) - 1, len(args)
            where += f" AND created_at >= ${first} AND (created_at, id) > (${first}, ${second})"
        rows = await self.db.fetch(
            f"SELECT id, type, payload, created_at FROM events WHERE {where}"
            " ORDER BY created_at, id LIMIT $4",
            *args,
        )
        return [_event(row) for row in rows]
