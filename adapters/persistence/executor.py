"""How repositories run their statements: through SQLAlchemy, or straight on asyncpg.

Repositories build SQLAlchemy Core statements and hand them to an executor. ``AlchemyExecutor``
runs them on a SQLAlchemy connection (writes, transactions, SQLite). ``AsyncpgExecutor`` runs the
very same statements on a raw asyncpg connection: each statement *shape* is compiled once for
PostgreSQL and cached; a call only binds values and converts result columns. That path exists for
speed: SQLAlchemy's async layer costs several times the database round trip on a hot read
(tests/perf/breakdown.py shows the layers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable


class Executor(Protocol):
    async def all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Mapping[str, Any]]: ...
    async def first(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None: ...
    async def scalar(self, statement: Executable) -> Any: ...
    async def run(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> int: ...  # rows affected


class AlchemyExecutor:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    async def all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Mapping[str, Any]]:
        return [row._mapping for row in await self._conn.execute(statement, params)]

    async def first(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        row = (await self._conn.execute(statement, params)).first()
        return None if row is None else row._mapping

    async def scalar(self, statement: Executable) -> Any:
        return (await self._conn.execute(statement)).scalar_one()

    async def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        return (await self._conn.execute(statement, params)).rowcount


def json_text(value: Any) -> str:
    """How JSON columns are serialised everywhere (SQLAlchemy engines and the asyncpg path)."""
    return orjson.dumps(value).decode()


_DIALECT = PGDialect_asyncpg(
    paramstyle="numeric_dollar", json_serializer=json_text, json_deserializer=orjson.loads
)


def _is_json(type_: Any) -> bool:
    return isinstance(type_.dialect_impl(_DIALECT), JSON)


class Compiled:
    """One statement shape compiled for asyncpg: SQL text, parameter order, value converters."""

    __slots__ = ("bind", "compiled", "fixed", "names", "order", "results", "sql")

    def __init__(self, statement: Executable, key: Any) -> None:
        compiled = self.compiled = _DIALECT.statement_compiler(_DIALECT, statement, cache_key=key)
        self.sql: str = compiled.string
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        processors = compiled._bind_processors  # SQLAlchemy's own per-type converters
        self.bind: dict[str, Callable[[Any], Any]] = {}
        # Literal values written into the statement (``status == "running"``): a prebuilt
        # statement's call passes only its named parameters.
        self.fixed = {
            name: compiled.binds[name].value for name in self.order if not compiled.binds[name].required
        }
        for name in self.order:
            if _is_json(compiled.binds[name].type):
                self.bind[name] = json_text  # SQLAlchemy leaves JSON to a codec raw connections lack
            elif name in processors:
                self.bind[name] = processors[name]
        self.names: list[str] = []
        self.results: list[Callable[[Any], Any] | None] = []
        returned = getattr(statement, "selected_columns", None)
        if returned is None and getattr(statement, "_returning", ()):  # INSERT/UPDATE ... RETURNING
            returned = statement.exported_columns
        for column in returned or ():
            self.names.append(column.key)
            if _is_json(column.type):
                self.results.append(orjson.loads)
            else:
                self.results.append(column.type._cached_result_processor(_DIALECT, None))

    def arguments(self, statement: Executable, params: Mapping[str, Any] | None, key: Any) -> list[Any]:
        # This instance's literal values (a filter's value, a limit...) mapped onto the names the
        # cached compilation gave them, exactly as SQLAlchemy's own compiled cache does it.
        values = self.compiled.construct_params(
            params=dict(params) if params else None,
            extracted_parameters=key.bindparams if key is not None else None,
        )
        out = []
        for name in self.order:
            value = values.get(name)
            convert = self.bind.get(name)
            out.append(convert(value) if convert is not None and value is not None else value)
        return out

    def named(self, params: Mapping[str, Any]) -> list[Any]:
        """Arguments straight from named parameters (and the statement's own literals)."""
        out = []
        for name in self.order:
            value = params[name] if name in params else self.fixed[name]
            convert = self.bind.get(name)
            out.append(convert(value) if convert is not None and value is not None else value)
        return out

    def mapping(self, record: asyncpg.Record) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, convert, value in zip(self.names, self.results, record.values(), strict=True):
            row[name] = convert(value) if convert is not None and value is not None else value
        return row


_SHAPES: dict[Any, Compiled] = {}
_SHAPES_MAX = 2048


_PREBUILT: dict[int, tuple[Executable, Compiled]] = {}


def prebuilt(statement: Executable) -> Executable:
    """Mark a statement built once and kept for the life of the process, whose parameters are
    named ``bindparam()``s (and literals, which keep their value): it is compiled now, and calls
    skip cache-key generation."""
    key = statement._generate_cache_key()
    _PREBUILT[id(statement)] = (statement, Compiled(statement, key))
    return statement


def prepare(statement: Executable, params: Mapping[str, Any] | None) -> tuple[Compiled, list[Any]]:
    known = _PREBUILT.get(id(statement))
    if known is not None and known[0] is statement and params is not None:
        compiled = known[1]
        return compiled, compiled.named(params)
    key = statement._generate_cache_key()
    if key is None:  # not cacheable: compile this one alone
        compiled = Compiled(statement, None)
    else:
        compiled = _SHAPES.get(key.key)
        if compiled is None:
            if len(_SHAPES) >= _SHAPES_MAX:
                _SHAPES.clear()
            compiled = _SHAPES[key.key] = Compiled(statement, key)
    return compiled, compiled.arguments(statement, params, key)


class AsyncpgExecutor:
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Mapping[str, Any]]:
        c, args = prepare(statement, params)
        return [c.mapping(r) for r in await self._conn.fetch(c.sql, *args)]

    async def first(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        c, args = prepare(statement, params)
        record = await self._conn.fetchrow(c.sql, *args)
        return None if record is None else c.mapping(record)

    async def scalar(self, statement: Executable) -> Any:
        c, args = prepare(statement, None)
        return await self._conn.fetchval(c.sql, *args)

    async def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        c, args = prepare(statement, params)
        try:
            status = await self._conn.execute(c.sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(c.sql, None, exc) from exc
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0
