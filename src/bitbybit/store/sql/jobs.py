"""Jobs of channels other than webhooks: one generic record and history for every such kind.

A channel's job is a payload for a target (``delivery.channel``): it is enqueued here, claimed,
leased, retried and recorded by the same queue code as a webhook delivery (``queue.py``), so a
new channel brings no table and no SQL of its own (ADR 0008).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitbybit.ids import new_id
from bitbybit.models import Attempt, AttemptResult, QueuedJob, Tenant
from bitbybit.store.sql.driver import Driver, Row, _in


def _job(row: Row) -> QueuedJob:
    return QueuedJob(
        id=row["id"],
        kind=row["kind"],
        target=row["target"],
        payload=bytes(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class JobsSql:
    """Implements ``store.base.JobsTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    if TYPE_CHECKING:  # from DeliveriesSql: wakes workers on commit

        def _made_pending(self, endpoint_ids: frozenset[str] | None) -> None: ...

    async def enqueue_job(
        self, tenant: Tenant, kind: str, target: str, payload: bytes, now: int
    ) -> str:
        job_id = new_id("job")
        await self.db.execute(
            "INSERT INTO jobs (id, kind, target, company_id, mode, payload, status, attempts,"
            " next_attempt_at, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
            job_id,
            kind,
            target,
            tenant.company_id,
            tenant.mode,
            payload,
            now,
        )
        await self.db.execute(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " VALUES ($1, $2, $3, $4)",
            job_id,
            target,
            now,
            kind,
        )
        self._made_pending(frozenset({target}))
        return job_id

    _COLUMNS = (
        "id, kind, target, payload, status, attempts, next_attempt_at, last_status_code,"
        " last_error, created_at, updated_at"
    )

    async def get_job(self, tenant: Tenant, job_id: str) -> QueuedJob | None:
        row = await self.db.fetchrow(
            f"SELECT {self._COLUMNS} FROM jobs WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            job_id,
        )
        return None if row is None else _job(row)

    async def list_job_attempts(self, job_id: str) -> list[Attempt]:
        rows = await self.db.fetch(
            "SELECT number, started_at, latency_ms, status_code, error, response_body"
            " FROM job_attempts WHERE job_id = $1 ORDER BY number, seq",
            job_id,
        )
        return [
            Attempt(
                row["number"],
                row["started_at"],
                row["latency_ms"],
                row["status_code"],
                row["error"],
                None if row["response_body"] is None else bytes(row["response_body"]),
            )
            for row in rows
        ]

    async def _write_job_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        """Attempt rows and the jobs' new state (while this worker holds the lease, as for a
        delivery); returns the jobs recorded (a job deleted meanwhile is skipped). The queue
        rows are the shared code's (``QueueSql``)."""
        found = await self.db.fetch(
            f"SELECT id FROM jobs WHERE id IN ({_in(1, len(results))})",
            *(r.delivery_id for r in results),
        )
        existing = {row["id"] for row in found}
        results = [r for r in results if r.delivery_id in existing]
        await self.db.executemany(
            "INSERT INTO job_attempts (job_id, number, started_at, latency_ms, status_code,"
            " error, response_body, worker) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            "UPDATE jobs SET status = $2, attempts = $3, next_attempt_at = $4,"
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
        return [r.delivery_id for r in results]
