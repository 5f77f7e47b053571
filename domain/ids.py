"""Opaque, time-ordered identifiers: a type prefix and 26 Crockford base-32 characters."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id such as ``tool_01jd3w9m2x4k8q7r5t6y0z1a2b``.

    48 bits of milliseconds then 80 random bits (a ULID), so ids sort by creation time and
    keep B-tree inserts local, while staying unguessable.
    """
    millis = time.time_ns() // 1_000_000
    randomness = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode((millis << 80) | randomness, 26)}"


EXECUTION_ID_PATTERN = "exec_[0-9]+_[0-9a-z]{8}"  # what ``execution_id`` makes


def execution_id(now_seconds: float) -> str:
    """The seed's execution id format: ``exec_{unixTimestamp}_{random}``."""
    return f"exec_{int(now_seconds)}_{_encode(int.from_bytes(os.urandom(5), 'big'), 8)}"
