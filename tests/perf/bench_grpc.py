"""gRPC benchmark: Tolstoy's unary ``FlowService/GetFlow`` against a bare grpc.aio servicer that
answers a constant GetFlowResponse of the same size, in the same run.

    .venv/bin/python -m tests.perf.bench_grpc [--duration 10] [--clients 32] [--rounds 2]

Not a pytest test (nothing here is collected). Tolstoy runs as ``tolstoy grpc`` on a throw-away
PostgreSQL database; the bare servicer is this module with ``--bare``. Each runs in its own process;
the load comes from this process: ``--clients`` concurrent callers over ``--channels`` channels
(grpc.aio), one warm-up second, then ``--duration`` seconds measured. Rounds alternate the two
targets. Prints throughput, p50 and p99 latency and CPU per call (server, PostgreSQL, this client)
per target, and the ratio (target >= 0.60).

Tolstoy runs as deployed by default: flows read by id are served from its read cache once read
(application/cache.py; PostgreSQL LISTEN/NOTIFY drops copies on change). ``--uncached`` turns the
cache off, so that every call also reads PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import psutil

from tests.perf.bench_rest import FLOW, REPO, PostgresCpu, clean_env, free_port, tolstoy_command

RATIO_TARGET = 0.60
START_TIMEOUT = 60.0
ADMIN_TOKEN = "bench-admin-token"


# --- the bare servicer ------------------------------------------------------------------------------


async def serve_bare(port: int, payload: Path) -> None:
    from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2, flow_service_pb2_grpc

    answer = flow_service_pb2.GetFlowResponse.FromString(payload.read_bytes())

    class Bare(flow_service_pb2_grpc.FlowServiceServicer):
        async def GetFlow(self, request: Any, context: Any) -> Any:
            return answer

    server = grpc.aio.server()
    flow_service_pb2_grpc.add_FlowServiceServicer_to_server(Bare(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# --- load ---------------------------------------------------------------------------------------------


async def _load(
    target: str, request: Any, metadata: Any, clients: int, channels: int, seconds: float
) -> dict[str, Any]:
    from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2_grpc

    opened = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    stubs = [flow_service_pb2_grpc.FlowServiceStub(c) for c in opened]
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = 0.0

    async def caller(i: int) -> None:
        nonlocal errors
        get = stubs[i % len(stubs)].GetFlow
        while time.perf_counter() < stop_at:
            begin = time.perf_counter()
            try:
                await get(request, metadata=metadata, timeout=10)
            except grpc.RpcError:
                errors += 1
                continue
            if measuring:
                latencies.append(time.perf_counter() - begin)

    try:
        stop_at = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(caller(i) for i in range(clients)))
        latencies.clear()
        measuring, begin = True, time.perf_counter()
        stop_at = begin + seconds
        await asyncio.gather(*(caller(i) for i in range(clients)))
        elapsed = time.perf_counter() - begin
    finally:
        for channel in opened:
            await channel.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "calls": len(latencies),
        "errors": errors,
    }


def _wait_serving(target: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + START_TIMEOUT
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(grpc.RpcError):
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{target} did not start:\n{log.read_text()[-3000:]}")


def _wait_port(target: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"{target} did not start:\n{log.read_text()[-3000:]}") from None


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per round and target")
    parser.add_argument("--clients", type=int, default=32, help="concurrent calls in flight")
    parser.add_argument("--channels", type=int, default=4, help="gRPC channels (HTTP/2 connections)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="run Tolstoy under cProfile and write its stats here")
    parser.add_argument(
        "--uncached",
        action="store_true",
        help="turn Tolstoy's read cache off (TOLSTOY_READ_CACHE_ENTRIES=0): every GetFlow reads PostgreSQL",
    )
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # serve the bare servicer on this port
    parser.add_argument("--payload", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        import uvloop  # the loop `tolstoy grpc` runs on

        uvloop.run(serve_bare(args.bare, args.payload))
        return 0

    from google.protobuf import struct_pb2

    from entrypoints.grpc.gen.tolstoy.v1 import (
        flow_service_pb2,
        flow_service_pb2_grpc,
        organization_service_pb2,
    )
    from entrypoints.grpc.gen.tolstoy.v1 import organization_service_pb2_grpc as orgs_grpc
    from tests.support import throwaway_postgres_database

    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres_database("tolstoy_bench") as db_url:
        work = Path(tmp)
        tolstoy_port, bare_port = free_port(), free_port()
        env = clean_env(
            DATABASE_URL=db_url,
            TOLSTOY_ADMIN_TOKEN=ADMIN_TOKEN,
            TOLSTOY_DATA_DIR=str(work / "data"),
            TOLSTOY_AUTO_MIGRATE="true",
            LOG_LEVEL="warning",
            TOLSTOY_READ_CACHE_ENTRIES="0" if args.uncached else "1000",
        )
        tolstoy_log, bare_log = work / "tolstoy.log", work / "bare.log"
        command = [tolstoy_command()[0], "grpc", "--port", str(tolstoy_port)]
        if args.profile:
            command = [sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve()), *command]
        with tolstoy_log.open("wb") as out:
            tolstoy = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            target = f"127.0.0.1:{tolstoy_port}"
            _wait_serving(target, tolstoy, tolstoy_log)
            with grpc.insecure_channel(target) as channel:
                org = orgs_grpc.OrganizationServiceStub(channel).CreateOrganization(
                    organization_service_pb2.CreateOrganizationRequest(name="Benchmark"),
                    metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")],
                )
                metadata = (("authorization", f"Bearer {org.api_key}"), ("x-org-id", org.organization.id))
                steps, settings = struct_pb2.ListValue(), struct_pb2.Struct()
                steps.extend(FLOW["steps"])
                settings.update(FLOW["settings"])
                flows = flow_service_pb2_grpc.FlowServiceStub(channel)
                flow = flows.CreateFlow(
                    flow_service_pb2.CreateFlowRequest(
                        name=FLOW["name"], description=FLOW["description"], steps=steps, settings=settings
                    ),
                    metadata=metadata,
                ).flow
                answer = flows.GetFlow(flow_service_pb2.GetFlowRequest(id=flow.id), metadata=metadata)
            payload = work / "payload.bin"
            payload.write_bytes(answer.SerializeToString())
            with bare_log.open("wb") as out:
                bare = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.perf.bench_grpc",
                        "--bare",
                        str(bare_port),
                        "--payload",
                        str(payload),
                    ],
                    cwd=REPO,
                    env=clean_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_port(f"127.0.0.1:{bare_port}", bare, bare_log)
                request = flow_service_pb2.GetFlowRequest(id=flow.id)
                results: dict[str, list[dict[str, Any]]] = {"tolstoy": [], "bare": []}
                for _ in range(args.rounds):
                    for name, port, proc in (("tolstoy", tolstoy_port, tolstoy), ("bare", bare_port, bare)):
                        server_cpu, client_cpu = _cpu(proc.pid), _cpu(os.getpid())
                        pg_cpu = PostgresCpu()
                        found = asyncio.run(
                            _load(
                                f"127.0.0.1:{port}",
                                request,
                                metadata,
                                args.clients,
                                args.channels,
                                args.duration,
                            )
                        )
                        # CPU per measured call (warm-up included in the numerator: a slight overstatement)
                        calls = max(found["calls"], 1)
                        found["server_us"] = (_cpu(proc.pid) - server_cpu) / calls * 1e6
                        found["client_us"] = (_cpu(os.getpid()) - client_cpu) / calls * 1e6
                        found["pg_us"] = pg_cpu.stop() / calls * 1e6
                        results[name].append(found)
                        print(
                            f"  {name:8} {found['rps']:9.0f} calls/s  p50 {found['p50_ms']:6.2f} ms  "
                            f"p99 {found['p99_ms']:6.2f} ms  ({found['calls']} calls, {found['errors']} errors)  "
                            f"CPU/call: server {found['server_us']:.0f} us, PostgreSQL {found['pg_us']:.0f} us, "
                            f"client {found['client_us']:.0f} us",
                            flush=True,
                        )
            finally:
                _stop(bare)
        finally:
            _stop(tolstoy)

    best = {name: max(rounds, key=lambda r: r["rps"]) for name, rounds in results.items()}
    ratio = best["tolstoy"]["rps"] / best["bare"]["rps"]
    print(
        f"\nGetFlow ({answer.ByteSize()} bytes), {args.clients} concurrent calls over {args.channels} channels, "
        f"{os.cpu_count()} CPUs, best of {args.rounds} rounds, read cache {'off' if args.uncached else 'on'}:"
    )
    for name in ("tolstoy", "bare"):
        r = best[name]
        print(f"  {name:8} {r['rps']:9.0f} calls/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms")
    verdict = "meets" if ratio >= RATIO_TARGET else "misses"
    print(f"  ratio    {ratio:.2f} (target >= {RATIO_TARGET:.2f}: {verdict} it)")
    return 0 if ratio >= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
