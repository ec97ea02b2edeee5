"""Dashboard users and their sessions (the cookie's token is kept only as a SHA-256 hash)."""

from __future__ import annotations

from bitbybit.models import DashboardSession, Mode, Role, User
from bitbybit.store.sql.driver import Driver, Row

USER_COLUMNS = "u.id, u.company_id, u.email, u.role, u.created_at, u.updated_at"


def _user(row: Row) -> User:
    role: Role = row["role"]
    return User(
        id=row["id"],
        company_id=row["company_id"],
        email=row["email"],
        role=role,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class UsersSql:
    """Implements ``store.base.UsersTx`` over a ``Driver`` (composed into ``SqlTx``)."""

    db: Driver

    async def insert_user(self, user: User, password_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO users (id, company_id, email, password_hash, role, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            user.id,
            user.company_id,
            user.email,
            password_hash,
            user.role,
            user.created_at,
            user.updated_at,
        )

    async def find_user(self, email: str) -> tuple[User, str] | None:
        row = await self.db.fetchrow(
            f"SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1", email
        )
        return None if row is None else (_user(row), row["password_hash"])

    async def list_users(self, company_id: str) -> list[User]:
        rows = await self.db.fetch(
            f"SELECT {USER_COLUMNS} FROM users u WHERE u.company_id = $1"
            " ORDER BY u.created_at, u.id",
            company_id,
        )
        return [_user(row) for row in rows]

    async def set_password_hash(self, user_id: str, password_hash: str, now: int) -> None:
        await self.db.execute(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
            user_id,
            password_hash,
            now,
        )

    async def insert_session(self, token_hash: str, session: DashboardSession) -> None:
        await self.db.execute(
            "INSERT INTO dashboard_sessions (token_hash, user_id, company_id, csrf_token, mode,"
            " created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            token_hash,
            session.user.id,
            session.user.company_id,
            session.csrf_token,
            session.mode,
            session.created_at,
            session.last_seen_at,
            session.expires_at,
        )

    async def get_session(self, token_hash: str) -> DashboardSession | None:
        """The session with this token hash, unless it was revoked (its times are not judged
        here: that is the service's, which knows the idle limit)."""
        row = await self.db.fetchrow(
            f"SELECT {USER_COLUMNS}, s.csrf_token, s.mode, s.created_at AS s_created_at,"
            " s.last_seen_at, s.expires_at FROM dashboard_sessions s"
            " JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = $1 AND s.revoked_at IS NULL",
            token_hash,
        )
        if row is None:
            return None
        mode: Mode = row["mode"]
        return DashboardSession(
            user=_user(row),
            csrf_token=row["csrf_token"],
            mode=mode,
            created_at=row["s_created_at"],
            last_seen_at=row["last_seen_at"],
            expires_at=row["expires_at"],
        )

    async def touch_session(self, token_hash: str, now: int, mode: Mode | None = None) -> None:
        if mode is None:
            await self.db.execute(
                "UPDATE dashboard_sessions SET last_seen_at = $2 WHERE token_hash = $1",
                token_hash,
                now,
            )
        else:
            await self.db.execute(
                "UPDATE dashboard_sessions SET last_seen_at = $2, mode = $3 WHERE token_hash = $1",
                token_hash,
                now,
                mode,
            )

    async def revoke_session(self, token_hash: str, now: int) -> None:
        await self.db.execute(
            "UPDATE dashboard_sessions SET revoked_at = $2"
            " WHERE token_hash = $1 AND revoked_at IS NULL",
            token_hash,
            now,
        )

    async def revoke_user_sessions(self, user_id: str, now: int) -> int:
        return await self.db.execute(
            "UPDATE dashboard_sessions SET revoked_at = $2"
            " WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            now,
        )

    async def prune_sessions(self, now: int, idle_before: int, limit: int) -> int:
        """Delete at most ``limit`` ended sessions (revoked, expired at ``now``, or unused since
        before ``idle_before``); returns how many went."""
        return await self.db.execute(
            "DELETE FROM dashboard_sessions WHERE token_hash IN (SELECT token_hash FROM"
            " dashboard_sessions WHERE revoked_at IS NOT NULL OR expires_at <= $1"
            " OR last_seen_at < $2 LIMIT $3)",
            now,
            idle_before,
            limit,
        )
