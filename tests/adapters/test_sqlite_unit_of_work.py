"""SQLite has one write lock for the whole database: when a writer waits for it past the busy
timeout, the error logged names the write transactions this process has open, and since when."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event

from adapters.persistence.engine import create_engine
from adapters.persistence.unit_of_work import SqlUnitOfWorkFactory

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def factory(tmp_path: Path) -> AsyncIterator[SqlUnitOfWorkFactory]:
    engine = create_engine(f"sqlite:///{tmp_path / 'lock.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _impatient(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    yield SqlUnitOfWorkFactory(engine)
    await engine.dispose()


async def test_a_write_lock_taken_too_long_is_reported_with_who_holds_it(factory, caplog) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer(commit: bool) -> None:
        async with factory() as uow:
            if commit:
                await uow.commit()  # over: no longer holds the lock, whatever else it does
            holding.set()
            await release.wait()

    done = asyncio.create_task(writer(True), name="a writer that committed")
    await holding.wait()
    holding.clear()
    held = asyncio.create_task(writer(False), name="the slow writer")
    await holding.wait()
    with caplog.at_level(logging.ERROR, "tolstoy.persistence"), pytest.raises(Exception, match="locked"):
        async with factory():
            pass
    release.set()
    await asyncio.gather(done, held)
    assert "'the slow writer' for 0." in caplog.text
    assert "committed" not in caplog.text
    assert factory.engine.pool.checkedout() == 0  # the writer that gave up gave its connection back
    with caplog.at_level(logging.ERROR, "tolstoy.persistence"):
        async with factory() as uow:  # free again
            await uow.commit()
