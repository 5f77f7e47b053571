"""Action input schemas: refused when unusable, applied to inputs with every problem reported."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.regex import compile_pattern
from domain.errors import ValidationFailed
from domain.input_schema import PARAM_TYPES, parse_schema

SEED_SCHEMA = [
    {
        "name": "title",
        "label": "Ticket Title",
        "type": "string",
        "required": True,
        "description": "Short summary of the issue",
        "control": "text",
        "validation": {"min": 3, "max": 100},
    },
    {
        "name": "priority",
        "label": "Priority Level",
        "type": "enum",
        "options": ["low", "medium", "high"],
        "required": True,
        "control": "select",
        "default": "medium",
    },
    {
        "name": "assignee_email",
        "label": "Assignee Email",
        "type": "string",
        "required": False,
        "validation": {"email": True},
    },
    {
        "name": "due_date",
        "label": "Due Date",
        "type": "string",
        "required": False,
        "validation": {"pattern": r"^\d{4}-\d{2}-\d{2}$"},
    },
]


def schema(raw: Any):
    return parse_schema(raw, compile_pattern)


def errors_of(call) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        call()
    return [e.as_dict() for e in caught.value.errors]


def test_the_seed_example_validates_and_applies_defaults() -> None:
    assert schema(SEED_SCHEMA).validate({"title": "Login broken", "extra": 1}) == {
        "title": "Login broken",
        "priority": "medium",
    }


def test_the_seed_validation_error_response() -> None:
    found = errors_of(lambda: schema(SEED_SCHEMA).validate({"title": "ab", "priority": "urgent"}))
    assert found == [
        {"field": "title", "message": "String must contain at least 3 character(s)", "code": "too_small"},
        {
            "field": "priority",
            "message": "Invalid enum value. Expected 'low' | 'medium' | 'high', received 'urgent'",
            "code": "invalid_enum_value",
        },
    ]


@pytest.mark.parametrize(
    ("param", "value", "code"),
    [
        ({"type": "string"}, 5, "invalid_type"),
        ({"type": "string", "validation": {"max": 2}}, "abc", "too_big"),
        ({"type": "string", "validation": {"email": True}}, "nope@", "invalid_string"),
        ({"type": "string", "validation": {"url": True}}, "not a url", "invalid_string"),
        ({"type": "string", "validation": {"pattern": "^[A-Z]+$"}}, "abc", "invalid_string"),
        ({"type": "number"}, "5", "invalid_type"),
        ({"type": "number"}, True, "invalid_type"),
        ({"type": "number", "validation": {"min": 0}}, -1, "too_small"),
        ({"type": "number", "validation": {"max": 999}}, 1000.5, "too_big"),
        ({"type": "boolean"}, "true", "invalid_type"),
        ({"type": "array"}, {"a": 1}, "invalid_type"),
        ({"type": "object"}, [1], "invalid_type"),
        ({"type": "enum", "options": ["a"]}, "b", "invalid_enum_value"),
        ({"type": "string", "required": True}, None, "required"),
    ],
)
def test_each_rule_reports_its_code(param: dict, value: Any, code: str) -> None:
    found = errors_of(lambda: schema([{"name": "x", **param}]).validate({"x": value}))
    assert [(e["field"], e["code"]) for e in found] == [("x", code)]


def test_inputs_must_be_an_object_and_a_schemaless_action_passes_inputs_through() -> None:
    assert errors_of(lambda: schema(SEED_SCHEMA).validate([1]))[0]["code"] == "invalid_type"
    assert schema([]).validate({"anything": [1, 2]}) == {"anything": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        ([{"name": "a", "type": "text"}], "inputSchema.0.type", "invalid_enum_value"),
        ([{"name": "a", "type": "enum"}], "inputSchema.0.options", "required"),
        ([{"name": "a", "type": "enum", "options": []}], "inputSchema.0.options", "required"),
        (
            [{"name": "a", "type": "string", "validation": {"pattern": "([a-z]"}}],
            "inputSchema.0.validation.pattern",
            "invalid_regex",
        ),
        (
            [{"name": "a", "type": "string", "validation": {"pattern": r"(a)\1"}}],
            "inputSchema.0.validation.pattern",
            "invalid_regex",
        ),
        (
            [{"name": "a", "type": "string", "validation": {"min": 5, "max": 2}}],
            "inputSchema.0.validation",
            "invalid_range",
        ),
        (
            [{"name": "a", "type": "number", "validation": {"pattern": "x"}}],
            "inputSchema.0.validation.pattern",
            "unrecognized_keys",
        ),
        (
            [{"name": "a", "type": "string"}, {"name": "a", "type": "number"}],
            "inputSchema.1.name",
            "duplicate",
        ),
        ([{"name": "a b", "type": "string"}], "inputSchema.0.name", "invalid_string"),
        ([{"type": "string"}], "inputSchema.0.name", "required"),
        ([{"name": "a", "type": "number", "default": "x"}], "inputSchema.0.default", "invalid_type"),
        ([{"name": "a", "type": "string", "colour": "red"}], "inputSchema.0.colour", "unrecognized_keys"),
        ([{"name": "a", "type": "string", "required": "yes"}], "inputSchema.0.required", "invalid_type"),
        ({"a": 1}, "inputSchema", "invalid_type"),
    ],
)
def test_unusable_schemas_are_refused_naming_the_parameter(raw: Any, field: str, code: str) -> None:
    found = errors_of(lambda: schema(raw))
    assert (field, code) in [(e["field"], e["code"]) for e in found], found


def test_catastrophic_patterns_run_in_linear_time() -> None:
    evil = schema([{"name": "a", "type": "string", "validation": {"pattern": "^(a+)+$"}}])
    started = time.perf_counter()
    errors_of(lambda: evil.validate({"a": "a" * 50_000 + "!"}))
    assert time.perf_counter() - started < 1.0  # Python's re would not finish this in a lifetime


# --- properties ----------------------------------------------------------------------------------

names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)


@st.composite
def parameter_and_value(draw):
    """A random valid parameter and a random value that satisfies it."""
    kind = draw(st.sampled_from(PARAM_TYPES))
    param: dict[str, Any] = {"type": kind, "required": draw(st.booleans())}
    if kind == "string":
        low = draw(st.integers(0, 5))
        high = draw(st.integers(low, low + 10))
        param["validation"] = {"min": low, "max": high}
        value = draw(st.text(alphabet="abcxyz", min_size=low, max_size=high))
    elif kind == "number":
        low = draw(st.integers(-100, 100))
        high = draw(st.integers(low, low + 1000))
        param["validation"] = {"min": low, "max": high}
        value = draw(st.one_of(st.integers(low, high), st.floats(low, high, allow_nan=False)))
    elif kind == "enum":
        options = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=5, unique=True))
        param["options"] = options
        value = draw(st.sampled_from(options))
    elif kind == "boolean":
        value = draw(st.booleans())
    elif kind == "array":
        value = draw(st.lists(st.integers(), max_size=3))
    else:
        value = draw(st.dictionaries(st.text(max_size=3), st.integers(), max_size=3))
    return param, value


@given(st.lists(parameter_and_value(), min_size=1, max_size=6), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_values_drawn_from_any_valid_schema_validate(pairs, data) -> None:
    raw, inputs = [], {}
    for i, (param, value) in enumerate(pairs):
        raw.append({"name": f"p{i}", **param})
        inputs[f"p{i}"] = value
    assert schema(raw).validate(inputs) == inputs


@given(parameter_and_value(), st.data())
@settings(max_examples=200)
def test_breaking_one_constraint_names_that_field(pair, data) -> None:
    param, _value = pair
    kind = param["type"]
    if kind == "string":
        broken = data.draw(st.sampled_from(["a" * (param["validation"]["max"] + 1), 42]))
    elif kind == "number":
        broken = data.draw(
            st.sampled_from([param["validation"]["max"] + 1, param["validation"]["min"] - 1, "1"])
        )
    elif kind == "enum":
        broken = "".join(param["options"]) + "?"
    elif kind == "boolean":
        broken = "yes"
    elif kind == "array":
        broken = {"not": "a list"}
    else:
        broken = [1]
    good = {"name": "good", "type": "string"}
    found = errors_of(
        lambda: schema([good, {"name": "bad", **param}]).validate({"good": "ok", "bad": broken})
    )
    assert [e["field"] for e in found] == ["bad"]
