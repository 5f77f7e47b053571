"""Repositories over SQLAlchemy Core. Rows map to entities field for field."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ARRAY,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    distinct,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from adapters.persistence import tables
from adapters.persistence.executor import Executor, prebuilt
from adapters.persistence.integrity import translate
from application.ports import KeyOwner, Later, LeaseLost, Page
from domain.organization import Organization

E = TypeVar("E")


def _storable(*values: Any) -> bool:
    """No stored text contains NUL (the domain refuses it, PostgreSQL cannot hold it), so a
    lookup by such a value matches nothing; asking the database would only raise."""
    return not any(isinstance(v, str) and "\x00" in v for v in values)


_COLUMNS: dict[str, tuple[str, ...]] = {}


def _columns(table: Table) -> tuple[str, ...]:
    found = _COLUMNS.get(table.name)
    if found is None:
        found = _COLUMNS[table.name] = tuple(table.c.keys())
    return found


class _Rows(Generic[E]):
    def __init__(self, db: Executor, table: Table, entity: type[E], resource: str) -> None:
        self._db = db
        self._table = table
        self._entity = entity
        self._resource = resource
        self._columns = _columns(table)

    def _values(self, entity: E) -> dict[str, Any]:
        return {column: getattr(entity, column) for column in self._columns}

    def _from_row(self, row: Mapping[str, Any]) -> E:
        return self._entity(**row)

    async def _write(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        try:
            return await self._db.run(statement, params)
        except IntegrityError as exc:
            raise translate(exc, self._resource) from None

    async def _insert(self, entity: E) -> None:
        """INSERT of every column, from a statement built once per table (bound by name)."""
        values = self._values(entity)
        await self._write(_insert_all(self._table), {f"p_{k}": v for k, v in values.items()})

    async def _update(self, entity: E, keys: tuple[str, ...], skip: frozenset[str] = frozenset()) -> int:
        """UPDATE of every column but ``keys`` (the WHERE) and ``skip``, built once per shape."""
        values = self._values(entity)
        statement = _update_all(self._table, keys, skip | {"created_at"})
        return await self._write(statement, {f"p_{k}": v for k, v in values.items() if k not in skip})

    async def count(self) -> int:
        return await self._db.scalar(select(func.count()).select_from(self._table))


_WRITES: dict[Any, Any] = {}


def _insert_all(table: Table) -> Any:
    key = ("insert", table.name)
    statement = _WRITES.get(key)
    if statement is None:
        values = {c: bindparam(f"p_{c}") for c in _columns(table)}
        statement = _WRITES[key] = prebuilt(insert(table).values(values))
    return statement


def _update_all(table: Table, keys: tuple[str, ...], skip: frozenset[str]) -> Any:
    key = ("update", table.name, keys, skip)
    statement = _WRITES.get(key)
    if statement is None:
        where = [table.c[k] == bindparam(f"p_{k}") for k in keys]
        values = {c: bindparam(f"p_{c}") for c in _columns(table) if c not in keys and c not in skip}
        statement = _WRITES[key] = prebuilt(update(table).where(*where).values(values))
    return statement


_GET_BY_ID: dict[str, Any] = {}


def _get_by_id(table: Table) -> Any:
    """``SELECT … WHERE org_id = :org_id AND id = :id``, built once per table: the hottest read."""
    statement = _GET_BY_ID.get(table.name)
    if statement is None:
        statement = _GET_BY_ID[table.name] = prebuilt(
            select(table).where(table.c.org_id == bindparam("org_id"), table.c.id == bindparam("id"))
        )
    return statement


class SqlTenantRepository(_Rows[E]):
    """Every statement carries ``org_id = :org``: no method can reach another tenant's rows."""

    def __init__(
        self, db: Executor, table: Table, entity: type[E], resource: str, filterable: frozenset[str]
    ) -> None:
        super().__init__(db, table, entity, resource)
        self._filterable = filterable
        self._get = _get_by_id(table)

    async def add(self, entity: E) -> None:
        await self._insert(entity)

    async def get(self, org_id: str, entity_id: str) -> E | None:
        if not _storable(org_id, entity_id):
            return None
        row = await self._db.first(self._get, {"org_id": org_id, "id": entity_id})
        return None if row is None else self._from_row(row)

    async def list(self, org_id: str, page: Page, filters: Mapping[str, Any] | None = None) -> list[E]:
        t = self._table
        query = select(t).where(t.c.org_id == org_id)
        for name, value in (filters or {}).items():
            if name not in self._filterable:
                raise ValueError(f"{self._resource} cannot be filtered by {name}")
            query = query.where(t.c[name] == value)
        if not _storable(org_id, *(filters or {}).values()):
            return []
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(page.limit).offset(page.offset)
        return [self._from_row(row) for row in await self._db.all(query)]

    async def update(self, entity: E) -> None:
        await self._update(entity, ("org_id", "id"))

    async def delete(self, org_id: str, entity_id: str) -> bool:
        if not _storable(org_id, entity_id):
            return False
        t = self._table
        return await self._write(delete(t).where(t.c.org_id == org_id, t.c.id == entity_id)) > 0


class SqlApiKeyRepository(SqlTenantRepository[E]):
    async def resolve(self, key_hash: str, user_id: str | None) -> KeyOwner | None:
        k, u = tables.api_keys, tables.users
        if not _storable(user_id):
            user_id = "\ufffd"  # no such user: the membership answer is simply "no"
        if user_id is None:
            user_in_org: Any = False
            query = select(k.c.id, k.c.org_id, k.c.revoked_at)
        else:
            # One round trip answers both questions: whose key is this, and is the user theirs.
            member = select(u.c.id).where(u.c.id == user_id, u.c.org_id == k.c.org_id).exists()
            query = select(k.c.id, k.c.org_id, k.c.revoked_at, member.label("user_in_org"))
        row = await self._db.first(query.where(k.c.key_hash == key_hash))
        if row is None:
            return None
        user_in_org = bool(row["user_in_org"]) if user_id is not None else False
        return KeyOwner(row["id"], row["org_id"], row["revoked_at"] is not None, user_in_org)


class SqlOrganizationRepository(_Rows[Organization]):
    def __init__(self, db: Executor) -> None:
        super().__init__(db, tables.organizations, Organization, "Organization")

    async def add(self, org: Organization) -> None:
        await self._write(insert(self._table).values(self._values(org)))

    async def get(self, org_id: str) -> Organization | None:
        if not _storable(org_id):
            return None
        t = self._table
        row = await self._db.first(select(t).where(t.c.id == org_id))
        return None if row is None else self._from_row(row)

    async def list(self, page: Page, only_id: str | None = None) -> list[Organization]:
        t = self._table
        query = select(t)
        if only_id is not None:
            query = query.where(t.c.id == only_id)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(page.limit).offset(page.offset)
        return [self._from_row(row) for row in await self._db.all(query)]

    async def update(self, org: Organization) -> None:
        t = self._table
        await self._write(update(t).where(t.c.id == org.id).values(name=org.name, updated_at=org.updated_at))

    async def delete(self, org_id: str) -> bool:
        if not _storable(org_id):
            return False
        t = self._table
        # Everything else goes by foreign-key cascades; the outbox has no key to organizations.
        await self._write(delete(tables.outbox_events).where(tables.outbox_events.c.org_id == org_id))
        return await self._write(delete(t).where(t.c.id == org_id)) > 0


# Columns only the lease and cancel methods write: a checkpoint's UPDATE leaves them alone.
_EXECUTION_CONTROL = frozenset({"lease_owner", "lease_until", "cancel_requested"})
_UNFINISHED = ("queued", "running")


def _unfinished(t: Table) -> Any:
    # Spelled out rather than IN (...): the asyncpg read path compiles statements without
    # SQLAlchemy's post-compile expansion of IN lists.
    return or_(*(t.c.status == status for status in _UNFINISHED))


@functools.cache
def _execution_statements() -> dict[str, Any]:
    """The engine's per-execution statements, built once (named ``bindparam()``s): an advance runs
    several, and building them per call cost more than sending them."""
    t = tables.executions
    owner, now, until = bindparam("b_owner"), bindparam("b_now"), bindparam("b_until")
    by_id = t.c.id == bindparam("b_id")
    mine = t.c.lease_owner == owner
    free = or_(t.c.lease_owner.is_(None), t.c.lease_until < now, mine)
    return {
        name: prebuilt(statement)
        for name, statement in {
            "claim": update(t)
            .where(by_id, _unfinished(t), free)
            .values(lease_owner=owner, lease_until=until)
            .returning(*t.c),
            "fence": select(t.c.id).where(by_id, mine).with_for_update(),
            "renew": update(t).where(by_id, mine).values(lease_until=until),
            "release": update(t).where(by_id, mine).values(lease_owner=None, lease_until=None),
            "slots": select(
                func.count().filter(t.c.flow_id == bindparam("b_flow_id")).label("flow"),
                func.count().label("org"),
            ).where(t.c.org_id == bindparam("b_org_id"), t.c.status == "running"),
            "waiting": select(t.c.id)
            .where(t.c.org_id == bindparam("b_org_id"), t.c.status == "queued", t.c.wake_at.is_not(None))
            .order_by(t.c.created_at, t.c.id)
            .limit(bindparam("b_limit")),
            "waiting_locked": select(  # PostgreSQL (migration 0008)
                func.tolstoy_waiting_for_slot(
                    bindparam("b_org_id"), bindparam("b_limit"), type_=ARRAY(Text)
                ).label("ids")
            ),
        }.items()
    }


@functools.cache
def _admission_statement() -> Any:
    """PostgreSQL: an admission as one statement. ``tolstoy_admission_room`` (migration 0007)
    takes the organization's admission lock and counts running executions on a snapshot of its
    own, taken once the lock is held; the CTE holding its answer is materialised (a volatile
    function), so it runs once. Then either the ``started`` row and its event are written, or the
    ``waiting`` row with its lease let go; both only while the lease is the caller's. Answers
    (room, started rows, waiting rows)."""
    t, o = tables.executions, tables.outbox_events
    room = select(
        func.tolstoy_admission_room(
            bindparam("b_org_id"), bindparam("b_flow_id"), bindparam("b_flow_limit"), bindparam("b_org_limit")
        ).label("ok")
    ).cte("room")
    ok = select(room.c.ok).scalar_subquery()
    mine = and_(t.c.id == bindparam("b_id"), t.c.lease_owner == bindparam("b_owner"))
    columns = _columns(t)
    started = (
        update(t)
        .where(mine, ok)
        .values(
            {c: bindparam(f"p_{c}") for c in columns if c not in _EXECUTION_CONTROL | {"id", "created_at"}}
        )
        .returning(t.c.id)
        .cte("started")
    )
    waiting = (
        update(t)
        .where(mine, ~ok)
        .values(
            {c: bindparam(f"w_{c}") for c in columns if c not in {"id", "created_at", "cancel_requested"}}
        )
        .returning(t.c.id)
        .cte("waiting")
    )
    event_columns = _columns(o)
    event = insert(o).from_select(
        list(event_columns),
        select(*(bindparam(f"e_{c}", type_=o.c[c].type) for c in event_columns)).where(
            select(started.c.id).exists()
        ),
    )
    return prebuilt(
        select(
            ok.label("room"),
            select(func.count()).select_from(started).scalar_subquery().label("started"),
            select(func.count()).select_from(waiting).scalar_subquery().label("waiting"),
        ).add_cte(event.cte("event"))
    )


def _executions(name: str) -> Any:
    return _execution_statements()[name]


class SqlExecutionRepository(SqlTenantRepository[E]):
    def __init__(self, db: Executor) -> None:
        from domain.execution import Execution

        super().__init__(db, tables.executions, Execution, "Execution", frozenset({"flow_id", "status"}))

    async def update(self, entity: E) -> None:
        await self._update(entity, ("org_id", "id"), _EXECUTION_CONTROL)

    async def claim(self, execution_id: str, owner: str, until: Any, now: Any) -> E | None:
        params = {"b_id": execution_id, "b_owner": owner, "b_until": until, "b_now": now}
        row = await self._db.first(_executions("claim"), params)
        return None if row is None else self._from_row(row)

    async def save_and_release(self, entity: E) -> None:
        """Write the execution and let its lease go, in one statement (ends an advance)."""
        await self._update(entity, ("org_id", "id"), frozenset({"cancel_requested"}))

    async def fence(self, execution_id: str, owner: str) -> None:
        if getattr(self._db, "batched", False):  # checked by the batch's one statement, at commit
            self._db.fence = (execution_id, owner)
            return
        # In a transaction: the row lock (PostgreSQL; SQLite's writers hold the database lock from
        # BEGIN IMMEDIATE) keeps the lease ours until commit.
        if await self._db.first(_executions("fence"), {"b_id": execution_id, "b_owner": owner}) is None:
            raise LeaseLost(execution_id, owner)

    async def renew(self, execution_id: str, owner: str, until: Any) -> bool:
        return (
            await self._db.run(
                _executions("renew"), {"b_id": execution_id, "b_owner": owner, "b_until": until}
            )
            > 0
        )

    async def release(self, execution_id: str, owner: str) -> None:
        await self._db.run(_executions("release"), {"b_id": execution_id, "b_owner": owner})

    async def request_cancel(self, org_id: str, execution_id: str) -> bool:
        t = self._table
        statement = (
            update(t)
            .where(t.c.org_id == org_id, t.c.id == execution_id, _unfinished(t))
            .values(cancel_requested=True)
        )
        return await self._db.run(statement) > 0

    async def admit(self, started: E, waiting: E, event: Any, flow_limit: int, org_limit: int) -> bool:
        owner = started.lease_owner  # type: ignore[attr-defined]
        if getattr(self._db, "dialect", None) == "postgresql":
            params: dict[str, Any] = {
                "b_id": started.id,  # type: ignore[attr-defined]
                "b_owner": owner,
                "b_org_id": started.org_id,  # type: ignore[attr-defined]
                "b_flow_id": started.flow_id,  # type: ignore[attr-defined]
                "b_flow_limit": flow_limit,
                "b_org_limit": org_limit,
            }
            params.update({f"p_{k}": v for k, v in self._values(started).items()})
            params.update({f"w_{k}": v for k, v in self._values(waiting).items()})
            params.update({f"e_{k}": v for k, v in SqlOutboxRepository(self._db)._values(event).items()})
            row = await self._db.first(_admission_statement(), params)
            if row is None or not (row["started"] or row["waiting"]):
                raise LeaseLost(started.id, owner)  # type: ignore[attr-defined]
            return bool(row["started"])
        # SQLite: in the unit of work's transaction, which holds the database's one write lock
        # since its BEGIN IMMEDIATE: admissions are serialised by it.
        await self.fence(started.id, owner)  # type: ignore[attr-defined]
        row = await self._db.first(
            _executions("slots"),
            {"b_org_id": started.org_id, "b_flow_id": started.flow_id},  # type: ignore[attr-defined]
        )
        in_flow, in_org = (int(row["flow"]), int(row["org"])) if row else (0, 0)
        if in_flow >= flow_limit or in_org >= org_limit:
            await self.save_and_release(waiting)
            return False
        await self.update(started)
        await SqlOutboxRepository(self._db).add(event)
        return True

    async def due(
        self, now: Any, limit: int, owner: str | None = None, stale_before: Any = None
    ) -> list[tuple[str, str, Any]]:
        t = self._table
        free = [t.c.lease_owner.is_(None), t.c.lease_until < now]
        if owner is not None:
            free.append(t.c.lease_owner == owner)
        running = and_(t.c.status == "running", or_(*free))
        # Queued: refused a slot and due for another try, or never picked up (its job was lost).
        retry = and_(t.c.wake_at.is_not(None), t.c.wake_at <= now)
        lost = t.c.wake_at.is_(None)
        if stale_before is not None:
            lost = and_(lost, t.c.created_at < stale_before)
        queued = and_(t.c.status == "queued", or_(*free), or_(retry, lost))
        query = (
            select(t.c.org_id, t.c.id, t.c.wake_at)
            .where(or_(running, queued))
            .order_by(t.c.created_at, t.c.id)
            .limit(limit)
        )
        return [(r["org_id"], r["id"], r["wake_at"]) for r in await self._db.all(query)]

    async def waiting_for_slot(self, org_id: str, limit: int) -> Later[list[str]]:
        """PostgreSQL: under the organization's admission lock, held until this unit of work
        commits (``tolstoy_waiting_for_slot``, migration 0008), so that no admission refused
        around a conclusion goes unseen. SQLite: its writers' lock serialises them already."""
        locked = getattr(self._db, "dialect", None) == "postgresql"
        statement = _executions("waiting_locked" if locked else "waiting")
        params = {"b_org_id": org_id, "b_limit": limit}
        later: Later[list[str]] = Later()

        def receive(rows: list[Mapping[str, Any]]) -> None:  # one row of ids, or a row per id
            later.set((list(rows[0]["ids"]) if rows else []) if locked else [r["id"] for r in rows])

        at_commit = getattr(self._db, "at_commit", None)
        if at_commit is not None:  # batched: answered by the commit's one statement
            at_commit(statement, params, receive)
        else:
            receive(await self._db.all(statement, params))
        return later

    async def status_counts(self, org_id: str, flow_id: str) -> dict[str, int]:
        t = self._table
        query = (
            select(t.c.status, func.count().label("n"))
            .where(t.c.org_id == org_id, t.c.flow_id == flow_id)
            .group_by(t.c.status)
        )
        return {r["status"]: int(r["n"]) for r in await self._db.all(query)}

    async def average_duration_ms(self, org_id: str, start: Any, end: Any) -> float | None:
        t = self._table
        query = select(func.avg(t.c.duration_ms)).where(t.c.org_id == org_id, t.c.duration_ms.is_not(None))
        if start is not None:
            query = query.where(t.c.created_at >= start)
        if end is not None:
            query = query.where(t.c.created_at <= end)
        value = await self._db.scalar(query)
        return None if value is None else float(value)


class SqlStepStateRepository(_Rows[E]):
    def __init__(self, db: Executor) -> None:
        from domain.execution import StepState

        super().__init__(db, tables.execution_steps, StepState, "StepState")

    async def add(self, state: E) -> None:
        await self._insert(state)

    async def update(self, state: E) -> None:
        await self._update(state, ("id",), frozenset({"org_id", "execution_id", "step_id"}))

    async def for_execution(self, org_id: str, execution_id: str) -> list[E]:
        t = self._table
        query = select(t).where(t.c.org_id == org_id, t.c.execution_id == execution_id)
        return [self._from_row(row) for row in await self._db.all(query)]


class SqlExecutionLogRepository(SqlTenantRepository[E]):
    async def stats(self, org_id: str, start: Any, end: Any) -> dict[str, int]:
        t = self._table
        where = [t.c.org_id == org_id]
        if start is not None:
            where.append(t.c.created_at >= start)
        if end is not None:
            where.append(t.c.created_at <= end)
        executions = await self._db.scalar(select(func.count(distinct(t.c.execution_id))).where(*where))
        rows = await self._db.all(
            select(t.c.status, func.count().label("n")).where(*where).group_by(t.c.status)
        )
        counts = {r["status"]: int(r["n"]) for r in rows}
        return {
            "executions": int(executions),
            "completed": counts.get("completed", 0),
            "failed": counts.get("failed", 0),
            "skipped": counts.get("skipped", 0),
        }


class SqlOutboxRepository(SqlTenantRepository[E]):
    """The ``execution_id`` column is the payload's ``executionId`` (an index, not an entity field)."""

    def __init__(self, db: Executor) -> None:
        from domain.events import OutboxEvent

        super().__init__(db, tables.outbox_events, OutboxEvent, "OutboxEvent", frozenset({"type"}))

    def _values(self, entity: E) -> dict[str, Any]:
        values = {column: getattr(entity, column) for column in self._columns if column != "execution_id"}
        execution_id = values["payload"].get("executionId") if isinstance(values["payload"], dict) else None
        values["execution_id"] = execution_id if isinstance(execution_id, str) else None
        return values

    def _from_row(self, row: Mapping[str, Any]) -> E:
        return self._entity(**{k: v for k, v in row.items() if k != "execution_id"})

    async def for_execution(self, org_id: str, execution_id: str, since: Any, limit: int) -> list[E]:
        if not _storable(org_id, execution_id):
            return []
        t = self._table
        query = select(t).where(t.c.org_id == org_id, t.c.execution_id == execution_id)
        if since is not None:
            query = query.where(t.c.created_at >= since)
        query = query.order_by(t.c.created_at, t.c.id).limit(limit)
        return [self._from_row(row) for row in await self._db.all(query)]
