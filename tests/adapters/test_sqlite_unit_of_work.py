"""SQLite has one write lock for the whole database. A writer waits for it up to the URL's
``?timeout=`` (seconds; 10 by default), then gets ``Unavailable`` (REST 503 with Retry-After,
gRPC UNAVAILABLE) and gives its connection back; the error logged names the write transactions
this process has open, and since when."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.persistence.engine import create_engine
from adapters.persistence.migrate import upgrade
from adapters.persistence.unit_of_work import SqlUnitOfWorkFactory
from domain.errors import Unavailable


@pytest.fixture
async def factory(tmp_path: Path) -> AsyncIterator[SqlUnitOfWorkFactory]:
    engine = create_engine(f"sqlite:///{tmp_path / 'lock.db'}?timeout=0.2")
    yield SqlUnitOfWorkFactory(engine)
    await engine.dispose()


@pytest.mark.asyncio(loop_scope="session")
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
    with caplog.at_level(logging.ERROR, "tolstoy.persistence"), pytest.raises(Unavailable):
        async with factory():
            pass
    release.set()
    await asyncio.gather(done, held)
    assert "'the slow writer' for 0." in caplog.text
    assert "committed" not in caplog.text
    assert factory.engine.pool.checkedout() == 0  # the writer that gave up gave its connection back
    async with factory() as uow:  # free again
        await uow.commit()


def test_a_busy_database_is_a_503_to_retry_and_nothing_is_lost(tmp_path: Path) -> None:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app
    from tests.conftest import make_settings
    from tests.support import LiveServer, new_org

    path = tmp_path / "busy.db"
    upgrade(f"sqlite:///{path}")
    settings = make_settings(f"sqlite:///{path}?timeout=0.3", tmp_path)
    with LiveServer(create_app(build_container(settings))) as live:
        api = new_org(live.url)
        tool = api.post("/tools", json={"name": "Kept", "baseUrl": "https://k.example.com"}).json()
        other = sqlite3.connect(path, isolation_level=None)  # another process's long write, say
        other.execute("BEGIN IMMEDIATE")
        try:
            busy = api.post("/tools", json={"name": "Waits", "baseUrl": "https://a.example.com"})
            secret = api.post(
                f"/tools/{tool['id']}/secrets", json={"credentials": {"api_key": "sk-123456789"}}
            )
            status = api.get("/status/detailed").json()  # reads need no write lock: still healthy
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json()["message"] == "The database is busy; try again in a moment"
        assert status["database"]["status"] == "healthy", status
        assert secret.status_code == 503 and "sk-123456789" not in secret.text  # the secret store too
        assert [t["name"] for t in api.get("/tools").json()] == ["Kept"]
        again = api.post("/tools", json={"name": "Waits", "baseUrl": "https://a.example.com"})
        assert again.status_code == 201


def test_over_grpc_a_busy_database_is_unavailable() -> None:
    from google.rpc import code_pb2

    from entrypoints.grpc.errors import code_of

    assert code_of(Unavailable("The database is busy; try again in a moment")) == code_pb2.UNAVAILABLE
