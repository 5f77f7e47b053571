"""Protobuf <-> Python: JSON values (Struct, ListValue, Value), timestamps, enums, pages.

Free-form JSON arrives as google.protobuf.Struct/ListValue/Value, whose numbers are doubles:
integral ones come back as ``int``, so the domain checks them exactly as it checks REST bodies.
Enums map to REST's strings (``AUTH_TYPE_API_KEY`` <-> ``"api_key"``, ``HTTP_METHOD_GET`` <->
``"GET"``, ``EXECUTION_EVENT_TYPE_FLOW_STARTED`` <-> ``"flow.started"``); the zero value is None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from application.ports import LIMIT_DEFAULT, LIMIT_MAX, Page
from domain.errors import FieldError, ValidationFailed
from domain.rules import SAFE_INTEGER_MAX

M = TypeVar("M")
R = TypeVar("R")

# --- JSON values -----------------------------------------------------------------------------------


class _NotFinite(Exception):
    """A NaN or an infinity, on its way up to the public entry point, collecting its path."""

    def __init__(self) -> None:
        self.path: list[str | int] = []


def _checked(convert: Callable[[M], R], message: M, field: str) -> R:
    """``convert(message)``; a NaN or an infinity in it (a double carries them, JSON and so REST
    cannot) is refused by its path under ``field`` (``variables.a.0``)."""
    try:
        return convert(message)
    except _NotFinite as exc:
        path = ".".join(str(part) for part in [*([field] if field else []), *reversed(exc.path)])
        raise ValidationFailed([FieldError(path, "Numbers must be finite", "invalid_type")]) from None


def from_value(value: struct_pb2.Value, field: str = "") -> Any:
    """``field`` names where the value sits (``variables``), for the error it may raise."""
    return _checked(_value, value, field)


def from_struct(struct: struct_pb2.Struct, field: str = "") -> dict[str, Any]:
    return _checked(_struct, struct, field)


def from_list(values: struct_pb2.ListValue, field: str = "") -> list[Any]:
    return _checked(_list, values, field)


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise _NotFinite
        # integral doubles the domain can hold exactly come back as int; larger ones stay doubles
        if number.is_integer() and abs(number) <= SAFE_INTEGER_MAX:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _struct(value.struct_value)
    return _list(value.list_value)


def _struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    result = {}
    for key, item in struct.fields.items():
        try:
            result[key] = _value(item)
        except _NotFinite as exc:
            exc.path.append(key)
            raise
    return result


def _list(values: struct_pb2.ListValue) -> list[Any]:
    result = []
    for i, item in enumerate(values.values):
        try:
            result.append(_value(item))
        except _NotFinite as exc:
            exc.path.append(i)
            raise
    return result


def optional_struct(message: Any, field: str) -> dict[str, Any] | None:
    """A Struct field: its dict when set, None when not (REST: absent)."""
    return from_struct(getattr(message, field), field) if message.HasField(field) else None


def optional_list(message: Any, field: str) -> list[Any] | None:
    return from_list(getattr(message, field), field) if message.HasField(field) else None


def to_value(data: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    _fill(value, data)
    return value


def _fill(value: struct_pb2.Value, data: Any) -> None:
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        value.struct_value.update(data)
    elif isinstance(data, list | tuple):
        value.list_value.extend(data)
    else:
        value.string_value = str(data)


def to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if data is None:
        return None
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def to_list(data: list[Any] | None) -> struct_pb2.ListValue | None:
    if data is None:
        return None
    values = struct_pb2.ListValue()
    values.extend(data)
    return values


# --- times -----------------------------------------------------------------------------------------


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def from_timestamp(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    try:
        return getattr(message, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):  # seconds beyond years 1-9999, or nanos beyond a second
        raise ValidationFailed([FieldError(field, "Not a valid timestamp", "invalid_date")]) from None


# --- enums -----------------------------------------------------------------------------------------


class EnumMap:
    """One proto enum <-> REST's strings. ``spell`` turns the name's suffix into the REST string."""

    def __init__(self, enum: EnumTypeWrapper, prefix: str, spell: Callable[[str], str]) -> None:
        self._to_text: dict[int, str] = {}
        self._to_number: dict[str, int] = {}
        for name, number in enum.items():
            if number == 0:
                continue
            text = spell(name.removeprefix(prefix))
            self._to_text[number] = text
            self._to_number[text] = number

    def text(self, number: int, field: str) -> str | None:
        """The REST string of an enum value; None for the zero value ("not given"). A number the
        enum does not know (proto3 lets any through) is refused, never taken for "not given"."""
        if number == 0:
            return None
        text = self._to_text.get(number)
        if text is None:
            expected = " | ".join(f"'{t}'" for t in self._to_text.values())
            message = f"Invalid enum value. Expected {expected}, received {number}"
            raise ValidationFailed([FieldError(field, message, "invalid_enum_value")])
        return text

    def number(self, text: str | None) -> int:
        """The enum value of a REST string; 0 for None or a string the enum does not know."""
        return self._to_number.get(text or "", 0)


def lower(name: str) -> str:
    return name.lower()


def upper(name: str) -> str:
    return name.upper()


def dotted(name: str) -> str:
    """FLOW_STARTED -> flow.started"""
    return name.lower().replace("_", ".", 1)


# --- pages -----------------------------------------------------------------------------------------


def page(message: Any, field: str = "page") -> Page:
    """A request's Page: limit 0 is the default (50); 1-500 as given; above 500 is refused."""
    given = getattr(message, field)
    limit, offset = given.limit or LIMIT_DEFAULT, given.offset
    problems = []
    if limit < 1:
        problems.append(
            FieldError(f"{field}.limit", "Number must be greater than or equal to 1", "too_small")
        )
    if limit > LIMIT_MAX:
        problems.append(
            FieldError(f"{field}.limit", f"Number must be less than or equal to {LIMIT_MAX}", "too_big")
        )
    if offset < 0:
        problems.append(
            FieldError(f"{field}.offset", "Number must be greater than or equal to 0", "too_small")
        )
    if problems:
        raise ValidationFailed(problems)
    return Page(limit=limit, offset=offset)
