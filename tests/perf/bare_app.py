"""The baseline: the least a FastAPI service can do to answer ``GET /flows/{id}`` from PostgreSQL.

    python -m tests.perf.bare_app --dsn postgresql://postgres@127.0.0.1:5432/db --port 8001

One asyncpg pool, one query (``SELECT * FROM flows WHERE id=$1``), the row as JSON (orjson).
No authentication, no tenant check, no SQLAlchemy, no domain objects. It is served by uvicorn
with the same settings as ``tolstoy serve`` (one worker, uvloop/httptools by default, no access
log, no server header), so the difference to Tolstoy is Tolstoy's own request path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response


def create_app(dsn: str, pool_size: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def init(conn: asyncpg.Connection) -> None:
            # Decode JSONB like Tolstoy does, so both answers carry the same document.
            await conn.set_type_codec(
                "jsonb", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog"
            )

        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size, init=init)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/flows/{flow_id}")
    async def get_flow(request: Request, flow_id: str) -> Response:
        row = await request.app.state.pool.fetchrow("SELECT * FROM flows WHERE id=$1", flow_id)
        if row is None:
            return Response(b'{"error":"not found"}', status_code=404, media_type="application/json")
        return Response(orjson.dumps(dict(row)), media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare FastAPI + asyncpg baseline for GET /flows/{id}")
    parser.add_argument("--dsn", required=True, help="postgresql://… (asyncpg form)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10, help="Tolstoy's default DATABASE_POOL_SIZE")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        create_app(args.dsn, args.pool_size),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
