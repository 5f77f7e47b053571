"""Test support: reaching real servers, and running Tolstoy on a real socket."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("TOLSTOY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TOLSTOY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(8)


def unavailable(service: str, reason: str) -> None:
    """Outside CI a missing server skips its tests; in CI it is a failure, never a skip."""
    message = f"{service} is not reachable ({reason})"
    if IN_CI:
        pytest.fail(f"{message}: in CI this must work (.ci/run starts the services)", pytrace=False)
    pytest.skip(f"{message}; start it to run these tests")


def _pg_admin_dsn() -> str:
    return PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn(), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run(coro: Any) -> Any:
    """Run a coroutine from synchronous code, even when a loop is running in this thread."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@contextmanager
def throwaway_postgres_database(prefix: str = "tolstoy_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for this run, dropped afterwards. Yields its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        _run(_pg(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
    base = _pg_admin_dsn().rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A Tolstoy app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC server beside REST (started by the app's lifespan)."""
        return f"127.0.0.1:{self.app.state.grpc_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class Api:
    """An HTTP client acting for one organization (or the admin, with the admin token)."""

    def __init__(
        self, base_url: str, token: str | None, org_id: str | None = None, user_id: str | None = None
    ):
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if org_id is not None:
            headers["X-Org-ID"] = org_id
        if user_id is not None:
            headers["X-User-ID"] = user_id
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self.base_url, self.token, self.org_id = base_url, token, org_id

    def as_user(self, user_id: str) -> Api:
        return Api(self.base_url, self.token, self.org_id, user_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def new_org(base_url: str, name: str = "Org") -> Api:
    admin = Api(base_url, ADMIN_TOKEN)
    response = admin.post("/organizations", json={"name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    return Api(base_url, body["apiKey"], body["id"])
