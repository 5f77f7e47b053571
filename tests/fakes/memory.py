"""In-memory persistence that keeps the promises of the SQL adapter (adapters/persistence).

A unit of work writes to a private copy of the committed tables and records its writes. Commit
puts the copy in place of the committed tables; if another unit of work committed meanwhile, the
recorded writes are replayed on the newer tables instead, so nothing committed is lost and every
constraint is checked again. Leaving without commit discards the copy. A read-only unit of work
reads the committed tables and autocommits each write, like the SQL adapter's AUTOCOMMIT
connection. Entities are copied on the way in and out, as rows are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from copy import deepcopy
from types import TracebackType
from typing import Any, Self

from application.ports import Change, KeyOwner, Later, LeaseLost, Page
from domain.errors import Conflict, FieldError, InvalidReference

Tables = dict[str, dict[str, Any]]  # table -> id -> entity

RESOURCES = {
    "organizations": "Organization",
    "users": "User",
    "api_keys": "ApiKey",
    "tools": "Tool",
    "actions": "Action",
    "flows": "Flow",
    "execution_logs": "ExecutionLog",
    "audit": "AuditEvent",
    "credentials": "ToolCredentials",
    "outbox": "OutboxEvent",
    "flow_versions": "FlowVersion",
    "executions": "Execution",
    "execution_steps": "StepState",
}
FILTERABLE = {
    "users": frozenset({"email"}),
    "api_keys": frozenset(),
    "tools": frozenset({"key", "auth_type"}),
    "actions": frozenset({"tool_id", "key", "method"}),
    "flows": frozenset({"name"}),
    "execution_logs": frozenset({"flow_id", "execution_id", "step_key", "status", "user_id"}),
    "audit": frozenset({"action", "resource_type", "resource_id"}),
    "credentials": frozenset({"tool_id"}),
    "outbox": frozenset({"type"}),
    "flow_versions": frozenset({"flow_id", "version"}),
    "executions": frozenset({"flow_id", "status"}),
    "execution_steps": frozenset({"execution_id"}),
}
UNIQUE_IN_ORG = {
    "users": "email",
    "tools": "key",
    "actions": "key",
    "credentials": "tool_id",
}  # (org_id, column)
# (child, column, parent, parent must be of the child's organization, on delete)
FOREIGN_KEYS = (
    ("actions", "tool_id", "tools", True, "restrict"),
    ("execution_logs", "flow_id", "flows", True, "cascade"),
    ("execution_logs", "user_id", "users", False, "set null"),
    ("credentials", "tool_id", "tools", True, "cascade"),
    ("flow_versions", "flow_id", "flows", True, "cascade"),
    ("executions", "flow_id", "flows", True, "cascade"),
    ("execution_steps", "execution_id", "executions", False, "cascade"),
)
# Every tenant table goes with its organization (ON DELETE CASCADE, through a parent for the
# engine's tables, or deleted by the repository: the outbox). Children come before their parents,
# so removing an organization's rows in this order never meets a restricting reference.
OWNED_BY_ORGANIZATION = (
    "outbox",
    "execution_steps",
    "executions",
    "flow_versions",
    "execution_logs",
    "audit",
    "credentials",
    "actions",
    "api_keys",
    "tools",
    "flows",
    "users",
)


def _broken_reference() -> InvalidReference:
    return InvalidReference("id", "A referenced object does not exist in this organization")


def _duplicate(table: str, column: str | None = None) -> Conflict:
    resource = RESOURCES[table].lower()
    if column is None:  # the primary key, or api_keys.key_hash: unique across organizations
        return Conflict(f"This {resource} conflicts with an existing one")
    message = f"A {resource} with this {column} already exists in the organization"
    return Conflict(message, [FieldError(column, message, "already_exists")])


def _exists(tables: Tables, table: str, row_id: Any, org_id: str | None) -> bool:
    row = tables[table].get(row_id)
    return row is not None and (org_id is None or row.org_id == org_id)


def _check(tables: Tables, table: str, row: Any) -> None:
    """The constraints of one row about to be written, unique ones first as the databases do."""
    others = [other for other in tables[table].values() if other.id != row.id]
    column = UNIQUE_IN_ORG.get(table)
    if column and any(o.org_id == row.org_id and getattr(o, column) == getattr(row, column) for o in others):
        raise _duplicate(table, column)
    if table == "api_keys" and any(o.key_hash == row.key_hash for o in others):
        raise _duplicate(table)
    if table != "organizations" and row.org_id not in tables["organizations"]:
        raise _broken_reference()
    for child, column, parent, same_org, _ in FOREIGN_KEYS:
        value = getattr(row, column) if child == table else None
        if value is not None and not _exists(tables, parent, value, row.org_id if same_org else None):
            raise _broken_reference()


def _insert(tables: Tables, table: str, row: Any) -> None:
    if row.id in tables[table]:
        raise _duplicate(table)
    _check(tables, table, row)
    tables[table][row.id] = row


def _update(tables: Tables, table: str, row: Any) -> None:
    """UPDATE … WHERE [org_id = :org AND] id = :id: no matching row, nothing happens."""
    old = tables[table].get(row.id)
    if old is None or (table != "organizations" and old.org_id != row.org_id):
        return
    if table == "organizations":  # the SQL adapter writes only these two columns
        new = dataclasses.replace(old, name=row.name, updated_at=row.updated_at)
    else:
        new = dataclasses.replace(row, created_at=old.created_at)
    _check(tables, table, new)
    tables[table][row.id] = new


def _delete(tables: Tables, table: str, org_id: str | None, row_id: str) -> bool:
    """DELETE … WHERE [org_id = :org AND] id = :id, with the schema's ON DELETE rules."""
    row = tables[table].get(row_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        return False
    if table == "organizations":
        for child in OWNED_BY_ORGANIZATION:
            for owned in [r for r in tables[child].values() if r.org_id == row_id]:
                _remove(tables, child, owned)
    _remove(tables, table, row)
    return True


def _remove(tables: Tables, table: str, row: Any) -> None:
    referring = [
        (child, column, on_delete, other)
        for child, column, parent, same_org, on_delete in FOREIGN_KEYS
        if parent == table
        for other in tables[child].values()
        if getattr(other, column) == row.id and (not same_org or other.org_id == row.org_id)
    ]
    if any(on_delete == "restrict" for _, _, on_delete, _ in referring):
        raise _broken_reference()  # checked before any change: the statement changes nothing
    del tables[table][row.id]
    for child, column, on_delete, other in referring:
        if on_delete == "cascade":
            _remove(tables, child, other)
        else:
            tables[child][other.id] = dataclasses.replace(other, **{column: None})


def _newest_first(rows: list[Any], page: Page) -> list[Any]:
    rows = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    return [deepcopy(r) for r in rows[page.offset : page.offset + page.limit]]


class MemoryStore:
    """The committed data, shared by every unit of work of one factory."""

    def __init__(self) -> None:
        self.tables: Tables = {table: {} for table in RESOURCES}
        self.version = 0

    def copy(self) -> Tables:
        return {table: dict(rows) for table, rows in self.tables.items()}

    def replace(self, tables: Tables) -> None:
        self.tables = tables
        self.version += 1


class _Repository:
    def __init__(self, uow: MemoryUnitOfWork, table: str) -> None:
        self._uow, self._table = uow, table

    def _rows(self) -> dict[str, Any]:
        return self._uow._tables()[self._table]

    async def add(self, entity: Any) -> None:
        self._uow._write(_insert, self._table, deepcopy(entity))

    async def update(self, entity: Any) -> None:
        self._uow._write(_update, self._table, deepcopy(entity))

    async def count(self) -> int:
        return len(self._rows())


class MemoryTenantRepository(_Repository):
    async def get(self, org_id: str, entity_id: str) -> Any | None:
        row = self._rows().get(entity_id)
        return deepcopy(row) if row is not None and row.org_id == org_id else None

    async def list(self, org_id: str, page: Page, filters: Mapping[str, Any] | None = None) -> list[Any]:
        filters = dict(filters or {})
        for name in filters:
            if name not in FILTERABLE[self._table]:
                raise ValueError(f"{RESOURCES[self._table]} cannot be filtered by {name}")
        rows = [
            row
            for row in self._rows().values()
            if row.org_id == org_id and all(getattr(row, k) == v for k, v in filters.items())
        ]
        return _newest_first(rows, page)

    async def delete(self, org_id: str, entity_id: str) -> bool:
        return self._uow._write(_delete, self._table, org_id, entity_id)


class MemoryApiKeyRepository(MemoryTenantRepository):
    async def resolve(self, key_hash: str, user_id: str | None) -> KeyOwner | None:
        key = next((k for k in self._rows().values() if k.key_hash == key_hash), None)
        if key is None:
            return None
        member = user_id is not None and _exists(self._uow._tables(), "users", user_id, key.org_id)
        return KeyOwner(key.id, key.org_id, key.revoked_at is not None, member)


class MemoryOutboxRepository(MemoryTenantRepository):
    async def for_execution(self, org_id: str, execution_id: str, since: Any, limit: int) -> list[Any]:
        rows = [
            row
            for row in self._rows().values()
            if row.org_id == org_id
            and row.payload.get("executionId") == execution_id
            and (since is None or row.created_at >= since)
        ]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return [deepcopy(r) for r in rows[:limit]]


class MemoryOrganizationRepository(_Repository):
    async def get(self, org_id: str) -> Any | None:
        return deepcopy(self._rows().get(org_id))

    async def list(self, page: Page, only_id: str | None = None) -> list[Any]:
        return _newest_first([o for o in self._rows().values() if only_id in (None, o.id)], page)

    async def delete(self, org_id: str) -> bool:
        return self._uow._write(_delete, self._table, None, org_id)


_CONTROL = ("lease_owner", "lease_until", "cancel_requested")
_UNFINISHED = ("queued", "running")


def _set(tables: Tables, table: str, row_id: str, changes: dict[str, Any]) -> None:
    row = tables[table].get(row_id)
    if row is not None:
        tables[table][row_id] = dataclasses.replace(row, **changes)


def _keep_control(tables: Tables, table: str, row: Any) -> None:
    old = tables[table].get(row.id)
    if old is not None:
        row = dataclasses.replace(row, **{k: getattr(old, k) for k in _CONTROL})
    _update(tables, table, row)


def _keep_cancel(tables: Tables, table: str, row: Any) -> None:
    old = tables[table].get(row.id)
    if old is not None:
        row = dataclasses.replace(row, cancel_requested=old.cancel_requested)
    _update(tables, table, row)


class MemoryExecutionRepository(MemoryTenantRepository):
    async def update(self, entity: Any) -> None:
        self._uow._write(_keep_control, self._table, deepcopy(entity))

    async def claim(self, execution_id: str, owner: str, until: Any, now: Any) -> Any | None:
        row = self._rows().get(execution_id)
        if row is None or row.status not in _UNFINISHED:
            return None
        if row.lease_owner not in (None, owner) and row.lease_until >= now:
            return None
        self._uow._write_now(_set, self._table, execution_id, {"lease_owner": owner, "lease_until": until})
        return deepcopy(self._rows()[execution_id])

    async def fence(self, execution_id: str, owner: str) -> None:
        self._uow._tables()
        self._uow.fences.append((execution_id, owner))  # checked at commit, against what is committed

    async def renew(self, execution_id: str, owner: str, until: Any) -> bool:
        row = self._rows().get(execution_id)
        if row is None or row.lease_owner != owner:
            return False
        self._uow._write(_set, self._table, execution_id, {"lease_until": until})
        return True

    async def release(self, execution_id: str, owner: str) -> None:
        row = self._rows().get(execution_id)
        if row is not None and row.lease_owner == owner:
            self._uow._write(_set, self._table, execution_id, {"lease_owner": None, "lease_until": None})

    async def request_cancel(self, org_id: str, execution_id: str) -> bool:
        row = self._rows().get(execution_id)
        if row is None or row.org_id != org_id or row.status not in _UNFINISHED:
            return False
        self._uow._write(_set, self._table, execution_id, {"cancel_requested": True})
        return True

    async def admit(self, started: Any, waiting: Any, event: Any, flow_limit: int, org_limit: int) -> bool:
        # One event loop: admissions cannot interleave inside a unit of work.
        row = self._rows().get(started.id)
        if row is None or row.lease_owner != started.lease_owner:
            raise LeaseLost(started.id, started.lease_owner)
        running = [r for r in self._rows().values() if r.org_id == started.org_id and r.status == "running"]
        if sum(r.flow_id == started.flow_id for r in running) >= flow_limit or len(running) >= org_limit:
            self._uow._write_now(_keep_cancel, self._table, deepcopy(waiting))
            return False
        self._uow._write_now(_keep_control, self._table, deepcopy(started))
        self._uow._write_now(_insert, "outbox", deepcopy(event))
        return True

    async def due(
        self, now: Any, limit: int, owner: str | None = None, stale_before: Any = None
    ) -> list[tuple[str, str, Any]]:
        def free(r: Any) -> bool:
            return (
                r.lease_owner is None or r.lease_until < now or (owner is not None and r.lease_owner == owner)
            )

        def wanted(r: Any) -> bool:
            if r.status == "running":
                return True
            if r.status != "queued":
                return False
            if r.wake_at is not None:
                return r.wake_at <= now
            return stale_before is None or r.created_at < stale_before

        rows = [r for r in self._rows().values() if free(r) and wanted(r)]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return [(r.org_id, r.id, r.wake_at) for r in rows[:limit]]

    async def waiting_for_slot(self, org_id: str, limit: int) -> Later[list[str]]:
        rows = [
            r
            for r in self._rows().values()
            if r.org_id == org_id and r.status == "queued" and r.wake_at is not None
        ]
        rows.sort(key=lambda r: (r.created_at, r.id))
        later: Later[list[str]] = Later()
        later.set([r.id for r in rows[:limit]])
        return later

    async def save_and_release(self, entity: Any) -> None:
        self._uow._write(_keep_cancel, self._table, deepcopy(entity))

    async def status_counts(self, org_id: str, flow_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._rows().values():
            if r.org_id == org_id and r.flow_id == flow_id:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    async def average_duration_ms(self, org_id: str, start: Any, end: Any) -> float | None:
        values = [
            r.duration_ms
            for r in self._rows().values()
            if r.org_id == org_id
            and r.duration_ms is not None
            and (start is None or r.created_at >= start)
            and (end is None or r.created_at <= end)
        ]
        return sum(values) / len(values) if values else None


class MemoryStepStateRepository(_Repository):
    async def for_execution(self, org_id: str, execution_id: str) -> list[Any]:
        rows = self._rows().values()
        return [deepcopy(r) for r in rows if r.org_id == org_id and r.execution_id == execution_id]


class MemoryExecutionLogRepository(MemoryTenantRepository):
    async def stats(self, org_id: str, start: Any, end: Any) -> dict[str, int]:
        rows = [
            r
            for r in self._rows().values()
            if r.org_id == org_id
            and (start is None or r.created_at >= start)
            and (end is None or r.created_at <= end)
        ]
        return {
            "executions": len({r.execution_id for r in rows}),
            "completed": sum(r.status == "completed" for r in rows),
            "failed": sum(r.status == "failed" for r in rows),
            "skipped": sum(r.status == "skipped" for r in rows),
        }


class MemoryChangeNotices:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow
        self.published: list[Change] = []

    async def publish(self, change: Change) -> None:
        self._uow._tables()  # inside 'async with' only
        if self._uow._batched:
            raise RuntimeError("a batched unit of work cannot announce changes")
        self.published.append(change)


class MemoryUnitOfWork:
    def __init__(
        self,
        store: MemoryStore,
        read_only: bool,
        batched: bool = False,
        heard: Callable[[Change], None] | None = None,
    ) -> None:
        self._store, self._read_only, self._batched = store, read_only, batched
        self._heard = heard
        self.changes = MemoryChangeNotices(self)
        self.fences: list[tuple[str, str]] = []
        self._written: set[tuple[str, Any]] = set()
        self._active = False
        self._work: Tables = {}
        self._writes: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._version = store.version
        self.organizations = MemoryOrganizationRepository(self, "organizations")
        self.api_keys = MemoryApiKeyRepository(self, "api_keys")
        self.users = MemoryTenantRepository(self, "users")
        self.tools = MemoryTenantRepository(self, "tools")
        self.credentials = MemoryTenantRepository(self, "credentials")
        self.outbox = MemoryOutboxRepository(self, "outbox")
        self.actions = MemoryTenantRepository(self, "actions")
        self.flows = MemoryTenantRepository(self, "flows")
        self.execution_logs = MemoryExecutionLogRepository(self, "execution_logs")
        self.flow_versions = MemoryTenantRepository(self, "flow_versions")
        self.executions = MemoryExecutionRepository(self, "executions")
        self.execution_steps = MemoryStepStateRepository(self, "execution_steps")
        self.audit = MemoryTenantRepository(self, "audit")

    async def __aenter__(self) -> Self:
        self._begin()
        self._active = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._active, self._work, self._writes = False, {}, []

    async def commit(self) -> None:
        tables = self._tables()
        if self._read_only:
            return
        try:
            for execution_id, owner in self.fences:
                row = self._store.tables["executions"].get(execution_id)
                if row is None or row.lease_owner != owner:
                    raise LeaseLost(execution_id, owner)
            if self._store.version != self._version:  # someone committed since we began
                tables = self._store.copy()
                for write, args in self._writes:
                    write(tables, *args)
            self._store.replace(tables)
            published, self.changes.published = self.changes.published, []
            for change in published if self._heard is not None else ():
                self._heard(change)
        finally:
            self._begin()

    async def rollback(self) -> None:
        self._tables()
        self._begin()

    def _begin(self) -> None:
        self.changes.published = []
        self.fences = []
        self._written = set()
        self._version = self._store.version
        self._work = {} if self._read_only else self._store.copy()
        self._writes = []

    def _tables(self) -> Tables:
        if not self._active:
            raise RuntimeError("Use the unit of work inside 'async with'")
        return self._store.tables if self._read_only else self._work

    def _write(self, write: Callable[..., Any], *args: Any) -> Any:
        tables = self._tables()
        if self._batched:
            # A batched unit of work is one statement on PostgreSQL, where a second change of the
            # same row would be lost: the fake refuses it, so engine tests catch such a batch.
            table, target = args[0], args[2] if write is _delete else args[1]
            key = (table, getattr(target, "id", target))
            if key in self._written:
                raise RuntimeError(f"a batched unit of work wrote {key} twice")
            self._written.add(key)
        if self._read_only:  # AUTOCOMMIT: each statement is committed on its own
            tables = self._store.copy()
        result = write(tables, *args)
        if self._read_only:
            self._store.replace(tables)
        else:
            self._writes.append((write, args))
        return result

    def _write_now(self, write: Callable[..., Any], *args: Any) -> Any:
        """A write sent as a statement of its own, not held in the batch: in a batched unit of
        work it is committed at once (PostgreSQL runs such a statement in autocommit), and is no
        part of the batch's one-change-per-row rule. Otherwise an ordinary write."""
        if not self._batched:
            return self._write(write, *args)
        committed = self._store.copy()
        write(committed, *args)
        self._store.replace(committed)
        return write(self._tables(), *args)  # and this unit of work sees it from now on


class MemoryUnitOfWorkFactory:
    def __init__(
        self, store: MemoryStore | None = None, heard: Callable[[Change], None] | None = None
    ) -> None:
        self.store = store if store is not None else MemoryStore()
        self.heard = heard  # told of the changes announced by committed units of work

    def __call__(self, *, read_only: bool = False, batched: bool = False) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store, read_only, batched, None if read_only else self.heard)
