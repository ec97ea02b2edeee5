"""``bitbybit.limits``: the depth of JSON measured on its text agrees with its parsed value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbybit.limits import MAX_JSON_DEPTH, json_depth, too_deep, too_deep_field

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab'), children, max_size=3)
    ),
    max_leaves=40,
)


@given(JSON_VALUES, st.integers(min_value=0, max_value=8))
def test_depth_of_the_text_is_the_depth_of_the_value(value: Any, limit: int) -> None:
    """Brackets inside strings, escaped quotes and backslashes are text, never nesting."""
    text = json.dumps(value).encode()
    assert too_deep(text, limit) == (json_depth(value) > limit)


def test_json_depth_counts_arrays_and_objects() -> None:
    assert json_depth(1) == 0
    assert json_depth("[[[") == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4
    deep: Any = 0
    for _ in range(100_000):  # far beyond Python's recursion limit
        deep = [deep]
    assert json_depth(deep) == 100_000


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b'{"name":"x","media":' + b"[" * 65 + b"]" * 65 + b"}", "media"),
        (b'{"a":"[[[","b":{"c":' + b"[" * 70 + b"]" * 70 + b"}}", "b"),
        (b'{"caf\\u00e9":' + b"[" * 70 + b"]" * 70 + b"}", "café"),
        (b"[" * 70 + b"]" * 70, "body"),
        (b'  {"media":' + b"[" * 2000, "media"),  # unterminated: still named
    ],
)
def test_too_deep_field_names_the_member_of_the_body(text: bytes, field: str) -> None:
    assert too_deep(text)
    assert too_deep_field(text) == field


def test_an_unterminated_string_is_not_nesting() -> None:
    text = b'{"a":"' + b'\\"[' * 10_000
    assert not too_deep(text, MAX_JSON_DEPTH)
