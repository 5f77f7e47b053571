"""The unit of work: one connection, one transaction, the repositories bound to it."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.persistence import tables as t
from adapters.persistence.changes import SqlChangeNotices
from adapters.persistence.engine import ReadPool
from adapters.persistence.executor import AlchemyExecutor, AsyncpgExecutor, Compiled, Executor, prepare
from adapters.persistence.integrity import translate
from adapters.persistence.repositories import (
    SqlApiKeyRepository,
    SqlExecutionLogRepository,
    SqlExecutionRepository,
    SqlOrganizationRepository,
    SqlOutboxRepository,
    SqlStepStateRepository,
    SqlTenantRepository,
)
from application.ports import Change, LeaseLost
from domain.audit import AuditEvent
from domain.credentials import ToolCredentials
from domain.execution_log import ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.organization import ApiKey, User
from domain.tool import Action, Tool


def _tenant(table, entity, resource, *filterable):
    return lambda conn: SqlTenantRepository(conn, table, entity, resource, frozenset(filterable))


# How each repository of the unit of work is made; built only when a use-case asks for it.
_REPOSITORIES = {
    "organizations": SqlOrganizationRepository,
    "users": _tenant(t.users, User, "User", "email"),
    "api_keys": lambda db: SqlApiKeyRepository(db, t.api_keys, ApiKey, "ApiKey", frozenset()),
    "tools": _tenant(t.tools, Tool, "Tool", "key", "auth_type"),
    "actions": _tenant(t.actions, Action, "Action", "tool_id", "key", "method"),
    "flows": _tenant(t.flows, Flow, "Flow", "name"),
    "execution_logs": lambda db: SqlExecutionLogRepository(
        db,
        t.execution_logs,
        ExecutionLog,
        "ExecutionLog",
        frozenset({"flow_id", "execution_id", "step_key", "status", "user_id"}),
    ),
    "flow_versions": _tenant(t.flow_versions, FlowVersion, "FlowVersion", "flow_id", "version"),
    "executions": SqlExecutionRepository,
    "execution_steps": SqlStepStateRepository,
    "audit": _tenant(t.audit_events, AuditEvent, "AuditEvent", "action", "resource_type", "resource_id"),
    "credentials": _tenant(t.tool_credentials, ToolCredentials, "ToolCredentials", "tool_id"),
    "outbox": SqlOutboxRepository,
    "changes": SqlChangeNotices,
}


class SqlUnitOfWork:
    """A write unit of work is one transaction; a read-only one runs each statement on its own
    (autocommit), which costs one round trip per read instead of three."""

    # This process's listener for the changes announced here (set by the factory): told at commit.
    heard: Callable[[Change], None] | None = None

    def __init__(self, engine: AsyncEngine, read_only: bool) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: AsyncConnection | None = None
        self._db: Executor | None = None
        self._repositories: dict[str, object] = {}

    def __getattr__(self, name: str) -> object:
        make = _REPOSITORIES.get(name)
        if make is None or self._db is None:
            raise AttributeError(name)
        repository = self._repositories[name] = make(self._db)
        setattr(self, name, repository)
        return repository

    def _committed(self) -> None:
        notices = self._repositories.get("changes")
        if isinstance(notices, SqlChangeNotices) and notices.published:
            published, notices.published = notices.published, []
            if self.heard is not None:
                for change in published:
                    self.heard(change)

    def _rolled_back(self) -> None:
        notices = self._repositories.get("changes")
        if isinstance(notices, SqlChangeNotices):
            notices.published = []

    def _forget_repositories(self) -> None:
        for name in self._repositories:
            delattr(self, name)
        self._repositories.clear()
        self._db = None

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        if not self._read_only:
            try:
                await conn.begin()  # on SQLite it may give up waiting for the write lock
            except BaseException:
                await conn.close()  # else the connection stays checked out until the garbage collector
                raise
        self._conn = conn
        self._db = AlchemyExecutor(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None
        try:
            if not self._read_only and self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            await self._conn.close()
            self._conn = None
            self._forget_repositories()

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
        self._committed()

    async def rollback(self) -> None:
        assert self._conn is not None
        self._rolled_back()
        await self._conn.rollback()


class AsyncpgReadUnitOfWork(SqlUnitOfWork):
    """Read-only, on PostgreSQL: the same repositories, executed straight on an asyncpg connection."""

    def __init__(self, pool: ReadPool) -> None:
        super().__init__(None, read_only=True)  # type: ignore[arg-type]
        self._pool = pool
        self._raw: asyncpg.Connection | None = None

    async def __aenter__(self) -> Self:
        self._raw = await self._pool.acquire()
        self._db = AsyncpgExecutor(self._raw)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._pool.release(self._raw)
        finally:
            self._raw = None
            self._forget_repositories()

    async def commit(self) -> None:  # every statement of a read-only unit of work stands alone
        return None

    async def rollback(self) -> None:
        return None


class AsyncpgUnitOfWork(SqlUnitOfWork):
    """A transaction on PostgreSQL: the same repositories, executed straight on an asyncpg
    connection (half the cost of SQLAlchemy's async layer per statement). After ``commit`` or
    ``rollback`` further statements run on their own (autocommit)."""

    def __init__(self, pool: ReadPool) -> None:
        super().__init__(None, read_only=False)  # type: ignore[arg-type]
        self._pool = pool
        self._raw: asyncpg.Connection | None = None
        self._transaction: Any = None

    async def __aenter__(self) -> Self:
        self._raw = await self._pool.acquire()
        try:
            self._transaction = self._raw.transaction()
            await self._transaction.start()
        except BaseException:
            await self._pool.release(self._raw)
            raise
        self._db = AsyncpgExecutor(self._raw)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._transaction is not None:
                await self._transaction.rollback()
        finally:
            self._transaction = None
            await self._pool.release(self._raw)
            self._raw = None
            self._forget_repositories()

    async def commit(self) -> None:
        if self._transaction is not None:
            transaction, self._transaction = self._transaction, None
            await transaction.commit()
        self._committed()

    async def rollback(self) -> None:
        self._rolled_back()
        if self._transaction is not None:
            transaction, self._transaction = self._transaction, None
            await transaction.rollback()


_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=1024)
def _renumbered(sql: str, offset: int) -> str:
    """``sql`` with its ``$n`` placeholders moved up by ``offset``. Kept: the engine's checkpoints
    are made of a handful of statements at a handful of offsets, and this is ~7 µs a statement."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m[1]) + offset}", sql)


class _Batch:
    """Write statements held back until commit; reads go straight to the connection."""

    dialect = "postgresql"
    batched = True

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._reads = AsyncpgExecutor(conn)
        self.writes: list[tuple[str, list[Any]]] = []
        self.fence: tuple[str, str] | None = None  # (execution id, lease owner): see ``statement``
        # Reads answered by the commit: (statement, its arguments, who receives the rows).
        self.at_commits: list[tuple[Compiled, list[Any], Callable[[list[dict[str, Any]]], None]]] = []

    def at_commit(self, statement: Any, params: Any, receive: Callable[[list[dict[str, Any]]], None]) -> None:
        """A read sent with the writes at commit (in the same statement, so it sees the database
        as it was before them); ``receive`` gets its rows once committed. Its columns come back
        as JSON values (text, numbers, booleans, null): for identifiers and counts."""
        compiled, args = prepare(statement, params)
        self.at_commits.append((compiled, args, receive))

    def clear(self) -> None:
        self.writes, self.fence, self.at_commits = [], None, []

    async def all(self, statement: Any, params: Any = None) -> Any:
        return await self._reads.all(statement, params)

    async def first(self, statement: Any, params: Any = None) -> Any:
        return await self._reads.first(statement, params)

    async def scalar(self, statement: Any) -> Any:
        return await self._reads.scalar(statement)

    async def run(self, statement: Any, params: Any = None) -> int:
        compiled, args = prepare(statement, params)
        self.writes.append((compiled.sql, args))
        return 1  # held back: batched writers do not look at row counts

    def statement(self) -> tuple[str, list[Any]]:
        """All the writes as one statement (data-modifying CTEs): atomic on its own, one round trip.

        With a fence, the statement first locks the execution's row if the lease is still the
        owner's, and divides by the number of rows locked: with none, division by zero aborts the
        whole statement, its writes included (``commit`` raises ``LeaseLost``). The referenced
        fence runs before the unreferenced writes (which PostgreSQL completes afterwards)."""
        if len(self.writes) == 1 and self.fence is None and not self.at_commits:
            return self.writes[0]
        parts: list[str] = []
        args: list[Any] = []

        def numbered(sql: str, values: list[Any]) -> str:  # its $n placed after the arguments so far
            offset = len(args)
            args.extend(values)
            return _renumbered(sql, offset)

        if self.fence is not None:
            args.extend(self.fence)
            parts.append("fence AS (SELECT id FROM executions WHERE id = $1 AND lease_owner = $2 FOR UPDATE)")
        for i, (sql, values) in enumerate(self.writes):
            parts.append(f"w{i} AS ({numbered(sql, values)})")
        columns = ["1 / (SELECT count(*) FROM fence)" if self.fence is not None else "1"]
        for i, (compiled, values, _) in enumerate(self.at_commits):
            read = numbered(compiled.sql, values)  # compiled SQL text: the values are parameters
            columns.append(f"(SELECT coalesce(json_agg(r{i}), '[]') FROM ({read}) AS r{i})")  # noqa: S608
        return "WITH " + ", ".join(parts) + " SELECT " + ", ".join(columns), args


class AsyncpgBatchUnitOfWork(AsyncpgReadUnitOfWork):
    """A batched unit of work on PostgreSQL: the writes go at commit as one statement, no BEGIN or
    COMMIT round trips. A statement may not change the same row twice (PostgreSQL would apply only
    one of the changes), which the engine's checkpoints never do."""

    _batch: _Batch | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._batch = self._db = _Batch(self._raw)
        return self

    async def commit(self) -> None:
        assert self._raw is not None and self._batch is not None
        batch = self._batch
        reads = batch.at_commits
        if not batch.writes:  # nothing to write: the reads alone
            batch.clear()
            for compiled, args, receive in reads:
                receive([compiled.mapping(record) for record in await self._raw.fetch(compiled.sql, *args)])
            return
        sql, args = batch.statement()
        fence = batch.fence
        batch.clear()
        try:
            if reads:
                answered = await self._raw.fetchrow(sql, *args)
            else:
                await self._raw.execute(sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise translate(IntegrityError(sql, None, exc), "object") from None
        except asyncpg.DivisionByZeroError:
            if fence is None:
                raise
            raise LeaseLost(*fence) from None
        for i, (_, _, receive) in enumerate(reads, 1):
            receive(orjson.loads(answered[i]))

    async def rollback(self) -> None:
        if self._batch is not None:
            self._batch.clear()


class SqlUnitOfWorkFactory:
    """Writers use ``write_pool`` (asyncpg transactions, PostgreSQL) when there is one, else
    ``engine``. Readers use ``read_pool`` (asyncpg, PostgreSQL) when there is one, else
    ``read_engine`` (autocommit connections), else the writers' engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        read_engine: AsyncEngine | None = None,
        read_pool: ReadPool | None = None,
        write_pool: ReadPool | None = None,
        heard: Callable[[Change], None] | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        self.read_pool = read_pool
        self.write_pool = write_pool
        self.heard = heard  # told of the changes announced by this process's units of work

    def __call__(self, *, read_only: bool = False, batched: bool = False) -> SqlUnitOfWork:
        if not read_only:
            uow: SqlUnitOfWork
            if self.write_pool is not None:
                uow = (
                    AsyncpgBatchUnitOfWork(self.write_pool) if batched else AsyncpgUnitOfWork(self.write_pool)
                )
            else:
                uow = SqlUnitOfWork(self.engine, read_only=False)
            uow.heard = self.heard
            return uow
        if self.read_pool is not None:
            return AsyncpgReadUnitOfWork(self.read_pool)
        if self.read_engine is self.engine:
            return _AutocommitOnSharedEngine(self.engine)
        return SqlUnitOfWork(self.read_engine, read_only=True)


class _AutocommitOnSharedEngine(SqlUnitOfWork):
    """A read-only unit of work when there is only one engine: switch the connection to autocommit."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, read_only=True)

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        self._db = AlchemyExecutor(self._conn)
        return self


class SqlDatabaseProbe:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started
