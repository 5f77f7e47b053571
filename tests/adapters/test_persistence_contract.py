"""The persistence contract. One body per test, run against SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from adapters.clock import SystemClock
from application.ports import Page
from domain.audit import AuditEvent
from domain.errors import Conflict, InvalidReference
from domain.execution_log import ExecutionLog
from domain.flow import Flow
from domain.ids import new_id
from domain.organization import ApiKey, Organization, User
from domain.tool import Action, Tool

clock = SystemClock()


def _org() -> Organization:
    return Organization.build(id=new_id("org"), now=clock.now(), name="Acme")


def _tool(org_id: str, key: str = "slack", **kw) -> Tool:
    return Tool.build(
        id=new_id("tool"),
        now=clock.now(),
        org_id=org_id,
        name=kw.get("name", "Slack"),
        key=key,
        base_url="https://api.slack.com",
        auth_type="bearer",
        options=kw.get("options", {"retries": 3, "nested": {"list": [1, "two", None, True]}}),
    )


def _action(org_id: str, tool_id: str, key: str = "post-message") -> Action:
    return Action.build(
        id=new_id("act"),
        now=clock.now(),
        org_id=org_id,
        tool_id=tool_id,
        name="Post message",
        key=key,
        method="POST",
        endpoint="/chat.postMessage",
        headers={"Authorization": "Bearer {{secrets.token}}"},
        input_schema=[{"name": "text", "type": "string", "required": True}],
    )


def _flow(org_id: str) -> Flow:
    return Flow.build(
        id=new_id("flow"),
        now=clock.now(),
        org_id=org_id,
        name="Nightly sync",
        description="Ünïcødé ✓",
        steps=[{"id": "a", "type": "delay", "config": {"ms": 5}}],
        settings={"execution": {"concurrency": 2}},
    )


def _user(org_id: str, email: str = "ann@example.com") -> User:
    return User.build(id=new_id("usr"), now=clock.now(), org_id=org_id, email=email, name="Ann")


async def _new_org(uow_factory) -> Organization:
    org = _org()
    async with uow_factory() as uow:
        await uow.organizations.add(org)
        await uow.commit()
    return org


async def test_round_trip_of_every_entity(uow_factory) -> None:
    org = await _new_org(uow_factory)
    tool = _tool(org.id)
    action = _action(org.id, tool.id)
    flow = _flow(org.id)
    user = _user(org.id)
    key = ApiKey.build(
        id=new_id("key"),
        now=clock.now(),
        org_id=org.id,
        name="ci",
        prefix="tsk_abcdefgh",
        key_hash=new_id("h"),
    )
    log = ExecutionLog.build(
        id=new_id("log"),
        now=clock.now(),
        org_id=org.id,
        user_id=user.id,
        flow_id=flow.id,
        execution_id="exec_1_abc",
        step_key="a",
        status="started",
        inputs={"variables": {"x": 1.5}},
        outputs=None,
        error=None,
    )
    event = AuditEvent(
        id=new_id("aud"),
        org_id=org.id,
        action="tool.created",
        resource_type="tool",
        resource_id=tool.id,
        actor_user_id=user.id,
        api_key_id=key.id,
        details={"fields": ["name"]},
        created_at=clock.now(),
    )
    async with uow_factory() as uow:
        await uow.tools.add(tool)
        await uow.actions.add(action)
        await uow.flows.add(flow)
        await uow.users.add(user)
        await uow.api_keys.add(key)
        await uow.execution_logs.add(log)
        await uow.audit.add(event)
        await uow.commit()

    async with uow_factory(read_only=True) as uow:
        assert await uow.organizations.get(org.id) == org
        assert await uow.tools.get(org.id, tool.id) == tool
        assert await uow.actions.get(org.id, action.id) == action
        assert await uow.flows.get(org.id, flow.id) == flow
        assert await uow.users.get(org.id, user.id) == user
        assert await uow.api_keys.get(org.id, key.id) == key
        assert await uow.execution_logs.get(org.id, log.id) == log
        assert await uow.audit.get(org.id, event.id) == event
    loaded = tool.created_at
    assert loaded.tzinfo is not None and loaded.utcoffset() == timedelta(0)


async def test_every_method_is_scoped_by_organization(uow_factory) -> None:
    a, b = await _new_org(uow_factory), await _new_org(uow_factory)
    tool = _tool(a.id)
    async with uow_factory() as uow:
        await uow.tools.add(tool)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.tools.get(b.id, tool.id) is None
        assert await uow.tools.list(b.id, Page()) == []
        assert await uow.tools.delete(b.id, tool.id) is False
        # an update carrying another org id touches nothing
        await uow.tools.update(dataclasses.replace(tool, org_id=b.id, name="stolen"))
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.tools.get(a.id, tool.id) == tool


async def test_changes_are_kept_only_on_commit(uow_factory) -> None:
    org = await _new_org(uow_factory)
    tool = _tool(org.id)
    async with uow_factory() as uow:
        await uow.tools.add(tool)  # no commit
    async with uow_factory() as uow:
        await uow.tools.add(tool)
        await uow.rollback()
    with pytest.raises(RuntimeError):
        async with uow_factory() as uow:
            await uow.tools.add(tool)
            raise RuntimeError("boom")
    async with uow_factory(read_only=True) as uow:
        assert await uow.tools.get(org.id, tool.id) is None


async def test_update_and_delete(uow_factory) -> None:
    org = await _new_org(uow_factory)
    flow = _flow(org.id)
    async with uow_factory() as uow:
        await uow.flows.add(flow)
        await uow.commit()
    later = flow.changed(now=clock.now() + timedelta(seconds=1), steps=[], name="Renamed")
    assert later.version == 2
    async with uow_factory() as uow:
        await uow.flows.update(later)
        await uow.commit()
    async with uow_factory() as uow:
        stored = await uow.flows.get(org.id, flow.id)
        assert stored == later and stored.created_at == flow.created_at
        assert await uow.flows.delete(org.id, flow.id) is True
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.flows.get(org.id, flow.id) is None


async def test_unique_keys_per_organization(uow_factory) -> None:
    a, b = await _new_org(uow_factory), await _new_org(uow_factory)
    async with uow_factory() as uow:
        await uow.tools.add(_tool(a.id, "github"))
        await uow.tools.add(_tool(b.id, "github"))  # same key, other org: fine
        await uow.commit()
    with pytest.raises(Conflict) as caught:
        async with uow_factory() as uow:
            await uow.tools.add(_tool(a.id, "github"))
    assert [(e.field, e.code) for e in caught.value.errors] == [("key", "already_exists")]
    with pytest.raises(Conflict) as caught:
        async with uow_factory() as uow:
            await uow.users.add(_user(a.id, "x@example.com"))
            await uow.users.add(_user(a.id, "x@example.com"))
    assert caught.value.errors[0].field == "email"


async def test_the_database_refuses_links_across_organizations(uow_factory) -> None:
    """Even past the use-cases, an action cannot point at another tenant's tool."""
    a, b = await _new_org(uow_factory), await _new_org(uow_factory)
    tool = _tool(a.id)
    async with uow_factory() as uow:
        await uow.tools.add(tool)
        await uow.commit()
    with pytest.raises(InvalidReference):
        async with uow_factory() as uow:
            await uow.actions.add(_action(b.id, tool.id))
    flow = _flow(a.id)
    async with uow_factory() as uow:
        await uow.flows.add(flow)
        await uow.commit()
    log = ExecutionLog.build(
        id=new_id("log"), now=clock.now(), org_id=b.id, user_id=None, flow_id=flow.id,
        execution_id="e", step_key="s", status=None, inputs={}, outputs=None, error=None,
    )  # fmt: skip
    with pytest.raises(InvalidReference):
        async with uow_factory() as uow:
            await uow.execution_logs.add(log)


async def test_a_tool_with_actions_cannot_be_deleted_but_an_organization_takes_everything(
    uow_factory,
) -> None:
    from domain.events import OutboxEvent
    from domain.execution import Execution, StepState

    org = await _new_org(uow_factory)
    tool, flow, user = _tool(org.id), _flow(org.id), _user(org.id)
    now = clock.now()
    execution = Execution(
        id=new_id("exec"), org_id=org.id, flow_id=flow.id, flow_version=1, user_id=None,
        status="running", variables={}, created_at=now, updated_at=now,
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.tools.add(tool)
        await uow.actions.add(_action(org.id, tool.id))
        await uow.flows.add(flow)
        await uow.users.add(user)
        await uow.executions.add(execution)
        await uow.execution_steps.add(StepState.new(org.id, execution.id, "a", now))
        await uow.execution_logs.add(
            ExecutionLog.build(
                id=new_id("log"),
                now=now,
                org_id=org.id,
                user_id=user.id,
                flow_id=flow.id,
                execution_id=execution.id,
                step_key="a",
                status="completed",
                inputs={},
                outputs=None,
                error=None,
            )
        )
        await uow.outbox.add(
            OutboxEvent(id=new_id("evt"), org_id=org.id, type="t", payload={}, created_at=now)
        )
        await uow.commit()
    with pytest.raises(InvalidReference):
        async with uow_factory() as uow:
            await uow.tools.delete(org.id, tool.id)
    async with uow_factory() as uow:
        assert await uow.organizations.delete(org.id) is True
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.organizations.get(org.id) is None
        assert await uow.tools.get(org.id, tool.id) is None
        assert await uow.actions.list(org.id, Page()) == []
        assert await uow.flows.get(org.id, flow.id) is None
        assert await uow.users.get(org.id, user.id) is None
        assert await uow.executions.get(org.id, execution.id) is None
        assert await uow.execution_steps.for_execution(org.id, execution.id) == []
        assert await uow.execution_logs.list(org.id, Page()) == []
        assert await uow.outbox.list(org.id, Page()) == []


async def test_deleting_a_user_keeps_their_execution_logs(uow_factory) -> None:
    org = await _new_org(uow_factory)
    flow, user = _flow(org.id), _user(org.id)
    log = ExecutionLog.build(
        id=new_id("log"), now=clock.now(), org_id=org.id, user_id=user.id, flow_id=flow.id,
        execution_id="e", step_key="s", status="completed", inputs={}, outputs={"ok": True}, error=None,
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.flows.add(flow)
        await uow.users.add(user)
        await uow.execution_logs.add(log)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.users.delete(org.id, user.id)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        kept = await uow.execution_logs.get(org.id, log.id)
    assert kept == dataclasses.replace(log, user_id=None)


async def test_list_is_newest_first_with_filters_and_pages(uow_factory) -> None:
    org = await _new_org(uow_factory)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    tools = [
        dataclasses.replace(_tool(org.id, f"t{i}"), created_at=base + timedelta(seconds=i)) for i in range(5)
    ]
    async with uow_factory() as uow:
        for tool in tools:
            await uow.tools.add(tool)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        listed = await uow.tools.list(org.id, Page(limit=2, offset=1))
        assert [t.key for t in listed] == ["t3", "t2"]
        assert [t.key for t in await uow.tools.list(org.id, Page(), {"key": "t4"})] == ["t4"]
        with pytest.raises(ValueError):
            await uow.tools.list(org.id, Page(), {"base_url": "x"})


async def test_api_key_resolution_answers_owner_and_membership(uow_factory) -> None:
    a, b = await _new_org(uow_factory), await _new_org(uow_factory)
    user_a, user_b = _user(a.id), _user(b.id)
    key = ApiKey.build(
        id=new_id("key"), now=clock.now(), org_id=a.id, name=None, prefix="tsk_x", key_hash=new_id("hash")
    )
    async with uow_factory() as uow:
        await uow.users.add(user_a)
        await uow.users.add(user_b)
        await uow.api_keys.add(key)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        owner = await uow.api_keys.resolve(key.key_hash, None)
        assert (owner.api_key_id, owner.org_id, owner.revoked) == (key.id, a.id, False)
        assert (await uow.api_keys.resolve(key.key_hash, user_a.id)).user_in_org is True
        assert (await uow.api_keys.resolve(key.key_hash, user_b.id)).user_in_org is False
        assert (await uow.api_keys.resolve(key.key_hash, "usr_nobody")).user_in_org is False
        assert await uow.api_keys.resolve("no-such-hash", None) is None
    async with uow_factory() as uow:
        await uow.api_keys.update(key.revoke(clock.now()))
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert (await uow.api_keys.resolve(key.key_hash, None)).revoked is True


async def test_counts(uow_factory) -> None:
    async with uow_factory(read_only=True) as uow:
        before = await uow.organizations.count()
    await _new_org(uow_factory)
    async with uow_factory(read_only=True) as uow:
        assert await uow.organizations.count() == before + 1


async def test_a_batched_unit_of_work_is_all_or_nothing(uow_factory) -> None:
    """Batched writes (one statement on PostgreSQL) keep the contract: all committed together,
    nothing on a refused write or without commit, and every change of an entity kept."""
    from domain.events import OutboxEvent

    org = await _new_org(uow_factory)
    now = SystemClock().now()
    tool = _tool(org.id, key="batched")

    def event(kind: str) -> OutboxEvent:
        return OutboxEvent(id=new_id("evt"), org_id=org.id, type=kind, payload={"n": kind}, created_at=now)

    async with uow_factory(batched=True) as uow:
        await uow.tools.add(tool)
        await uow.outbox.add(event("a"))
        await uow.outbox.add(event("b"))
    async with uow_factory(read_only=True) as uow:  # no commit: nothing
        assert await uow.outbox.list(org.id, Page()) == []
    async with uow_factory(batched=True) as uow:
        await uow.tools.add(tool)
        await uow.outbox.add(event("a"))
        await uow.outbox.add(event("b"))
        await uow.commit()
    async with uow_factory(batched=True) as uow:
        renamed = dataclasses.replace(tool, name="Renamed", updated_at=now + timedelta(seconds=1))
        await uow.tools.update(renamed)
        await uow.outbox.add(event("c"))
        with pytest.raises(InvalidReference):  # refused (at once, or at commit when batched)
            await uow.actions.add(_action(org.id, "tool_does_not_exist"))
            await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert (await uow.tools.get(org.id, tool.id)).name == tool.name
        assert sorted(e.type for e in await uow.outbox.list(org.id, Page())) == ["a", "b"]


async def test_the_outbox_lists_the_events_of_one_execution_oldest_first(uow_factory) -> None:
    from domain.events import OutboxEvent

    org, other = await _new_org(uow_factory), await _new_org(uow_factory)
    now = SystemClock().now()

    def event(org_id: str, execution: str, n: int) -> OutboxEvent:
        return OutboxEvent(
            id=new_id("evt"),
            org_id=org_id,
            type="step.started",
            payload={"executionId": execution, "n": n},
            created_at=now + timedelta(milliseconds=n),
        )

    async with uow_factory() as uow:
        for n in (2, 0, 1, 3):
            await uow.outbox.add(event(org.id, "exec_1", n))
        await uow.outbox.add(event(org.id, "exec_2", 1))
        await uow.outbox.add(event(other.id, "exec_1", 1))
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        found = await uow.outbox.for_execution(org.id, "exec_1", None, 100)
        assert [e.payload["n"] for e in found] == [0, 1, 2, 3]
        later = await uow.outbox.for_execution(org.id, "exec_1", now + timedelta(milliseconds=2), 100)
        assert [e.payload["n"] for e in later] == [2, 3]
        assert [e.payload["n"] for e in await uow.outbox.for_execution(org.id, "exec_1", None, 2)] == [0, 1]
        assert await uow.outbox.for_execution(org.id, "nope", None, 100) == []


async def test_a_fence_keeps_writes_only_while_the_lease_is_held(uow_factory) -> None:
    from application.ports import LeaseLost
    from domain.events import OutboxEvent
    from domain.execution import Execution

    org = await _new_org(uow_factory)
    flow = _flow(org.id)
    now = clock.now()
    execution = Execution(
        id=new_id("exec"), org_id=org.id, flow_id=flow.id, flow_version=1, user_id=None,
        status="running", variables={}, created_at=now, updated_at=now,
    )  # fmt: skip

    def event(kind: str) -> OutboxEvent:
        return OutboxEvent(id=new_id("evt"), org_id=org.id, type=kind, payload={}, created_at=now)

    async with uow_factory() as uow:
        await uow.flows.add(flow)
        await uow.executions.add(execution)
        assert await uow.executions.claim(execution.id, "w1", now + timedelta(minutes=1), now) is not None
        await uow.commit()
    for batched in (True, False):
        async with uow_factory(batched=batched) as uow:  # the lease holder's writes are kept
            await uow.executions.fence(execution.id, "w1")
            await uow.outbox.add(event(f"kept-{batched}"))
            await uow.commit()
        with pytest.raises(LeaseLost):  # anyone else's are refused: at once, or at commit
            async with uow_factory(batched=batched) as uow:
                await uow.executions.fence(execution.id, "w2")
                await uow.outbox.add(event(f"refused-{batched}"))
                await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert sorted(e.type for e in await uow.outbox.list(org.id, Page())) == ["kept-False", "kept-True"]


def _queued(org_id: str, flow_id: str, owner: str | None = None):
    from domain.execution import Execution

    now = clock.now()
    return Execution(
        id=new_id("exec"), org_id=org_id, flow_id=flow_id, flow_version=1, user_id=None, status="queued",
        variables={}, lease_owner=owner, lease_until=now + timedelta(minutes=1) if owner else None,
        created_at=now, updated_at=now,
    )  # fmt: skip


async def _store_queued(uow_factory, flows, executions) -> None:
    async with uow_factory() as uow:
        for flow in flows:
            await uow.flows.add(flow)
        for execution in executions:
            await uow.executions.add(execution)
        await uow.commit()


def _admission(execution, owner: str = "w1"):
    """(started, waiting, event) as the engine makes them for ``execution``."""
    from domain.events import OutboxEvent

    now = clock.now()
    started = dataclasses.replace(
        execution, status="running", started_at=now, updated_at=now, lease_owner=owner
    )
    waiting = dataclasses.replace(
        execution, wake_at=now + timedelta(seconds=5), lease_owner=None, lease_until=None, updated_at=now
    )
    event = OutboxEvent(
        id=new_id("evt"), org_id=execution.org_id, type="flow.started",
        payload={"executionId": execution.id}, created_at=now,
    )  # fmt: skip
    return started, waiting, event


@pytest.mark.parametrize("batched", [False, True], ids=["transaction", "batched"])
async def test_an_admission_starts_the_execution_only_while_there_is_room(uow_factory, batched) -> None:
    from application.ports import LeaseLost

    org = await _new_org(uow_factory)
    flow, other_flow = _flow(org.id), _flow(org.id)
    first, second, third = (_queued(org.id, f.id, "w1") for f in (flow, flow, other_flow))
    await _store_queued(uow_factory, (flow, other_flow), (first, second, third))
    async with uow_factory(batched=batched) as uow:
        assert await uow.executions.admit(*_admission(first), flow_limit=1, org_limit=2) is True
        await uow.commit()
    async with uow_factory(batched=batched) as uow:  # its flow is full (1); the organization is not
        assert await uow.executions.admit(*_admission(second), flow_limit=1, org_limit=2) is False
        await uow.commit()
    async with uow_factory(batched=batched) as uow:  # the organization is full (1)
        assert await uow.executions.admit(*_admission(third), flow_limit=5, org_limit=1) is False
        await uow.commit()
    with pytest.raises(LeaseLost):  # the refusal let the lease go: nobody's to admit with
        async with uow_factory(batched=batched) as uow:
            await uow.executions.admit(*_admission(second), flow_limit=5, org_limit=5)
            await uow.commit()
    async with uow_factory(read_only=True) as uow:
        got = {e.id: e for e in await uow.executions.list(org.id, Page())}
        assert (got[first.id].status, got[first.id].lease_owner) == ("running", "w1")
        assert got[first.id].started_at is not None
        for refused in (second, third):
            assert got[refused.id].status == "queued"
            assert got[refused.id].wake_at is not None and got[refused.id].lease_owner is None
        events = await uow.outbox.list(org.id, Page())
        assert [e.payload["executionId"] for e in events] == [first.id]  # the refused add no event


@pytest.mark.parametrize("batched", [False, True], ids=["transaction", "batched"])
async def test_executions_waiting_for_a_slot_are_read_with_the_commit(uow_factory, batched) -> None:
    """The executions refused a slot, oldest first and a few at a time, read with the commit of the
    unit of work that concludes one (batched: in its one statement, beside its writes)."""
    org, other = await _new_org(uow_factory), await _new_org(uow_factory)
    flow, other_flow = _flow(org.id), _flow(other.id)
    running = _queued(org.id, flow.id, "w1")
    base = running.created_at
    refused = [  # created one after the other: the oldest are called in first
        dataclasses.replace(_queued(org.id, flow.id, f"w{n}"), created_at=base + timedelta(milliseconds=n))
        for n in (2, 3, 4)
    ]
    elsewhere = _queued(other.id, other_flow.id, "w5")
    await _store_queued(uow_factory, (flow, other_flow), (running, *refused, elsewhere))
    async with uow_factory() as uow:
        assert await uow.executions.admit(*_admission(running, "w1"), flow_limit=1, org_limit=5) is True
        for execution in refused:  # the flow is full
            owner = execution.lease_owner
            assert (
                await uow.executions.admit(*_admission(execution, owner), flow_limit=1, org_limit=5) is False
            )
        assert await uow.executions.admit(*_admission(elsewhere, "w5"), flow_limit=1, org_limit=5) is True
        await uow.commit()
    async with uow_factory(batched=batched) as uow:
        await uow.executions.fence(running.id, "w1")
        done = dataclasses.replace(running, status="completed", lease_owner=None, lease_until=None)
        await uow.executions.save_and_release(done)
        waiting = await uow.executions.waiting_for_slot(org.id, 2)
        if batched and getattr(uow_factory, "write_pool", None) is not None:  # PostgreSQL: at commit
            with pytest.raises(RuntimeError):
                waiting.value  # noqa: B018
        await uow.commit()
    assert waiting.value == [e.id for e in refused[:2]]
    async with uow_factory(batched=batched) as uow:  # a read alone, without writes
        waiting = await uow.executions.waiting_for_slot(other.id, 5)
        await uow.commit()
    assert waiting.value == []  # the other organization's one was admitted


@pytest.mark.sql_only
async def test_a_conclusion_reads_the_waiting_after_the_admissions_in_progress(uow_factory) -> None:
    """An admission refused while an execution of the organization concludes is never missed by
    both: the conclusion's read of the waiting executions waits for the admission in progress and
    then sees its refusal (PostgreSQL: the admission lock, taken by ``tolstoy_waiting_for_slot``
    and held until the conclusion commits; SQLite: the writers' lock)."""
    import asyncio

    org = await _new_org(uow_factory)
    flow = _flow(org.id)
    running, refused = _queued(org.id, flow.id, "w1"), _queued(org.id, flow.id, "w2")
    await _store_queued(uow_factory, (flow,), (running, refused))
    async with uow_factory() as uow:
        assert await uow.executions.admit(*_admission(running, "w1"), flow_limit=1, org_limit=5) is True
        await uow.commit()
    admission = uow_factory()  # the other execution's admission, not committed yet
    await admission.__aenter__()
    try:
        assert (
            await admission.executions.admit(*_admission(refused, "w2"), flow_limit=1, org_limit=5) is False
        )

        async def conclude() -> list[str]:
            async with uow_factory(batched=True) as uow:
                await uow.executions.fence(running.id, "w1")
                now = clock.now()
                done = dataclasses.replace(
                    running,
                    status="completed",
                    finished_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                await uow.executions.save_and_release(done)
                waiting = await uow.executions.waiting_for_slot(org.id, 3)
                await uow.commit()
                return waiting.value

        concluding = asyncio.create_task(conclude())
        await asyncio.sleep(0.3)
        assert not concluding.done()  # it waits for the admission in progress
        await admission.commit()
    finally:
        await admission.__aexit__(None, None, None)
    assert await asyncio.wait_for(concluding, 5) == [refused.id]  # and reads its refusal


@pytest.mark.sql_only
async def test_admissions_of_one_organization_are_serialised(uow_factory) -> None:
    """An admission holds the organization's admission lock until its transaction ends: a second
    one waits, then counts the first (SQLite: the writer lock; PostgreSQL: an advisory lock taken
    inside ``tolstoy_admission_room``, whose count sees what committed while it waited; other
    organizations' admissions do not wait)."""
    import asyncio

    org, other = await _new_org(uow_factory), await _new_org(uow_factory)
    flow, other_flow = _flow(org.id), _flow(other.id)
    mine, next_ = _queued(org.id, flow.id, "w1"), _queued(org.id, flow.id, "w2")
    elsewhere = _queued(other.id, other_flow.id, "w3")
    await _store_queued(uow_factory, (flow, other_flow), (mine, next_, elsewhere))
    first = uow_factory()
    await first.__aenter__()
    try:
        assert await first.executions.admit(*_admission(mine, "w1"), flow_limit=5, org_limit=1) is True

        async def admission(execution, owner: str) -> bool:
            async with uow_factory(batched=True) as uow:
                admitted = await uow.executions.admit(
                    *_admission(execution, owner), flow_limit=5, org_limit=1
                )
                await uow.commit()
                return admitted

        waiting = asyncio.create_task(admission(next_, "w2"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        if uow_factory.write_pool is not None:  # PostgreSQL: another organization does not wait
            assert await asyncio.wait_for(admission(elsewhere, "w3"), 5) is True
        await first.commit()
    finally:
        await first.__aexit__(None, None, None)
    assert await asyncio.wait_for(waiting, 5) is False  # it saw the first one running: no room


async def test_changes_are_heard_at_commit_only(uow_factory) -> None:
    """A change published in a unit of work reaches this process's listener once the unit of work
    commits; one that rolls back (an error inside it, or an explicit rollback) is never heard."""
    from application.ports import Change

    heard: list[Change] = []
    org = await _new_org(uow_factory)
    before, uow_factory.heard = uow_factory.heard, heard.append  # the factory is shared: put it back
    try:
        with pytest.raises(RuntimeError):
            async with uow_factory() as uow:
                await uow.changes.publish(Change("flow", org.id, "flow_a"))
                await uow.organizations.update(dataclasses.replace(org, name="Renamed"))
                raise RuntimeError("failed before commit")
        async with uow_factory() as uow:
            await uow.changes.publish(Change("flow", org.id, "flow_b"))
            await uow.rollback()
        assert heard == []
        async with uow_factory() as uow:
            await uow.changes.publish(Change("flow", org.id, "flow_c"))
            await uow.commit()
        assert heard == [Change("flow", org.id, "flow_c")]
    finally:
        uow_factory.heard = before
