"""The ARQ worker's jobs: ``advance`` (one execution) and ``sweep`` (a cron job in every worker).

The jobs find what they need in ``ctx["runtime"]`` (set by the worker's start-up), so the same
worker runs under ``tolstoy worker`` and in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq import Worker
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.cron import cron
from arq.utils import timestamp_ms
from arq.worker import func

from adapters.engine.arq_scheduler import QUEUE, ArqScheduler, enqueue, job_id, listen_for_aborts
from application.engine.advance import AdvanceExecution
from application.ports import Clock

SWEEP_EVERY_SECONDS = 5


@dataclass
class Runtime:
    advance: AdvanceExecution
    clock: Clock
    scheduler: ArqScheduler


async def advance(ctx: dict[str, Any], org_id: str, execution_id: str) -> None:
    rt: Runtime = ctx["runtime"]
    result = await rt.advance(org_id, execution_id)
    if result.wake_at is not None:
        await rt.scheduler.schedule(org_id, execution_id, result.wake_at)
    for waiting in result.admit:  # a slot freed up: call in executions of the org waiting for one
        await rt.scheduler.schedule(org_id, waiting)


async def sweep(ctx: dict[str, Any]) -> None:
    """Re-enqueue what no live worker holds: expired leases (a worker died), due wake-ups, queued
    executions. Job ids are per execution and sweep period, so workers sweeping together agree."""
    rt: Runtime = ctx["runtime"]
    now = rt.clock.now()
    due = await rt.advance.due()
    bucket = int(now.timestamp()) // SWEEP_EVERY_SECONDS
    redis = ctx["redis"]
    for org_id, execution_id, wake_at in due:
        if wake_at is not None and wake_at > now:
            await enqueue(redis, org_id, execution_id, job_id(execution_id, wake_at), wake_at)
        else:
            await enqueue(redis, org_id, execution_id, f"advance:{execution_id}:s{bucket}")


# ARQ's pick-up, one round trip: the first job of the queue that is due and that no worker has is
# taken (marked in progress, as ARQ's WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC would, in four or
# five round trips per job tried). Jobs stay in the queue while they run, so the due jobs are read
# a page at a time, past those in progress, up to PAGES pages. KEYS: the queue; ARGV: now (ms, the
# client's clock, as ARQ compares), in-progress timeout (ms), ARQ's in-progress key prefix, the
# page size (ARQ's queue_read_limit). Answers {job id, score} or nil.
PAGES = 20
_TAKE_NEXT = f"""
local page = tonumber(ARGV[4])
for offset = 0, ({PAGES} - 1) * page, page do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', offset, page)
  for i = 1, #due, 2 do
    local key = ARGV[3] .. due[i]
    if redis.call('EXISTS', key) == 0 then
      redis.call('PSETEX', key, ARGV[2], '1')
      return {{due[i], due[i + 1]}}
    end
  end
  if #due < 2 * page then return false end
end
return false
"""


class EngineWorker(Worker):
    """ARQ's worker with its job pick-up as one Lua script instead of an optimistic transaction.

    ARQ's poll reads the ids of up to ``queue_read_limit`` due jobs, then tries them in order as
    slots free up; with several workers on one queue, each tries the jobs the others took
    meanwhile, a wasted transaction each, and once more than ``queue_read_limit`` jobs run (they
    stay in the queue meanwhile) it sees none of the due jobs behind them. Here a free slot asks
    Redis for the first due job nobody has, looking past up to ``PAGES`` x ``queue_read_limit``
    jobs in progress: one round trip per job taken, whatever the number of workers (and one more
    when nothing is left). The keys and their meaning are ARQ's own (the in-progress key, its
    timeout, the queue's scores), so jobs enqueued, aborted or recovered after a crash behave as
    with ARQ's pick-up."""

    _take: Any = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Take up to as many jobs as the poll saw due (ARQ's bound on one poll's pick-up)."""
        if self._take is None:
            self._take = self.pool.register_script(_TAKE_NEXT)
        timeout_ms = int(self.in_progress_timeout_s * 1000)
        for _ in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            try:
                taken = await self._take(
                    keys=[self.queue_name],
                    args=[timestamp_ms(), timeout_ms, in_progress_key_prefix, self.queue_read_limit],
                )
            except BaseException:
                self._release_sem_dec_counter_on_complete()
                raise
            if not taken:  # nothing due that nobody has
                self._release_sem_dec_counter_on_complete()
                return
            job_id = taken[0].decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(taken[1]))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task


def build_worker(
    redis_url: str,
    concurrency: int,
    make_runtime: Callable[[], Awaitable[Runtime]],
    close_runtime: Callable[[Runtime], Awaitable[None]] | None = None,
    *,
    sweep_seconds: int = SWEEP_EVERY_SECONDS,
    handle_signals: bool = True,
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        rt = ctx["runtime"] = await make_runtime()
        ctx["aborts"] = asyncio.create_task(listen_for_aborts(ctx["redis"], rt.advance.abort))

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "aborts" in ctx:
            ctx["aborts"].cancel()
        rt: Runtime | None = ctx.get("runtime")
        if rt is None:  # the start-up failed (e.g. an out-of-date schema): nothing to stop
            return
        await rt.scheduler.stop()
        if close_runtime is not None:
            await close_runtime(rt)

    return EngineWorker(
        functions=[func(advance, name="advance", keep_result=0, max_tries=1000, timeout=24 * 3600)],
        cron_jobs=[
            cron(
                sweep,
                second=set(range(0, 60, sweep_seconds)),
                run_at_startup=True,
                unique=False,
                keep_result=0,
            )
        ],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=QUEUE,
        max_jobs=concurrency,
        on_startup=startup,
        on_shutdown=shutdown,
        keep_result=0,
        poll_delay=0.05,
        handle_signals=handle_signals,
        job_completion_wait=5,
    )
