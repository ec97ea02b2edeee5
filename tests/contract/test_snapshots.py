"""A list's ``total`` and its rows come from one instant (``store.read(snapshot=True)``).

On PostgreSQL a plain read runs each statement on its own, so a customer created between the
count and the page would be in one and not the other; the list services read in a snapshot.
SQLite's read transactions are snapshots already (WAL), and one process cannot write while it
holds one, so this is PostgreSQL's test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bitbybit.errors import StorageError
from bitbybit.models import Customer, ListQuery
from bitbybit.store import Store
from tests.conftest import make_store
from tests.contract.test_store import COMPANY_A, LIVE_A, make_company, make_customer


@pytest.fixture
async def postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    async for store in make_store("postgres", tmp_path_factory, migrated=True):
        async with store.write() as tx:
            await tx.insert_company(make_company(COMPANY_A))
        yield store


async def add(store: Store, customer: Customer) -> None:
    async with store.write() as tx:
        await tx.insert_customer(LIVE_A, customer)


async def test_a_snapshot_sees_one_instant_and_a_plain_read_does_not(postgres: Store) -> None:
    await add(postgres, make_customer(email="first@example.com"))
    async with postgres.read(snapshot=True) as held:
        before = await held.list_customers(LIVE_A, ListQuery())
        await add(postgres, make_customer(email="second@example.com"))  # another connection
        again = await held.list_customers(LIVE_A, ListQuery())
    assert (before.total, len(before.items)) == (1, 1)
    assert again == before  # the count and the rows of the same instant, before the insert
    async with postgres.read() as plain:
        now = await plain.list_customers(LIVE_A, ListQuery())
    assert (now.total, len(now.items)) == (2, 2)


async def test_a_snapshot_read_refuses_to_write(postgres: Store) -> None:
    with pytest.raises(StorageError, match="read-only transaction"):
        async with postgres.read(snapshot=True) as tx:
            await tx.insert_customer(LIVE_A, make_customer(email="nope@example.com"))
