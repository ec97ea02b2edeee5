"""Jobs of channels other than webhooks: one generic record and history for every such kind.

A channel's job is a payload for a target (``delivery.channel``): it is enqueued here, then
claimed, leased, retried and recorded (its attempts in ``job_attempts``) by the same queue code
as a webhook delivery (``queue.py``), so a new channel brings no table and no SQL of its own
(ADR 0008).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitbybit.ids import new_id
from bitbybit.models import Attempt, QueuedJob, Tenant
from bitbybit.store.sql.deliveries import attempt_from_row
from bitbybit.store.sql.driver import Driver, Row


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
        self,
        tenant: Tenant,
        kind: str,
        target: str,
        payload: bytes,
        now: int,
        due_at: int | None = None,
    ) -> str:
        job_id = new_id("job")
        due = now if due_at is None else due_at
        await self.db.execute(
            "INSERT INTO jobs (id, kind, target, company_id, mode, payload, status, attempts,"
            " next_attempt_at, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $8, $7, $7)",
            job_id,
            kind,
            target,
            tenant.company_id,
            tenant.mode,
            payload,
            now,
            due,
        )
        await self.db.execute(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " VALUES ($1, $2, $3, $4)",
            job_id,
            target,
            due,
            kind,
        )
        self._made_pending(frozenset({target}))
        return job_id

    async def enqueue_jobs(
        self,
        tenant: Tenant,
        kind: str,
        target: str,
        payloads: Sequence[tuple[bytes, int]],
        now: int,
    ) -> list[str]:
        ids = [new_id("job") for _ in payloads]
        await self.db.executemany(
            "INSERT INTO jobs (id, kind, target, company_id, mode, payload, status, attempts,"
            " next_attempt_at, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $8)",
            [
                (job_id, kind, target, tenant.company_id, tenant.mode, payload, due, now)
                for job_id, (payload, due) in zip(ids, payloads, strict=True)
            ],
        )
        await self.db.executemany(
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " VALUES ($1, $2, $3, $4)",
            [(job_id, target, due, kind) for job_id, (_, due) in zip(ids, payloads, strict=True)],
        )
        if ids:
            self._made_pending(frozenset({target}))
        return ids

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
        return [attempt_from_row(row) for row in rows]
