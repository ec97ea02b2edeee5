"""Strict mypy checks each dialect's store and transaction class against the storage port.

``SQLiteStore``/``PostgresStore`` type ``write()``/``read()`` as context managers of their own
transaction class, so handing a store where a ``Store`` is expected (as ``open_store`` does)
checks every method of that class against ``Tx``. These tests run mypy, with the project's
configuration, over small modules: a transaction class with one method's signature changed must
fail the check, both as a ``Tx`` and through a store whose ``write()`` yields it; the same module
with the signature as the port has it must pass, and in it the real stores must be ``Store``s whose
``write()``/``read()`` are typed as their own transaction class (``Any`` would check nothing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODULE = """\
from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import assert_type

from bitbybit.models import {models}
from bitbybit.store import Store, Tx
from bitbybit.store.{dialect} import {store}, {tx}


def real_store(store: {store}) -> Store:
    return store


def real_transactions(store: {store}) -> None:
    assert_type(store.write(), AbstractAsyncContextManager[{tx}, bool | None])
    assert_type(store.read(), AbstractAsyncContextManager[{tx}, bool | None])


class ChangedTx({tx}):
    {method}{ignore}
        raise NotImplementedError


class ChangedStore({store}):
    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[ChangedTx]:
        raise NotImplementedError

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[ChangedTx]:
        raise NotImplementedError


def as_tx(tx: ChangedTx) -> Tx:
    return tx  # as_tx


def as_store(store: ChangedStore) -> Store:
    return store  # as_store
"""

CASES = {
    "postgres": {
        "store": "PostgresStore",
        "tx": "PostgresTx",
        "models": "Customer, Tenant",
        "right": "async def get_customer(self, tenant: Tenant, customer_id: str)"
        " -> Customer | None:",
        "wrong": "async def get_customer(self, tenant: Tenant, customer_id: int)"
        " -> Customer | None:",
        "method": "get_customer",
    },
    "sqlite": {
        "store": "SQLiteStore",
        "tx": "SQLiteTx",
        "models": "QueueStats",
        "right": "async def queue_stats(self, now: int) -> QueueStats:",
        "wrong": "async def queue_stats(self, now: int, *, limit: int) -> QueueStats:",
        "method": "queue_stats",
    },
}


def _module(dialect: str, signature: str) -> str:
    case = CASES[dialect]
    return MODULE.format(
        dialect=dialect,
        store=case["store"],
        tx=case["tx"],
        models=case["models"],
        method=case[signature],
        # A subclass changing a signature is an [override] error of its own; silenced so what is
        # left is the port's check alone (strict mypy also reports an ignore that is not needed).
        ignore="  # type: ignore[override]" if signature == "wrong" else "",
    )


def _line(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.endswith(f"# {marker}"))


@pytest.fixture(scope="module")
def mypy_says(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, list[str]]]:
    """Each module's text and what mypy reports in it: one mypy run for all of them, with the
    project's configuration and cache (what ``make typecheck`` left makes it quick)."""
    folder = tmp_path_factory.mktemp("store_typing")
    modules = {}
    for dialect in CASES:
        for signature in ("right", "wrong"):
            name = f"store_typing_{dialect}_{signature}"
            text = _module(dialect, signature)
            (folder / f"{name}.py").write_text(text)
            modules[name] = text
    # A process of its own, not ``mypy.api.run``: mypy retunes the garbage collector and the
    # recursion limit of the process it runs in, and would keep what it loaded.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            *(str(folder / f"{name}.py") for name in modules),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 2: mypy did not run
    # By file name, not path: a module mypy finds unchanged in its cache is reported with the
    # errors (and the path) it had then, which may be another run's temporary folder.
    lines = run.stdout.splitlines()
    return {
        name: (text, [line for line in lines if Path(line.split(":", 1)[0]).name == f"{name}.py"])
        for name, text in modules.items()
    }


@pytest.mark.parametrize("dialect", list(CASES))
def test_the_port_as_each_dialect_implements_it_passes(
    mypy_says: dict[str, tuple[str, list[str]]], dialect: str
) -> None:
    _, reported = mypy_says[f"store_typing_{dialect}_right"]
    assert reported == []


@pytest.mark.parametrize("dialect", list(CASES))
def test_one_wrong_signature_in_a_dialects_transaction_fails(
    mypy_says: dict[str, tuple[str, list[str]]], dialect: str
) -> None:
    text, reported = mypy_says[f"store_typing_{dialect}_wrong"]
    errors = [line for line in reported if ": error: " in line]
    notes = "\n".join(line for line in reported if ": note: " in line)
    where = {int(line.split(".py:", 1)[1].split(":", 1)[0]): line for line in errors}
    assert sorted(where) == [_line(text, "as_tx"), _line(text, "as_store")], reported
    assert where[_line(text, "as_tx")].endswith(
        'Incompatible return value type (got "ChangedTx", expected "Tx")  [return-value]'
    )
    assert where[_line(text, "as_store")].endswith(
        'Incompatible return value type (got "ChangedStore", expected "Store")  [return-value]'
    )
    assert f"def {CASES[dialect]['method']}(" in notes  # mypy names the method that differs
