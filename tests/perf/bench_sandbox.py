"""The V8 sandbox's cost per run, in its child process: ``python -m tests.perf.bench_sandbox``.

Sessions of five ``data_transform``-like runs (``return (stepOutputs.sN || 0) + 1``), ``--sessions``
of them at once, through ``ProcessV8Sandbox`` as a worker uses it. Prints the CPU per run of this
process (the parent's side: frames, pipes) and of the child (V8, mini-racer's hand-offs, the
runner), and the wall time per run. Needs nothing but the virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import psutil
import uvloop

from adapters.sandbox.v8_process import ProcessV8Sandbox
from application.ports import SandboxRun

STEPS = 5


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _sessions(sandbox: ProcessV8Sandbox, count: int) -> None:
    for _ in range(count):
        async with sandbox.session("bench") as session:
            for i in range(STEPS):
                run = SandboxRun(
                    code=f"return (stepOutputs.s{i} || 0) + 1",
                    language="javascript",
                    context={"variables": {}, "stepOutputs": {f"s{j}": j for j in range(i)}, "meta": {}},
                    timeout_ms=30_000,
                )
                result = await session.run(run)
                if not result.success:
                    raise RuntimeError(f"the run failed: {result.error}")


async def main(sessions: int, runs: int, rounds: int) -> None:
    sandbox = ProcessV8Sandbox()
    try:
        await _sessions(sandbox, 5)  # the child started, isolates warm
        children = psutil.Process().children()
        for _ in range(rounds):
            before = _cpu(), sum(sum(c.cpu_times()[:2]) for c in children), time.perf_counter()
            per_task = max(1, runs // STEPS // sessions)
            await asyncio.gather(*(_sessions(sandbox, per_task) for _ in range(sessions)))
            done = per_task * sessions * STEPS
            parent = (_cpu() - before[0]) / done * 1e6
            child = (sum(sum(c.cpu_times()[:2]) for c in children) - before[1]) / done * 1e6
            wall = (time.perf_counter() - before[2]) / done * 1e6
            print(
                f"{sessions} sessions at once, {done} runs: parent {parent:.0f} µs, child {child:.0f} µs CPU per run; wall {wall:.0f} µs per run"
            )
    finally:
        await sandbox.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="sessions at once (10)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs per round (10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    args = parser.parse_args()
    uvloop.run(main(args.sessions, args.runs, args.rounds))
