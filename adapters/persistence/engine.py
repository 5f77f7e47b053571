"""Engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), from the URLs users actually have."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.persistence.executor import json_text
from domain.errors import Unavailable

log = logging.getLogger("tolstoy.persistence")

SQLITE_BUSY_SECONDS = 10.0


def normalize_url(raw: str) -> URL:
    """Accept the URLs people paste (``postgres://``, ``postgresql://…?sslmode=require``, ``sqlite:///x``)."""
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        query = dict(url.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        query.pop("sslmode", None)
        query.pop("channel_binding", None)  # libpq-only; asyncpg negotiates SCRAM by itself
        query.pop("pgbouncer", None)
        query.pop("connection_limit", None)
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"Unsupported database URL scheme '{url.drivername}': use postgresql:// or sqlite://")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def behind_pgbouncer(raw: str) -> bool:
    return make_url(raw).query.get("pgbouncer") in ("true", "1")


def create_engine(
    raw_url: str, *, pool_size: int = 10, max_overflow: int = 0, echo: bool = False, read_only: bool = False
) -> AsyncEngine:
    """An engine for writers (transactions), or with ``read_only`` one whose connections are in
    autocommit from birth: reads then cost one round trip each, and no per-checkout switching.

    ``max_overflow`` defaults to 0: overflow connections are closed when they come back, so under
    sustained load they are reopened again and again (a TLS handshake and type set-up each time);
    a request waiting a moment for a pooled connection is cheaper.
    """
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo, read_only)
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "tolstoy"}}
    if behind_pgbouncer(raw_url):
        # Transaction-mode poolers (PgBouncer, Neon's pooler) cannot keep prepared statements.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__tolstoy_{uuid.uuid4().hex}__",
        }
    extra: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if read_only else {}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        pool_pre_ping=False,
        echo=echo,
        connect_args=connect_args,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        **extra,
    )


def _sqlite_json(value: Any) -> Any:
    """A JSON column's declared type gives it NUMERIC affinity in SQLite, which stores a document
    that is a bare number (``10``) as that number: it comes back already decoded."""
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


class _SqliteWriters:
    """The write transactions open on an SQLite engine, for the error logged when a writer gives
    up waiting for the write lock (one for the whole database): who holds it, since when."""

    def __init__(self) -> None:
        self.open: weakref.WeakKeyDictionary[Any, tuple[str, float]] = weakref.WeakKeyDictionary()

    def began(self, conn: Any) -> None:
        task = asyncio.current_task()  # the greenlet runs inside the caller's task
        self.open[conn] = (task.get_name() if task else "?", time.monotonic())

    def ended(self, conn: Any) -> None:
        self.open.pop(conn, None)

    def describe(self) -> str:
        now = time.monotonic()
        held = [
            f"{name!r} for {now - since:.1f} s"
            for conn, (name, since) in list(self.open.items())
            if conn.in_transaction() and not conn.invalidated
        ]
        return ", ".join(held) or "none on this engine (another engine or process holds it)"


def _sqlite_engine(url: URL, echo: bool, read_only: bool) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # How long a writer waits for the write lock (one for the whole database) before giving up:
    # ``?timeout=`` in the URL, in seconds, as SQLAlchemy's SQLite dialects read it.
    busy_seconds = float(url.query.get("timeout", SQLITE_BUSY_SECONDS))  # type: ignore[arg-type]
    engine = create_async_engine(
        url.difference_update_query(["timeout"]),
        echo=echo,
        connect_args={"timeout": busy_seconds},
        json_serializer=json_text,
        json_deserializer=_sqlite_json,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver (see _on_begin), then tune the file.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    if read_only:
        return engine  # the driver is in autocommit (isolation_level None) and nothing emits BEGIN

    writers = _SqliteWriters()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes would fail with SQLITE_BUSY instead of waiting when another writer got there first.
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        try:  # waits up to the busy timeout; past it, every writer of the engine gets a 503
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            log.error("SQLite's write lock stayed taken; write transactions open: %s", writers.describe())
            raise Unavailable("The database is busy; try again in a moment") from exc
        writers.began(conn)

    event.listen(engine.sync_engine, "commit", writers.ended)
    event.listen(engine.sync_engine, "rollback", writers.ended)
    return engine


def asyncpg_dsn(raw_url: str) -> str:
    """The URL as asyncpg's own DSN parser wants it (it would take unknown query keys as
    server settings, so libpq-only and Prisma-only keys are dropped)."""
    url = normalize_url(raw_url)
    query = dict(url.query)
    if "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


async def _no_session_state(_conn: asyncpg.Connection) -> None:
    """Read connections only run autocommit SELECTs: they never SET, LISTEN, lock or open cursors,
    so the default reset query (``RESET ALL; UNLISTEN *; CLOSE ALL; …``, one more round trip per
    release) has nothing to undo. asyncpg still clears its own local state before calling this."""


class ReadPool:
    """An asyncpg pool for read-only units of work, opened on first use."""

    def __init__(self, raw_url: str, size: int, name: str = "tolstoy-read") -> None:
        self._dsn = asyncpg_dsn(raw_url)
        self._size = size
        self._name = name
        self._statement_cache = 0 if behind_pgbouncer(raw_url) else 256
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._size,
                    statement_cache_size=self._statement_cache,
                    server_settings={"application_name": self._name},
                    reset=_no_session_state,
                )
        return self._pool

    async def acquire(self) -> asyncpg.Connection:
        pool = self._pool or await self._open()
        return await pool.acquire()

    async def release(self, conn: asyncpg.Connection) -> None:
        assert self._pool is not None
        await self._pool.release(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def create_read_pool(raw_url: str, size: int) -> ReadPool | None:
    """A raw asyncpg read pool on PostgreSQL; None on SQLite (reads use the read engine there)."""
    return ReadPool(raw_url, size) if normalize_url(raw_url).get_backend_name() == "postgresql" else None


def create_write_pool(raw_url: str, size: int) -> ReadPool | None:
    """A raw asyncpg pool for transactions on PostgreSQL; None on SQLite."""
    if normalize_url(raw_url).get_backend_name() != "postgresql":
        return None
    return ReadPool(raw_url, size, name="tolstoy-write")
