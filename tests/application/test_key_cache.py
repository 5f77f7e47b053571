"""The API-key cache: fewer database round trips, never a withdrawn access that keeps working."""

from __future__ import annotations

import pytest

from application.cache import LocalCopies, ReadCache
from application.organizations import ApiKeys, Organizations
from application.ports import KeyOwner
from application.resources import Users
from application.tenancy import Authenticator, KeyOwnerCache
from domain.errors import PermissionDenied, Unauthenticated
from tests.application.helpers import ADMIN, ADMIN_TOKEN, CountingUow, FakeMonotonic, TickingClock
from tests.fakes.memory import MemoryUnitOfWorkFactory

OWNER = KeyOwner("key_1", "org_1", revoked=False, user_in_org=True)


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeMonotonic()
    cache = KeyOwnerCache(10, clock)
    cache.put("h", None, OWNER, cache.token())
    clock.now += 9.9
    assert cache.get("h", None) == OWNER
    clock.now += 0.2
    assert cache.get("h", None) is None


def test_entries_are_per_key_and_user_and_bounded() -> None:
    cache = KeyOwnerCache(10, FakeMonotonic())
    cache.put("h", "usr_1", OWNER, cache.token())
    assert cache.get("h", None) is None and cache.get("h", "usr_2") is None
    for i in range(KeyOwnerCache.MAX_ENTRIES + 5):
        cache.put(f"k{i}", None, OWNER, cache.token())
    assert len(cache._entries) == KeyOwnerCache.MAX_ENTRIES
    assert cache.get("k0", None) is None and cache.get(f"k{KeyOwnerCache.MAX_ENTRIES + 4}", None) == OWNER


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = KeyOwnerCache(0, FakeMonotonic())
    cache.put("h", None, OWNER, cache.token())
    assert cache.get("h", None) is None


@pytest.fixture
def wired(uow: MemoryUnitOfWorkFactory):
    """The use-cases sharing one cache, as the container wires them: the changes they announce
    reach the cache when their unit of work commits."""
    counting = CountingUow(uow)
    cache = KeyOwnerCache(60)
    uow.heard = LocalCopies(ReadCache(), cache).apply
    auth = Authenticator(counting, ADMIN_TOKEN, cache)
    clock = TickingClock()
    return (
        counting,
        auth,
        Organizations(uow, clock, auth),
        ApiKeys(uow, clock),
        Users(uow, clock),
    )


async def test_repeated_calls_hit_the_database_once(wired) -> None:
    counting, auth, organizations, _, _ = wired
    _, issued = await organizations.create(ADMIN, name="Acme")
    for _ in range(5):
        ctx = await auth.tenant(f"Bearer {issued.plaintext}", None, None)
    assert counting.opened == 1 and ctx.api_key_id == issued.key.id


async def test_revoking_a_key_withdraws_it_at_once(wired) -> None:
    _, auth, organizations, api_keys, _ = wired
    org, first = await organizations.create(ADMIN, name="Acme")
    ctx = await auth.tenant(f"Bearer {first.plaintext}", None, None)
    second = await api_keys.issue(ctx, name="spare")
    await auth.tenant(f"Bearer {second.plaintext}", None, None)  # now cached
    await api_keys.revoke(ctx, second.key.id)
    with pytest.raises(Unauthenticated):
        await auth.tenant(f"Bearer {second.plaintext}", None, None)
    assert (await auth.tenant(f"Bearer {first.plaintext}", org.id, None)).org_id == org.id


async def test_deleting_a_user_withdraws_their_x_user_id_at_once(wired) -> None:
    _, auth, organizations, _, users = wired
    _, issued = await organizations.create(ADMIN, name="Acme")
    ctx = await auth.tenant(f"Bearer {issued.plaintext}", None, None)
    user = await users.create(ctx, email="gone@example.com")
    await auth.tenant(f"Bearer {issued.plaintext}", None, user.id)  # now cached
    await users.delete(ctx, user.id)
    with pytest.raises(PermissionDenied):
        await auth.tenant(f"Bearer {issued.plaintext}", None, user.id)


async def test_deleting_an_organization_withdraws_its_keys_at_once(wired) -> None:
    _, auth, organizations, _, _ = wired
    org, issued = await organizations.create(ADMIN, name="Acme")
    await auth.tenant(f"Bearer {issued.plaintext}", None, None)  # now cached
    await organizations.delete(ADMIN, org.id)
    with pytest.raises(Unauthenticated):
        await auth.tenant(f"Bearer {issued.plaintext}", None, None)


async def test_a_key_read_while_it_is_revoked_is_not_kept(wired, uow) -> None:
    """The database answered before the revocation, the answer arrives after it: it must not be
    cached (it would let the revoked key in for the cache's whole lifetime)."""
    import asyncio

    counting, auth, organizations, api_keys, _ = wired
    _, first = await organizations.create(ADMIN, name="Acme")
    ctx = await auth.tenant(f"Bearer {first.plaintext}", None, None)
    second = await api_keys.issue(ctx, name="spare")
    read, go_on = asyncio.Event(), asyncio.Event()

    class HeldRead:  # the read's unit of work ends only when the test lets it
        def __init__(self, inner) -> None:
            self.inner = inner

        async def __aenter__(self):
            return await self.inner.__aenter__()

        async def __aexit__(self, *exc):
            read.set()
            await go_on.wait()
            return await self.inner.__aexit__(*exc)

    counting.inner = lambda **kw: HeldRead(uow(**kw)) if kw.get("read_only") else uow(**kw)
    resolving = asyncio.create_task(auth.tenant(f"Bearer {second.plaintext}", None, None))
    await asyncio.wait_for(read.wait(), 5)
    counting.inner = uow
    await api_keys.revoke(ctx, second.key.id)
    go_on.set()
    await resolving  # this request was let in: it was read before the revocation
    with pytest.raises(Unauthenticated):
        await auth.tenant(f"Bearer {second.plaintext}", None, None)
