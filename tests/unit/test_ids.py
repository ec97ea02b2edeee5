"""Ids: prefix, 20 base62 characters, unique, and in creation order across milliseconds."""

from __future__ import annotations

import os
import re
import time

from hypothesis import given
from hypothesis import strategies as st

from bitbybit.ids import TIME_LENGTH, new_id, random_base62, time_prefix


def test_an_id_is_its_prefix_and_twenty_base62_characters() -> None:
    assert re.fullmatch(r"dlv_[0-9A-Za-z]{20}", new_id("dlv"))


def test_ids_are_unique() -> None:
    ids = [new_id("evt") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    earlier = [new_id("cust") for _ in range(100)]
    time.sleep(0.002)
    later = [new_id("cust") for _ in range(100)]
    assert max(earlier) < min(later)


@given(st.integers(0, 36**TIME_LENGTH - 2), st.integers(1, 10**12))
def test_the_time_prefix_sorts_as_the_time_does(now_ms: int, step: int) -> None:
    after = min(now_ms + step, 36**TIME_LENGTH - 1)
    assert len(time_prefix(now_ms)) == TIME_LENGTH
    assert time_prefix(now_ms) < time_prefix(after)
    assert int(time_prefix(now_ms), 36) == now_ms


def test_a_forked_process_never_hands_out_its_parents_random_text() -> None:
    """Random text is drawn from the OS ahead of need; a child forked with some of it left must
    not hand out the same characters as its parent next (ids made by both would collide)."""
    random_base62(11)  # the pool now holds characters drawn before the fork
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writing, random_base62(40).encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    theirs = os.read(reading, 40).decode()
    os.close(reading)
    assert len(theirs) == 40
    assert random_base62(40) != theirs
