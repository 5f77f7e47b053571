"""Tool credentials: stored in a SecretStore, shown masked, unmasked only on purpose and audited."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.ports import Clock, Page, SecretStore, UnitOfWorkFactory
from application.resources import audit_event
from application.tenancy import TenantContext
from domain.credentials import ToolCredentials, mask, validate_credentials
from domain.errors import NotFound, PermissionDenied
from domain.ids import new_id
from domain.tool import Tool


@dataclass(frozen=True, slots=True)
class CredentialView:
    tool: Tool
    values: dict[str, str]  # masked unless unmasked on purpose
    masked: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    tool: Tool
    keys: list[str] | None  # None: no credentials stored


def _view(tool: Tool, meta: ToolCredentials, values: dict[str, str], *, masked: bool) -> CredentialView:
    shown = {k: mask(v) for k, v in values.items()} if masked else values
    return CredentialView(tool, shown, masked, meta.created_at, meta.updated_at)


class NoCredentials(NotFound):
    def __init__(self, tool_id: str) -> None:
        super().__init__("Credentials of tool", tool_id)
        self.message = f"No credentials are stored for tool '{tool_id}'"


class ToolCredentialsService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, store: SecretStore, allow_unmask: bool
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._store = store
        self._allow_unmask = allow_unmask

    async def _lookup(self, ctx: TenantContext, tool_id: str) -> tuple[Tool, ToolCredentials | None]:
        """The tool (404 if not the caller's) and its credentials' metadata, in one read."""
        async with self._uow(read_only=True) as uow:
            tool = await uow.tools.get(ctx.org_id, tool_id)
            found = (
                await uow.credentials.list(ctx.org_id, Page(limit=1), {"tool_id": tool_id}) if tool else []
            )
        if tool is None:
            raise NotFound("Tool", tool_id)
        return tool, found[0] if found else None

    async def store(self, ctx: TenantContext, tool_id: str, credentials: Any) -> CredentialView:
        values = validate_credentials(credentials)
        tool, _ = await self._lookup(ctx, tool_id)
        now = self._clock.now()
        # The values go to the store first: metadata never claims credentials that are not there.
        await self._store.put(ctx.org_id, tool_id, values)
        async with self._uow() as uow:
            found = await uow.credentials.list(ctx.org_id, Page(limit=1), {"tool_id": tool_id})
            if found:
                # New values under the same names are still a change worth its timestamp.
                meta = dataclasses.replace(found[0].changed(now=now, keys=list(values)), updated_at=now)
                await uow.credentials.update(meta)
            else:
                meta = ToolCredentials.build(
                    id=new_id("cred"), now=now, org_id=ctx.org_id, tool_id=tool_id, keys=list(values),
                    backend=self._store.name, created_by=ctx.user_id,
                )  # fmt: skip
                await uow.credentials.add(meta)
            # Which names changed is recorded; values never are.
            await uow.audit.add(audit_event(ctx, "credentials.stored", "tool", tool_id, now, keys=meta.keys))
            await uow.commit()
        return _view(tool, meta, values, masked=True)

    async def get(self, ctx: TenantContext, tool_id: str, *, unmask: bool = False) -> CredentialView:
        tool, meta = await self._lookup(ctx, tool_id)
        if meta is None:
            raise NoCredentials(tool_id)
        if unmask and not self._allow_unmask:
            raise PermissionDenied(
                "Unmasking credentials is disabled on this deployment (TOLSTOY_ALLOW_UNMASK)"
            )
        values = await self._store.get(ctx.org_id, tool_id)
        if values is None:
            raise NoCredentials(tool_id)
        if unmask:
            async with self._uow() as uow:
                now = self._clock.now()
                await uow.audit.add(
                    audit_event(ctx, "credentials.unmasked", "tool", tool_id, now, keys=meta.keys)
                )
                await uow.commit()
        return _view(tool, meta, values, masked=not unmask)

    async def delete(self, ctx: TenantContext, tool_id: str) -> Tool:
        tool, meta = await self._lookup(ctx, tool_id)
        if meta is None:
            raise NoCredentials(tool_id)
        async with self._uow() as uow:
            await uow.credentials.delete(ctx.org_id, meta.id)
            await uow.audit.add(audit_event(ctx, "credentials.deleted", "tool", tool_id, self._clock.now()))
            await uow.commit()
        await self._store.delete(ctx.org_id, tool_id)
        return tool

    async def statuses(self, ctx: TenantContext, page: Page) -> list[CredentialStatus]:
        out = []
        async with self._uow(read_only=True) as uow:
            for tool in await uow.tools.list(ctx.org_id, page):
                found = await uow.credentials.list(ctx.org_id, Page(limit=1), {"tool_id": tool.id})
                out.append(CredentialStatus(tool, found[0].keys if found else None))
        return out
