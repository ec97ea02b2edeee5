"""The dashboard when the database stops answering: a page that says so (503, Retry-After),
never a 500 or a traceback, and the pages come back with the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bitbybit.errors import StorageUnavailable
from bitbybit.runtime import Platform
from tests.dashboard.support import Browser


async def test_pages_and_changes_answer_503_while_the_database_is_down(
    admin: Browser, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    read, write = platform.store.read, platform.store.write

    @asynccontextmanager
    async def refused(*args: object, **kwargs: object) -> AsyncIterator[None]:
        raise StorageUnavailable("the database did not answer within 5 s")
        yield  # pragma: no cover  # a generator, for asynccontextmanager

    monkeypatch.setattr(platform.store, "read", refused)
    monkeypatch.setattr(platform.store, "write", refused)
    for answer in (
        await admin.get("/dashboard/webhooks"),
        await admin.get("/dashboard/deliveries", headers={"hx-request": "true"}),
        await admin.post("/dashboard/keys", {"name": "k", "scopes": "all"}),
    ):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "2"
        assert answer.headers["content-type"].startswith("text/html")
        assert "The database is not answering" in answer.text
        assert "Traceback" not in answer.text
    monkeypatch.setattr(platform.store, "read", read)
    monkeypatch.setattr(platform.store, "write", write)
    assert (await admin.get("/dashboard/webhooks")).status_code == 200
