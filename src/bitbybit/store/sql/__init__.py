"""The domain methods of the storage port, written once over a small driver interface.

Statements use ``$n`` placeholders; the SQLite driver rewrites them to ``?n``. JSON-shaped columns
hold compact JSON text; times are integer milliseconds; money is integer hundredths.

One module per subject (procrastinate keeps its queries the same way), each a mixin over the
``Driver`` of ``driver.py`` answering one protocol of ``store/base.py``; ``SqlTx`` composes them
into the whole ``Tx``, and each dialect subclasses it for the statements that differ.
"""

from __future__ import annotations

from bitbybit.store.sql.accounts import KEY_COLUMNS, AccountsSql, api_key_from_row
from bitbybit.store.sql.customers import CustomersSql
from bitbybit.store.sql.deliveries import DeliveriesSql
from bitbybit.store.sql.driver import Driver, Row, like_pattern
from bitbybit.store.sql.endpoints import EndpointsSql
from bitbybit.store.sql.events import EventsSql
from bitbybit.store.sql.idempotency import IdempotencySql
from bitbybit.store.sql.jobs import JobsSql
from bitbybit.store.sql.messaging import MessagingSql
from bitbybit.store.sql.orders import OrdersSql
from bitbybit.store.sql.products import ProductsSql
from bitbybit.store.sql.queue import QueueSql, job_from_row, succeeded_endpoints
from bitbybit.store.sql.retention import RetentionSql
from bitbybit.store.sql.users import UsersSql

__all__ = [
    "KEY_COLUMNS",
    "Driver",
    "Row",
    "SqlTx",
    "api_key_from_row",
    "job_from_row",
    "like_pattern",
    "succeeded_endpoints",
]


class SqlTx(
    AccountsSql,
    IdempotencySql,
    CustomersSql,
    ProductsSql,
    OrdersSql,
    EventsSql,
    EndpointsSql,
    DeliveriesSql,
    JobsSql,
    QueueSql,
    MessagingSql,
    UsersSql,
    RetentionSql,
):
    """Implements ``store.base.Tx`` over a ``Driver``."""

    def __init__(self, driver: Driver) -> None:
        self.db = driver
        self.endpoints_changed = set()
