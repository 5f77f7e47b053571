"""Engine benchmark: how fast executions advance, embedded and in production mode, beside the floors.

    .venv/bin/python -m tests.perf.bench_engine            # full run (a few minutes)
    .venv/bin/python -m tests.perf.bench_engine --quick    # smaller sizes, a smoke test (~30-60 s)

Not a pytest test (nothing here is collected): it starts `tolstoy serve`, `tolstoy worker` and
bare ARQ workers as processes, drives them over HTTP and prints figures. Targets are printed beside
the figures, never asserted. See tests/perf/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.perf.bench_rest import PostgresCpu, clean_env, free_port, machine_busy_seconds

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bench-admin-token-" + secrets.token_hex(8)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
STEP_TARGET_MS = 2.0  # production mode, per step, every step durably checkpointed
THROUGHPUT_TARGET = 1000.0  # steps/s, 500 executions of 5 steps, two worker processes
POLL_S = 0.25  # the burst: how often the open executions, the queue and PostgreSQL's CPU are looked at
NOOP_QUEUE = "bench:noop"
REDIS_PORT_DEFAULT = 6379
PG_PORT_DEFAULT = 5432


# --- processes -------------------------------------------------------------------------------------


def tolstoy_bin() -> str:
    beside = Path(sys.executable).parent / "tolstoy"
    found = str(beside) if beside.exists() else shutil.which("tolstoy")
    if found is None:
        raise SystemExit("cannot find the `tolstoy` command: install the project (make serve) first")
    return found


class Proc:
    """A subprocess with its output in a log file; ``stop`` always ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Proc:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn and arq shut down cleanly on SIGTERM (cProfile writes its file)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def memory_mb(self) -> tuple[float, float]:
        info = psutil.Process(self.pid).memory_full_info()
        return info.rss / 2**20, info.uss / 2**20

    def children_memory_mb(self) -> tuple[float, float]:
        """RSS and USS of its child processes (the V8 sandbox's), summed."""
        rss = uss = 0.0
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                info = child.memory_full_info()
                rss, uss = rss + info.rss / 2**20, uss + info.uss / 2**20
        return rss, uss

    def connected_to(self, port: int) -> bool:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(self.pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED:
                    return True
        return False


class Processes:
    """Every process the benchmark starts, stopped in reverse order on the way out."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []  # still to stop
        self.every: list[Proc] = []  # for their logs when something fails

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> Proc:
        proc = Proc(name, command, env, cwd, self.log_dir)
        self.started.append(proc)
        self.every.append(proc)
        return proc.start()

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        while self.started:
            with contextlib.suppress(Exception):
                self.started.pop().stop()


class Spy:
    """``py-spy record`` attached to some processes over a span (--py-spy DIR); raw collapsed
    stacks, one file per process. Not a project dependency: pip install py-spy anywhere."""

    def __init__(self, binary: str | None, out_dir: Path | None) -> None:
        self.binary, self.out_dir = binary, out_dir
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, label: str, procs: list[Proc]) -> None:
        if self.binary is None or self.out_dir is None:
            return
        for proc in procs:
            out = self.out_dir / f"{label}-{proc.name}.raw"
            command = [self.binary, "record", "-p", str(proc.pid), "-r", "200", "-f", "raw", "-o", str(out)]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.running.append((spy, out))
        time.sleep(0.5)  # attached before the work starts

    def stop(self) -> None:
        for spy, _ in self.running:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy, out in self.running:
            try:
                spy.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=STOP_TIMEOUT)
            if not out.exists():
                error = spy.stderr.read().decode(errors="replace")[-500:] if spy.stderr else ""
                print(f"note: py-spy wrote no {out.name}: {error}", flush=True)
        self.running = []


def wait_http(proc: Proc, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer in {START_TIMEOUT:.0f} s:\n{proc.log_tail()}")


def wait_connected(proc: Proc, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        proc.check_alive()
        if proc.connected_to(port):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{proc.name} did not connect to port {port} in {START_TIMEOUT:.0f} s:\n{proc.log_tail()}"
    )


def redis_process() -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] and proc.info["name"].startswith("redis-server"):
            return proc
    return None


def _proc_cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        times = proc.cpu_times()
        return times.user + times.system
    return 0.0


def _descendants_cpu(procs: list[Proc]) -> dict[int, float]:
    """CPU seconds of every live descendant of ``procs`` (the V8 sandbox's child processes), by pid."""
    seen: dict[int, float] = {}
    for owner in procs:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(owner.pid).children(recursive=True):
                seen[child.pid] = _proc_cpu(child)
    return seen


# --- the API, as a client --------------------------------------------------------------------------


def parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def chain_flow(name: str, steps: int, concurrency: int) -> dict[str, Any]:
    """``steps`` data_transform steps in a chain (the default: each depends on the one before);
    step sN returns N, read from the output of the step before."""
    return {
        "name": name,
        "steps": [
            {
                "id": f"s{i}",
                "type": "data_transform",
                "config": {"script": f"return (stepOutputs.s{i - 1} || 0) + 1"},
            }
            for i in range(1, steps + 1)
        ],
        "settings": {"execution": {"concurrency": concurrency}},
    }


def new_tenant(base_url: str, name: str) -> dict[str, str]:
    answer = httpx.post(
        base_url + "/organizations",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"POST /organizations answered {answer.status_code}: {answer.text[:500]}")
    body = answer.json()
    return {"Authorization": f"Bearer {body['apiKey']}", "X-Org-ID": body["id"]}


def create_flow(base_url: str, headers: dict[str, str], flow: dict[str, Any]) -> str:
    answer = httpx.post(base_url + "/flows", json=flow, headers=headers, timeout=30)
    if answer.status_code != 201:
        raise RuntimeError(f"POST /flows answered {answer.status_code}: {answer.text[:500]}")
    return answer.json()["id"]


def submit(client: httpx.Client, flow_id: str) -> str:
    answer = client.post(f"/flows/{flow_id}/execute", json={"variables": {}})
    if answer.status_code != 202:
        raise RuntimeError(
            f"POST /flows/{flow_id}/execute answered {answer.status_code}: {answer.text[:500]}"
        )
    return answer.json()["executionId"]


def wait_execution(
    client: httpx.Client,
    flow_id: str,
    execution_id: str,
    timeout: float,
    poll: float = 0.05,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/flows/{flow_id}/executions/{execution_id}")
        answer.raise_for_status()
        body = answer.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(poll)
    raise RuntimeError(f"execution {execution_id} did not finish in {timeout:.0f} s")


def check_chain(body: dict[str, Any], steps: int) -> None:
    """The execution completed, every step completed in order, and the last step saw every output."""
    if body["status"] != "completed":
        raise RuntimeError(f"execution {body['executionId']} ended {body['status']}: {body.get('error')}")
    states = body.get("steps", [])
    done = [s for s in states if s["status"] == "completed"]
    if len(done) != steps:
        raise RuntimeError(f"execution {body['executionId']}: {len(done)}/{steps} steps completed")
    last = next((s for s in states if s["stepId"] == f"s{steps}"), None)
    if last is None or last["output"] != steps:
        raise RuntimeError(f"execution {body['executionId']}: last step output {last and last['output']!r}")
    ordered = sorted(states, key=lambda s: int(s["stepId"][1:]))
    for before, after in pairwise(ordered):
        if parse_time(after["startedAt"]) < parse_time(before["finishedAt"]):  # type: ignore[operator]
            raise RuntimeError(f"execution {body['executionId']}: {after['stepId']} started before its input")


# --- checkpoints, read from the database ----------------------------------------------------------


def checkpoints_pg(db_url: str, execution_ids: list[str]) -> dict[str, int]:
    import asyncpg

    async def ask() -> dict[str, int]:
        conn = await asyncpg.connect(db_url, timeout=10)
        try:
            return {
                "step_rows": await conn.fetchval(
                    "SELECT count(*) FROM execution_steps WHERE execution_id = ANY($1) AND status = 'completed'",
                    execution_ids,
                ),
                "log_rows": await conn.fetchval(
                    "SELECT count(*) FROM execution_logs WHERE execution_id = ANY($1) AND status = 'completed'",
                    execution_ids,
                ),
                "step_events": await conn.fetchval(
                    "SELECT count(*) FROM outbox_events WHERE payload->>'executionId' = ANY($1) "
                    "AND type IN ('step.started', 'step.completed')",
                    execution_ids,
                ),
                # Each step.completed event is written in the transaction that checkpoints its
                # step: as many distinct inserting transactions (xmin) as completed steps means
                # every step was committed on its own, none batched with another.
                "step_commits": await conn.fetchval(
                    "SELECT count(DISTINCT xmin::text) FROM outbox_events "
                    "WHERE payload->>'executionId' = ANY($1) AND type = 'step.completed'",
                    execution_ids,
                ),
            }
        finally:
            await conn.close()

    return asyncio.run(ask())


def checkpoints_sqlite(path: Path, execution_ids: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(execution_ids))
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:

        def count(sql: str) -> int:
            return int(db.execute(sql, execution_ids).fetchone()[0])

        return {
            "step_rows": count(
                f"SELECT count(*) FROM execution_steps WHERE execution_id IN ({marks}) AND status = 'completed'"
            ),
            "log_rows": count(
                f"SELECT count(*) FROM execution_logs WHERE execution_id IN ({marks}) AND status = 'completed'"
            ),
            "step_events": count(
                "SELECT count(*) FROM outbox_events WHERE json_extract(payload, '$.executionId') "
                f"IN ({marks}) AND type IN ('step.started', 'step.completed')"
            ),
        }


def pg_settings(db_url: str) -> dict[str, str]:
    import asyncpg

    async def ask() -> dict[str, str]:
        conn = await asyncpg.connect(db_url, timeout=10)
        try:
            names = ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
            return {name: await conn.fetchval(f"SHOW {name}") for name in names}
        finally:
            await conn.close()

    return asyncio.run(ask())


# --- floors: PostgreSQL commits, ARQ no-op jobs ----------------------------------------------------


def pg_commit_rate(db_url: str, seconds: float) -> dict[str, float]:
    """INSERT one row + COMMIT (BEGIN/INSERT/COMMIT, as a unit of work does) in a loop, asyncpg,
    on one connection and on 10 at once. The floor under one durably checkpointed step."""
    import asyncpg

    async def loop(conn: Any, until: float) -> int:
        done = 0
        while time.perf_counter() < until:
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_commit (payload) VALUES ($1)", '{"n": 1}')
            done += 1
        return done

    async def run() -> dict[str, float]:
        conns = [await asyncpg.connect(db_url, timeout=10) for _ in range(10)]
        try:
            await conns[0].execute(
                "CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, payload text, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            )
            await loop(conns[0], time.perf_counter() + min(0.5, seconds))  # warm-up
            started = time.perf_counter()
            one = await loop(conns[0], started + seconds)
            one_wall = time.perf_counter() - started
            started = time.perf_counter()
            counts = await asyncio.gather(*(loop(c, started + seconds) for c in conns))
            ten_wall = time.perf_counter() - started
            return {"one": one / one_wall, "ten": sum(counts) / ten_wall}
        finally:
            for conn in conns:
                await conn.close()

    return asyncio.run(run())


def noop_worker_main(
    redis_url: str, queue: str, concurrency: int, ready: Path, out: Path, engine: bool = False
) -> int:
    """A bare ARQ worker, as `tolstoy worker` configures it (poll_delay 0.05, keep_result 0,
    max_jobs = concurrency), running a no-op job; in burst mode, it exits when the queue is empty.
    ``engine``: the worker class of `tolstoy worker` (its one-script pick-up) instead of ARQ's.
    Writes the time of its first job start and last job end."""
    from arq import Worker
    from arq.connections import RedisSettings
    from arq.worker import func

    from adapters.engine.arq_worker import EngineWorker

    seen: dict[str, float] = {"jobs": 0}

    async def noop(_ctx: dict[str, Any]) -> None:
        now = time.time()
        seen.setdefault("first", now)
        seen["last"] = now
        seen["jobs"] += 1

    async def startup(_ctx: dict[str, Any]) -> None:
        ready.write_text(str(os.getpid()))

    worker = (EngineWorker if engine else Worker)(
        functions=[func(noop, name="noop", keep_result=0)],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        max_jobs=concurrency,
        on_startup=startup,
        keep_result=0,
        poll_delay=0.05,
        burst=True,
        handle_signals=True,
    )
    worker.run()
    out.write_text(json.dumps(seen))
    return 0


def arq_noop_throughput(
    procs: Processes,
    work: Path,
    redis_url: str,
    jobs: int,
    processes: int,
    concurrency: int,
    engine: bool = False,
) -> dict[str, float]:
    """N no-op jobs enqueued (deferred, so the workers start first), then made due at once; jobs/s
    from that moment to the last job's end, over ``processes`` bare ARQ worker processes."""
    import redis as sync_redis
    from arq import create_pool
    from arq.connections import RedisSettings

    settings = RedisSettings.from_dsn(redis_url)
    far = time.time() + 3600

    async def enqueue() -> None:
        pool = await create_pool(settings, default_queue_name=NOOP_QUEUE)
        try:
            for start in range(0, jobs, 200):
                await asyncio.gather(
                    *(
                        pool.enqueue_job(
                            "noop", _queue_name=NOOP_QUEUE, _defer_until=datetime.fromtimestamp(far, UTC)
                        )
                        for _ in range(start, min(jobs, start + 200))
                    )
                )
        finally:
            await pool.aclose()

    asyncio.run(enqueue())
    workers = []
    for i in range(processes):
        name = f"noop-{'engine-' if engine else ''}{processes}-{i}"
        ready, out = work / f"{name}.ready", work / f"{name}.json"
        command = [
            sys.executable,
            "-m",
            "tests.perf.bench_engine",
            "--noop-worker",
            redis_url,
            NOOP_QUEUE,
            str(concurrency),
            str(ready),
            str(out),
            *(["engine"] if engine else []),
        ]
        workers.append((procs.start(f"arq-{name}", command, clean_env(), REPO), ready, out))
    deadline = time.monotonic() + START_TIMEOUT
    for proc, ready, _ in workers:
        while not ready.exists():
            proc.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not start:\n{proc.log_tail()}")
            time.sleep(0.05)
    client = sync_redis.Redis.from_url(redis_url)
    try:
        members = client.zrange(NOOP_QUEUE, 0, -1)
        due = int(time.time() * 1000)
        client.zadd(NOOP_QUEUE, dict.fromkeys(members, due), xx=True)
        t0 = due / 1000
    finally:
        client.close()
    results = []
    for proc, _, out in workers:
        code = proc.wait(timeout=max(60.0, jobs / 100))
        procs.stop(proc)
        if code != 0 or not out.exists():
            raise RuntimeError(f"{proc.name} exited with {code}:\n{proc.log_tail()}")
        results.append(json.loads(out.read_text()))
    done = sum(int(r["jobs"]) for r in results)
    if done != jobs:
        raise RuntimeError(f"ARQ no-op: {done} of {jobs} jobs ran")
    last = max(r["last"] for r in results if r["jobs"])
    return {"jobs_per_s": jobs / (last - t0), "per_process": [int(r["jobs"]) for r in results]}


# --- the scenarios ---------------------------------------------------------------------------------


@dataclass
class Sequential:
    mode: str
    per_step_ms: list[float] = field(default_factory=list)
    queue_wait_ms: list[float] = field(default_factory=list)
    checkpoints: dict[str, int] = field(default_factory=dict)
    expected_checkpoints: int = 0
    cpu_ms_per_step: dict[str, float] = field(default_factory=dict)


def sequential(
    base_url: str,
    steps: int,
    runs: int,
    check: Any,
    mode: str,
    timeout_per_run: float,
    engine: dict[str, Proc],
    on_warm: Any = None,
) -> Sequential:
    """One execution at a time of a chain of ``steps`` steps; (finishedAt - startedAt) / steps
    from the API's answer. The first run warms up (V8, statement caches) and is not counted."""
    headers = new_tenant(base_url, f"Bench sequential {mode}")
    flow_id = create_flow(base_url, headers, chain_flow(f"Chain of {steps}", steps, 10))
    out = Sequential(mode)
    ids = []
    cpu_before: dict[str, float] = {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for run in range(runs + 1):
            execution_id = submit(client, flow_id)
            body = wait_execution(client, flow_id, execution_id, timeout_per_run)
            check_chain(body, steps)
            if run == 0:
                if on_warm is not None:
                    on_warm()
                cpu_before = {name: p.cpu_seconds() for name, p in engine.items()}
                continue
            ids.append(execution_id)
            started, finished, created = (
                parse_time(body["startedAt"]),
                parse_time(body["finishedAt"]),
                parse_time(body["createdAt"]),
            )
            out.per_step_ms.append((finished - started) * 1000 / steps)  # type: ignore[operator]
            out.queue_wait_ms.append((started - created) * 1000)  # type: ignore[operator]
    for name, p in engine.items():  # the benchmark's status polls are in the API's share
        out.cpu_ms_per_step[name] = (p.cpu_seconds() - cpu_before[name]) * 1000 / (steps * runs)
    out.checkpoints = check(ids)
    out.expected_checkpoints = steps * len(ids)
    return out


@dataclass
class Burst:
    executions: int
    steps: int
    submit_s: float = 0.0
    total_s: float = 0.0
    steps_per_s: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    queue_wait_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    queue_max: int = 0
    jobs_seen: int = 0
    sweep_jobs_seen: int = 0
    paused: bool = False  # the workers were stopped while submitting: the run measures the drain


async def _submit_all(
    base_url: str, targets: list[tuple[dict[str, str], str]], n: int, width: int
) -> tuple[float, list[str], list[str]]:
    """``n`` POST /flows/{id}/execute over ``width`` keep-alive connections, on raw asyncio
    streams (as tests/perf/loadgen.py does): httpx's client cost this process ~7 ms of CPU per
    request, a quarter of the machine taken from the engine while it submitted. ``targets``:
    (tenant's headers, flow id), taken in turn."""
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    body = b'{"variables":{}}'
    requests = [
        (
            f"POST /flows/{flow_id}/execute HTTP/1.1\r\nHost: {url.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for headers, flow_id in targets
    ]
    ids: list[str] = []
    errors: list[str] = []
    first: list[float] = []
    remaining = [n]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                if not first:
                    first.append(time.time())
                writer.write(requests[remaining[0] % len(requests)])
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                status = int(status_line.split()[1]) if status_line else 0
                if status == 202:
                    ids.append(json.loads(answer)["executionId"])
                else:
                    errors.append(f"{status}: {answer[:200]!r}")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(width, n))))
    return first[0], ids, errors


def _run(coroutine: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def burst(
    base_url: str,
    tenants: list[dict[str, str]],
    executions: int,
    steps: int,
    width: int,
    parties: dict[str, Proc],
    db_url: str,
    redis_url: str,
    paused: list[Proc] | None = None,
) -> Burst:
    """``executions`` executions of a ``steps``-step chain submitted at once; steps/s from the first
    submit to the last execution's finishedAt. With ``paused`` (the workers), they are stopped
    (SIGSTOP) while the executions are submitted and continued after, so the figure is the
    engine's own: the queue of ``executions`` drained, free of the API's and client's pace; the
    CPU figures then cover the drain only. Every burst is on a new flow of each of ``tenants``
    (their headers), submitted to in turn."""
    targets = [(h, create_flow(base_url, h, chain_flow(f"Chain of {steps}", steps, 1000))) for h in tenants]
    out = Burst(executions, steps, paused=bool(paused))
    if paused:
        for proc in paused:
            os.kill(proc.pid, signal.SIGSTOP)
        try:
            first, ids, errors = _run(_submit_all(base_url, targets, executions, width))
        finally:
            for proc in paused:
                os.kill(proc.pid, signal.SIGCONT)
        submitted = (first, ids, errors, time.time() - first)
    import redis as sync_redis

    from adapters.engine.arq_scheduler import QUEUE

    queue = sync_redis.Redis.from_url(redis_url)
    jobs_seen: set[bytes] = set()
    redis, me = redis_process(), psutil.Process()
    client_before = _proc_cpu(me)
    cpu_before = {name: p.cpu_seconds() for name, p in parties.items()}
    sandbox_before = _descendants_cpu(list(parties.values()))
    redis_before, machine_before = _proc_cpu(redis), machine_busy_seconds()
    # Sampled and polled every POLL_S: the watching is this process's CPU and the API's, taken from
    # the engine's two cores (at 0.1 s it was ~0.12 cores). The figure comes from the executions'
    # own finishedAt, so how often they are polled does not change it; the pools keep their
    # PostgreSQL connections, so no backend comes and goes unseen between samples.
    pg = PostgresCpu(interval=POLL_S)
    wall_start = time.monotonic()
    try:
        if paused:
            first, ids, errors, out.submit_s = submitted
            first = time.time()  # the drain starts now
        else:
            first, ids, errors = _run(_submit_all(base_url, targets, executions, width))
            out.submit_s = time.time() - first
        out.errors = len(errors)
        for sample in errors[:5]:
            print(f"!!! submit error: {sample}", flush=True)
        deadline = time.monotonic() + max(120.0, executions * steps * 0.02)
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while True:
                open_ = 0
                for headers, flow_id in targets:  # open executions, flow after flow, until one is seen
                    for status in ("queued", "running"):
                        answer = client.get(
                            f"/flows/{flow_id}/executions",
                            params={"status": status, "limit": 1},
                            headers=headers,
                        )
                        answer.raise_for_status()
                        open_ += len(answer.json())
                        if open_:
                            break
                    if open_:
                        break
                members = queue.zrange(QUEUE, 0, -1)  # which advance jobs wait, by job id
                out.queue_max = max(out.queue_max, len(members))
                jobs_seen.update(m for m in members if m.startswith(b"advance:"))  # not the cron's sweeps
                if not open_:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"executions still open after {deadline - wall_start:.0f} s")
                time.sleep(POLL_S)
    finally:
        pg_used = pg.stop()
        queue.close()
    wall = time.monotonic() - wall_start
    used = {name: p.cpu_seconds() - cpu_before[name] for name, p in parties.items()}
    sandbox_after = _descendants_cpu(list(parties.values()))
    used["sandbox"] = sum(cpu - sandbox_before.get(pid, 0.0) for pid, cpu in sandbox_after.items())
    used["postgres"] = pg_used
    used["redis"] = _proc_cpu(redis) - redis_before
    used["client"] = _proc_cpu(me) - client_before
    machine = machine_busy_seconds() - machine_before
    used["other"] = machine - sum(used.values())
    used["machine"] = machine
    out.cpu_seconds = used
    out.cpu = {name: seconds / wall for name, seconds in used.items()}
    out.jobs_seen = len(jobs_seen)
    out.sweep_jobs_seen = sum(1 for job in jobs_seen if b":s" in job)  # advance:{id}:s{bucket}

    finished_at = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for (headers, flow_id), status in itertools.product(targets, ("completed", "failed", "cancelled")):
            offset = 0
            while True:
                answer = client.get(
                    f"/flows/{flow_id}/executions",
                    params={"status": status, "limit": 500, "offset": offset},
                    headers=headers,
                )
                answer.raise_for_status()
                page = answer.json()
                out.statuses[status] = out.statuses.get(status, 0) + len(page)
                for e in page:
                    created, started, finished = (
                        parse_time(e["createdAt"]),
                        parse_time(e["startedAt"]),
                        parse_time(e["finishedAt"]),
                    )
                    if finished is not None:
                        finished_at.append(finished)
                    if status == "completed":
                        out.queue_wait_ms.append((started - created) * 1000)  # type: ignore[operator]
                        out.run_ms.append((finished - started) * 1000)  # type: ignore[operator]
                if len(page) < 500:
                    break
                offset += 500
    if finished_at:
        out.total_s = max(finished_at) - first
        out.steps_per_s = out.statuses.get("completed", 0) * steps / out.total_s
    out.checkpoints = checkpoints_pg(db_url, ids) if ids else {}
    return out


def warm_up(base_url: str, headers: dict[str, str], count: int, steps: int) -> None:
    """Executions run and waited for before measuring: every worker has its V8 isolates for the
    tenant (isolates are never lent across tenants), pools and statement caches; not counted."""
    flow_id = create_flow(base_url, headers, chain_flow("Warm-up", steps, 1000))
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        ids = [submit(client, flow_id) for _ in range(count)]
        for execution_id in ids:
            check_chain(wait_execution(client, flow_id, execution_id, 120.0), steps)


# --- orchestration ---------------------------------------------------------------------------------


@dataclass
class Results:
    pg: dict[str, str] = field(default_factory=dict)
    commits: dict[str, float] = field(default_factory=dict)
    noop: dict[int, dict[str, Any]] = field(default_factory=dict)
    noop_engine: dict[str, Any] = field(default_factory=dict)
    embedded: Sequential | None = None
    production: Sequential | None = None
    burst: Burst | None = None  # the best round of (2a)
    drain: Burst | None = None  # the best round of (2b)
    rounds: list[tuple[Burst, Burst]] = field(default_factory=list)  # every (2a, 2b) round
    memory: list[tuple[str, float, float]] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)  # cpu_probe() at the start and at the end


def flush_redis(redis_url: str) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def worker_command(args: argparse.Namespace, name: str) -> list[str]:
    if args.profile:
        return [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(Path(args.profile).resolve() / f"{name}.prof"),
            "-m",
            "entrypoints.cli",
            "worker",
            "--concurrency",
            str(args.concurrency),
        ]
    return [tolstoy_bin(), "worker", "--concurrency", str(args.concurrency)]


def cpu_probe() -> float:
    """ms of CPU for a fixed piece of pure Python (dicts, strings, ints), best of 5: how fast this
    machine runs Python right now. Shared 2-core machines change speed by 1.5x within an hour;
    the probe at the start and at the end of a run shows whether they did during it."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        table: dict[str, int] = {}
        for i in range(60_000):
            key = f"k{i % 997}"
            table[key] = table.get(key, 0) + i * 3 // 7
        best = min(best, time.process_time() - started)
    return best * 1000


def run(args: argparse.Namespace, work: Path, procs: Processes) -> Results:
    from tests.support import throwaway_postgres_database

    res = Results()
    res.probe.append(cpu_probe())
    spy = Spy(args.py_spy_bin, Path(args.py_spy) if args.py_spy else None)
    redis_url = f"{args.redis_url.rstrip('/')}/{args.redis_db}"
    redis_port = int(httpx.URL(redis_url).port or REDIS_PORT_DEFAULT)
    common = {"LOG_LEVEL": args.log_level, "TOLSTOY_ADMIN_TOKEN": ADMIN_TOKEN}

    # (1a) embedded: SQLite in a fresh data dir, the in-process engine in `tolstoy serve`
    print(f"- embedded: {args.steps}-step chain, {args.runs} runs", flush=True)
    data_dir = work / "embedded"
    data_dir.mkdir()
    port = free_port()
    api = procs.start(
        "serve-embedded",
        [tolstoy_bin(), "serve"],
        clean_env(**common, TOLSTOY_DATA_DIR=str(data_dir), PORT=str(port)),
        data_dir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(api, url)
    res.embedded = sequential(
        url,
        args.steps,
        args.runs,
        lambda ids: checkpoints_sqlite(data_dir / "tolstoy.db", ids),
        "embedded",
        120.0,
        {"serve": api},
    )
    rss, uss = api.memory_mb()
    res.memory.append(("tolstoy serve (embedded, engine in-process)", rss, uss))
    procs.stop(api)

    try:
        db = throwaway_postgres_database("tolstoy_perf_engine")
        db_url = db.__enter__()
    except BaseException as exc:  # tests.support skips (pytest.skip) when PostgreSQL is down
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise SystemExit(f"PostgreSQL is not usable: {exc}") from None
    try:
        pg_port = int(httpx.URL(db_url).port or PG_PORT_DEFAULT)
        res.pg = pg_settings(db_url)

        # floors
        print(f"- PostgreSQL commit floor ({args.commit_seconds:g} s each)", flush=True)
        res.commits = pg_commit_rate(db_url, args.commit_seconds)
        for processes in (1, 2):
            print(f"- ARQ no-op floor: {args.noop_jobs} jobs, {processes} process(es)", flush=True)
            flush_redis(redis_url)
            res.noop[processes] = arq_noop_throughput(
                procs, work, redis_url, args.noop_jobs, processes, args.concurrency
            )
        print("- the same no-op jobs, 2 processes of Tolstoy's worker class (its pick-up)", flush=True)
        flush_redis(redis_url)
        res.noop_engine = arq_noop_throughput(
            procs, work, redis_url, args.noop_jobs, 2, args.concurrency, engine=True
        )

        # production: PostgreSQL (migrated by `tolstoy migrate`), ARQ on Redis, `tolstoy worker`
        flush_redis(redis_url)
        prod_dir = work / "production"
        prod_dir.mkdir()
        limits = {
            "TOLSTOY_FLOW_CONCURRENCY": str(args.policy_concurrency),
            "TOLSTOY_ORG_CONCURRENCY": str(args.policy_concurrency),
        }
        served_url = db_url  # what Tolstoy's processes connect with
        if args.pg_socket:  # the same database over PostgreSQL's Unix socket instead of loopback TCP
            name = db_url.rsplit("/", 1)[1]
            served_url = (
                f"postgresql://{httpx.URL(db_url).username or 'postgres'}@/{name}?host={args.pg_socket}"
            )
        prod_env = {
            **common,
            **limits,
            "DATABASE_URL": served_url,
            "DIRECT_URL": served_url,
            "REDIS_URL": redis_url,
            "TOLSTOY_DATA_DIR": str(prod_dir),
            **dict(item.split("=", 1) for item in args.worker_env),
        }
        print(f"- migrating {db_url.rsplit('/', 1)[1]} with `tolstoy migrate`", flush=True)
        done = subprocess.run(
            [tolstoy_bin(), "migrate"],
            cwd=prod_dir,
            env=clean_env(**prod_env),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tolstoy migrate failed ({done.returncode}):\n{done.stderr[-3000:]}")
        port = free_port()
        api = procs.start(
            "serve-production", [tolstoy_bin(), "serve"], clean_env(**prod_env, PORT=str(port)), prod_dir
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(api, url)

        # (1b) one worker process
        print(f"- production, 1 worker: {args.steps}-step chain, {args.runs} runs", flush=True)
        worker = procs.start(
            "worker-single", worker_command(args, "worker-single"), clean_env(**prod_env), prod_dir
        )
        wait_connected(worker, redis_port)
        try:
            res.production = sequential(
                url,
                args.steps,
                args.runs,
                lambda ids: checkpoints_pg(db_url, ids),
                "production",
                120.0,
                {"worker": worker, "api": api},
                on_warm=lambda: spy.start("sequential", [worker]),
            )
        finally:
            spy.stop()
        rss, uss = worker.memory_mb()
        res.memory.append(("tolstoy worker (single, after the sequential runs)", rss, uss))
        procs.stop(worker)

        # (2) two worker processes, a burst of executions
        print(
            f"- production, 2 workers: {args.executions} executions of {args.burst_steps} steps at once",
            flush=True,
        )
        workers = [
            procs.start(name, worker_command(args, name), clean_env(**prod_env), prod_dir)
            for name in ("worker-a", "worker-b")
        ]
        for w in workers:
            wait_connected(w, redis_port)
        # The same tenants for every burst, warmed up first: the figure is the steady state, not the
        # making of a new tenant's isolates (~16 per worker, each several ms of CPU). With more
        # tenants than a V8 child keeps warm isolates for, making isolates is the steady state.
        tenants = [new_tenant(url, f"Bench burst {i}") for i in range(args.burst_tenants)]
        for tenant in tenants:
            warm_up(url, tenant, max(2, 4 * args.concurrency // len(tenants)), args.burst_steps)
        for w in workers:
            w.check_alive()
            if not args.pg_socket and not w.connected_to(pg_port):
                print(f"note: {w.name} has no PostgreSQL connection after the warm-up", flush=True)
        parties = {"api": api, "worker-a": workers[0], "worker-b": workers[1]}
        spy.start("burst", [api, *workers])
        try:
            for _ in range(args.burst_rounds):
                together = burst(
                    url,
                    tenants,
                    args.executions,
                    args.burst_steps,
                    args.submit_concurrency,
                    parties,
                    db_url,
                    redis_url,
                )
                drained = burst(
                    url, tenants, args.executions, args.burst_steps, args.submit_concurrency, parties, db_url,
                    redis_url, paused=workers,
                )  # fmt: skip
                res.rounds.append((together, drained))
            res.burst = max((r[0] for r in res.rounds), key=lambda b: b.steps_per_s)
            res.drain = max((r[1] for r in res.rounds), key=lambda b: b.steps_per_s)
        finally:
            spy.stop()
        for w in workers:
            w.check_alive()  # a worker that died during the burst makes the figures meaningless
            rss, uss = w.memory_mb()
            res.memory.append((f"tolstoy {w.name} (after the burst)", rss, uss))
            rss, uss = w.children_memory_mb()
            res.memory.append(("  its V8 sandbox process (after the burst)", rss, uss))
        rss, uss = api.memory_mb()
        res.memory.append(("tolstoy serve (production API, after the burst)", rss, uss))
        procs.stop_all()
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            flush_redis(redis_url)
        db.__exit__(None, None, None)
    res.probe.append(cpu_probe())
    return res


# --- report ----------------------------------------------------------------------------------------


def _p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def _complete(b: Burst) -> bool:
    expected = b.statuses.get("completed", 0) * b.steps
    c = b.checkpoints
    ok = all(c.get(k) == expected for k in ("step_rows", "log_rows", "step_commits"))
    ok = ok and c.get("step_events") == 2 * expected
    return b.statuses.get("completed", 0) == b.executions and not b.errors and ok


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def revision() -> str:
    """The commit measured, and whether the work tree differs from it (engine code included)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    changed = [line[3:] for line in dirty if line.strip()]
    if not changed:
        return f"commit {head}"
    names = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"commit {head} + uncommitted changes in {names}"


def report(args: argparse.Namespace, res: Results) -> int:
    failed = False
    print()
    print("=" * 100)
    print(
        f"Tolstoy engine benchmark  |  {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, PostgreSQL {res.pg.get('server_version', '?').split()[0]} "
        f"(synchronous_commit={res.pg.get('synchronous_commit')}, fsync={res.pg.get('fsync')}), "
        f"LOG_LEVEL={args.log_level}"
    )
    print(f"{revision()}, measured {time.strftime('%Y-%m-%d %H:%M')}")
    if res.probe:
        print(
            "CPU probe (a fixed piece of pure Python, ms; lower is faster): "
            + " at the start, ".join(f"{ms:.1f}" for ms in res.probe)
            + (" at the end" if len(res.probe) > 1 else " at the start")
        )
    print("=" * 100)
    commit_ms = 1000 / res.commits["one"] if res.commits else float("nan")
    print("Floors, measured in this run")
    if res.commits:
        print(
            f"  PostgreSQL BEGIN+INSERT+COMMIT, asyncpg:  1 connection {res.commits['one']:7.0f} commits/s "
            f"({commit_ms:.3f} ms each);  10 connections {res.commits['ten']:7.0f} commits/s"
        )
    for processes, r in sorted(res.noop.items()):
        print(
            f"  ARQ no-op jobs, {processes} process(es) x max_jobs {args.concurrency}: "
            f"{r['jobs_per_s']:7.0f} jobs/s  (jobs per process {r['per_process']})"
        )
    if res.noop_engine:
        r = res.noop_engine
        print(
            f"  the same, 2 processes of `tolstoy worker`'s class (one-script pick-up): "
            f"{r['jobs_per_s']:7.0f} jobs/s  (jobs per process {r['per_process']})"
        )

    print()
    print(f"(1) {args.steps}-step chain of data_transform steps, one execution at a time")
    print("    ms per step = (finishedAt - startedAt) / steps, from the API; the first run is not counted")
    print(
        f"    {'mode':<34}{'runs':>5}{'median':>8}{'p90':>8}{'min':>8}{'queue wait':>12}"
        f"   {'CPU ms per step':<28}{'checkpoints':>12}"
    )
    for seq in (res.embedded, res.production):
        if seq is None:
            continue
        c, n = seq.checkpoints, seq.expected_checkpoints
        ok = c.get("step_rows") == n and c.get("log_rows") == n and c.get("step_events") == 2 * n
        ok = ok and c.get("step_commits", n) == n
        failed |= not ok
        label = (
            "embedded (SQLite, in-process)" if seq.mode == "embedded" else "production (PG + ARQ, 1 worker)"
        )
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in seq.cpu_ms_per_step.items())
        print(
            f"    {label:<34}{len(seq.per_step_ms):>5}{statistics.median(seq.per_step_ms):>8.2f}"
            f"{_p90(seq.per_step_ms):>8.2f}{min(seq.per_step_ms):>8.2f}"
            f"{statistics.median(seq.queue_wait_ms):>10.1f}ms   {cpu:<28}{'all' if ok else 'MISSING':>12}"
        )
        if not ok:
            print(f"!!! {seq.mode}: checkpoints {c}, expected {n} of each ({2 * n} step events)")
    if res.production is not None:
        median = statistics.median(res.production.per_step_ms)
        print(
            f"    production median {median:.2f} ms/step   target <= {STEP_TARGET_MS:.0f} ms   "
            f"{_verdict(median <= STEP_TARGET_MS)}   ({median / commit_ms:.1f}x one PostgreSQL commit)"
        )
        c = res.production.checkpoints
        print(
            f"    checkpoints in PostgreSQL: {c.get('step_rows')} completed step rows, {c.get('log_rows')} "
            f"completed log rows, {c.get('step_events')} step events; step completions committed in "
            f"{c.get('step_commits')} distinct transactions (one per step)"
        )

    if len(res.rounds) > 1:
        print()
        print(f"(2) {len(res.rounds)} rounds, steps/s; the best of each section is detailed below")
        for i, (together, drained) in enumerate(res.rounds, 1):
            print(f"    round {i}: (2a) {together.steps_per_s:.0f}   (2b) {drained.steps_per_s:.0f}")
    for b in (res.burst, res.drain):
        if b is None:
            continue
        print()
        how = (
            "queued while the workers were paused, then drained"
            if b.paused
            else f"submitted at once ({args.submit_concurrency} in flight) while the workers run"
        )
        print(
            f"(2{'b' if b.paused else 'a'}) {b.executions} executions of a {b.steps}-step chain {how}, "
            f"2 worker processes x --concurrency {args.concurrency}"
            + (f", spread over {args.burst_tenants} organizations" if args.burst_tenants > 1 else "")
            + "".join(f", {item}" for item in args.worker_env)
        )
        since = "the workers were continued" if b.paused else "the first submit"
        print(
            f"    submitted in {b.submit_s:.2f} s ({b.executions / b.submit_s:.0f} req/s); the last finished "
            f"{b.total_s:.2f} s after {since}; {b.statuses}; submit errors {b.errors}"
        )
        if b.run_ms:
            print(
                f"    per execution: queue wait median {statistics.median(b.queue_wait_ms):.0f} ms "
                f"(p90 {_p90(b.queue_wait_ms):.0f}), run median {statistics.median(b.run_ms):.0f} ms "
                f"(p90 {_p90(b.run_ms):.0f})"
            )
        print("    CPU, in cores: " + "  ".join(f"{k} {v:.2f}" for k, v in b.cpu.items()))
        total_steps = max(1, b.statuses.get("completed", 0) * b.steps)
        workers = sum(v for k, v in b.cpu_seconds.items() if k.startswith("worker"))
        per_step = {
            "workers": workers,
            "sandbox": b.cpu_seconds.get("sandbox", 0.0),
            "postgres": b.cpu_seconds.get("postgres", 0.0),
            "redis": b.cpu_seconds.get("redis", 0.0),
            "api": b.cpu_seconds.get("api", 0.0),
            "machine": b.cpu_seconds.get("machine", 0.0),
        }
        engine_cpu = sum(per_step[k] for k in ("workers", "sandbox", "postgres", "redis"))
        print(
            "    CPU ms per step: "
            + "  ".join(f"{k} {v * 1000 / total_steps:.2f}" for k, v in per_step.items())
            + f"   (ceiling on {os.cpu_count()} cores at this cost: "
            f"{os.cpu_count() * total_steps / max(engine_cpu, 1e-9):.0f} steps/s)"
        )
        print(
            f"    advance jobs seen waiting in the queue: {b.jobs_seen} distinct for {b.executions} executions "
            f"({b.sweep_jobs_seen} enqueued by the sweep); longest queue {b.queue_max}"
        )
        expected = b.statuses.get("completed", 0) * b.steps
        c = b.checkpoints
        print(
            f"    checkpoints: {c.get('step_rows')} step rows, {c.get('log_rows')} log rows, "
            f"{c.get('step_events')} step events, {c.get('step_commits')} step commits "
            f"(expected {expected}, {2 * expected} events)"
        )
        complete = _complete(b)
        failed |= not complete
        for other in (r[1] if b.paused else r[0] for r in res.rounds):
            if other is not b and not _complete(other):
                failed = True
                print(
                    "!!! another round left executions or checkpoints missing: the figures are not comparable"
                )
        noop2 = res.noop.get(2, {}).get("jobs_per_s")
        beside = f"   (ARQ no-op, 2 processes: {noop2:.0f} jobs/s)" if noop2 else ""
        print(
            f"    throughput {b.steps_per_s:.0f} steps/s ({b.steps_per_s / b.steps:.0f} executions/s)   "
            f"target >= {THROUGHPUT_TARGET:.0f} steps/s   {_verdict(b.steps_per_s >= THROUGHPUT_TARGET)}"
            f"{beside}"
        )
        if not complete:
            print("!!! not every execution completed with its checkpoints: the figures are not comparable")
        if b.cpu.get("other", 0.0) > 0.25:
            print(
                f"note: {b.cpu['other']:.2f} cores went to processes outside the benchmark (other work on "
                "the machine, PostgreSQL backends too short-lived to sample); on a busy machine the "
                "figures are lower than they should be"
            )
    print()
    print("Memory after the runs (psutil)")
    for name, rss, uss in res.memory:
        print(f"    {name:<52} RSS {rss:7.1f} MB   USS {uss:7.1f} MB")
    if args.profile:
        print(f"\ncProfile files of the workers: {args.profile}/worker-*.prof")
    if args.py_spy:
        print(f"\npy-spy raw stacks of the workers and the API: {args.py_spy}/*.raw")
    if failed:
        print("!!! BENCHMARK FAILED: see the lines marked !!! above", file=sys.stderr)
    return 1 if failed else 0


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _setting(text: str) -> str:
    """``--worker-env NAME=VALUE``: refused by argparse, with a message, without the ``=``."""
    name, equals, _ = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--noop-worker"]:  # the bare ARQ worker process this benchmark starts
        redis_url, queue, concurrency, ready, out = argv[1:6]
        engine = argv[6:7] == ["engine"]
        return noop_worker_main(redis_url, queue, int(concurrency), Path(ready), Path(out), engine)
    parser = argparse.ArgumentParser(description="Tolstoy engine: per-step latency and step throughput")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--steps", type=int, help="steps of the sequential chain (40; quick 10)")
    parser.add_argument("--runs", type=int, help="measured runs per mode, after one warm-up (10; quick 3)")
    parser.add_argument("--executions", type=int, help="executions in the burst (500; quick 50)")
    parser.add_argument(
        "--burst-tenants",
        type=int,
        default=1,
        help="organizations the burst's executions are spread over, in turn (1): beyond the warm "
        "isolates a V8 child keeps (SANDBOX_WARM_ISOLATES), runs make isolates",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="environment of the production API and workers, to try a setting (e.g. SANDBOX_WARM_ISOLATES=64)",
    )
    parser.add_argument(
        "--pg-socket",
        metavar="DIR",
        help="Tolstoy's processes reach PostgreSQL over its Unix socket in DIR (e.g. /var/run/postgresql) "
        "instead of 127.0.0.1: loopback TCP sends were a large share of the workers' time here",
    )
    parser.add_argument("--burst-steps", type=int, default=5, help="steps per burst execution (5)")
    parser.add_argument(
        "--burst-rounds",
        type=int,
        default=1,
        help="rounds of (2a) and (2b); the best of each is detailed (1)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="`tolstoy worker --concurrency` (its default, 16)"
    )
    parser.add_argument("--submit-concurrency", type=int, default=50, help="submits in flight (50)")
    parser.add_argument(
        "--policy-concurrency", type=int, default=1000, help="TOLSTOY_FLOW/ORG_CONCURRENCY (1000)"
    )
    parser.add_argument("--noop-jobs", type=int, help="ARQ no-op jobs (5000; quick 500)")
    parser.add_argument(
        "--commit-seconds", type=float, help="seconds per PostgreSQL commit loop (3; quick 1)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="Redis server, without the DB")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis DB number, FLUSHDB'd (13)")
    parser.add_argument("--log-level", default="warning", help="LOG_LEVEL of serve and workers (warning)")
    parser.add_argument("--logs", metavar="DIR", help="keep the processes' logs in DIR (default: discarded)")
    parser.add_argument("--profile", metavar="DIR", help="run the workers under cProfile, files in DIR")
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="record the workers and the API with py-spy (raw stacks in DIR) while measured",
    )
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy"), help="the py-spy binary (on PATH)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.steps = args.steps or (10 if quick else 40)
    args.runs = args.runs or (3 if quick else 10)
    args.executions = args.executions or (50 if quick else 500)
    args.noop_jobs = args.noop_jobs or (500 if quick else 5000)
    args.commit_seconds = args.commit_seconds or (1.0 if quick else 3.0)
    if not (1 <= args.steps <= 1000 and 1 <= args.runs <= 100 and 1 <= args.executions <= 20000):
        parser.error("steps 1..1000, runs 1..100, executions 1..20000")
    if not (1 <= args.policy_concurrency <= 1000):
        parser.error("--policy-concurrency 1..1000 (TOLSTOY_FLOW_CONCURRENCY's range)")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.py_spy:
        if not args.py_spy_bin:
            parser.error("--py-spy: py-spy is not on PATH (pip install py-spy; or --py-spy-bin PATH)")
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)

    # SIGTERM unwinds (like Ctrl-C), so every process is stopped and the database dropped.
    signal.signal(signal.SIGTERM, _terminated)
    with tempfile.TemporaryDirectory(prefix="tolstoy-bench-engine-") as tmp:
        work = Path(tmp)
        log_dir = Path(args.logs).resolve() if args.logs else work
        log_dir.mkdir(parents=True, exist_ok=True)
        procs = Processes(log_dir)
        try:
            res = run(args, work, procs)
        except Exception:
            for proc in procs.every:
                print(f"--- {proc.name} log tail ---\n{proc.log_tail()}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()
        return report(args, res)


if __name__ == "__main__":
    sys.exit(main())
