"""One contract, every secret store: the local AES-GCM store and AWS Secrets Manager (on a moto
server started here on 127.0.0.1, reached over HTTP like the real service)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from adapters.persistence.engine import create_engine
from adapters.persistence.migrate import upgrade
from adapters.secrets.aws import AwsSecretStore, secret_name
from adapters.secrets.keyring import Keyring, new_key
from adapters.secrets.local import LocalSecretStore
from domain.errors import UpstreamUnreachable
from domain.ids import new_id
from tests.support import _run, free_port

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSecretStore]:
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'secrets.db'}"
    upgrade(url)
    engine = create_engine(url)
    yield LocalSecretStore(engine, Keyring(new_key()))
    _run(engine.dispose())


@pytest.fixture(params=["local", "aws"])
def store(request: pytest.FixtureRequest, moto_url: str):
    if request.param == "local":
        return request.getfixturevalue("local_store")
    return AwsSecretStore("eu-west-1", moto_url, max_attempts=2, timeout_seconds=2)


async def _tool_of_new_org(store) -> tuple[str, str]:
    """An (org, tool) pair that exists where the store needs it to (the local store keys rows by tool)."""
    org_id, tool_id = new_id("org"), new_id("tool")
    if isinstance(store, LocalSecretStore):
        async with store._engine.begin() as conn:  # the local store's rows reference tools
            now = "2030-01-01 00:00:00"
            await conn.exec_driver_sql(
                "INSERT INTO organizations (id, name, created_at, updated_at) VALUES (?, 'o', ?, ?)",
                (org_id, now, now),
            )
            await conn.exec_driver_sql(
                "INSERT INTO tools (id, org_id, name, key, base_url, auth_type, options, created_at, updated_at) "
                "VALUES (?, ?, 't', ?, 'https://t.io', 'none', '{}', ?, ?)",
                (tool_id, org_id, tool_id, now, now),
            )
    return org_id, tool_id


async def test_put_get_replace_delete(store) -> None:
    org, tool = await _tool_of_new_org(store)
    assert await store.get(org, tool) is None
    await store.put(org, tool, {"api_key": "sk-1234567890abcdef", "region": "eu"})
    assert await store.get(org, tool) == {"api_key": "sk-1234567890abcdef", "region": "eu"}
    await store.put(org, tool, {"token": "replaced-1234567890"})
    assert await store.get(org, tool) == {"token": "replaced-1234567890"}
    await store.delete(org, tool)
    assert await store.get(org, tool) is None
    await store.delete(org, tool)  # deleting what is not there is fine


async def test_tenants_and_tools_are_separate(store) -> None:
    a, b = await _tool_of_new_org(store), await _tool_of_new_org(store)
    await store.put(*a, {"api_key": "a-value-1234567890"})
    await store.put(*b, {"api_key": "b-value-1234567890"})
    assert await store.get(*a) == {"api_key": "a-value-1234567890"}
    assert await store.get(a[0], b[1]) is None  # org A asking for org B's tool finds nothing
    assert await store.get(*b) == {"api_key": "b-value-1234567890"}


async def test_values_are_copied_not_shared(store) -> None:
    org, tool = await _tool_of_new_org(store)
    values = {"api_key": "sk-1234567890abcdef"}
    await store.put(org, tool, values)
    values["api_key"] = "mutated"
    got = await store.get(org, tool)
    got["api_key"] = "mutated again"
    assert await store.get(org, tool) == {"api_key": "sk-1234567890abcdef"}


# --- AWS specifics ---------------------------------------------------------------------------------


def test_secrets_are_named_per_org_and_tool_in_aws(moto_url: str) -> None:
    store = AwsSecretStore("eu-west-1", moto_url)
    _run(store.put("org_1", "tool_1", {"api_key": "sk-1234567890abcdef"}))
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    answer = client.get_secret_value(SecretId="tolstoy/org_1/tool_1")
    assert answer["SecretString"] == '{"api_key":"sk-1234567890abcdef"}'
    assert secret_name("o", "t") == "tolstoy/o/t"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_serves_reads_and_stale_values_when_aws_fails(moto_url: str) -> None:
    clock = Clock()
    store = AwsSecretStore("eu-west-1", moto_url, clock=clock, max_attempts=1)
    _run(store.put("org_c", "tool_c", {"api_key": "cached-1234567890"}))
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    client.put_secret_value(SecretId="tolstoy/org_c/tool_c", SecretString='{"api_key":"changed-1234567890"}')
    assert _run(store.get("org_c", "tool_c")) == {"api_key": "cached-1234567890"}  # within 5 minutes
    clock.now += 301
    assert _run(store.get("org_c", "tool_c")) == {"api_key": "changed-1234567890"}  # refreshed after
    # AWS becomes unreachable: the last value read is served, stale, instead of failing
    store._client = boto3.client(
        "secretsmanager", region_name="eu-west-1", endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=__import__("botocore.config").config.Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=1),
    )  # fmt: skip
    clock.now += 301
    assert _run(store.get("org_c", "tool_c")) == {"api_key": "changed-1234567890"}
    with pytest.raises(UpstreamUnreachable):  # nothing cached: a clear 502, not a hang
        _run(store.get("org_c", "never-read"))


def test_the_rest_api_can_run_on_aws(moto_url: str, tmp_path: Path) -> None:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app
    from tests.conftest import make_settings
    from tests.e2e.helpers import created
    from tests.support import LiveServer, new_org

    settings = make_settings(
        f"sqlite:///{tmp_path / 'aws.db'}", tmp_path, TOLSTOY_AUTO_MIGRATE="true",
        SECRETS_BACKEND="aws", AWS_REGION="eu-west-1", AWS_ENDPOINT_URL=moto_url,
    )  # fmt: skip
    with LiveServer(create_app(build_container(settings))) as live:
        api = new_org(live.url)
        tool = created(api.post("/tools", json={"name": "On AWS", "baseUrl": "https://a.example.com"}))
        stored = api.post(
            f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": "sk-aws-1234567890"}}
        )
        assert stored.status_code == 201 and stored.json()["maskedCredentials"] == {
            "api_key": "sk-aw***********7890"
        }
        client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
        name = f"tolstoy/{api.org_id}/{tool['id']}"
        assert "sk-aws-1234567890" in client.get_secret_value(SecretId=name)["SecretString"]
        assert api.delete(f"/tools/{tool['id']}").status_code == 200  # deleting the tool deletes the secret
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_secret_value(SecretId=name)
    assert not (tmp_path / "encryption-keys.json").exists()  # the local keyring was never needed
