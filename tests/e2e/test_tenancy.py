"""Authentication and tenant isolation, for every resource and every verb, over a real socket."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import UPDATES, created, seed_objects
from tests.support import Api, new_org

COLLECTIONS = ["/users", "/tools", "/actions", "/flows", "/execution-logs", "/api-keys", "/audit-events"]


@pytest.fixture(scope="module")
def two_orgs(server):
    a, b = new_org(server.url, "A"), new_org(server.url, "B")
    return a, b, seed_objects(a)


def _verbs(path: str, object_id: str) -> list[tuple[str, str, dict | None]]:
    verbs = [("GET", f"{path}/{object_id}", None), ("DELETE", f"{path}/{object_id}", None)]
    if path in UPDATES:
        verbs.append(("PUT", f"{path}/{object_id}", UPDATES[path]))
    return verbs


def test_another_tenant_gets_404_for_every_verb_and_nothing_changes(two_orgs) -> None:
    a, b, objects = two_orgs
    before = {path: a.get(f"{path}/{obj['id']}").json() for path, obj in objects.items()}
    checked = 0
    for path, obj in objects.items():
        for method, url, body in _verbs(path, obj["id"]):
            response = b.request(method, url, json=body)
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["statusCode"] == 404 and response.json()["error"] == "Not Found"
            assert obj["id"] in response.json()["message"]
            checked += 1
        assert all(item["id"] != obj["id"] for item in b.get(path).json()), path
    assert checked == 17
    after = {path: a.get(f"{path}/{obj['id']}").json() for path, obj in objects.items()}
    assert after == before


def test_organizations_of_others_are_invisible(two_orgs, admin) -> None:
    a, b, _ = two_orgs
    assert [o["id"] for o in b.get("/organizations").json()] == [b.org_id]
    for method, body in [("GET", None), ("PUT", {"name": "Hijacked"}), ("DELETE", None)]:
        assert b.request(method, f"/organizations/{a.org_id}", json=body).status_code == 404
    assert admin.get(f"/organizations/{a.org_id}").json()["name"] == "A"


def test_references_to_another_tenants_objects_are_refused(two_orgs) -> None:
    _a, b, objects = two_orgs
    response = b.post(
        "/actions", json={"name": "x", "toolId": objects["/tools"]["id"], "method": "GET", "endpoint": "/x"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "toolId"
    own_tool = created(b.post("/tools", json={"name": "Own", "baseUrl": "https://own.example.com"}))
    own_action = created(b.post("/actions", json={"name": "y", "toolId": own_tool["id"], "endpoint": "/y"}))
    moved = b.put(f"/actions/{own_action['id']}", json={"toolId": objects["/tools"]["id"]})
    assert moved.status_code == 400 and moved.json()["errors"][0]["code"] == "invalid_reference"
    log = b.post(
        "/execution-logs",
        json={"flowId": objects["/flows"]["id"], "executionId": "e", "stepKey": "s", "inputs": {}},
    )
    assert log.status_code == 400 and log.json()["errors"][0]["field"] == "flowId"
    own_flow = created(b.post("/flows", json={"name": "f"}))
    foreign_user = b.post(
        "/execution-logs",
        json={
            "flowId": own_flow["id"],
            "executionId": "e",
            "stepKey": "s",
            "inputs": {},
            "userId": objects["/users"]["id"],
        },
    )
    assert foreign_user.status_code == 400 and foreign_user.json()["errors"][0]["field"] == "userId"


@pytest.mark.parametrize("path", COLLECTIONS)
def test_no_key_or_a_bad_key_is_401(server, two_orgs, path) -> None:
    _, _, objects = two_orgs
    targets = [("GET", path)]
    if path in objects:
        targets += [("GET", f"{path}/{objects[path]['id']}"), ("DELETE", f"{path}/{objects[path]['id']}")]
    for credentials in (None, "tsk_not-a-real-key", "Basic Zm9vOmJhcg=="):
        api = Api(server.url, None) if credentials is None else Api(server.url, credentials)
        if credentials and credentials.startswith("Basic"):
            api.client.headers["Authorization"] = credentials
        for method, url in targets:
            response = api.request(method, url)
            assert response.status_code == 401, (credentials, method, url, response.text)
            assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize("path", [*COLLECTIONS, "/organizations"])
def test_wrong_x_org_id_is_403(server, two_orgs, path) -> None:
    a, b, _ = two_orgs
    wrong = Api(server.url, b.token, org_id=a.org_id)
    response = wrong.get(path)
    assert response.status_code == 403, response.text
    assert "X-Org-ID" in response.json()["message"]
    assert Api(server.url, b.token, org_id=b.org_id).get(path).status_code == 200


@pytest.mark.parametrize("path", COLLECTIONS)
def test_a_user_of_another_org_is_403(server, two_orgs, path) -> None:
    _, b, objects = two_orgs
    response = b.as_user(objects["/users"]["id"]).get(path)
    assert response.status_code == 403 and "X-User-ID" in response.json()["message"]


def test_the_admin_token_is_not_a_tenant_key(admin) -> None:
    response = admin.get("/tools")
    assert response.status_code == 401 and "admin token" in response.json()["message"]


def test_only_the_admin_creates_and_deletes_organizations(org, admin) -> None:
    assert org.post("/organizations", json={"name": "Mine"}).status_code == 403
    assert org.delete(f"/organizations/{org.org_id}").status_code == 403
    renamed = org.put(f"/organizations/{org.org_id}", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    deleted = admin.delete(f"/organizations/{org.org_id}")
    assert deleted.status_code == 200 and deleted.json()["id"] == org.org_id
    assert org.get("/tools").status_code == 401  # its keys went with it
    assert admin.get(f"/organizations/{org.org_id}").status_code == 404


def test_revoked_keys_stop_working_at_once(org, server) -> None:
    issued = created(org.post("/api-keys", json={"name": "temp"}))
    assert issued["key"].startswith("tsk_") and issued["prefix"] == issued["key"][:12]
    temp = Api(server.url, issued["key"])
    assert temp.get("/tools").status_code == 200
    listed = {k["id"]: k for k in org.get("/api-keys").json()}
    assert "key" not in listed[issued["id"]] and "keyHash" not in listed[issued["id"]]
    revoked = org.delete(f"/api-keys/{issued['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
    assert temp.get("/tools").status_code == 401
    assert org.get("/tools").status_code == 200  # the org's other key still works


def test_x_user_id_is_recorded_as_the_actor(org) -> None:
    user = created(org.post("/users", json={"email": "actor@example.com"}))
    as_user = org.as_user(user["id"])
    tool = created(as_user.post("/tools", json={"name": "Audited", "baseUrl": "https://a.example.com"}))
    assert as_user.put(f"/tools/{tool['id']}", json={"authType": "basic"}).status_code == 200
    assert as_user.delete(f"/tools/{tool['id']}").status_code == 200
    events = org.get("/audit-events", params={"resourceId": tool["id"]}).json()
    assert [e["action"] for e in events] == ["tool.deleted", "tool.updated", "tool.created"]
    assert {e["actorUserId"] for e in events} == {user["id"]}
    assert events[1]["details"] == {"fields": ["auth_type"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tools", {"name": 1}),
        ("PUT", "/tools/anything", {"authType": "magic"}),
        ("GET", "/tools?limit=abc", None),
        ("POST", "/api-keys", {"name": 1}),
        ("GET", "/audit-events?limit=0", None),
        ("POST", "/organizations", {"name": 1}),
        ("GET", "/organizations?offset=-1", None),
    ],
)
def test_authentication_comes_before_validation(server, method, path, body) -> None:
    """An anonymous caller learns nothing about the request shape: 401 first."""
    response = Api(server.url, None).request(method, path, json=body)
    assert response.status_code == 401, response.text
