"""Building blocks for REST tests: one organization's objects, created over HTTP."""

from __future__ import annotations

from typing import Any

from tests.support import Api


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def seed_objects(api: Api) -> dict[str, dict[str, Any]]:
    """One of everything an organization owns, keyed by collection path."""
    user = created(api.post("/users", json={"email": "owner@example.com", "name": "Owner"}))
    tool = created(
        api.post("/tools", json={"name": "Jira", "baseUrl": "https://jira.example.com", "authType": "bearer"})
    )
    action = created(
        api.post(
            "/actions",
            json={
                "name": "Create Jira Ticket",
                "key": "create-jira-ticket",
                "toolId": tool["id"],
                "method": "POST",
                "endpoint": "/rest/api/2/issue",
                "headers": {"Authorization": "Bearer {{secrets.jira_token}}"},
                "inputSchema": [{"name": "summary", "type": "string", "required": True}],
            },
        )
    )
    flow = created(
        api.post(
            "/flows", json={"name": "Triage", "steps": [{"id": "s1", "type": "delay", "config": {"ms": 10}}]}
        )
    )
    log = created(
        api.post(
            "/execution-logs",
            json={
                "flowId": flow["id"],
                "executionId": "exec_1704067200_abc123",
                "stepKey": "s1",
                "inputs": {"stepName": "Wait"},
                "userId": user["id"],
            },
        )
    )
    key = created(api.post("/api-keys", json={"name": "spare"}))
    return {
        "/users": user,
        "/tools": tool,
        "/actions": action,
        "/flows": flow,
        "/execution-logs": log,
        "/api-keys": key,
    }


# A valid PUT body per collection (used to prove another tenant cannot change anything).
UPDATES: dict[str, dict[str, Any]] = {
    "/users": {"name": "Mallory"},
    "/tools": {"name": "Hijacked"},
    "/actions": {"name": "Hijacked"},
    "/flows": {"name": "Hijacked"},
    "/execution-logs": {"status": "completed"},
}
