"""The flow engine survives its processes dying: real `tolstoy serve` and `tolstoy worker` processes.

- ARQ (PostgreSQL + Redis): a worker is killed with SIGKILL while one of its steps is in flight; the
  other worker takes the execution over once the lease expires. Completed steps are not sent again;
  the interrupted one is sent at most twice, every time with the same Idempotency-Key.
- Embedded (SQLite, in-process engine): the server is stopped (SIGTERM or SIGKILL) and started again
  on the same data directory; the execution finishes and checkpointed steps are not sent again.
- ARQ: a delay holds no worker slot, so a worker limited to one job still runs another execution
  while the first one waits.

Every step calls a counting HTTP server on 127.0.0.1 that records each request and its
Idempotency-Key; a path containing /slow answers after SLOW_SECONDS, so a step is in flight when a
process is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import (
    ADMIN_TOKEN,
    REDIS_URL,
    Api,
    free_port,
    new_org,
    throwaway_postgres_database,
    unavailable,
)

TOLSTOY = str(Path(sys.executable).with_name("tolstoy"))
SLOW_SECONDS = 1.5
LEASE_SECONDS = 2
# Lease expiry + the ARQ sweep period (5 s) + start-up and margin: what a take-over may need.
TAKEOVER_SECONDS = 30
# Redis database of these tests (flushed before and after), beside the one tests.support uses.
ENGINE_REDIS_URL = urlsplit(REDIS_URL)._replace(path="/14").geturl()
# Settings the child processes must not inherit from the environment running the tests.
_INHERITED_OUT = ("DATABASE_URL", "DIRECT_URL", "REDIS_URL", "PORT", "GRPC_PORT", "LOG_LEVEL")


# --- the counting upstream ---------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    key: str | None
    arrived: float  # time.monotonic()
    wall: float  # time.time(), to compare with the timestamps Tolstoy reports
    answered: float | None = None  # time.monotonic() once the response was written


@dataclass
class Upstream:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, hit: Hit) -> None:
        with self.changed:
            self.hits.append(hit)
            self.changed.notify_all()

    def to(self, path: str) -> list[Hit]:
        with self.changed:
            return [h for h in self.hits if h.path == path]

    def wait_for(self, path: str, timeout: float) -> Hit:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [h for h in self.hits if h.path == path]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no request to {path} within {timeout} s")
                self.changed.wait(left)


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        upstream: Upstream = self.server.upstream  # type: ignore[attr-defined]
        hit = Hit(self.path, self.headers.get("Idempotency-Key"), time.monotonic(), time.time())
        upstream.record(hit)
        if "/slow" in self.path:
            time.sleep(SLOW_SECONDS)
        data = json.dumps({"ok": True, "path": self.path}).encode()
        with contextlib.suppress(OSError):  # the caller may have been killed meanwhile
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        hit.answered = time.monotonic()

    do_GET = do_POST = _answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    server.upstream = Upstream(url=f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.upstream  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


# --- processes --------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT and not k.startswith("TOLSTOY_")}
    env.update(
        LOG_LEVEL="info",
        TOLSTOY_ADMIN_TOKEN=ADMIN_TOKEN,
        TOLSTOY_EGRESS_ALLOW="127.0.0.1/32",  # the steps call the counting server on loopback
        TOLSTOY_LEASE_SECONDS=str(LEASE_SECONDS),
        **extra,
    )
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self, sig: int) -> int:
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not stop on {signal.Signals(sig).name}:\n{self.output()}"
            ) from None


def spawn(name: str, args: list[str], env: dict[str, str], cwd: Path) -> Proc:
    log = cwd / f"{name}-{secrets.token_hex(3)}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [TOLSTOY, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Proc(name, popen, log)


def serve(cwd: Path, env: dict[str, str]) -> tuple[Proc, str]:
    port = free_port()
    # gRPC runs beside REST (on a port of its own, so that runs in parallel never collide)
    proc = spawn("serve", ["serve"], {**env, "PORT": str(port), "GRPC_PORT": str(free_port())}, cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), 30, "tolstoy serve to become healthy", [proc])
    except BaseException:
        proc.kill()
        raise
    return proc, url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(check: Callable[[], Any], timeout: float, what: str, procs: Sequence[Proc] = ()) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds, or as soon
    as a process that should be running exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.output()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.output()}" for p in procs)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(0.05)


# --- flows over REST --------------------------------------------------------------------------------


def http_step(step_id: str, url: str) -> dict[str, Any]:
    return {"id": step_id, "type": "http_request", "config": {"url": url, "method": "GET"}}


def delay_step(step_id: str, ms: int) -> dict[str, Any]:
    return {"id": step_id, "type": "delay", "config": {"ms": ms}}


def create_flow(api: Api, name: str, steps: list[dict[str, Any]]) -> str:
    response = api.post("/flows", json={"name": name, "steps": steps})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def execute(api: Api, flow_id: str) -> str:
    response = api.post(f"/flows/{flow_id}/execute", json={"variables": {}, "useDurable": True})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    return body["executionId"]


def execution(api: Api, flow_id: str, execution_id: str) -> dict[str, Any]:
    response = api.get(f"/flows/{flow_id}/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return response.json()


def finished(api: Api, flow_id: str, execution_id: str, timeout: float, procs: list[Proc]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = execution(api, flow_id, execution_id)
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(done, timeout, f"execution {execution_id} to finish", procs)


def step(body: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(
        (s for s in body["steps"] if s["stepId"] == step_id), {"stepId": step_id, "status": "pending"}
    )


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def step_logs(api: Api, flow_id: str, execution_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/flows/{flow_id}/executions/{execution_id}/logs")
    assert response.status_code == 200, response.text
    return response.json()


def assert_logged_completed(rows: list[dict[str, Any]], step_ids: list[str]) -> None:
    completed = {r["stepKey"] for r in rows if r["status"] == "completed"}
    assert completed == set(step_ids), rows
    assert [r for r in rows if r["status"] == "started"] == [], "a step log was left 'started'"


def assert_sent_once(upstream: Upstream, execution_id: str, paths: dict[str, str]) -> None:
    for step_id, path in paths.items():
        sent = upstream.to(path)
        assert len(sent) == 1, f"step {step_id} was sent {len(sent)} times"
        assert sent[0].key == f"{execution_id}:{step_id}"


def assert_interrupted_step(
    upstream: Upstream, execution_id: str, step_id: str, path: str, killed_at: float
) -> None:
    """At least once, at most twice, always with one key; twice when the crash beat the answer
    (the step's result cannot have been checkpointed then)."""
    sent = upstream.to(path)
    assert 1 <= len(sent) <= 2, f"step {step_id} was sent {len(sent)} times"
    assert {h.key for h in sent} == {f"{execution_id}:{step_id}"}
    first = sent[0]
    if first.answered is None or killed_at < first.answered:
        assert len(sent) == 2, f"step {step_id} was interrupted before its answer but never sent again"


# --- ARQ: PostgreSQL, Redis, `tolstoy serve` and `tolstoy worker` processes --------------------------


@dataclass
class ArqStack:
    url: str
    database_url: str
    env: dict[str, str]
    cwd: Path


def _redis_db() -> Any:
    import redis

    client = redis.Redis.from_url(ENGINE_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{type(exc).__name__}: {exc}")
    return client


@pytest.fixture(scope="module")
def arq_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArqStack]:
    """A fresh PostgreSQL database (`tolstoy migrate`d), an empty Redis database and `tolstoy serve`
    with REDIS_URL set (so the API only enqueues; the tests start the workers they need)."""
    client = _redis_db()
    client.flushdb()
    cwd = tmp_path_factory.mktemp("arq")
    try:
        with throwaway_postgres_database("tolstoy_engine_crash") as database_url:
            env = _env(DATABASE_URL=database_url, REDIS_URL=ENGINE_REDIS_URL, TOLSTOY_DATA_DIR=str(cwd))
            migrated = subprocess.run(
                [TOLSTOY, "migrate"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
            )
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            proc, url = serve(cwd, env)
            try:
                yield ArqStack(url, database_url, env, cwd)
            finally:
                proc.kill()
    finally:
        client.flushdb()
        client.close()


def worker(stack: ArqStack, name: str, concurrency: int) -> Proc:
    return spawn(name, ["worker", "--concurrency", str(concurrency)], stack.env, stack.cwd)


def lease_owner(database_url: str, execution_id: str) -> str | None:
    """Who holds the execution's lease (``host:pid`` for a worker process)."""
    import asyncpg

    async def query() -> str | None:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            return await conn.fetchval("SELECT lease_owner FROM executions WHERE id = $1", execution_id)
        finally:
            await conn.close()

    return asyncio.run(query())


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_step_hands_the_execution_to_another_worker(
    arq_stack: ArqStack, upstream: Upstream
) -> None:
    api = new_org(arq_stack.url, "Crash")
    tag = secrets.token_hex(4)
    step_ids = [f"s{i}" for i in range(1, 7)]
    paths = {s: f"/crash-{tag}/{s}" + ("/slow" if s == "s3" else "") for s in step_ids}
    flow_id = create_flow(api, "Six calls", [http_step(s, upstream.url + p) for s, p in paths.items()])
    workers = [worker(arq_stack, "worker-a", 2), worker(arq_stack, "worker-b", 2)]
    try:
        execution_id = execute(api, flow_id)
        upstream.wait_for(paths["s3"], timeout=30)  # s3 is in flight now, for SLOW_SECONDS
        owner = lease_owner(arq_stack.database_url, execution_id)
        holders = [w for w in workers if owner is not None and owner.rsplit(":", 1)[-1] == str(w.pid)]
        assert len(holders) == 1, f"lease owner {owner!r} is none of the workers {[w.pid for w in workers]}"
        (victim,) = holders
        (survivor,) = [w for w in workers if w is not victim]
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        killed_at = time.monotonic()  # after the wait: the victim is gone by now
        assert survivor.alive(), survivor.output()
        done = finished(api, flow_id, execution_id, TAKEOVER_SECONDS, [survivor])
    finally:
        for w in workers:
            w.kill()
    assert done["status"] == "completed", done
    assert [s["status"] for s in done["steps"]] == ["completed"] * 6, done["steps"]
    assert_sent_once(upstream, execution_id, {s: paths[s] for s in ("s1", "s2")})
    assert_interrupted_step(upstream, execution_id, "s3", paths["s3"], killed_at)
    assert_sent_once(upstream, execution_id, {s: paths[s] for s in ("s4", "s5", "s6")})
    # s4 was sent only after the crash, by the survivor: nothing ran past the interrupted step.
    assert upstream.to(paths["s4"])[0].arrived > killed_at
    assert_logged_completed(step_logs(api, flow_id, execution_id), step_ids)


@pytest.mark.postgres
@pytest.mark.redis
def test_a_delay_holds_no_worker_slot(arq_stack: ArqStack, upstream: Upstream) -> None:
    api = new_org(arq_stack.url, "Delays")
    tag = secrets.token_hex(4)
    x_path, y_path = f"/delay-{tag}/x", f"/delay-{tag}/y"
    x_flow = create_flow(api, "X", [delay_step("wait", 2000), http_step("call", upstream.url + x_path)])
    y_flow = create_flow(api, "Y", [http_step("call", upstream.url + y_path)])
    proc = worker(arq_stack, "worker-one", 1)
    try:
        # Warm up: the worker is ready once an execution went through it.
        warm = execute(api, y_flow)
        assert finished(api, y_flow, warm, 30, [proc])["status"] == "completed"
        x = execute(api, x_flow)
        wait_until(
            lambda: step(execution(api, x_flow, x), "wait")["status"] == "running",
            10,
            "X's delay to start",
            [proc],
        )
        y = execute(api, y_flow)
        y_done = finished(api, y_flow, y, 10, [proc])
        x_meanwhile = execution(api, x_flow, x)
        x_done = finished(api, x_flow, x, 15, [proc])
    finally:
        proc.kill()
    assert y_done["status"] == "completed" and x_done["status"] == "completed", (y_done, x_done)
    assert x_meanwhile["status"] == "running", x_meanwhile  # Y did not wait for X's delay
    delay_end = moment(step(x_done, "wait")["startedAt"]) + timedelta(milliseconds=2000)
    y_end = moment(y_done["finishedAt"])
    assert y_end < delay_end - timedelta(milliseconds=500), (y_end, delay_end)
    (x_call,) = upstream.to(x_path)
    assert x_call.wall >= delay_end.timestamp() - 0.05  # and X's call did wait for the delay
    assert len(upstream.to(y_path)) == 2  # the warm-up and Y


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_metrics_are_served_on_the_metrics_port(arq_stack: ArqStack, upstream: Upstream) -> None:
    """Steps run in worker processes; their step metrics are scraped from --metrics-port."""
    api = new_org(arq_stack.url, "Metrics")
    path = f"/metrics-{secrets.token_hex(4)}"
    flow_id = create_flow(api, "Measured", [http_step("measured", upstream.url + path)])
    port = free_port()
    proc = spawn(
        "worker-metrics",
        ["worker", "--concurrency", "2", "--metrics-port", str(port)],
        arq_stack.env,
        arq_stack.cwd,
    )
    try:
        execution_id = execute(api, flow_id)
        assert finished(api, flow_id, execution_id, 30, [proc])["status"] == "completed"
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.kill()
    expected = (
        f'step_execution_seconds_count{{flowId="{flow_id}",orgId="{api.org_id}",stepKey="measured"}} 1.0'
    )
    assert expected in text, text[:2000]


# --- embedded: SQLite and the in-process engine inside `tolstoy serve` -------------------------------


@pytest.mark.parametrize(
    ("sig", "kill_mid_step"),
    [
        pytest.param(signal.SIGTERM, False, id="sigterm-during-delay"),
        pytest.param(signal.SIGKILL, False, id="sigkill-during-delay"),
        pytest.param(signal.SIGKILL, True, id="sigkill-mid-step"),
    ],
)
def test_the_embedded_engine_finishes_an_execution_after_a_restart(
    tmp_path: Path, upstream: Upstream, sig: int, kill_mid_step: bool
) -> None:
    env = _env(TOLSTOY_DATA_DIR=str(tmp_path / "data"))
    tag = secrets.token_hex(4)
    paths = {s: f"/restart-{tag}/{s}" for s in ("first", "third", "fourth")}
    if kill_mid_step:
        paths["first"] += "/slow"
    steps = [
        http_step("first", upstream.url + paths["first"]),
        delay_step("wait", 1500),
        http_step("third", upstream.url + paths["third"]),
        http_step("fourth", upstream.url + paths["fourth"]),
    ]
    proc, url = serve(tmp_path, env)
    procs = [proc]
    try:
        api = new_org(url, "Restart")
        flow_id = create_flow(api, "Restartable", steps)
        execution_id = execute(api, flow_id)
        upstream.wait_for(paths["first"], timeout=20)
        if not kill_mid_step:  # the first step is checkpointed and the delay runs
            wait_until(
                lambda: step(execution(api, flow_id, execution_id), "wait")["status"] == "running",
                5,
                "the delay to start",
                procs,
            )
        code = proc.stop(sig)
        stopped_at = time.monotonic()
        assert code in ((0, -signal.SIGTERM) if sig == signal.SIGTERM else (-signal.SIGKILL,)), proc.output()
        assert upstream.to(paths["third"]) == []  # stopped before the delay ended
        proc, url = serve(tmp_path, env)
        procs.append(proc)
        api = Api(url, api.token, api.org_id)
        # Within the lease (LEASE_SECONDS) + one sweep (5 s) + margin after the restart.
        done = finished(api, flow_id, execution_id, 20, [proc])
        logs = step_logs(api, flow_id, execution_id)
    finally:
        for p in procs:
            p.kill()
    assert done["status"] == "completed", done
    if kill_mid_step:
        assert_interrupted_step(upstream, execution_id, "first", paths["first"], stopped_at)
    else:
        assert_sent_once(upstream, execution_id, {"first": paths["first"]})
    assert_sent_once(upstream, execution_id, {s: paths[s] for s in ("third", "fourth")})
    assert_logged_completed(logs, ["first", "wait", "third", "fourth"])


def test_a_second_embedded_process_on_the_data_directory_does_not_take_over_live_leases(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`tolstoy grpc` (or a second `serve`) on the same data directory while `serve` runs a flow:
    only the process holding the directory's engine lock resumes as ``embedded@<host>``; the
    other waits for leases to expire (they do not: their holder renews them), so no step is sent
    twice."""
    env = _env(TOLSTOY_DATA_DIR=str(tmp_path / "data"))
    tag = secrets.token_hex(4)
    paths = {s: f"/second-{tag}/{s}/slow" for s in ("s1", "s2", "s3")}
    steps = [http_step(s, upstream.url + p) for s, p in paths.items()]
    proc, url = serve(tmp_path, env)
    procs = [proc]
    try:
        api = new_org(url, "Second process")
        flow_id = create_flow(api, "Slow chain", steps)
        execution_id = execute(api, flow_id)
        upstream.wait_for(paths["s1"], timeout=20)
        other = spawn("grpc", ["grpc", "--port", "0"], env, tmp_path)
        procs.append(other)
        wait_until(lambda: "gRPC listening" in other.output(), 30, "tolstoy grpc to start", procs)
        done = finished(api, flow_id, execution_id, 30, procs)
    finally:
        for p in procs:
            p.kill()
    assert done["status"] == "completed", done
    assert_sent_once(upstream, execution_id, paths)
    assert "lost the lease" not in proc.output()
    assert "another Tolstoy process runs the embedded engine" in other.output()
