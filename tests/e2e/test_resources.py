"""CRUD behaviour of each resource at the seed's paths, filters and pagination, health and docs."""

from __future__ import annotations

from tests.e2e.helpers import created, seed_objects


def test_crud_round_trip_for_every_resource(org) -> None:
    objects = seed_objects(org)
    for path, obj in objects.items():
        expected = {k: v for k, v in obj.items() if k != "key"} if path == "/api-keys" else obj
        assert org.get(f"{path}/{obj['id']}").json() == expected  # a key's plaintext is shown only once
        assert obj["id"] in [item["id"] for item in org.get(path).json()]
        assert obj["createdAt"].endswith("Z") and obj["updatedAt"] >= obj["createdAt"]
    tool = objects["/tools"]
    updated = org.put(f"/tools/{tool['id']}", json={"name": "Jira Cloud", "options": {"region": "eu"}}).json()
    assert updated["name"] == "Jira Cloud" and updated["options"] == {"region": "eu"}
    assert updated["key"] == tool["key"] and updated["baseUrl"] == tool["baseUrl"]  # unsent fields keep
    flow = objects["/flows"]
    assert org.put(f"/flows/{flow['id']}", json={"description": "d"}).json()["version"] == 1
    assert org.put(f"/flows/{flow['id']}", json={"steps": []}).json()["version"] == 2
    # a tool with actions cannot go; once its action is gone it can
    assert org.delete(f"/tools/{tool['id']}").status_code == 409
    action = objects["/actions"]
    assert org.delete(f"/actions/{action['id']}").json()["id"] == action["id"]
    assert org.get(f"/actions/{action['id']}").status_code == 404
    assert org.delete(f"/tools/{tool['id']}").status_code == 200


def test_keys_are_derived_from_names(org) -> None:
    tool = created(
        org.post(
            "/tools", json={"name": "Slack API", "baseUrl": "https://api.slack.com", "authType": "bearer"}
        )
    )
    assert tool["key"] == "slack-api" and tool["authType"] == "bearer"
    action = created(
        org.post("/actions", json={"name": "Post Message!", "toolId": tool["id"], "endpoint": "/chat"})
    )
    assert action["key"] == "post-message" and action["method"] == "GET"


def test_filters_and_pagination(org) -> None:
    tools = [
        created(
            org.post(
                "/tools", json={"name": f"Tool {i}", "baseUrl": "https://t.example.com", "authType": auth}
            )
        )
        for i, auth in enumerate(["bearer", "basic", "bearer", "none"])
    ]
    assert [t["id"] for t in org.get("/tools").json()] == [t["id"] for t in reversed(tools)]
    assert [t["id"] for t in org.get("/tools", params={"limit": 2, "offset": 1}).json()] == [
        tools[2]["id"],
        tools[1]["id"],
    ]
    assert {t["id"] for t in org.get("/tools", params={"authType": "bearer"}).json()} == {
        tools[0]["id"],
        tools[2]["id"],
    }
    assert [t["key"] for t in org.get("/tools", params={"key": "tool-3"}).json()] == ["tool-3"]
    a1 = created(org.post("/actions", json={"name": "a1", "toolId": tools[0]["id"], "endpoint": "/1"}))
    created(
        org.post(
            "/actions", json={"name": "a2", "toolId": tools[1]["id"], "endpoint": "/2", "method": "post"}
        )
    )
    assert [a["id"] for a in org.get("/actions", params={"toolId": tools[0]["id"]}).json()] == [a1["id"]]
    assert [a["name"] for a in org.get("/actions", params={"method": "POST"}).json()] == ["a2"]
    flow = created(org.post("/flows", json={"name": "F"}))
    for step, status in [("s1", "completed"), ("s2", "failed")]:
        created(
            org.post(
                "/execution-logs",
                json={
                    "flowId": flow["id"],
                    "executionId": "exec_1",
                    "stepKey": step,
                    "status": status,
                    "inputs": {},
                },
            )
        )
    logs = org.get("/execution-logs", params={"flowId": flow["id"], "status": "failed"}).json()
    assert [(log["stepKey"], log["userId"]) for log in logs] == [("s2", None)]


def test_execution_logs_default_to_the_acting_user(org) -> None:
    user = created(org.post("/users", json={"email": "runner@example.com"}))
    flow = created(org.post("/flows", json={"name": "F"}))
    log = created(
        org.as_user(user["id"]).post(
            "/execution-logs",
            json={"flowId": flow["id"], "executionId": "e", "stepKey": "s", "inputs": {"a": [1, 2]}},
        )
    )
    assert log["userId"] == user["id"] and log["status"] == "started" and log["inputs"] == {"a": [1, 2]}
    done = org.put(
        f"/execution-logs/{log['id']}", json={"status": "completed", "outputs": {"n": 1, "duration": 12}}
    )
    assert done.json()["outputs"] == {"n": 1, "duration": 12} and done.json()["status"] == "completed"


def test_health_endpoints_need_no_credentials_and_show_no_secrets(server, org) -> None:
    import httpx

    with httpx.Client(base_url=server.url) as anonymous:
        health = anonymous.get("/health").json()
        assert health["status"] == "ok" and isinstance(health["uptime"], int) and health["version"]
        status = anonymous.get("/status")
        assert status.status_code == 200 and status.json()["database"] == {"status": "healthy"}
        detailed = anonymous.get("/status/detailed").json()
        assert detailed["database"]["status"] == "healthy"
        assert detailed["database"]["connectionTime"] >= 0
        assert set(detailed["database"]["recordCounts"]) == {"organizations", "users", "tools", "flows"}
        assert detailed["database"]["recordCounts"]["organizations"] >= 1
        assert detailed["environment"]["pythonVersion"].startswith("3.")
        text = anonymous.get("/status/detailed").text
    assert (
        org.token not in text
        and "postgres" not in text.lower().replace("postgresql", "")
        and "sqlite:" not in text
    )


def test_openapi_and_docs_are_served(server) -> None:
    import httpx

    with httpx.Client(base_url=server.url) as anonymous:
        spec = anonymous.get("/openapi.json").json()
        assert {
            "/organizations",
            "/users",
            "/tools",
            "/actions",
            "/flows",
            "/execution-logs",
            "/api-keys",
        } <= set(spec["paths"])
        assert "/tools/{item_id}" in spec["paths"] and "put" in spec["paths"]["/tools/{item_id}"]
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        list_tools = spec["paths"]["/tools"]["get"]
        assert list_tools["security"] == [{"bearer": []}]
        assert {"X-Org-ID", "X-User-ID", "limit", "offset", "authType"} <= {
            p["name"] for p in list_tools["parameters"]
        }
        assert "security" not in spec["paths"]["/health"]["get"]
        assert anonymous.get("/docs").status_code == 200
