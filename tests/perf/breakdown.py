"""Where a ``GET /flows/{id}`` spends its CPU: each layer timed on its own, in one process.

    .venv/bin/python -m tests.perf.breakdown [--requests 3000]

No sockets: the ASGI apps are called directly, and each step is run by 32 concurrent callers on
uvloop (as under load), on a throw-away PostgreSQL database. Figures are microseconds of this
process's CPU per call (median of 5 batches), so the layers can be compared with each other and
with the whole request. Run it next to bench_rest.py (which measures the served figures). The
steps that keep a connection checked out use at most DATABASE_POOL_SIZE (10) callers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson

from tests.perf.bench_rest import FLOW

FLOW_STEPS = FLOW["steps"]  # the same flow as bench_rest.py


def scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


def asgi_caller(app: Any, path: str, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
    template = scope(path, headers)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> None:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(template), receive, send)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")

    return call


StepFactory = Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[Any]]]]


def plain(step: Callable[[], Awaitable[Any]]) -> StepFactory:
    @asynccontextmanager
    async def factory() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
        yield step

    return factory


async def timed(n: int, factory: StepFactory, concurrency: int) -> float:
    """Microseconds of this process's CPU per call, with ``concurrency`` callers at once (as
    under load, where one event-loop wake-up serves many ready sockets): the median of 5
    batches of about n/5 calls each, after a warm-up."""
    per_worker = max(1, n // 5 // concurrency)

    async def worker(rounds: int) -> None:
        async with factory() as step:
            for _ in range(rounds):
                await step()

    await asyncio.gather(*(worker(max(1, 200 // concurrency)) for _ in range(concurrency)))
    samples = []
    for _ in range(5):
        started = time.process_time()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        samples.append((time.process_time() - started) / (per_worker * concurrency) * 1e6)
    return statistics.median(samples)


async def breakdown(db_url: str, n: int, concurrency: int) -> list[tuple[str, float, float]]:
    import asyncpg
    from sqlalchemy import bindparam, event, select

    from adapters.persistence import tables
    from application.tenancy import Caller, hash_api_key
    from entrypoints.container import build_container
    from entrypoints.rest import presenters
    from entrypoints.rest.app import create_app
    from entrypoints.rest.responses import JSONBytes
    from entrypoints.settings import Settings
    from tests.perf import bare_app

    settings = Settings(_env_file=None, DATABASE_URL=db_url, TOLSTOY_ADMIN_TOKEN="breakdown-admin")
    container = build_container(settings)
    app = create_app(container)
    bare = bare_app.create_app(db_url.replace("postgresql+asyncpg://", "postgresql://"), 10)
    holding = min(concurrency, settings.db_pool_size)  # steps that keep a connection checked out
    rows: list[tuple[str, float, float]] = []
    connects = 0

    def on_connect(*_: object) -> None:
        nonlocal connects
        connects += 1

    event.listen(container.engine().sync_engine, "connect", on_connect)

    async def row(label: str, factory: StepFactory, workers: int = concurrency) -> None:
        before = connects
        calls = 0

        def counting(factory: StepFactory) -> StepFactory:
            @asynccontextmanager
            async def wrapped() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
                async with factory() as step:

                    async def counted() -> Any:
                        nonlocal calls
                        calls += 1
                        return await step()

                    yield counted

            return wrapped

        micros = await timed(n, counting(factory), workers)
        rows.append((label, micros, 1000 * (connects - before) / max(calls, 1)))

    async with app.router.lifespan_context(app), bare.router.lifespan_context(bare):
        org, issued = await container.organizations().create(Caller(admin=True), name="Breakdown")
        auth = container.authenticator()
        bearer = f"Bearer {issued.plaintext}"
        ctx = await auth.tenant(bearer, org.id, None)
        flows = container.flows()
        flow = await flows.create(ctx, name="Benchmark flow", description="d", steps=FLOW_STEPS, settings={})
        headers = {"Authorization": bearer, "X-Org-ID": org.id}
        path = f"/flows/{flow.id}"
        uow_factory = container.uow_factory()
        engine = container.engine()
        pool: asyncpg.Pool = bare.state.pool
        t = tables.flows

        async def uow_only() -> None:
            async with uow_factory(read_only=True):
                pass

        async def raw_connection() -> None:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")

        @asynccontextmanager
        async def in_open_uow() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
            async with uow_factory(read_only=True) as uow:
                yield lambda: uow.flows.get(org.id, flow.id)

        @asynccontextmanager
        async def in_open_connection() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
            async with engine.connect() as conn:

                async def execute() -> None:
                    (await conn.execute(select(t).where(t.c.org_id == org.id, t.c.id == flow.id))).first()

                yield execute

        prebuilt = select(t).where(t.c.org_id == bindparam("org"), t.c.id == bindparam("id"))

        @asynccontextmanager
        async def prebuilt_on_open_connection() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
            async with engine.connect() as conn:

                async def execute() -> None:
                    (await conn.execute(prebuilt, {"org": org.id, "id": flow.id})).first()

                yield execute

        @asynccontextmanager
        async def driver_on_open_connection() -> AsyncIterator[Callable[[], Awaitable[Any]]]:
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection

                async def fetchrow() -> None:
                    await raw.fetchrow("SELECT * FROM flows WHERE org_id=$1 AND id=$2", org.id, flow.id)

                yield fetchrow

        async def build_statement() -> None:
            select(t).where(t.c.org_id == org.id, t.c.id == flow.id)

        async def present() -> None:
            JSONBytes(presenters.flow(flow))  # renders the body in __init__

        async def asyncpg_fetchrow() -> None:
            row = await pool.fetchrow("SELECT * FROM flows WHERE id=$1", flow.id)
            orjson.dumps(dict(row))

        async def hash_key() -> None:
            hash_api_key(issued.plaintext)

        await row("Tolstoy: GET /flows/{id} through the ASGI app", plain(asgi_caller(app, path, headers)))
        await row(
            "  auth: Authenticator.tenant (1 UoW + 1 query)", plain(lambda: auth.tenant(bearer, org.id, None))
        )
        await row("  use case: Flows.get (1 UoW + 1 query)", plain(lambda: flows.get(ctx, flow.id)))
        await row("  presenter + orjson response body", plain(present))
        await row("    UoW open+close, no query (checkout, AUTOCOMMIT, 8 repos)", plain(uow_only))
        await row("    engine.connect + AUTOCOMMIT + close, no query", plain(raw_connection))
        await row("    repository.get in an already open UoW", in_open_uow, holding)
        await row(
            "    SQLAlchemy Core select+execute+first on an open connection", in_open_connection, holding
        )
        await row("    building select(t).where(...) only", plain(build_statement))
        await row("    same, statement built once with bindparam()", prebuilt_on_open_connection, holding)
        await row(
            "    asyncpg fetchrow on SQLAlchemy's pooled connection", driver_on_open_connection, holding
        )
        await row("    sha256 of the API key", plain(hash_key))
        await row("Tolstoy: GET /health through the ASGI app (no DB)", plain(asgi_caller(app, "/health", {})))

        class StubAuth:  # the same answers, without the database
            async def tenant(self, *_: object) -> Any:
                return ctx

        class StubFlows:
            async def get(self, *_: object) -> Any:
                return flow

        with container.authenticator.override(StubAuth()), container.flows.override(StubFlows()):
            await row(
                "Tolstoy: GET /flows/{id}, auth and use case stubbed (framework only)",
                plain(asgi_caller(app, path, headers)),
            )
        await row("bare: GET /flows/{id} through the ASGI app", plain(asgi_caller(bare, path, headers)))
        await row("  bare: asyncpg pool.fetchrow + orjson", plain(asyncpg_fetchrow))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="calls per measured step (5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="callers at once (32)")
    args = parser.parse_args(argv)
    if not (100 <= args.requests <= 100_000 and 1 <= args.concurrency <= 256):
        parser.error("--requests 100..100000, --concurrency 1..256")

    import uvloop

    from adapters.persistence.migrate import upgrade
    from tests.support import throwaway_postgres_database

    with throwaway_postgres_database("tolstoy_perf") as db_url:
        upgrade(db_url)
        rows = uvloop.run(breakdown(db_url, args.requests, args.concurrency))
    full = rows[0][1]
    print(
        f"\nCPU per call in microseconds ({args.concurrency} callers at once, median of 5 batches), "
        "and as a share of one whole Tolstoy request"
    )
    print(f"{'':<66}{'CPU/call':>11}{'share':>8}{'new PG connections/1000 calls':>32}")
    for label, micros, connects in rows:
        print(f"{label:<66}{micros:>8.0f} us {100 * micros / full:>6.1f}%{connects:>20.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
