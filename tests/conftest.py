"""Shared fixtures: databases (SQLite and a throw-away PostgreSQL database) and live servers.

Servers and databases are created once per test session and shared; tests keep out of each
other's way by working in organizations of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis  # noqa: F401 - imported up front: see below
import pytest

from adapters.persistence.migrate import upgrade
from tests.support import ADMIN_TOKEN, Api, LiveServer, free_port, new_org, throwaway_postgres_database

# hypothesis's pytest plugin imports the package lazily at the end of the run, where pytest's
# assertion rewriter parses it; on CPython 3.11 that parse can fail ("AST constructor recursion
# depth mismatch") when finalizers of the engine tests' clients run in the middle of it.

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Writers wait up to 30 s for SQLite's write lock (10 by default): a loaded CI machine can stall
    # a holder for seconds; a lock that is really stuck still fails, naming who holds it.
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tolstoy.db'}?timeout=30"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of each kind; tests using it run once per backend."""
    url = request.getfixturevalue(f"{request.param}_url")
    upgrade(url)
    return url


@pytest.fixture(scope="session", params=["memory", *BACKENDS])
async def uow_factory(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """Units of work on each database, and on the in-memory fake: one contract for all three."""
    from adapters.persistence.engine import create_engine, create_read_pool, create_write_pool
    from adapters.persistence.unit_of_work import SqlUnitOfWorkFactory
    from tests.fakes.memory import MemoryStore, MemoryUnitOfWorkFactory

    if request.param == "memory":
        yield MemoryUnitOfWorkFactory(MemoryStore())
        return
    url = request.getfixturevalue(f"{request.param}_url")
    upgrade(url)
    engine, read_engine = create_engine(url), create_engine(url, read_only=True)
    read_pool, write_pool = create_read_pool(url, 5), create_write_pool(url, 5)
    yield SqlUnitOfWorkFactory(engine, read_engine, read_pool, write_pool)  # as the container builds it
    for pool in (read_pool, write_pool):
        if pool is not None:
            await pool.close()
    await read_engine.dispose()
    await engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``sql_only`` tests are not collected on the in-memory fake (e.g. locks between connections)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        memory = params.get("uow_factory") == "memory" and item.get_closest_marker("sql_only")
        (drop if memory else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def make_settings(database_url: str, data_dir: Path, **extra: object):
    from entrypoints.settings import Settings

    extra.setdefault("GRPC_PORT", 0)  # gRPC off unless a test asks for it (see `server`)
    return Settings(
        _env_file=None,
        DATABASE_URL=database_url,
        TOLSTOY_DATA_DIR=str(data_dir),
        TOLSTOY_ADMIN_TOKEN=ADMIN_TOKEN,
        **extra,
    )


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Tolstoy over a real socket on 127.0.0.1, once per backend."""
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        TOLSTOY_MAX_BODY_BYTES=64 * 1024,
        TOLSTOY_EGRESS_ALLOW="127.0.0.1/32",  # upstreams in tests live on loopback, allowed explicitly
        TOLSTOY_HTTP_TIMEOUT_SECONDS=2,
        GRPC_PORT=free_port(),  # gRPC beside REST, as `tolstoy serve` runs it (tests/grpc)
    )
    with LiveServer(create_app(build_container(settings))) as live:
        yield live


@pytest.fixture
def org(server: LiveServer) -> Api:
    """A fresh organization on the shared server, with its API key."""
    return new_org(server.url, "Test Org")


@pytest.fixture
def admin(server: LiveServer) -> Api:
    return Api(server.url, ADMIN_TOKEN)
