"""PostgreSQL's week partitions of the history tables (migration 0009, docs/retention.md).

``events``, ``deliveries`` and ``delivery_attempts`` are partitioned by range of id: an id begins
with its creation time (``ids.time_prefix``), so the rows made in one week (Monday to Monday,
UTC) have ids between two bounds. An event's partition is ``events_pYYYYMMDD`` (the week's
Monday); a delivery's and its attempts' are ``deliveries_pYYYYMMDD`` and
``delivery_attempts_pYYYYMMDD`` (both keyed by the delivery's id, and the attempts' partition
references the deliveries' of the same week, with ``ON DELETE CASCADE``). Beside the weeks:
``*_legacy``, what the database held when it was partitioned (up to the start of the next
week), and ``*_default``, any row no week covers (ids that do not begin with a time; a clock far
off).

Weeks, not days: every list query that cannot be narrowed by id (a company's deliveries, newest
first) is planned over every partition, and with a day each (38 for 30 days) planning alone took
4 ms and a rare-type filter went from an index walk to a hash join (docs/retention.md).

``make`` creates the weeks ahead, each made empty and attached (a lock on the parent that lets
reads and writes go on); ``drop`` drops a week whole once it is older than the cutoff and nothing
in it must stay (the rules of ``RetentionSql``: no delivery in flight, changed since the cutoff,
or made later for one of its events by a replay), and subtracts the week from the kept counts
(``store.sql.counts``) in the same transaction. What ``drop`` keeps, the batched sweep thins;
what it will drop, the sweep leaves to it (``Dropped.leave``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from bitbybit.ids import time_prefix
from bitbybit.store.sql import counts
from bitbybit.store.sql.driver import Driver

DAY_MS: Final = 24 * 60 * 60 * 1000
WEEK_MS: Final = 7 * DAY_MS
_MONDAY_MS: Final = 4 * DAY_MS  # 1970-01-05, a Monday: weeks are counted from there
TABLES: Final = ("events", "deliveries", "delivery_attempts")
"""In the order they are made; dropped the other way round (attempts first)."""
_PREFIX: Final = {"events": "evt", "deliveries": "dlv", "delivery_attempts": "dlv"}
_STORAGE: Final = {"deliveries": " WITH (fillfactor = 70)"}  # as the table had (0003)
_WEEK_NAME = re.compile(r"events_p(\d{8})")
_UPPER = re.compile(r"TO \('([^']*)'\)")
LOCK_TIMEOUT_MS: Final = 500
"""How long making or dropping a partition waits for its locks before giving up until the next
run: shorter than PostgreSQL's ``deadlock_timeout`` (1 s), so if a transaction of the API's is
waiting on us while we wait on it, ours is the one that gives way."""


@dataclass(frozen=True, slots=True)
class Week:
    """One week's partitions: ``suffix`` names them (``p20261130``, its Monday, or ``legacy``),
    ``start`` and ``end`` bound its ids' times (ms; ``start`` is ``None`` for the legacy
    partition, which holds everything before its end)."""

    suffix: str
    start: int | None
    end: int

    def name(self, table: str) -> str:
        return f"{table}_{self.suffix}"

    def bounds(self, table: str) -> tuple[str | None, str]:
        prefix = _PREFIX[table]
        low = None if self.start is None else f"{prefix}_{time_prefix(self.start)}"
        return low, f"{prefix}_{time_prefix(self.end)}"


def week_start(at: int) -> int:
    """The start (ms, a Monday's midnight, UTC) of the week ``at`` is in."""
    return at - (at - _MONDAY_MS) % WEEK_MS


def week_of(at: int) -> Week:
    """The week ``at`` (ms) is in."""
    start = week_start(at)
    return Week(f"p{datetime.fromtimestamp(start / 1000, UTC):%Y%m%d}", start, start + WEEK_MS)


async def _weeks(db: Driver) -> tuple[list[Week], str | None]:
    """The partitioned weeks there are, oldest first (the legacy partition, if still there,
    first), and the upper bound of the legacy events partition (``None`` once it is gone)."""
    rows = await db.fetch(
        "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    )
    weeks, legacy = [], None
    for row in rows:
        found = _WEEK_NAME.fullmatch(row["name"])
        if found is not None:
            monday = datetime.strptime(found[1], "%Y%m%d").replace(tzinfo=UTC)
            weeks.append(week_of(int(monday.timestamp() * 1000)))
        elif row["name"] == "events_legacy":
            upper = _UPPER.search(row["bound"])
            legacy = upper[1] if upper is not None else None
    weeks.sort(key=lambda week: week.end)
    if legacy is not None:
        weeks.insert(0, Week("legacy", None, _time_of(legacy.removeprefix("evt_"))))
    return weeks, legacy


def _time_of(stamp: str) -> int:
    """The milliseconds ``ids.time_prefix`` wrote as ``stamp``."""
    return int(stamp, 36)


async def make(db: Driver, now: int, ahead: int) -> list[str]:
    """Create the partitions of this week and the next ``ahead`` weeks that are missing (in this
    transaction); the suffixes of the weeks created. A week the legacy partition still covers is
    skipped, as is one the default partition holds rows of (attaching it would fail: those rows
    stay where they are, and the batched sweep removes them in time)."""
    await db.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
    weeks, legacy = await _weeks(db)
    have = {week.suffix for week in weeks}
    made = []
    for n in range(ahead + 1):
        week = week_of(now + n * WEEK_MS)
        low, _ = week.bounds("events")
        if week.suffix in have or (legacy is not None and low is not None and low < legacy):
            continue
        if await _default_holds(db, week):
            continue
        for table in TABLES:
            low, high = week.bounds(table)
            name = week.name(table)
            await db.execute(
                f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS){_STORAGE.get(table, '')}"
            )
            if table == "delivery_attempts":
                await db.execute(
                    f"ALTER TABLE {name} ADD CONSTRAINT {name}_delivery_id_fkey FOREIGN KEY"
                    f" (delivery_id) REFERENCES {week.name('deliveries')} (id) ON DELETE CASCADE"
                )
            await db.execute(
                f"ALTER TABLE {table} ATTACH PARTITION {name}"
                f" FOR VALUES FROM ('{low}') TO ('{high}')"
            )
        made.append(week.suffix)
    return made


async def _default_holds(db: Driver, week: Week) -> bool:
    """Whether the default partitions hold rows of ``week`` (a week made too late)."""
    for table in ("events", "deliveries"):
        low, high = week.bounds(table)
        row = await db.fetchrow(
            f"SELECT 1 AS x FROM {table}_default WHERE id >= $1 AND id < $2 LIMIT 1", low, high
        )
        if row is not None:
            return True
    return False


async def old_weeks(db: Driver, cutoff: int) -> tuple[list[Week], tuple[str, int] | None]:
    """The partitioned weeks (legacy included) that end at or before ``cutoff``, oldest first;
    and what the batched sweep must leave to ``drop`` (``Dropped.leave``): events with ids from
    the legacy partition's end on (``""`` once it is gone) created since the start of the week
    of the cutoff, whose week will go whole once it is older than the cutoff."""
    weeks, legacy = await _weeks(db)
    old = [week for week in weeks if week.end <= cutoff]
    return old, (legacy or "", week_start(cutoff))


async def keeps(db: Driver, week: Week, cutoff: int) -> str | None:
    """Why ``week`` must stay (``None``: nothing keeps it). The checks that read an index first
    (the small queue's, the other weeks' deliveries by event), then those that may read the
    week's own partitions whole (once a week has aged past the cutoff, and again each run while
    something keeps it)."""
    low, high = week.bounds("deliveries")
    if await db.fetchrow(
        "SELECT 1 AS x FROM delivery_queue WHERE kind = 'webhook'"
        f" AND delivery_id < $1{'' if low is None else ' AND delivery_id >= $2'} LIMIT 1",
        *([high] if low is None else [high, low]),
    ):
        return "a delivery in the queue"
    event_low, event_high = week.bounds("events")
    # A later week's delivery of one of this week's events (a replay): the other weeks are
    # read through their event_id index, this week's own partition is pruned away.
    elsewhere = "d.id >= $2" if low is None else "(d.id >= $2 OR d.id < $4)"
    args: list[str] = [event_high, high]
    if event_low is not None and low is not None:
        args += [event_low, low]
    if await db.fetchrow(
        f"SELECT 1 AS x FROM deliveries d WHERE d.event_id < $1"
        f"{'' if event_low is None else ' AND d.event_id >= $3'} AND {elsewhere} LIMIT 1",
        *args,
    ):
        return "a later delivery of one of its events (a replay)"
    deliveries = week.name("deliveries")
    if await db.fetchrow(
        f"SELECT 1 AS x FROM {deliveries} WHERE status IN ('pending', 'held') LIMIT 1"
    ) or await db.fetchrow(
        f"SELECT 1 AS x FROM {deliveries} WHERE updated_at >= $1 LIMIT 1", cutoff
    ):
        return "a delivery pending, held, or attempted or changed since the cutoff"
    if await db.fetchrow(
        f"SELECT 1 AS x FROM {week.name('events')} WHERE created_at >= $1 LIMIT 1", cutoff
    ):
        return "an event created since the cutoff"
    return None


async def drop(db: Driver, week: Week, cutoff: int) -> str | None:
    """Drop ``week``'s partitions, in this transaction, unless something keeps them (the reason
    is returned). The week's partitions are locked first against writes and row locks (plain
    reads go on), so what the checks find stays true until the drop: a replay locks its event
    (``FOR KEY SHARE``) before it queues the event again, and either holds that lock already
    (then this waits, and gives up at the lock timeout) or waits for the drop and then finds no
    event."""
    await db.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
    names = [week.name(table) for table in reversed(TABLES)]
    await db.execute(f"LOCK TABLE {', '.join(names)} IN EXCLUSIVE MODE")
    reason = await keeps(db, week, cutoff)
    if reason is not None:
        return reason
    await counts.forget(db, week.name("events"), week.name("deliveries"))
    await db.execute(f"DROP TABLE {', '.join(names)}")
    return None


async def default_rows(db: Driver, cap: int) -> dict[str, int]:
    """Rows in each default partition, counted up to ``cap``: there should be none (docs)."""
    counts = {}
    for table in TABLES:
        row = await db.fetchrow(
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {table}_default LIMIT $1) t", cap
        )
        counts[table] = 0 if row is None else int(row["n"])
    return counts
