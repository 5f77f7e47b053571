"""Ids: prefixed, unique, and sorted by creation time."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.ids import new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
MAX_MILLIS = 2**48 - 1


def decode(encoded: str) -> int:
    value = 0
    for char in encoded:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_an_id_is_a_prefix_and_26_crockford_characters() -> None:
    made = new_id("tool")
    assert re.fullmatch(r"tool_[0-9a-hjkmnp-tv-z]{26}", made), made


def test_the_time_part_is_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id("x")
    after = time.time_ns() // 1_000_000
    assert before <= decode(made.removeprefix("x_")) >> 80 <= after


def test_ids_are_unique() -> None:
    made = [new_id("org") for _ in range(20_000)]
    assert len(set(made)) == len(made)


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    made = []
    for _ in range(5):
        made.append(new_id("flow"))
        time.sleep(0.002)
    assert sorted(made) == made


@given(
    st.integers(min_value=0, max_value=MAX_MILLIS - 1),
    st.integers(min_value=1, max_value=10_000),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=10, max_size=10),
)
def test_order_follows_milliseconds_whatever_the_random_part(
    millis: int, gap: int, first_random: bytes, second_random: bytes
) -> None:
    later = min(millis + gap, MAX_MILLIS)

    def made_at(at: int, randomness: bytes) -> str:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: at * 1_000_000 + 999_999))
            patch.setattr(ids, "os", SimpleNamespace(urandom=lambda n: randomness[:n]))
            return new_id("log")

    first, second = made_at(millis, first_random), made_at(later, second_random)
    assert first < second
    assert decode(first[4:]) == (millis << 80) | int.from_bytes(first_random, "big")
