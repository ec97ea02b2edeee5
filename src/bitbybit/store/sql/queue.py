"""The delivery worker's side of the queue: which endpoints have work, leases, attempts recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitbybit.models import AttemptResult, Job, QueueStats, Recorded
from bitbybit.store.sql.driver import Driver, Row, _in


def job_from_row(row: Row) -> Job:
    return Job(
        delivery_id=row["id"],
        event_id=row["event_id"],
        event_type=row["type"],
        payload=bytes(row["payload"]),
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        secret=row["secret"],
        next_secret=row["next_secret"],
        next_secret_at=row["next_secret_at"],
        multi_signature=bool(row["multi_signature"]),
        attempts=row["attempts"],
    )


def succeeded_endpoints(results: Sequence[AttemptResult]) -> list[str]:
    """Endpoints with a success among ``results``, in a stable order (lock order)."""
    return sorted({r.endpoint_id for r in results if r.status == "succeeded"})


class QueueSql:
    """Implements ``store.base.QueueTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    if TYPE_CHECKING:  # from EndpointsSql: suspending an endpoint holds its deliveries

        async def hold_pending(self, endpoint_id: str, now: int) -> int: ...

    async def due_endpoints(self, now: int) -> list[str]:
        """Active endpoints with at least one delivery due and not leased (a lease that ran out,
        say of a worker that died, no longer counts)."""
        rows = await self.db.fetch(
            "SELECT e.id FROM webhook_endpoints e WHERE e.status = 'active' AND EXISTS ("
            "SELECT 1 FROM delivery_queue q WHERE q.endpoint_id = e.id AND q.due_at <= $1"
            " AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $1))",
            now,
        )
        return [row["id"] for row in rows]

    async def _lease(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[str]:
        """Lease up to ``slots[endpoint]`` due deliveries per endpoint; the dialect's claim."""
        raise NotImplementedError

    _JOB_COLUMNS = (
        "d.id, d.event_id, ev.type, ev.payload, d.endpoint_id, e.url, e.secret, e.next_secret,"
        " e.next_secret_at, e.multi_signature, d.attempts"
    )

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        """Lease due deliveries (``slots[e]`` at most for endpoint ``e``) with their content."""
        ids = await self._lease(owner, now, lease_until, slots)
        if not ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {self._JOB_COLUMNS} FROM delivery_queue q"
            " JOIN deliveries d ON d.id = q.delivery_id JOIN events ev ON ev.id = d.event_id"
            " JOIN webhook_endpoints e ON e.id = d.endpoint_id"
            f" WHERE q.delivery_id IN ({_in(1, len(ids))}) ORDER BY q.due_at",
            *ids,
        )
        return [job_from_row(row) for row in rows]

    async def release(self, owner: str, delivery_ids: Sequence[str], now: int) -> None:
        """Give leases back unattempted (graceful shutdown): claimable again at once."""
        if delivery_ids:
            await self.db.execute(
                "UPDATE delivery_queue SET lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE lease_owner = $1 AND delivery_id IN ({_in(2, len(delivery_ids))})",
                owner,
                *delivery_ids,
            )

    async def record_attempts(
        self, owner: str, results: Sequence[AttemptResult], now: int, suspend_after: int
    ) -> Recorded:
        """Record attempts and their outcomes, and suspend endpoints the rule says to."""
        if not results:
            return Recorded([], [])
        kept = set(await self._write_results(owner, results, now))
        suspended: list[str] = []
        for result in results:
            if result.delivery_id not in kept:
                continue
            reason = None
            if result.gone:
                reason = "the endpoint answered 410 Gone"
            elif result.status == "failed" and not result.ours:
                row = await self.db.fetchrow(
                    "UPDATE webhook_endpoints SET exhausted_in_row = exhausted_in_row + 1"
                    " WHERE id = $1 RETURNING exhausted_in_row, status",
                    result.endpoint_id,
                )
                if row is not None and row["exhausted_in_row"] >= suspend_after:
                    reason = f"{row['exhausted_in_row']} events in a row exhausted every retry"
            if reason is not None and result.endpoint_id not in suspended:
                touched = await self.db.execute(
                    "UPDATE webhook_endpoints SET status = 'suspended', status_reason = $2,"
                    " updated_at = $3 WHERE id = $1 AND status = 'active'",
                    result.endpoint_id,
                    reason,
                    now,
                )
                if touched:
                    await self.hold_pending(result.endpoint_id, now)
                    suspended.append(result.endpoint_id)
        vanished = [r.delivery_id for r in results if r.delivery_id not in kept]
        return Recorded(suspended, vanished)

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
        # Writers are serialised (BEGIN IMMEDIATE), so what exists now still exists at commit.
        found = await self.db.fetch(
            f"SELECT id FROM deliveries WHERE id IN ({_in(1, len(results))})",
            *(r.delivery_id for r in results),
        )
        existing = {row["id"] for row in found}
        results = [r for r in results if r.delivery_id in existing]
        await self.db.executemany(
            self._ATTEMPT_INSERT + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
                for r in results
            ],
        )
        await self.db.executemany(
            "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4,"
            " last_status_code = $5, last_error = $6, updated_at = $7 WHERE id = $1"
            " AND EXISTS (SELECT 1 FROM delivery_queue"
            " WHERE delivery_id = $1 AND lease_owner = $8)",
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
                )
                for r in results
            ],
        )
        await self.db.executemany(
            "UPDATE delivery_queue SET due_at = $2, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE delivery_id = $1 AND lease_owner = $3",
            [(r.delivery_id, r.next_attempt_at, owner) for r in results if r.status == "pending"],
        )
        await self.db.executemany(
            "DELETE FROM delivery_queue WHERE delivery_id = $1 AND lease_owner = $2",
            [(r.delivery_id, owner) for r in results if r.status != "pending"],
        )
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
