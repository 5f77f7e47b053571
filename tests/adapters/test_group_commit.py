"""Group commit on PostgreSQL: the checkpoints of several executions that reach commit together
go as one statement, and each still gets its own answer (committed, lease lost, refused)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from adapters.clock import SystemClock
from adapters.persistence.engine import (
    ReadPool,
    asyncpg_dsn,
    create_engine,
    create_read_pool,
    create_write_pool,
)
from adapters.persistence.migrate import upgrade
from adapters.persistence.unit_of_work import SqlUnitOfWorkFactory
from application.ports import LeaseLost, Page
from domain.errors import AlreadyExists
from domain.events import OutboxEvent
from domain.execution import Execution
from domain.flow import Flow
from domain.ids import new_id
from domain.organization import Organization

pytestmark = pytest.mark.postgres
clock = SystemClock()
OWNER = "worker-1"


@pytest.fixture(scope="module")
async def factory(postgres_url: str) -> AsyncIterator[SqlUnitOfWorkFactory]:
    upgrade(postgres_url)
    engine = create_engine(postgres_url)
    read_pool, write_pool = create_read_pool(postgres_url, 4), create_write_pool(postgres_url, 4)
    yield SqlUnitOfWorkFactory(engine, None, read_pool, write_pool)
    for pool in (read_pool, write_pool):
        assert pool is not None
        await pool.close()
    await engine.dispose()


async def _executions(factory: SqlUnitOfWorkFactory, count: int) -> tuple[str, list[str]]:
    """An organization with ``count`` running executions, leased to OWNER."""
    now = clock.now()
    org = Organization.build(id=new_id("org"), now=now, name="Group commit")
    flow = Flow.build(
        id=new_id("flow"), now=now, org_id=org.id, name="f", description=None,
        steps=[{"id": "a", "type": "delay", "config": {"ms": 5}}], settings={},
    )  # fmt: skip
    ids = []
    async with factory() as uow:
        await uow.organizations.add(org)
        await uow.flows.add(flow)
        for _ in range(count):
            execution = Execution(
                id=new_id("exec"), org_id=org.id, flow_id=flow.id, flow_version=1, user_id=None,
                status="running", variables={}, created_at=now, updated_at=now,
            )  # fmt: skip
            await uow.executions.add(execution)
            assert (
                await uow.executions.claim(execution.id, OWNER, now + timedelta(minutes=5), now) is not None
            )
            ids.append(execution.id)
        await uow.commit()
    return org.id, ids


def _event(org_id: str, execution_id: str, event_id: str | None = None) -> OutboxEvent:
    return OutboxEvent(
        id=event_id or new_id("evt"),
        org_id=org_id,
        type="step.completed",
        payload={"executionId": execution_id},
        created_at=clock.now(),
    )


async def _checkpoint(
    factory: SqlUnitOfWorkFactory,
    org_id: str,
    execution_id: str,
    owner: str = OWNER,
    event_id: str | None = None,
) -> None:
    """What the engine commits after a step: fenced writes, nothing read."""
    async with factory(batched=True) as uow:
        await uow.executions.fence(execution_id, owner)
        await uow.outbox.add(_event(org_id, execution_id, event_id))
        await uow.outbox.add(_event(org_id, execution_id))
        await uow.commit()


async def _written(factory: SqlUnitOfWorkFactory, org_id: str) -> dict[str, int]:
    """Events written per execution."""
    async with factory(read_only=True) as uow:
        events = await uow.outbox.list(org_id, Page(limit=500))
    counts: dict[str, int] = {}
    for event in events:
        counts[event.payload["executionId"]] = counts.get(event.payload["executionId"], 0) + 1
    return counts


async def _transactions(postgres_url: str, org_id: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        return await conn.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM outbox_events WHERE org_id = $1", org_id
        )
    finally:
        await conn.close()


async def test_checkpoints_that_meet_at_commit_go_as_one_statement(factory, postgres_url) -> None:
    org_id, ids = await _executions(factory, 8)
    group = factory.group
    assert group is not None
    sent, grouped = group.sent, group.grouped
    await asyncio.gather(*(_checkpoint(factory, org_id, i) for i in ids))
    # All eight reached commit before the first statement left: one statement, one transaction.
    assert (group.sent - sent, group.grouped - grouped) == (1, 8)
    assert await _written(factory, org_id) == {i: 2 for i in ids}
    assert await _transactions(postgres_url, org_id) == 1


async def test_a_lone_checkpoint_goes_at_once_alone(factory, postgres_url) -> None:
    org_id, ids = await _executions(factory, 3)
    group = factory.group
    assert group is not None
    sent = group.sent
    for execution_id in ids:  # one after the other: each its own statement, its own transaction
        await _checkpoint(factory, org_id, execution_id)
    assert group.sent - sent == 3
    assert await _transactions(postgres_url, org_id) == 3


async def test_a_lost_lease_fails_only_its_own_checkpoint(factory) -> None:
    org_id, ids = await _executions(factory, 4)
    results = await asyncio.gather(
        *(
            _checkpoint(factory, org_id, i, owner="somebody-else" if n == 2 else OWNER)
            for n, i in enumerate(ids)
        ),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None), type(None), LeaseLost, type(None)]
    assert await _written(factory, org_id) == {ids[0]: 2, ids[1]: 2, ids[3]: 2}


async def test_a_refused_write_fails_only_its_own_checkpoint(factory) -> None:
    org_id, ids = await _executions(factory, 4)
    taken = new_id("evt")
    async with factory() as uow:
        await uow.outbox.add(_event(org_id, "exec_elsewhere", taken))
        await uow.commit()
    results = await asyncio.gather(
        *(_checkpoint(factory, org_id, i, event_id=taken if n == 1 else None) for n, i in enumerate(ids)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None), AlreadyExists, type(None), type(None)]
    assert await _written(factory, org_id) == {"exec_elsewhere": 1, ids[0]: 2, ids[2]: 2, ids[3]: 2}


async def test_a_checkpoint_cancelled_before_it_is_sent_is_not_written(factory) -> None:
    org_id, ids = await _executions(factory, 2)
    group = factory.group
    assert group is not None
    first = asyncio.create_task(_checkpoint(factory, org_id, ids[0]))
    for _ in range(100):  # until the first one's statement is on its way
        await asyncio.sleep(0)
        if group._flying and not group._waiting:
            break
    second = asyncio.create_task(_checkpoint(factory, org_id, ids[1]))
    for _ in range(100):
        await asyncio.sleep(0)
        if group._waiting:
            break
    assert not first.done() and len(group._waiting) == 1  # the second waits for the next statement
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await _written(factory, org_id) == {ids[0]: 2}


async def test_a_database_out_of_reach_fails_every_checkpoint_of_the_flight(factory) -> None:
    org_id, ids = await _executions(factory, 3)
    # A write pool on a port nobody listens on: the flight cannot get a connection.
    unreachable = ReadPool("postgresql://postgres@127.0.0.1:9/none", 2)
    broken = SqlUnitOfWorkFactory(factory.engine, None, factory.read_pool, unreachable)
    results = await asyncio.gather(*(_checkpoint(broken, org_id, i) for i in ids), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results), results
    assert await _written(factory, org_id) == {}
    await _checkpoint(factory, org_id, ids[0])  # the real pool's group is not affected
    assert await _written(factory, org_id) == {ids[0]: 2}
