"""The limits the API promises and the delivery worker relies on, each defined once.

The API must never accept work the worker cannot do, so both sides read these numbers from here
(a module below services, delivery and the API, importing nothing of ours):

- an event body over ``MAX_PAYLOAD_BYTES`` would fail every delivery attempt at once, so the
  change that would write it is refused before anything is written;
- JSON nested deeper than ``MAX_JSON_DEPTH`` is refused in every request body, before it is
  parsed: the encoders that store, render and send it stop at 254 levels (orjson) and the
  parser at Python's recursion limit, and no resource needs more than a handful of levels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, Final

MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Largest event body the worker sends (64 KB = 65,536 bytes)."""

MAX_JSON_DEPTH: Final = 64
"""Most arrays and objects a request body may nest, the body itself counting as the first."""

# A JSON string, or what is left of an unterminated one: it always matches from its opening
# quote, so a scan never restarts inside it (linear time on any input).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_TOKEN = re.compile(rb'"[^"]*"|[\[\]{}]')


def json_depth(value: Any) -> int:
    """How many arrays and objects ``value`` nests (a scalar 0, ``[]`` 1, ``[{}]`` 2).

    Iterative, so a value of any depth is measured without recursion.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests more than ``limit`` arrays and objects.

    Measured without parsing: strings are skipped (their brackets are text) and the rest is
    counted in C-speed passes, so the check costs little beside the parse it protects. On a text
    that is not JSON the answer is only an estimate; the parser refuses such a text anyway.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def too_deep_field(body: bytes, limit: int = MAX_JSON_DEPTH) -> str:
    """The member of the body's top object under which ``body`` nests deeper than ``limit``.

    ``"body"`` when the body itself is an array or no member is to blame. Only called for bodies
    already found too deep, so the slower token-by-token walk is paid by refused requests alone.
    """
    if not body.lstrip().startswith(b"{"):
        return "body"
    text = _STRING.sub(lambda m: b'"' + b" " * max(len(m[0]) - 2, 0) + b'"', body)
    depth = 0
    key: tuple[int, int] | None = None
    member: tuple[int, int] | None = None
    for token in _TOKEN.finditer(text):
        char = token[0][:1]
        if char == b'"':
            if depth == 1:
                key = token.span()
        elif char in b"[{":
            depth += 1
            if depth == 2:
                member = key
            if depth > limit:
                break
        else:
            depth -= 1
    else:
        return "body"
    if member is None:
        return "body"
    try:
        name = json.loads(body[member[0] : member[1]])
    except ValueError:
        return "body"
    return name if isinstance(name, str) and name else "body"
