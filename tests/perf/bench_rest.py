"""REST benchmark: Tolstoy's ``GET /flows/{id}`` against a bare FastAPI + asyncpg baseline.

    .venv/bin/python -m tests.perf.bench_rest [--duration 10] [--connections 32] [--skip-memory]

Not a pytest test (nothing here is collected): it starts servers, drives load, prints figures.
See tests/perf/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
RATIO_TARGET = 0.70
RSS_TARGET_MB = 150.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# Settings that would change what is measured if they leaked in from the caller's environment.
SCRUBBED_ENV = (
    "DATABASE_URL",
    "DIRECT_URL",
    "REDIS_URL",
    "HOST",
    "PORT",
    "GRPC_PORT",
    "LOG_LEVEL",
    "NODE_ENV",
    "DATABASE_POOL_SIZE",
    "DATABASE_MAX_OVERFLOW",
)

FLOW = {
    "name": "Benchmark flow",
    "description": "A flow of a few steps, read back by the benchmark",
    "steps": [
        {
            "id": f"step_{i}",
            "type": "http_request",
            "config": {"url": f"https://example.invalid/api/{i}", "method": "POST", "body": {"n": i}},
            "retry": {"maxRetries": 3, "baseDelayMs": 500},
        }
        for i in range(5)
    ],
    "settings": {},
}


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV and not k.startswith("TOLSTOY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def tolstoy_command() -> list[str]:
    beside = Path(sys.executable).parent / "tolstoy"
    found = str(beside) if beside.exists() else shutil.which("tolstoy")
    if found is None:
        raise SystemExit("cannot find the `tolstoy` command: install the project (make serve) first")
    return [found, "serve"]


class Server:
    """A server subprocess on 127.0.0.1:port, ready once ``ready_path`` answers; always stopped."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], port: int, cwd: Path, log_dir: Path
    ) -> None:
        self.name, self.command, self.env, self.port, self.cwd = name, command, env, port, cwd
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + ready_path, timeout=2).status_code < 500:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn drains and runs the lifespan shutdown on SIGTERM
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


@contextlib.contextmanager
def running(server: Server, ready_path: str) -> Iterator[Server]:
    try:
        yield server.start(ready_path)
    finally:
        server.stop()


def _postmasters() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                if psutil.Process(proc.info["ppid"]).name() != "postgres":
                    found.append(proc)
    return found


class PostgresCpu:
    """PostgreSQL's CPU over a span: the postmaster and its children, polled every ``interval``
    so that backends which come and go are counted up to their last poll (one that lives less
    than the interval is missed, so with connection churn this is a lower bound)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._postmasters = _postmasters()
        self._procs: dict[int, psutil.Process] = {}
        self.before = self._sample()
        self.last = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        found = {}
        for postmaster in self._postmasters:
            with contextlib.suppress(psutil.Error):
                for proc in [postmaster, *postmaster.children()]:
                    proc = self._procs.setdefault(proc.pid, proc)
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        found[proc.pid] = times.user + times.system
        return found

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.last.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        self.last.update(self._sample())
        return sum(t - self.before.get(pid, 0.0) for pid, t in self.last.items())


def pg_sessions(db_url: str) -> int:
    """Sessions (connections) ever opened to the database, less the one asking."""
    import asyncpg

    async def ask() -> int:
        conn = await asyncpg.connect(db_url, timeout=10)
        try:
            return int(
                await conn.fetchval(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(ask())


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- load generators -------------------------------------------------------------------------------

WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0 end
function response(status, headers, body) if status ~= 200 then non200 = non200 + 1 end end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non200") end
  io.write(string.format("NON200 %d\\n", n))
end
"""

_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return match

    socket_errors = {}
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, match.groups()), strict=True)
        )
        socket_errors = {k: v for k, v in socket_errors.items() if v}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non_200_lua = re.search(r"^NON200 (\d+)", output, re.MULTILINE)
    non_200 = max(int(non_200_lua.group(1)) if non_200_lua else 0, int(non_2xx.group(1)) if non_2xx else 0)
    requests = int(find(r"(\d+) requests in ([\d.]+\w+)").group(1))
    return {
        "generator": "wrk",
        "requests": requests,
        "duration_s": _wrk_ms(find(r"\d+ requests in ([\d.]+\w+)").group(1)) / 1e3,
        "rps": float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        "p50_ms": _wrk_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        "p90_ms": _wrk_ms(find(r"^\s+90%\s+(\S+)").group(1)),
        "p99_ms": _wrk_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        "max_ms": _wrk_ms(find(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)").group(1)),
        "non_200": non_200,
        "transport_errors": socket_errors,
        "errors": non_200 + sum(socket_errors.values()),
        "samples": [],
    }


@dataclass
class LoadSpec:
    url: str
    headers: list[str]
    connections: int
    duration: float
    warmup: float
    generator: str  # "wrk" | "builtin"
    work_dir: Path


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Drive ``spec.url`` in a separate process; returns the generator's figures."""
    limit = spec.warmup + spec.duration + 60
    if spec.generator == "wrk":
        lua = spec.work_dir / "count_non200.lua"
        lua.write_text(WRK_LUA)
        base = ["wrk", "-t1", f"-c{spec.connections}", "--timeout", "10s"]
        for header in spec.headers:
            base += ["-H", header]
        if spec.warmup > 0:
            subprocess.run(
                [*base, f"-d{max(1, round(spec.warmup))}s", spec.url],
                capture_output=True,
                timeout=limit,
                check=True,
            )
        done = subprocess.run(
            [*base, f"-d{max(1, round(spec.duration))}s", "--latency", "-s", str(lua), spec.url],
            capture_output=True,
            text=True,
            timeout=limit,
            check=True,
        )
        result = parse_wrk(done.stdout)
        result["connections"] = spec.connections
        return result
    command = [
        sys.executable,
        "-m",
        "tests.perf.loadgen",
        "--url",
        spec.url,
        "--connections",
        str(spec.connections),
        "--duration",
        str(spec.duration),
        "--warmup",
        str(spec.warmup),
    ]
    for header in spec.headers:
        command += ["-H", header]
    done = subprocess.run(
        command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=limit, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(server: Server, spec: LoadSpec, db_url: str) -> dict[str, Any]:
    """Runs the load; adds the CPU each party used (in cores: 1.0 is one core busy for the
    whole run) and how many PostgreSQL connections were opened meanwhile."""
    sessions_before = pg_sessions(db_url)
    server_before, gen_before, machine_before = (
        server.cpu_seconds(),
        children_cpu_seconds(),
        machine_busy_seconds(),
    )
    pg = PostgresCpu()
    started = time.monotonic()
    try:
        result = run_load(spec)
    finally:
        pg_used = pg.stop()
    wall = time.monotonic() - started
    assert server.proc is not None
    if server.proc.poll() is not None:
        raise RuntimeError(
            f"{server.name} died during the load ({server.proc.returncode}):\n{server.log_tail()}"
        )
    result["cpu"] = {
        "server": (server.cpu_seconds() - server_before) / wall,
        "postgres": pg_used / wall,
        "generator": (children_cpu_seconds() - gen_before) / wall,
        "machine": (machine_busy_seconds() - machine_before) / wall,
    }
    time.sleep(1.0)  # backends report their session counts within about a second
    result["pg_connections_opened"] = pg_sessions(db_url) - sessions_before - 1
    return result


# --- the scenario ----------------------------------------------------------------------------------


def sanity_check(url: str, headers: dict[str, str], flow_id: str, name: str) -> dict[str, Any]:
    response = httpx.get(url, headers=headers, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"{name}: GET {url} answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    if body.get("id") != flow_id or len(body.get("steps", [])) != len(FLOW["steps"]):
        raise RuntimeError(f"{name}: unexpected body for {url}: {response.text[:500]}")
    return body


def create_flow(base_url: str) -> tuple[dict[str, str], str]:
    from tests.support import new_org

    org = new_org(base_url, "Benchmark")
    created = org.post("/flows", json=FLOW)
    if created.status_code != 201:
        raise RuntimeError(f"POST /flows answered {created.status_code}: {created.text[:500]}")
    headers = dict(org.client.headers)
    auth = {"Authorization": headers["authorization"], "X-Org-ID": headers["x-org-id"]}
    return auth, created.json()["id"]


@dataclass
class Throughput:
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"bare": [], "tolstoy": []})


def throughput(args: argparse.Namespace, work: Path, generator: str) -> Throughput:
    from adapters.persistence.migrate import upgrade
    from tests.support import ADMIN_TOKEN, throwaway_postgres_database

    out = Throughput()
    with contextlib.ExitStack() as stack:
        try:
            db_url = stack.enter_context(throwaway_postgres_database("tolstoy_perf"))
        except BaseException as exc:  # tests.support skips (pytest.skip) when PostgreSQL is down
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise SystemExit(f"PostgreSQL is not usable: {exc}") from None
        print(f"- throw-away database {db_url.rsplit('/', 1)[1]}: migrating", flush=True)
        upgrade(db_url)

        overrides = {
            name: value.replace("{database_url}", db_url)
            for name, value in (item.split("=", 1) for item in args.tolstoy_env)
        }
        tolstoy_dir = work / "tolstoy-pg"
        tolstoy_dir.mkdir()
        tolstoy_port = free_port()
        tolstoy = Server(
            "tolstoy",
            tolstoy_command(),
            clean_env(
                **{
                    "DATABASE_URL": db_url,
                    "TOLSTOY_ADMIN_TOKEN": ADMIN_TOKEN,
                    "TOLSTOY_DATA_DIR": str(tolstoy_dir),
                    "PORT": str(tolstoy_port),
                    "GRPC_PORT": "0",  # REST only: gRPC has its own benchmark (bench_grpc.py)
                    "LOG_LEVEL": "warning",
                    **overrides,
                }
            ),
            tolstoy_port,
            cwd=tolstoy_dir,  # away from any .env of the work tree: defaults only
            log_dir=work,
        )
        stack.enter_context(running(tolstoy, "/health"))
        headers, flow_id = create_flow(tolstoy.url)
        path = f"/flows/{flow_id}"
        sanity_check(tolstoy.url + path, headers, flow_id, "tolstoy")

        bare_port = free_port()
        bare = Server(
            "bare",
            [sys.executable, "-m", "tests.perf.bare_app", "--dsn", db_url, "--port", str(bare_port)],
            clean_env(),
            bare_port,
            cwd=REPO,
            log_dir=work,
        )
        stack.enter_context(running(bare, path))
        sanity_check(bare.url + path, headers, flow_id, "bare")
        print(f"- servers up: tolstoy pid {tolstoy.proc.pid}, bare pid {bare.proc.pid}", flush=True)  # type: ignore[union-attr]

        if args.hold:  # for attaching a profiler to a running server: serve until Ctrl-C or --hold s
            print(f"- holding {args.hold:.0f} s: tolstoy {tolstoy.url}{path}", flush=True)
            print(f"  headers: {headers}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(args.hold)

        header_lines = [f"{k}: {v}" for k, v in headers.items()]
        servers = {"bare": bare, "tolstoy": tolstoy}
        for round_no in range(args.rounds):
            order = ["bare", "tolstoy"] if round_no % 2 == 0 else ["tolstoy", "bare"]
            for name in order:
                spec = LoadSpec(
                    servers[name].url + path,
                    header_lines,
                    args.connections,
                    args.duration,
                    args.warmup,
                    generator,
                    work,
                )
                print(f"- round {round_no + 1}/{args.rounds}: {name} ...", flush=True)
                out.rounds[name].append(measure(servers[name], spec, db_url))
    return out


def idle_memory(work: Path) -> dict[str, float]:
    from tests.support import ADMIN_TOKEN

    data_dir = work / "tolstoy-embedded"
    data_dir.mkdir()
    port = free_port()
    server = Server(
        "tolstoy-embedded",
        tolstoy_command(),
        clean_env(
            TOLSTOY_DATA_DIR=str(data_dir),
            TOLSTOY_ADMIN_TOKEN=ADMIN_TOKEN,
            PORT=str(port),
            LOG_LEVEL="warning",
        ),
        port,
        cwd=data_dir,
        log_dir=work,
    )
    with running(server, "/health"):
        assert server.proc is not None
        process = psutil.Process(server.proc.pid)
        time.sleep(1.0)
        after_start = process.memory_info().rss
        headers, flow_id = create_flow(server.url)
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            for _ in range(100):
                response = client.get(f"/flows/{flow_id}")
                if response.status_code != 200:
                    raise RuntimeError(f"embedded GET /flows answered {response.status_code}")
                client.get("/flows", params={"limit": 10}).raise_for_status()
            client.get("/health").raise_for_status()
        time.sleep(2.0)  # idle again
        info = process.memory_full_info()
    return {
        "rss_after_start_mb": after_start / 2**20,
        "rss_idle_mb": info.rss / 2**20,
        "uss_idle_mb": info.uss / 2**20,
    }


# --- report ----------------------------------------------------------------------------------------


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per target: the median over the rounds of each figure; errors are summed."""
    keys = ("rps", "p50_ms", "p90_ms", "p99_ms")
    summary: dict[str, Any] = {k: statistics.median(r[k] for r in rounds) for k in keys}
    summary["errors"] = sum(r["errors"] for r in rounds)
    return summary


def report(
    args: argparse.Namespace, generator: str, thr: Throughput | None, mem: dict[str, float] | None
) -> int:
    failed = False
    print()
    print("=" * 110)
    print(
        f"Tolstoy REST benchmark  |  {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, generator: {generator}"
    )
    print(
        f"GET /flows/{{id}} on PostgreSQL  |  {args.connections} connections, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured, {args.rounds} round(s)"
    )
    if args.tolstoy_env:
        print(f"Tolstoy server environment overrides: {' '.join(args.tolstoy_env)}")
    print("=" * 110)
    if thr is not None:
        print(f"{'':<58}{'CPU used, in cores':^40}{'new PG':>10}")
        print(
            f"{'target':<10}{'round':>6}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>7}"
            f"{'server':>9}{'postgres':>10}{'generator':>11}{'machine':>10}{'conns':>10}"
        )
        for name in ("bare", "tolstoy"):
            for i, r in enumerate(thr.rounds[name], 1):
                cpu = r["cpu"]
                print(
                    f"{name:<10}{i:>6}{r['rps']:>8.0f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}"
                    f"{r['p99_ms']:>9.2f}{r['errors']:>7}{cpu['server']:>9.2f}{cpu['postgres']:>10.2f}"
                    f"{cpu['generator']:>11.2f}{cpu['machine']:>10.2f}{r['pg_connections_opened']:>10}"
                )
        bare, tolstoy = _summary(thr.rounds["bare"]), _summary(thr.rounds["tolstoy"])
        print("-" * 110)
        for name, r in (("bare", bare), ("tolstoy", tolstoy)):
            print(
                f"{name:<10} {r['rps']:>8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   "
                f"errors {r['errors']}"
            )
        ratio = tolstoy["rps"] / bare["rps"] if bare["rps"] else 0.0
        verdict = "PASS" if ratio >= RATIO_TARGET else "MISS"
        print(f"ratio tolstoy/bare (req/s): {ratio:.2f}   target >= {RATIO_TARGET:.2f}   {verdict}")
        print(
            f"p50 latency tolstoy/bare:   {tolstoy['p50_ms'] / bare['p50_ms']:.2f}x   "
            f"(p99 {tolstoy['p99_ms'] / bare['p99_ms']:.2f}x)"
        )
        for name in ("bare", "tolstoy"):
            for r in thr.rounds[name]:
                if r["errors"]:
                    failed = True
                    print(
                        f"!!! {name}: {r['errors']} errors (non-200 {r['non_200']}, transport "
                        f"{r['transport_errors']}); statuses {r.get('statuses')}; samples {r['samples']}"
                    )
        every = [r for rs in thr.rounds.values() for r in rs]
        if max(r["cpu"]["generator"] for r in every) > 0.9:
            print("note: the load generator used >90% of a core; figures may be generator-bound")
        others = max(
            r["cpu"]["machine"] - r["cpu"]["server"] - r["cpu"]["postgres"] - r["cpu"]["generator"]
            for r in every
        )
        if others > 0.25:
            print(
                f"note: up to {others:.2f} cores went to processes not in the table during a run (other "
                "work on the machine, or PostgreSQL backends too short-lived to sample); on "
                f"{os.cpu_count()} cores that can disturb the figures (use a quiet machine, --rounds)"
            )
        if args.strict and verdict == "MISS":
            failed = True
    if mem is not None:
        verdict = "PASS" if mem["rss_idle_mb"] <= RSS_TARGET_MB else "MISS"
        print(
            f"idle RSS, tolstoy serve on embedded SQLite: {mem['rss_idle_mb']:.1f} MB "
            f"(USS {mem['uss_idle_mb']:.1f} MB; {mem['rss_after_start_mb']:.1f} MB right after start-up)   "
            f"target <= {RSS_TARGET_MB:.0f} MB   {verdict}"
        )
        if args.strict and verdict == "MISS":
            failed = True
    if args.json:
        payload = {
            "generator": generator,
            "connections": args.connections,
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": thr.rounds if thr else None,
            "memory": mem,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"raw figures written to {args.json}")
    if failed:
        print("!!! BENCHMARK FAILED: see the lines marked !!! above", file=sys.stderr)
    return 1 if failed else 0


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tolstoy REST throughput vs a bare FastAPI+asyncpg baseline")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per target (10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (32)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds per target, not recorded (2)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat bare+tolstoy, alternating order (1)")
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "builtin"), default="auto", help="auto: wrk if on PATH"
    )
    parser.add_argument(
        "--tolstoy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the Tolstoy server under load, e.g. DATABASE_POOL_SIZE=40 or "
        "'DATABASE_URL={database_url}?ssl=disable' (repeatable; {database_url} is the throw-away database)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the idle-RSS measurement")
    parser.add_argument("--skip-throughput", action="store_true", help="only the idle-RSS measurement")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed too")
    parser.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON")
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the servers up this long before the load",
    )
    args = parser.parse_args(argv)
    if not (1 <= args.connections <= 1024 and 0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("connections 1..1024, duration 0..600 s, warmup 0..60 s")
    if not (1 <= args.rounds <= 20 and 0 <= args.hold <= 3600):
        parser.error("rounds 1..20, hold 0..3600 s")
    if any("=" not in item for item in args.tolstoy_env):
        parser.error("--tolstoy-env takes NAME=VALUE")

    if args.generator == "wrk" and shutil.which("wrk") is None:
        parser.error("--generator wrk: wrk is not on PATH")
    generator = "wrk" if args.generator != "builtin" and shutil.which("wrk") else "builtin"

    # SIGTERM unwinds (like Ctrl-C), so every server is stopped and the database dropped.
    signal.signal(signal.SIGTERM, _terminated)
    with tempfile.TemporaryDirectory(prefix="tolstoy-bench-") as tmp:
        work = Path(tmp)
        thr = None if args.skip_throughput else throughput(args, work, generator)
        mem = None if args.skip_memory else idle_memory(work)
        return report(args, generator, thr, mem)


if __name__ == "__main__":
    sys.exit(main())
