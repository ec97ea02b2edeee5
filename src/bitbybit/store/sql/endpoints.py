"""Webhook endpoints and their sealed (encrypted) signing secrets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from bitbybit.models import Attempt, Endpoint, SealedSecrets, Tenant
from bitbybit.store.sql.driver import Driver, Row, _dumps


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        events=orjson.loads(row["events"]),
        status=row["status"],
        secret=row["secret"],
        next_secret=row["next_secret"],
        next_secret_at=row["next_secret_at"],
        multi_signature=bool(row["multi_signature"]),
        exhausted_in_row=row["exhausted_in_row"],
        status_reason=row["status_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _sealed(row: Row) -> SealedSecrets:
    return SealedSecrets(
        endpoint_id=row["id"],
        tenant=Tenant(row["company_id"], row["mode"]),
        secret=row["secret"],
        next_secret=row["next_secret"],
    )


class EndpointsSql:
    """Implements ``store.base.EndpointsTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver
    endpoints_changed: set[str]
    """Endpoints this transaction changed, suspended or deleted: on commit, workers drop the
    deliveries of theirs they hold in memory, claimed and not started (claimed with the old URL
    or secret, or for an endpoint that is gone)."""

    _ENDPOINT_COLUMNS = (
        "id, url, description, events, status, secret, next_secret, next_secret_at,"
        " multi_signature, exhausted_in_row, status_reason, created_at, updated_at"
    )

    async def insert_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None:
        await self.db.execute(
            "INSERT INTO webhook_endpoints (company_id, mode, id, url, description, events,"
            " status, secret, next_secret, next_secret_at, multi_signature, exhausted_in_row,"
            " status_reason, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            tenant.company_id,
            tenant.mode,
            endpoint.id,
            *self._endpoint_values(endpoint),
            endpoint.created_at,
            endpoint.updated_at,
        )

    def _endpoint_values(self, endpoint: Endpoint) -> tuple[Any, ...]:
        return (
            endpoint.url,
            endpoint.description,
            _dumps(endpoint.events),
            endpoint.status,
            endpoint.secret,
            endpoint.next_secret,
            endpoint.next_secret_at,
            1 if endpoint.multi_signature else 0,
            endpoint.exhausted_in_row,
            endpoint.status_reason,
        )

    async def update_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None:
        self.endpoints_changed.add(endpoint.id)
        await self.db.execute(
            "UPDATE webhook_endpoints SET url = $4, description = $5, events = $6, status = $7,"
            " secret = $8, next_secret = $9, next_secret_at = $10, multi_signature = $11,"
            " exhausted_in_row = $12, status_reason = $13, updated_at = $14"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            endpoint.id,
            *self._endpoint_values(endpoint),
            endpoint.updated_at,
        )

    async def get_endpoint(
        self, tenant: Tenant, endpoint_id: str, *, lock: bool = False
    ) -> Endpoint | None:
        row = await self.db.fetchrow(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 AND id = $3"
            + (self.db.for_update if lock else ""),
            tenant.company_id,
            tenant.mode,
            endpoint_id,
        )
        return None if row is None else _endpoint(row)

    async def list_endpoints(self, tenant: Tenant) -> list[Endpoint]:
        rows = await self.db.fetch(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 ORDER BY created_at, id",
            tenant.company_id,
            tenant.mode,
        )
        return [_endpoint(row) for row in rows]

    async def fan_out_targets(self, tenant: Tenant) -> list[Endpoint]:
        rows = await self.db.fetch(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 ORDER BY created_at, id" + self.db.key_share,
            tenant.company_id,
            tenant.mode,
        )
        return [_endpoint(row) for row in rows]

    async def count_endpoints(self, company_id: str) -> int:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n FROM webhook_endpoints WHERE company_id = $1", company_id
        )
        return int(row["n"]) if row is not None else 0

    _SEALED_COLUMNS = "id, company_id, mode, secret, next_secret"

    async def sample_sealed_secrets(self, limit: int) -> list[SealedSecrets]:
        rows = await self.db.fetch(
            f"SELECT {self._SEALED_COLUMNS} FROM (SELECT {self._SEALED_COLUMNS}"
            " FROM webhook_endpoints ORDER BY updated_at DESC, id LIMIT $1) AS changed_last"
            f" UNION SELECT {self._SEALED_COLUMNS} FROM (SELECT {self._SEALED_COLUMNS}"
            " FROM webhook_endpoints ORDER BY created_at, id LIMIT $1) AS created_first",
            limit,
        )
        return [_sealed(row) for row in rows]

    async def page_sealed_secrets(self, after: str, limit: int) -> list[SealedSecrets]:
        rows = await self.db.fetch(
            f"SELECT {self._SEALED_COLUMNS} FROM webhook_endpoints WHERE id > $1"
            " ORDER BY id LIMIT $2",
            after,
            limit,
        )
        return [_sealed(row) for row in rows]

    async def reseal_secret(self, endpoint_id: str, old: str, new: str) -> bool:
        replaced = await self.db.execute(
            "UPDATE webhook_endpoints SET"
            " secret = CASE WHEN secret = $2 THEN $3 ELSE secret END,"
            " next_secret = CASE WHEN next_secret = $2 THEN $3 ELSE next_secret END"
            " WHERE id = $1 AND (secret = $2 OR next_secret = $2)",
            endpoint_id,
            old,
            new,
        )
        return replaced > 0

    async def delete_endpoint(self, tenant: Tenant, endpoint_id: str) -> bool:
        self.endpoints_changed.add(endpoint_id)
        deleted = await self.db.execute(
            "DELETE FROM webhook_endpoints WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            endpoint_id,
        )
        if deleted:  # its deliveries went with it; their queue rows go here
            await self._unqueue(endpoint_id)
        return deleted > 0

    async def _unqueue(self, endpoint_id: str) -> None:
        await self.db.execute(
            "DELETE FROM delivery_queue WHERE target = $1 AND kind = 'webhook'", endpoint_id
        )

    async def lock_endpoints(self, endpoint_ids: Sequence[str]) -> None:
        # A fan-out holds its endpoints FOR KEY SHARE, which a status UPDATE does not wait
        # for: without this lock a transaction that read the endpoint active could queue a
        # pending delivery after the suspension held the others, and it would wait there until
        # a reactivation. FOR UPDATE waits for those fan-outs and makes later ones wait and
        # then read the new status; taken in the fan-out's order so neither waits on the other.
        if not self.db.for_update or not endpoint_ids:
            return
        await self.db.fetch(
            f"SELECT id FROM webhook_endpoints WHERE {self.db.in_texts('id', '$1')}"
            " ORDER BY created_at, id" + self.db.for_update,
            self.db.text_array(endpoint_ids),
        )

    async def hold_pending(self, endpoint_id: str, now: int) -> int:
        self.endpoints_changed.add(endpoint_id)
        await self.lock_endpoints([endpoint_id])
        held = await self.db.execute(
            "UPDATE deliveries SET status = 'held', updated_at = $2 WHERE id IN"
            " (SELECT delivery_id FROM delivery_queue WHERE target = $1 AND kind = 'webhook')",
            endpoint_id,
            now,
        )
        await self._unqueue(endpoint_id)
        return held

    async def endpoint_health(
        self, tenant: Tenant, endpoint_ids: Sequence[str], since: int
    ) -> dict[str, tuple[int, int, Attempt | None]]:
        if not endpoint_ids:
            return {}
        # A delivery with an attempt since ``since`` was updated since then too (recording an
        # attempt, a retry or a recovery all set ``updated_at`` to the time of it), so the
        # condition on ``d.updated_at`` only spares looking up the attempts of older ones.
        rows = await self.db.fetch(
            "SELECT endpoint_id, COUNT(*) AS attempts,"
            " SUM(CASE WHEN error IS NULL AND status_code >= 200 AND status_code < 300"
            " THEN 1 ELSE 0 END) AS succeeded,"
            " MAX(CASE WHEN latest = 1 THEN number END) AS number,"
            " MAX(CASE WHEN latest = 1 THEN started_at END) AS started_at,"
            " MAX(CASE WHEN latest = 1 THEN latency_ms END) AS latency_ms,"
            " MAX(CASE WHEN latest = 1 THEN status_code END) AS status_code,"
            " MAX(CASE WHEN latest = 1 THEN error END) AS error"
            " FROM (SELECT d.endpoint_id, a.number, a.started_at, a.latency_ms, a.status_code,"
            " a.error, ROW_NUMBER() OVER (PARTITION BY d.endpoint_id"
            " ORDER BY a.started_at DESC, a.seq DESC) AS latest"
            " FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id"
            " WHERE d.company_id = $1 AND d.mode = $2"
            f" AND {self.db.in_texts('d.endpoint_id', '$3')}"
            " AND d.updated_at >= $4 AND a.started_at >= $4) AS recent"
            " GROUP BY endpoint_id",
            tenant.company_id,
            tenant.mode,
            self.db.text_array(endpoint_ids),
            since,
        )
        return {
            row["endpoint_id"]: (
                int(row["attempts"]),
                int(row["succeeded"] or 0),
                Attempt(
                    int(row["number"]),
                    int(row["started_at"]),
                    int(row["latency_ms"]),
                    None if row["status_code"] is None else int(row["status_code"]),
                    row["error"],
                    None,
                ),
            )
            for row in rows
        }
