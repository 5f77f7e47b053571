"""SystemStatus: healthy only when the probes answer; failures name the error, never its text."""

from __future__ import annotations

import pytest

from application.health import ComponentStatus, SystemStatus
from tests.application.helpers import Tenant, TickingClock
from tests.fakes.memory import MemoryUnitOfWorkFactory


class Probe:
    """A probe that answers a fixed round trip, or raises what it is given."""

    def __init__(self, elapsed: float = 0.0123456, error: Exception | None = None) -> None:
        self.elapsed, self.error, self.calls = elapsed, error, 0

    async def ping(self) -> float:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.elapsed


def status(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock, database: Probe, cache: Probe | None
) -> SystemStatus:
    return SystemStatus(uow, database, cache, clock, version="1.2.3", environment="test")


async def test_a_database_that_answers_is_healthy_with_its_round_trip(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock
) -> None:
    database = Probe(elapsed=0.0123456)
    assert await status(uow, clock, database, None).database(with_counts=False) == ComponentStatus(
        "healthy", 12.35
    )
    assert database.calls == 1


async def test_a_database_probe_that_raises_is_unhealthy(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock
) -> None:
    failing = Probe(error=ConnectionRefusedError("password=hunter2 refused"))
    for with_counts in (False, True):
        found = await status(uow, clock, failing, None).database(with_counts=with_counts)
        assert found == ComponentStatus("unhealthy", error="ConnectionRefusedError")
        assert "hunter2" not in repr(found)


async def test_record_counts_cover_every_organization(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock, acme: Tenant, globex: Tenant, tools
) -> None:
    await tools.create(acme.ctx, name="Slack", base_url="https://slack.com")
    found = await status(uow, clock, Probe(), None).database(with_counts=True)
    assert found.status == "healthy"
    assert found.details == {"recordCounts": {"organizations": 2, "users": 2, "tools": 1, "flows": 0}}


async def test_a_failing_count_is_unhealthy_too(clock: TickingClock) -> None:
    class BrokenUnitOfWorkFactory:
        def __call__(self, *, read_only: bool = False):
            raise TimeoutError("pool exhausted")

    found = await SystemStatus(BrokenUnitOfWorkFactory(), Probe(), None, clock, "1", "test").database(
        with_counts=True
    )
    assert found == ComponentStatus("unhealthy", error="TimeoutError")


async def test_the_cache_is_optional_and_checked_when_present(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock
) -> None:
    assert await status(uow, clock, Probe(), None).cache() is None
    assert await status(uow, clock, Probe(), Probe(elapsed=0.002)).cache() == ComponentStatus("healthy", 2.0)
    broken = await status(uow, clock, Probe(), Probe(error=OSError("down"))).cache()
    assert broken == ComponentStatus("unhealthy", error="OSError")


async def test_cancellation_is_not_mistaken_for_an_unhealthy_database(
    uow: MemoryUnitOfWorkFactory, clock: TickingClock
) -> None:
    import asyncio

    with pytest.raises(asyncio.CancelledError):
        await status(uow, clock, Probe(error=asyncio.CancelledError()), None).database(with_counts=False)


def test_uptime_and_runtime(uow: MemoryUnitOfWorkFactory, clock: TickingClock) -> None:
    system = status(uow, clock, Probe(), None)
    clock.advance(90)
    assert system.uptime() == 90
    runtime = system.runtime()
    assert (runtime["environment"], runtime["uptime"]) == ("test", 90)
    assert {"pythonVersion", "implementation", "platform"} <= runtime.keys()
    assert (system.version, system.environment) == ("1.2.3", "test")


def test_the_report_is_healthy_only_when_every_configured_component_is() -> None:
    from application.health import ComponentStatus, StatusReport

    up, down = ComponentStatus("healthy", 1.0), ComponentStatus("unhealthy", error="OSError")
    assert StatusReport(up, None).healthy and StatusReport(up, up).healthy
    assert not StatusReport(down, None).healthy and not StatusReport(up, down).healthy
