"""The shared validation rules, by example and by property."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import rules
from domain.errors import FieldError, ValidationFailed
from domain.rules import KEY_MAX, NAME_MAX, UNSET, Problems
from domain.tool import AUTH_TYPES, Tool

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def check(rule: Any, value: Any, **kw: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Runs one rule on field 'f'; answers the cleaned value and the (field, code) problems."""
    problems = Problems()
    cleaned = rule(problems, "f", value, **kw)
    return cleaned, [(e.field, e.code) for e in problems.errors]


# --- examples ------------------------------------------------------------------------------------


def test_text() -> None:
    assert check(rules.text, "  hi  ") == ("hi", [])
    assert check(rules.text, None) == ("", [("f", "required")])
    assert check(rules.text, None, required=False) == ("", [])
    assert check(rules.text, "   ") == ("", [("f", "too_small")])
    assert check(rules.text, 42) == ("", [("f", "invalid_type")])
    assert check(rules.text, "a\x00b")[1] == [("f", "invalid_string")]
    assert check(rules.text, "x" * NAME_MAX) == ("x" * NAME_MAX, [])
    assert check(rules.text, "x" * (NAME_MAX + 1))[1] == [("f", "too_big")]
    assert check(rules.text, "abcd", max_len=3)[1] == [("f", "too_big")]


def test_invalid_type_message_names_the_json_type() -> None:
    problems = Problems()
    rules.text(problems, "name", [1])
    assert problems.errors == [FieldError("name", "Expected string, received array", "invalid_type")]


def test_optional_text() -> None:
    assert check(rules.optional_text, None, max_len=5) == (None, [])
    assert check(rules.optional_text, "  ", max_len=5) == (None, [])
    assert check(rules.optional_text, " ab ", max_len=5) == ("ab", [])
    assert check(rules.optional_text, "abcdef", max_len=5)[1] == [("f", "too_big")]


@pytest.mark.parametrize("key", ["a", "slack", "slack-api", "s3_upload", "0day", "a" * KEY_MAX])
def test_slug_accepts(key: str) -> None:
    assert check(rules.slug, key) == (key, [])


@pytest.mark.parametrize(
    "key", ["", "Slack", "-slack", "_slack", "sl ack", "slack.api", "ü", "a" * (KEY_MAX + 1)]
)
def test_slug_refuses(key: str) -> None:
    assert check(rules.slug, key)[1] == [("f", "invalid_string")]


def test_slug_refuses_non_strings() -> None:
    assert check(rules.slug, None) == ("", [("f", "invalid_type")])


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Slack API", "slack-api"),
        ("  --Hello, World!--  ", "hello-world"),
        ("GitHub v2.0", "github-v2-0"),
        ("snake_case name", "snake-case-name"),
        ("日本語", "item"),
        ("", "item"),
        ("a" * 63 + " b", "a" * 63),  # cut at 64, no dangling '-'
    ],
)
def test_slugify(name: str, key: str) -> None:
    assert rules.slugify(name) == key


@pytest.mark.parametrize(
    "url", ["https://api.slack.com", "http://localhost:8080/v1?x=1", "HTTPS://Example.com"]
)
def test_http_url_accepts(url: str) -> None:
    assert check(rules.http_url, url) == (url, [])


@pytest.mark.parametrize("url", ["ftp://example.com", "/relative", "https://", "example.com", "http://[::1"])
def test_http_url_refuses(url: str) -> None:
    assert check(rules.http_url, url)[1] == [("f", "invalid_string")]


def test_http_url_is_required_and_bounded() -> None:
    assert check(rules.http_url, None)[1] == [("f", "required")]
    assert check(rules.http_url, "https://a.co/" + "x" * rules.URL_MAX)[1] == [("f", "too_big")]


@pytest.mark.parametrize(
    "value", ["ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@c.com"]
)
def test_email_refuses(value: str) -> None:
    assert check(rules.email, value)[1] == [("f", "invalid_string")]


def test_email_is_trimmed_and_lower_cased() -> None:
    assert check(rules.email, "  Ann.Lee+x@Example.COM ") == ("ann.lee+x@example.com", [])


def test_json_object() -> None:
    assert check(rules.json_object, None) == ({}, [])
    assert check(rules.json_object, None, default={"a": 1}) == ({"a": 1}, [])
    assert check(rules.json_object, [1]) == ({}, [("f", "invalid_type")])
    doc = {"a": [1, 2.5, "x", None, True, {"b": {}}]}
    assert check(rules.json_object, doc) == (doc, [])


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"a": math.nan}, ("f.a", "invalid_type")),
        ({"a": [1, math.inf]}, ("f.a.1", "invalid_type")),
        ({"a": "x\x00"}, ("f.a", "invalid_string")),
        ({"a\x00": 1}, ("f.a\x00", "invalid_string")),
        ({1: "x"}, ("f.1", "invalid_string")),
        ({"a": {1, 2}}, ("f.a", "invalid_type")),
        ({"a": b"bytes"}, ("f.a", "invalid_type")),
    ],
)
def test_json_object_refuses_what_json_cannot_hold(doc: dict[Any, Any], problem: tuple[str, str]) -> None:
    assert check(rules.json_object, doc)[1] == [problem]


def test_json_nesting_is_bounded() -> None:
    def nested(depth: int) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for _ in range(depth):
            doc = {"a": doc}
        return doc

    assert check(rules.json_object, nested(rules.DOCUMENT_DEPTH_MAX))[1] == []
    assert [code for _, code in check(rules.json_object, nested(rules.DOCUMENT_DEPTH_MAX + 2))[1]] == [
        "too_big"
    ]


def test_json_integers_are_those_a_double_holds_exactly() -> None:
    top = rules.SAFE_INTEGER_MAX
    assert check(rules.json_object, {"a": top, "b": -top, "c": True})[1] == []
    assert check(rules.json_object, {"a": [top + 1], "b": -top - 1})[1] == [
        ("f.a.0", "too_big"),
        ("f.b", "too_big"),
    ]


def test_json_list() -> None:
    assert check(rules.json_list, None) == ([], [])
    assert check(rules.json_list, {"a": 1}) == ([], [("f", "invalid_type")])
    assert check(rules.json_list, [1, math.nan])[1] == [("f.1", "invalid_type")]


def test_one_of() -> None:
    assert check(rules.one_of, "b", allowed=("a", "b")) == ("b", [])
    assert check(rules.one_of, "c", allowed=("a", "b"))[1] == [("f", "invalid_enum_value")]
    assert check(rules.one_of, 3, allowed=("a",)) == ("", [("f", "invalid_enum_value")])


def test_one_of_message_lists_the_choices() -> None:
    problems = Problems()
    rules.one_of(problems, "method", "FETCH", ("GET", "POST"))
    assert problems.errors[0].message == "Invalid enum value. Expected 'GET' | 'POST', received 'FETCH'"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
        ("s", "string"),
        ([], "array"),
        ({}, "object"),
        (object(), "object"),
    ],
)
def test_type_name(value: Any, name: str) -> None:
    assert rules.type_name(value) == name


def test_unset_is_a_falsy_singleton() -> None:
    assert rules.Unset() is UNSET
    assert not UNSET
    assert repr(UNSET) == "UNSET"
    assert UNSET is not None


def test_problems_raise_all_at_once_or_not_at_all() -> None:
    problems = Problems()
    problems.raise_if_any()
    problems.add("a", "A is bad", "invalid_string")
    problems.add("b", "B is missing", "required")
    with pytest.raises(ValidationFailed) as caught:
        problems.raise_if_any()
    assert [e.as_dict() for e in caught.value.errors] == [
        {"field": "a", "message": "A is bad", "code": "invalid_string"},
        {"field": "b", "message": "B is missing", "code": "required"},
    ]


# --- properties ----------------------------------------------------------------------------------


@given(st.text())
def test_slugify_of_any_text_is_an_accepted_key(name: str) -> None:
    key = rules.slugify(name)
    assert check(rules.slug, key) == (key, [])
    assert len(key) <= KEY_MAX


@given(st.from_regex(r"[a-z0-9]{1,15}( [a-z0-9]{1,15}){0,3}", fullmatch=True))
def test_slugify_keeps_lower_case_words_joined_by_dashes(name: str) -> None:
    assert rules.slugify(name) == name.replace(" ", "-")


no_nul_text = st.text(st.characters(blacklist_characters="\x00"))
names = no_nul_text.filter(lambda s: 0 < len(s.strip()) <= NAME_MAX)
keys = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True)
base_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https"]),
    hosts,
    st.from_regex(r"(/[a-zA-Z0-9._~-]{1,10}){0,3}", fullmatch=True),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-rules.SAFE_INTEGER_MAX, max_value=rules.SAFE_INTEGER_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | no_nul_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(no_nul_text, inner, max_size=4),
    max_leaves=20,
)


@given(
    name=names,
    key=keys,
    base_url=base_urls,
    auth_type=st.none() | st.sampled_from(AUTH_TYPES),
    options=st.none() | st.dictionaries(no_nul_text, json_values, max_size=5),
)
def test_any_valid_tool_fields_build(
    name: str, key: str, base_url: str, auth_type: str | None, options: dict[str, Any] | None
) -> None:
    tool = Tool.build(
        id="tool_1",
        now=NOW,
        org_id="o",
        name=name,
        key=key,
        base_url=base_url,
        auth_type=auth_type,
        options=options,
    )
    assert (tool.name, tool.key, tool.base_url) == (name.strip(), key, base_url)
    assert tool.auth_type == (auth_type or "none")
    assert tool.options == (options or {})


@given(
    st.text(st.characters(blacklist_characters="\x00"), min_size=NAME_MAX + 1, max_size=3 * NAME_MAX).filter(
        lambda s: len(s.strip()) > NAME_MAX
    )
)
def test_any_text_over_the_maximum_is_too_big(value: str) -> None:
    assert check(rules.text, value)[1] == [("f", "too_big")]


@given(st.integers(min_value=1, max_value=300), no_nul_text.filter(lambda s: len(s.strip()) > 0))
def test_the_limit_is_on_the_trimmed_length(max_len: int, value: str) -> None:
    cleaned, found = check(rules.text, value, max_len=max_len)
    assert cleaned == value.strip()
    assert found == ([("f", "too_big")] if len(cleaned) > max_len else [])


@given(st.dictionaries(no_nul_text, json_values, max_size=5))
def test_any_json_document_of_finite_values_is_accepted(doc: dict[str, Any]) -> None:
    assert check(rules.json_object, doc) == (doc, [])


def test_wide_integers_become_doubles_and_nothing_else_changes() -> None:
    wide = rules.SAFE_INTEGER_MAX + 1
    value = {"a": [wide, -wide, rules.SAFE_INTEGER_MAX, True, 1.5, "9" * 20], "b": {"c": None}}
    converted = rules.wide_integers_as_doubles(value)
    assert converted == {
        "a": [float(wide), -float(wide), rules.SAFE_INTEGER_MAX, True, 1.5, "9" * 20],
        "b": {"c": None},
    }
    assert [type(v) for v in converted["a"][:4]] == [float, float, int, bool]
