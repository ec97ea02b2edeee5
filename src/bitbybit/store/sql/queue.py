"""The delivery worker's side of the queue: which targets have work, leases, attempts recorded.

Shared by every kind of job (ADR 0008): webhook deliveries and the jobs of other channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitbybit.models import WEBHOOK, AttemptResult, Job, QueueStats, Recorded, SuspensionRule
from bitbybit.store.sql.driver import Driver, Row, _in


def job_from_row(row: Row) -> Job:
    """A claimed job from a row of the claim (webhook columns are NULL for other kinds)."""
    if row["kind"] != WEBHOOK:
        return Job(row["id"], row["kind"], row["target"], row["attempts"], bytes(row["payload"]))
    return Job(
        delivery_id=row["id"],
        kind=WEBHOOK,
        target=row["target"],
        attempts=row["attempts"],
        payload=bytes(row["payload"]),
        event_id=row["event_id"],
        event_type=row["type"],
        url=row["url"],
        secret=row["secret"],
        next_secret=row["next_secret"],
        next_secret_at=row["next_secret_at"],
        multi_signature=bool(row["multi_signature"]),
    )


TARGET_COLUMN = {"deliveries": "endpoint_id", "jobs": "target"}
"""The column of each table of jobs that holds its queue row's target (SQLite keys the queue,
and the deliveries, by it first: migration 0012)."""


def succeeded_endpoints(results: Sequence[AttemptResult]) -> list[str]:
    """Endpoints with a success among ``results``, in a stable order (lock order)."""
    return sorted({r.target for r in results if r.status == "succeeded" and r.kind == WEBHOOK})


class QueueSql:
    """Implements ``store.base.QueueTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    if TYPE_CHECKING:  # from EndpointsSql: suspending an endpoint holds its deliveries

        async def hold_pending(self, endpoint_id: str, now: int) -> int: ...
        async def lock_endpoints(self, endpoint_ids: Sequence[str]) -> None: ...

    async def due_targets(self, now: int) -> list[str]:
        """Targets with at least one job due and not leased (a lease that ran out, say of a
        worker that died, no longer counts): active endpoints, and the targets of pending jobs
        of other kinds. (Each asked by index: the queue is never scanned whole.)"""
        rows = await self.db.fetch(
            "SELECT e.id FROM webhook_endpoints e WHERE e.status = 'active' AND EXISTS ("
            "SELECT 1 FROM delivery_queue q WHERE q.target = e.id AND q.due_at <= $1"
            " AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $1))"
            " UNION SELECT j.target FROM (SELECT DISTINCT target FROM jobs"
            " WHERE status = 'pending') j WHERE EXISTS (SELECT 1 FROM delivery_queue q"
            " WHERE q.target = j.target AND q.due_at <= $1"
            " AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $1))",
            now,
        )
        return [row["id"] for row in rows]

    async def release(self, owner: str, jobs: Sequence[Job], now: int) -> None:
        """Give leases back unattempted (graceful shutdown): claimable again at once."""
        await self.db.executemany(
            "UPDATE delivery_queue SET lease_owner = NULL, lease_expires_at = NULL"
            " WHERE target = $1 AND delivery_id = $2 AND lease_owner = $3",
            [(job.target, job.delivery_id, owner) for job in jobs],
        )

    async def record_attempts(
        self, owner: str, results: Sequence[AttemptResult], now: int, rule: SuspensionRule
    ) -> Recorded:
        """Record attempts and their outcomes, each in its own storage, and suspend the endpoints
        ``rule`` says to (the rule is the delivery policy's; this applies it)."""
        if not results:
            return Recorded([], [])
        webhooks = [r for r in results if r.kind == WEBHOOK]
        others = [r for r in results if r.kind != WEBHOOK]
        kept: set[str] = set()
        if webhooks:
            kept.update(await self._write_results(owner, webhooks, now))
        if others:
            kept.update(await self._write_job_results(owner, others, now))
        reasons: dict[str, str] = {}  # the endpoints to suspend, each with its first reason
        for result in webhooks:
            if result.delivery_id not in kept:
                continue
            exhausted = None
            if rule.counts(result):
                row = await self.db.fetchrow(
                    "UPDATE webhook_endpoints SET exhausted_in_row = exhausted_in_row + 1"
                    " WHERE id = $1 RETURNING exhausted_in_row",
                    result.target,
                )
                exhausted = None if row is None else int(row["exhausted_in_row"])
            reason = rule.reason(result, exhausted)
            if reason is not None:
                reasons.setdefault(result.target, reason)
        suspended = await self._suspend(reasons, now)
        vanished = [r.delivery_id for r in results if r.delivery_id not in kept]
        return Recorded(suspended, vanished)

    async def _suspend(self, reasons: dict[str, str], now: int) -> list[str]:
        """Suspend the active ones among these endpoints and hold their deliveries. All are
        locked first, in one statement and in the fan-out's order, so that a suspension and a
        fan-out never each wait for the other."""
        await self.lock_endpoints(list(reasons))
        suspended: list[str] = []
        for target, reason in reasons.items():
            touched = await self.db.execute(
                "UPDATE webhook_endpoints SET status = 'suspended', status_reason = $2,"
                " updated_at = $3 WHERE id = $1 AND status = 'active'",
                target,
                reason,
                now,
            )
            if touched:
                await self.hold_pending(target, now)
                suspended.append(target)
        return suspended

    async def _write_job_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        """Attempt rows, the jobs' new state and their queue rows; returns the jobs recorded
        (``_write_results`` for the jobs of other channels). PostgreSQL does it in one
        statement."""
        recorded = await self._write_outcomes("jobs", "job_attempts", owner, results, now)
        await self._settle_queue(owner, recorded)
        return [r.delivery_id for r in recorded]

    async def _settle_queue(self, owner: str, results: Sequence[AttemptResult]) -> None:
        """The queue rows of recorded results that this worker still leases: rescheduled for
        a retry, gone when the job is done."""
        await self.db.executemany(
            "UPDATE delivery_queue SET due_at = $3, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE target = $1 AND delivery_id = $2 AND lease_owner = $4",
            [
                (r.target, r.delivery_id, r.next_attempt_at, owner)
                for r in results
                if r.status == "pending"
            ],
        )
        await self.db.executemany(
            "DELETE FROM delivery_queue"
            " WHERE target = $1 AND delivery_id = $2 AND lease_owner = $3",
            [(r.target, r.delivery_id, owner) for r in results if r.status != "pending"],
        )

    async def _write_outcomes(
        self,
        table: str,
        history: str,
        owner: str,
        results: Sequence[AttemptResult],
        now: int,
    ) -> list[AttemptResult]:
        """The attempt rows and the new state of jobs kept in ``table`` (``deliveries`` or
        ``jobs``, with their attempts in ``history``); returns the results recorded: a job
        deleted meanwhile (a delivery, with its endpoint) is skipped.

        An outcome counts only while this worker still holds the lease: if the lease ran out and
        another worker claimed the job, that worker's attempt decides (this one is still
        recorded as an attempt).
        """
        # Writers are serialised (BEGIN IMMEDIATE), so what exists now still exists at commit.
        found = await self.db.fetch(
            f"SELECT id FROM {table} WHERE id IN ({_in(1, len(results))})",
            *(r.delivery_id for r in results),
        )
        existing = {row["id"] for row in found}
        kept = [r for r in results if r.delivery_id in existing]
        key = "delivery_id" if table == "deliveries" else "job_id"
        target = TARGET_COLUMN[table]
        await self.db.executemany(
            f"INSERT INTO {history} ({key}, number, started_at, latency_ms, status_code, error,"
            " response_body, worker) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (
                    r.delivery_id,
                    r.number,
                    r.started_at,
                    r.latency_ms,
                    r.status_code,
                    r.error,
                    r.response_body,
                    owner,
                )
                for r in kept
                if not r.deferred
            ],
        )
        await self.db.executemany(
            f"UPDATE {table} SET status = $2, attempts = $3, next_attempt_at = $4,"
            f" last_status_code = $5, last_error = $6, updated_at = $7 WHERE {target} = $9"
            " AND id = $1 AND EXISTS (SELECT 1 FROM delivery_queue"
            " WHERE target = $9 AND delivery_id = $1 AND lease_owner = $8)",
            [
                (
                    r.delivery_id,
                    r.status,
                    r.number,
                    r.next_attempt_at,
                    r.status_code,
                    r.error,
                    now,
                    owner,
                    r.target,
                )
                for r in kept
            ],
        )
        return kept

    _ATTEMPT_INSERT = (
        "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
        " status_code, error, response_body, worker)"
    )

    async def _write_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        """Attempt rows, the deliveries' new state and their queue rows; a success also ends
        its endpoint's run of exhausted events. Returns the deliveries recorded: a delivery
        deleted meanwhile (with its endpoint) is skipped.

        An outcome counts only while this worker still holds the lease: if the lease ran out and
        another worker claimed the delivery, that worker's attempt decides (this one is still
        recorded as an attempt).
        """
        results = await self._write_outcomes("deliveries", "delivery_attempts", owner, results, now)
        await self._settle_queue(owner, results)
        await self.db.executemany(
            "UPDATE webhook_endpoints SET exhausted_in_row = 0"
            " WHERE id = $1 AND exhausted_in_row <> 0",
            [(endpoint_id,) for endpoint_id in succeeded_endpoints(results)],
        )
        return [r.delivery_id for r in results]

    async def queue_stats(self, now: int) -> QueueStats:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS pending,"
            " SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END) AS due,"
            " MIN(CASE WHEN due_at <= $1 THEN due_at END) AS oldest FROM delivery_queue",
            now,
        )
        if row is None:
            return QueueStats(0, 0, None)
        return QueueStats(int(row["pending"]), int(row["due"] or 0), row["oldest"])

    async def queue_stats_by_target(self, limit: int) -> list[tuple[str, int, int | None]]:
        """The ``limit`` targets with the most pending jobs (due or not), most first: each with
        its pending count and when its oldest pending job was created (ms; ``None`` if that job
        is gone meanwhile). One statement: the queue grouped by target, and only each target's
        oldest job (the smallest id: ids begin with their creation time) looked up by key."""
        rows = await self.db.fetch(
            "WITH t AS (SELECT target, COUNT(*) AS pending, MIN(delivery_id) AS first"
            " FROM delivery_queue GROUP BY target ORDER BY pending DESC, target LIMIT $1)"
            " SELECT t.target, t.pending, COALESCE(d.created_at, j.created_at) AS oldest"
            " FROM t LEFT JOIN deliveries d ON d.id = t.first LEFT JOIN jobs j ON j.id = t.first"
            " ORDER BY t.pending DESC, t.target",
            limit,
        )
        return [
            (
                row["target"],
                int(row["pending"]),
                None if row["oldest"] is None else int(row["oldest"]),
            )
            for row in rows
        ]
