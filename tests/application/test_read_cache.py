"""Copies of flows, tools and actions: served while nothing says they changed, never after."""

from __future__ import annotations

import pytest

from application.cache import ACCESS, ORGANIZATION, LocalCopies, ReadCache
from application.ports import Change
from application.resources import Flows
from application.tenancy import KeyOwnerCache, TenantContext
from domain.errors import NotFound, ValidationFailed
from tests.application.helpers import ADMIN, CountingUow, FakeMonotonic, TickingClock
from tests.fakes.memory import MemoryUnitOfWorkFactory

STEPS = [{"id": "a", "name": "A", "type": "data_transform", "config": {"script": "return 1"}}]


def live_cache(**kwargs) -> ReadCache:
    cache = ReadCache(**kwargs)
    cache.set_live(True)
    return cache


def test_nothing_is_kept_or_served_until_a_feed_is_live() -> None:
    cache = ReadCache()
    assert cache.token() is None
    cache.put("flow", "org", "f1", "v1", cache.token())
    cache.set_live(True)
    assert cache.get("flow", "org", "f1") is None and len(cache) == 0


def test_a_copy_read_before_a_change_was_heard_is_not_kept() -> None:
    cache = live_cache()
    token = cache.token()  # a reader starts...
    cache.drop(Change("flow", "org", "other"))  # ...any change is heard meanwhile...
    cache.put("flow", "org", "f1", "old", token)  # ...what it read may be older than that change
    assert cache.get("flow", "org", "f1") is None
    cache.put("flow", "org", "f1", "new", cache.token())
    assert cache.get("flow", "org", "f1") == "new"


def test_the_feed_going_down_drops_everything_and_stops_serving() -> None:
    cache = live_cache()
    token = cache.token()
    cache.put("flow", "org", "f1", "v1", token)
    cache.set_live(False)
    assert cache.get("flow", "org", "f1") is None and len(cache) == 0 and cache.token() is None
    cache.set_live(True)
    cache.put("flow", "org", "f1", "stale", token)  # read before the feed went down: refused
    assert cache.get("flow", "org", "f1") is None


def test_what_a_change_drops() -> None:
    cache = live_cache()
    for kind, org, entity in [
        ("flow", "o1", "f1"),
        ("flow", "o1", "f2"),
        ("tool", "o1", "t1"),
        ("flow", "o2", "f1"),
    ]:
        cache.put(kind, org, entity, entity, cache.token())
    cache.drop(Change("flow", "o1", "f1"))
    assert cache.get("flow", "o1", "f1") is None and cache.get("flow", "o1", "f2") == "f2"
    cache.drop(Change(ORGANIZATION, "o1"))
    assert cache.get("tool", "o1", "t1") is None and cache.get("flow", "o1", "f2") is None
    assert cache.get("flow", "o2", "f1") == "f1"
    cache.put("tool", "o2", "t1", "t1", cache.token())
    cache.drop(Change("flow", "o2"))  # no id: everything kept for the organization
    assert cache.get("flow", "o2", "f1") is None and cache.get("tool", "o2", "t1") is None


def test_copies_expire_and_the_least_recently_used_go_first() -> None:
    clock = FakeMonotonic()
    cache = live_cache(max_entries=2, ttl_seconds=30, clock=clock)
    cache.put("flow", "o", "a", "A", cache.token())
    cache.put("flow", "o", "b", "B", cache.token())
    assert cache.get("flow", "o", "a") == "A"  # a is now the most recently used
    cache.put("flow", "o", "c", "C", cache.token())
    assert cache.get("flow", "o", "b") is None and cache.get("flow", "o", "a") == "A"
    clock.now += 30
    assert cache.get("flow", "o", "a") is None and cache.get("flow", "o", "c") is None


def test_a_zero_sized_cache_keeps_nothing() -> None:
    cache = live_cache(max_entries=0)
    cache.put("flow", "o", "a", "A", cache.token())
    assert cache.get("flow", "o", "a") is None


def test_access_changes_clear_resolved_api_keys() -> None:
    keys = KeyOwnerCache(60)
    copies = LocalCopies(live_cache(), keys)
    for kind in (ACCESS, ORGANIZATION):
        keys.put("hash", None, object(), keys.token())  # type: ignore[arg-type]
        copies.apply(Change(kind, "org"))
        assert keys.get("hash", None) is None
    keys.put("hash", None, object(), keys.token())  # type: ignore[arg-type]
    copies.apply(Change("flow", "org", "f1"))
    assert keys.get("hash", None) is not None


def test_resolved_api_keys_are_forgotten_when_the_feed_goes_down_or_comes_back() -> None:
    """A revocation announced while this process was not listening is never heard."""
    keys = KeyOwnerCache(60)
    copies = LocalCopies(live_cache(), keys)
    for live in (False, True):
        keys.put("hash", None, object(), keys.token())  # type: ignore[arg-type]
        copies.set_live(live)
        assert keys.get("hash", None) is None


@pytest.fixture
def cached_flows(uow: MemoryUnitOfWorkFactory):
    cache = live_cache()
    heard: list[Change] = []
    copies = LocalCopies(cache, KeyOwnerCache(0))
    uow.heard = lambda change: (heard.append(change), copies.apply(change))
    counting = CountingUow(uow)
    return Flows(counting, TickingClock(), cache=cache), counting, heard


async def test_reads_by_id_are_served_from_the_cache_and_writes_are_heard(
    cached_flows, organizations
) -> None:
    use_case, counting, heard = cached_flows
    org, _ = await organizations.create(ADMIN, name="Acme")
    ctx = TenantContext(org.id)
    flow = await use_case.create(ctx, name="Greet", steps=STEPS)
    assert heard == []  # nothing can hold a copy of a new object
    for _ in range(3):
        assert (await use_case.get(ctx, flow.id)).version == 1
    assert counting.reads == 1
    updated = await use_case.update(ctx, flow.id, steps=[{**STEPS[0], "name": "A2"}])
    assert heard == [Change("flow", org.id, flow.id)]
    assert (await use_case.get(ctx, flow.id)) == updated and updated.version == 2
    await use_case.delete(ctx, flow.id)
    with pytest.raises(NotFound):
        await use_case.get(ctx, flow.id)
    with pytest.raises(NotFound):  # not found is never kept: each asks the database
        await use_case.get(TenantContext("org_other"), flow.id)
    assert counting.reads == 4


async def test_a_refused_update_announces_nothing_and_the_copy_stays(cached_flows, organizations) -> None:
    """(That a change published in a unit of work that then rolls back is never heard is a
    contract test of the units of work: tests/adapters/test_persistence_contract.py.)"""
    use_case, _, heard = cached_flows
    org, _ = await organizations.create(ADMIN, name="Acme")
    ctx = TenantContext(org.id)
    flow = await use_case.create(ctx, name="Greet", steps=STEPS)
    await use_case.get(ctx, flow.id)
    with pytest.raises(ValidationFailed):
        await use_case.update(ctx, flow.id, steps=[{**STEPS[0], "type": "nope"}])
    assert heard == [] and (await use_case.get(ctx, flow.id)) == flow
