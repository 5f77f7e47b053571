from __future__ import annotations

import time

from redis.asyncio import Redis


class RedisProbe:
    def __init__(self, url: str) -> None:
        self._client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._client.ping()
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._client.aclose()
