"""The ARQ scheduler: executions advance in ``tolstoy worker`` processes, fed through Redis.

An ``advance`` job carries (org_id, execution_id). Job ids deduplicate: one per execution and due
time, so a wake-up enqueued twice (by the engine and by a sweep) runs once. Delays and retries are
deferred jobs, holding no worker. Cancel requests are published on a Redis channel every worker
listens to, so the one running the execution aborts its in-flight steps at once. Results are not
kept (``keep_result=0``): a job id is free again as soon as its job is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms

log = logging.getLogger("tolstoy.engine")

ABORT_CHANNEL = "tolstoy:engine:abort"
QUEUE = "tolstoy:engine"


def job_id(execution_id: str, at: datetime | None) -> str:
    """One job per execution and due time. "Now" is the current millisecond: a job id whose worker
    was killed stays marked in progress in Redis, and must not block the next "now"."""
    moment = at or datetime.now(UTC)
    return f"advance:{execution_id}:{int(moment.timestamp() * 1000)}"


# ARQ's enqueue, one round trip: the job is written and queued unless a job or a result of that id
# exists - what ARQ's WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC do in three. KEYS: the job's key, its
# result's key, the queue; ARGV: the job's expiry (ms), the serialised job, its score, its id.
# Answers 1 when enqueued, 0 when the id was taken.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue(
    redis: ArqRedis, org_id: str, execution_id: str, job: str, at: datetime | None = None
) -> bool:
    """Enqueue ``advance(org_id, execution_id)`` as job ``job``, due at ``at`` (or now), exactly as
    ARQ's ``enqueue_job`` would (its keys, serialisation, score and expiry), in one round trip.
    False when a job or a result of that id exists (the id deduplicates)."""
    script: Any = getattr(redis, "_tolstoy_enqueue", None)
    if script is None:
        script = redis._tolstoy_enqueue = redis.register_script(_ENQUEUE)  # type: ignore[attr-defined]
    now_ms = timestamp_ms()
    score = to_unix_ms(at) if at is not None else now_ms
    expires_ms = score - now_ms + redis.expires_extra_ms
    body = serialize_job("advance", (org_id, execution_id), {}, None, now_ms, serializer=redis.job_serializer)
    keys = [job_key_prefix + job, result_key_prefix + job, QUEUE]
    return bool(await script(keys=keys, args=[expires_ms, body, score, job]))


class ArqScheduler:
    def __init__(self, redis_url: str) -> None:
        self._settings = RedisSettings.from_dsn(redis_url)
        self._pool: ArqRedis | None = None
        self._lock = asyncio.Lock()

    async def _redis(self) -> ArqRedis:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await create_pool(self._settings, default_queue_name=QUEUE)
        return self._pool

    async def start(self) -> None:
        return None  # connects on first use: the API starts even while Redis is away

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def schedule(self, org_id: str, execution_id: str, at: datetime | None = None) -> None:
        redis = await self._redis()
        if at is not None and at <= datetime.now(UTC):
            at = None
        await enqueue(redis, org_id, execution_id, job_id(execution_id, at), at)

    async def abort(self, execution_id: str) -> None:
        redis = await self._redis()
        await redis.publish(ABORT_CHANNEL, execution_id)


async def listen_for_aborts(redis: ArqRedis, on_abort) -> None:
    """Run in each worker: call ``on_abort(execution_id)`` for every cancel published. Reconnects
    after Redis goes away (a missed abort is caught by the engine's own cancel check)."""
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(ABORT_CHANNEL)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    data = message["data"]
                    on_abort(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("abort listener lost Redis (%s); reconnecting", type(exc).__name__)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
