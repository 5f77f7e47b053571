"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams, meant to run in its own process.

    python -m tests.perf.loadgen --url http://127.0.0.1:8000/flows/x -H "Authorization: Bearer k" \
        --connections 32 --duration 10 --warmup 2

Each of N connections sends one GET, reads the whole response, and sends the next (keep-alive),
for a warm-up phase (not recorded) and then for a fixed measured duration. It prints one JSON
object on stdout: requests, requests/s, latency percentiles (ms), status counts, errors.

It is deliberately minimal (no TLS, no redirects, no pipelining) so that one Python process on
uvloop can drive far more requests per second than a Python web server answers; an httpx-based
client would be the bottleneck instead of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_CONNECT_FAILURES = 50  # per connection, over the whole run: then that connection gives up
GRACE_SECONDS = 10.0  # after the end, in-flight requests get this long before being cancelled
SAMPLE_ERRORS = 5


@dataclass
class Stats:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by kind
    samples: list[str] = field(default_factory=list)  # first few non-200 answers / errors
    bytes_read: int = 0
    last_done_ns: int = 0

    def sample(self, text: str) -> None:
        if len(self.samples) < SAMPLE_ERRORS:
            self.samples.append(text[:300])


def build_request(url: str, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"only http:// URLs are supported, got {url!r}")
    host, port = parts.hostname, parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json"]
    lines += [h.strip() for h in headers]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            body += await reader.readexactly(size + 2)
            del body[-2:]
        return status, bytes(body), close
    if length < 0:  # read until close
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


async def connection_loop(
    host: str, port: int, request: bytes, measure_from_ns: int, end_ns: int, stats: Stats
) -> None:
    reader = writer = None
    failures = 0
    try:
        while time.perf_counter_ns() < end_ns:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError as exc:
                    failures += 1
                    stats.errors["connect"] += 1
                    stats.sample(f"connect: {exc}")
                    if failures >= MAX_CONNECT_FAILURES:
                        return
                    await asyncio.sleep(0.05)
                    continue
            started = time.perf_counter_ns()
            try:
                writer.write(request)
                status, body, close = await read_response(reader)  # type: ignore[arg-type]
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                if started >= measure_from_ns:
                    stats.errors[type(exc).__name__] += 1
                    stats.sample(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader = writer = None
                continue
            done = time.perf_counter_ns()
            if started >= measure_from_ns:
                stats.latencies_ns.append(done - started)
                stats.statuses[status] += 1
                stats.bytes_read += len(body)
                stats.last_done_ns = max(stats.last_done_ns, done)
                if status != 200:
                    stats.sample(f"HTTP {status}: {body[:200]!r}")
            if close:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of nanosecond values, in milliseconds."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index] / 1e6


async def run(
    url: str, headers: list[str], connections: int, duration: float, warmup: float
) -> dict[str, object]:
    host, port, request = build_request(url, headers)
    stats = Stats()
    now = time.perf_counter_ns()
    measure_from = now + int(warmup * 1e9)
    end = measure_from + int(duration * 1e9)
    tasks = [
        asyncio.create_task(connection_loop(host, port, request, measure_from, end, stats))
        for _ in range(connections)
    ]
    _done, pending = await asyncio.wait(tasks, timeout=warmup + duration + GRACE_SECONDS)
    for task in pending:  # a request that hangs past the grace period counts as a timeout
        task.cancel()
        stats.errors["timeout"] += 1
    if pending:
        await asyncio.wait(pending, timeout=5)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            stats.errors[f"crash:{type(exc).__name__}"] += 1
            stats.sample(f"connection task crashed: {exc!r}")

    latencies = sorted(stats.latencies_ns)
    elapsed = max(stats.last_done_ns - measure_from, 1) / 1e9 if latencies else duration
    non_200 = sum(n for status, n in stats.statuses.items() if status != 200)
    return {
        "generator": "builtin",
        "url": url,
        "connections": connections,
        "duration_s": round(elapsed, 3),
        "requests": len(latencies),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "non_200": non_200,
        "transport_errors": dict(stats.errors),
        "errors": non_200 + sum(stats.errors.values()),
        "samples": stats.samples,
        "bytes_per_response": stats.bytes_read / len(latencies) if latencies else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not recorded")
    args = parser.parse_args(argv)
    if not (1 <= args.connections <= 1024) or not (0 < args.duration <= 600) or not (0 <= args.warmup <= 60):
        parser.error("connections 1..1024, duration 0..600 s, warmup 0..60 s")
    try:
        import uvloop
    except ImportError:  # plain asyncio works, only slower
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(run(args.url, args.header, args.connections, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
