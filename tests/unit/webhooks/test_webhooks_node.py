"""Cross-checks in Node.js: its crypto module signs our bytes identically, and the public sample's
``JSON.stringify(JSON.parse(body))`` gives our bytes back, so verifying over it succeeds."""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitbybit.webhooks import sign, verify, webhook_headers
from bitbybit.webhooks.body import MAX_SAFE_INTEGER, UnencodableBody, encode_body

NODE = shutil.which("node") or "/usr/bin/node"
GOLDEN_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOLDEN_BODY = b'{"id":"cust_abc123","email":"john@example.com"}'
GOLDEN_HEADER = "t=1700000000,v1=4e8baf8531205febc3edcf52c6502f28c5b09516534c6db237371d175fd9e008"

# Reads {secret, cases: [{file, header}]} on stdin. For each body file it does what receivers do:
# (1) HMAC over the raw bytes (express.raw), (2) the public sample: HMAC over
# JSON.stringify(JSON.parse(body)) as a string, and reports the byte-for-byte round trip.
NODE_CHECK = r"""
const crypto = require("crypto");
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const out = input.cases.map(({ file, header }) => {
  const raw = fs.readFileSync(file);
  const parts = header.split(",");
  const t = parts[0].split("=")[1];
  const v1 = parts[1].split("=")[1];
  const hmac = (data) => crypto.createHmac("sha256", input.secret).update(data).digest("hex");
  const overRaw = hmac(Buffer.concat([Buffer.from(t + "."), raw]));
  const restrung = JSON.stringify(JSON.parse(raw.toString("utf8")));
  const overSample = hmac(`${t}.${restrung}`);
  return {
    raw: overRaw,
    rawOk: crypto.timingSafeEqual(Buffer.from(overRaw), Buffer.from(v1)),
    sampleOk: overSample === v1,
    sameBytes: Buffer.from(restrung, "utf8").equals(raw),
  };
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture
def node(require: Callable[[bool, str], None]) -> str:
    require(Path(NODE).exists(), "node (Node.js)")
    return NODE


def _run_node(node: str, secret: str, bodies: list[bytes], tmp_path: Path) -> list[dict[str, Any]]:
    cases = []
    for index, body in enumerate(bodies):
        path = tmp_path / f"body-{index}.json"
        path.write_bytes(body)
        cases.append({"file": str(path), "header": sign(body, secret, 1_700_000_000)})
    done = subprocess.run(
        [node, "-e", NODE_CHECK],
        input=json.dumps({"secret": secret, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(bodies)
    return results


def test_golden_vector_in_node(node: str, tmp_path: Path) -> None:
    assert sign(GOLDEN_BODY, GOLDEN_SECRET, 1_700_000_000) == GOLDEN_HEADER
    [result] = _run_node(node, GOLDEN_SECRET, [GOLDEN_BODY], tmp_path)
    assert "v1=" + result["raw"] == GOLDEN_HEADER.split(",")[1]
    assert result == {"raw": result["raw"], "rawOk": True, "sampleOk": True, "sameBytes": True}


CORPUS: list[dict[str, Any]] = [
    {"id": "cust_abc123", "email": "john@example.com"},
    {"name": "Jl. Sudirman — café, naïve, Ünïcödé, 日本語, عربى"},
    {"emoji": "🎉👩‍👩‍👧 🇮🇩", "astral": "𝄞"},
    {"slash": "a/b</script>", "url": "https://cdn.example/x?a=1&b=2"},
    {"quotes": "he said \"hi\" \\ back\\slash 'single'"},
    {"controls": "".join(chr(c) for c in range(32)) + "\x7f"},
    {"separators": "line\u2028para\u2029end", "bom": "\ufeff", "nbsp": "\u00a0"},
    {"big": MAX_SAFE_INTEGER, "small": -MAX_SAFE_INTEGER, "zero": 0, "negzero": -0.0},
    {"decimals": [0.1, 0.2, 0.30000000000000004, 1e-7, 1e-6, 123.456, -2.5]},
    {"exponents": [1e21, 1e20, 1.5e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]},
    {"whole floats": [100.0, 1e16, 5.331681459453189e16, 2.0**53, 2.0**60]},
    {"keys": {"01": 1, "-1": 2, "4294967295": 3, "1.5": 4, " 1": 5, "": 6}},
    {"nested": [[[{"a": [None, True, False, {}, []]}]]], "empty": {}},
    {"total": 150000, "currency": None, "tags": [], "lineItems": [{"price": 75000}]},
]


def _random_document(rng: random.Random, depth: int = 0) -> Any:
    pool = 'aZ09 "\\/\b\f\n\r\t\x00\x1f\x7fé€\u2028\u2029\ufeff😀𝄞日'
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return "".join(rng.choice(pool) for _ in range(rng.randrange(12)))
    if kind == 1:
        return rng.randint(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    if kind == 2:
        value: float = struct.unpack("<d", rng.randbytes(8))[0]
        return value if math.isfinite(value) else 0.5
    if kind == 3:
        return rng.choice([0.1, 1e-7, 1e21, 1e-6, 1e20, 123e-20, 2.5, -0.0])
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return rng.uniform(-1e6, 1e6)
    if kind == 6:
        return [_random_document(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        "".join(rng.choice(pool) for _ in range(rng.randrange(6))): _random_document(rng, depth + 1)
        for _ in range(rng.randrange(5))
    }


def _random_corpus(count: int) -> list[dict[str, Any]]:
    rng = random.Random(20240115)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        document = {"doc": _random_document(rng), "n": len(out)}
        try:
            encode_body(document)
        except UnencodableBody:  # e.g. a random key that looks like an array index
            continue
        out.append(document)
    return out


def test_public_node_sample_round_trips_our_bodies(node: str, tmp_path: Path) -> None:
    documents = CORPUS + _random_corpus(400)
    bodies = [encode_body(document) for document in documents]
    results = _run_node(node, GOLDEN_SECRET, bodies, tmp_path)
    failures = [
        (body, result)
        for body, result in zip(bodies, results, strict=True)
        if not (result["sameBytes"] and result["sampleOk"] and result["rawOk"])
    ]
    assert failures == []
    # and the Python verifier agrees on every one of them
    for document, body in zip(documents, bodies, strict=True):
        headers = webhook_headers("evt_1", "test.corpus", body, GOLDEN_SECRET, 1_700_000_000)
        event = verify(body, headers, GOLDEN_SECRET, now=1_700_000_000)
        assert event.payload == document


def test_corpus_bodies_are_utf8_without_escapes_for_non_ascii() -> None:
    body = encode_body(CORPUS[2])
    assert "🎉".encode() in body
    assert b"\\u" not in body
    assert encode_body(CORPUS[7]) == (
        b'{"big":9007199254740991,"small":-9007199254740991,"zero":0,"negzero":0}'
    )
    assert encode_body(CORPUS[8]) == (
        b'{"decimals":[0.1,0.2,0.30000000000000004,1e-7,0.000001,123.456,-2.5]}'
    )
