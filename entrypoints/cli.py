"""The ``tolstoy`` command: serve, grpc, migrate, worker, secrets."""

from __future__ import annotations

import argparse
import sys

from entrypoints.logs import configure_logging
from entrypoints.settings import Settings


def serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    app = create_app(build_container(settings))
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        log_config=None,  # uvicorn's lines go through our JSON handler (entrypoints/logs.py)
        lifespan="on",
        server_header=False,
    )
    # uvicorn finishes in-flight requests and runs the lifespan shutdown on SIGTERM and SIGINT.
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def grpc(settings: Settings, host: str | None, port: int | None) -> int:
    import asyncio

    from entrypoints.container import build_container
    from entrypoints.grpc.server import serve_alone

    try:  # the event loop uvicorn picks for `tolstoy serve` (loop="auto"), when installed
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        runner = asyncio.run
    runner(
        serve_alone(
            build_container(settings), host or settings.host, settings.grpc_port if port is None else port
        )
    )
    return 0


def migrate(settings: Settings, revision: str) -> int:
    from adapters.persistence.migrate import upgrade

    upgrade(settings.migration_database, revision)
    print(f"Database migrated to {revision}.", file=sys.stderr)
    return 0


def rotate_key(settings: Settings) -> int:
    """Re-encrypt every stored credential with a new key (key file), or with TOLSTOY_ENCRYPTION_KEY
    when it is set (the old key then goes in TOLSTOY_PREVIOUS_ENCRYPTION_KEYS until this is done)."""
    import asyncio

    from adapters.persistence.engine import create_engine
    from adapters.secrets.keyring import load_keyring
    from adapters.secrets.local import LocalSecretStore

    keyring = load_keyring(
        settings.secret("encryption_key"), settings.secret("previous_encryption_keys"), settings.data_dir
    )
    from_file = keyring.path is not None
    target = keyring.rotated() if from_file else keyring
    if from_file:
        target.save()  # first: from now on new writes use the new key, and the old keys still read

    async def run() -> int:
        engine = create_engine(settings.migration_database)
        try:
            return await LocalSecretStore(engine, target).rotate(target)
        finally:
            await engine.dispose()

    count = asyncio.run(run())
    if from_file:
        target.previous = []
        target.save()  # every row is on the new key: the old ones can go
    print(f"Re-encrypted {count} credential set(s) with key {target.current_id}.", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tolstoy", description="Tolstoy workflow automation platform")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve",
        help="run the REST API (PORT, default 3000) and gRPC beside it (GRPC_PORT, default 50051; 0: off)",
    )
    serve_cmd.add_argument("--host", help="bind address (default HOST or 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (default PORT or 3000)")
    grpc_cmd = commands.add_parser("grpc", help="run the gRPC API alone (GRPC_PORT, default 50051)")
    grpc_cmd.add_argument("--host", help="bind address (default HOST or 127.0.0.1)")
    grpc_cmd.add_argument("--port", type=int, help="port (default GRPC_PORT or 50051; 0: any free port)")
    migrate_cmd = commands.add_parser(
        "migrate", help="upgrade the database schema (uses DIRECT_URL when set)"
    )
    migrate_cmd.add_argument("revision", nargs="?", default="head")
    secrets_cmd = commands.add_parser("secrets", help="manage the local secret store")
    secrets_cmd.add_subparsers(dest="secrets_command", required=True).add_parser(
        "rotate-key", help="re-encrypt every stored credential with a new key"
    )
    worker_cmd = commands.add_parser(
        "worker", help="run ARQ workers that advance flow executions (REDIS_URL)"
    )
    worker_cmd.add_argument("--concurrency", type=int, default=16, help="advances at once per process (16)")
    worker_cmd.add_argument("--processes", type=int, default=1, help="worker processes to start")
    worker_cmd.add_argument("--metrics-port", type=int, help="serve the worker's Prometheus metrics here")
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level)
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    if args.command == "grpc":
        return grpc(settings, args.host, args.port)
    if args.command == "worker":
        from entrypoints.worker import run_workers

        return run_workers(settings, args.processes, args.concurrency, args.metrics_port)
    if args.command == "secrets":
        return rotate_key(settings)
    return migrate(settings, args.revision)


if __name__ == "__main__":
    sys.exit(main())
