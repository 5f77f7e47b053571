"""Create, read, update and delete for the objects an organization owns.

One class per resource; each method is one user intention. The shared skeleton lives in
``TenantResources``; subclasses add the rules of their resource (derived keys, references that
must stay inside the organization, what may not be deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from application.cache import ACCESS, ReadCache
from application.ports import (
    Change,
    Clock,
    Page,
    SecretStore,
    TenantRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from application.tenancy import TenantContext
from domain.audit import AuditEvent
from domain.entity import Entity
from domain.errors import Conflict, InvalidReference, NotFound
from domain.execution import QUEUED, RUNNING
from domain.execution_log import LOG_STATUSES, ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.ids import new_id
from domain.input_schema import PatternCompiler, parse_schema
from domain.organization import User
from domain.rules import Problems, one_of, slugify
from domain.tool import AUTH_TYPES, HTTP_METHODS, Action, Tool

E = TypeVar("E", bound=Entity)


def audit_event(
    ctx: TenantContext, action: str, resource_type: str, resource_id: str, now: Any, **details: Any
) -> AuditEvent:
    return AuditEvent(
        id=new_id("aud"),
        org_id=ctx.org_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        actor_user_id=ctx.user_id,
        api_key_id=ctx.api_key_id,
        details=details,
        created_at=now,
    )


class TenantResources(Generic[E]):
    entity: ClassVar[type[Entity]]
    resource: ClassVar[str]  # "Tool": in messages
    kind: ClassVar[str]  # "tool": in audit actions
    id_prefix: ClassVar[str]
    repository: ClassVar[Callable[[UnitOfWork], TenantRepository[Any]]]
    # Kept in a ReadCache when one is given: only kinds whose every write goes through
    # update/delete here (which announce the change) or dies with their organization.
    cached: ClassVar[bool] = False
    # Filters on fields that take one of a few values: {field: (its public name, the values)}. A
    # value outside them is a mistake (a typo would otherwise match nothing, silently).
    choices: ClassVar[Mapping[str, tuple[str, tuple[str, ...]]]] = {}

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, *, cache: ReadCache | None = None
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._cache = cache if self.cached else None

    def _filters(self, wanted: dict[str, Any]) -> dict[str, Any]:
        problems = Problems()
        for field, (name, allowed) in self.choices.items():
            if field in wanted:
                one_of(problems, name, wanted[field], allowed)
        problems.raise_if_any()
        return wanted

    async def get(self, ctx: TenantContext, entity_id: str) -> E:
        cache, token = self._cache, None
        if cache is not None:
            found = cache.get(self.kind, ctx.org_id, entity_id)
            if found is not None:
                return found  # type: ignore[no-any-return]
            token = cache.token()
        async with self._uow(read_only=True) as uow:
            entity = await self._load(uow, ctx, entity_id)
        if cache is not None:
            cache.put(self.kind, ctx.org_id, entity_id, entity, token)
        return entity

    async def list(self, ctx: TenantContext, page: Page, filters: Mapping[str, Any] | None = None) -> list[E]:
        wanted = self._filters({k: v for k, v in (filters or {}).items() if v is not None})
        async with self._uow(read_only=True) as uow:
            return await type(self).repository(uow).list(ctx.org_id, page, wanted)

    async def create(self, ctx: TenantContext, **fields: Any) -> E:
        now = self._clock.now()
        fields = self._defaults(ctx, fields, None)
        entity = self.entity.build(id=new_id(self.id_prefix), now=now, org_id=ctx.org_id, **fields)
        self._check(entity)
        async with self._uow() as uow:
            await self._check_references(uow, entity, None)
            await type(self).repository(uow).add(entity)
            await self._after_write(uow, ctx, entity, None)
            await uow.audit.add(audit_event(ctx, f"{self.kind}.created", self.kind, entity.id, now))
            await uow.commit()
        return entity  # type: ignore[return-value]

    async def update(self, ctx: TenantContext, entity_id: str, **changes: Any) -> E:
        now = self._clock.now()
        async with self._uow() as uow:
            current = await self._load(uow, ctx, entity_id)
            updated = current.changed(now=now, **self._defaults(ctx, changes, current))
            if updated is not current:
                self._check(updated)
                await self._check_references(uow, updated, current)
                await type(self).repository(uow).update(updated)
                await self._after_write(uow, ctx, updated, current)
                changed = sorted(k for k in changes if getattr(updated, k) != getattr(current, k))
                await uow.audit.add(
                    audit_event(ctx, f"{self.kind}.updated", self.kind, entity_id, now, fields=changed)
                )
                await self._announce(uow, ctx, entity_id, deleted=False)
                await uow.commit()
        return updated

    async def delete(self, ctx: TenantContext, entity_id: str) -> E:
        now = self._clock.now()
        async with self._uow() as uow:
            current = await self._load(uow, ctx, entity_id)
            await self._before_delete(uow, ctx, current)
            await type(self).repository(uow).delete(ctx.org_id, entity_id)
            await uow.audit.add(audit_event(ctx, f"{self.kind}.deleted", self.kind, entity_id, now))
            await self._announce(uow, ctx, entity_id, deleted=True)
            await uow.commit()
        return current

    async def _announce(self, uow: UnitOfWork, ctx: TenantContext, entity_id: str, *, deleted: bool) -> None:
        """Tell every process that copies of this object are out of date (updated or deleted)."""
        if self.cached:
            await uow.changes.publish(Change(self.kind, ctx.org_id, entity_id))

    async def _load(self, uow: UnitOfWork, ctx: TenantContext, entity_id: str) -> E:
        found = await type(self).repository(uow).get(ctx.org_id, entity_id)
        if found is None:
            raise NotFound(self.resource, entity_id)
        return found

    def _defaults(self, ctx: TenantContext, fields: dict[str, Any], current: E | None) -> dict[str, Any]:
        """Values derived when the caller leaves them out. ``current`` is None on create."""
        return fields

    def _check(self, entity: E) -> None:
        """Rules beyond the entity's own fields that need a collaborator (after field validation)."""
        return None

    async def _check_references(self, uow: UnitOfWork, entity: E, current: E | None) -> None:
        """References must point inside the entity's organization (checked after validation)."""
        return None

    async def _before_delete(self, uow: UnitOfWork, ctx: TenantContext, entity: E) -> None:
        return None

    async def _after_write(self, uow: UnitOfWork, ctx: TenantContext, entity: E, current: E | None) -> None:
        """Writes that belong to the same transaction as the entity's (``current`` None: created)."""
        return None


def _default_key(fields: dict[str, Any], current: Any) -> dict[str, Any]:
    if current is None and fields.get("key") is None and isinstance(fields.get("name"), str):
        return {**fields, "key": slugify(fields["name"])}
    return fields


async def _must_exist(
    repo: TenantRepository[Any], org_id: str, ref_id: str | None, before: str | None, field: str, what: str
) -> None:
    """``ref_id`` must name an object of ``org_id``; unchanged references are not looked up again."""
    if ref_id is not None and ref_id != before and await repo.get(org_id, ref_id) is None:
        raise InvalidReference(field, f"{what} '{ref_id}' does not exist in this organization")


class Users(TenantResources[User]):
    entity, resource, kind, id_prefix = User, "User", "user", "usr"
    repository = staticmethod(lambda uow: uow.users)

    async def _announce(self, uow: UnitOfWork, ctx: TenantContext, entity_id: str, *, deleted: bool) -> None:
        if deleted:  # a deleted user may no longer act through X-User-ID: keys resolved with it go
            await uow.changes.publish(Change(ACCESS, ctx.org_id, entity_id))


class Tools(TenantResources[Tool]):
    entity, resource, kind, id_prefix = Tool, "Tool", "tool", "tool"
    repository = staticmethod(lambda uow: uow.tools)
    choices = {"auth_type": ("authType", AUTH_TYPES)}

    cached = True

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        secrets: SecretStore | None = None,
        *,
        cache: ReadCache | None = None,
    ) -> None:
        super().__init__(uow_factory, clock, cache=cache)
        self._secrets = secrets

    async def delete(self, ctx: TenantContext, entity_id: str) -> Tool:
        deleted = await super().delete(ctx, entity_id)
        if self._secrets is not None:  # the database cascades its own rows; an external store does not
            await self._secrets.delete(ctx.org_id, entity_id)
        return deleted

    def _defaults(self, ctx, fields, current):  # type: ignore[override]
        return _default_key(fields, current)

    async def _before_delete(self, uow: UnitOfWork, ctx: TenantContext, entity: Tool) -> None:
        if await uow.actions.list(ctx.org_id, Page(limit=1), {"tool_id": entity.id}):
            raise Conflict(f"Tool '{entity.id}' still has actions; delete or move them first")


class Actions(TenantResources[Action]):
    """Actions keep their inputSchema exactly as given, once it has been checked to be usable."""

    entity, resource, kind, id_prefix = Action, "Action", "action", "act"
    repository = staticmethod(lambda uow: uow.actions)
    choices = {"method": ("method", HTTP_METHODS)}

    def _filters(self, wanted: dict[str, Any]) -> dict[str, Any]:
        if isinstance(wanted.get("method"), str):  # stored upper-case, as given in any case
            wanted["method"] = wanted["method"].upper()
        return super()._filters(wanted)

    cached = True

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        compile_pattern: PatternCompiler,
        *,
        cache: ReadCache | None = None,
    ) -> None:
        super().__init__(uow_factory, clock, cache=cache)
        self._compile_pattern = compile_pattern

    def _check(self, entity: Action) -> None:
        parse_schema(entity.input_schema, self._compile_pattern)

    def _defaults(self, ctx, fields, current):  # type: ignore[override]
        return _default_key(fields, current)

    async def _check_references(self, uow: UnitOfWork, entity: Action, current: Action | None) -> None:
        before = current.tool_id if current else None
        await _must_exist(uow.tools, entity.org_id, entity.tool_id, before, "toolId", "Tool")


class Flows(TenantResources[Flow]):
    entity, resource, kind, id_prefix = Flow, "Flow", "flow", "flow"
    repository = staticmethod(lambda uow: uow.flows)
    cached = True

    async def _after_write(
        self, uow: UnitOfWork, ctx: TenantContext, entity: Flow, current: Flow | None
    ) -> None:
        if current is None or entity.version != current.version:
            await uow.flow_versions.add(entity.snapshot(version_id=new_id("fv"), created_by=ctx.user_id))

    async def _before_delete(self, uow: UnitOfWork, ctx: TenantContext, entity: Flow) -> None:
        """Deleting a flow deletes its executions' history with it: not while one is still queued
        or running (it would vanish mid-run)."""
        for status in (RUNNING, QUEUED):
            if await uow.executions.list(ctx.org_id, Page(limit=1), {"flow_id": entity.id, "status": status}):
                raise Conflict(
                    f"Flow '{entity.id}' has executions that are still {status}; cancel them or let them finish first"
                )

    async def versions(self, ctx: TenantContext, flow_id: str, page: Page) -> list[FlowVersion]:
        async with self._uow(read_only=True) as uow:
            await self._load(uow, ctx, flow_id)
            found = await uow.flow_versions.list(ctx.org_id, page, {"flow_id": flow_id})
        return sorted(found, key=lambda v: v.version, reverse=True)


class ExecutionLogs(TenantResources[ExecutionLog]):
    entity, resource, kind, id_prefix = ExecutionLog, "ExecutionLog", "execution_log", "log"
    repository = staticmethod(lambda uow: uow.execution_logs)
    choices = {"status": ("status", LOG_STATUSES)}

    def _defaults(self, ctx, fields, current):  # type: ignore[override]
        if current is None:
            return {**fields, "user_id": fields.get("user_id") or ctx.user_id}
        return fields

    async def _check_references(
        self, uow: UnitOfWork, entity: ExecutionLog, current: ExecutionLog | None
    ) -> None:
        await _must_exist(
            uow.flows, entity.org_id, entity.flow_id, current.flow_id if current else None, "flowId", "Flow"
        )
        await _must_exist(
            uow.users, entity.org_id, entity.user_id, current.user_id if current else None, "userId", "User"
        )
