"""``tolstoy worker``: ARQ worker processes that advance executions (the production engine).

Each process runs ``--concurrency`` advances at once; any number of processes, on any number of
machines, share the queue (adapters/engine/arq_worker.py has the jobs). ``--metrics-port`` serves
the worker's Prometheus metrics (step timings, retries, errors): scrape it beside the API's
/metrics; with ``--processes N`` the ports are metrics-port .. metrics-port+N-1.

With ``--processes N`` the parent only supervises: SIGTERM or SIGINT is passed on to every child,
each stops as a single worker does (ARQ lets its jobs finish for up to 5 s, then cancels them), and
the parent exits once all have, 0 if all stopped cleanly. A child that dies on its own makes the
parent stop the others and exit 1, so that a supervisor (systemd, Kubernetes) restarts the whole
worker; a parent that dies, even by SIGKILL, takes its children with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

from adapters.engine.arq_scheduler import ArqScheduler
from adapters.engine.arq_worker import Runtime, build_worker
from entrypoints.lifecycle import SchemaOutOfDate, check_schema
from entrypoints.settings import Settings

logger = logging.getLogger(__name__)

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How a child ends once the parent stops them: 0 through ARQ's shutdown, or killed by the signal if it
# came in the first moments of its start-up, before it blocked it (it had taken no job then).
_STOPPED = {0, -signal.SIGTERM, -signal.SIGINT}
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
        worker = build_worker(settings.redis_url, concurrency, make_runtime, close_runtime)
        # A child of run_workers has SIGTERM and SIGINT blocked until now: one that came meanwhile
        # is delivered once the loop runs, to ARQ's handlers (uvloop drops a signal that arrives
        # after they are set but before it runs). A no-op in a single process.
        worker.loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, _STOP_SIGNALS)
        worker.run()
    except SchemaOutOfDate as exc:
        raise SystemExit(f"tolstoy worker: {exc}") from None


def run_workers(settings: Settings, processes: int, concurrency: int, metrics_port: int | None) -> int:
    if processes <= 1:
        run_worker(settings, concurrency, metrics_port)
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_child,
            args=(settings, concurrency, None if metrics_port is None else metrics_port + i, os.getpid()),
            name=f"tolstoy-worker-{i}",
        )
        for i in range(processes)
    ]
    stopping: list[int] = []

    def stop(signum: int, _frame: object = None) -> None:
        """Pass the signal on (the handler of SIGTERM and SIGINT, and what a dead child calls for)."""
        stopping.append(signum)
        for child in children:
            # exitcode reaps a child that exited: its pid is never signalled once it could be reused
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited just now
                    os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    failed = False
    try:
        for child in children:
            child.start()
            logger.info("started %s (pid %d)", child.name, child.pid)
        if stopping:  # a signal came while they started: the later ones have not had it
            stop(stopping[-1])
        running = list(children)
        while running:
            multiprocessing.connection.wait([child.sentinel for child in running])
            for child in [child for child in running if child.exitcode is not None]:
                running.remove(child)
                if not stopping:
                    logger.error(
                        "%s exited unexpectedly (%s): stopping the others", child.name, child.exitcode
                    )
                    failed = True
                    stop(signal.SIGTERM)
                elif child.exitcode not in _STOPPED:
                    logger.error("%s exited with %s", child.name, child.exitcode)
                    failed = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _child(settings: Settings, concurrency: int, metrics_port: int | None, parent: int) -> None:
    """One worker of run_workers. It is spawned (a fresh interpreter), so it sets up its own logging."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # until ARQ handles them (run_worker)
    _exit_with(parent)
    from entrypoints.logs import configure_logging

    configure_logging(settings.log_level)
    run_worker(settings, concurrency, metrics_port)


def _exit_with(parent: int) -> None:
    """SIGTERM this process when ``parent`` dies, even by SIGKILL (which it cannot pass on): the
    worker then stops as on ``kill``, where it would otherwise run on orphaned, taking jobs and
    holding its metrics port. On Linux the kernel sends it (PR_SET_PDEATHSIG: at once, whatever this
    process is doing; when the thread that started it ends, here the parent's main thread, which
    lasts as long as the parent); elsewhere a thread watches for re-parenting."""
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before the above took effect
        raise SystemExit("tolstoy worker: the parent process is gone")
