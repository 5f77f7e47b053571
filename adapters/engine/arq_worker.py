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
from arq.cron import cron
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

    return Worker(
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
