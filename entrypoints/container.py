"""The composition root: the one place where adapters are chosen, from Settings."""

from __future__ import annotations

import logging
import os
import socket
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SystemClock
from adapters.http.guarded_client import GuardedHttpClient
from adapters.observability.prometheus import PrometheusMetrics
from adapters.persistence.engine import create_engine, create_read_pool, create_write_pool
from adapters.persistence.unit_of_work import SqlDatabaseProbe, SqlUnitOfWorkFactory
from adapters.redis_probe import RedisProbe
from adapters.regex import compile_pattern
from adapters.secrets.keyring import Keyring, load_keyring
from adapters.secrets.local import LocalSecretStore
from application.cache import LocalCopies, ReadCache
from application.credentials import ToolCredentialsService
from application.engine.advance import AdvanceExecution
from application.engine.executions import Executions
from application.engine.steps import StepRunners
from application.execute_action import ExecuteAction
from application.health import SystemStatus
from application.organizations import ApiKeys, AuditTrail, Organizations
from application.ports import ChangeFeed, Sandbox, SecretStore
from application.resources import Actions, ExecutionLogs, Flows, Tools, Users
from application.tenancy import Authenticator, KeyOwnerCache
from domain.egress import EgressPolicy
from entrypoints.admin_token import resolve_admin_token
from entrypoints.settings import Settings


def tolstoy_version() -> str:
    try:
        return version("tolstoy")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def _engine(settings: Settings) -> AsyncEngine:
    """Writers: transactions, half the pool (writes are the rarer and shorter work)."""
    size = max(2, settings.db_pool_size // 2)
    return create_engine(settings.database, pool_size=size, max_overflow=settings.db_max_overflow)


def _read_engine(settings: Settings) -> AsyncEngine:
    """Readers: connections in autocommit from birth."""
    return create_engine(
        settings.database,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        read_only=True,
    )


def _keyring(settings: Settings) -> Keyring:
    if not settings.embedded and settings.encryption_key is None:
        logging.getLogger("tolstoy").warning(
            "TOLSTOY_ENCRYPTION_KEY is not set: credentials are encrypted with a key file in %s, "
            "which other instances of this deployment do not share",
            settings.data_dir,
        )
    return load_keyring(
        settings.secret("encryption_key"), settings.secret("previous_encryption_keys"), settings.data_dir
    )


def _aws_store(settings: Settings) -> SecretStore:
    # boto3 is large; only deployments that use AWS pay for importing it.
    from adapters.secrets.aws import AwsSecretStore

    return AwsSecretStore(settings.aws_region, settings.aws_endpoint_url)


def _redis_probe(settings: Settings) -> RedisProbe | None:
    return None if settings.redis_url is None else RedisProbe(settings.redis_url)


def _sandbox(settings: Settings) -> Sandbox:
    if settings.sandbox_backend == "daytona":
        from adapters.sandbox.daytona import DaytonaSandbox

        if settings.daytona_api_key is None or not settings.daytona_base_url:
            raise RuntimeError("SANDBOX_BACKEND=daytona needs DAYTONA_API_KEY and DAYTONA_BASE_URL")
        return DaytonaSandbox(
            api_key=settings.secret("daytona_api_key"),
            base_url=settings.daytona_base_url,
            sync_timeout_ms=settings.daytona_sync_timeout_ms,
            async_timeout_ms=settings.daytona_async_timeout_ms,
        )
    limits = {
        "memory_mb": settings.sandbox_memory_mb,
        "default_timeout_ms": settings.sandbox_timeout_ms,
        "warm_max": settings.sandbox_warm_isolates,
    }
    if settings.sandbox_isolation == "thread":  # in this process: faster to start, but V8 aborts take it down
        from adapters.sandbox.v8 import V8Sandbox

        return V8Sandbox(**limits)
    from adapters.sandbox.v8_process import ProcessV8Sandbox

    return ProcessV8Sandbox(
        processes=settings.sandbox_processes, process_memory_mb=settings.sandbox_process_memory_mb, **limits
    )


def worker_id(settings: Settings) -> str:
    """Who holds an execution's lease. On the embedded default, the process that holds the data
    directory's engine lock is ``embedded@<host>``, the same name after a restart: a restarted server
    takes its executions back at once instead of waiting for their leases to expire. Any other
    process on that directory at the same time (a second ``serve``, a ``tolstoy grpc``) gets a name
    of its own, so its engine cannot take over the first one's leases while that one lives: it
    waits for them to expire, like any other worker."""
    own = f"{socket.gethostname()}:{os.getpid()}"[:64]
    if not (settings.embedded and settings.engine_kind == "inprocess"):  # ARQ workers: processes of their own
        return own
    if _hold_engine_lock(settings.data_dir):
        return f"embedded@{socket.gethostname()}"[:64]
    logging.getLogger("tolstoy").warning(
        "another Tolstoy process runs the embedded engine on %s: this one takes over that one's "
        "executions only once their leases expire",
        settings.data_dir,
    )
    return own


_ENGINE_LOCKS: dict[str, int] = {}  # data directory -> the open file whose lock this process holds


def _hold_engine_lock(data_dir: Path) -> bool:
    """An exclusive, non-blocking lock on ``<data_dir>/engine.lock``, held as long as this process
    lives (the system drops it when the process ends, however it ends)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: every process a name of its own (the safe side)
        return False
    path = (data_dir / "engine.lock").resolve()
    if str(path) in _ENGINE_LOCKS:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _ENGINE_LOCKS[str(path)] = fd
    return True


def _change_feed(settings: Settings) -> ChangeFeed | None:
    """Other processes' change notices, so copies of flows, tools and actions can be kept. On
    PostgreSQL only (LISTEN/NOTIFY), on a session of its own: with ``DATABASE_URL``'s role, unless
    that goes through a transaction-mode pooler (``pgbouncer=true``), where LISTEN does not work:
    then ``DIRECT_URL`` (the migrations' connection) when it is set. None (nothing is cached) when
    neither can listen, on SQLite, and when nothing is kept (read cache sized 0, API keys not
    remembered): the feed also makes other processes forget revoked keys at once."""
    from adapters.persistence.changes import PostgresChangeFeed
    from adapters.persistence.engine import behind_pgbouncer, normalize_url

    url = settings.database
    if behind_pgbouncer(url):
        url = settings.migration_database
    nothing_kept = settings.read_cache_entries == 0 and settings.auth_cache_seconds <= 0
    if nothing_kept or normalize_url(url).get_backend_name() != "postgresql":
        return None
    return None if behind_pgbouncer(url) else PostgresChangeFeed(url)


def _scheduler(advance: AdvanceExecution, clock: SystemClock, settings: Settings):
    """ARQ when Redis is configured (``tolstoy worker`` processes do the work), else in-process."""
    if settings.engine_kind == "arq":
        from adapters.engine.arq_scheduler import ArqScheduler

        return ArqScheduler(settings.redis_url)
    from adapters.engine.inprocess import InProcessScheduler

    return InProcessScheduler(advance, clock, concurrency=settings.engine_concurrency)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    engine = providers.Singleton(_engine, settings)
    read_engine = providers.Singleton(_read_engine, settings)
    read_pool = providers.Singleton(
        create_read_pool, settings.provided.database, settings.provided.db_pool_size
    )
    write_pool = providers.Singleton(
        create_write_pool, settings.provided.database, settings.provided.db_pool_size
    )
    key_cache = providers.Singleton(KeyOwnerCache, settings.provided.auth_cache_seconds)
    read_cache = providers.Singleton(
        ReadCache, settings.provided.read_cache_entries, settings.provided.read_cache_seconds
    )
    local_copies = providers.Singleton(LocalCopies, read_cache, key_cache)
    change_feed = providers.Singleton(_change_feed, settings)
    uow_factory = providers.Singleton(
        SqlUnitOfWorkFactory, engine, read_engine, read_pool, write_pool, heard=local_copies.provided.apply
    )
    database_probe = providers.Singleton(SqlDatabaseProbe, read_engine)  # a ping takes no write lock
    cache_probe = providers.Singleton(_redis_probe, settings)
    admin_token = providers.Singleton(resolve_admin_token, settings)

    keyring = providers.Singleton(_keyring, settings)
    secret_store = providers.Selector(
        settings.provided.secrets_backend,
        local=providers.Singleton(LocalSecretStore, engine, keyring),
        aws=providers.Singleton(_aws_store, settings),
    )
    authenticator = providers.Singleton(Authenticator, uow_factory, admin_token, key_cache)
    organizations = providers.Singleton(Organizations, uow_factory, clock, authenticator)
    api_keys = providers.Singleton(ApiKeys, uow_factory, clock)
    audit_trail = providers.Singleton(AuditTrail, uow_factory, clock)
    users = providers.Singleton(Users, uow_factory, clock)
    tools = providers.Singleton(Tools, uow_factory, clock, secret_store, cache=read_cache)
    actions = providers.Singleton(
        Actions, uow_factory, clock, providers.Object(compile_pattern), cache=read_cache
    )
    flows = providers.Singleton(Flows, uow_factory, clock, cache=read_cache)
    execution_logs = providers.Singleton(ExecutionLogs, uow_factory, clock)
    credentials = providers.Singleton(
        ToolCredentialsService, uow_factory, clock, secret_store, settings.provided.allow_unmask
    )
    metrics = providers.Singleton(PrometheusMetrics)
    egress_policy = providers.Singleton(EgressPolicy.parse, settings.provided.egress_allow)
    http_client = providers.Singleton(
        GuardedHttpClient, egress_policy, timeout=settings.provided.http_timeout_seconds
    )
    execute_action = providers.Singleton(
        ExecuteAction,
        uow_factory,
        clock,
        secret_store,
        http_client,
        providers.Object(compile_pattern),
        metrics,
        settings.provided.http_timeout_seconds,
    )
    sandbox = providers.Singleton(_sandbox, settings)
    step_runners = providers.Singleton(
        StepRunners, http_client, execute_action, sandbox, settings.provided.sandbox_timeout_ms
    )
    advance = providers.Singleton(
        AdvanceExecution,
        uow_factory,
        clock,
        step_runners,
        sandbox,
        metrics,
        worker_id=providers.Callable(worker_id, settings),
        lease_seconds=settings.provided.lease_seconds,
        flow_concurrency=settings.provided.flow_concurrency,
        org_concurrency=settings.provided.org_concurrency,
    )
    scheduler = providers.Singleton(_scheduler, advance, clock, settings)
    executions = providers.Singleton(Executions, uow_factory, clock, scheduler, advance, flows=flows)
    system_status = providers.Singleton(
        SystemStatus,
        uow_factory,
        database_probe,
        cache_probe,
        clock,
        providers.Callable(tolstoy_version),
        settings.provided.environment,
    )


async def start_change_feed(container: Container) -> None:
    """Listen to other processes' change notices (from then on copies may be kept)."""
    feed = container.change_feed()
    if feed is not None:
        copies = container.local_copies()
        await feed.start(copies.apply, copies.set_live)


async def close_container(container: Container) -> None:
    """Release pools and clients (the lifespan's shutdown)."""
    feed = container.change_feed()
    if feed is not None:
        await feed.aclose()
    probe = container.cache_probe()
    if probe is not None:
        await probe.close()
    for pool in (container.read_pool(), container.write_pool()):
        if pool is not None:
            await pool.close()
    await container.read_engine().dispose()
    await container.engine().dispose()
    await container.http_client().aclose()


async def close_engine(container: Container) -> None:
    """Stop the scheduler and the sandbox's threads (only for a container whose engine started)."""
    await container.scheduler().stop()
    close = getattr(container.sandbox(), "aclose", None)
    if close is not None:
        await close()


def build_container(settings: Settings | None = None) -> Container:
    return Container(settings=settings or Settings())
