"""`tolstoy worker --processes 2` as real processes: the parent supervises its children.

- Each child logs as a single worker does, to the parent's output.
- SIGTERM or SIGINT to the parent (SIGTERM also while the children start) stops the children,
  through ARQ's own shutdown once it runs, frees their metrics ports, and the parent exits 0.
- A child that dies makes the parent stop the other one and exit 1 (a supervisor restarts it all).
- SIGKILL to the parent, which can pass nothing on: the children exit by themselves.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.e2e.test_engine_crash import TOLSTOY, Proc, _env, spawn, wait_until
from tests.support import REDIS_URL, free_port, throwaway_postgres_database, unavailable

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Redis database of these tests (flushed before and after), beside those of the other tests.
WORKERS_REDIS_URL = urlsplit(REDIS_URL)._replace(path="/13").geturl()
START_SECONDS = 60  # two fresh interpreters importing everything, on a shared 2-core machine
STOP_SECONDS = 30  # ARQ's shutdown waits up to 5 s for running jobs; none run here
STARTED = re.compile(r"started (tolstoy-worker-\d) \(pid (\d+)\)")
# A child's start-up line, in the format and at the level a single worker logs it with.
CHILD_READY = re.compile(
    r'^\{"time":"[^"]+","level":"INFO","logger":"arq.worker","msg":"Starting worker', re.M
)


@dataclass
class Stack:
    env: dict[str, str]
    cwd: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh PostgreSQL database (`tolstoy migrate`d: a worker checks the schema) and an empty
    Redis database."""
    import redis

    client = redis.Redis.from_url(WORKERS_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{type(exc).__name__}: {exc}")
    client.flushdb()
    cwd = tmp_path_factory.mktemp("workers")
    try:
        with throwaway_postgres_database("tolstoy_workers") as database_url:
            env = _env(
                DATABASE_URL=database_url,
                REDIS_URL=WORKERS_REDIS_URL,
                TOLSTOY_DATA_DIR=str(cwd),
                HOST="127.0.0.1",  # where the metrics ports are checked
            )
            migrated = subprocess.run(
                [TOLSTOY, "migrate"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
            )
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            yield Stack(env, cwd)
    finally:
        client.flushdb()
        client.close()


@dataclass
class Workers:
    parent: Proc
    ports: tuple[int, int]
    # Every descendant seen, to kill at the end: a psutil.Process never signals a reused pid.
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def log(self) -> str:
        """Everything the parent and its children wrote (they share stdout and stderr)."""
        return self.parent.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """The children the parent reports having started, by name."""
        return {name: int(pid) for name, pid in STARTED.findall(self.log())}

    def descendants(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            procs = psutil.Process(self.parent.pid).children(recursive=True)
        self.seen.update((p.pid, p) for p in procs)
        return procs

    def wait_ready(self) -> None:
        def ready() -> bool:
            return len(CHILD_READY.findall(self.log())) == 2 and all(_serving(port) for port in self.ports)

        wait_until(ready, START_SECONDS, "both children to start and serve metrics", [self.parent])


@pytest.fixture
def workers(stack: Stack) -> Iterator[Workers]:
    """`tolstoy worker --processes 2`; afterwards every process of it is killed, whatever happened."""
    ports = _two_free_ports()
    args = ["worker", "--processes", "2", "--concurrency", "2", "--metrics-port", str(ports[0])]
    started = Workers(spawn("workers", args, stack.env, stack.cwd), ports)
    try:
        yield started
    finally:
        started.descendants()
        started.parent.kill()
        for proc in started.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(list(started.seen.values()), timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_children_log_and_stop_with_the_parent(workers: Workers, sig: signal.Signals) -> None:
    workers.wait_ready()
    log = workers.log()
    assert set(workers.children()) == {"tolstoy-worker-0", "tolstoy-worker-1"}, log
    procs = workers.descendants()
    assert {p.pid for p in procs} >= set(workers.children().values()), log
    assert workers.parent.stop(sig) == 0, workers.log()
    _assert_all_exit(procs, STOP_SECONDS)
    log = workers.log()
    # Each child stopped through ARQ's shutdown (jobs finished or cancelled), not by the signal.
    assert log.count(f"shutdown on {sig.name}, wait complete") == 2, log
    assert all(_free(port) for port in workers.ports), log


def test_sigterm_while_the_children_start_stops_them_all(workers: Workers) -> None:
    wait_until(lambda: len(workers.children()) == 2, START_SECONDS, "the children to start", [workers.parent])
    procs = workers.descendants()
    assert workers.parent.stop(signal.SIGTERM) == 0, workers.log()
    _assert_all_exit(procs, STOP_SECONDS)
    assert all(_free(port) for port in workers.ports), workers.log()


def test_a_child_that_dies_stops_the_other_and_the_parent_exits_1(workers: Workers) -> None:
    workers.wait_ready()
    procs = workers.descendants()
    psutil.Process(workers.children()["tolstoy-worker-0"]).kill()
    try:
        code = workers.parent.popen.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the parent outlived its child:\n{workers.parent.output()}") from None
    assert code == 1, workers.log()
    _assert_all_exit(procs, STOP_SECONDS)
    log = workers.log()
    assert "tolstoy-worker-0 exited unexpectedly (-9): stopping the others" in log, log
    assert log.count("shutdown on SIGTERM, wait complete") == 1, log  # tolstoy-worker-1's


def test_children_exit_by_themselves_when_the_parent_is_killed(workers: Workers) -> None:
    workers.wait_ready()
    procs = workers.descendants()
    workers.parent.popen.kill()
    workers.parent.popen.wait(10)
    _assert_all_exit(procs, STOP_SECONDS)
    log = workers.log()
    assert log.count("shutdown on SIGTERM, wait complete") == 2, log  # gracefully, as on `kill`
    assert all(_free(port) for port in workers.ports), log


def _assert_all_exit(procs: list[psutil.Process], timeout: float) -> None:
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"still running after {timeout} s: {alive}"


def _two_free_ports() -> tuple[int, int]:
    """Two consecutive free ports (--metrics-port P serves the children on P and P+1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port, port + 1
    raise AssertionError("no two consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        # As a restarted worker binds it (prometheus_client's server sets SO_REUSEADDR): a closed
        # listener's connections in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
