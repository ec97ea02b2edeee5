"""Migrated PostgreSQL schemas made ahead of the tests that use them, by a process of their own.

Creating a schema and running every migration in it takes some 0.2 s of the server's time, and
dropping it again 0.05 s; most PostgreSQL tests want just that, a freshly migrated schema. A helper
process (this module run as a script) keeps a few schemas ready, each made exactly as a test
would make it (``CREATE SCHEMA`` and ``PostgresStore.migrate()``, every migration really applied),
and drops the schemas the tests are done with, while the tests run on the other core.

A process, not a thread: tests monkeypatch what the helper uses (``migrations.load``, the
``socket`` module's ``connect`` and ``getaddrinfo``, recorded by ``test_ssrf_resolver``), and
none of that may reach, or be disturbed by, the schemas made meanwhile.

The protocol, one line each: the helper writes the name of each schema it has made to its
standard output; the tests write ``took NAME`` when they take one (the helper then makes another)
and ``drop NAME`` when they are done with it. At the end of its input the helper drops every
schema it made and was not told to drop, then every one it was, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

import asyncpg

from bitbybit.store import migrations
from bitbybit.store.postgres import PostgresStore

TAKE_WITHIN = 120.0
"""Seconds a test waits for a schema before it fails (the helper retries meanwhile, e.g. while
``test_faults`` restarts the server)."""
CLOSE_WITHIN = 120.0
LOCK_TIMEOUT = "5s"
"""How long the helper's ``DROP SCHEMA`` waits for a lock before it puts that schema back at the
end of its list (a test's connection still open elsewhere must not hold up the schemas the next
tests wait for)."""


class SchemaPool:
    """The tests' side: ``take()`` a migrated schema, ``give_back()`` one to be dropped."""

    def __init__(self, url: str, size: int) -> None:
        # The helper's standard error, shown on a failure; closed in ``close``.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-P", str(Path(__file__).resolve()), url, str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._ready: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._ready.put(line.strip())
        self._ready.put(None)  # the helper exited

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):  # gone: ``take`` says why
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()

    def _failure(self, what: str) -> RuntimeError:
        self._log.seek(0)
        tail = self._log.read()[-5000:].decode(errors="replace")
        return RuntimeError(f"the PostgreSQL schema pool {what}:\n{tail}")

    async def take(self) -> str:
        """The name of a migrated schema, now this caller's."""
        deadline = time.monotonic() + TAKE_WITHIN
        while True:
            try:
                name = self._ready.get_nowait()
                break
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise self._failure(f"made no schema in {TAKE_WITHIN:.0f} s") from None
                await asyncio.sleep(0.005)
        if name is None:
            self._ready.put(None)  # every later take fails the same way
            raise self._failure(f"exited ({self._process.poll()})")
        self._send(f"took {name}")
        return name

    def give_back(self, name: str) -> None:
        """Drop the schema ``name`` (made here or not) in the background."""
        self._send(f"drop {name}")

    def close(self) -> None:
        """Wait for the helper to drop every schema it made and every one given back."""
        if self._process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(CLOSE_WITHIN)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


# -- the helper process ---------------------------------------------------------------------------


class _Helper:
    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.size = size
        self.untaken: deque[str] = deque()
        """Made and announced, not taken yet."""
        self.drops: deque[str] = deque()
        self.closing = False
        self.wake = asyncio.Event()
        self.admin: asyncpg.Connection | None = None

    def command(self, line: str | None) -> None:
        """One line of input, on the loop's thread (``None``: the input ended)."""
        if line is None:
            self.closing = True
        else:
            verb, _, name = line.strip().partition(" ")
            if verb == "took":
                with contextlib.suppress(ValueError):
                    self.untaken.remove(name)
            elif verb == "drop":
                self.drops.append(name)
        self.wake.set()

    async def connection(self) -> asyncpg.Connection:
        if self.admin is None or self.admin.is_closed():
            self.admin = await asyncpg.connect(
                self.url, server_settings={"lock_timeout": LOCK_TIMEOUT}
            )
        return self.admin

    async def make(self, expected: list[str]) -> None:
        name = f"t_{secrets.token_hex(6)}"
        try:
            await (await self.connection()).execute(f"CREATE SCHEMA {name}")
            applied = await PostgresStore(self.url, schema=name).migrate()
            if applied != expected:
                raise RuntimeError(f"{name}: applied {applied}, expected {expected}")
        except BaseException:
            self.drops.appendleft(name)
            raise
        self.untaken.append(name)
        sys.stdout.write(name + "\n")
        sys.stdout.flush()

    async def drop(self) -> None:
        name = self.drops.popleft()
        try:
            await (await self.connection()).execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        except BaseException:
            self.drops.append(name)
            raise

    async def run(self) -> None:
        expected = [f"{m.version:04d}_{m.name}" for m in migrations.load("postgres")]
        failures = 0
        while not self.closing or self.drops:
            self.wake.clear()
            try:
                if self.closing:
                    if failures > 3:  # a lock held past the session: leave the rest
                        break
                    await self.drop()
                elif len(self.untaken) < self.size:
                    await self.make(expected)
                elif self.drops:
                    await self.drop()
                else:
                    await self.wake.wait()
                failures = 0
            except Exception as error:  # e.g. the server restarting: try again
                failures += 1
                print(f"schema pool: {type(error).__name__}: {error}", file=sys.stderr)
                if self.admin is not None:
                    with contextlib.suppress(Exception):
                        await self.admin.close()
                    self.admin = None
                await asyncio.sleep(0.5)
            if self.closing and not self.drops and self.untaken:
                self.drops.extend(self.untaken)
                self.untaken.clear()
        if self.admin is not None:
            await self.admin.close()


def _feed(stream: IO[str], loop: asyncio.AbstractEventLoop, helper: _Helper) -> None:
    for line in stream:
        loop.call_soon_threadsafe(helper.command, line)
    loop.call_soon_threadsafe(helper.command, None)


async def _main(url: str, size: int) -> None:
    helper = _Helper(url, size)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_feed, args=(sys.stdin, loop, helper), daemon=True).start()
    await helper.run()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
