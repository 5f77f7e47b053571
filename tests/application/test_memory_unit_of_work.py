"""The in-memory unit of work keeps the SQL adapter's promises, so use-case tests can trust it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from application.ports import Page
from domain.errors import Conflict, InvalidReference
from domain.execution_log import ExecutionLog
from domain.flow import Flow
from domain.ids import new_id
from domain.organization import ApiKey, Organization, User
from domain.tool import Action, Tool
from tests.fakes.memory import MemoryUnitOfWorkFactory

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def org() -> Organization:
    return Organization.build(id=new_id("org"), now=NOW, name="Acme")


def tool(org_id: str, key: str = "slack", at: datetime = NOW) -> Tool:
    return Tool.build(
        id=new_id("tool"),
        now=at,
        org_id=org_id,
        name="Slack",
        key=key,
        base_url="https://s.io",
        options={"a": [1]},
    )


def user(org_id: str, email: str = "ann@example.com") -> User:
    return User.build(id=new_id("usr"), now=NOW, org_id=org_id, email=email)


def flow(org_id: str) -> Flow:
    return Flow.build(id=new_id("flow"), now=NOW, org_id=org_id, name="Sync")


def log(org_id: str, flow_id: str, user_id: str | None = None) -> ExecutionLog:
    return ExecutionLog.build(
        id=new_id("log"), now=NOW, org_id=org_id, user_id=user_id, flow_id=flow_id,
        execution_id="e", step_key="s", status=None, inputs={},
    )  # fmt: skip


def key(org_id: str, key_hash: str) -> ApiKey:
    return ApiKey.build(id=new_id("key"), now=NOW, org_id=org_id, name="k", prefix="tsk_x", key_hash=key_hash)


@pytest.fixture
def uow() -> MemoryUnitOfWorkFactory:
    return MemoryUnitOfWorkFactory()


async def seeded(uow: MemoryUnitOfWorkFactory, *rows: object) -> None:
    async with uow() as tx:
        for row in rows:
            await getattr(tx, _table(row)).add(row)
        await tx.commit()


def _table(row: object) -> str:
    return {
        Organization: "organizations", Tool: "tools", User: "users", Flow: "flows",
        ExecutionLog: "execution_logs", ApiKey: "api_keys", Action: "actions",
    }[type(row)]  # fmt: skip


async def test_changes_are_private_until_commit(uow: MemoryUnitOfWorkFactory) -> None:
    acme = org()
    async with uow() as writer:
        await writer.organizations.add(acme)
        assert await writer.organizations.get(acme.id) == acme
        async with uow() as other, uow(read_only=True) as reader:
            assert await other.organizations.get(acme.id) is None
            assert await reader.organizations.get(acme.id) is None
        await writer.commit()
    async with uow(read_only=True) as reader:
        assert await reader.organizations.get(acme.id) == acme


async def test_leaving_without_commit_or_rolling_back_discards(uow: MemoryUnitOfWorkFactory) -> None:
    first, second = org(), org()
    async with uow() as tx:
        await tx.organizations.add(first)
    async with uow() as tx:
        await tx.organizations.add(second)
        await tx.rollback()
        assert await tx.organizations.get(second.id) is None
        await tx.commit()
    async with uow(read_only=True) as tx:
        assert await tx.organizations.count() == 0


async def test_commits_of_overlapping_units_of_work_are_all_kept(uow: MemoryUnitOfWorkFactory) -> None:
    a, b = org(), org()
    async with uow() as first, uow() as second:
        await first.organizations.add(a)
        await second.organizations.add(b)
        await first.commit()
        await second.commit()
    async with uow(read_only=True) as tx:
        assert {o.id for o in await tx.organizations.list(Page())} == {a.id, b.id}


async def test_a_late_commit_still_meets_the_constraints(uow: MemoryUnitOfWorkFactory) -> None:
    acme = org()
    await seeded(uow, acme)
    async with uow() as first, uow() as second:
        await first.tools.add(tool(acme.id, "dup"))
        await second.tools.add(tool(acme.id, "dup"))
        await first.commit()
        with pytest.raises(Conflict):
            await second.commit()
    async with uow(read_only=True) as tx:
        assert len(await tx.tools.list(acme.id, Page())) == 1


async def test_a_read_only_unit_of_work_autocommits_like_the_sql_one(uow: MemoryUnitOfWorkFactory) -> None:
    acme = org()
    async with uow(read_only=True) as tx:
        await tx.organizations.add(acme)
    async with uow(read_only=True) as tx:
        assert await tx.organizations.get(acme.id) == acme


async def test_entities_are_copied_in_and_out(uow: MemoryUnitOfWorkFactory) -> None:
    acme = org()
    slack = tool(acme.id)
    await seeded(uow, acme, slack)
    slack.options["a"].append(2)
    async with uow(read_only=True) as tx:
        loaded = await tx.tools.get(acme.id, slack.id)
        loaded.options["a"].append(3)
        assert (await tx.tools.get(acme.id, slack.id)).options == {"a": [1]}


async def test_repositories_refuse_use_outside_the_context(uow: MemoryUnitOfWorkFactory) -> None:
    tx = uow()
    with pytest.raises(RuntimeError):
        await tx.organizations.count()
    async with tx:
        pass
    with pytest.raises(RuntimeError):
        await tx.organizations.add(org())
    with pytest.raises(RuntimeError):
        await tx.commit()


async def test_rows_need_their_organization_and_a_unique_id(uow: MemoryUnitOfWorkFactory) -> None:
    with pytest.raises(InvalidReference):
        await seeded(uow, tool("org_missing"))
    acme = org()
    await seeded(uow, acme)
    with pytest.raises(Conflict) as caught:
        await seeded(uow, acme)
    assert caught.value.errors == []


async def test_key_hashes_are_unique_across_organizations(uow: MemoryUnitOfWorkFactory) -> None:
    a, b = org(), org()
    await seeded(uow, a, b, key(a.id, "same"))
    with pytest.raises(Conflict) as caught:
        await seeded(uow, key(b.id, "same"))
    assert caught.value.errors == []


async def test_references_follow_the_schema(uow: MemoryUnitOfWorkFactory) -> None:
    a, b = org(), org()
    work = flow(a.id)
    await seeded(uow, a, b, work)
    for bad in (log(b.id, work.id), log(a.id, work.id, user_id="usr_missing")):
        with pytest.raises(InvalidReference) as caught:
            await seeded(uow, bad)
        assert [e.field for e in caught.value.errors] == ["id"]
    their_user = user(b.id)
    await seeded(uow, their_user, log(a.id, work.id, user_id=their_user.id))  # users.id alone is referenced


async def test_update_keeps_creation_time_and_cannot_move_a_row(uow: MemoryUnitOfWorkFactory) -> None:
    a, b = org(), org()
    slack = tool(a.id)
    await seeded(uow, a, b, slack)
    later = slack.changed(now=NOW + timedelta(hours=1), name="Slack v2")
    async with uow() as tx:
        await tx.tools.update(dataclasses.replace(later, created_at=NOW + timedelta(days=9)))
        await tx.tools.update(dataclasses.replace(later, org_id=b.id, name="Moved"))
        await tx.commit()
    async with uow(read_only=True) as tx:
        assert await tx.tools.get(a.id, slack.id) == later
        assert await tx.tools.list(b.id, Page()) == []


async def test_deleting_an_organization_cascades_and_nulls_foreign_user_references(
    uow: MemoryUnitOfWorkFactory,
) -> None:
    a, b = org(), org()
    slack, ann, work, their_work = tool(a.id), user(a.id), flow(a.id), flow(b.id)
    action = Action.build(
        id=new_id("act"), now=NOW, org_id=a.id, tool_id=slack.id, name="Post", key="post", endpoint="/x"
    )
    foreign_log = log(b.id, their_work.id, user_id=ann.id)
    await seeded(uow, a, b, slack, action, ann, work, their_work, log(a.id, work.id, ann.id), foreign_log)
    async with uow() as tx:
        assert await tx.organizations.delete(a.id) is True
        assert await tx.organizations.delete(a.id) is False
        await tx.commit()
    async with uow(read_only=True) as tx:
        assert await tx.organizations.count() == 1
        assert (await tx.tools.count(), await tx.actions.count(), await tx.users.count()) == (0, 0, 0)
        assert await tx.execution_logs.list(b.id, Page()) == [dataclasses.replace(foreign_log, user_id=None)]
        assert await tx.execution_logs.count() == 1


async def test_a_tool_with_actions_is_not_deleted(uow: MemoryUnitOfWorkFactory) -> None:
    a = org()
    slack = tool(a.id)
    action = Action.build(
        id=new_id("act"), now=NOW, org_id=a.id, tool_id=slack.id, name="Post", key="post", endpoint="/x"
    )
    await seeded(uow, a, slack, action)
    async with uow() as tx:
        with pytest.raises(InvalidReference):
            await tx.tools.delete(a.id, slack.id)
        assert await tx.tools.get(a.id, slack.id) == slack  # the failed statement changed nothing
        assert await tx.actions.delete(a.id, action.id) is True
        assert await tx.tools.delete(a.id, slack.id) is True


async def test_lists_order_by_creation_then_id(uow: MemoryUnitOfWorkFactory) -> None:
    a = org()
    same_time = [dataclasses.replace(tool(a.id, f"t{s}"), id=f"tool_{s}") for s in "bca"]
    older = tool(a.id, "old", at=NOW - timedelta(seconds=1))
    await seeded(uow, a, older, *same_time)
    async with uow(read_only=True) as tx:
        assert [t.id for t in await tx.tools.list(a.id, Page())] == ["tool_c", "tool_b", "tool_a", older.id]
        assert [t.id for t in await tx.tools.list(a.id, Page(limit=2, offset=2))] == ["tool_a", older.id]
