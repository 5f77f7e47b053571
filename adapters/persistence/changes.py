"""Change notices on PostgreSQL: ``NOTIFY`` inside the writer's transaction, ``LISTEN`` in every process.

``SqlChangeNotices`` (the unit of work's ``changes``) sends ``pg_notify`` in the transaction, so
PostgreSQL delivers the notice at commit and drops it on rollback; the unit of work also hands it
to this process's own listener at commit (``SqlUnitOfWork.heard``). On SQLite nothing travels
between processes: notices are heard by the process that made them only.

``PostgresChangeFeed`` holds one dedicated connection that LISTENs. It reports itself live once
listening, and not live as soon as it learns the connection is gone: at once when the network says
so, else when a liveness ping (every ``ping_seconds``) goes unanswered for ``ping_seconds`` - up to
about twice that for a connection that died silently, during which notices are lost and copies
still served (the copies' TTL bounds that too). Then it reconnects with backoff. Through PgBouncer
in transaction mode LISTEN does not work: the container then listens on ``DIRECT_URL``, or starts
no feed (nothing is cached).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
from sqlalchemy import func, select

from adapters.persistence.engine import asyncpg_dsn
from application.ports import Change

log = logging.getLogger("tolstoy.changes")

CHANNEL = "tolstoy_changes"


def encode(change: Change) -> str:
    return orjson.dumps([change.kind, change.org_id, change.entity_id]).decode()


def decode(payload: str) -> Change | None:
    try:
        kind, org_id, entity_id = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if not (isinstance(kind, str) and isinstance(org_id, str) and isinstance(entity_id, str | None)):
        return None
    return Change(kind, org_id, entity_id)


class SqlChangeNotices:
    """``UnitOfWork.changes``: what this unit of work announced, sent with it on PostgreSQL."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.published: list[Change] = []

    async def publish(self, change: Change) -> None:
        if getattr(self._db, "batched", False):  # held-back writes would not carry a SELECT
            raise RuntimeError("a batched unit of work cannot announce changes")
        if getattr(self._db, "dialect", None) == "postgresql":
            await self._db.run(select(func.pg_notify(CHANNEL, encode(change))))
        self.published.append(change)


class PostgresChangeFeed:
    """Other processes' change notices, from a LISTENing connection of its own."""

    def __init__(
        self,
        raw_url: str,
        *,
        ping_seconds: float = 5.0,
        retry_seconds: tuple[float, float] = (0.1, 5.0),
        connect: Callable[..., Any] = asyncpg.connect,
    ) -> None:
        self._dsn = asyncpg_dsn(raw_url)
        self._ping_seconds = ping_seconds
        self._retry_first, self._retry_max = retry_seconds
        self._connect = connect
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._on_change: Callable[[Change], None] = lambda change: None
        self._on_live: Callable[[bool], None] = lambda live: None
        self.live = False

    async def start(self, on_change: Callable[[Change], None], on_live: Callable[[bool], None]) -> None:
        self._on_change, self._on_live = on_change, on_live
        self._task = asyncio.create_task(self._run(), name="tolstoy-change-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            log.info("change feed %s", "listening" if live else "down: copies are not served")
        self._on_live(live)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        change = decode(payload)
        if change is None:
            log.warning("ignored a malformed change notice")
            self._on_live(False)  # something else speaks on the channel: stay safe, start afresh
            self._on_live(True)
            return
        self._on_change(change)

    async def _run(self) -> None:
        delay = self._retry_first
        while True:
            lost = asyncio.Event()
            try:
                conn = self._conn = await self._connect(
                    self._dsn, timeout=10, server_settings={"application_name": "tolstoy-changes"}
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._heard)
                self._set_live(True)  # drops every copy made before: from now on, all is heard
                delay = self._retry_first
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._ping_seconds)
                        break
                    await conn.fetchval("SELECT 1", timeout=self._ping_seconds)
            except asyncio.CancelledError:
                self._set_live(False)
                await self._close()
                raise
            except Exception as exc:  # connection refused, lost, ping timed out...
                log.warning("change feed: %s; reconnecting in %.1f s", exc.__class__.__name__, delay)
            self._set_live(False)
            await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
