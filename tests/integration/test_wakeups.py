"""Wake-ups: a commit that makes deliveries pending tells in-process workers (and, on PostgreSQL,
every LISTENing process) which endpoints have new work, so they claim without asking first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import customers, webhooks
from bitbybit.store.postgres import PostgresStore
from tests.conftest import Account


async def test_a_commit_names_the_endpoints_with_new_work(
    platform: Platform, account: Account
) -> None:
    tenant = Tenant(account.company.id, "live")
    first, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://a.example.com/hook")
    )
    second, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://b.example.com/hook")
    )
    heard: list[frozenset[str] | None] = []
    platform.store.on_deliveries.append(heard.append)
    listeners: list[Callable[[], Awaitable[None]]] = []
    notified: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()
    ours: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()
    store = platform.store
    if isinstance(store, PostgresStore):  # another process's store, and this one's own
        elsewhere = PostgresStore(store.url, schema=store.schema)
        await elsewhere.open()
        listeners.append(await elsewhere.listen(notified.put_nowait))
        listeners.append(await store.listen(ours.put_nowait))
    try:
        data = CustomerCreate(email="wake@example.com", firstName="Wake")
        await platform.run(lambda tx: customers.insert(platform, tx, tenant, data))
        assert heard == [frozenset({first.id, second.id})]
        if listeners:
            assert await asyncio.wait_for(notified.get(), 5) == frozenset({first.id, second.id})

        # A manual retry re-queues by delivery id: the endpoint is not named, workers ask.
        async with platform.store.read() as tx:
            page = await tx.list_deliveries(tenant, endpoint_id=first.id)
        async with platform.store.write() as tx:
            await tx.requeue([page.items[0].id], 0)
        assert heard[-1] is None
        if isinstance(store, PostgresStore):
            assert await asyncio.wait_for(notified.get(), 5) is None
            # This process heard its own commits through on_deliveries only: its listener
            # skipped both notifications and hears the next one, from another process.
            async with elsewhere.write() as tx:
                await tx.requeue([page.items[0].id], 0)
            assert await asyncio.wait_for(ours.get(), 5) is None
            assert ours.empty()
    finally:
        platform.store.on_deliveries.remove(heard.append)
        for unlisten in listeners:
            await unlisten()
        if isinstance(store, PostgresStore):
            await elsewhere.close()


async def test_a_commit_that_makes_nothing_pending_wakes_no_one(
    platform: Platform, account: Account
) -> None:
    tenant = Tenant(account.company.id, "live")
    heard: list[frozenset[str] | None] = []
    platform.store.on_deliveries.append(heard.append)
    try:
        data = CustomerCreate(email="quiet@example.com", firstName="Quiet")
        await platform.run(lambda tx: customers.insert(platform, tx, tenant, data))
    finally:
        platform.store.on_deliveries.remove(heard.append)
    assert heard == []


async def test_a_lost_listening_connection_is_opened_again(
    platform: Platform, account: Account
) -> None:
    """After PostgreSQL ends the listening session (a restart, an operator), the store listens
    again by itself, says notifications may have been missed, and hears the next ones."""
    store = platform.store
    if not isinstance(store, PostgresStore):
        return  # SQLite has no LISTEN: wake-ups across processes are the poll
    heard: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()
    close = await store.listen(heard.put_nowait)
    name = f"bitbybit-listen{store.origin}"
    try:
        async with store.read() as tx:
            ended = await tx.db.fetch(  # type: ignore[attr-defined]  # SqlTx
                "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
                " WHERE application_name = $1",
                name,
            )
        assert [row["ok"] for row in ended] == [True]
        assert await asyncio.wait_for(heard.get(), 15) is None  # listening again; may have missed

        async with store.read() as tx:
            await tx.db.execute("NOTIFY bitbybit_deliveries, '@elsewhere we_after'")  # type: ignore[attr-defined]  # SqlTx
        assert await asyncio.wait_for(heard.get(), 15) == frozenset({"we_after"})
    finally:
        await close()
