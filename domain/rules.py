"""Small validation rules shared by the entities. Each adds FieldErrors to a list."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from domain.errors import FieldError, ValidationFailed


class Unset:
    """The value of a field an update does not change."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = Unset()

NAME_MAX = 200
KEY_MAX = 64
URL_MAX = 2048
_KEY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,63})$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class Problems:
    """Collects every problem of one request so the caller sees them all at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str, code: str) -> None:
        self.errors.append(FieldError(field, message, code))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def text(
    problems: Problems, field: str, value: Any, *, max_len: int = NAME_MAX, required: bool = True
) -> str:
    """A trimmed, non-empty string of at most ``max_len`` characters."""
    if value is None:
        if required:
            problems.add(field, f"{field} is required", "required")
        return ""
    if not isinstance(value, str):
        problems.add(field, f"Expected string, received {type_name(value)}", "invalid_type")
        return ""
    value = value.strip()
    if "\x00" in value:
        problems.add(field, f"{field} must not contain NUL characters", "invalid_string")
    if required and not value:
        problems.add(field, f"{field} must not be empty", "too_small")
    elif len(value) > max_len:
        problems.add(field, f"{field} must contain at most {max_len} character(s)", "too_big")
    return value


def optional_text(problems: Problems, field: str, value: Any, *, max_len: int) -> str | None:
    if value is None:
        return None
    return text(problems, field, value, max_len=max_len, required=False) or None


def slug(problems: Problems, field: str, value: Any) -> str:
    if not isinstance(value, str):
        problems.add(field, f"Expected string, received {type_name(value)}", "invalid_type")
        return ""
    if not _KEY_RE.fullmatch(value):
        problems.add(
            field,
            f"{field} must be 1-{KEY_MAX} lowercase letters, digits, '-' or '_', starting with a letter or digit",
            "invalid_string",
        )
    return value


def slugify(name: str) -> str:
    """The key derived from a name: 'Slack API' -> 'slack-api'."""
    derived = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return derived[:KEY_MAX].rstrip("-") or "item"


def http_url(problems: Problems, field: str, value: Any) -> str:
    value = text(problems, field, value, max_len=URL_MAX)
    if value:
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            problems.add(field, f"{field} must be an absolute http(s) URL", "invalid_string")
    return value


def email(problems: Problems, field: str, value: Any) -> str:
    value = text(problems, field, value, max_len=320)
    if value and not _EMAIL_RE.fullmatch(value):
        problems.add(field, "Invalid email", "invalid_string")
    return value.lower()


# Stored JSON is also answered over gRPC, as google.protobuf.Struct: protobuf parses at most 100
# nested messages, three per JSON level, and a stored document may be wrapped in a few more levels
# (an event's payload, a log's inputs). 24 leaves that room.
DOCUMENT_DEPTH_MAX = 24
# A JSON number is a double wherever it is parsed (JavaScript, protobuf's Struct): integers beyond
# this are not carried exactly (I-JSON, RFC 7493).
SAFE_INTEGER_MAX = 2**53 - 1


def wide_integers_as_doubles(value: Any) -> Any:
    """The JSON value with integers beyond ±SAFE_INTEGER_MAX as doubles, as JavaScript reads them
    (a 64-bit id from an upstream, ``Date.now() * 1e6``): what a step returns may be stored."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > SAFE_INTEGER_MAX else value
    if isinstance(value, dict):
        return {k: wide_integers_as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wide_integers_as_doubles(v) for v in value]
    return value


def _document(problems: Problems, field: str, value: Any, depth: int = 0) -> None:
    """Stored JSON must be portable: finite numbers, integers a double holds exactly, no NUL
    characters, bounded nesting."""
    if depth > DOCUMENT_DEPTH_MAX:
        problems.add(field, f"Nested deeper than {DOCUMENT_DEPTH_MAX} levels", "too_big")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > SAFE_INTEGER_MAX:
            problems.add(
                field, f"Integers must be between -{SAFE_INTEGER_MAX} and {SAFE_INTEGER_MAX}", "too_big"
            )
    elif isinstance(value, str):
        if "\x00" in value:
            problems.add(field, "Strings must not contain NUL characters", "invalid_string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.add(field, "Numbers must be finite", "invalid_type")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                problems.add(
                    f"{field}.{key}", "Keys must be strings without NUL characters", "invalid_string"
                )
            else:
                _document(problems, f"{field}.{key}", item, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _document(problems, f"{field}.{index}", item, depth + 1)
    elif value is not None and not isinstance(value, bool | int):
        problems.add(field, f"Not a JSON value: {type_name(value)}", "invalid_type")


def json_object(problems: Problems, field: str, value: Any, *, default: dict | None = None) -> dict:
    if value is None:
        return dict(default or {})
    if not isinstance(value, dict):
        problems.add(field, f"Expected object, received {type_name(value)}", "invalid_type")
        return {}
    _document(problems, field, value)
    return value


def json_list(problems: Problems, field: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(field, f"Expected array, received {type_name(value)}", "invalid_type")
        return []
    _document(problems, field, value)
    return value


def one_of(problems: Problems, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        expected = " | ".join(f"'{a}'" for a in allowed)
        problems.add(
            field, f"Invalid enum value. Expected {expected}, received '{value}'", "invalid_enum_value"
        )
    return value if isinstance(value, str) else ""


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
