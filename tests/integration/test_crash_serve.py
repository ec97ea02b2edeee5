"""``bitbybit serve`` killed with SIGKILL under write load keeps every write it answered, whole.

Thirty-two clients create customers as fast as a real ``serve`` answers; once it has answered a
few hundred, the process is killed (SIGKILL: nothing of it runs after), and another is started on
the same database, three times. On SQLite the writes in flight at the kill were sharing one
transaction (group commit, docs/adr/0010-sqlite-group-commit.md): none of them had been answered,
and none may be left half-written. Afterwards the database holds every customer whose 201 reached
its client, with the id it was given; nothing that was not asked for; and each customer exactly
one ``customer.created`` event, and each such event its customer.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bitbybit.config import Settings
from bitbybit.runtime import Platform
from tests.conftest import CUSTOMERS, make_account
from tests.integration.servers import serve
from tests.integration.test_crash import fetch, shared_database

KILLS = 3
WRITERS = 32
ANSWERED_BEFORE_KILL = 300
SECRET_KEY = "bitbybit-crash-serve-test-secret-key"
HANG_GUARD = 60.0


@dataclass
class Load:
    """What the clients asked for and what was answered, over every life of the server."""

    headers: dict[str, str]
    asked: set[str] = field(default_factory=set)
    answered: dict[str, str] = field(default_factory=dict)
    """Email → the id its 201 gave."""
    cut: int = 0
    """Requests in flight when the server died."""

    async def write(
        self, http: httpx.AsyncClient, name: str, target: int, enough: asyncio.Event
    ) -> None:
        """Create customers one after another until the server dies or stops being asked;
        ``enough`` is set once ``target`` writes have been answered in all."""
        sent = 0
        while True:
            email = f"{name}n{sent}@example.com"
            sent += 1
            self.asked.add(email)
            try:
                response = await http.post(CUSTOMERS, json={"email": email}, headers=self.headers)
            except httpx.TransportError:
                self.cut += 1  # the server died with this request in flight
                return
            assert response.status_code == 201, response.text
            self.answered[email] = response.json()["data"]["id"]
            if len(self.answered) >= target:
                enough.set()


async def test_sigkilled_serve_keeps_every_write_it_answered(dialect: str, tmp_path: Path) -> None:
    async with shared_database(dialect, tmp_path) as (url, store):
        account = await make_account(Platform(store, Settings(secret_key=SECRET_KEY)))
        load = Load(account.headers)
        for life in range(KILLS + 1):
            with serve(
                url,
                tmp_path / f"serve-{life}.log",
                BITBYBIT_SECRET_KEY=SECRET_KEY,
                BITBYBIT_RATE_LIMIT="1000000000",
            ) as server:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
                    enough = asyncio.Event()
                    target = len(load.answered) + ANSWERED_BEFORE_KILL
                    writers = [
                        asyncio.create_task(load.write(http, f"l{life}w{n}", target, enough))
                        for n in range(WRITERS)
                    ]
                    await asyncio.wait_for(enough.wait(), HANG_GUARD)
                    if life == KILLS:
                        server.process.terminate()  # the last life ends as a deployment's would
                    else:
                        server.process.send_signal(signal.SIGKILL)
                    # Waited for off the loop: the clients' requests in flight must go on.
                    await asyncio.to_thread(server.process.wait, HANG_GUARD)
                    await asyncio.wait_for(asyncio.gather(*writers), HANG_GUARD)

        company = account.company.id
        rows = await fetch(store, "SELECT id, email FROM customers WHERE company_id = $1", company)
        kept = {row["email"]: row["id"] for row in rows}
        events = await fetch(
            store,
            "SELECT payload FROM events WHERE company_id = $1 AND type = 'customer.created'",
            company,
        )
    announced = [orjson.loads(bytes(row["payload"]))["id"] for row in events]

    assert len(load.answered) >= (KILLS + 1) * ANSWERED_BEFORE_KILL
    assert load.cut >= KILLS  # each kill came with requests in flight
    lost = {email: id_ for email, id_ in load.answered.items() if kept.get(email) != id_}
    assert not lost, f"answered 201 but not kept as answered: {sorted(lost)[:5]}"
    assert set(kept) <= load.asked
    # Whole writes: each customer with exactly one event, and no event without its customer.
    assert sorted(announced) == sorted(kept.values())
