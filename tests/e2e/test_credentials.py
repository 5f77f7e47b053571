"""Tool credentials over HTTP: the seed's paths, masking, audited unmasking, tenant isolation."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.e2e.helpers import created
from tests.support import LiveServer, new_org

API_KEY = "sk-1234567890abcdef"
CLIENT_SECRET = "cs-abcdef1234567890"


@pytest.fixture
def tool(org) -> dict:
    return created(
        org.post(
            "/tools", json={"name": "Slack API", "baseUrl": "https://api.slack.com", "authType": "bearer"}
        )
    )


def test_the_seed_credential_flow(org, tool) -> None:
    stored = org.post(
        f"/tools/{tool['id']}/secrets",
        json={"credentials": {"api_key": API_KEY, "client_secret": CLIENT_SECRET}},
    )
    assert stored.status_code == 201, stored.text
    body = stored.json()
    assert body["toolId"] == tool["id"] and body["toolName"] == "Slack API"
    # exactly the seed's example masks
    assert body["maskedCredentials"] == {
        "api_key": "sk-12***********cdef",
        "client_secret": "cs-ab***********7890",
    }
    assert API_KEY not in stored.text and CLIENT_SECRET not in stored.text

    masked = org.get(f"/tools/{tool['id']}/secrets")
    assert masked.json()["maskedCredentials"] == body["maskedCredentials"] and API_KEY not in masked.text

    listing = {t["toolId"]: t for t in org.get("/tools/secrets").json()}
    assert listing[tool["id"]] == {
        "toolId": tool["id"], "toolName": "Slack API", "baseUrl": "https://api.slack.com", "authType": "bearer",
        "hasCredentials": True, "credentialKeys": ["api_key", "client_secret"],
    }  # fmt: skip
    bare = created(org.post("/tools", json={"name": "GitHub API", "baseUrl": "https://api.github.com"}))
    assert org.get("/tools/secrets").json()[0] == {
        "toolId": bare["id"], "toolName": "GitHub API", "baseUrl": "https://api.github.com", "authType": "none",
        "hasCredentials": False,
    }  # fmt: skip

    unmasked = org.get(f"/tools/{tool['id']}/secrets", params={"unmask": "true"})
    assert unmasked.json()["credentials"] == {"api_key": API_KEY, "client_secret": CLIENT_SECRET}

    deleted = org.delete(f"/tools/{tool['id']}/secrets")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert org.get(f"/tools/{tool['id']}/secrets").status_code == 404
    assert org.delete(f"/tools/{tool['id']}/secrets").status_code == 404


def test_unmasking_is_audited_with_who_when_and_which_tool(org, tool) -> None:
    user = created(org.post("/users", json={"email": "auditor@example.com"}))
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": API_KEY}})
    org.as_user(user["id"]).get(f"/tools/{tool['id']}/secrets", params={"unmask": "true"})
    events = org.get("/audit-events", params={"action": "credentials.unmasked"}).json()
    assert len(events) == 1
    assert (events[0]["actorUserId"], events[0]["resourceId"]) == (user["id"], tool["id"])
    assert events[0]["createdAt"] and events[0]["details"] == {"keys": ["api_key"]}
    assert API_KEY not in str(org.get("/audit-events").json())


def test_replacing_credentials_and_short_values(org, tool) -> None:
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": API_KEY}})
    replaced = org.post(
        f"/tools/{tool['id']}/secrets", json={"credentials": {"token": "ghp_abcdefgh12345678"}}
    )
    assert replaced.json()["maskedCredentials"] == {"token": "ghp_a***********5678"}
    assert org.get("/tools/secrets").json()[0]["credentialKeys"] == ["token"]
    short = org.post(
        f"/tools/{tool['id']}/secrets", json={"credentials": {"password": "hunter2", "username": "bob"}}
    )
    assert short.status_code == 400
    assert [(e["field"], e["code"]) for e in short.json()["errors"]] == [
        ("credentials.password", "too_small")
    ]
    assert "hunter2" not in short.text
    medium = org.post(
        f"/tools/{tool['id']}/secrets", json={"credentials": {"password": "hunter22", "username": "bob"}}
    )
    assert medium.json()["maskedCredentials"] == {"password": "********", "username": "********"}
    for bad in ({}, {"credentials": {}}, {"credentials": {"k": 1}}, {"credentials": []}):
        assert org.post(f"/tools/{tool['id']}/secrets", json=bad).status_code == 400


def test_another_tenant_can_neither_read_list_unmask_nor_delete(org, tool, server) -> None:
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": API_KEY}})
    other = new_org(server.url, "Other")
    for method, params in [("GET", {}), ("GET", {"unmask": "true"}), ("DELETE", {}), ("POST", {})]:
        body = {"credentials": {"api_key": "attacker-value-123"}} if method == "POST" else None
        response = other.request(method, f"/tools/{tool['id']}/secrets", params=params, json=body)
        assert response.status_code == 404, (method, params, response.text)
        assert API_KEY not in response.text
    assert tool["id"] not in [t["toolId"] for t in other.get("/tools/secrets").json()]
    assert org.get(f"/tools/{tool['id']}/secrets", params={"unmask": "true"}).json()["credentials"] == {
        "api_key": API_KEY
    }


def test_deleting_a_tool_deletes_its_credentials(org, tool) -> None:
    org.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": API_KEY}})
    assert org.delete(f"/tools/{tool['id']}").status_code == 200
    assert org.get(f"/tools/{tool['id']}/secrets").status_code == 404


def test_unmasking_can_be_turned_off(tmp_path: Path) -> None:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    settings = make_settings(
        f"sqlite:///{tmp_path / 'u.db'}", tmp_path, TOLSTOY_AUTO_MIGRATE="true", TOLSTOY_ALLOW_UNMASK="false"
    )
    with LiveServer(create_app(build_container(settings))) as live:
        api = new_org(live.url)
        tool = created(api.post("/tools", json={"name": "T", "baseUrl": "https://t.example.com"}))
        api.post(f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": API_KEY}})
        refused = api.get(f"/tools/{tool['id']}/secrets", params={"unmask": "true"})
        assert refused.status_code == 403 and API_KEY not in refused.text
        assert api.get(f"/tools/{tool['id']}/secrets").status_code == 200


def test_no_secret_value_reaches_any_log(tmp_path: Path, caplog: pytest.LogCaptureFixture, upstream) -> None:
    """Everything logged while credentials are stored, listed, read, unmasked, refused, used by
    actions (answered, echoed back, failing, timing out, missing) and deleted, at DEBUG and above,
    from every logger (server included), holds none of the values."""
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    secrets = [API_KEY, CLIENT_SECRET, "short77", "ghp_abcdefgh12345678"]
    settings = make_settings(
        f"sqlite:///{tmp_path / 'l.db'}", tmp_path, TOLSTOY_AUTO_MIGRATE="true", LOG_LEVEL="debug"
    )
    caplog.set_level(logging.DEBUG)
    with LiveServer(create_app(build_container(settings))) as live:
        api = new_org(live.url)
        tool = created(api.post("/tools", json={"name": "T", "baseUrl": "https://t.example.com"}))
        url = f"/tools/{tool['id']}/secrets"
        api.post(url, json={"credentials": {"api_key": API_KEY, "client_secret": CLIENT_SECRET}})
        api.post(url, json={"credentials": {"secret": "short77"}})  # refused: too short
        api.post(url, json={"credentials": {"token": "ghp_abcdefgh12345678"}})
        api.get("/tools/secrets")
        api.get(url)
        api.get(url, params={"unmask": "true"})
        httpx.get(f"{live.url}{url}", headers={"Authorization": f"Bearer {API_KEY}"})  # a secret as a bad key
        # the credentials in use: an upstream that answers, echoes them, fails, and stalls
        bearer = created(api.post("/tools", json={"name": "B", "baseUrl": upstream, "authType": "bearer"}))
        api.post(f"/tools/{bearer['id']}/secrets", json={"credentials": {"token": "ghp_abcdefgh12345678"}})
        for endpoint in ("/ok", "/echo-auth", "/fail", "/slow"):
            action = created(
                api.post(
                    "/actions", json={"name": f"A{endpoint}", "toolId": bearer["id"], "endpoint": endpoint}
                )
            )
            api.post(f"/actions/{action['id']}/execute", json={"inputs": {"note": API_KEY}})
        templated = created(
            api.post(
                "/actions",
                json={
                    "name": "T",
                    "toolId": tool["id"],
                    "endpoint": "/x",
                    "headers": {"X-K": "{{secrets.missing}}"},
                },
            )
        )
        api.post(f"/actions/{templated['id']}/execute", json={})  # a template naming a missing secret
        api.delete(url)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for value in secrets:
        assert value not in logged
