"""The ``tolstoy`` command: serve, migrate."""

from __future__ import annotations

import argparse
import logging
import sys

from entrypoints.settings import Settings


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
        lifespan="on",
        server_header=False,
    )
    # uvicorn finishes in-flight requests and runs the lifespan shutdown on SIGTERM and SIGINT.
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def migrate(settings: Settings, revision: str) -> int:
    from adapters.persistence.migrate import upgrade

    upgrade(settings.migration_database, revision)
    print(f"Database migrated to {revision}.", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tolstoy", description="Tolstoy workflow automation platform")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the REST API (PORT, default 3000)")
    serve_cmd.add_argument("--host", help="bind address (default HOST or 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (default PORT or 3000)")
    migrate_cmd = commands.add_parser(
        "migrate", help="upgrade the database schema (uses DIRECT_URL when set)"
    )
    migrate_cmd.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)

    settings = Settings()
    _logging(settings.log_level)
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    return migrate(settings, args.revision)


if __name__ == "__main__":
    sys.exit(main())
