"""Action input schemas: the seed's parameter metadata, checked when stored, applied to inputs.

A schema is a list of parameters (``name``, ``type``, ``required``, ``label``, ``description``,
``control``, ``default``, ``options``, ``validation``). ``parse_schema`` refuses a schema that
cannot work, naming the parameter and the problem; ``InputSchema.validate`` checks a set of
inputs, applies defaults and reports every problem at once with zod-style codes.

Regular expressions come from an injected compiler (a linear-time engine in production), so a
``pattern`` can never make validation take exponential time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from domain.errors import FieldError, ValidationFailed
from domain.rules import Problems, type_name

PARAM_TYPES = ("string", "number", "boolean", "enum", "array", "object")
PARAMS_MAX = 100
PATTERN_MAX = 500
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_KEYS = {"name", "type", "required", "label", "description", "control", "default", "options", "validation"}
_VALIDATION_KEYS = {"string": {"min", "max", "pattern", "email", "url"}, "number": {"min", "max"}}


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


# Compiles a regular expression or raises ValueError saying why it cannot be used.
PatternCompiler = Callable[[str], Pattern]


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    required: bool = False
    default: Any = None
    has_default: bool = False
    options: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    matcher: Pattern | None = None
    email: bool = False
    url: bool = False

    def check(self, value: Any, errors: list[FieldError], field: str | None = None) -> None:
        """Add to ``errors`` every way ``value`` breaks this parameter."""
        field = field or self.name

        def fail(message: str, code: str) -> None:
            errors.append(FieldError(field, message, code))

        kind = self.type
        if kind in ("string", "enum") and not isinstance(value, str):
            return fail(f"Expected string, received {type_name(value)}", "invalid_type")
        if kind == "number" and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            return fail(f"Expected number, received {type_name(value)}", "invalid_type")
        if kind == "boolean" and not isinstance(value, bool):
            return fail(f"Expected boolean, received {type_name(value)}", "invalid_type")
        if kind == "array" and not isinstance(value, list):
            return fail(f"Expected array, received {type_name(value)}", "invalid_type")
        if kind == "object" and not isinstance(value, dict):
            return fail(f"Expected object, received {type_name(value)}", "invalid_type")
        if kind == "enum" and value not in self.options:
            expected = " | ".join(f"'{o}'" for o in self.options)
            return fail(f"Invalid enum value. Expected {expected}, received '{value}'", "invalid_enum_value")
        if kind == "string":
            self._check_string(value, fail)
        elif kind == "number":
            if self.min is not None and value < self.min:
                fail(f"Number must be greater than or equal to {_num(self.min)}", "too_small")
            if self.max is not None and value > self.max:
                fail(f"Number must be less than or equal to {_num(self.max)}", "too_big")
        return None

    def _check_string(self, value: str, fail: Callable[[str, str], None]) -> None:
        if self.min is not None and len(value) < self.min:
            fail(f"String must contain at least {_num(self.min)} character(s)", "too_small")
        if self.max is not None and len(value) > self.max:
            fail(f"String must contain at most {_num(self.max)} character(s)", "too_big")
        if self.email and not _EMAIL.fullmatch(value):
            fail("Invalid email", "invalid_string")
        if self.url and not _is_url(value):
            fail("Invalid url", "invalid_string")
        if self.matcher is not None and self.matcher.search(value) is None:
            fail(f"String must match the pattern {self.pattern}", "invalid_string")


@dataclass(frozen=True, slots=True)
class InputSchema:
    parameters: tuple[Parameter, ...] = ()

    def validate(self, inputs: Any) -> dict[str, Any]:
        """The inputs with defaults applied, or ValidationFailed listing every problem.

        With parameters declared, only declared inputs are kept (unknown keys are dropped, as
        zod does); an action without a schema passes its inputs through untouched.
        """
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            raise ValidationFailed(
                [FieldError("inputs", f"Expected object, received {type_name(inputs)}", "invalid_type")],
                "Input validation failed",
            )
        if not self.parameters:
            return dict(inputs)
        errors: list[FieldError] = []
        clean: dict[str, Any] = {}
        for param in self.parameters:
            value = inputs.get(param.name)
            if value is None:
                if param.has_default:
                    clean[param.name] = param.default
                elif param.required:
                    errors.append(FieldError(param.name, "Required", "required"))
                continue
            param.check(value, errors)
            clean[param.name] = value
        if errors:
            raise ValidationFailed(errors, "Input validation failed")
        return clean


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc) and " " not in value


def parse_schema(raw: Any, compile_pattern: PatternCompiler, field: str = "inputSchema") -> InputSchema:
    """Check a stored schema; ValidationFailed names each broken parameter and the problem."""
    problems = Problems()
    if raw is None:
        return InputSchema()
    if not isinstance(raw, list):
        problems.add(field, f"Expected array, received {type_name(raw)}", "invalid_type")
        problems.raise_if_any()
    if len(raw) > PARAMS_MAX:
        problems.add(field, f"At most {PARAMS_MAX} parameters", "too_big")
    seen: set[str] = set()
    parameters = []
    for index, item in enumerate(raw):
        where = f"{field}.{index}"
        param = _parameter(problems, where, item, compile_pattern)
        if param is None:
            continue
        if param.name in seen:
            problems.add(f"{where}.name", f"Duplicate parameter name '{param.name}'", "duplicate")
        seen.add(param.name)
        parameters.append(param)
    problems.raise_if_any()
    return InputSchema(tuple(parameters))


def _parameter(
    problems: Problems, where: str, item: Any, compile_pattern: PatternCompiler
) -> Parameter | None:
    if not isinstance(item, dict):
        problems.add(where, f"Expected object, received {type_name(item)}", "invalid_type")
        return None
    before = len(problems.errors)
    for key in sorted(set(item) - _KEYS):
        problems.add(f"{where}.{key}", f"Unknown parameter property '{key}'", "unrecognized_keys")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.add(
            f"{where}.name",
            "name is required: a letter or '_' then up to 63 letters, digits, '_' or '-'",
            "invalid_string" if isinstance(name, str) else "required" if name is None else "invalid_type",
        )
        name = f"#{where}"
    label = f"{where} ('{name}')" if not name.startswith("#") else where
    kind = item.get("type")
    if kind not in PARAM_TYPES:
        expected = " | ".join(f"'{t}'" for t in PARAM_TYPES)
        problems.add(f"{where}.type", f"{label}: unknown type; expected {expected}", "invalid_enum_value")
    required = item.get("required", False)
    if not isinstance(required, bool):
        problems.add(f"{where}.required", f"{label}: required must be a boolean", "invalid_type")
    for text_key in ("label", "description", "control"):
        value = item.get(text_key)
        if value is not None and (not isinstance(value, str) or len(value) > 1000):
            problems.add(f"{where}.{text_key}", f"{label}: {text_key} must be a string", "invalid_type")
    options = _options(problems, where, label, kind, item.get("options"))
    limits = _validation(problems, where, label, kind, item.get("validation"), compile_pattern)
    if len(problems.errors) > before:
        return None
    param = Parameter(name=name, type=kind, required=required, options=options, **limits)
    if "default" in item and item["default"] is not None:
        default_errors: list[FieldError] = []
        param.check(item["default"], default_errors, f"{where}.default")
        for error in default_errors:
            problems.add(
                error.field, f"{label}: default does not fit the parameter: {error.message}", error.code
            )
        param = Parameter(**{**_fields(param), "default": item["default"], "has_default": True})
    return param


def _fields(param: Parameter) -> dict[str, Any]:
    return {name: getattr(param, name) for name in Parameter.__slots__}


def _options(problems: Problems, where: str, label: str, kind: Any, options: Any) -> tuple[str, ...]:
    if kind != "enum":
        if options is not None:
            problems.add(
                f"{where}.options", f"{label}: options apply only to enum parameters", "invalid_type"
            )
        return ()
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        problems.add(
            f"{where}.options", f"{label}: an enum needs a non-empty list of string options", "required"
        )
        return ()
    if len(set(options)) != len(options):
        problems.add(f"{where}.options", f"{label}: options must be unique", "duplicate")
    return tuple(options)


def _validation(
    problems: Problems, where: str, label: str, kind: Any, rules: Any, compile_pattern: PatternCompiler
) -> dict[str, Any]:
    if rules is None:
        return {}
    field = f"{where}.validation"
    if not isinstance(rules, dict):
        problems.add(field, f"{label}: validation must be an object", "invalid_type")
        return {}
    allowed = _VALIDATION_KEYS.get(kind, set())
    for key in sorted(set(rules) - allowed):
        problems.add(
            f"{field}.{key}", f"{label}: '{key}' does not apply to {kind} parameters", "unrecognized_keys"
        )
    out: dict[str, Any] = {}
    for bound in ("min", "max"):
        value = rules.get(bound)
        if bound in allowed and value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                problems.add(f"{field}.{bound}", f"{label}: {bound} must be a number", "invalid_type")
            elif kind == "string" and (value < 0 or not float(value).is_integer()):
                problems.add(
                    f"{field}.{bound}",
                    f"{label}: {bound} must be a whole number of characters",
                    "invalid_type",
                )
            else:
                out[bound] = value
    if "min" in out and "max" in out and out["min"] > out["max"]:
        problems.add(
            field, f"{label}: min ({out['min']}) is greater than max ({out['max']})", "invalid_range"
        )
    for flag in ("email", "url"):
        value = rules.get(flag)
        if flag in allowed and value is not None:
            if not isinstance(value, bool):
                problems.add(f"{field}.{flag}", f"{label}: {flag} must be a boolean", "invalid_type")
            else:
                out[flag] = value
    pattern = rules.get("pattern")
    if "pattern" in allowed and pattern is not None:
        if not isinstance(pattern, str) or not pattern or len(pattern) > PATTERN_MAX:
            problems.add(
                f"{field}.pattern", f"{label}: pattern must be 1-{PATTERN_MAX} characters", "invalid_string"
            )
        else:
            try:
                out["matcher"] = compile_pattern(pattern)
                out["pattern"] = pattern
            except ValueError as exc:
                problems.add(f"{field}.pattern", f"{label}: invalid pattern: {exc}", "invalid_regex")
    return out
