"""Idempotency stores: one contract over memory, SQLite and a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitbybit.webhooks import DEFAULT_TTL, IdempotencyStore, MemoryStore, RedisStore, SQLiteStore


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _redis_client(require: Callable[[bool, str], None]) -> Any:
    try:
        import redis  # optional: only this store's tests need it
    except ImportError:
        require(False, "the redis package")
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        require(False, f"Redis at 127.0.0.1:6379 ({exc})")
    return client


@pytest.fixture
def redis_client(require: Callable[[bool, str], None]) -> Iterator[Any]:
    client = _redis_client(require)
    yield client
    client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        with SQLiteStore(tmp_path / "ids.db") as sqlite_store:
            yield sqlite_store
    else:
        client = request.getfixturevalue("redis_client")
        prefix = f"bitbybit-test:{uuid.uuid4().hex}:"
        yield RedisStore(client, prefix=prefix)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def test_store_answers_the_protocol(store: IdempotencyStore) -> None:
    assert isinstance(store, IdempotencyStore)


def test_first_call_marks_then_later_calls_see(store: IdempotencyStore) -> None:
    assert store.seen_or_mark("evt_a") is False
    assert store.seen_or_mark("evt_a") is True
    assert store.seen_or_mark("evt_a") is True
    assert store.seen_or_mark("evt_b") is False


def test_forget_lets_the_retry_through(store: IdempotencyStore) -> None:
    assert store.seen_or_mark("evt_a") is False
    store.forget("evt_a")
    assert store.seen_or_mark("evt_a") is False
    assert store.seen_or_mark("evt_a") is True
    store.forget("evt_never_seen")  # harmless


def test_exactly_one_of_many_concurrent_calls_wins(store: IdempotencyStore) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        seen = store.seen_or_mark("evt_race")
        with lock:
            results.append(seen)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(results) == [False] + [True] * (threads - 1)


@pytest.mark.parametrize(("event_id", "ttl"), [("", 60), (None, 60), ("evt", 0), ("evt", -1)])
def test_bad_arguments(store: IdempotencyStore, event_id: Any, ttl: int) -> None:
    with pytest.raises(ValueError, match=r"event_id|ttl"):
        store.seen_or_mark(event_id, ttl)


def test_default_ttl_is_a_day() -> None:
    assert DEFAULT_TTL == 24 * 3600


def test_memory_store_expires_and_sweeps() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert store.seen_or_mark("evt_a", ttl_seconds=10) is False
    assert store.seen_or_mark("evt_b") is False
    clock.now += 9.9
    assert store.seen_or_mark("evt_a") is True
    clock.now += 0.1
    assert store.seen_or_mark("evt_a", ttl_seconds=10) is False  # expired: marked afresh
    clock.now += 30
    assert store.seen_or_mark("evt_a") is False
    clock.now += DEFAULT_TTL
    assert len(store) == 2
    store.seen_or_mark("evt_c")  # a sweep runs: a and b have expired
    assert len(store) == 1


def test_sqlite_store_expires_and_sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(SQLiteStore, "_SWEEP_EVERY", 3)
    with SQLiteStore(tmp_path / "ids.db", clock=clock) as store:
        assert store.seen_or_mark("evt_a", ttl_seconds=10) is False
        clock.now += 9.5
        assert store.seen_or_mark("evt_a") is True
        clock.now += 0.5
        assert store.seen_or_mark("evt_a", ttl_seconds=10) is False  # third call sweeps nothing
        clock.now += 20
        assert store.seen_or_mark("evt_b") is False
        assert store.seen_or_mark("evt_c") is False
        assert store.seen_or_mark("evt_d") is False  # sixth call sweeps evt_a
        rows = store._db.execute("SELECT event_id FROM bitbybit_webhook_ids").fetchall()
        assert sorted(row[0] for row in rows) == ["evt_b", "evt_c", "evt_d"]


def test_sqlite_store_is_shared_by_connections_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ids.db"
    with SQLiteStore(path) as first, SQLiteStore(str(path)) as second:
        results: list[bool] = []
        barrier = threading.Barrier(8)

        def attempt(store: SQLiteStore) -> None:
            barrier.wait()
            results.append(store.seen_or_mark("evt_shared"))

        workers = [threading.Thread(target=attempt, args=(s,)) for s in [first, second] * 4]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(results) == [False] + [True] * 7
    with SQLiteStore(path) as reopened:
        assert reopened.seen_or_mark("evt_shared") is True


def test_sqlite_in_memory(tmp_path: Path) -> None:
    with SQLiteStore(":memory:") as store:
        assert store.seen_or_mark("evt_a") is False
        assert store.seen_or_mark("evt_a") is True


def test_redis_store_uses_set_nx_ex(redis_client: Any) -> None:
    prefix = f"bitbybit-test:{uuid.uuid4().hex}:"
    store = RedisStore(redis_client, prefix=prefix)
    try:
        assert store.seen_or_mark("evt_a") is False
        assert redis_client.get(prefix + "evt_a") == b"1"
        assert DEFAULT_TTL - 5 <= redis_client.ttl(prefix + "evt_a") <= DEFAULT_TTL
        assert store.seen_or_mark("evt_b", ttl_seconds=120) is False
        assert 100 <= redis_client.ttl(prefix + "evt_b") <= 120
        # when Redis expires the key, the id is new again
        redis_client.pexpire(prefix + "evt_a", 1)
        deadline = time.monotonic() + 2
        while redis_client.exists(prefix + "evt_a") and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store.seen_or_mark("evt_a") is False
    finally:
        redis_client.delete(prefix + "evt_a", prefix + "evt_b")
