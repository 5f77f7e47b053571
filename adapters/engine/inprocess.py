"""The in-process scheduler: asyncio tasks in the API process, state in the database.

Wake-ups are timers, not sleeping workers. On start it resumes what the database says is unfinished
(queued, running with an expired lease, due wake-ups), and a sweep every few seconds catches
anything missed (an execution whose worker died, a queued one whose slot freed elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from application.engine.advance import Advanced, AdvanceExecution
from application.ports import Clock

log = logging.getLogger("tolstoy.engine")


class InProcessScheduler:
    def __init__(
        self,
        advance: AdvanceExecution,
        clock: Clock,
        *,
        concurrency: int = 10,
        sweep_seconds: float = 5.0,
    ) -> None:
        self._advance = advance
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._sweep_seconds = sweep_seconds
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # --- the Scheduler port -----------------------------------------------------------------------

    async def schedule(self, org_id: str, execution_id: str, at: datetime | None = None) -> None:
        self._at(org_id, execution_id, at)

    async def abort(self, execution_id: str) -> None:
        self._advance.abort(execution_id)

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        # This process's worker id outlives restarts (embedded default): what it held before
        # it stopped is taken back now, not when the old leases expire.
        await self.sweep(owner=self._advance.worker_id, fresh=True)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = [t for t in (self._sweeper, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no advance is running or scheduled to run now (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def sweep(self, *, owner: str | None = None, fresh: bool = False) -> None:
        for org_id, execution_id, wake_at in await self._advance.due(owner=owner, fresh=fresh):
            self._at(org_id, execution_id, wake_at)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:  # what this process scheduled itself is not stale yet
                await self.sweep()
            except Exception:  # the database may be away for a moment; the next sweep retries
                log.exception("engine sweep failed")

    # --- running ----------------------------------------------------------------------------------

    def _at(self, org_id: str, execution_id: str, at: datetime | None) -> None:
        if self._closed:
            return
        delay = 0.0 if at is None else (at - self._clock.now()).total_seconds()
        if delay <= 0:
            self._spawn(org_id, execution_id)
            return
        old = self._timers.pop(execution_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[execution_id] = loop.call_later(delay, self._spawn, org_id, execution_id)

    def _spawn(self, org_id: str, execution_id: str) -> None:
        self._timers.pop(execution_id, None)
        if self._closed:
            return
        if execution_id in self._running:
            self._again.add(execution_id)  # it is being advanced: go again when that ends
            return
        task = asyncio.create_task(self._advance_one(org_id, execution_id), name=f"advance {execution_id}")
        self._running[execution_id] = task

    async def _advance_one(self, org_id: str, execution_id: str) -> None:
        result = Advanced()
        try:
            async with self._slots:
                result = await self._advance(org_id, execution_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("advancing %s failed; the sweep will pick it up again", execution_id)
        finally:
            self._running.pop(execution_id, None)
        if execution_id in self._again:
            self._again.discard(execution_id)
            self._spawn(org_id, execution_id)
        elif result.wake_at is not None:
            self._at(org_id, execution_id, result.wake_at)
        for waiting in result.admit:  # a slot freed up: call in executions of the org waiting for one
            self._spawn(org_id, waiting)
