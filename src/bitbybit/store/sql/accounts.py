"""Companies, API keys, their rate-limit windows and the per-company counters (order numbers)."""

from __future__ import annotations

import orjson

from bitbybit.models import ApiKey, Company, Mode, Tenant
from bitbybit.store.sql.driver import Driver, Row, _dumps

KEY_COLUMNS = (
    "id, company_id, mode, prefix, scopes, ip_allowlist, name, created_at, expires_at, revoked_at,"
    " ip_labels"
)


def api_key_from_row(row: Row) -> ApiKey:
    mode: Mode = row["mode"]
    return ApiKey(
        id=row["id"],
        company_id=row["company_id"],
        mode=mode,
        prefix=row["prefix"],
        scopes=frozenset(s for s in row["scopes"].split(",") if s),
        ip_allowlist=tuple(orjson.loads(row["ip_allowlist"])),
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        ip_labels=orjson.loads(row["ip_labels"]),
    )


class AccountsSql:
    """Implements ``store.base.AccountsTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    async def insert_company(self, company: Company) -> None:
        await self.db.execute(
            "INSERT INTO companies (id, name, country, created_at) VALUES ($1, $2, $3, $4)",
            company.id,
            company.name,
            company.country,
            company.created_at,
        )

    async def get_company(self, company_id: str) -> Company | None:
        row = await self.db.fetchrow(
            "SELECT id, name, country, created_at FROM companies WHERE id = $1", company_id
        )
        if row is None:
            return None
        return Company(row["id"], row["name"], row["country"], row["created_at"])

    async def list_companies(self) -> list[Company]:
        rows = await self.db.fetch(
            "SELECT id, name, country, created_at FROM companies ORDER BY created_at, id"
        )
        return [Company(row["id"], row["name"], row["country"], row["created_at"]) for row in rows]

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys (id, company_id, mode, key_hash, prefix, scopes, ip_allowlist,"
            " name, created_at, expires_at, revoked_at, ip_labels)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            key.id,
            key.company_id,
            key.mode,
            key_hash,
            key.prefix,
            ",".join(sorted(key.scopes)),
            _dumps(list(key.ip_allowlist)),
            key.name,
            key.created_at,
            key.expires_at,
            key.revoked_at,
            _dumps(key.ip_labels),
        )

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        row = await self.db.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
        )
        return None if row is None else api_key_from_row(row)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = await self.db.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return None if row is None else api_key_from_row(row)

    async def list_api_keys(self, company_id: str) -> list[ApiKey]:
        rows = await self.db.fetch(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE company_id = $1 ORDER BY created_at, id",
            company_id,
        )
        return [api_key_from_row(row) for row in rows]

    async def set_api_key_allowlist(
        self, key_id: str, allowlist: tuple[str, ...], labels: dict[str, str]
    ) -> None:
        await self.db.execute(
            "UPDATE api_keys SET ip_allowlist = $2, ip_labels = $3 WHERE id = $1",
            key_id,
            _dumps(list(allowlist)),
            _dumps(labels),
        )

    async def expire_api_key(self, key_id: str, expires_at: int) -> None:
        await self.db.execute(
            "UPDATE api_keys SET expires_at = $2 WHERE id = $1 AND"
            " (expires_at IS NULL OR expires_at > $2)",
            key_id,
            expires_at,
        )

    async def revoke_api_key(self, key_id: str, revoked_at: int) -> None:
        await self.db.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            key_id,
            revoked_at,
        )

    async def count_request(self, key_id: str, window_start: int) -> int:
        row = await self.db.fetchrow(
            "INSERT INTO rate_limits (key_id, window_start, count) VALUES ($1, $2, 1)"
            " ON CONFLICT (key_id, window_start) DO UPDATE SET count = rate_limits.count + 1"
            " RETURNING count",
            key_id,
            window_start,
        )
        assert row is not None  # an upsert with RETURNING always returns its row
        count: int = row["count"]
        if count == 1:  # first request of a window: forget the windows before it
            await self.db.execute(
                "DELETE FROM rate_limits WHERE key_id = $1 AND window_start < $2",
                key_id,
                window_start,
            )
        return count

    async def next_counter(self, tenant: Tenant, name: str) -> int:
        row = await self.db.fetchrow(
            "INSERT INTO counters (company_id, mode, name, value) VALUES ($1, $2, $3, 1)"
            " ON CONFLICT (company_id, mode, name) DO UPDATE SET value = counters.value + 1"
            " RETURNING value",
            tenant.company_id,
            tenant.mode,
            name,
        )
        assert row is not None  # an upsert with RETURNING always returns its row
        value: int = row["value"]
        return value
