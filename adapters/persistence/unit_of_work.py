"""The unit of work: one connection, one transaction, the repositories bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from domain.errors import DomainError
from domain.execution_log import ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.organization import ApiKey, User
from domain.tool import Action, Tool

log = logging.getLogger("tolstoy.persistence")


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
    """Write statements held back until commit; reads go straight to a connection, taken from
    the pool at the first read (a unit of work that only writes holds none until it commits)."""

    dialect = "postgresql"
    batched = True

    def __init__(self, connection: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connection = connection
        self.writes: list[tuple[str, list[Any]]] = []
        self.fence: tuple[str, str] | None = None  # (execution id, lease owner): see ``_statement``
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

    def take(self) -> _Checkpoint:
        """What the batch holds, to send; the batch is empty again."""
        taken = _Checkpoint(self.writes, self.fence, self.at_commits)
        self.clear()
        return taken

    async def all(self, statement: Any, params: Any = None) -> Any:
        return await AsyncpgExecutor(await self._connection()).all(statement, params)

    async def first(self, statement: Any, params: Any = None) -> Any:
        return await AsyncpgExecutor(await self._connection()).first(statement, params)

    async def scalar(self, statement: Any) -> Any:
        return await AsyncpgExecutor(await self._connection()).scalar(statement)

    async def run(self, statement: Any, params: Any = None) -> int:
        compiled, args = prepare(statement, params)
        self.writes.append((compiled.sql, args))
        return 1  # held back: batched writers do not look at row counts


@dataclass(slots=True)
class _Checkpoint:
    """A batch's writes (with its fence and its reads) on their way to the database."""

    writes: list[tuple[str, list[Any]]]
    fence: tuple[str, str] | None
    at_commits: list[tuple[Compiled, list[Any], Callable[[list[dict[str, Any]]], None]]]


def _statement(batches: list[_Checkpoint]) -> tuple[str, list[Any]]:
    """The writes of one or more batches as one statement (data-modifying CTEs): atomic on its
    own, one round trip.

    With a fence, the statement first locks the execution's row if the lease is still the
    owner's, and divides by the number of rows locked: with none, division by zero aborts the
    whole statement, its writes included (``commit`` raises ``LeaseLost``). The referenced
    fences run before the unreferenced writes (which PostgreSQL completes afterwards). Each batch
    gives the answer's next columns: its fence's, then its reads'."""
    if len(batches) == 1:
        only = batches[0]
        if len(only.writes) == 1 and only.fence is None and not only.at_commits:
            return only.writes[0]
    parts: list[str] = []
    columns: list[str] = []
    args: list[Any] = []

    def numbered(sql: str, values: list[Any]) -> str:  # its $n placed after the arguments so far
        offset = len(args)
        args.extend(values)
        return _renumbered(sql, offset)

    for b, batch in enumerate(batches):
        name = "" if len(batches) == 1 else str(b)  # one batch: the very statement it always was
        if batch.fence is not None:
            fence = numbered(
                "SELECT id FROM executions WHERE id = $1 AND lease_owner = $2 FOR UPDATE", [*batch.fence]
            )
            parts.append(f"fence{name} AS ({fence})")
            columns.append(f"1 / (SELECT count(*) FROM fence{name})")  # noqa: S608 - names of ours
        else:
            columns.append("1")
        for i, (sql, values) in enumerate(batch.writes):
            parts.append(f"w{name}{'_' if name else ''}{i} AS ({numbered(sql, values)})")
        for i, (compiled, values, _) in enumerate(batch.at_commits):
            read = numbered(compiled.sql, values)  # compiled SQL text: the values are parameters
            alias = f"r{name}{'_' if name else ''}{i}"
            columns.append(f"(SELECT coalesce(json_agg({alias}), '[]') FROM ({read}) AS {alias})")  # noqa: S608
    return "WITH " + ", ".join(parts) + " SELECT " + ", ".join(columns), args


async def _send(conn: asyncpg.Connection, batches: list[_Checkpoint]) -> None:
    """Run the batches' statement on ``conn``; hand each read its rows."""
    sql, args = _statement(batches)
    reads = [receive for batch in batches for _, _, receive in batch.at_commits]
    try:
        if reads:
            answered = await conn.fetchrow(sql, *args)
        else:
            await conn.execute(sql, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise translate(IntegrityError(sql, None, exc), "object") from None
    except asyncpg.DivisionByZeroError:
        fences = [batch.fence for batch in batches if batch.fence is not None]
        if len(fences) != 1:
            raise
        raise LeaseLost(*fences[0]) from None
    if reads:
        column = 0
        for batch in batches:
            column += 1  # the fence's
            for _, _, receive in batch.at_commits:
                receive(orjson.loads(answered[column]))
                column += 1


@dataclass(slots=True)
class _Ticket:
    batch: _Checkpoint
    done: asyncio.Future[None]


class GroupCommit:
    """Checkpoints of one process's executions that reach commit together go to PostgreSQL as
    one statement: one round trip, one transaction and one WAL flush for all of them.

    A checkpoint (a batch with a fence, written without reading first) that arrives while
    ``flights`` statements are already on their way waits for the next one, which takes every
    checkpoint waiting by then (up to ``MAX_ARGUMENTS`` parameters); one that arrives with a
    flight free goes at once, alone, so a lone execution waits for nobody. Each execution
    still commits each of its steps before any step that depends on it starts: it waits for its
    own checkpoint's commit, and never has two in one statement.

    If the statement fails in PostgreSQL (a lease lost, a refused reference), nothing of it was
    committed: each checkpoint is then sent alone, so that each gets its own answer. If the
    connection fails, every checkpoint of the flight gets that error, as a lone one would."""

    MAX_ARGUMENTS = 30_000  # the protocol allows 32,767 parameters per statement

    def __init__(self, pool: ReadPool, flights: int = 1) -> None:
        self._pool = pool
        self._flights = flights
        self._flying = 0
        self._waiting: deque[_Ticket] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0  # statements and checkpoints sent: how well they group (tests, benchmarks)
        self.grouped = 0

    async def commit(self, batch: _Checkpoint) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # flights of a loop that is gone (tests) never finish: forget them
            self._loop, self._flying, self._waiting = loop, 0, deque()
        ticket = _Ticket(batch, loop.create_future())
        self._waiting.append(ticket)
        if self._flying < self._flights:
            self._flying += 1
            task = asyncio.ensure_future(self._fly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await ticket.done
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # not taken yet: it is not sent
                self._waiting.remove(ticket)
            raise

    def _take(self) -> list[_Ticket]:
        group: list[_Ticket] = []
        arguments = 0
        while self._waiting:
            ticket = self._waiting[0]
            size = sum(len(values) for _, values in ticket.batch.writes) + 2
            if group and arguments + size > self.MAX_ARGUMENTS:
                break
            self._waiting.popleft()
            if not ticket.done.done():  # its waiter was cancelled meanwhile
                group.append(ticket)
                arguments += size
        # Checkpoints of one shape in one order: the same few statement texts, prepared once.
        group.sort(key=lambda t: [sql for sql, _ in t.batch.writes])
        return group

    async def _fly(self) -> None:
        """Send what waits, one statement after the other, until nothing waits. Errors reach
        the checkpoints' waiters, not this task."""
        try:
            while self._waiting:
                group = self._take()
                if group:
                    await self._flight(group)
        except asyncio.CancelledError:  # the process shutting down
            for ticket in self._waiting:
                ticket.done.cancel()
            self._waiting.clear()
        finally:
            self._flying -= 1

    async def _flight(self, group: list[_Ticket]) -> None:
        try:
            conn = await self._pool.acquire()
        except Exception as exc:
            _settle(group, exc)
            return
        except BaseException as exc:
            _settle(group, exc)
            raise
        try:
            await self._send(conn, group)
        except Exception:  # already handed to each waiter by _send
            log.debug("a group commit failed", exc_info=True)
        finally:
            await self._pool.release(conn)

    async def _send(self, conn: asyncpg.Connection, group: list[_Ticket]) -> None:
        self.sent += 1
        self.grouped += len(group)
        try:
            await _send(conn, [t.batch for t in group])
        except (asyncpg.PostgresError, LeaseLost, DomainError, IntegrityError) as exc:
            if len(group) == 1:
                _settle(group, exc)
                return
            for ticket in group:  # the statement was refused as a whole: each alone
                try:
                    await _send(conn, [ticket.batch])
                except Exception as alone:  # the checkpoint's own answer
                    _settle([ticket], alone)
                else:
                    _settle([ticket], None)
            return
        except BaseException as exc:
            _settle(group, exc)
            raise
        else:
            _settle(group, None)


def _settle(group: list[_Ticket], exc: BaseException | None) -> None:
    for ticket in group:
        if ticket.done.done():
            continue
        if exc is None:
            ticket.done.set_result(None)
        elif isinstance(exc, asyncio.CancelledError):
            ticket.done.cancel()
        else:
            ticket.done.set_exception(exc)


class AsyncpgBatchUnitOfWork(AsyncpgReadUnitOfWork):
    """A batched unit of work on PostgreSQL: the writes go at commit as one statement, no BEGIN or
    COMMIT round trips. A statement may not change the same row twice (PostgreSQL would apply only
    one of the changes), which the engine's checkpoints never do. A checkpoint that read nothing
    commits through ``group`` (with those of other executions that commit at the same time)."""

    _batch: _Batch | None = None

    def __init__(self, pool: ReadPool, group: GroupCommit | None = None) -> None:
        super().__init__(pool)
        self._group = group

    async def _connection(self) -> asyncpg.Connection:
        if self._raw is None:
            self._raw = await self._pool.acquire()
        return self._raw

    async def __aenter__(self) -> Self:
        self._batch = self._db = _Batch(self._connection)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._raw is not None:
                await self._pool.release(self._raw)
        finally:
            self._raw = None
            self._forget_repositories()

    async def commit(self) -> None:
        assert self._batch is not None
        batch = self._batch.take()
        if not batch.writes:  # nothing to write: the reads alone
            conn = await self._connection()
            for compiled, args, receive in batch.at_commits:
                receive([compiled.mapping(record) for record in await conn.fetch(compiled.sql, *args)])
            return
        if self._group is not None and self._raw is None and batch.fence is not None and not batch.at_commits:
            await self._group.commit(batch)
            return
        await _send(await self._connection(), [batch])

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
        self.group = GroupCommit(write_pool) if write_pool is not None else None

    def __call__(self, *, read_only: bool = False, batched: bool = False) -> SqlUnitOfWork:
        if not read_only:
            uow: SqlUnitOfWork
            if self.write_pool is not None:
                uow = (
                    AsyncpgBatchUnitOfWork(self.write_pool, self.group)
                    if batched
                    else AsyncpgUnitOfWork(self.write_pool)
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
