"""Organizations and API keys: the operator manages organizations, a tenant sees only itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from application.organizations import ApiKeys, Organizations
from application.ports import Page
from application.resources import Tools
from application.tenancy import PREFIX_LENGTH, Authenticator, Caller, hash_api_key
from domain.audit import AuditEvent
from domain.errors import NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from tests.application.helpers import ADMIN, Tenant
from tests.fakes.memory import MemoryUnitOfWorkFactory

Trail = Callable[[Tenant], Awaitable[list[AuditEvent]]]


def as_caller(tenant: Tenant) -> Caller:
    return Caller(admin=False, tenant=tenant.ctx)


async def count_organizations(uow: MemoryUnitOfWorkFactory) -> int:
    async with uow(read_only=True) as tx:
        return await tx.organizations.count()


async def test_the_admin_creates_an_organization_with_a_working_key(
    organizations: Organizations, auth: Authenticator
) -> None:
    org, issued = await organizations.create(ADMIN, name="  Initech ")
    assert org.name == "Initech" and org.id.startswith("org_")
    assert issued.plaintext.startswith("tsk_") and len(issued.plaintext) > 40
    assert (issued.key.org_id, issued.key.name, issued.key.revoked) == (org.id, "default", False)
    assert issued.key.prefix == issued.plaintext[:PREFIX_LENGTH]
    assert issued.key.key_hash == hash_api_key(issued.plaintext) != issued.plaintext
    assert (await auth.tenant(f"Bearer {issued.plaintext}", org.id, None)).org_id == org.id
    assert await organizations.get(ADMIN, org.id) == org


async def test_creating_an_organization_is_audited_in_it(make_tenant, audit: Trail) -> None:
    tenant = await make_tenant("Initech")
    events = await audit(tenant)
    assert [(e.action, e.resource_id, e.actor_user_id) for e in events[:1]] == [
        ("organization.created", tenant.org.id, None)
    ]


async def test_only_the_admin_creates_organizations(
    organizations: Organizations, uow: MemoryUnitOfWorkFactory, acme: Tenant
) -> None:
    before = await count_organizations(uow)
    with pytest.raises(PermissionDenied):
        await organizations.create(as_caller(acme), name="Shadow org")
    assert await count_organizations(uow) == before


async def test_an_invalid_name_creates_nothing(
    organizations: Organizations, uow: MemoryUnitOfWorkFactory
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await organizations.create(ADMIN, name="")
    assert [(e.field, e.code) for e in caught.value.errors] == [("name", "too_small")]
    assert await count_organizations(uow) == 0


async def test_the_admin_lists_every_organization_a_tenant_only_its_own(
    organizations: Organizations, acme: Tenant, globex: Tenant
) -> None:
    assert [o.id for o in await organizations.list(ADMIN, Page())] == [globex.org.id, acme.org.id]
    assert [o.id for o in await organizations.list(ADMIN, Page(limit=1, offset=1))] == [acme.org.id]
    assert [o.id for o in await organizations.list(as_caller(acme), Page())] == [acme.org.id]


async def test_another_organization_is_not_found_for_a_tenant(
    organizations: Organizations, acme: Tenant, globex: Tenant
) -> None:
    assert (await organizations.get(as_caller(acme), acme.org.id)).name == "Acme"
    with pytest.raises(NotFound):
        await organizations.get(as_caller(acme), globex.org.id)
    with pytest.raises(NotFound):
        await organizations.update(as_caller(acme), globex.org.id, name="Taken over")
    with pytest.raises(NotFound):
        await organizations.delete(as_caller(acme), globex.org.id)
    assert (await organizations.get(ADMIN, globex.org.id)).name == "Globex"


async def test_an_unknown_organization_is_not_found_even_for_the_admin(organizations: Organizations) -> None:
    for attempt in (
        organizations.get(ADMIN, "org_nope"),
        organizations.update(ADMIN, "org_nope", name="x"),
        organizations.delete(ADMIN, "org_nope"),
    ):
        with pytest.raises(NotFound):
            await attempt


async def test_a_tenant_renames_its_organization_and_it_is_audited(
    organizations: Organizations, acme: Tenant, audit: Trail
) -> None:
    renamed = await organizations.update(as_caller(acme), acme.org.id, name="Acme Corp")
    assert renamed.name == "Acme Corp" and renamed.updated_at > acme.org.updated_at
    assert await organizations.get(ADMIN, acme.org.id) == renamed
    last = (await audit(acme))[-1]
    assert (last.action, last.resource_id) == ("organization.updated", acme.org.id)
    assert (last.actor_user_id, last.api_key_id) == (acme.ctx.user_id, acme.ctx.api_key_id)


async def test_a_rename_to_the_same_name_changes_and_audits_nothing(
    organizations: Organizations, acme: Tenant, audit: Trail
) -> None:
    before = await audit(acme)
    same = await organizations.update(as_caller(acme), acme.org.id, name=" Acme ")
    assert same == acme.org
    assert await audit(acme) == before


async def test_a_tenant_cannot_delete_its_own_organization(
    organizations: Organizations, acme: Tenant
) -> None:
    with pytest.raises(PermissionDenied):
        await organizations.delete(as_caller(acme), acme.org.id)
    assert await organizations.get(ADMIN, acme.org.id) == acme.org


async def test_deleting_an_organization_takes_everything_it_owns(
    organizations: Organizations,
    auth: Authenticator,
    tools: Tools,
    uow: MemoryUnitOfWorkFactory,
    acme: Tenant,
    globex: Tenant,
) -> None:
    await tools.create(acme.ctx, name="Slack", base_url="https://slack.com")
    kept = await tools.create(globex.ctx, name="Slack", base_url="https://slack.com")
    assert await organizations.delete(ADMIN, acme.org.id) == acme.org
    with pytest.raises(Unauthenticated):
        await auth.tenant(acme.authorization, None, None)
    async with uow(read_only=True) as tx:
        assert await tx.organizations.get(acme.org.id) is None
        assert await tx.tools.list(acme.org.id, Page()) == []
        assert await tx.users.list(acme.org.id, Page()) == []
        assert await tx.audit.list(acme.org.id, Page()) == []
        assert await tx.tools.list(globex.org.id, Page()) == [kept]
    assert (await auth.tenant(globex.authorization, None, globex.ctx.user_id)) == globex.ctx
    with pytest.raises(NotFound):
        await organizations.delete(ADMIN, acme.org.id)


async def test_a_key_is_issued_once_listed_without_its_secret_and_revoked(
    api_keys: ApiKeys, auth: Authenticator, acme: Tenant, audit: Trail
) -> None:
    issued = await api_keys.issue(acme.ctx, name="ci")
    assert (issued.key.name, issued.key.created_by) == ("ci", acme.ctx.user_id)
    listed = await api_keys.list(acme.ctx, Page())
    assert [k.id for k in listed] == [issued.key.id, acme.ctx.api_key_id]
    assert all(issued.plaintext not in repr(k) for k in listed)
    revoked = await api_keys.revoke(acme.ctx, issued.key.id)
    assert revoked.revoked and (await api_keys.get(acme.ctx, issued.key.id)).revoked
    again = await api_keys.revoke(acme.ctx, issued.key.id)
    assert again.revoked_at == revoked.revoked_at
    actions = [(e.action, e.resource_id) for e in await audit(acme)]
    assert actions.count(("api_key.created", issued.key.id)) == 1
    assert actions.count(("api_key.revoked", issued.key.id)) == 1


async def test_another_organizations_key_cannot_be_seen_or_revoked(
    api_keys: ApiKeys, auth: Authenticator, acme: Tenant, globex: Tenant
) -> None:
    with pytest.raises(NotFound):
        await api_keys.get(acme.ctx, globex.ctx.api_key_id)
    with pytest.raises(NotFound):
        await api_keys.revoke(acme.ctx, globex.ctx.api_key_id)
    assert (await auth.tenant(globex.authorization, None, None)).org_id == globex.org.id
