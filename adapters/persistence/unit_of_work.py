"""The unit of work: one connection, one transaction, the repositories bound to it."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.persistence import tables as t
from adapters.persistence.repositories import (
    SqlApiKeyRepository,
    SqlOrganizationRepository,
    SqlTenantRepository,
)
from domain.audit import AuditEvent
from domain.execution_log import ExecutionLog
from domain.flow import Flow
from domain.organization import ApiKey, User
from domain.tool import Action, Tool


class SqlUnitOfWork:
    def __init__(self, engine: AsyncEngine, read_only: bool) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        if self._read_only:
            # No BEGIN/COMMIT round trips for reads.
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            await conn.begin()
        self._conn = conn
        self.organizations = SqlOrganizationRepository(conn)
        self.users = SqlTenantRepository(conn, t.users, User, "User", frozenset({"email"}))
        self.api_keys = SqlApiKeyRepository(conn, t.api_keys, ApiKey, "ApiKey", frozenset())
        self.tools = SqlTenantRepository(conn, t.tools, Tool, "Tool", frozenset({"key", "auth_type"}))
        self.actions = SqlTenantRepository(
            conn, t.actions, Action, "Action", frozenset({"tool_id", "key", "method"})
        )
        self.flows = SqlTenantRepository(conn, t.flows, Flow, "Flow", frozenset({"name"}))
        self.execution_logs = SqlTenantRepository(
            conn,
            t.execution_logs,
            ExecutionLog,
            "ExecutionLog",
            frozenset({"flow_id", "execution_id", "step_key", "status", "user_id"}),
        )
        self.audit = SqlTenantRepository(
            conn,
            t.audit_events,
            AuditEvent,
            "AuditEvent",
            frozenset({"action", "resource_type", "resource_id"}),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            await self._conn.close()
            self._conn = None

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()

    async def rollback(self) -> None:
        assert self._conn is not None
        await self._conn.rollback()


class SqlUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __call__(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, read_only)


class SqlDatabaseProbe:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started
