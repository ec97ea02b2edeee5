"""Giving a connection back after PostgreSQL cut it (found by the fault suite in CI: a restart
mid-request made the request a 500 instead of a 503)."""

from __future__ import annotations

from typing import Any

import asyncpg

from bitbybit.store.postgres import PostgresStore, _Driver


class Released:
    """A pooled connection asyncpg has already put back in its pool: every call refuses."""

    def terminate(self) -> None:
        raise asyncpg.InterfaceError(
            "cannot call Connection.terminate(): connection has been released back to the pool"
        )


class Pool:
    def __init__(self) -> None:
        self.released: list[Any] = []

    async def release(self, connection: Any, timeout: float) -> None:  # noqa: ASYNC109  # asyncpg.Pool.release's signature
        self.released.append(connection)


async def test_a_broken_connection_already_back_in_the_pool_is_left_alone() -> None:
    store = PostgresStore("postgresql://unused@127.0.0.1/unused")
    driver = _Driver(Released())  # type: ignore[arg-type]  # a stand-in for asyncpg's proxy
    driver.broken = True
    pool = Pool()
    await store._release(pool, driver)  # type: ignore[arg-type]  # the stand-in pool
    assert pool.released == []
