"""The canonical webhook body: bytes equal to JavaScript's ``JSON.stringify(JSON.parse(body))``.

The public Node verification sample re-serialises the parsed body before it checks the signature,
so the bytes we sign must survive that round trip unchanged: compact separators, UTF-8 without
``\\u`` escapes, numbers written the way ECMAScript's ``Number::toString`` writes them, and no
object keys that look like array indices (JavaScript would move those to the front).

Dependency-free on purpose: receivers import this package without the server's dependencies.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "UnencodableBody", "encode_body", "js_number"]

MAX_SAFE_INTEGER = 2**53 - 1
_ARRAY_INDEX = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_encode_str = json.encoder.encode_basestring  # the C string encoder
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class UnencodableBody(ValueError):
    """A value that would not survive ``JSON.stringify(JSON.parse(body))`` byte for byte."""


def js_number(value: float) -> str:
    """Format a finite float exactly as ECMAScript ``Number::toString`` does."""
    if not math.isfinite(value):
        raise UnencodableBody(f"{value!r} has no JSON form")
    if value == 0:
        return "0"  # JavaScript prints -0 as 0 too
    sign = "-" if value < 0 else ""
    text = repr(abs(value))  # shortest round-tripping digits, like JavaScript
    if "e" in text:
        mantissa, exp_text = text.split("e")
        exponent = int(exp_text)
    else:
        mantissa, exponent = text, 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + exponent - (len(whole + fraction) - len((whole + fraction).lstrip("0")))
    digits = digits.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        e_text = ("+" if e >= 0 else "-") + str(abs(e))
        out = digits + "e" + e_text if k == 1 else digits[0] + "." + digits[1:] + "e" + e_text
    return sign + out


def _string(value: str) -> str:
    if _LONE_SURROGATE.search(value):
        raise UnencodableBody("text contains a lone UTF-16 surrogate")
    encoded: str = _encode_str(value)
    return encoded


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise UnencodableBody(f"integer {value} is beyond JavaScript's safe range")
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(js_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnencodableBody(f"object key {key!r} is not a string")
            if _ARRAY_INDEX.match(key) and int(key) < 2**32 - 1:
                raise UnencodableBody(f"object key {key!r} looks like an array index")
            if not first:
                out.append(",")
            first = False
            out.append(_string(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise UnencodableBody(f"{type(value).__name__} has no JSON form")


def encode_body(value: Any) -> bytes:
    """Serialise ``value`` to the exact bytes that are signed and sent."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")
