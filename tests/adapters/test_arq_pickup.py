"""The engine takes ARQ jobs (adapters/engine/arq_worker.py) and enqueues them
(adapters/engine/arq_scheduler.py) with one Lua script each, over ARQ's own keys: on real Redis,
every job is taken once, only when due and nobody has it, and ARQ reads what was enqueued as its own."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms, to_unix_ms
from arq.worker import func

from adapters.engine.arq_worker import EngineWorker
from tests.support import REDIS_URL, unavailable

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def pool() -> Any:
    try:
        redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name="unused")
        await redis.ping()
    except Exception as exc:  # any failure to reach Redis is the same skip
        unavailable("Redis", f"{type(exc).__name__}: {exc}")
    queue = f"tolstoy:test-pickup:{secrets.token_hex(4)}"
    yield redis, queue
    await redis.delete(queue)
    stale = [key async for key in redis.scan_iter(match=f"arq:*{queue}*")]  # job ids carry the queue's name
    if stale:
        await redis.delete(*stale)
    await redis.aclose()


def worker(
    redis: ArqRedis,
    queue: str,
    ran: list[str],
    *,
    max_jobs: int = 5,
    burst: bool = False,
    queue_read_limit: int | None = None,
) -> EngineWorker:
    async def job(ctx: dict[str, Any], name: str) -> None:
        ran.append(name)
        await asyncio.sleep(0.001)

    return EngineWorker(
        functions=[func(job, name="job")],
        redis_pool=redis,
        queue_name=queue,
        max_jobs=max_jobs,
        keep_result=0,
        poll_delay=0.01,
        burst=burst,
        handle_signals=False,
        queue_read_limit=queue_read_limit,
    )


async def test_two_workers_run_every_job_once(pool: Any) -> None:
    redis, queue = pool
    names = [f"j{i}" for i in range(120)]
    for name in names:
        await redis.enqueue_job("job", name, _job_id=f"{queue}-{name}", _queue_name=queue)
    ran: list[str] = []
    workers = [worker(redis, queue, ran, burst=True) for _ in range(2)]
    async with asyncio.timeout(30):
        await asyncio.gather(*(w.async_run() for w in workers))
    assert sorted(ran) == sorted(names)  # every job, none twice
    assert await redis.zcard(queue) == 0
    assert not await redis.keys(f"{in_progress_key_prefix}{queue}-*")


async def test_a_job_is_taken_only_when_due_and_not_in_progress(pool: Any) -> None:
    redis, queue = pool
    ran: list[str] = []
    w = worker(redis, queue, ran)
    now = timestamp_ms()
    due, later, busy, gone = (f"{queue}-{name}" for name in ("due", "later", "busy", "gone"))
    assert await redis.enqueue_job("job", "due", _job_id=due, _queue_name=queue)
    assert await redis.enqueue_job("job", "later", _job_id=later, _queue_name=queue, _defer_by=60)
    assert await redis.enqueue_job("job", "busy", _job_id=busy, _queue_name=queue)
    await redis.psetex(in_progress_key_prefix + busy, 60_000, b"1")  # another worker has it

    await w.start_jobs([due.encode(), later.encode(), busy.encode(), gone.encode()])  # gone: not queued

    assert set(w.tasks) == {due}
    assert w.job_counter == 1  # the three not taken gave their slots back
    ttl = await redis.pttl(in_progress_key_prefix + due)
    assert 0 < ttl <= w.in_progress_timeout_s * 1000
    await asyncio.gather(*w.tasks.values())
    assert ran == ["due"]
    assert w.job_counter == 0
    assert await redis.zscore(queue, later) > now


async def test_a_free_slot_takes_the_first_due_job_nobody_has_whatever_the_poll_saw(pool: Any) -> None:
    """The ids a poll read go stale as other workers take them: a free slot asks Redis for the
    first due job that no worker has, one round trip per job taken (and one to find none left)."""
    redis, queue = pool
    ran: list[str] = []
    w = worker(redis, queue, ran)
    first, second, third, later = (f"{queue}-{name}" for name in ("first", "second", "third", "later"))
    for job, name in ((first, "first"), (second, "second"), (third, "third")):
        assert await redis.enqueue_job("job", name, _job_id=job, _queue_name=queue)
    assert await redis.enqueue_job("job", "later", _job_id=later, _queue_name=queue, _defer_by=60)
    now = timestamp_ms()
    await redis.zadd(queue, {first: now - 3, second: now - 2, third: now - 1})  # their order in the queue
    await redis.psetex(in_progress_key_prefix + first, 60_000, b"1")  # another worker has it

    await w.start_jobs([b"taken-by-another-worker-meanwhile"])  # the poll saw one due job
    assert set(w.tasks) == {second}  # not the stale id, not `first`: the first due job nobody has

    calls = 0
    take = w._take

    async def counted(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await take(**kwargs)

    w._take = counted
    await w.start_jobs([b"a", b"b", b"c"])  # room for three: one is left, then none
    assert set(w.tasks) == {second, third}
    assert calls == 2
    await asyncio.gather(*w.tasks.values())
    assert sorted(ran) == ["second", "third"]
    assert w.job_counter == 0
    assert await redis.zscore(queue, later) > now  # not due: still waiting


async def test_the_due_jobs_behind_more_running_ones_than_a_poll_reads_are_taken(pool: Any) -> None:
    """Jobs stay in the queue while they run: with more of them running than a poll reads
    (``queue_read_limit``), the free ones behind them are still found."""
    redis, queue = pool
    ran: list[str] = []
    w = worker(redis, queue, ran, queue_read_limit=2)
    now = timestamp_ms()
    running = [f"{queue}-running{i}" for i in range(5)]
    free = f"{queue}-free"
    for i, job in enumerate([*running, free]):
        assert await redis.enqueue_job("job", job.rsplit("-", 1)[1], _job_id=job, _queue_name=queue)
        await redis.zadd(queue, {job: now - 10 + i})  # the running ones first
    for job in running:
        await redis.psetex(in_progress_key_prefix + job, 60_000, b"1")  # other workers have them

    await w.start_jobs([r.encode() for r in running[:2]])  # what a poll of two reads: all taken

    assert set(w.tasks) == {free}
    await asyncio.gather(*w.tasks.values())
    assert ran == ["free"]


async def test_jobs_are_enqueued_in_one_script_as_arq_enqueues_them(pool: Any) -> None:
    """The engine enqueues ``advance`` jobs with one Lua script over ARQ's keys: ARQ reads them back
    as its own (function, arguments, score, expiry), and a job id already used is refused."""
    from datetime import UTC, datetime, timedelta

    from arq.constants import job_key_prefix
    from arq.jobs import Job

    from adapters.engine.arq_scheduler import QUEUE, enqueue

    redis, _ = pool
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    first, deferred = f"advance:test-{secrets.token_hex(4)}:1", f"advance:test-{secrets.token_hex(4)}:2"
    try:
        assert await enqueue(redis, "org_1", "exec_1", first)
        assert not await enqueue(redis, "org_2", "exec_2", first)  # the id deduplicates
        assert await enqueue(redis, "org_1", "exec_1", deferred, later)

        info = await Job(first, redis, _queue_name=QUEUE).info()
        assert (info.function, info.args, info.kwargs) == ("advance", ("org_1", "exec_1"), {})
        assert abs(info.score - timestamp_ms()) < 5_000
        ours = await Job(deferred, redis, _queue_name=QUEUE).info()
        assert ours.score == to_unix_ms(later)  # ARQ's own conversion
        assert await redis.zscore(QUEUE, deferred) == ours.score
        # Kept until due plus ARQ's extra time, as ARQ's own enqueue keeps it.
        ttl = await redis.pttl(job_key_prefix + deferred)
        assert 300_000 < ttl <= 300_000 + redis.expires_extra_ms + 5_000
        # What ARQ itself enqueues under an id it did not take is refused the same way, both ways.
        assert await redis.enqueue_job("advance", "org_3", "exec_3", _job_id=first, _queue_name=QUEUE) is None
    finally:
        await redis.zrem(QUEUE, first, deferred)
        await redis.delete(job_key_prefix + first, job_key_prefix + deferred)
