"""Shared fixtures: a store per dialect, a platform with a controllable clock, an API client.

PostgreSQL tests get a fresh schema each: an empty one (``empty_store``), or one every migration
was applied to (``store``), made ahead by a helper process (``tests/pg_schemas.py``). Locally they
skip with a reason when no server answers; with ``CI=true`` they fail instead, so CI never passes
by skipping them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from bitbybit.api.app import create_app
from bitbybit.config import Settings
from bitbybit.models import ApiKey, Company
from bitbybit.runtime import Platform
from bitbybit.services import access
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sqlite import SQLiteStore
from tests.pg_schemas import SchemaPool

POSTGRES_URL = os.environ.get(
    "BITBYBIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
DIALECTS = ("sqlite", "postgres")


async def _postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        await connection.close()
    except Exception as error:  # any failure to connect means "not reachable"
        return f"{type(error).__name__}: {error}"
    return None


_POSTGRES_PROBLEM: list[str | None] = []


async def require_postgres() -> None:
    if not _POSTGRES_PROBLEM:
        _POSTGRES_PROBLEM.append(await _postgres_reachable())
    problem = _POSTGRES_PROBLEM[0]
    if problem is None:
        return
    message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
    if IN_CI:
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


class FakeClock:
    """A clock tests can move; starts at the real time."""

    def __init__(self) -> None:
        self.now = Settings().clock()

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


SCHEMA_POOL_SIZE = 6
"""Migrated PostgreSQL schemas kept ready: enough for a run of short tests."""
_SCHEMA_POOL: list[SchemaPool] = []


def schema_pool() -> SchemaPool:
    """The session's pool of migrated PostgreSQL schemas, started on first use."""
    if not _SCHEMA_POOL:
        _SCHEMA_POOL.append(SchemaPool(POSTGRES_URL, SCHEMA_POOL_SIZE))
    return _SCHEMA_POOL[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the schemas the pool made or was given back (waits for its helper process)."""
    while _SCHEMA_POOL:
        _SCHEMA_POOL.pop().close()


async def make_store(
    dialect: str, tmp_path_factory: pytest.TempPathFactory, *, migrated: bool = False
) -> AsyncIterator[Store]:
    """A store on a fresh database of ``dialect``, closed (its PostgreSQL schema dropped)
    afterwards; with ``migrated``, every migration applied: SQLite's here, PostgreSQL's by the
    schema pool ahead of time (``store.migrate()`` exactly as here, in a process of its own)."""
    if dialect == "sqlite":
        path = tmp_path_factory.mktemp("db") / "bitbybit.db"
        store: Store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            if migrated:
                await store.migrate()
            yield store
        finally:
            await store.close()
        return
    await require_postgres()
    pool = schema_pool()
    if migrated:
        schema = await pool.take()
    else:
        schema = f"t_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f"CREATE SCHEMA {schema}")
        finally:
            await admin.close()
    pg = PostgresStore(POSTGRES_URL, schema=schema, pool_size=5)
    try:
        await pg.open()
        yield pg
    finally:
        try:
            await pg.close()
        finally:
            pool.give_back(schema)  # dropped by the pool's process while the next tests run


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def empty_store(
    dialect: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    """A store with no schema yet."""
    async for store in make_store(dialect, tmp_path_factory):
        yield store


@pytest.fixture
async def store(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    """A store with every migration applied."""
    async for store in make_store(dialect, tmp_path_factory, migrated=True):
        yield store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(clock: FakeClock) -> Settings:
    return Settings(rate_limit=1000, clock=clock, secret_key="bitbybit-test-secret-key")


@pytest.fixture
def platform(store: Store, settings: Settings) -> Platform:
    return Platform(store, settings)


@dataclass
class Account:
    """A company with a live key (all scopes) and a test key."""

    company: Company
    key: ApiKey
    raw: str
    test_raw: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.raw}

    @property
    def test_headers(self) -> dict[str, str]:
        return {"x-api-key": self.test_raw}


async def make_account(platform: Platform, name: str = "Acme", country: str = "ID") -> Account:
    company = await access.create_company(platform, name, country)
    key, raw = await access.create_api_key(platform, company.id)
    _, test_raw = await access.create_api_key(platform, company.id, mode="test")
    return Account(company, key, raw, test_raw)


@pytest.fixture
async def account(platform: Platform) -> Account:
    return await make_account(platform)


@pytest.fixture
async def other_account(platform: Platform) -> Account:
    return await make_account(platform, "Globex")


def client_for(platform: Platform, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=create_app(platform=platform), raise_app_exceptions=False, client=(client_ip, 50000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(platform) as http:
        yield http


CUSTOMERS = "/customer/open/v1/customers"
ORDERS = "/customer/open/v1/orders"
PRODUCTS = "/customer/open/v1/products"


@pytest.fixture
def private_targets() -> Iterator[None]:
    """Allow loopback webhook targets for this test alone."""
    previous = os.environ.get("BITBYBIT_ALLOW_PRIVATE_TARGETS")
    os.environ["BITBYBIT_ALLOW_PRIVATE_TARGETS"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["BITBYBIT_ALLOW_PRIVATE_TARGETS"]
        else:
            os.environ["BITBYBIT_ALLOW_PRIVATE_TARGETS"] = previous


def with_settings(platform: Platform, **changes: object) -> Platform:
    return Platform(platform.store, platform.settings.replace(**changes))
