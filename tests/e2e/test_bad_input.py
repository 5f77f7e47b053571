"""Bad input answers a 4xx in the seed's error format, never a 500, and stores nothing."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import created

SEED_KEYS = {"statusCode", "message", "error", "errors"}


def assert_seed_error(response, status: int) -> list[dict]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == SEED_KEYS
    assert body["statusCode"] == status
    for error in body["errors"]:
        assert set(error) == {"field", "message", "code"}
    return body["errors"]


def fields(errors: list[dict]) -> dict[str, str]:
    return {e["field"]: e["code"] for e in errors}


CASES = [
    # (path, body, {field: code} expected among the errors)
    ("/users", {}, {"email": "required"}),
    ("/users", {"email": 42}, {"email": "invalid_type"}),
    ("/users", {"email": "not-an-email"}, {"email": "invalid_string"}),
    ("/users", {"email": "a@b.co", "role": "admin"}, {"role": "unrecognized_keys"}),
    ("/tools", {"baseUrl": "https://x.example.com"}, {"name": "required"}),
    (
        "/tools",
        {"name": "T", "baseUrl": "https://x.example.com", "authType": "token"},
        {"authType": "invalid_enum_value"},
    ),
    ("/tools", {"name": "T", "baseUrl": "ftp://x.example.com"}, {"baseUrl": "invalid_string"}),
    (
        "/tools",
        {"name": "T", "baseUrl": "https://x.example.com", "key": "Not A Slug"},
        {"key": "invalid_string"},
    ),
    ("/tools", {"name": "T" * 201, "baseUrl": "https://x.example.com"}, {"name": "too_big"}),
    ("/tools", {"name": "   ", "baseUrl": "https://x.example.com"}, {"name": "too_small"}),
    ("/tools", {"name": ["T"], "baseUrl": True}, {"name": "invalid_type", "baseUrl": "invalid_type"}),
    (
        "/tools",
        {"name": "T", "baseUrl": "https://x.example.com", "options": "[]"},
        {"options": "invalid_type"},
    ),
    ("/actions", {"name": "A"}, {"toolId": "required", "endpoint": "required"}),
    (
        "/actions",
        {"name": "A", "toolId": "tool_x", "endpoint": "/x", "method": "FETCH"},
        {"method": "invalid_enum_value"},
    ),
    ("/actions", {"name": "A", "toolId": "tool_x", "endpoint": "no-slash"}, {"endpoint": "invalid_string"}),
    (
        "/actions",
        {"name": "A", "toolId": "tool_x", "endpoint": "/x", "headers": {"X-N": 1}},
        {"headers.X-N": "invalid_type"},
    ),
    (
        "/actions",
        {"name": "A", "toolId": "tool_x", "endpoint": "/x", "inputSchema": {"a": 1}},
        {"inputSchema": "invalid_type"},
    ),
    ("/flows", {"steps": []}, {"name": "required"}),
    ("/flows", {"name": "F", "steps": {"id": 1}}, {"steps": "invalid_type"}),
    ("/flows", {"name": "F", "steps": ["not-an-object"]}, {"steps.0": "invalid_type"}),
    ("/flows", {"name": "F", "settings": [1]}, {"settings": "invalid_type"}),
    (
        "/flows",
        {
            "name": "F",
            "settings": {"priority": 1, "execution": {"concurency": 2, "retryPolicy": {"jitter": 1}}},
        },
        {
            "settings.priority": "unrecognized_keys",
            "settings.execution.concurency": "unrecognized_keys",
            "settings.execution.retryPolicy.jitter": "unrecognized_keys",
        },
    ),
    (
        "/flows",
        {
            "name": "F",
            "steps": [{"id": "a", "type": "http_request", "config": {"url": "file:///etc/passwd"}}],
        },
        {"steps.0.config.url": "invalid_string"},
    ),
    (
        "/flows",
        {"name": "F", "steps": [{"id": "a", "type": "action", "config": {"actionId": "  "}}]},
        {"steps.0.config.actionId": "invalid_string"},
    ),
    ("/flows", {"name": "F", "steps": [{"id": "a", "config": {}}]}, {"steps.0.type": "required"}),
    (
        "/flows",
        {
            "name": "F",
            "steps": [
                {"id": "a", "type": "delay", "config": {"ms": 1}},
                {"id": "b", "type": "delay", "config": {"ms": 1}, "dependsOn": ["c"]},
                {"id": "c", "type": "delay", "config": {"ms": 1}},
            ],
        },
        {"steps.1.dependsOn": "cycle"},
    ),
    (
        "/execution-logs",
        {"flowId": "f"},
        {"executionId": "required", "stepKey": "required", "inputs": "required"},
    ),
    (
        "/execution-logs",
        {"flowId": "f", "executionId": "e", "stepKey": "s", "inputs": {}, "status": "done"},
        {"status": "invalid_enum_value"},
    ),
    ("/api-keys", {"name": 7}, {"name": "invalid_type"}),
]


@pytest.mark.parametrize(
    ("path", "body", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_invalid_bodies_name_each_field(org, path, body, expected) -> None:
    before = org.get(path).json()
    errors = assert_seed_error(org.post(path, json=body), 400)
    found = fields(errors)
    for field, code in expected.items():
        assert found.get(field) == code, errors
    assert org.get(path).json() == before


@pytest.mark.parametrize(
    "path", ["/users", "/tools", "/actions", "/flows", "/execution-logs", "/api-keys", "/organizations"]
)
def test_malformed_json_is_400(org, admin, path) -> None:
    api = admin if path == "/organizations" else org
    response = api.post(path, content=b'{"name": ', headers={"Content-Type": "application/json"})
    errors = assert_seed_error(response, 400)
    assert response.json()["message"] == "Malformed JSON body" and errors[0]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "path", ["/users", "/tools", "/actions", "/flows", "/execution-logs", "/organizations"]
)
def test_a_json_body_that_is_not_an_object_is_400(org, admin, path) -> None:
    api = admin if path == "/organizations" else org
    assert_seed_error(api.post(path, json=["a", "list"]), 400)


@pytest.mark.parametrize(
    "path", ["/users", "/tools", "/actions", "/flows", "/execution-logs", "/organizations"]
)
def test_oversized_bodies_are_413(org, admin, path) -> None:
    api = admin if path == "/organizations" else org
    big = {"name": "x" * (65 * 1024)}  # the test server's limit is 64 KiB
    assert_seed_error(api.post(path, json=big), 413)

    def chunks():
        yield b'{"name": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    # Without Content-Length the limit is enforced while the body streams in.
    assert_seed_error(api.post(path, content=chunks(), headers={"Content-Type": "application/json"}), 413)


def test_updates_are_validated_too(org) -> None:
    tool = created(org.post("/tools", json={"name": "T", "baseUrl": "https://t.example.com"}))
    errors = assert_seed_error(
        org.put(f"/tools/{tool['id']}", json={"authType": "magic", "baseUrl": None}), 400
    )
    assert fields(errors) == {"authType": "invalid_enum_value", "baseUrl": "required"}
    assert org.get(f"/tools/{tool['id']}").json() == tool


def test_a_flow_update_cannot_null_its_steps_or_settings(org) -> None:
    """Null is no way to clear them (``[]`` and ``{}`` are): it used to make a version of 0 steps."""
    steps = [{"id": "s1", "type": "delay", "config": {"ms": 1}}]
    settings = {"execution": {"concurrency": 2}}
    flow = created(org.post("/flows", json={"name": "F", "steps": steps, "settings": settings}))
    for body, field, kind in (
        ({"steps": None}, "steps", "array"),
        ({"settings": None}, "settings", "object"),
    ):
        errors = assert_seed_error(org.put(f"/flows/{flow['id']}", json={**body, "name": "G"}), 400)
        assert [(e["field"], e["code"], e["message"]) for e in errors] == [
            (field, "invalid_type", f"Expected {kind}, received null")
        ]
    assert org.get(f"/flows/{flow['id']}").json() == flow
    assert len(org.get(f"/flows/{flow['id']}/versions").json()) == 1
    cleared = org.put(f"/flows/{flow['id']}", json={"steps": [], "settings": {}}).json()
    assert (cleared["steps"], cleared["settings"], cleared["version"]) == ([], {}, 2)


def test_templated_http_urls_are_accepted(org) -> None:
    urls = [
        "{{variables.endpoint}}",
        "{{variables.base}}/users/{{variables.id}}",
        "https://api.example.com/{{variables.path}}",
    ]
    steps = [{"id": f"s{i}", "type": "http_request", "config": {"url": url}} for i, url in enumerate(urls)]
    flow = created(org.post("/flows", json={"name": "Templated", "steps": steps}))
    assert [s["config"]["url"] for s in flow["steps"]] == urls


def test_conflicts_are_409_with_the_field(org) -> None:
    created(org.post("/tools", json={"name": "Dup", "baseUrl": "https://d.example.com"}))
    errors = assert_seed_error(
        org.post("/tools", json={"name": "Dup", "baseUrl": "https://d.example.com"}), 409
    )
    assert fields(errors) == {"key": "already_exists"}
    created(org.post("/users", json={"email": "same@example.com"}))
    errors = assert_seed_error(org.post("/users", json={"email": "SAME@example.com"}), 409)
    assert fields(errors) == {"email": "already_exists"}


def test_query_parameters_are_validated(org) -> None:
    errors = assert_seed_error(org.get("/tools", params={"limit": "lots"}), 400)
    assert fields(errors) == {"limit": "invalid_type"}
    assert fields(assert_seed_error(org.get("/tools", params={"limit": 0}), 400)) == {"limit": "too_small"}
    assert fields(assert_seed_error(org.get("/tools", params={"limit": 10_000}), 400)) == {"limit": "too_big"}
    assert fields(assert_seed_error(org.get("/flows", params={"offset": -1}), 400)) == {"offset": "too_small"}
    for path in ("/flows", "/execution-logs", "/audit-events"):  # beyond the databases' integers
        for offset in (2**31, 2**63, 10**20):
            assert fields(assert_seed_error(org.get(path, params={"offset": offset}), 400)) == {
                "offset": "too_big"
            }
    assert org.get("/flows", params={"offset": 2**31 - 1}).json() == []


def test_filters_on_a_field_of_few_values_refuse_any_other(org) -> None:
    for path, field, value in (
        ("/execution-logs", "status", "bogus"),
        ("/execution-logs", "status", ""),
        ("/tools", "authType", "token"),
        ("/actions", "method", "FETCH"),
    ):
        errors = assert_seed_error(org.get(path, params={field: value}), 400)
        assert fields(errors) == {field: "invalid_enum_value"}, (path, value)
    tool = created(org.post("/tools", json={"name": "Filtered", "baseUrl": "https://f.example.com"}))
    action = created(org.post("/actions", json={"name": "A", "toolId": tool["id"], "endpoint": "/a"}))
    assert [a["id"] for a in org.get("/actions", params={"method": "get"}).json()] == [action["id"]]
    assert org.get("/execution-logs", params={"status": "failed"}).status_code == 200


def test_unknown_routes_and_methods(org) -> None:
    assert_seed_error(org.get("/nope"), 404)
    assert_seed_error(org.get("/tools/does-not-exist"), 404)
    assert_seed_error(org.patch("/tools"), 405)


def test_finished_execution_logs_cannot_change_status(org) -> None:
    flow = created(org.post("/flows", json={"name": "F"}))
    log = created(
        org.post(
            "/execution-logs", json={"flowId": flow["id"], "executionId": "e", "stepKey": "s", "inputs": {}}
        )
    )
    assert (
        org.put(
            f"/execution-logs/{log['id']}", json={"status": "failed", "error": {"message": "x"}}
        ).status_code
        == 200
    )
    assert_seed_error(org.put(f"/execution-logs/{log['id']}", json={"status": "completed"}), 409)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "t", "baseUrl": "https://x.io", "options": {"a": NaN}}',
        b'{"name": "t", "baseUrl": "https://x.io", "options": {"a": -Infinity}}',
        b'{"name": "t", "baseUrl": "https://x.io", "options": {"a": 1e400}}',
        b'{"name": "\\ud800", "baseUrl": "https://x.io"}',
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe{}",
    ],
    ids=["nan", "infinity", "overflow", "lone-surrogate", "deep-nesting", "not-utf8"],
)
def test_json_that_no_database_can_store_is_malformed(org, raw) -> None:
    response = org.post("/tools", content=raw, headers={"Content-Type": "application/json"})
    errors = assert_seed_error(response, 400)
    assert errors[0]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "nul\u0000", "baseUrl": "https://x.io"}, "name"),
        ({"name": "t", "baseUrl": "https://x.io", "options": {"a": ["ok", "nul\u0000"]}}, "options.a.1"),
        ({"name": "t", "baseUrl": "https://x.io", "options": {"k\u0000": 1}}, "options.k\u0000"),
    ],
)
def test_nul_characters_are_refused_by_field(org, body, field) -> None:
    errors = assert_seed_error(org.post("/tools", json=body), 400)
    assert fields(errors) == {field: "invalid_string"}


def test_nul_characters_in_ids_and_filters_match_nothing(org) -> None:
    assert_seed_error(org.get("/tools/a%00b"), 404)
    assert_seed_error(org.delete("/flows/a%00b"), 404)
    assert org.get("/tools", params={"key": "a\u0000"}).json() == []
    assert_seed_error(org.get("/organizations/x%00"), 404)


@pytest.mark.parametrize(
    ("schema", "field", "code"),
    [
        ([{"name": "a", "type": "text"}], "inputSchema.0.type", "invalid_enum_value"),
        ([{"name": "p", "type": "enum", "required": True}], "inputSchema.0.options", "required"),
        (
            [{"name": "d", "type": "string", "validation": {"pattern": "(a)\\1"}}],
            "inputSchema.0.validation.pattern",
            "invalid_regex",
        ),
        (
            [{"name": "s", "type": "string", "validation": {"min": 9, "max": 1}}],
            "inputSchema.0.validation",
            "invalid_range",
        ),
        (
            [{"name": "x", "type": "string"}, {"name": "x", "type": "number"}],
            "inputSchema.1.name",
            "duplicate",
        ),
    ],
)
def test_unusable_input_schemas_are_refused_on_create_and_update(org, schema, field, code) -> None:
    tool = created(org.post("/tools", json={"name": "Schema Tool", "baseUrl": "https://s.example.com"}))
    body = {"name": "A", "toolId": tool["id"], "endpoint": "/a", "inputSchema": schema}
    errors = assert_seed_error(org.post("/actions", json=body), 400)
    assert (field, code) in [(e["field"], e["code"]) for e in errors], errors
    action = created(org.post("/actions", json={**body, "inputSchema": []}))
    errors = assert_seed_error(org.put(f"/actions/{action['id']}", json={"inputSchema": schema}), 400)
    assert (field, code) in [(e["field"], e["code"]) for e in errors], errors
    assert org.get(f"/actions/{action['id']}").json()["inputSchema"] == []
