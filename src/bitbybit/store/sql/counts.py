"""PostgreSQL's kept counts of events and deliveries (migration 0010,
docs/adr/0011-kept-counts.md): the exact ``total`` of a numbered page, read from a few rows
instead of counted over a company's history.

Triggers add a row per key a statement changed to ``event_count_changes`` (company, mode, type,
UTC day of ``created_at``) and ``delivery_count_changes`` (company, mode, endpoint, status);
``fold`` moves them into ``event_counts`` and ``delivery_counts``, a row a key, every few
seconds. A total is the sum of its keys' rows in both, read in the page's own snapshot
(``store.read(snapshot=True)``): the rows and their count agree. Dropping a week's partitions
subtracts the week's counts in the drop's transaction (``forget``).

SQLite keeps no counts: it counts what a page asks for from an index, as before (the ADR says
why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bitbybit.models import ListQuery, Tenant
from bitbybit.store.sql.driver import Driver, _Where

DAY_MS: Final = 24 * 60 * 60 * 1000
FOLD_ROWS: Final = 50_000
"""Changes one fold moves at most, of each table: a fold stays short, and the next goes on."""
_COUNTED_FILTERS: Final = frozenset({"type", "since", "until"})
"""The filters of an events list the counts answer; any other is counted from the table."""
_FOLD_LOCK: Final = "bitbybit.fold_counts"
_KEYS: Final = {
    "event_counts": "company_id, mode, type, day",
    "delivery_counts": "company_id, mode, endpoint_id, status",
}
"""Each count table and its key; its changes are in ``<table without s>_changes``."""


def _summed(table: str, where: str) -> str:
    """SQL for the sum of ``table``'s counts and changes that ``where`` matches."""
    return (
        f"(SELECT COALESCE(SUM(n), 0) FROM {table} WHERE {where})"
        f" + (SELECT COALESCE(SUM(n), 0) FROM {_changes(table)} WHERE {where})"
    )


def _changes(table: str) -> str:
    return f"{table.removesuffix('s')}_changes"


async def events_total(db: Driver, tenant: Tenant, query: ListQuery) -> int | None:
    """The number of ``tenant``'s events ``query`` matches, from the counts (whole days) and the
    index (the part of a day at either end of a time filter); ``None`` where the counts do not
    answer: a filter they do not keep, or a time filter within two days (counted from the index
    whole)."""
    if query.search or not set(query.filters) <= _COUNTED_FILTERS:
        return None
    types = list(query.filters.get("type") or ())
    since = int(query.filters["since"][0]) if query.filters.get("since") else None
    until = int(query.filters["until"][0]) if query.filters.get("until") else None
    first = None if since is None else -(-since // DAY_MS)  # the first whole day
    last = None if until is None else (until + 1) // DAY_MS - 1  # the last whole day
    if first is not None and last is not None and first > last:
        return None
    counted = _Where(tenant)
    if types:
        counted.add(f"type = ANY({counted.param(types)}::text[])")
    if first is not None:
        counted.add(f"day >= {counted.param(first)}")
    if last is not None:
        counted.add(f"day <= {counted.param(last)}")
    parts = [_summed("event_counts", counted.sql())]
    edges = []
    if since is not None and first is not None and since < first * DAY_MS:
        edges.append((since, first * DAY_MS - 1))
    if until is not None and last is not None and until >= (last + 1) * DAY_MS:
        edges.append(((last + 1) * DAY_MS, until))
    for low, high in edges:
        kind = "" if not types else f" AND type = ANY({counted.param(types)}::text[])"
        parts.append(
            f"(SELECT COUNT(*) FROM events WHERE company_id = $1 AND mode = $2{kind}"
            f" AND created_at >= {counted.param(low)} AND created_at <= {counted.param(high)})"
        )
    row = await db.fetchrow(f"SELECT {' + '.join(parts)} AS n", *counted.args)
    return 0 if row is None else int(row["n"])


async def deliveries_total(
    db: Driver, tenant: Tenant, endpoint_id: str | None, statuses: Sequence[str]
) -> int:
    """The number of ``tenant``'s deliveries (to ``endpoint_id``, in ``statuses``; either
    empty: all), from the counts."""
    counted = _Where(tenant)
    if endpoint_id is not None:
        counted.add(f"endpoint_id = {counted.param(endpoint_id)}")
    if statuses:
        counted.add(f"status = ANY({counted.param(list(statuses))}::text[])")
    row = await db.fetchrow(
        f"SELECT {_summed('delivery_counts', counted.sql())} AS n", *counted.args
    )
    return 0 if row is None else int(row["n"])


async def fold(db: Driver, rows: int = FOLD_ROWS) -> int:
    """Move up to ``rows`` changes of each count into its counts, in this transaction (a key
    whose count comes to nothing goes); the changes moved. Skipped (0) while another fold runs:
    two would wait on each other's rows.

    Changes a concurrent statement adds meanwhile are not in this statement's snapshot: they are
    neither read nor deleted, and wait for the next fold. No sum changes, in any snapshot: the
    changes go and the counts take them in one commit."""
    locked = await db.fetchrow(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || current_schema(), 0))"
        " AS mine",
        _FOLD_LOCK,
    )
    if locked is None or not locked["mine"]:
        return 0
    moved = 0
    for table, key in _KEYS.items():
        columns = key.split(", ")
        # One statement: the changes go, their sums per key come into the counts; answered:
        # the keys whose count came to nothing, and (a row of its own) the changes moved.
        zero = await db.fetch(
            f"WITH gone AS (DELETE FROM {_changes(table)} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {_changes(table)} LIMIT {int(rows)})) RETURNING {key}, n),"
            f" summed AS (SELECT {key}, SUM(n) AS n, COUNT(*) AS rows FROM gone GROUP BY {key}),"
            f" kept AS (INSERT INTO {table} AS c ({key}, n) SELECT {key}, n FROM summed"
            f" WHERE n <> 0 ON CONFLICT ({key}) DO UPDATE SET n = c.n + EXCLUDED.n"
            f" RETURNING {key}, n)"
            f" SELECT {key}, NULL AS moved FROM kept WHERE n = 0"
            f" UNION ALL SELECT {', '.join('NULL' for _ in columns)}, COALESCE(SUM(rows), 0)"
            " FROM summed"
        )
        moved += sum(int(row["moved"] or 0) for row in zero)
        gone = [row for row in zero if row["moved"] is None]
        if gone:  # keys whose count came to nothing (an endpoint deleted, a week dropped)
            await db.execute(
                f"DELETE FROM {table} WHERE ({key}) IN (SELECT * FROM unnest("
                + ", ".join(f"${n + 1}::text[]" for n in range(len(columns) - 1))
                + f", ${len(columns)}::{'int' if table == 'event_counts' else 'text'}[]))"
                " AND n = 0",
                *([row[column] for row in gone] for column in columns),
            )
    return moved


async def forget(db: Driver, events: str, deliveries: str) -> None:
    """Subtract the rows of the partitions ``events`` and ``deliveries`` from the counts, in
    the transaction that drops them (a dropped table fires no trigger); the caller holds them
    locked against writes."""
    await db.execute(
        "INSERT INTO event_count_changes (company_id, mode, type, day, n)"
        f" SELECT company_id, mode, type, (created_at / {DAY_MS})::int, -COUNT(*)"
        f" FROM {events} GROUP BY 1, 2, 3, 4"
    )
    await db.execute(
        "INSERT INTO delivery_count_changes (company_id, mode, endpoint_id, status, n)"
        f" SELECT company_id, mode, endpoint_id, status, -COUNT(*) FROM {deliveries}"
        " GROUP BY 1, 2, 3, 4"
    )
