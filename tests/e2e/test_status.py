"""/status/detailed with Redis configured (reachable or not), and the container's provider overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support import REDIS_URL, LiveServer, free_port, unavailable


def _redis_reachable() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{type(exc).__name__}: {exc}")


def _serve(tmp_path: Path, **extra: str) -> LiveServer:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, TOLSTOY_AUTO_MIGRATE="true", **extra
    )
    return LiveServer(create_app(build_container(settings)))


@pytest.mark.redis
def test_redis_is_reported_when_configured(tmp_path: Path) -> None:
    _redis_reachable()
    with _serve(tmp_path, REDIS_URL=REDIS_URL) as live:
        detailed = httpx.get(f"{live.url}/status/detailed")
    assert detailed.status_code == 200
    body = detailed.json()
    assert body["redis"]["status"] == "healthy" and body["redis"]["connectionTime"] >= 0
    assert "redis://" not in detailed.text


def test_an_unreachable_redis_makes_the_status_503(tmp_path: Path) -> None:
    with _serve(tmp_path, REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0") as live:
        detailed = httpx.get(f"{live.url}/status/detailed")
        health = httpx.get(f"{live.url}/health")
    assert detailed.status_code == 503
    assert detailed.json()["status"] == "error" and detailed.json()["redis"]["status"] == "unhealthy"
    assert "hunter2" not in detailed.text
    assert health.status_code == 200  # liveness does not depend on Redis


def test_no_redis_section_without_redis(server) -> None:
    assert "redis" not in httpx.get(f"{server.url}/status/detailed").json()


class FixedClock:
    def now(self) -> datetime:
        return datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


class DeadDatabase:
    async def ping(self) -> float:
        raise ConnectionRefusedError("database is down")


def test_tests_override_providers_instead_of_patching(tmp_path: Path) -> None:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    container = build_container(
        make_settings(f"sqlite:///{tmp_path / 'o.db'}", tmp_path, TOLSTOY_AUTO_MIGRATE="true")
    )
    container.clock.override(FixedClock())
    container.database_probe.override(DeadDatabase())
    with LiveServer(create_app(container)) as live:
        assert httpx.get(f"{live.url}/health").json()["timestamp"] == "2030-01-02T03:04:05.678Z"
        status = httpx.get(f"{live.url}/status")
    assert status.status_code == 503 and status.json()["database"]["status"] == "unhealthy"
