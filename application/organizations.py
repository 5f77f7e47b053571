"""Organizations and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.cache import ACCESS, ORGANIZATION
from application.ports import Change, Clock, Page, UnitOfWorkFactory
from application.resources import TenantResources, audit_event
from application.tenancy import Authenticator, Caller, TenantContext, generate_api_key
from domain.audit import AuditEvent
from domain.errors import NotFound, PermissionDenied
from domain.ids import new_id
from domain.organization import ApiKey, Organization


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: the only moment its plaintext exists."""

    key: ApiKey
    plaintext: str


def _issue_key(ctx: TenantContext, name: Any, now: Any) -> IssuedKey:
    new = generate_api_key()
    key = ApiKey.build(
        id=new_id("key"),
        now=now,
        org_id=ctx.org_id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        created_by=ctx.user_id,
    )
    return IssuedKey(key, new.plaintext)


class Organizations:
    """The operator (admin token) manages organizations; an organization sees only itself."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, auth: Authenticator) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._auth = auth

    async def create(self, caller: Caller, *, name: Any) -> tuple[Organization, IssuedKey]:
        self._auth.require_admin(caller)
        now = self._clock.now()
        org = Organization.build(id=new_id("org"), now=now, name=name)
        issued = _issue_key(TenantContext(org_id=org.id), "default", now)
        async with self._uow() as uow:
            await uow.organizations.add(org)
            await uow.api_keys.add(issued.key)
            await uow.audit.add(
                audit_event(TenantContext(org.id), "organization.created", "organization", org.id, now)
            )
            await uow.commit()
        return org, issued

    async def list(self, caller: Caller, page: Page) -> list[Organization]:
        only = None if caller.admin else self._tenant(caller).org_id
        async with self._uow(read_only=True) as uow:
            return await uow.organizations.list(page, only_id=only)

    async def get(self, caller: Caller, org_id: str) -> Organization:
        self._visible(caller, org_id)
        async with self._uow(read_only=True) as uow:
            org = await uow.organizations.get(org_id)
        if org is None:
            raise NotFound("Organization", org_id)
        return org

    async def update(self, caller: Caller, org_id: str, *, name: Any) -> Organization:
        self._visible(caller, org_id)
        now = self._clock.now()
        async with self._uow() as uow:
            org = await uow.organizations.get(org_id)
            if org is None:
                raise NotFound("Organization", org_id)
            updated = org.changed(now=now, name=name)
            if updated is not org:
                await uow.organizations.update(updated)
                ctx = caller.tenant or TenantContext(org_id)
                await uow.audit.add(audit_event(ctx, "organization.updated", "organization", org_id, now))
                await uow.commit()
        return updated

    async def delete(self, caller: Caller, org_id: str) -> Organization:
        """Deletes the organization and everything it owns; answers what was deleted."""
        self._visible(caller, org_id)
        self._auth.require_admin(caller)
        async with self._uow() as uow:
            org = await uow.organizations.get(org_id)
            if org is None or not await uow.organizations.delete(org_id):
                raise NotFound("Organization", org_id)
            # its keys stop working at once, and copies of what it owned go, in every process
            await uow.changes.publish(Change(ORGANIZATION, org_id))
            await uow.commit()
        return org

    @staticmethod
    def _tenant(caller: Caller) -> TenantContext:
        if caller.tenant is None:  # pragma: no cover - a Caller is admin or has a tenant
            raise PermissionDenied("No organization")
        return caller.tenant

    def _visible(self, caller: Caller, org_id: str) -> None:
        # Another tenant's organization answers 404, exactly like any other foreign id.
        if not caller.admin and self._tenant(caller).org_id != org_id:
            raise NotFound("Organization", org_id)


class ApiKeys(TenantResources[ApiKey]):
    """An organization's keys. Creating one returns its plaintext once; deleting revokes it."""

    entity, resource, kind, id_prefix = ApiKey, "ApiKey", "api_key", "key"
    repository = staticmethod(lambda uow: uow.api_keys)

    async def issue(self, ctx: TenantContext, *, name: Any) -> IssuedKey:
        now = self._clock.now()
        issued = _issue_key(ctx, name, now)
        async with self._uow() as uow:
            await uow.api_keys.add(issued.key)
            await uow.audit.add(audit_event(ctx, "api_key.created", "api_key", issued.key.id, now))
            await uow.commit()
        return issued

    async def revoke(self, ctx: TenantContext, key_id: str) -> ApiKey:
        now = self._clock.now()
        async with self._uow() as uow:
            key = await self._load(uow, ctx, key_id)
            revoked = key.revoke(now)
            if revoked is not key:
                await uow.api_keys.update(revoked)
                await uow.audit.add(audit_event(ctx, "api_key.revoked", "api_key", key_id, now))
                await uow.changes.publish(Change(ACCESS, ctx.org_id, key_id))  # it stops working at once
                await uow.commit()
        return revoked


class AuditTrail(TenantResources[AuditEvent]):
    """Read-only: the audit trail is written by the other use-cases, never edited."""

    resource, kind = "AuditEvent", "audit_event"
    repository = staticmethod(lambda uow: uow.audit)
