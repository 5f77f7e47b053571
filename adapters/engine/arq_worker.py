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

from adapters.engine.arq_scheduler import QUEUE, ArqScheduler, job_id, listen_for_aborts
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
            await redis.enqueue_job(
                "advance", org_id, execution_id, _job_id=job_id(execution_id, wake_at), _defer_until=wake_at
            )
        else:
            await redis.enqueue_job(
                "advance", org_id, execution_id, _job_id=f"advance:{execution_id}:s{bucket}"
            )


# ARQ's pick-up, one round trip: the job is taken (marked in progress) if nobody has it and it is
# due - what ARQ's WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC (and UNWATCH when it is taken) do in
# four or five. KEYS: the job's in-progress key, the queue; ARGV: job id, now (ms, the client's
# clock, as ARQ compares), in-progress timeout (ms). Answers the job's score, or nil.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


class EngineWorker(Worker):
    """ARQ's worker with its job pick-up as one Lua script instead of an optimistic transaction.

    The keys and their meaning are ARQ's own (the in-progress key, its timeout, the queue's
    scores), so jobs enqueued, aborted or recovered after a crash behave as with ARQ's pick-up.
    With several workers polling one queue, each tries the same due jobs (a job stays in the
    queue while it runs): a try that finds the job taken costs one round trip, not four."""

    _take: Any = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._take is None:
            self._take = self.pool.register_script(_TAKE)
        timeout_ms = int(self.in_progress_timeout_s * 1000)
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            job_id = job_id_b.decode()
            try:
                score = await self._take(
                    keys=[in_progress_key_prefix + job_id, self.queue_name],
                    args=[job_id, timestamp_ms(), timeout_ms],
                )
            except BaseException:
                self._release_sem_dec_counter_on_complete()
                raise
            if score is None:  # taken by another worker, finished, or deferred again
                self._release_sem_dec_counter_on_complete()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
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
