"""What a serving process does around its servers, whichever they are (`tolstoy serve`: REST and
gRPC; `tolstoy grpc`: gRPC alone): a database ready to use, the admin token resolved, the engine
started (the in-process one resumes unfinished executions); and, on the way out, the engine stopped
and every pool and client closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.persistence.migrate import current_revision, head_revision, upgrade_engine
from entrypoints.container import Container, close_container, close_engine, start_change_feed


class SchemaOutOfDate(RuntimeError):
    pass


async def prepare_database(container: Container) -> None:
    """Migrate on start (embedded default), or refuse to serve an out-of-date schema."""
    if container.settings().migrate_on_start:
        await upgrade_engine(container.engine())
        return
    await check_schema(container)


async def check_schema(container: Container) -> None:
    """Refuse to run on a schema other than this code's (``tolstoy worker`` never migrates: the
    API, or ``tolstoy migrate``, does)."""
    current, head = await current_revision(container.engine()), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"Database schema is at {current or 'nothing'}, expected {head}: run `tolstoy migrate`"
        )


@asynccontextmanager
async def running(container: Container) -> AsyncIterator[None]:
    engine_started = False
    try:
        await prepare_database(container)
        container.authenticator()  # resolves the admin token now
        await start_change_feed(container)
        await container.scheduler().start()
        engine_started = True
        yield
    finally:
        if engine_started:
            await close_engine(container)
        await close_container(container)
