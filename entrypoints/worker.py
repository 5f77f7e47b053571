"""``tolstoy worker``: ARQ worker processes that advance executions (the production engine).

Each process runs ``--concurrency`` advances at once; any number of processes, on any number of
machines, share the queue (adapters/engine/arq_worker.py has the jobs). ``--metrics-port`` serves
the worker's Prometheus metrics (step timings, retries, errors): scrape it beside the API's
/metrics; with ``--processes N`` the ports are metrics-port .. metrics-port+N-1.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing

from adapters.engine.arq_scheduler import ArqScheduler
from adapters.engine.arq_worker import Runtime, build_worker
from entrypoints.lifecycle import SchemaOutOfDate, check_schema
from entrypoints.settings import Settings


def run_worker(settings: Settings, concurrency: int, metrics_port: int | None = None) -> None:
    if settings.redis_url is None:
        raise SystemExit("tolstoy worker needs REDIS_URL")
    from entrypoints.container import build_container, close_container, close_engine

    container = build_container(settings)

    async def make_runtime() -> Runtime:
        # The engine's statements need this code's schema (e.g. migration 0008's function): a
        # worker on an older one would fail every execution it concluded.
        await check_schema(container)
        scheduler = ArqScheduler(settings.redis_url)
        container.scheduler.override(scheduler)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.host, registry=container.metrics().registry)
        return Runtime(container.advance(), container.clock(), scheduler)

    async def close_runtime(_rt: Runtime) -> None:
        await close_engine(container)
        await close_container(container)

    with contextlib.suppress(ImportError):  # uvloop (uvicorn[standard]): the loop ARQ picks up
        import uvloop

        asyncio.set_event_loop(uvloop.new_event_loop())
    try:
        build_worker(settings.redis_url, concurrency, make_runtime, close_runtime).run()
    except SchemaOutOfDate as exc:
        raise SystemExit(f"tolstoy worker: {exc}") from None


def run_workers(settings: Settings, processes: int, concurrency: int, metrics_port: int | None) -> int:
    if processes <= 1:
        run_worker(settings, concurrency, metrics_port)
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=run_worker,
            args=(settings, concurrency, None if metrics_port is None else metrics_port + i),
            name=f"tolstoy-worker-{i}",
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        for child in children:
            child.join()
    return 1 if any(child.exitcode for child in children) else 0  # e.g. an out-of-date schema
