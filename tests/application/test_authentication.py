"""Authenticator: transport credentials in, a caller (or a clear refusal) out."""

from __future__ import annotations

import pytest

from application.organizations import ApiKeys
from application.tenancy import API_KEY_PREFIX, Authenticator, Caller, TenantContext, hash_api_key
from domain.errors import PermissionDenied, Unauthenticated
from tests.application.helpers import ADMIN_TOKEN, Tenant
from tests.fakes.memory import MemoryUnitOfWorkFactory


@pytest.mark.parametrize("authorization", [None, ""])
async def test_a_missing_authorization_header_is_unauthenticated(auth: Authenticator, authorization) -> None:
    with pytest.raises(Unauthenticated, match="Missing Authorization header"):
        await auth.tenant(authorization, None, None)
    with pytest.raises(Unauthenticated):
        await auth.caller(authorization, None, None)


@pytest.mark.parametrize(
    "authorization", ["   ", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "tsk_just-the-key", "Token x"]
)
async def test_a_malformed_authorization_header_is_unauthenticated(
    auth: Authenticator, acme: Tenant, authorization: str
) -> None:
    with pytest.raises(Unauthenticated, match="Bearer <api key>"):
        await auth.tenant(authorization, None, None)


async def test_a_well_formed_key_resolves_to_its_organization(auth: Authenticator, acme: Tenant) -> None:
    ctx = await auth.tenant(acme.authorization, None, None)
    assert ctx == TenantContext(org_id=acme.org.id, user_id=None, api_key_id=acme.ctx.api_key_id)
    assert ctx.api_key_id is not None and ctx.api_key_id.startswith("key_")


async def test_the_scheme_is_case_insensitive_and_spaces_are_forgiven(
    auth: Authenticator, acme: Tenant
) -> None:
    ctx = await auth.tenant(f"  bearer   {acme.api_key}  ", f" {acme.org.id} ", None)
    assert ctx.org_id == acme.org.id


async def test_an_unknown_key_is_unauthenticated(auth: Authenticator, acme: Tenant) -> None:
    with pytest.raises(Unauthenticated, match="Invalid or revoked"):
        await auth.tenant(f"Bearer {API_KEY_PREFIX}not-a-key-anyone-has", None, None)
    with pytest.raises(Unauthenticated):
        await auth.tenant(f"Bearer {acme.api_key}x", None, None)
    with pytest.raises(Unauthenticated):  # the hash itself is not a credential
        await auth.tenant(f"Bearer {hash_api_key(acme.api_key)}", None, None)


async def test_a_revoked_key_stops_working_at_once(
    auth: Authenticator, api_keys: ApiKeys, acme: Tenant
) -> None:
    second = await api_keys.issue(acme.ctx, name="ci")
    assert (await auth.tenant(f"Bearer {second.plaintext}", None, None)).api_key_id == second.key.id
    await api_keys.revoke(acme.ctx, second.key.id)
    with pytest.raises(Unauthenticated):
        await auth.tenant(f"Bearer {second.plaintext}", None, None)
    with pytest.raises(Unauthenticated):
        await auth.caller(f"Bearer {second.plaintext}", None, None)
    assert (await auth.tenant(acme.authorization, None, None)).org_id == acme.org.id  # others still work


async def test_x_org_id_must_be_the_organization_of_the_key(
    auth: Authenticator, acme: Tenant, globex: Tenant
) -> None:
    with pytest.raises(PermissionDenied, match="X-Org-ID"):
        await auth.tenant(acme.authorization, globex.org.id, None)
    with pytest.raises(PermissionDenied):
        await auth.caller(acme.authorization, "org_does_not_exist", None)
    assert (await auth.tenant(acme.authorization, acme.org.id, None)).org_id == acme.org.id
    assert (await auth.tenant(acme.authorization, "  ", None)).org_id == acme.org.id  # blank: not sent


async def test_x_user_id_must_be_a_user_of_the_organization(
    auth: Authenticator, acme: Tenant, globex: Tenant
) -> None:
    with pytest.raises(PermissionDenied, match="X-User-ID"):
        await auth.tenant(acme.authorization, None, globex.ctx.user_id)
    with pytest.raises(PermissionDenied):
        await auth.tenant(acme.authorization, None, "usr_nobody")
    ctx = await auth.tenant(acme.authorization, None, f" {acme.ctx.user_id} ")
    assert ctx.user_id == acme.ctx.user_id
    assert (await auth.tenant(acme.authorization, None, "   ")).user_id is None


async def test_the_admin_token_is_accepted_only_for_organization_management(
    auth: Authenticator, acme: Tenant
) -> None:
    assert await auth.caller(f"Bearer {ADMIN_TOKEN}", None, None) == Caller(admin=True)
    with pytest.raises(Unauthenticated, match="admin token"):
        await auth.tenant(f"Bearer {ADMIN_TOKEN}", acme.org.id, None)


async def test_an_organization_key_is_a_tenant_caller_not_an_admin(auth: Authenticator, acme: Tenant) -> None:
    caller = await auth.caller(acme.authorization, None, acme.ctx.user_id)
    assert caller == Caller(admin=False, tenant=acme.ctx)
    with pytest.raises(PermissionDenied):
        auth.require_admin(caller)
    auth.require_admin(Caller(admin=True))


@pytest.mark.parametrize("configured", [None, ""])
async def test_without_an_admin_token_nothing_is_admin(uow: MemoryUnitOfWorkFactory, configured) -> None:
    auth = Authenticator(uow, configured)
    for token in ("", ADMIN_TOKEN, "None"):
        with pytest.raises(Unauthenticated):
            await auth.caller(f"Bearer {token}", None, None)


async def test_a_prefix_of_the_admin_token_is_not_the_admin_token(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="Invalid or revoked"):
        await auth.caller(f"Bearer {ADMIN_TOKEN[:-1]}", None, None)
