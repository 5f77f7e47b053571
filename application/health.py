"""System status for load balancers and operators. Never includes secrets."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from application.ports import CacheProbe, Clock, DatabaseProbe, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    status: str  # "healthy" | "unhealthy"
    connection_time_ms: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusReport:
    database: ComponentStatus
    cache: ComponentStatus | None  # None: no Redis configured

    @property
    def healthy(self) -> bool:
        """Serving needs the database, and Redis when one is configured."""
        return self.database.status == "healthy" and (self.cache is None or self.cache.status == "healthy")


class SystemStatus:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        database: DatabaseProbe,
        cache: CacheProbe | None,
        clock: Clock,
        version: str,
        environment: str,
    ) -> None:
        self._uow = uow_factory
        self._database = database
        self._cache = cache
        self._clock = clock
        self._started = clock.now()
        self.version = version
        self.environment = environment

    def uptime(self) -> int:
        return int((self._clock.now() - self._started).total_seconds())

    async def database(self, *, with_counts: bool) -> ComponentStatus:
        try:
            elapsed = await self._database.ping()
            counts: dict[str, Any] = {}
            if with_counts:
                async with self._uow(read_only=True) as uow:
                    counts = {
                        "organizations": await uow.organizations.count(),
                        "users": await uow.users.count(),
                        "tools": await uow.tools.count(),
                        "flows": await uow.flows.count(),
                    }
        except Exception as exc:  # any failure means unhealthy; the reason is the exception's type
            return ComponentStatus("unhealthy", error=type(exc).__name__)
        details = {"recordCounts": counts} if with_counts else {}
        return ComponentStatus("healthy", round(elapsed * 1000, 2), details=details)

    async def cache(self) -> ComponentStatus | None:
        if self._cache is None:
            return None
        try:
            elapsed = await self._cache.ping()
        except Exception as exc:
            return ComponentStatus("unhealthy", error=type(exc).__name__)
        return ComponentStatus("healthy", round(elapsed * 1000, 2))

    async def report(self, *, detailed: bool) -> StatusReport:
        """The database (with record counts when ``detailed``) and, when ``detailed``, Redis."""
        return StatusReport(
            await self.database(with_counts=detailed), await self.cache() if detailed else None
        )

    def runtime(self) -> dict[str, Any]:
        return {
            "pythonVersion": platform.python_version(),
            "implementation": sys.implementation.name,
            "platform": sys.platform,
            "environment": self.environment,
            "uptime": self.uptime(),
        }
