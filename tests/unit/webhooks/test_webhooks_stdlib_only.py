"""``bitbybit.webhooks`` imports and works in a bare venv: the standard library and our src only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bitbybit.webhooks

SRC = Path(bitbybit.webhooks.__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.util, sys, tempfile, os

for name in ("pydantic", "orjson", "fastapi", "starlette", "flask", "django", "redis"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed in the bare venv"

import bitbybit.webhooks as wh
from bitbybit.webhooks.body import encode_body

body = encode_body({"id": "cust_1", "email": "a@example.com", "tags": ["vip"], "addresses": []})
headers = wh.webhook_headers("evt_1", "customer.created", body, "whsec_test", 1700000000)
event = wh.verify(body, headers, "whsec_test", now=1700000000)
assert isinstance(event.data, wh.Customer) and event.data.tags == ("vip",)
assert isinstance(wh.parse_event("message.received", {"messageId": "m", "from": "+62"}),
                  wh.MessageReceived)
try:
    wh.verify(body, headers, "whsec_wrong", now=1700000000)
except wh.BadSignature:
    pass
else:
    raise AssertionError("a wrong secret verified")

memory = wh.MemoryStore()
assert memory.seen_or_mark("evt_1") is False and memory.seen_or_mark("evt_1") is True
with tempfile.TemporaryDirectory() as tmp:
    with wh.SQLiteStore(os.path.join(tmp, "ids.db")) as store:
        assert store.seen_or_mark("evt_1") is False and store.seen_or_mark("evt_1") is True

third_party = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {"pydantic", "orjson", "fastapi", "starlette", "flask", "django",
                               "redis", "werkzeug", "typing_extensions"}
)
assert not third_party, third_party
adapters = sorted(
    name for name in sys.modules
    if name.startswith("bitbybit.webhooks.") and name.rsplit(".", 1)[1] in
    {"fastapi", "starlette", "flask", "django"}
)
assert not adapters, adapters
print("stdlib-only ok")
"""


def test_imports_and_works_with_only_the_standard_library(tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE"}
    }
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [str(python), "-s", "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stdlib-only ok"
