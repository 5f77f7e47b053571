"""Flow executions over REST on a live server (SQLite and PostgreSQL): the seed's paths for
execute, list, inspect, cancel, retry, metrics, step logs and statistics, with real steps: the
V8 sandbox, HTTP to a local upstream (egress allowed for loopback) and a stored action."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.helpers import created
from tests.support import Api, new_org

TOKEN = "upstream-token-0123456789abcdef"


def wait(org: Api, flow_id: str, execution_id: str, seconds: float = 15) -> dict[str, Any]:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        body = org.get(f"/flows/{flow_id}/executions/{execution_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.03)
    raise AssertionError(f"{execution_id} still {body['status']}")


def flow(org: Api, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return created(org.post("/flows", json={"name": "Flow", "steps": steps, **extra}))


def execute(org: Api, flow_id: str, variables: dict[str, Any] | None = None) -> str:
    response = org.post(f"/flows/{flow_id}/execute", json={"variables": variables or {}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["flowId"] == flow_id
    return body["executionId"]


def test_a_flow_of_every_kind_of_step_runs_durably(org: Api, upstream: str, last: list[dict]) -> None:
    tool = created(
        org.post("/tools", json={"name": "Tickets", "baseUrl": f"{upstream}/t", "authType": "bearer"})
    )
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"access_token": TOKEN}})
    created(
        org.post(
            "/actions",
            json={
                "name": "Open ticket",
                "key": "open-ticket",
                "toolId": tool["id"],
                "method": "POST",
                "endpoint": "/issues",
                "inputSchema": [{"name": "title", "type": "string", "required": True}],
            },
        )
    )
    steps = [
        {"id": "shape", "type": "data_transform", "config": {"script": "return { title: input.variables.name.toUpperCase() }"}},
        {"id": "check", "type": "conditional", "config": {"condition": "stepOutputs.shape.title.length === 3"}},
        {"id": "skipped", "type": "data_transform", "executeIf": "variables.shouldSkip !== true", "config": {"script": "return 1"}},
        {"id": "wait", "type": "delay", "config": {"ms": 50}},
        {
            "id": "post",
            "type": "http_request",
            "config": {"url": f"{upstream}/hooks/{{{{steps.shape.output.title}}}}", "method": "POST", "body": {"t": "{{steps.shape.output}}"}},
        },
        {"id": "ticket", "type": "action", "config": {"actionKey": "open-ticket", "inputs": {"title": "{{steps.shape.output.title}}"}}},
    ]  # fmt: skip
    f = flow(org, steps)
    execution_id = execute(org, f["id"], {"name": "ada", "shouldSkip": True, "apiToken": "s3cret-value-123"})
    assert execution_id.startswith("exec_") and execution_id.split("_")[1].isdigit()
    done = wait(org, f["id"], execution_id)
    assert done["status"] == "completed", done["error"]
    assert done["outputs"]["shape"] == {"title": "ADA"}
    assert done["outputs"]["check"] == {"result": True}
    assert "skipped" not in done["outputs"]
    assert done["outputs"]["post"]["status"] == 201
    assert done["outputs"]["ticket"]["statusCode"] == 201 and done["outputs"]["ticket"]["success"] is True
    assert [(s["stepId"], s["status"]) for s in done["steps"]] == [
        ("shape", "completed"), ("check", "completed"), ("skipped", "skipped"),
        ("wait", "completed"), ("post", "completed"), ("ticket", "completed"),
    ]  # fmt: skip
    sent = {r["path"]: r for r in last}
    assert sent["/hooks/ADA"]["headers"]["idempotency-key"] == f"{execution_id}:post"
    assert sent["/t/issues"]["headers"]["idempotency-key"] == f"{execution_id}:ticket"
    assert sent["/t/issues"]["headers"]["authorization"] == f"Bearer {TOKEN}"

    logs = org.get(f"/flows/{f['id']}/executions/{execution_id}/logs").json()
    assert logs == org.get(f"/execution-logs/{f['id']}/execution/{execution_id}").json()
    assert logs == org.get(f"/execution-logs/{execution_id}").json()  # the seed's path by execution id
    one = org.get(f"/execution-logs/{logs[0]['id']}")  # the same path with a log's id: that log
    assert one.status_code == 200 and one.json() == logs[0]
    assert [(log["stepKey"], log["status"]) for log in logs] == [
        ("shape", "completed"), ("check", "completed"), ("skipped", "skipped"),
        ("wait", "completed"), ("post", "completed"), ("ticket", "completed"),
    ]  # fmt: skip
    first = logs[0]
    assert first["inputs"]["stepType"] == "data_transform" and first["inputs"]["stepName"] == "shape"
    assert first["inputs"]["variables"]["apiToken"] != "s3cret-value-123"  # masked in logs
    assert first["outputs"]["output"] == {"title": "ADA"} and isinstance(first["outputs"]["duration"], int)
    assert first["outputs"]["metadata"]["executionMode"] == "durable"
    assert logs[2]["outputs"]["skipped"] is True
    assert all("s3cret-value-123" not in str(log) and TOKEN not in str(log) for log in logs)

    listed = org.get(f"/flows/{f['id']}/executions").json()
    assert [e["executionId"] for e in listed] == [execution_id]
    assert org.get(f"/flows/{f['id']}/executions", params={"status": "failed"}).json() == []


def test_step_logs_mask_secrets_in_what_a_step_returned_threw_or_printed(org: Api) -> None:
    secret, other = "pa55-word-value", "tok-9876543210"
    steps = [
        {"id": "creds", "type": "data_transform", "config": {"script": "return { token: 'tok-' + 9876543210, n: 1 }"}},
        {"id": "echo", "type": "data_transform", "config": {"script": "return { user: variables.login, password: variables.login.password }"}},
        {
            "id": "leak",
            "type": "data_transform",
            "config": {"script": (
                "utils.log('using ' + variables.login.password, {again: stepOutputs.creds.token});"
                "throw new Error('bad ' + variables.login.password + ' / ' + stepOutputs.creds.token)"
            )},
        },
    ]  # fmt: skip
    f = flow(org, steps)
    execution_id = execute(org, f["id"], {"login": {"name": "ada", "password": secret}})
    done = wait(org, f["id"], execution_id)
    assert done["status"] == "completed"  # the failing step is not critical
    logs = org.get(f"/flows/{f['id']}/executions/{execution_id}/logs").json()
    text = json.dumps(logs)
    assert secret not in text and other not in text, text
    by_step = {log["stepKey"]: log for log in logs}
    assert by_step["creds"]["outputs"]["output"]["n"] == 1  # the rest of the output is kept
    assert by_step["leak"]["error"]["message"].startswith("bad ") and "Error" in json.dumps(
        by_step["leak"]["error"]
    )
    assert by_step["leak"]["outputs"]["logs"][0]["message"].startswith("using ")
    failed = next(
        s
        for s in org.get(f"/flows/{f['id']}/executions/{execution_id}").json()["steps"]
        if s["stepId"] == "leak"
    )
    assert secret not in json.dumps(failed["error"])
    # The execution's own outputs are the flow's data, as the code returned it.
    assert done["outputs"]["creds"]["token"] == other


def test_a_flow_with_an_unfinished_execution_cannot_be_deleted(org: Api) -> None:
    f = flow(org, [{"id": "wait", "type": "delay", "config": {"ms": 60_000}}])
    execution_id = execute(org, f["id"])
    refused = org.delete(f"/flows/{f['id']}")
    assert refused.status_code == 409, refused.text
    assert org.get(f"/flows/{f['id']}/executions/{execution_id}").status_code == 200  # still there
    org.post(f"/flows/{f['id']}/executions/{execution_id}/cancel")
    wait(org, f["id"], execution_id)
    assert org.delete(f"/flows/{f['id']}").status_code == 200  # finished: its history goes with it
    assert org.get(f"/flows/{f['id']}/executions/{execution_id}").status_code == 404


def test_direct_execution_answers_with_the_outputs(org: Api) -> None:
    f = flow(
        org, [{"id": "hello", "type": "data_transform", "config": {"script": "return 'hi ' + variables.who"}}]
    )
    response = org.post(f"/flows/{f['id']}/execute", json={"variables": {"who": "bob"}, "useDurable": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["outputs"] == {"hello": "hi bob"}
    [log] = org.get(f"/flows/{f['id']}/executions/{body['executionId']}/logs").json()
    assert log["outputs"]["metadata"]["executionMode"] == "direct"


def test_failures_retries_and_the_error_of_a_critical_step(org: Api, upstream: str) -> None:
    steps = [
        {"id": "ok", "type": "data_transform", "config": {"script": "return 1"}},
        {
            "id": "broken",
            "type": "http_request",
            "config": {"url": f"{upstream}/fail", "critical": True},
            "retry": {"maxRetries": 1, "backoffStrategy": "fixed", "baseDelayMs": 20, "maxDelayMs": 20},
        },
        {"id": "never", "type": "data_transform", "config": {"script": "return 2"}},
    ]
    f = flow(org, steps)
    done = wait(org, f["id"], execute(org, f["id"]))
    assert done["status"] == "failed" and done["error"]["stepId"] == "broken"
    logs = org.get(f"/flows/{f['id']}/executions/{done['executionId']}/logs").json()
    # 422 is not worth retrying: one failed attempt, and "never" never started
    assert [(log["stepKey"], log["status"]) for log in logs] == [("ok", "completed"), ("broken", "failed")]
    assert logs[1]["error"]["code"] == "HTTP_422"

    thrown = flow(
        org, [{"id": "js", "type": "data_transform", "config": {"script": "throw new Error('nope')"}}]
    )
    done = wait(org, thrown["id"], execute(org, thrown["id"]))
    log = org.get(f"/flows/{thrown['id']}/executions/{done['executionId']}/logs").json()[0]
    assert log["status"] == "failed" and log["error"]["message"] == "nope" and "at " in log["error"]["stack"]


def test_versions_are_kept_and_an_execution_runs_the_version_it_pinned(org: Api) -> None:
    v1 = [
        {"id": "wait", "type": "delay", "config": {"ms": 400}},
        {"id": "which", "type": "data_transform", "config": {"script": "return 'v1'"}},
    ]
    f = flow(org, v1)
    execution_id = execute(org, f["id"])
    v2 = [{"id": "which", "type": "data_transform", "config": {"script": "return 'v2'"}}]
    assert org.put(f"/flows/{f['id']}", json={"steps": v2}).json()["version"] == 2
    assert org.put(f"/flows/{f['id']}", json={"name": "Renamed"}).json()["version"] == 2
    versions = org.get(f"/flows/{f['id']}/versions").json()
    assert [(v["version"], v["steps"]) for v in versions] == [(2, v2), (1, v1)]
    done = wait(org, f["id"], execution_id)
    assert done["flowVersion"] == 1 and done["outputs"]["which"] == "v1"
    again = wait(org, f["id"], execute(org, f["id"]))
    assert again["flowVersion"] == 2 and again["outputs"] == {"which": "v2"}


def test_cancel_then_retry_and_resume(org: Api) -> None:
    steps = [
        {"id": "first", "type": "data_transform", "config": {"script": "return 'done once'"}},
        {"id": "wait", "type": "delay", "config": {"ms": 60_000}},
    ]
    f = flow(org, steps)
    execution_id = execute(org, f["id"])
    for _ in range(300):
        body = org.get(f"/flows/{f['id']}/executions/{execution_id}").json()
        if any(s["stepId"] == "wait" and s["status"] == "running" for s in body["steps"]):
            break  # "first" is done and the delay has begun
        time.sleep(0.02)
    response = org.post(f"/flows/{f['id']}/executions/{execution_id}/cancel")
    assert response.status_code == 200 and response.json()["cancelRequested"] is True
    cancelled = wait(org, f["id"], execution_id)
    assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == "CANCELLED"
    assert org.post(f"/flows/{f['id']}/executions/{execution_id}/cancel").status_code == 409

    retried = org.post(f"/flows/{f['id']}/executions/{execution_id}/retry", json={"resume": True})
    assert retried.status_code == 202, retried.text
    body = retried.json()
    assert body["retryOf"] == execution_id and body["resumed"] is True and body["status"] == "queued"
    view = org.get(f"/flows/{f['id']}/executions/{body['executionId']}").json()
    assert view["steps"][0]["stepId"] == "first" and view["steps"][0]["output"] == "done once"
    org.post(f"/flows/{f['id']}/executions/{body['executionId']}/cancel")
    wait(org, f["id"], body["executionId"])

    metrics = org.get(f"/flows/{f['id']}/metrics").json()
    assert metrics == {
        "totalExecutions": 2,
        "statusBreakdown": {"completed": 0, "failed": 0, "running": 0, "queued": 0, "cancelled": 2},
        "successRate": 0.0,
    }


def test_statistics_over_step_logs(server: Any) -> None:
    org = new_org(server.url, "Stats")
    f = flow(
        org,
        [
            {"id": "a", "type": "data_transform", "config": {"script": "return 1"}},
            {"id": "b", "type": "data_transform", "executeIf": "false", "config": {"script": "return 2"}},
        ],
    )
    wait(org, f["id"], execute(org, f["id"]))
    stats = org.get("/execution-logs/stats").json()
    assert stats["totalExecutions"] == 1 and stats["completedSteps"] == 1 and stats["skippedSteps"] == 1
    assert stats["failedSteps"] == 0 and stats["successRate"] == 50.0 and stats["avgExecutionTime"] >= 0
    assert stats["timeRange"] == {"from": None, "to": None}
    ranged = org.get("/execution-logs/stats", params={"from": "2000-01-01", "to": "2000-12-31"}).json()
    assert ranged["totalExecutions"] == 0 and ranged["timeRange"] == {
        "from": "2000-01-01T00:00:00.000Z",
        "to": "2000-12-31T23:59:59.999Z",
    }
    bad = org.get("/execution-logs/stats", params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "from"
    for field, moment in (
        ("from", "9999-12-31T23:59:59-05:00"),
        ("from", "0001-01-01T00:00:00+05:00"),
        ("to", "9999-12-31T23:59:59-00:01"),
    ):  # no such time in UTC
        bad = org.get("/execution-logs/stats", params={field: moment})
        assert bad.status_code == 400, bad.text
        assert [(e["field"], e["code"]) for e in bad.json()["errors"]] == [(field, "invalid_date")]
    shifted = org.get("/execution-logs/stats", params={"from": "2000-01-01T05:00:00+05:00"}).json()
    assert shifted["timeRange"]["from"] == "2000-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"variables": ["a"]}, "variables", "invalid_type"),
        ({"useDurable": "sometimes"}, "useDurable", "invalid_type"),
        ({"useDurable": "yes"}, "useDurable", "invalid_type"),
        ({"useDurable": 1}, "useDurable", "invalid_type"),
        ({"variabls": {"x": 1}}, "variabls", "unrecognized_keys"),
        ({"variables": {}, "foo": 1}, "foo", "unrecognized_keys"),
    ],
)
def test_bad_execute_requests_get_field_errors(org: Api, body: dict, field: str, code: str) -> None:
    f = flow(org, [{"id": "a", "type": "delay", "config": {"ms": 1}}])
    response = org.post(f"/flows/{f['id']}/execute", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["statusCode"] == 400
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in error["errors"]
    ]
    assert org.get(f"/flows/{f['id']}/executions").json() == []  # nothing ran


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [({"resum": True}, "resum", "unrecognized_keys"), ({"resume": "true"}, "resume", "invalid_type")],
)
def test_bad_retry_requests_get_field_errors(org: Api, body: dict, field: str, code: str) -> None:
    f = flow(org, [{"id": "a", "type": "data_transform", "config": {"script": "return 1"}}])
    execution_id = execute(org, f["id"])
    wait(org, f["id"], execution_id)
    response = org.post(f"/flows/{f['id']}/executions/{execution_id}/retry", json=body)
    assert response.status_code == 400, response.text
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]
    assert len(org.get(f"/flows/{f['id']}/executions").json()) == 1  # no new execution


def test_invalid_definitions_name_the_step_and_field(org: Api) -> None:
    response = org.post(
        "/flows",
        json={
            "name": "Bad",
            "steps": [
                {"id": "a", "type": "delay", "config": {"ms": 1}},
                {"id": "b", "type": "teleport", "dependsOn": ["zz"]},
            ],
        },
    )
    assert response.status_code == 400
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert ("steps.1.type", "invalid_enum_value") in fields
    cyclic = org.post(
        "/flows",
        json={
            "name": "Cycle",
            "steps": [
                {"id": "a", "type": "delay", "config": {"ms": 1}, "dependsOn": ["b"]},
                {"id": "b", "type": "delay", "config": {"ms": 1}, "dependsOn": ["a"]},
            ],
        },
    )
    assert cyclic.status_code == 400 and cyclic.json()["errors"][0]["code"] == "cycle"


def test_executions_are_scoped_to_their_organization(server: Any, org: Api) -> None:
    f = flow(org, [{"id": "a", "type": "data_transform", "config": {"script": "return 1"}}])
    execution_id = execute(org, f["id"])
    wait(org, f["id"], execution_id)
    other = new_org(server.url, "Other")
    paths = [
        ("post", f"/flows/{f['id']}/execute"),
        ("get", f"/flows/{f['id']}/executions"),
        ("get", f"/flows/{f['id']}/executions/{execution_id}"),
        ("post", f"/flows/{f['id']}/executions/{execution_id}/cancel"),
        ("post", f"/flows/{f['id']}/executions/{execution_id}/retry"),
        ("get", f"/flows/{f['id']}/executions/{execution_id}/logs"),
        ("get", f"/flows/{f['id']}/metrics"),
        ("get", f"/flows/{f['id']}/versions"),
        ("get", f"/execution-logs/{f['id']}/execution/{execution_id}"),
        ("get", f"/execution-logs/{execution_id}"),
    ]
    for method, path in paths:
        assert getattr(other, method)(path).status_code == 404, path
        assert getattr(Api(server.url, None), method)(path).status_code == 401, path
    assert other.get("/execution-logs/stats").json()["totalExecutions"] == 0


def test_step_metrics_are_exposed(server: Any, org: Api) -> None:
    f = flow(org, [{"id": "measured", "type": "data_transform", "config": {"script": "return 1"}}])
    wait(org, f["id"], execute(org, f["id"]))
    text = Api(server.url, None).get("/metrics").text
    assert (
        f'step_execution_seconds_bucket{{flowId="{f["id"]}",le="0.1",orgId="{org.org_id}",stepKey="measured"}}'
        in text
    )


def test_executions_are_attributed_to_the_user_who_started_them(org: Api) -> None:
    user = created(org.post("/users", json={"email": "runner@example.com", "name": "Runner"}))
    f = flow(org, [{"id": "a", "type": "data_transform", "config": {"script": "return meta.userId"}}])
    execution_id = execute(org.as_user(user["id"]), f["id"])
    done = wait(org, f["id"], execution_id)
    assert done["userId"] == user["id"] and done["userEmail"] == "runner@example.com"
    assert done["outputs"] == {"a": user["id"]}
    [listed] = org.get(f"/flows/{f['id']}/executions").json()
    assert (listed["userId"], listed["userEmail"]) == (user["id"], "runner@example.com")


def test_code_that_aborts_v8_fails_its_step_and_the_server_lives_on(org: Api) -> None:
    f = flow(
        org,
        [
            {
                "id": "bomb",
                "type": "data_transform",
                "config": {"script": 'return "x".repeat(2 ** 28).split("").length'},
            }
        ],
    )
    done = wait(org, f["id"], execute(org, f["id"]), seconds=30)
    assert done["status"] == "completed"  # not critical: recorded, and the flow went on
    [log] = org.get(f"/flows/{f['id']}/executions/{done['executionId']}/logs").json()
    assert log["status"] == "failed" and log["error"]["code"] == "SANDBOX_CRASHED"
    after = flow(org, [{"id": "fine", "type": "data_transform", "config": {"script": "return 42"}}])
    assert wait(org, after["id"], execute(org, after["id"]))["outputs"] == {"fine": 42}
