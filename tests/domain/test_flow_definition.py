"""Flow definitions: every refusal names the step and the field; valid DAGs get an order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.flow import Flow, FlowVersion
from domain.flow_definition import DEFINITION_BYTES_MAX, STEP_BYTES_MAX, RetryPolicy, parse_definition

NOW = datetime(2024, 1, 15, tzinfo=UTC)


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
            ("steps.0.dependsOn", "cycle"),
        ),
        (
            [{"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["a"]}],
            ("steps.0.dependsOn", "cycle"),
        ),
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
        (
            [{"id": "a", "type": "action", "config": {"actionId": "  "}}],
            ("steps.0.config.actionId", "invalid_string"),
        ),
        (
            [{"id": "a", "type": "action", "config": {"actionKey": "\t"}}],
            ("steps.0.config.actionKey", "invalid_string"),
        ),
        ([{"id": "a", "type": "action", "config": {"actionId": ""}}], ("steps.0.config", "required")),
        ([{"id": "a", "config": {"ms": 1}}], ("steps.0.type", "required")),
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
        ({"retryPolicy": {"maxRetries": 2}}, ("settings.retryPolicy", "unrecognized_keys")),
        ({"execution": {"concurency": 2}}, ("settings.execution.concurency", "unrecognized_keys")),
        (
            {"execution": {"retryPolicy": {"maxRetries": 1, "jitter": True}}},
            ("settings.execution.retryPolicy.jitter", "unrecognized_keys"),
        ),
        ({"colour": "red", "execution": None}, ("settings.colour", "unrecognized_keys")),
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


def test_every_setting_the_readme_and_the_seed_document_is_accepted() -> None:
    retry = {"maxRetries": 5, "backoffStrategy": "fixed", "baseDelayMs": 1000, "maxDelayMs": 2000}
    settings = {"execution": {"concurrency": 5, "timeout": 300000, "retryPolicy": retry}}
    parsed = parse_definition([], settings).settings
    assert (parsed.concurrency, parsed.timeout_ms, parsed.retry) == (
        5,
        300000,
        RetryPolicy(5, "fixed", 1000, 2000),
    )
    for empty in (None, {}, {"execution": None}, {"execution": {}}):
        assert parse_definition([], empty).settings.retry == RetryPolicy()


def test_a_stored_definition_with_unknown_settings_or_unusable_configs_still_runs() -> None:
    """Rules added after flows were stored do not stop those flows: a bad url or action fails
    its step when it runs, as it did; unknown settings were always ignored."""
    steps = [
        {"id": "a", "type": "http_request", "config": {"url": "not a url"}},
        {"id": "b", "type": "action", "config": {"actionId": "  "}},
    ]
    settings = {"ui": {"x": 1}, "execution": {"concurrency": 2, "priority": "high"}}
    assert len(errors(steps, settings)) == 4
    assert parse_definition(steps, settings, stored=True).settings.concurrency == 2
    flow = Flow(
        id="flow_1", org_id="org_1", name="F", steps=steps, settings=settings, created_at=NOW, updated_at=NOW
    )
    assert [s.id for s in flow.definition.steps] == ["a", "b"]
    version = flow.snapshot(version_id="fv_1", created_by=None)
    assert isinstance(version, FlowVersion) and version.definition.order == ("a", "b")
    with pytest.raises(ValidationFailed):  # changing the steps checks every rule
        flow.changed(now=NOW, steps=[*steps, _delay("c")])
    assert flow.changed(now=NOW, name="G").name == "G"  # other fields change as before


def _http(url: str) -> dict[str, Any]:
    return {"id": "call", "type": "http_request", "config": {"url": url}}


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/x",
        "HTTP://API.EXAMPLE.COM",
        "http://127.0.0.1:8080/a?b=c#d",
        "http://[::1]/x",
        "{{variables.endpoint}}",
        "{{ variables.endpoint }}",
        " {{variables.endpoint}} ",
        "{{variables.base}}/users/{{variables.id}}",
        "https://api.example.com/{{variables.path}}",
        "https://{{variables.host}}/x",
        "http{{variables.secure}}://api.example.com",
        "HTTPS://api.example.com/{{steps.fetch.output.id}}",
    ],
)
def test_http_urls_absolute_or_templated_are_accepted(url: str) -> None:
    assert parse_definition([_http(url)]).steps[0].config["url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "file:///etc/passwd",
        "ftp://files.example.com/x",
        "api.example.com/x",
        "/relative/path",
        "https://",
        "http:///no-host",
        "http://[::1/broken",
        "javascript:alert(1)",
        "ftp://{{variables.host}}/x",
        "file://{{variables.path}}",
        "see {{variables.url}}",
        "//{{variables.host}}/x",
    ],
)
def test_http_urls_that_could_never_be_called_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_definition([_http(url)])
    assert [(e.field, e.code) for e in refused.value.errors] == [("steps.0.config.url", "invalid_string")]
    assert "Step 'call'" in refused.value.errors[0].message


def test_an_action_step_with_an_empty_id_beside_a_key_is_kept() -> None:
    """At run time an empty ``actionId`` is passed over for the ``actionKey``: nothing to refuse."""
    step = {"id": "a", "type": "action", "config": {"actionId": "", "actionKey": "open-ticket"}}
    assert parse_definition([step]).steps[0].config["actionKey"] == "open-ticket"


def test_a_missing_step_type_is_required_not_unknown() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_definition([{"id": "a", "config": {}}])
    error = refused.value.errors[0]
    assert (error.field, error.code) == ("steps.0.type", "required")
    assert "None" not in error.message and "Step 'a'" in error.message


def test_repeated_dependencies_count_once() -> None:
    definition = parse_definition([_delay("a"), _delay("b", dependsOn=["a", "a"])])
    assert definition.step("b").depends_on == ("a",)


def test_a_cycle_is_reported_at_its_first_step_and_named_step_by_step() -> None:
    steps = [
        _delay("x", dependsOn=["c"]),  # waits on the cycle, is not on it
        _delay("b", dependsOn=["c"]),
        _delay("c", dependsOn=["b"]),
        _delay("d"),
    ]
    with pytest.raises(ValidationFailed) as refused:
        parse_definition(steps)
    [error] = refused.value.errors
    assert (error.field, error.code) == ("steps.1.dependsOn", "cycle")
    assert error.message == "Steps form a dependency cycle: b -> c -> b (each depends on the next)"
    with pytest.raises(ValidationFailed) as refused:
        parse_definition([_delay("a", dependsOn=["a"])])
    assert "a -> a" in refused.value.errors[0].message


def _sized(step_id: str, chars: int, char: str = "é") -> dict[str, Any]:
    return {"id": step_id, "type": "data_transform", "config": {"script": char * chars}}


def test_sizes_are_counted_in_utf8_bytes_not_escaped_characters() -> None:
    parse_definition([_sized("a", 30_000)])  # 60 KB in UTF-8; its \u00e9 escapes made 180 KB
    parse_definition([_sized("a", 15_000, "😀")])  # 4 bytes each, not 12
    assert ("steps.0", "too_big") in errors([_sized("a", STEP_BYTES_MAX // 2)])  # characters < limit < bytes
    under = [_sized(f"s{i}", 30_000) for i in range(15)]  # 900 KB, under 1 MiB in bytes
    parse_definition(under)
    over = [_sized(f"s{i}", 30_000) for i in range(DEFINITION_BYTES_MAX // 60_000 + 1)]
    assert ("steps", "too_big") in errors(over)


def test_an_update_cannot_null_the_steps_or_the_settings() -> None:
    flow = Flow.build(id="flow_1", now=NOW, org_id="org_1", name="F", steps=[_delay("a")], settings={})
    with pytest.raises(ValidationFailed) as refused:
        flow.changed(now=NOW, steps=None, settings=None, name=None)
    assert sorted((e.field, e.code, e.message) for e in refused.value.errors) == [
        ("name", "required", "name is required"),
        ("settings", "invalid_type", "Expected object, received null"),
        ("steps", "invalid_type", "Expected array, received null"),
    ]
    cleared = flow.changed(now=NOW, steps=[], settings={})
    assert (cleared.steps, cleared.version) == ([], 2)
    bare = Flow.build(id="flow_2", now=NOW, org_id="org_1", name="F", steps=None, settings=None)
    assert (bare.steps, bare.settings) == ([], {})  # on create, null or absent means none
