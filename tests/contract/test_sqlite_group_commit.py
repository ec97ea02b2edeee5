"""SQLite group commit (``bitbybit.store.sqlite._Group``, docs/adr/0010-sqlite-group-commit.md).

Concurrent writes of one process share one transaction, each in its own savepoint, and one
commit. What each write sees must not change: a write that returned is committed (another
connection reads it), a write whose block raised leaves nothing and costs the others nothing, and
a commit that fails fails every write of the group, none of them half-kept. Then what happens to
the writes in flight when a read arrives, a write is cancelled while it waits for the commit, the
store closes, or SQLite rolls the whole transaction back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bitbybit.errors import StorageError, StorageUnavailable
from bitbybit.models import Company
from bitbybit.store.sqlite import GROUP_LIMIT, SQLiteStore, SQLiteTx

HANG_GUARD = 10.0


class Counting:
    """The store's connection, counting the ``COMMIT``s run on it, and failing the next one
    when told to (as a full disk would)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.commits = 0
        self.fail_commit = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.commits += 1
            if self.fail_commit:
                self.fail_commit = False
                raise sqlite3.OperationalError("database or disk is full")
        return self.connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'group.db'}")
    await store.open()
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


@pytest.fixture
def counting(store: SQLiteStore) -> Counting:
    wrapped = Counting(store.connection)
    store._connection = wrapped  # type: ignore[assignment]
    return wrapped


def company(n: int) -> Company:
    return Company(id=f"comp_group{n:04d}", name=f"Group {n}", country="ID", created_at=n)


def committed(store: SQLiteStore) -> set[str]:
    """The companies another connection reads: what is committed."""
    other = sqlite3.connect(store.path)
    try:
        return {row[0] for row in other.execute("SELECT id FROM companies")}
    finally:
        other.close()


async def insert(
    store: SQLiteStore, n: int, then: Callable[[], Awaitable[None]] | None = None
) -> None:
    async with store.write() as tx:
        await tx.insert_company(company(n))
        if then is not None:
            await then()


async def settled(*tasks: asyncio.Task[Any]) -> list[Any]:
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG_GUARD)


async def test_concurrent_writes_share_one_commit_and_each_returns_committed(
    store: SQLiteStore, counting: Counting
) -> None:
    seen_at_return: dict[int, bool] = {}

    async def write(n: int) -> None:
        await insert(store, n)
        seen_at_return[n] = company(n).id in committed(store)

    before = counting.commits
    results = await settled(*(asyncio.create_task(write(n)) for n in range(20)))
    assert results == [None] * 20
    assert seen_at_return == dict.fromkeys(range(20), True)
    assert counting.commits - before == 1
    assert committed(store) == {company(n).id for n in range(20)}


async def test_a_lone_write_commits_on_the_next_pass_of_the_loop(
    store: SQLiteStore, counting: Counting
) -> None:
    before = counting.commits
    for n in range(3):
        await asyncio.wait_for(insert(store, n), HANG_GUARD)
        assert company(n).id in committed(store)
    assert counting.commits - before == 3


async def test_a_write_that_raised_leaves_nothing_and_the_rest_of_its_group_commits(
    store: SQLiteStore, counting: Counting
) -> None:
    async def refuse() -> None:
        raise ValueError("refused by the service after it wrote")

    before = counting.commits
    results = await settled(
        asyncio.create_task(insert(store, 1)),
        asyncio.create_task(insert(store, 2, then=refuse)),
        asyncio.create_task(insert(store, 3)),
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], ValueError)
    assert counting.commits - before == 1
    assert committed(store) == {company(1).id, company(3).id}


async def test_a_failed_commit_fails_every_write_of_its_group_and_the_next_write_works(
    store: SQLiteStore, counting: Counting
) -> None:
    counting.fail_commit = True
    results = await settled(*(asyncio.create_task(insert(store, n)) for n in range(5)))
    assert all(isinstance(result, StorageError) for result in results), results
    assert "disk is full" in str(results[0])
    assert committed(store) == set()
    assert not counting.connection.in_transaction

    await asyncio.wait_for(insert(store, 9), HANG_GUARD)
    assert committed(store) == {company(9).id}


async def test_sqlite_rolling_the_whole_transaction_back_fails_the_writes_that_ended_before(
    store: SQLiteStore,
) -> None:
    """SQLite rolls a whole transaction back on some errors (a full disk, an I/O error) and
    says so only to the statement that failed. The writes of the group that had ended are lost
    with it: they fail, and nothing of them is left; a write after them begins anew."""

    async def lose_the_transaction() -> None:
        store.connection.execute("ROLLBACK")  # what SQLite itself does on SQLITE_FULL
        raise StorageUnavailable("the database cannot be used: database or disk is full")

    first = asyncio.create_task(insert(store, 1))
    failing = asyncio.create_task(insert(store, 2, then=lose_the_transaction))
    results = await settled(first, failing)
    assert isinstance(results[0], StorageUnavailable)
    assert "rolled back the transaction" in str(results[0])
    assert isinstance(results[1], StorageUnavailable)
    assert committed(store) == set()

    await asyncio.wait_for(insert(store, 3), HANG_GUARD)
    assert committed(store) == {company(3).id}


async def test_a_read_waits_for_the_open_group_and_sees_its_writes(store: SQLiteStore) -> None:
    async def read() -> set[str]:
        async with store.read() as tx:
            rows = await tx.db.fetch("SELECT id FROM companies")
        return {row["id"] for row in rows}

    writes = [asyncio.create_task(insert(store, n)) for n in range(3)]
    reading = asyncio.create_task(read())
    results = await settled(*writes, reading)
    assert results[3] == {company(n).id for n in range(3)}


async def test_a_write_whose_block_awaits_holds_the_commit_until_it_ends(
    store: SQLiteStore, counting: Counting
) -> None:
    """The commit never comes in the middle of a block: a block that awaits (here, a sleep)
    while the group's commit is due ends first, and its end commits."""
    release = asyncio.Event()

    async def wait_for_release() -> None:
        await release.wait()

    before = counting.commits
    slow = asyncio.create_task(insert(store, 1, then=wait_for_release))
    await asyncio.sleep(0.05)
    assert not slow.done()
    assert committed(store) == set()  # nothing committed while the block runs
    release.set()
    await settled(slow)
    assert committed(store) == {company(1).id}
    assert counting.commits - before == 1


async def test_a_write_cancelled_while_it_waits_for_the_commit_is_still_committed(
    store: SQLiteStore,
) -> None:
    """Its block ended cleanly, so its work is part of the group's transaction: cancelling the
    wait (a caller that gave up) does not undo it, as a cancelled wait for a plain COMMIT could
    not. The other writes of the group are not disturbed."""
    cancelled = asyncio.create_task(insert(store, 1))
    other = asyncio.create_task(insert(store, 2))
    await asyncio.sleep(0)  # both blocks run; the group's commit is scheduled, not yet run
    cancelled.cancel()
    results = await settled(cancelled, other)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] is None
    assert committed(store) == {company(1).id, company(2).id}


async def test_a_burst_beyond_the_limit_commits_in_several_groups(
    store: SQLiteStore, counting: Counting
) -> None:
    count = GROUP_LIMIT * 2 + 10
    before = counting.commits
    results = await settled(*(asyncio.create_task(insert(store, n)) for n in range(count)))
    assert results == [None] * count
    assert counting.commits - before == 3
    assert len(committed(store)) == count


async def test_closing_the_store_commits_the_open_group(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'close.db'}")
    await store.open()
    await store.migrate()
    waiting = asyncio.create_task(insert(store, 1))
    await asyncio.sleep(0)  # the block ran; its commit is scheduled
    assert not waiting.done()
    await store.close()
    assert await asyncio.wait_for(waiting, HANG_GUARD) is None
    assert committed(store) == {company(1).id}


async def test_listeners_hear_of_a_write_only_once_its_group_committed(
    store: SQLiteStore, counting: Counting
) -> None:
    heard: list[int] = []
    store.on_endpoints_changed.append(lambda changed: heard.append(counting.commits))

    async def change_endpoints(tx: SQLiteTx) -> None:
        tx.endpoints_changed.add("wh_group")

    async def write() -> None:
        async with store.write() as tx:
            await change_endpoints(tx)

    before = counting.commits
    await settled(*(asyncio.create_task(write()) for _ in range(3)))
    assert heard == [before + 1] * 3
