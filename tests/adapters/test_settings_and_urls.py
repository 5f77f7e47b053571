"""Configuration: env var names from the contract, and the database URLs people paste."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.persistence.engine import normalize_url
from entrypoints.settings import Settings


@pytest.mark.parametrize(
    ("raw", "driver", "query"),
    [
        ("postgres://u:p@h/db", "postgresql+asyncpg", {}),
        (
            "postgresql://u:p@h:6543/db?sslmode=require&channel_binding=require",
            "postgresql+asyncpg",
            {"ssl": "require"},
        ),
        ("postgresql://u@h/db?pgbouncer=true&connection_limit=1", "postgresql+asyncpg", {}),
        ("postgresql+asyncpg://u@h/db?ssl=verify-full", "postgresql+asyncpg", {"ssl": "verify-full"}),
        ("sqlite:///tmp/x.db", "sqlite+aiosqlite", {}),
    ],
)
def test_database_urls_are_normalized(raw: str, driver: str, query: dict) -> None:
    url = normalize_url(raw)
    assert url.drivername == driver and dict(url.query) == query


def test_unsupported_schemes_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="mysql"):
        normalize_url("mysql://u@h/db")


def test_settings_read_the_contract_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "DATABASE_URL": "postgresql://u@h/db",
        "DIRECT_URL": "postgresql://u@direct/db",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "TOLSTOY_DATA_DIR": str(tmp_path),
        "TOLSTOY_ADMIN_TOKEN": "t0ken",
        "PORT": "8080",
        "GRPC_PORT": "9090",
        "LOG_LEVEL": "WARNING",
        "NODE_ENV": "production",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.port == 8080 and settings.grpc_port == 9090 and settings.log_level == "warning"
    assert settings.environment == "production" and settings.data_dir == tmp_path
    assert settings.admin_token.get_secret_value() == "t0ken" and "t0ken" not in repr(settings)
    assert not settings.embedded and settings.migration_database == "postgresql://u@direct/db"
    assert settings.migrate_on_start is False
    monkeypatch.setenv("TOLSTOY_ENV", "staging")
    assert Settings(_env_file=None).environment == "staging"


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "DIRECT_URL",
        "REDIS_URL",
        "PORT",
        "GRPC_PORT",
        "TOLSTOY_DATA_DIR",
        "NODE_ENV",
        "TOLSTOY_ENV",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "  ")  # blank means unset
    settings = Settings(_env_file=None)
    assert settings.embedded and settings.migrate_on_start
    assert settings.database.startswith("sqlite+aiosqlite:///") and settings.database.endswith(
        ".tolstoy/tolstoy.db"
    )
    assert (settings.port, settings.grpc_port, settings.max_body_bytes) == (3000, 50051, 1024 * 1024)


def test_bad_settings_fail_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "seventy")
    with pytest.raises(ValidationError, match="PORT"):
        Settings(_env_file=None)
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        Settings(_env_file=None)


def test_the_engine_and_the_sandbox_are_chosen_from_settings(tmp_path: Path) -> None:
    from adapters.engine.arq_scheduler import ArqScheduler
    from adapters.engine.inprocess import InProcessScheduler
    from adapters.sandbox.daytona import DaytonaSandbox
    from adapters.sandbox.v8 import V8Sandbox
    from adapters.sandbox.v8_process import ProcessV8Sandbox
    from entrypoints.container import build_container

    def settings(**env: str) -> Settings:
        return Settings(_env_file=None, TOLSTOY_DATA_DIR=str(tmp_path), **env)

    embedded = build_container(settings())
    assert isinstance(embedded.scheduler(), InProcessScheduler)
    assert isinstance(embedded.sandbox(), ProcessV8Sandbox)  # V8 aborts cannot take the server down
    assert isinstance(build_container(settings(SANDBOX_ISOLATION="thread")).sandbox(), V8Sandbox)
    assert embedded.sandbox().warm_max == 64  # warm isolates per sandbox process
    assert build_container(settings(SANDBOX_WARM_ISOLATES="200")).sandbox().warm_max == 200
    assert (
        build_container(settings(SANDBOX_ISOLATION="thread", SANDBOX_WARM_ISOLATES="0")).sandbox().warm_max
        == 0
    )
    assert embedded.advance().worker_id.startswith("embedded@")
    production = build_container(settings(DATABASE_URL="postgresql://u@h/db", REDIS_URL="redis://h:6379/0"))
    assert isinstance(production.scheduler(), ArqScheduler)
    assert ":" in production.advance().worker_id  # host:pid, one per worker process
    forced = build_container(settings(REDIS_URL="redis://h:6379/0", TOLSTOY_ENGINE="inprocess"))
    assert isinstance(forced.scheduler(), InProcessScheduler)
    # SQLite with ARQ workers: every worker process needs a lease identity of its own
    assert ":" in build_container(settings(REDIS_URL="redis://h:6379/0")).advance().worker_id
    with pytest.raises(ValueError, match="REDIS_URL"):
        settings(TOLSTOY_ENGINE="arq").engine_kind  # noqa: B018
    daytona = build_container(
        settings(
            SANDBOX_BACKEND="daytona", DAYTONA_API_KEY="dtn_key", DAYTONA_BASE_URL="http://127.0.0.1:9/api"
        )
    )
    assert isinstance(daytona.sandbox(), DaytonaSandbox)
    with pytest.raises(RuntimeError, match="DAYTONA_API_KEY"):
        build_container(settings(SANDBOX_BACKEND="daytona")).sandbox()


@pytest.mark.parametrize(
    ("env", "feed_url"),
    [
        ({}, None),  # SQLite: no notices between processes, so nothing is cached
        ({"DATABASE_URL": "postgresql://u@db/t"}, "postgresql://u@db/t"),
        ({"DATABASE_URL": "postgresql://u@pool/t?pgbouncer=true"}, None),  # LISTEN needs a session
        (
            {"DATABASE_URL": "postgresql://u@pool/t?pgbouncer=true", "DIRECT_URL": "postgresql://u@db/t"},
            "postgresql://u@db/t",
        ),
        ({"DATABASE_URL": "postgresql://u@db/t", "TOLSTOY_READ_CACHE_ENTRIES": "0"}, "postgresql://u@db/t"),
        (
            {
                "DATABASE_URL": "postgresql://u@db/t",
                "TOLSTOY_READ_CACHE_ENTRIES": "0",
                "TOLSTOY_AUTH_CACHE_SECONDS": "0",
            },
            None,
        ),
        # the serving role listens; the migrations' (often more privileged) only behind a pooler
        (
            {"DATABASE_URL": "postgresql://app@db/t", "DIRECT_URL": "postgresql://owner@db/t"},
            "postgresql://app@db/t",
        ),
    ],
)
def test_the_change_feed_listens_on_a_session_connection(
    env: dict[str, str], feed_url: str | None, tmp_path: Path
) -> None:
    from adapters.persistence.engine import asyncpg_dsn
    from entrypoints.container import build_container

    container = build_container(Settings(_env_file=None, TOLSTOY_DATA_DIR=str(tmp_path), **env))
    feed = container.change_feed()
    assert (feed and feed._dsn) == (feed_url and asyncpg_dsn(feed_url))
