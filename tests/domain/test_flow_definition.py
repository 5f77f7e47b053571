"""Flow definitions: every refusal names the step and the field; valid DAGs get an order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.flow_definition import RetryPolicy, parse_definition


def errors(steps: Any, settings: Any = None) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_definition(steps, settings)
    return [(e.field, e.code) for e in caught.value.errors]


SEED_STEPS = [
    {"id": "fetch", "type": "http_request", "name": "Fetch", "config": {"url": "https://api.example.com/x", "method": "GET"}},
    {"id": "transform", "type": "data_transform", "config": {"script": "return input.name.toUpperCase()", "useSandbox": True}},
    {"id": "check", "type": "conditional", "config": {"condition": "context.variables.role === 'admin'"}},
    {"id": "critical-data-sync", "type": "http_request", "config": {"critical": True, "url": "https://api.example.com/sync", "method": "POST"}},
    {"id": "data-process", "type": "sandbox_sync", "config": {"code": "return 1;", "language": "javascript"}},
    {"id": "heavy", "type": "sandbox_async", "config": {"code": "x", "waitForCompletion": False, "pollInterval": 1000, "maxPollAttempts": 300}},
    {"id": "flexible", "type": "code_execution", "config": {"code": "x", "mode": "sync"}},
    {"id": "wait", "type": "delay", "config": {"ms": 1000}, "executeIf": "variables.slow === true"},
    {"id": "ticket", "type": "action", "config": {"actionKey": "create-jira-ticket", "inputs": {"summary": "{{steps.fetch.output.title}}"}}, "dependsOn": ["fetch", "check"], "retry": {"maxRetries": 3, "backoffStrategy": "fixed", "baseDelayMs": 500}},
]  # fmt: skip


def test_the_seed_step_types_parse_and_default_dependencies_chain() -> None:
    definition = parse_definition(
        SEED_STEPS,
        {
            "execution": {
                "concurrency": 5,
                "timeout": 300000,
                "retryPolicy": {"maxRetries": 5, "backoffStrategy": "exponential", "baseDelayMs": 1000},
            }
        },
    )
    assert [s.id for s in definition.steps] == [s["id"] for s in SEED_STEPS]
    assert definition.step("transform").depends_on == ("fetch",)  # the previous step by default
    assert definition.step("fetch").depends_on == ()
    assert definition.step("ticket").depends_on == ("fetch", "check")
    assert definition.step("critical-data-sync").critical and not definition.step("fetch").critical
    assert definition.step("ticket").retry == RetryPolicy(3, "fixed", 500, 60_000)
    assert definition.settings.concurrency == 5 and definition.settings.retry.max_retries == 5
    order = definition.order
    assert all(order.index(d) < order.index(s.id) for s in definition.steps for d in s.depends_on)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"id": "a", "type": "teleport"}], ("steps.0.type", "invalid_enum_value")),
        (
            [
                {"id": "a", "type": "delay", "config": {"ms": 1}},
                {"id": "a", "type": "delay", "config": {"ms": 1}},
            ],
            ("steps.1.id", "duplicate"),
        ),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["ghost"]}],
            ("steps.0.dependsOn", "invalid_reference"),
        ),
        (
            [
                {"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["b"]},
                {"id": "b", "type": "delay", "config": {"ms": 1}},
            ],
            ("steps", "cycle"),
        ),
        ([{"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["a"]}], ("steps", "cycle")),
        ([{"id": "a", "type": "http_request", "config": {}}], ("steps.0.config.url", "required")),
        (
            [{"id": "a", "type": "http_request", "config": {"url": "https://x", "method": "FETCH"}}],
            ("steps.0.config.method", "invalid_enum_value"),
        ),
        (
            [{"id": "a", "type": "http_request", "config": {"url": "https://x", "retries": 3}}],
            ("steps.0.config.retries", "unrecognized_keys"),
        ),
        ([{"id": "a", "type": "action", "config": {}}], ("steps.0.config", "required")),
        ([{"id": "a", "type": "delay", "config": {"ms": -1}}], ("steps.0.config.ms", "too_small")),
        ([{"id": "a", "type": "delay"}], ("steps.0.config.ms", "required")),
        (
            [{"id": "a", "type": "conditional", "config": {"condition": 1}}],
            ("steps.0.config.condition", "invalid_type"),
        ),
        (
            [{"id": "a", "type": "sandbox_sync", "config": {"code": "x", "language": "cobol"}}],
            ("steps.0.config.language", "invalid_enum_value"),
        ),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1, "critical": "yes"}}],
            ("steps.0.config.critical", "invalid_type"),
        ),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1}, "retry": {"maxRetries": 99}}],
            ("steps.0.retry.maxRetries", "too_big"),
        ),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1}, "retry": {"baseDelayMs": 9, "maxDelayMs": 1}}],
            ("steps.0.retry", "invalid_range"),
        ),
        ([{"id": "a b", "type": "delay", "config": {"ms": 1}}], ("steps.0.id", "invalid_string")),
        ([{"type": "delay", "config": {"ms": 1}}], ("steps.0.id", "invalid_string")),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1}, "colour": "red"}],
            ("steps.0.colour", "unrecognized_keys"),
        ),
        ([{"id": "a", "type": "delay", "config": {"ms": 1}, "timeout": 0}], ("steps.0.timeout", "too_small")),
        (["not a step"], ("steps.0", "invalid_type")),
        ({"id": "a"}, ("steps", "invalid_type")),
        ([{"id": f"s{i}", "type": "delay", "config": {"ms": 1}} for i in range(501)], ("steps", "too_big")),
        ([{"id": "a", "type": "data_transform", "config": {"script": "x" * 70_000}}], ("steps.0", "too_big")),
    ],
)
def test_refusals_name_the_step_and_field(steps: Any, expected: tuple[str, str]) -> None:
    assert expected in errors(steps)


def test_messages_name_the_step() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_definition([{"id": "fetch", "type": "http_request", "config": {"url": "u", "verb": "GET"}}])
    assert "Step 'fetch'" in caught.value.errors[0].message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"execution": {"concurrency": 0}}, ("settings.execution.concurrency", "too_small")),
        (
            {"execution": {"retryPolicy": {"backoffStrategy": "random"}}},
            ("settings.execution.retryPolicy.backoffStrategy", "invalid_enum_value"),
        ),
        ({"execution": []}, ("settings.execution", "invalid_type")),
    ],
)
def test_execution_settings_are_checked(settings: Any, expected: tuple[str, str]) -> None:
    assert expected in errors([], settings)


def test_retry_delays() -> None:
    exponential = RetryPolicy(5, "exponential", 1000, 5000)
    assert [exponential.delay_ms(n) for n in range(1, 6)] == [1000, 2000, 4000, 5000, 5000]
    assert RetryPolicy(3, "fixed", 700, 5000).delay_ms(3) == 700


@given(st.integers(1, 30), st.data())
def test_any_dag_gets_an_order_respecting_dependencies(count: int, data: st.DataObject) -> None:
    steps = []
    for i in range(count):
        depends = data.draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        steps.append(
            {"id": f"s{i}", "type": "delay", "config": {"ms": 0}, "dependsOn": [f"s{d}" for d in depends]}
        )
    order = parse_definition(steps).order
    assert sorted(order) == sorted(s["id"] for s in steps)
    position = {step_id: n for n, step_id in enumerate(order)}
    assert all(position[d] < position[s["id"]] for s in steps for d in s["dependsOn"])


def _delay(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "delay", "config": {"ms": 1}, **extra}


def test_a_resume_keeps_completed_steps_that_come_after_no_step_that_runs_again() -> None:
    step = _delay
    chain = parse_definition([step("a"), step("b"), step("c")])
    assert chain.reusable({"a", "c"}) == ("a",)  # b runs again, so c after it does too
    assert chain.reusable({"b", "c"}) == ()
    assert chain.reusable({"a", "b", "c"}) == ("a", "b", "c")
    dag = parse_definition(
        [step("a"), step("b", dependsOn=[]), step("c", dependsOn=["a", "b"]), step("d", dependsOn=["b"])]
    )
    assert dag.reusable({"b", "c", "d"}) == ("b", "d")  # c waits for a, which runs again


@pytest.mark.parametrize(
    "given", ["javascript", "JavaScript", "js", " node ", "py", "Python3", "golang", "rs"]
)
def test_code_steps_take_a_language_in_any_case_or_by_its_short_name(given: str) -> None:
    step = {"id": "c", "type": "code_execution", "config": {"code": "return 1", "language": given}}
    assert parse_definition([step]).steps[0].config["language"] == given  # resolved when it runs


@pytest.mark.parametrize("given", ["ts", "cobol", 7, ""])
def test_a_language_no_sandbox_knows_is_refused_by_field(given: Any) -> None:
    step = {"id": "c", "type": "code_execution", "config": {"code": "return 1", "language": given}}
    with pytest.raises(ValidationFailed) as refused:
        parse_definition([step])
    assert [(e.field, e.code) for e in refused.value.errors] == [
        ("steps.0.config.language", "invalid_enum_value")
    ]
