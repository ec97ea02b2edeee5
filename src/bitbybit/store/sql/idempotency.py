"""Stored responses of idempotent requests."""

from __future__ import annotations

from bitbybit.models import StoredResponse, Tenant
from bitbybit.store.sql.driver import Driver


class IdempotencySql:
    """Implements ``store.base.IdempotencyTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    async def get_stored_response(self, tenant: Tenant, key: str) -> StoredResponse | None:
        row = await self.db.fetchrow(
            "SELECT request_hash, status_code, body, created_at FROM idempotency_keys"
            " WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
        )
        if row is None:
            return None
        return StoredResponse(
            row["request_hash"], row["status_code"], bytes(row["body"]), row["created_at"]
        )

    async def store_response(self, tenant: Tenant, key: str, response: StoredResponse) -> None:
        await self.db.execute(
            "INSERT INTO idempotency_keys"
            " (company_id, mode, key, request_hash, status_code, body, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tenant.company_id,
            tenant.mode,
            key,
            response.request_hash,
            response.status_code,
            response.body,
            response.created_at,
        )

    async def finish_stored_response(
        self, tenant: Tenant, key: str, status_code: int, body: bytes
    ) -> None:
        await self.db.execute(
            "UPDATE idempotency_keys SET status_code = $4, body = $5"
            " WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
            status_code,
            body,
        )

    async def delete_stored_response(self, tenant: Tenant, key: str) -> None:
        await self.db.execute(
            "DELETE FROM idempotency_keys WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
        )

    async def prune_stored_responses(self, created_before: int, limit: int) -> int:
        # The batch is chosen through the created_at index, oldest first; the outer condition is
        # checked again because on PostgreSQL a row can be replaced (same key, new request)
        # between the choice and the delete, and the replacement is not expired.
        return await self.db.execute(
            "DELETE FROM idempotency_keys WHERE (company_id, mode, key) IN ("
            " SELECT company_id, mode, key FROM idempotency_keys WHERE created_at < $1"
            " ORDER BY created_at LIMIT $2) AND created_at < $1",
            created_before,
            limit,
        )
