"""Configuration from the environment (and an optional .env file). The names are the public contract."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.persistence.engine import sqlite_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    direct_url: str | None = Field(None, validation_alias="DIRECT_URL")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    data_dir: Path = Field(Path(".tolstoy"), validation_alias="TOLSTOY_DATA_DIR")
    admin_token: SecretStr | None = Field(None, validation_alias="TOLSTOY_ADMIN_TOKEN")
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("HOST", "TOLSTOY_HOST"))
    port: int = Field(3000, validation_alias="PORT", ge=0, le=65535)
    grpc_port: int = Field(50051, validation_alias="GRPC_PORT", ge=0, le=65535)
    log_level: str = Field("info", validation_alias="LOG_LEVEL")
    environment: str = Field("development", validation_alias=AliasChoices("TOLSTOY_ENV", "NODE_ENV"))
    max_body_bytes: int = Field(1024 * 1024, validation_alias="TOLSTOY_MAX_BODY_BYTES", ge=1)
    db_pool_size: int = Field(20, validation_alias="DATABASE_POOL_SIZE", ge=1)
    db_max_overflow: int = Field(0, validation_alias="DATABASE_MAX_OVERFLOW", ge=0)
    auth_cache_seconds: float = Field(10.0, validation_alias="TOLSTOY_AUTH_CACHE_SECONDS", ge=0)
    read_cache_entries: int = Field(1000, validation_alias="TOLSTOY_READ_CACHE_ENTRIES", ge=0)
    read_cache_seconds: float = Field(30.0, validation_alias="TOLSTOY_READ_CACHE_SECONDS", gt=0)
    auto_migrate: bool | None = Field(None, validation_alias="TOLSTOY_AUTO_MIGRATE")
    encryption_key: SecretStr | None = Field(None, validation_alias="TOLSTOY_ENCRYPTION_KEY")
    previous_encryption_keys: SecretStr | None = Field(
        None, validation_alias="TOLSTOY_PREVIOUS_ENCRYPTION_KEYS"
    )
    allow_unmask: bool = Field(True, validation_alias="TOLSTOY_ALLOW_UNMASK")
    secrets_backend: Literal["local", "aws"] = Field("local", validation_alias="SECRETS_BACKEND")
    aws_region: str = Field("us-east-1", validation_alias="AWS_REGION")
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    egress_allow: str = Field("", validation_alias="TOLSTOY_EGRESS_ALLOW")
    http_timeout_seconds: float = Field(30.0, validation_alias="TOLSTOY_HTTP_TIMEOUT_SECONDS", gt=0)
    sandbox_backend: Literal["v8", "daytona"] = Field("v8", validation_alias="SANDBOX_BACKEND")
    sandbox_isolation: Literal["process", "thread"] = Field("process", validation_alias="SANDBOX_ISOLATION")
    sandbox_processes: int = Field(1, validation_alias="SANDBOX_PROCESSES", ge=1, le=64)
    sandbox_memory_mb: int = Field(64, validation_alias="SANDBOX_MEMORY_MB", ge=8, le=4096)
    sandbox_timeout_ms: int = Field(30_000, validation_alias="SANDBOX_TIMEOUT_MS", ge=10)
    # Clean V8 isolates a sandbox process keeps for the organizations that ran code last (each
    # ~3.3 MB; making one for an organization that has none costs ~12 ms of CPU).
    sandbox_warm_isolates: int = Field(64, validation_alias="SANDBOX_WARM_ISOLATES", ge=0, le=4096)
    # A V8 sandbox process past this resident memory is killed (typed arrays escape the per-run
    # limit); 0: never.
    sandbox_process_memory_mb: int = Field(
        2048, validation_alias="SANDBOX_PROCESS_MEMORY_MB", ge=0, le=1_048_576
    )
    daytona_api_key: SecretStr | None = Field(None, validation_alias="DAYTONA_API_KEY")
    daytona_base_url: str | None = Field(None, validation_alias="DAYTONA_BASE_URL")
    daytona_sync_timeout_ms: int = Field(30_000, validation_alias="DAYTONA_SYNC_TIMEOUT", ge=100)
    daytona_async_timeout_ms: int = Field(300_000, validation_alias="DAYTONA_ASYNC_TIMEOUT", ge=100)
    engine: Literal["auto", "inprocess", "arq"] = Field("auto", validation_alias="TOLSTOY_ENGINE")
    engine_concurrency: int = Field(10, validation_alias="TOLSTOY_ENGINE_CONCURRENCY", ge=1, le=1000)
    flow_concurrency: int = Field(10, validation_alias="TOLSTOY_FLOW_CONCURRENCY", ge=1, le=1000)
    org_concurrency: int = Field(50, validation_alias="TOLSTOY_ORG_CONCURRENCY", ge=1, le=10_000)
    lease_seconds: float = Field(30.0, validation_alias="TOLSTOY_LEASE_SECONDS", gt=0)

    @field_validator("database_url", "direct_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError("LOG_LEVEL must be one of critical, error, warning, info, debug")
        return value

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    @property
    def engine_kind(self) -> str:
        """auto: ARQ workers when REDIS_URL is set, else the in-process engine."""
        if self.engine == "auto":
            return "arq" if self.redis_url else "inprocess"
        if self.engine == "arq" and not self.redis_url:
            raise ValueError("TOLSTOY_ENGINE=arq needs REDIS_URL")
        return self.engine

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given: SQLite in the data directory."""
        return self.database_url is None

    @property
    def database(self) -> str:
        return self.database_url or sqlite_url((self.data_dir / "tolstoy.db").resolve())

    @property
    def migration_database(self) -> str:
        return self.direct_url or self.database

    @property
    def migrate_on_start(self) -> bool:
        return self.embedded if self.auto_migrate is None else self.auto_migrate
