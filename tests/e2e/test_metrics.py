"""/metrics: the seed's metric names and labels, route templates (not raw paths), no secrets."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import created
from tests.e2e.test_execute_action import jira

SECRET = "metrics-secret-1234567890"


def samples(server) -> dict[str, list]:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert SECRET not in response.text
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_http_metrics_use_route_templates(server, org) -> None:
    tool = created(org.post("/tools", json={"name": "Metered", "baseUrl": "https://m.example.com"}))
    org.get(f"/tools/{tool['id']}")
    org.get("/tools/does-not-exist")
    httpx.get(f"{server.url}/no/such/path/{tool['id']}")
    found = samples(server)
    labels = [s.labels for s in found["http_requests_total"]]
    assert {"method": "GET", "route": "/tools/{item_id}", "status": "200"} in labels
    assert {"method": "GET", "route": "/tools/{item_id}", "status": "404"} in labels
    assert {"method": "POST", "route": "/tools", "status": "201"} in labels
    assert all(tool["id"] not in s.labels["route"] for s in found["http_requests_total"])
    assert any(s.labels["route"] == "unmatched" for s in found["http_requests_total"])
    buckets = {s.labels["le"] for s in found["http_request_duration_seconds_bucket"]}
    assert {"0.1", "0.5", "1.0", "2.0", "5.0", "+Inf"} == buckets


def test_action_metrics(server, org, upstream) -> None:
    tool = jira(org, upstream, "bearer")
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"token": SECRET}})
    action = created(
        org.post(
            "/actions", json={"name": "Count", "key": "count-things", "toolId": tool["id"], "endpoint": "/c"}
        )
    )
    assert org.post(f"/actions/{action['id']}/execute", json={}).json()["success"] is True
    found = samples(server)
    mine = {"orgId": org.org_id, "toolKey": tool["key"], "actionKey": "count-things"}
    assert [
        s.value for s in found["action_executions_total"] if s.labels == {**mine, "status": "success"}
    ] == [1.0]
    assert [s.value for s in found["action_execution_duration_seconds_count"] if s.labels == mine] == [1.0]
    injected = {"orgId": org.org_id, "toolKey": tool["key"], "authType": "bearer", "status": "success"}
    assert [s.value for s in found["action_auth_injection_total"] if s.labels == injected] == [1.0]
