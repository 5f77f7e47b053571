"""Tenant resources: derived keys, conflicts, references inside the organization, audit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from application.ports import Page
from application.resources import Actions, ExecutionLogs, Flows, Tools, Users
from application.tenancy import TenantContext
from domain.audit import AuditEvent
from domain.errors import Conflict, DomainError, InvalidReference, NotFound, ValidationFailed
from domain.execution_log import ExecutionLog
from domain.flow import Flow
from domain.rules import UNSET
from domain.tool import Action, Tool
from tests.application.helpers import Tenant
from tests.fakes.memory import MemoryUnitOfWorkFactory

Trail = Callable[[Tenant], Awaitable[list[AuditEvent]]]


def problems(caught: pytest.ExceptionInfo[DomainError]) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in caught.value.errors]


async def new_tool(tools: Tools, tenant: Tenant, **fields: Any) -> Tool:
    return await tools.create(
        tenant.ctx, **({"name": "Slack API", "base_url": "https://slack.com/api"} | fields)
    )


async def new_action(actions: Actions, tenant: Tenant, tool_id: str, **fields: Any) -> Action:
    return await actions.create(
        tenant.ctx, **({"name": "Post", "tool_id": tool_id, "endpoint": "/chat"} | fields)
    )


async def new_flow(flows: Flows, tenant: Tenant) -> Flow:
    return await flows.create(
        tenant.ctx, name="Sync", steps=[{"id": "a", "type": "delay", "config": {"ms": 10}}]
    )


async def new_log(logs: ExecutionLogs, ctx: TenantContext, flow_id: str, **fields: Any) -> ExecutionLog:
    values = {"flow_id": flow_id, "execution_id": "exec_1", "step_key": "a", "inputs": {"x": 1}}
    return await logs.create(ctx, **(values | fields))


# --- derived keys and conflicts ------------------------------------------------------------------


async def test_a_tool_key_is_derived_from_its_name(tools: Tools, acme: Tenant) -> None:
    tool = await new_tool(tools, acme)
    assert (tool.key, tool.org_id, tool.auth_type) == ("slack-api", acme.org.id, "none")
    assert await tools.get(acme.ctx, tool.id) == tool


async def test_a_given_key_is_kept_and_renaming_keeps_the_key(tools: Tools, acme: Tenant) -> None:
    tool = await new_tool(tools, acme, key="chat")
    assert tool.key == "chat"
    renamed = await tools.update(acme.ctx, tool.id, name="Slack v2", key=UNSET)
    assert (renamed.name, renamed.key) == ("Slack v2", "chat")
    assert await tools.get(acme.ctx, tool.id) == renamed


async def test_an_action_key_is_derived_from_its_name(tools: Tools, actions: Actions, acme: Tenant) -> None:
    tool = await new_tool(tools, acme)
    action = await new_action(actions, acme, tool.id, name="Post Message!", method="post")
    assert (action.key, action.method, action.tool_id) == ("post-message", "POST", tool.id)


async def test_a_duplicate_tool_key_conflicts_within_an_organization_only(
    tools: Tools, acme: Tenant, globex: Tenant
) -> None:
    await new_tool(tools, acme)
    with pytest.raises(Conflict) as caught:
        await new_tool(tools, acme, name="  Slack   API ")
    assert problems(caught) == [("key", "already_exists")]
    assert (await new_tool(tools, globex)).key == "slack-api"
    other = await new_tool(tools, acme, key="other")
    with pytest.raises(Conflict) as caught:
        await tools.update(acme.ctx, other.id, key="slack-api")
    assert problems(caught) == [("key", "already_exists")]
    assert (await tools.get(acme.ctx, other.id)).key == "other"


async def test_a_duplicate_action_key_conflicts(tools: Tools, actions: Actions, acme: Tenant) -> None:
    tool = await new_tool(tools, acme)
    await new_action(actions, acme, tool.id)
    with pytest.raises(Conflict) as caught:
        await new_action(actions, acme, tool.id, endpoint="/other")
    assert problems(caught) == [("key", "already_exists")]
    assert len(await actions.list(acme.ctx, Page())) == 1


async def test_a_duplicate_email_conflicts_whatever_its_case(
    users: Users, acme: Tenant, globex: Tenant
) -> None:
    await users.create(acme.ctx, email="bob@example.com")
    with pytest.raises(Conflict) as caught:
        await users.create(acme.ctx, email="BOB@Example.com")
    assert problems(caught) == [("email", "already_exists")]
    assert (await users.create(globex.ctx, email="bob@example.com")).org_id == globex.org.id


async def test_invalid_fields_are_all_reported_and_nothing_is_stored(
    tools: Tools, acme: Tenant, audit: Trail
) -> None:
    before = await audit(acme)
    with pytest.raises(ValidationFailed) as caught:
        await tools.create(acme.ctx, name="   ", base_url="ftp://x", auth_type="magic", key="Bad Key")
    assert set(problems(caught)) == {
        ("name", "too_small"),
        ("key", "invalid_string"),
        ("baseUrl", "invalid_string"),
        ("authType", "invalid_enum_value"),
    }
    assert await tools.list(acme.ctx, Page()) == []
    assert await audit(acme) == before


async def test_an_invalid_update_changes_nothing(tools: Tools, acme: Tenant) -> None:
    tool = await new_tool(tools, acme)
    with pytest.raises(ValidationFailed) as caught:
        await tools.update(acme.ctx, tool.id, name="ok", base_url="nope")
    assert problems(caught) == [("baseUrl", "invalid_string")]
    assert await tools.get(acme.ctx, tool.id) == tool


# --- tenancy and references ----------------------------------------------------------------------


async def test_another_organizations_object_is_not_found(tools: Tools, acme: Tenant, globex: Tenant) -> None:
    theirs = await new_tool(tools, globex)
    with pytest.raises(NotFound):
        await tools.get(acme.ctx, theirs.id)
    with pytest.raises(NotFound):
        await tools.update(acme.ctx, theirs.id, name="Mine now")
    with pytest.raises(NotFound):
        await tools.delete(acme.ctx, theirs.id)
    assert await tools.list(acme.ctx, Page()) == []
    assert await tools.get(globex.ctx, theirs.id) == theirs


async def test_an_action_cannot_use_another_organizations_tool(
    tools: Tools, actions: Actions, acme: Tenant, globex: Tenant
) -> None:
    theirs = await new_tool(tools, globex)
    for tool_id in (theirs.id, "tool_missing"):
        with pytest.raises(InvalidReference) as caught:
            await new_action(actions, acme, tool_id)
        assert problems(caught) == [("toolId", "invalid_reference")]
    assert await actions.list(acme.ctx, Page()) == []


async def test_an_action_can_move_only_to_a_tool_of_its_organization(
    tools: Tools, actions: Actions, acme: Tenant, globex: Tenant
) -> None:
    first, second = await new_tool(tools, acme), await new_tool(tools, acme, key="second")
    theirs = await new_tool(tools, globex)
    action = await new_action(actions, acme, first.id)
    with pytest.raises(InvalidReference) as caught:
        await actions.update(acme.ctx, action.id, tool_id=theirs.id)
    assert problems(caught) == [("toolId", "invalid_reference")]
    assert (await actions.get(acme.ctx, action.id)).tool_id == first.id
    moved = await actions.update(acme.ctx, action.id, tool_id=second.id)
    assert (await actions.get(acme.ctx, action.id)) == moved and moved.tool_id == second.id


async def test_a_tool_with_actions_cannot_be_deleted(tools: Tools, actions: Actions, acme: Tenant) -> None:
    tool = await new_tool(tools, acme)
    action = await new_action(actions, acme, tool.id)
    with pytest.raises(Conflict, match="still has actions"):
        await tools.delete(acme.ctx, tool.id)
    assert await tools.get(acme.ctx, tool.id) == tool
    await actions.delete(acme.ctx, action.id)
    assert await tools.delete(acme.ctx, tool.id) == tool
    with pytest.raises(NotFound):
        await tools.get(acme.ctx, tool.id)


async def test_an_execution_log_needs_a_flow_and_user_of_its_organization(
    flows: Flows, logs: ExecutionLogs, acme: Tenant, globex: Tenant
) -> None:
    ours, theirs = await new_flow(flows, acme), await new_flow(flows, globex)
    with pytest.raises(InvalidReference) as caught:
        await new_log(logs, acme.ctx, theirs.id)
    assert problems(caught) == [("flowId", "invalid_reference")]
    with pytest.raises(InvalidReference) as caught:
        await new_log(logs, acme.ctx, ours.id, user_id=globex.ctx.user_id)
    assert problems(caught) == [("userId", "invalid_reference")]
    with pytest.raises(InvalidReference):
        await new_log(logs, acme.ctx, ours.id, user_id="usr_missing")
    assert await logs.list(acme.ctx, Page()) == []


async def test_an_execution_log_is_attributed_to_the_caller_by_default(
    flows: Flows, users: Users, logs: ExecutionLogs, acme: Tenant
) -> None:
    flow = await new_flow(flows, acme)
    assert (await new_log(logs, acme.ctx, flow.id)).user_id == acme.ctx.user_id
    bob = await users.create(acme.ctx, email="bob@example.com")
    assert (await new_log(logs, acme.ctx, flow.id, user_id=bob.id)).user_id == bob.id
    key_only = TenantContext(acme.org.id, None, acme.ctx.api_key_id)
    assert (await new_log(logs, key_only, flow.id)).user_id is None


async def test_a_finished_step_run_keeps_its_status(flows: Flows, logs: ExecutionLogs, acme: Tenant) -> None:
    log = await new_log(logs, acme.ctx, (await new_flow(flows, acme)).id)
    done = await logs.update(acme.ctx, log.id, status="completed", outputs={"ok": True})
    assert (done.status, done.outputs) == ("completed", {"ok": True})
    with pytest.raises(Conflict):
        await logs.update(acme.ctx, log.id, status="failed", error={"message": "late"})
    assert await logs.get(acme.ctx, log.id) == done


async def test_deleting_a_user_keeps_their_execution_logs(
    flows: Flows, users: Users, logs: ExecutionLogs, acme: Tenant
) -> None:
    bob = await users.create(acme.ctx, email="bob@example.com")
    log = await new_log(logs, acme.ctx, (await new_flow(flows, acme)).id, user_id=bob.id)
    await users.delete(acme.ctx, bob.id)
    kept = await logs.get(acme.ctx, log.id)
    assert (kept.id, kept.user_id, kept.inputs) == (log.id, None, {"x": 1})


async def test_deleting_a_flow_deletes_its_execution_logs(
    flows: Flows, logs: ExecutionLogs, acme: Tenant
) -> None:
    flow, other = await new_flow(flows, acme), await new_flow(flows, acme)
    await new_log(logs, acme.ctx, flow.id)
    kept = await new_log(logs, acme.ctx, other.id)
    await flows.delete(acme.ctx, flow.id)
    assert await logs.list(acme.ctx, Page()) == [kept]


# --- updates, lists, audit -----------------------------------------------------------------------


async def test_changing_steps_makes_a_new_flow_version(flows: Flows, acme: Tenant) -> None:
    flow = await new_flow(flows, acme)
    renamed = await flows.update(acme.ctx, flow.id, name="Renamed")
    assert renamed.version == 1
    v2 = await flows.update(acme.ctx, flow.id, steps=[{"id": "b", "type": "delay", "config": {"ms": 10}}])
    assert v2.version == 2 and await flows.get(acme.ctx, flow.id) == v2


async def test_lists_are_newest_first_filtered_and_paged(
    tools: Tools, actions: Actions, acme: Tenant
) -> None:
    a, b = await new_tool(tools, acme, key="a"), await new_tool(tools, acme, key="b")
    made = [
        await new_action(actions, acme, tool_id, key=f"act-{i}")
        for i, tool_id in enumerate([a.id, b.id, a.id])
    ]
    assert [x.key for x in await actions.list(acme.ctx, Page())] == ["act-2", "act-1", "act-0"]
    assert [x.id for x in await actions.list(acme.ctx, Page(), {"tool_id": a.id})] == [made[2].id, made[0].id]
    assert [x.key for x in await actions.list(acme.ctx, Page(limit=1, offset=1), {"key": None})] == ["act-1"]
    assert await tools.list(acme.ctx, Page(), {"key": "b", "auth_type": None}) == [b]
    with pytest.raises(ValueError):
        await tools.list(acme.ctx, Page(), {"base_url": "https://slack.com/api"})


async def test_create_update_delete_are_audited_with_the_actor(
    tools: Tools, acme: Tenant, audit: Trail
) -> None:
    before = len(await audit(acme))
    tool = await new_tool(tools, acme)
    await tools.update(acme.ctx, tool.id, name="Slack v2", base_url=tool.base_url, key=UNSET)
    await tools.delete(acme.ctx, tool.id)
    events = (await audit(acme))[before:]
    assert [(e.action, e.resource_type, e.resource_id) for e in events] == [
        ("tool.created", "tool", tool.id),
        ("tool.updated", "tool", tool.id),
        ("tool.deleted", "tool", tool.id),
    ]
    assert {(e.org_id, e.actor_user_id, e.api_key_id) for e in events} == {
        (acme.org.id, acme.ctx.user_id, acme.ctx.api_key_id)
    }
    assert acme.ctx.user_id is not None and acme.ctx.api_key_id is not None
    assert events[1].details == {"fields": ["name"]}  # base_url was sent unchanged: not a change


async def test_an_update_without_a_real_change_writes_nothing(
    tools: Tools, acme: Tenant, audit: Trail, uow: MemoryUnitOfWorkFactory
) -> None:
    tool = await new_tool(tools, acme, options={"retries": 3})
    before = await audit(acme)
    same = await tools.update(acme.ctx, tool.id, name=" Slack API ", options={"retries": 3}, key=UNSET)
    assert same == tool and same.updated_at == tool.updated_at
    assert await audit(acme) == before
    assert await tools.get(acme.ctx, tool.id) == tool
