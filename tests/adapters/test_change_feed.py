"""Change notices between processes on PostgreSQL: two containers on one database, each with the
feed `tolstoy serve` starts, stand for two instances of a deployment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from adapters.persistence.engine import asyncpg_dsn
from adapters.persistence.migrate import upgrade
from application.ports import Change
from application.tenancy import TenantContext
from domain.errors import Unauthenticated
from entrypoints.container import Container, build_container, close_container, start_change_feed
from tests.application.helpers import ADMIN
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres

STEPS = [{"id": "a", "name": "A", "type": "data_transform", "config": {"script": "return 1"}}]
WAIT_SECONDS = 10.0


async def eventually(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def database(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
async def instances(database: str, tmp_path: Path) -> AsyncIterator[tuple[Container, Container]]:
    made = []
    for name in ("a", "b"):
        # API keys stay resolved for a minute: only a notice can withdraw one within the tests' waits
        settings = make_settings(database, tmp_path / name, TOLSTOY_AUTH_CACHE_SECONDS=60)
        container = build_container(settings)
        await start_change_feed(container)
        made.append(container)
    try:
        for container in made:
            await eventually(lambda c=container: c.read_cache().live, "the feed listens")
        yield made[0], made[1]
    finally:
        for container in made:
            await close_container(container)


async def new_flow(container: Container):
    org, issued = await container.organizations().create(ADMIN, name="Acme")
    ctx = TenantContext(org.id)
    return ctx, await container.flows().create(ctx, name="Greet", steps=STEPS), issued.plaintext


async def test_a_change_made_by_one_instance_reaches_the_others_copies(instances) -> None:
    a, b = instances
    ctx, flow, _ = await new_flow(a)
    assert (await b.flows().get(ctx, flow.id)).version == 1
    hits = b.read_cache().hits
    assert (await b.flows().get(ctx, flow.id)).version == 1 and b.read_cache().hits == hits + 1  # a copy
    await a.flows().update(ctx, flow.id, steps=[{**STEPS[0], "name": "A2"}])
    await eventually(lambda: len(b.read_cache()) == 0, "b drops its copy")
    assert (await b.flows().get(ctx, flow.id)).version == 2
    await a.flows().delete(ctx, flow.id)
    await eventually(lambda: len(b.read_cache()) == 0, "b drops its copy of the deleted flow")


async def test_a_rolled_back_change_is_never_announced(instances) -> None:
    a, b = instances
    ctx, flow, _ = await new_flow(a)
    _, other, _ = await new_flow(a)
    await b.flows().get(ctx, flow.id)
    async with a.uow_factory()() as uow:
        await uow.changes.publish(Change("flow", ctx.org_id, flow.id))
        await uow.rollback()
    # Notices arrive in commit order: once a later one is heard, the rolled-back one never will be.
    async with a.uow_factory()() as uow:
        await uow.changes.publish(Change("flow", "org_barrier", other.id))
        await uow.commit()
    before = b.read_cache().hits
    await eventually(lambda: b.read_cache()._generation >= 2, "b hears the later notice")
    await b.flows().get(ctx, flow.id)
    assert b.read_cache().hits == before + 1


async def test_while_the_feed_is_down_nothing_is_served_from_copies(instances, database: str) -> None:
    a, b = instances
    ctx, flow, _ = await new_flow(a)
    await b.flows().get(ctx, flow.id)
    feed = b.change_feed()
    pid = feed._conn.get_server_pid()
    conn = await asyncpg.connect(asyncpg_dsn(database))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await eventually(lambda: not b.read_cache().live, "b notices its feed is gone")
    assert len(b.read_cache()) == 0 and b.read_cache().token() is None
    await a.flows().update(ctx, flow.id, description="changed while b was deaf")
    assert (await b.flows().get(ctx, flow.id)).description == "changed while b was deaf"
    await eventually(lambda: b.read_cache().live, "b's feed comes back")
    assert feed._conn.get_server_pid() != pid
    await b.flows().get(ctx, flow.id)
    await a.flows().update(ctx, flow.id, description="and again")
    await eventually(lambda: len(b.read_cache()) == 0, "b hears changes again")
    assert (await b.flows().get(ctx, flow.id)).description == "and again"


async def test_deleting_an_organization_withdraws_its_keys_in_every_instance(instances) -> None:
    a, b = instances
    org, issued = await a.organizations().create(ADMIN, name="Gone soon")
    bearer = f"Bearer {issued.plaintext}"
    assert (await b.authenticator().tenant(bearer, None, None)).org_id == org.id  # b resolves it once
    await a.organizations().delete(ADMIN, org.id)

    async def refused() -> bool:
        try:
            await b.authenticator().tenant(bearer, None, None)
        except Unauthenticated:
            return True
        return False

    deadline = time.monotonic() + WAIT_SECONDS
    while not await refused():  # well before the key cache's own expiry (60 s)
        assert time.monotonic() < deadline, "b still accepts the deleted organization's key"
        await asyncio.sleep(0.01)


async def test_a_malformed_notice_drops_every_copy(instances, database: str) -> None:
    a, b = instances
    ctx, flow, _ = await new_flow(a)
    await b.flows().get(ctx, flow.id)
    conn = await asyncpg.connect(asyncpg_dsn(database))
    try:
        await conn.execute("SELECT pg_notify('tolstoy_changes', 'not json')")
    finally:
        await conn.close()
    await eventually(lambda: len(b.read_cache()) == 0, "b drops its copies")
    assert b.read_cache().live
