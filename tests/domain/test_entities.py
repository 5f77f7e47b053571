"""Entities: validated construction, partial validated updates, and their own rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import Conflict, ValidationFailed
from domain.execution_log import ExecutionLog
from domain.flow import STEPS_MAX, Flow
from domain.organization import ApiKey, Organization, User
from domain.rules import UNSET
from domain.tool import HEADERS_MAX, Action, Tool

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(seconds=5)


def problems(caught: pytest.ExceptionInfo[ValidationFailed]) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in caught.value.errors}


def tool(**fields: Any) -> Tool:
    values = {"org_id": "org_1", "name": "Slack", "key": "slack", "base_url": "https://slack.com/api"}
    return Tool.build(id="tool_1", now=NOW, **(values | fields))


def action(**fields: Any) -> Action:
    values = {"org_id": "org_1", "tool_id": "tool_1", "name": "Post", "key": "post", "endpoint": "/chat"}
    return Action.build(id="act_1", now=NOW, **(values | fields))


def flow(**fields: Any) -> Flow:
    return Flow.build(id="flow_1", now=NOW, **({"org_id": "org_1", "name": "Sync"} | fields))


def log(**fields: Any) -> ExecutionLog:
    values = {"org_id": "org_1", "user_id": None, "flow_id": "flow_1", "execution_id": "exec_1"}
    values |= {"step_key": "a", "inputs": {}}
    return ExecutionLog.build(id="log_1", now=NOW, **(values | fields))


# --- build ---------------------------------------------------------------------------------------


def test_build_fills_defaults_trims_text_and_stamps_both_times() -> None:
    built = tool(name="  Slack  ")
    assert (built.name, built.auth_type, built.options) == ("Slack", "none", {})
    assert built.created_at == built.updated_at == NOW
    assert (built.id, built.org_id) == ("tool_1", "org_1")


def test_build_reports_every_problem_at_once_with_field_message_and_code() -> None:
    with pytest.raises(ValidationFailed) as caught:
        tool(name="", key="Not A Key", base_url="ftp://files", auth_type="magic", options=[1])
    assert problems(caught) == {
        ("name", "too_small"),
        ("key", "invalid_string"),
        ("baseUrl", "invalid_string"),
        ("authType", "invalid_enum_value"),
        ("options", "invalid_type"),
    }
    assert all(e.message for e in caught.value.errors)
    assert caught.value.message == "Validation failed"


def test_build_names_missing_required_fields() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Tool.build(id="tool_1", now=NOW, org_id="org_1")
    assert problems(caught) == {("name", "required"), ("key", "invalid_type"), ("baseUrl", "required")}


def test_action_method_is_upper_cased_and_defaults_to_get() -> None:
    assert action().method == "GET"
    assert action(method="patch").method == "PATCH"
    with pytest.raises(ValidationFailed) as caught:
        action(method="FETCH")
    assert problems(caught) == {("method", "invalid_enum_value")}


def test_action_endpoint_is_a_path() -> None:
    with pytest.raises(ValidationFailed) as caught:
        action(endpoint="https://elsewhere.example/x")
    assert problems(caught) == {("endpoint", "invalid_string")}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Bad Name": "x"}, ("headers.Bad Name", "invalid_string")),
        ({"X-Id": "a\r\nInjected: yes"}, ("headers.X-Id", "invalid_string")),
        ({"X-Id": "x" * 8193}, ("headers.X-Id", "invalid_string")),
        ({"X-Id": 5}, ("headers.X-Id", "invalid_type")),
        ({f"X-{i}": "v" for i in range(HEADERS_MAX + 1)}, ("headers", "too_big")),
    ],
)
def test_action_headers_are_checked(headers: dict[str, Any], expected: tuple[str, str]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        action(headers=headers)
    assert expected in problems(caught)


def test_action_accepts_templated_header_values() -> None:
    headers = {"Authorization": "Bearer {{secrets.token}}", "X-Count": "3"}
    assert action(headers=headers).headers == headers


def test_a_key_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        tool(key="slack\n")


def test_a_header_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        action(headers={"X-Injected\n": "v"})


def test_a_non_string_header_name_is_a_validation_problem() -> None:
    with pytest.raises(ValidationFailed):
        action(headers={1: "v"})


def test_user_email_is_lower_cased_and_checked() -> None:
    assert (
        User.build(id="usr_1", now=NOW, org_id="org_1", email=" Ann@Example.COM ").email == "ann@example.com"
    )
    with pytest.raises(ValidationFailed) as caught:
        User.build(id="usr_1", now=NOW, org_id="org_1", email="ann.example.com", name="x" * 201)
    assert problems(caught) == {("email", "invalid_string"), ("name", "too_big")}


def test_blank_optional_text_becomes_none() -> None:
    assert User.build(id="usr_1", now=NOW, org_id="org_1", email="a@b.co", name="   ").name is None
    assert flow(description="  ").description is None


def test_organization_name_has_a_maximum() -> None:
    assert Organization.build(id="org_1", now=NOW, name="x" * 200).name == "x" * 200
    with pytest.raises(ValidationFailed) as caught:
        Organization.build(id="org_1", now=NOW, name="x" * 201)
    assert problems(caught) == {("name", "too_big")}


def test_api_key_default_name_and_revocation() -> None:
    key = ApiKey.build(id="key_1", now=NOW, org_id="org_1", name=None, prefix="tsk_abc", key_hash="h")
    assert key.name == "default" and not key.revoked
    revoked = key.revoke(LATER)
    assert revoked.revoked and revoked.revoked_at == LATER and revoked.updated_at == LATER
    assert not key.revoked  # entities are values: the original is untouched
    assert revoked.revoke(LATER + timedelta(days=1)) is revoked  # the first revocation time stays


# --- changed -------------------------------------------------------------------------------------


def test_changed_changes_only_the_fields_given_and_stamps_updated_at() -> None:
    original = tool(options={"retries": 3})
    updated = original.changed(now=LATER, name="Slack v2", key=UNSET, base_url=UNSET)
    assert updated.name == "Slack v2"
    assert (updated.key, updated.base_url, updated.options) == (
        original.key,
        original.base_url,
        {"retries": 3},
    )
    assert (updated.created_at, updated.updated_at) == (NOW, LATER)
    assert original.name == "Slack"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": UNSET, "key": UNSET},
        {"name": "  Slack "},  # equal once trimmed
        {"auth_type": None},  # None means the default, which it already has
        {"base_url": "https://slack.com/api", "options": {}},
    ],
)
def test_changed_returns_the_same_object_when_nothing_changes(changes: dict[str, Any]) -> None:
    original = tool()
    assert original.changed(now=LATER, **changes) is original


def test_changed_normalises_before_comparing() -> None:
    original = action(method="POST")
    assert original.changed(now=LATER, method="post") is original
    user = User.build(id="usr_1", now=NOW, org_id="org_1", email="ann@example.com")
    assert user.changed(now=LATER, email="ANN@example.com") is user


def test_changed_validates_like_build_and_reports_every_problem() -> None:
    with pytest.raises(ValidationFailed) as caught:
        tool().changed(now=LATER, name=None, key="UPPER", base_url="not a url")
    assert problems(caught) == {
        ("name", "required"),
        ("key", "invalid_string"),
        ("baseUrl", "invalid_string"),
    }


def test_flow_version_increments_only_when_steps_really_change() -> None:
    steps = [{"id": "a", "type": "delay", "config": {"ms": 10}}]
    original = flow(steps=steps)
    assert original.version == 1
    assert original.changed(now=LATER, steps=[{"id": "a", "type": "delay", "config": {"ms": 10}}]) is original
    renamed = original.changed(now=LATER, name="Renamed", steps=UNSET)
    assert (renamed.name, renamed.version) == ("Renamed", 1)
    v2 = original.changed(now=LATER, steps=[*steps, {"id": "b", "type": "delay", "config": {"ms": 10}}])
    assert (v2.version, len(v2.steps)) == (2, 2)
    v3 = v2.changed(now=LATER, steps=[], name="Emptied")
    assert (v3.version, v3.steps, v3.name) == (3, [], "Emptied")
    assert v3.changed(now=LATER, name="Emptied again").version == 3


def test_flow_steps_are_objects_and_bounded() -> None:
    with pytest.raises(ValidationFailed) as caught:
        flow(steps=[{"id": "a"}, "b", 3])
    assert problems(caught) == {("steps.1", "invalid_type"), ("steps.2", "invalid_type")}
    with pytest.raises(ValidationFailed) as caught:
        flow(steps=[{}] * (STEPS_MAX + 1))
    assert problems(caught) == {("steps", "too_big")}
    many = [{"id": f"s{i}", "type": "delay", "config": {"ms": 1}} for i in range(STEPS_MAX)]
    assert len(flow(steps=many).steps) == STEPS_MAX


def test_a_flow_is_checked_as_a_whole_definition() -> None:
    with pytest.raises(ValidationFailed) as caught:
        flow(steps=[{"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["nope"]}])
    assert problems(caught) == {("steps.0.dependsOn", "invalid_reference")}
    good = flow(steps=[{"id": "a", "type": "delay", "config": {"ms": 1}}])
    with pytest.raises(ValidationFailed) as caught:
        good.changed(now=LATER, settings={"execution": {"retryPolicy": {"maxRetries": -1}}})
    assert problems(caught) == {("settings.execution.retryPolicy.maxRetries", "too_small")}
    assert good.changed(now=LATER, settings={"execution": {"concurrency": 2}}).version == 2


def test_execution_log_starts_started_and_may_finish_once() -> None:
    started = log()
    assert (started.status, started.finished) == ("started", False)
    done = started.changed(now=LATER, status="completed", outputs={"ok": True})
    assert (done.status, done.finished, done.outputs) == ("completed", True, {"ok": True})
    with pytest.raises(Conflict):
        done.changed(now=LATER, status="failed")
    with pytest.raises(Conflict):
        done.changed(now=LATER, status="started")
    assert done.changed(now=LATER, status="completed") is done
    with pytest.raises(Conflict):  # nor its outputs or error: a finished run is history
        done.changed(now=LATER, outputs={"ok": False})


@pytest.mark.parametrize("status", ["completed", "failed", "skipped"])
def test_a_finished_log_cannot_change_status(status: str) -> None:
    finished = log(status=status)
    assert finished.finished
    others = {"started", "completed", "failed", "skipped"} - {status}
    for other in others:
        with pytest.raises(Conflict):
            finished.changed(now=LATER, status=other)


def test_execution_log_status_must_be_known() -> None:
    with pytest.raises(ValidationFailed) as caught:
        log(status="done", inputs=None, outputs=[])
    assert problems(caught) == {("status", "invalid_enum_value"), ("outputs", "invalid_type")}
    with pytest.raises(ValidationFailed):
        log().changed(now=LATER, status="paused")


@pytest.mark.parametrize("endpoint", ["//evil.example/x", "/a\\b", "relative/path"])
def test_an_endpoint_can_only_be_a_path_on_the_tools_host(endpoint: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        action(endpoint=endpoint)
    assert ("endpoint", "invalid_string") in problems(caught)
