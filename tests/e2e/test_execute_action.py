"""POST /actions/{id}/execute against a local upstream that records what it receives."""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.helpers import created
from tests.support import free_port

JIRA_TOKEN = "jira-token-0123456789abcdef"


def jira(org, upstream: str, auth_type: str = "bearer", options: dict | None = None) -> dict:
    tool = created(
        org.post(
            "/tools",
            json={
                "name": "Jira",
                "baseUrl": f"{upstream}/jira/",
                "authType": auth_type,
                "options": options or {},
            },
        )
    )
    return tool


def create_ticket_action(org, tool: dict, **extra) -> dict:
    return created(
        org.post(
            "/actions",
            json={
                "name": "Create Jira Ticket",
                "key": "create-jira-ticket",
                "toolId": tool["id"],
                "method": "POST",
                "endpoint": "/rest/api/2/project/{{inputs.project}}/issue",
                "headers": {"Authorization": "Bearer {{secrets.jira_token}}", "X-Source": "tolstoy"},
                "inputSchema": [
                    {"name": "project", "type": "string", "required": True},
                    {
                        "name": "summary",
                        "type": "string",
                        "required": True,
                        "validation": {"min": 5, "max": 255},
                    },
                    {
                        "name": "priority",
                        "type": "enum",
                        "required": True,
                        "options": ["Low", "Medium", "High"],
                        "default": "Medium",
                    },
                ],
                **extra,
            },
        )
    )


def test_the_seed_jira_action_end_to_end(org, upstream, last) -> None:
    tool = jira(org, upstream)
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"jira_token": JIRA_TOKEN}})
    action = create_ticket_action(org, tool)
    response = org.post(
        f"/actions/{action['id']}/execute", json={"inputs": {"project": "A/B C", "summary": "Login broken"}}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (
        result["success"] is True
        and result["statusCode"] == 201
        and result["data"] == {"id": "10000", "key": "PROJ-1"}
    )
    assert result["executionId"].startswith("exec_") and isinstance(result["duration"], int)
    assert result["headers"]["x-request-id"] == "req-42" and "set-cookie" not in result["headers"]
    (sent,) = last
    assert sent["method"] == "POST"
    assert sent["path"] == "/jira/rest/api/2/project/A%2FB%20C/issue"  # value encoded into one segment
    assert sent["headers"]["authorization"] == f"Bearer {JIRA_TOKEN}"
    assert sent["headers"]["x-source"] == "tolstoy" and sent["headers"]["content-type"] == "application/json"
    assert json.loads(sent["body"]) == {"summary": "Login broken", "priority": "Medium"}  # default applied
    events = org.get("/audit-events", params={"action": "action.executed"}).json()
    assert events[0]["resourceId"] == action["id"] and events[0]["details"]["statusCode"] == 201
    assert JIRA_TOKEN not in json.dumps(events)


def test_invalid_inputs_are_the_seed_validation_error(org, upstream, last) -> None:
    action = create_ticket_action(org, jira(org, upstream))
    response = org.post(
        f"/actions/{action['id']}/execute", json={"inputs": {"summary": "abc", "priority": "Urgent"}}
    )
    assert response.status_code == 400 and response.json()["message"] == "Input validation failed"
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("project", "required"), ("summary", "too_small"), ("priority", "invalid_enum_value"),
    ]  # fmt: skip
    assert last == []  # nothing was sent


@pytest.mark.parametrize(
    ("auth_type", "credentials", "options", "expect"),
    [
        ("bearer", {"token": "tok-1234567890"}, {}, ("authorization", "Bearer tok-1234567890")),
        (
            "api_key",
            {"api_key": "key-1234567890"},
            {"headerName": "X-Custom-Key"},
            ("x-custom-key", "key-1234567890"),
        ),
        (
            "api_key",
            {"api_key": "key-1234567890"},
            {"queryParam": "apikey"},
            ("query", "apikey=key-1234567890"),
        ),
        (
            "basic",
            {"username": "ann", "password": "pw-1234567890"},
            {},
            ("authorization", "Basic " + base64.b64encode(b"ann:pw-1234567890").decode()),
        ),
        ("oauth2", {"access_token": "oat-1234567890"}, {}, ("authorization", "Bearer oat-1234567890")),
    ],
)
def test_auth_is_injected_by_auth_type(org, upstream, last, auth_type, credentials, options, expect) -> None:
    tool = jira(org, upstream, auth_type, options)
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": credentials})
    action = created(
        org.post(
            "/actions", json={"name": "List", "toolId": tool["id"], "method": "GET", "endpoint": "/items"}
        )
    )
    result = org.post(f"/actions/{action['id']}/execute", json={"inputs": {"q": "x"}}).json()
    assert result["success"] is True
    (sent,) = last
    where, value = expect
    if where == "query":
        assert value in sent["path"] and "q=x" in sent["path"]
    else:
        assert sent["headers"][where] == value


def test_missing_credentials_are_a_clear_400(org, upstream, last) -> None:
    tool = jira(org, upstream, "bearer")
    action = created(org.post("/actions", json={"name": "List", "toolId": tool["id"], "endpoint": "/items"}))
    response = org.post(f"/actions/{action['id']}/execute", json={})
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "missing_credential"
    assert last == []


def test_a_header_value_that_cannot_be_sent_is_a_400_naming_the_header(org, upstream, last) -> None:
    tool = jira(org, upstream, "none")
    action = created(
        org.post(
            "/actions",
            json={
                "name": "Greet",
                "toolId": tool["id"],
                "endpoint": "/greet",
                "headers": {"X-Name": "{{inputs.name}}", "content-type": "text/plain"},
                "method": "POST",
                "inputSchema": [{"name": "name", "type": "string", "required": True}],
            },
        )
    )
    for name in ("José", "a\r\nX-Evil: 1"):
        response = org.post(f"/actions/{action['id']}/execute", json={"inputs": {"name": name}})
        assert response.status_code == 400, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["headers.X-Name"]
        assert name not in response.text
    assert last == []
    response = org.post(f"/actions/{action['id']}/execute", json={"inputs": {"name": "Jose"}})
    assert response.status_code == 200, response.text
    sent = last[-1]["headers"]
    assert sent["x-name"] == "Jose" and sent["content-type"] == "text/plain"  # one content-type


def test_upstream_failures(org, upstream, last) -> None:
    tool = jira(org, upstream, "none")

    def run(endpoint: str):
        action = created(
            org.post("/actions", json={"name": f"A {endpoint}", "toolId": tool["id"], "endpoint": endpoint})
        )
        return org.post(f"/actions/{action['id']}/execute", json={})

    failed = run("/fail").json()
    assert failed["success"] is False and failed["statusCode"] == 422
    assert failed["data"] == {"errorMessages": ["Field 'summary' is required"]}
    timeout = run("/slow")
    assert timeout.status_code == 504 and "in time" in timeout.json()["message"]
    dead_tool = created(
        org.post("/tools", json={"name": "Dead", "baseUrl": f"http://127.0.0.1:{free_port()}"})
    )
    dead = created(org.post("/actions", json={"name": "Dead", "toolId": dead_tool["id"], "endpoint": "/x"}))
    unreachable = org.post(f"/actions/{dead['id']}/execute", json={})
    assert unreachable.status_code == 502 and "Could not reach" in unreachable.json()["message"]
    kinds = [
        e["details"]["status"] for e in org.get("/audit-events", params={"action": "action.failed"}).json()
    ]
    assert sorted(kinds) == ["error", "error", "timeout"]


def test_private_destinations_are_refused(org, last) -> None:
    for base in ("http://10.0.0.1", "http://169.254.169.254", "http://[::1]:8080", "http://0.0.0.0:9"):
        tool = created(org.post("/tools", json={"name": f"Internal {base}", "baseUrl": base}))
        action = created(
            org.post("/actions", json={"name": f"Peek {base}", "toolId": tool["id"], "endpoint": "/x"})
        )
        response = org.post(f"/actions/{action['id']}/execute", json={})
        assert response.status_code == 400 and "refused" in response.json()["message"], base
    assert last == []


def test_echoed_credentials_are_redacted(org, upstream, last) -> None:
    tool = jira(org, upstream, "bearer")
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"token": "echo-me-1234567890"}})
    action = created(
        org.post("/actions", json={"name": "Echo", "toolId": tool["id"], "endpoint": "/echo-auth"})
    )
    response = org.post(f"/actions/{action['id']}/execute", json={})
    assert response.json()["data"] == {"youSent": "Bearer [REDACTED]"} and "echo-me" not in response.text


@pytest.mark.parametrize(
    ("auth_type", "options", "credentials", "secrets"),
    [
        (
            "basic",
            {},
            {"username": "alice", "password": "s3cret-pass"},
            ["s3cret-pass", "YWxpY2U6czNjcmV0LXBhc3M="],
        ),
        (
            "api_key",
            {"queryParam": "api_key"},
            {"api_key": "q/s+c=ret&1"},
            ["q/s+c=ret&1", "q%2Fs%2Bc%3Dret%261"],
        ),
        ("none", {}, {"pat": "ghp_personal_access_token"}, ["ghp_personal_access_token"]),
    ],
)
def test_credentials_echoed_in_any_form_are_redacted(
    org, upstream, last, auth_type, options, credentials, secrets
):
    tool = jira(org, upstream, auth_type, options)
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": credentials})
    action = created(
        org.post(
            "/actions",
            json={
                "name": "Echo all",
                "toolId": tool["id"],
                "endpoint": "/echo-auth/all",
                "headers": {"X-Pat": "{{secrets.pat}}"} if "pat" in credentials else {},
            },
        )
    )
    response = org.post(f"/actions/{action['id']}/execute", json={})
    assert response.status_code == 200, response.text
    sent = json.dumps(last[-1])
    assert any(secret in sent for secret in secrets)  # the upstream did get (and echo) them
    for secret in secrets:
        assert secret not in response.text, secret
    assert "[REDACTED]" in response.text


def test_another_tenant_cannot_execute_or_use_credentials(org, upstream, last, server) -> None:
    from tests.support import new_org

    tool = jira(org, upstream)
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"jira_token": JIRA_TOKEN}})
    action = create_ticket_action(org, tool)
    other = new_org(server.url, "Other")
    assert (
        other.post(
            f"/actions/{action['id']}/execute", json={"inputs": {"project": "P", "summary": "Hello"}}
        ).status_code
        == 404
    )
    own_tool = created(
        other.post("/tools", json={"name": "Mine", "baseUrl": f"{upstream}/mine", "authType": "bearer"})
    )
    own = created(
        other.post(
            "/actions",
            json={
                "name": "Steal",
                "toolId": own_tool["id"],
                "endpoint": "/x",
                "headers": {"X-Steal": "{{secrets.jira_token}}"},
            },
        )
    )
    response = other.post(f"/actions/{own['id']}/execute", json={})
    assert response.status_code == 400  # its own tool has no such secret, and org A's are out of reach
    assert all(JIRA_TOKEN not in json.dumps(r) for r in last)


def test_odd_upstream_json_never_breaks_the_answer(org, upstream, last) -> None:
    tool = jira(org, upstream, "none")
    action = created(
        org.post("/actions", json={"name": "Huge", "toolId": tool["id"], "endpoint": "/huge-number"})
    )
    response = org.post(f"/actions/{action['id']}/execute", json={})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == pytest.approx(1.2345678901234568e29)
