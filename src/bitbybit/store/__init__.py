"""Storage: the port (``base``), the shared SQL (``sql``, one module per subject) and one driver
per dialect."""

from __future__ import annotations

from bitbybit.errors import ConfigurationError
from bitbybit.store.base import (
    AccountsTx,
    CustomersTx,
    DeliveriesTx,
    EndpointsTx,
    EventsTx,
    IdempotencyTx,
    JobsTx,
    OrdersTx,
    ProductsTx,
    QueueTx,
    Store,
    Tx,
)

__all__ = [
    "AccountsTx",
    "CustomersTx",
    "DeliveriesTx",
    "EndpointsTx",
    "EventsTx",
    "IdempotencyTx",
    "JobsTx",
    "OrdersTx",
    "ProductsTx",
    "QueueTx",
    "Store",
    "Tx",
    "open_store",
]


def open_store(url: str, *, timeout: float | None = None, **options: object) -> Store:
    """The store for a database URL (not yet opened); ``timeout``: the longest, in seconds, one
    database operation may wait (``Settings.database_timeout``) before it fails as unavailable.

    Each dialect's store is returned as a ``Store``, so strict mypy checks it, and through its
    typed ``write()``/``read()`` its transaction class, against the port."""
    limit = {} if timeout is None else {"timeout": timeout}
    if url.startswith("sqlite:"):
        from bitbybit.store.sqlite import SQLiteStore

        return SQLiteStore(url, **limit)
    if url.startswith(("postgresql:", "postgres:", "postgresql+asyncpg:", "postgres+asyncpg:")):
        from bitbybit.store.postgres import PostgresStore

        return PostgresStore(url, **limit, **options)  # type: ignore[arg-type]  # schema, pool_size
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…"
    )
