"""Templates are path look-ups: values in, never code; missing values named; paths encoded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.templates import TemplateError, placeholders, render, render_path, render_value

CONTEXT = {
    "secrets": {"jira_token": "s3cr3t-value"},
    "auth": {"access_token": "at-123"},
    "inputs": {"summary": "Login broken", "count": 3, "tags": ["a", "b"], "id": "a/b c"},
    "variables": {"env": "prod"},
    "steps": {"fetch": {"output": {"users": [{"name": "Ann"}]}}},
}


def test_paths_are_looked_up() -> None:
    assert render("Bearer {{secrets.jira_token}}", CONTEXT) == "Bearer s3cr3t-value"
    assert render("{{ auth.access_token }}/{{variables.env}}", CONTEXT) == "at-123/prod"
    assert render("{{steps.fetch.output.users.0.name}}", CONTEXT) == "Ann"
    assert render("n={{inputs.count}} tags={{inputs.tags}}", CONTEXT) == 'n=3 tags=["a","b"]'
    assert placeholders("{{inputs.a}} {{secrets.b}}") == ["inputs.a", "secrets.b"]


def test_values_in_url_paths_are_percent_encoded() -> None:
    assert render_path("/issues/{{inputs.id}}/comments", CONTEXT) == "/issues/a%2Fb%20c/comments"


def test_whole_placeholders_keep_their_type_in_documents() -> None:
    body = {
        "fields": {
            "summary": "{{inputs.summary}}",
            "n": "{{inputs.count}}",
            "t": ["{{inputs.tags}}", "x{{inputs.count}}"],
        }
    }
    assert render_value(body, CONTEXT) == {
        "fields": {"summary": "Login broken", "n": 3, "t": [["a", "b"], "x3"]}
    }
    assert render_value("{{inputs.summary}} and {{variables.env}}", CONTEXT) == "Login broken and prod"


@pytest.mark.parametrize(
    ("template", "code", "named"),
    [
        ("{{inputs.missing}}", "missing_value", "inputs.missing"),
        ("{{steps.fetch.output.nope.deeper}}", "missing_value", "steps.fetch.output.nope"),
        ("{{secrets.other}}", "missing_value", "secrets.other"),
        ("{{inputs.tags.9}}", "missing_value", "inputs.tags.9"),
        ("{{process.env.HOME}}", "invalid_template", "process"),
        ("{{inputs['x']}}", "invalid_template", "inputs['x']"),
        ("{{ __import__('os').system('id') }}", "invalid_template", "__import__"),
        ("{{inputs}}", "invalid_template", "inputs"),
        ("{{}}", "invalid_template", "{{}}"),
    ],
)
def test_bad_placeholders_are_clear_errors(template: str, code: str, named: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, CONTEXT)
    error = caught.value.errors[0]
    assert error.code == code and named in error.message
    assert "s3cr3t-value" not in error.message  # never the values around the path


@given(st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5))
def test_rendering_is_total(template: str, inputs: dict) -> None:
    """Any template, any context: a string or a TemplateError, never another exception."""
    try:
        assert isinstance(render(template, {"inputs": inputs}), str)
        assert isinstance(render_path(template, {"inputs": inputs}), str)
        render_value({"k": [template]}, {"inputs": inputs})
    except TemplateError:
        pass


@given(st.text(max_size=50))
def test_any_value_inserted_into_a_path_stays_one_segment(value: str) -> None:
    rendered = render_path("/a/{{inputs.v}}/b", {"inputs": {"v": value}})
    assert rendered.count("/") == 3 and "?" not in rendered and "#" not in rendered
