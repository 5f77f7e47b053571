"""The use-cases wired to the in-memory fakes, and organizations to act in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from adapters.regex import compile_pattern
from application.organizations import ApiKeys, AuditTrail, Organizations
from application.ports import Page
from application.resources import Actions, ExecutionLogs, Flows, Tools, Users
from application.tenancy import Authenticator
from domain.audit import AuditEvent
from tests.application.helpers import ADMIN, ADMIN_TOKEN, Tenant, TickingClock
from tests.fakes.memory import MemoryUnitOfWorkFactory


@pytest.fixture
def uow() -> MemoryUnitOfWorkFactory:
    return MemoryUnitOfWorkFactory()


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def auth(uow: MemoryUnitOfWorkFactory) -> Authenticator:
    return Authenticator(uow, ADMIN_TOKEN)


@pytest.fixture
def organizations(uow: MemoryUnitOfWorkFactory, clock: TickingClock, auth: Authenticator) -> Organizations:
    return Organizations(uow, clock, auth)


@pytest.fixture
def api_keys(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> ApiKeys:
    return ApiKeys(uow, clock)


@pytest.fixture
def users(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> Users:
    return Users(uow, clock)


@pytest.fixture
def tools(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> Tools:
    return Tools(uow, clock)


@pytest.fixture
def actions(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> Actions:
    return Actions(uow, clock, compile_pattern)


@pytest.fixture
def flows(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> Flows:
    return Flows(uow, clock)


@pytest.fixture
def logs(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> ExecutionLogs:
    return ExecutionLogs(uow, clock)


@pytest.fixture
def audit(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock
) -> Callable[[Tenant], Awaitable[list[AuditEvent]]]:
    """The audit trail of a tenant, oldest first."""
    trail = AuditTrail(uow, clock)

    async def events(tenant: Tenant) -> list[AuditEvent]:
        return list(reversed(await trail.list(tenant.ctx, Page(limit=500))))

    return events


@pytest.fixture
def make_tenant(
    organizations: Organizations, auth: Authenticator, users: Users
) -> Callable[[str], Awaitable[Tenant]]:
    """A new organization, made by the admin, with one user; the context is the user's."""

    async def make(name: str = "Acme") -> Tenant:
        org, issued = await organizations.create(ADMIN, name=name)
        authorization = f"Bearer {issued.plaintext}"
        as_key = await auth.tenant(authorization, org.id, None)
        user = await users.create(as_key, email="ann@example.com", name="Ann")
        return Tenant(org, issued.plaintext, await auth.tenant(authorization, org.id, user.id))

    return make


@pytest.fixture
async def acme(make_tenant: Callable[[str], Awaitable[Tenant]]) -> Tenant:
    return await make_tenant("Acme")


@pytest.fixture
async def globex(make_tenant: Callable[[str], Awaitable[Tenant]]) -> Tenant:
    return await make_tenant("Globex")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ARQ scheduler on the in-memory store is no combination anyone runs: leave it out."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (drop if params.get("engine") == "arq" and params.get("uow_factory") == "memory" else keep).append(
            item
        )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
