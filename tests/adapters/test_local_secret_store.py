"""The local secret store on SQLite and PostgreSQL: encrypted at rest, bound to tenant and tool."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from adapters.clock import SystemClock
from adapters.persistence.engine import create_engine
from adapters.persistence.migrate import upgrade
from adapters.persistence.tables import secret_values
from adapters.secrets.keyring import Keyring, KeyringError, new_key
from adapters.secrets.local import LocalSecretStore
from domain.ids import new_id
from domain.organization import Organization
from domain.tool import Tool
from tests.support import throwaway_postgres_database

SECRET = "sk-live-0123456789abcdef"


KEYRING = Keyring(new_key())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A database for this module alone: rotation touches every row of the table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('secrets') / 'secrets.db'}"
        upgrade(url)
        yield url
    else:
        with throwaway_postgres_database("tolstoy_secrets") as url:
            upgrade(url)
            yield url


@pytest.fixture(scope="module")
async def engine(own_database: str):
    engine = create_engine(own_database)
    yield engine
    await engine.dispose()


async def _tool(uow_factory) -> Tool:
    now = SystemClock().now()
    org = Organization.build(id=new_id("org"), now=now, name="Acme")
    tool = Tool.build(
        id=new_id("tool"), now=now, org_id=org.id, name="T", key="t", base_url="https://t.io", auth_type="bearer",
        options=None,
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.organizations.add(org)
        await uow.tools.add(tool)
        await uow.commit()
    return tool


@pytest.fixture
def sql_uow(engine):
    from adapters.persistence.unit_of_work import SqlUnitOfWorkFactory

    return SqlUnitOfWorkFactory(engine)


async def test_put_get_replace_delete(engine, sql_uow) -> None:
    tool = await _tool(sql_uow)
    store = LocalSecretStore(engine, KEYRING)
    assert await store.get(tool.org_id, tool.id) is None
    await store.put(tool.org_id, tool.id, {"api_key": SECRET})
    assert await store.get(tool.org_id, tool.id) == {"api_key": SECRET}
    await store.put(tool.org_id, tool.id, {"token": "another-value-123"})
    assert await store.get(tool.org_id, tool.id) == {"token": "another-value-123"}
    async with engine.connect() as conn:
        stored = (await conn.execute(select(secret_values.c.ciphertext))).scalars().all()
    assert stored and all(SECRET not in text and "another-value" not in text for text in stored)
    await store.delete(tool.org_id, tool.id)
    assert await store.get(tool.org_id, tool.id) is None


async def test_a_ciphertext_moved_to_another_tool_does_not_open(engine, sql_uow) -> None:
    a, b = await _tool(sql_uow), await _tool(sql_uow)
    store = LocalSecretStore(engine, KEYRING)
    await store.put(a.org_id, a.id, {"api_key": SECRET})
    await store.put(b.org_id, b.id, {"api_key": "b-value-12345678"})
    async with engine.begin() as conn:
        stolen = (
            await conn.execute(select(secret_values.c.ciphertext).where(secret_values.c.tool_id == a.id))
        ).scalar_one()
        await conn.execute(
            update(secret_values).where(secret_values.c.tool_id == b.id).values(ciphertext=stolen)
        )
    with pytest.raises(KeyringError):
        await store.get(b.org_id, b.id)
    await store.delete(b.org_id, b.id)  # leave no undecryptable row for the rotation test


async def test_rotation_re_encrypts_everything_and_old_keys_can_go(engine, sql_uow) -> None:
    tools = [await _tool(sql_uow) for _ in range(3)]
    old = KEYRING
    store = LocalSecretStore(engine, old)
    for i, tool in enumerate(tools):
        await store.put(tool.org_id, tool.id, {"api_key": f"{SECRET}-{i}"})
    rotated = old.rotated()
    assert await LocalSecretStore(engine, rotated).rotate(rotated, batch=2) >= 3
    fresh = LocalSecretStore(engine, Keyring(rotated.current))  # the old key is gone
    for i, tool in enumerate(tools):
        assert await fresh.get(tool.org_id, tool.id) == {"api_key": f"{SECRET}-{i}"}
    assert await LocalSecretStore(engine, rotated).rotate(rotated) == 0  # nothing left to do


async def test_deleting_the_tool_deletes_its_secret(engine, sql_uow) -> None:
    tool = await _tool(sql_uow)
    store = LocalSecretStore(engine, KEYRING)
    await store.put(tool.org_id, tool.id, {"api_key": SECRET})
    async with sql_uow() as uow:
        await uow.tools.delete(tool.org_id, tool.id)
        await uow.commit()
    assert await store.get(tool.org_id, tool.id) is None
