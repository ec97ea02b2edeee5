"""Retention: what is older than ``BITBYBIT_RETENTION_DAYS`` goes; an export keeps a copy first.

Removed: events with their deliveries and the deliveries' attempts, and the jobs of other
channels (WhatsApp sends) with their attempts, once older than the retention period and settled.
Kept: anything in flight (a delivery pending, queued or held, or attempted or changed within the
period, keeps its event and its siblings; a pending job keeps itself) until it settles and ages
out, and the conversation record (messages, their statuses, templates, tickets), customers,
orders and products, which are the company's data rather than a log of it. Idempotency keys have
their own, shorter expiry (``services.idempotency``, 24 h).

A run removes in batches of ``BATCH`` rows looked at, each its own short write transaction with a
pause after it, so requests and the delivery worker get the database between batches (on SQLite
its one write lock). ``serve`` and ``worker`` run it in the background (``retaining``): a first run
shortly after start, then every ``BITBYBIT_RETENTION_EVERY`` seconds (± 20 %). On PostgreSQL one
run at a time goes ahead across every process (``Store.exclusively``: an advisory lock); the
others count a ``skipped`` run. docs/retention.md is the operator's side of it.

On PostgreSQL the history tables are partitioned by week (``store.partitions``): each run also
makes the weeks ahead and drops old weeks whole when nothing in them must stay, before the
batches sweep what is left (leaving alone the week of the cutoff, which goes whole later).

``export_events`` reads a tenant's events oldest first, a page per read, for
``bitbybit events export``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog
from prometheus_client import Counter, Gauge

from bitbybit.clock import iso, parse_iso, system_clock
from bitbybit.errors import NotFound, ValidationFailed
from bitbybit.models import Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.store.base import Dropped, Swept

DAY_MS: Final = 24 * 60 * 60 * 1000
BATCH: Final = 500
"""Rows one batch looks at (events of one tenant, or jobs): it removes at most that many, with
their deliveries and attempts (at most one delivery per endpoint each). Measured on SQLite (2
cores, shared): 500 events with 1,500 deliveries and 3,000 attempts in 10-18 ms, 1,000 with
twice that in 24-59 ms; the loop and the write lock are held that long."""
PAUSE: Final = 0.05
"""Seconds between two batches: at least the longest pause between another process's tries
for SQLite's write lock (``store.sqlite.LAST_PAUSE``), so its writers get their turn."""
FIRST_RUN_AFTER: Final = 30.0
"""Seconds after start before the first run (at most ``BITBYBIT_RETENTION_EVERY``), ± 20 %: the
process is serving by then, and processes started together spread out."""
PARTITIONS_AHEAD: Final = 2
"""Weeks ahead whose partitions exist (PostgreSQL): made at start and by every run, so a write
never finds its week missing while any process has run in the last two weeks."""
DEFAULT_ROWS_CAP: Final = 10_000
"""Rows counted in each default partition (there should be none: docs/retention.md)."""
EXPORT_PAGE: Final = 500
TABLES: Final = ("events", "deliveries", "delivery_attempts", "jobs", "job_attempts")
MODES: Final = ("live", "test")

RUNS = Counter(
    "bitbybit_retention_runs_total",
    "Retention runs by outcome: succeeded, failed, skipped (another process was running one)",
    ["outcome"],
)
REMOVED = Counter(
    "bitbybit_retention_removed_total", "Rows removed by retention, by table", ["table"]
)
PARTITIONS_DROPPED = Counter(
    "bitbybit_retention_partitions_dropped_total",
    "Weeks of history dropped whole by retention (PostgreSQL: a week's events, deliveries and"
    " attempts partitions together)",
)
PARTITIONS_KEPT = Gauge(
    "bitbybit_retention_partitions_kept",
    "Weeks past the retention period that the last run kept, because something in them is in"
    " flight or recent (PostgreSQL; the batched sweep thins them)",
)
DEFAULT_ROWS = Gauge(
    "bitbybit_partition_default_rows",
    "Rows in a history table's default partition, counted up to 10,000 (PostgreSQL; there"
    " should be none)",
    ["table"],
)
LAST_SUCCESS = Gauge(
    "bitbybit_retention_last_success_timestamp_seconds",
    "When this process's last retention run succeeded, in unix seconds (0: none yet)",
)
for _outcome in ("succeeded", "failed", "skipped"):
    RUNS.labels(_outcome)
for _table in TABLES:
    REMOVED.labels(_table)

log = structlog.get_logger("bitbybit.retention")


@dataclass(slots=True)
class Run:
    """One retention run: whether it went ahead, its cutoff (ms) and the rows it removed."""

    outcome: Literal["succeeded", "skipped", "off"]
    cutoff: int
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches: int = 0
    dropped: Dropped = field(default_factory=Dropped)
    """The weeks dropped whole, and those kept (PostgreSQL)."""

    def count(self, swept: Swept) -> None:
        self.batches += 1
        for table, rows in swept.removed.items():
            self.removed[table] = self.removed.get(table, 0) + rows
            REMOVED.labels(table).inc(rows)


async def run_once(platform: Platform, *, batch: int = BATCH, pause: float = PAUSE) -> Run:
    """Remove what is older than the retention period, now; counted and logged. ``off`` when
    the period is 0 (only the partitions ahead are made), ``skipped`` when another process is
    running it (PostgreSQL). A failure is counted, logged and raised; what earlier batches
    removed stays removed.

    On PostgreSQL a run first makes the partitions ahead, then drops the old weeks nothing keeps
    whole, then sweeps in batches what is left (the kept weeks, the legacy and default
    partitions), leaving the week of the cutoff to be dropped whole in turn."""
    days = platform.settings.retention_days
    if days == 0:
        await _try_making_partitions(platform)
        return Run("off", 0)
    run = Run("succeeded", platform.now() - days * DAY_MS)
    started = time.monotonic()
    try:
        async with platform.store.exclusively("retention") as mine:
            if not mine:
                RUNS.labels("skipped").inc()
                log.info("retention_skipped", reason="another process is running it")
                run.outcome = "skipped"
                return run
            await _make_partitions(platform)
            run.dropped = await platform.store.drop_partitions(run.cutoff)
            PARTITIONS_DROPPED.inc(len(run.dropped.weeks))
            PARTITIONS_KEPT.set(len(run.dropped.kept))
            await _remove_events(platform, run, batch, pause)
            await _remove_jobs(platform, run, batch, pause)
    except Exception as error:
        RUNS.labels("failed").inc()
        log.warning(
            "retention_failed",
            error=f"{type(error).__name__}: {error}",
            cutoff=iso(run.cutoff),
            batches=run.batches,
            weeks_dropped=run.dropped.weeks,
            **run.removed,
        )
        raise
    RUNS.labels("succeeded").inc()
    LAST_SUCCESS.set(platform.now() / 1000)
    log.info(
        "retention_run",
        cutoff=iso(run.cutoff),
        batches=run.batches,
        seconds=round(time.monotonic() - started, 3),
        weeks_dropped=run.dropped.weeks,
        weeks_kept=run.dropped.kept,
        **run.removed,
    )
    return run


async def make_partitions(platform: Platform) -> list[str]:
    """Make the partitions of this week and the next ``PARTITIONS_AHEAD`` weeks that are
    missing (PostgreSQL), unless another process is running retention (which makes them); the
    weeks made. ``serve`` and ``worker`` call it at start."""
    async with platform.store.exclusively("retention") as mine:
        return await _make_partitions(platform) if mine else []


async def _try_making_partitions(platform: Platform) -> None:
    try:
        await make_partitions(platform)
    except Exception as error:  # the runs try again; the default partition takes the rows
        log.warning("partitions_not_made", error=f"{type(error).__name__}: {error}")


async def _make_partitions(platform: Platform) -> list[str]:
    # The weeks of the ids' own clock: an id's time is the machine's, never a test's clock.
    made = await platform.store.make_partitions(system_clock(), PARTITIONS_AHEAD)
    if made:
        log.info("partitions_made", weeks=made)
    for table, rows in (await platform.store.default_partition_rows(DEFAULT_ROWS_CAP)).items():
        DEFAULT_ROWS.labels(table).set(rows)
    return made


async def _remove_events(platform: Platform, run: Run, batch: int, pause: float) -> None:
    """Each tenant's events in turn, oldest first, a batch per transaction."""
    async with platform.store.read() as tx:
        companies = await tx.list_companies()
    for company in companies:
        for mode in MODES:
            tenant = Tenant(company.id, mode)
            after: tuple[int, str] | None = None
            while True:
                async with platform.store.write() as tx:
                    swept = await tx.sweep_events(
                        tenant, run.cutoff, after, batch, run.dropped.leave
                    )
                run.count(swept)
                if not swept.more:
                    break
                after = swept.last
                await asyncio.sleep(pause)


async def _remove_jobs(platform: Platform, run: Run, batch: int, pause: float) -> None:
    after: tuple[int, str] | None = None
    while True:
        async with platform.store.write() as tx:
            swept = await tx.sweep_jobs(run.cutoff, after, batch)
        run.count(swept)
        if not swept.more:
            return
        after = swept.last
        await asyncio.sleep(pause)


async def _keep_removing(
    platform: Platform, every: float, rng: random.Random, stop: asyncio.Event
) -> None:
    # ``stop`` as well as the cancellation: on Python 3.11 an ``asyncio.wait_for`` that ends as
    # it is cancelled (asyncpg's, a connection's close) can swallow the cancellation, and the
    # loop would then go on for ever while ``retaining`` waits for it to end.
    pause = min(every, FIRST_RUN_AFTER)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause * rng.uniform(0.8, 1.2))
        if stop.is_set():
            return
        with contextlib.suppress(Exception):  # counted and logged; the next run tries again
            await run_once(platform)
        pause = every


@contextlib.asynccontextmanager
async def retaining(platform: Platform) -> AsyncIterator[None]:
    """Run retention in the background for the block (``serve``, ``worker``): the partitions
    ahead made at once (PostgreSQL), a first run shortly after start, then every
    ``BITBYBIT_RETENTION_EVERY`` seconds (± 20 %); when ``BITBYBIT_RETENTION_DAYS`` is 0 the runs
    only make partitions. Leaving the block stops it; a batch cut short rolls back, and the next
    run (of this or another process) takes it up."""
    settings = platform.settings
    await _try_making_partitions(platform)
    if settings.retention_days == 0:
        log.info("retention_off", reason="BITBYBIT_RETENTION_DAYS is 0: everything is kept")
    rng = random.Random()  # noqa: S311  # spreading runs out, not cryptography
    stop = asyncio.Event()
    task = asyncio.create_task(
        _keep_removing(platform, settings.retention_every, rng, stop), name="retention"
    )
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        await asyncio.wait([task])  # not ``await task``: that would swallow our own cancellation


# -- export ------------------------------------------------------------------------------------

_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
_SHORT = re.compile(r"(?:\d{1,9}[smhdw])+")
_SHORT_PART = re.compile(r"(\d{1,9})([smhdw])")
_ISO_DURATION = re.compile(
    r"P(?:(?P<w>\d{1,9})W)?(?:(?P<d>\d{1,9})D)?"
    r"(?:T(?:(?P<h>\d{1,9})H)?(?:(?P<m>\d{1,9})M)?(?:(?P<s>\d{1,9})S)?)?",
    re.IGNORECASE,
)


def duration_ms(text: str) -> int | None:
    """``7d``, ``36h``, ``1d12h``, ``90m``, ``2w`` or ISO-8601 ``P7D``, ``PT36H``, ``P1DT12H``
    in milliseconds; ``None`` when ``text`` is not a duration (years and months are not: their
    length varies)."""
    text = text.strip()
    if _SHORT.fullmatch(text.lower()):
        return sum(int(n) * _UNITS_MS[unit] for n, unit in _SHORT_PART.findall(text.lower()))
    found = _ISO_DURATION.fullmatch(text)
    if found is None or not any(found.groupdict().values()) or text.upper().endswith("T"):
        return None
    return sum(int(found[unit] or 0) * _UNITS_MS[unit] for unit in ("w", "d", "h", "m", "s"))


def point_in_time(text: str, now: int, name: str) -> int:
    """An ISO-8601 time (``2024-01-15T10:30:00Z``; without a zone: UTC) or a duration before
    ``now`` (``7d``: seven days ago) in milliseconds; a ``ValidationFailed`` naming ``name``
    otherwise."""
    ago = duration_ms(text)
    if ago is not None:
        return now - ago
    try:
        return parse_iso(text.strip())
    except (ValueError, OverflowError):
        raise ValidationFailed.field(
            name,
            f"{text!r} is neither an ISO-8601 time such as 2024-01-15T10:30:00Z nor a duration"
            " such as 7d, 12h, 1d12h or P7D",
        ) from None


async def export_events(
    platform: Platform,
    tenant: Tenant,
    since: int,
    until: int | None = None,
    *,
    page: int = EXPORT_PAGE,
) -> AsyncIterator[Event]:
    """The tenant's events created in ``[since, until)``, oldest first by ``(created_at, id)``.

    A page at a time, each its own short read (no transaction spans the export, and memory holds
    one page): an event created meanwhile with an older time than the page just read is missed,
    one removed by retention meanwhile is not read. ``NotFound`` for an unknown company."""
    if until is not None and until <= since:
        raise ValidationFailed.field("until", "must be later than since")
    async with platform.store.read() as tx:
        if await tx.get_company(tenant.company_id) is None:
            raise NotFound(f"no company {tenant.company_id}")
    after: tuple[int, str] | None = None
    while True:
        async with platform.store.read() as tx:
            events = await tx.export_events(tenant, since, until, after, page)
        for event in events:
            yield event
        if len(events) < page:
            return
        after = (events[-1].created_at, events[-1].id)
