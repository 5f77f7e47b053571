"""Engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), from the URLs users actually have."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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


def _behind_pgbouncer(raw: str) -> bool:
    return make_url(raw).query.get("pgbouncer") in ("true", "1")


def create_engine(
    raw_url: str, *, pool_size: int = 10, max_overflow: int = 10, echo: bool = False
) -> AsyncEngine:
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo)
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "tolstoy"}}
    if _behind_pgbouncer(raw_url):
        # Transaction-mode poolers (PgBouncer, Neon's pooler) cannot keep prepared statements.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__tolstoy_{uuid.uuid4().hex}__",
        }
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        pool_pre_ping=False,
        echo=echo,
        connect_args=connect_args,
    )


def _sqlite_engine(url: URL, echo: bool) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver (see _on_begin), then tune the file.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
            "PRAGMA synchronous=NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes would fail with SQLITE_BUSY instead of waiting when another writer got there first.
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
