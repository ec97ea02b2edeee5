"""What the SQL of every subject runs over: the ``Driver`` protocol a dialect implements, and
the small helpers the subjects share (JSON text, ``$n`` lists, the list queries' filters and
paging)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from bitbybit.models import ListQuery, Tenant

Row = Mapping[str, Any]


class Driver(Protocol):
    """What the shared SQL needs from a connection inside a transaction."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it touched."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def any_of_json_array(self, column: str, placeholder: str) -> str:
        """SQL that is true when the JSON array in ``column`` shares an element with the param."""
        ...

    def text_array(self, values: Sequence[str]) -> Any:
        """The parameter value that ``any_of_json_array`` and ``in_texts`` expect."""
        ...

    def in_texts(self, column: str, placeholder: str) -> str:
        """SQL that is true when ``column`` is one of the texts in the parameter: one
        statement, whatever the list's length (an ``IN ($1, …)`` list is a new statement to
        prepare and plan for every length)."""
        ...

    key_share: str
    """A locking clause that keeps the selected rows from being deleted until the transaction
    ends (PostgreSQL ``FOR KEY SHARE``; empty on SQLite, whose writers are serialised)."""
    for_update: str
    """A locking clause that keeps the selected rows from being changed by another transaction
    until this one ends (PostgreSQL ``FOR UPDATE``; empty on SQLite)."""

    async def serialise(self, keys: Sequence[str]) -> None:
        """Make transactions that name the same key take turns until this one ends
        (PostgreSQL transaction-level advisory locks, taken in sorted order; nothing on SQLite,
        whose writers take turns anyway)."""
        ...


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _fold(*parts: str | None) -> str:
    """The lower-cased text that ``search`` matches against."""
    return " ".join(part.casefold() for part in parts if part)


def like_pattern(text: str) -> str:
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in(first: int, count: int) -> str:
    """``$first, …`` placeholders for an IN list."""
    return ", ".join(f"${i}" for i in range(first, first + count))


# -- list queries ------------------------------------------------------------------------------

_SORTABLE = frozenset({"created_at", "updated_at", "first_name", "last_name", "email", "name"})
_NULLABLE_SORTS = frozenset({"first_name", "last_name", "email"})
"""Rows without a value sort last either way (SQLite and PostgreSQL disagree by default)."""


class _Where:
    """Collects conditions and their ``$n`` parameters."""

    def __init__(self, tenant: Tenant) -> None:
        self.args: list[Any] = [tenant.company_id, tenant.mode]
        self.conditions = ["company_id = $1", "mode = $2"]

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    def sql(self) -> str:
        return " AND ".join(self.conditions)


class ListsSql:
    """Paging, sorting and the filters the list endpoints share (customers, products, orders,
    events)."""

    db: Driver

    async def _page(
        self, table: str, columns: str, where: _Where, query: ListQuery
    ) -> tuple[list[Row], int]:
        if query.sort_field not in _SORTABLE:
            raise ValueError(f"cannot sort by {query.sort_field}")
        count_row = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM {table} WHERE {where.sql()}", *where.args
        )
        total = int(count_row["n"]) if count_row is not None else 0
        direction = "DESC" if query.sort_desc else "ASC"
        nulls = " NULLS LAST" if query.sort_field in _NULLABLE_SORTS else ""
        limit = where.param(query.limit)
        offset = where.param((query.page - 1) * query.limit)
        rows = await self.db.fetch(
            f"SELECT {columns} FROM {table} WHERE {where.sql()}"
            f" ORDER BY {query.sort_field} {direction}{nulls}, id {direction}"
            f" LIMIT {limit} OFFSET {offset}",
            *where.args,
        )
        return rows, total

    def _common_filters(self, where: _Where, query: ListQuery) -> None:
        if query.search:
            where.add(f"search_text LIKE {where.param(like_pattern(query.search))} ESCAPE '\\'")
        tags = query.filters.get("tags")
        if tags:
            where.add(self.db.any_of_json_array("tags", where.param(self.db.text_array(tags))))
        for column in ("source", "status", "fulfillment_status", "financial_status", "type"):
            values = query.filters.get(column)
            if values:
                where.add(f"{column} IN ({', '.join(where.param(v) for v in values)})")
        since = query.filters.get("since")
        if since:
            where.add(f"created_at >= {where.param(int(since[0]))}")
        until = query.filters.get("until")
        if until:
            where.add(f"created_at <= {where.param(int(until[0]))}")
