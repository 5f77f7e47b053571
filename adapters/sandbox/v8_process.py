"""The embedded V8 sandbox in child processes: a run that makes V8 abort kills a child, not the server.

``V8Sandbox`` runs tenants' JavaScript in the API/worker process, and a few allocations
(``"x".repeat(2**28).split("")``, ``new Array(1e9).fill(0)``...) make V8 abort that whole process
before any of its limits is checked. ``ProcessV8Sandbox`` is the same ``Sandbox`` port (same
isolates, lockdown, limits, errors: it *is* a ``V8Sandbox``, in ``adapters.sandbox.v8_host``)
run in ``processes`` child processes of the current Python, spoken to over their stdin/stdout
(length-prefixed JSON frames, see ``v8_host``).

Children
--------
A child is started on first use (a session's first run, or ``start``) and serves many runs at
once (V8 evaluates each on a native thread of its own). A session is given to the child with the
fewest open sessions (round-robin among equals) and stays there: the child keeps its isolates
and, between sessions of the same scope (tenant), its cleaned warm isolates - per child. The
remote session is opened with the session's first run (a session that runs no code costs
nothing) and closed with the session.

When a child dies, whatever the reason:

* every run in flight in it ends ``SANDBOX_CRASHED``. A child is shared by many sessions, of many
  tenants: an innocent run that happens to be running in the child when another run crashes it
  fails too (``processes > 1`` lessens how many). SANDBOX_CRASHED is not one of the codes the
  engine refuses to retry, so a step's retry policy applies - to the crashing code as well;
* its sessions are forgotten: their next run opens a new session in a new child, transparently
  (a session holds nothing but clean isolates);
* its background runs (``start``) poll as ``SANDBOX_UNAVAILABLE`` (unknown session);
* a new child is started by the next run that needs one - unless there were more than
  ``max_restarts`` crashes (all children together) within ``restart_window_s`` seconds: runs then
  get ``SANDBOX_UNAVAILABLE`` until the oldest of those crashes leaves the window, so code that
  crashes on every retry cannot keep a CPU busy starting children (~110 ms of CPU each).

A child that does not answer a run within its timeout plus ``_WATCHDOG_S`` is killed as if it had
crashed (that run gets ``SANDBOX_UNAVAILABLE``). What a child writes on stderr (V8's report of a
fatal error) is logged at warning level by ``tolstoy.sandbox.v8``, a burst of lines as one record;
the child itself never writes user code, context or output there. Children get a minimal
environment (none of the parent's secrets), no open descriptors but their pipes, and no core
dumps (their memory holds tenants' data).

A run V8 cannot interrupt (a built-in that ignores termination, see ``v8``) still returns
TIMEOUT/MEMORY_LIMIT at its deadline while its isolate goes on in the child, on a CPU core, maybe
for good. When the child reports such an isolate (``v8.STUCK_AFTER_S`` after it was given up), the
child is retired: it takes no new run - new sessions, and the next runs of its sessions, go to a
new child, as after a crash, but without counting as one - and it is killed once the runs in
flight there have answered, at the latest the last of their time limits plus ``_RETIRE_GRACE_S``
(its background runs are collected meanwhile, for their polls). So such code costs a core for at
most the time limits of the runs it shared a child with, and fails no other run.

V8's per-run memory limit counts the JavaScript heap, not ``ArrayBuffer`` backing stores: typed
arrays could take the machine's memory. So a child whose resident memory passes
``process_memory_mb`` (``SANDBOX_PROCESS_MEMORY_MB``, 2048) is killed, as if it had crashed (read
every 0.1 s from /proc, on Linux): the runs in flight there end ``SANDBOX_CRASHED``.

Limits that remain: a stuck isolate may still make V8 abort the child before it is killed, failing
the runs then in flight there. Each child has its own warm isolates (``warm_per_scope``/
``warm_max`` are per child) and costs ~80 MiB of memory once started.

``aclose`` asks every child to stop, and kills one that has not exited within
``shutdown_timeout_s``; a run still in flight then ends ``SANDBOX_UNAVAILABLE``. A child whose
parent dies sees the end of its stdin and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import secrets
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from adapters.sandbox.v8 import LANGUAGES, RESULTS_KEPT, UNKNOWN_SESSION, V8Sandbox, unsupported_message
from adapters.sandbox.v8 import _failure as failure
from adapters.sandbox.v8_host import HEADER, JSON_MODULE, LENGTH, decode, encode, frame, result_from_wire
from application.ports import SandboxResult, SandboxRun

log = logging.getLogger("tolstoy.sandbox.v8")

CRASHED_MESSAGE = (
    "The sandbox process stopped while running this code (V8 aborted; e.g. an allocation too large for it)"
)
_WATCHDOG_S = 30.0  # beyond a run's own timeout (a syntax error is located with up to 10 s more)
_REQUEST_TIMEOUT_S = 30.0  # start, poll
_STDERR_LINES = 500  # per child, so a child cannot flood the logs
_STDERR_LINE_CHARS = 2000
_STDERR_QUIET_S = 0.05  # the end of a burst of stderr lines
_HOLD_S = 0.02  # the longest a session's close waits to go with another request
_RUNS_AT_ONCE = 16  # runs a child is expected to hold at once (sizing advice for process_memory_mb)
_MEMORY_POLL_S = 0.1  # how often a child's resident memory is read (process_memory_mb)
_RETIRE_GRACE_S = 1.0  # a retired child's runs in flight answer at their time limit; then it is killed
_DRAIN_POLL_S = 0.05  # how often a retired child is looked at (and its background runs polled)
_ENV_KEPT = ("PATH", "TZ", "LANG", "LANGUAGE", "TMPDIR", "SYSTEMROOT", "HOME")
_V8_DEFAULTS = {name: p.default for name, p in inspect.signature(V8Sandbox).parameters.items()}
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # where the child imports adapters from


class _Gone(Exception):
    """The child stopped (or was stopped) before it answered."""


class _Unavailable(Exception):
    """No child can be had now."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _resident_pages(statm: str) -> int:
    """From /proc/<pid>/statm (procfs: answered from the kernel's memory, never waits on a disk)."""
    with open(statm, "rb") as f:
        return int(f.read().split()[1])


class _Child:
    """One child process and the requests waiting for its answers."""

    def __init__(
        self, sandbox: ProcessV8Sandbox, proc: asyncio.subprocess.Process, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.sandbox = sandbox
        self.proc = proc
        self.pid = proc.pid
        self.loop = loop
        self.alive = True
        self.closing = False  # stopped by us: runs in flight did not crash it
        self.sessions = 0  # open sessions bound to this child
        self.lost = 0  # requests in flight when it stopped
        self.retiring = False  # it has an isolate V8 could not stop: no new runs, killed once idle
        self.busy_until = 0.0  # (monotonic) the time limit of the last run sent to it that ends
        self.pending: dict[int, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        assert proc.stdin is not None
        self._stdin = proc.stdin
        self._held: list[bytes] = []  # frames without an answer that wait for the next write
        self._flush_at: asyncio.TimerHandle | None = None
        self.reader = loop.create_task(self._read(), name=f"v8 sandbox {self.pid} stdout")
        self._memory_watch: asyncio.Task[None] | None = None
        if sandbox.process_memory_mb and os.path.exists(f"/proc/{self.pid}/statm"):
            self._memory_watch = loop.create_task(self._watch_memory(), name=f"v8 sandbox {self.pid} memory")
        self.stderr = loop.create_task(self._read_stderr(), name=f"v8 sandbox {self.pid} stderr")

    # --- requests ---------------------------------------------------------------------------------

    def notify(self, body: tuple[bytes, int]) -> None:
        """A request that has no answer (cancel), written now."""
        if not self.alive:
            raise _Gone
        self._write(frame(0, *body))

    def hold(self, body: tuple[bytes, int]) -> None:
        """A request that has no answer and need not go at once (open, close): it goes with the
        next write to the child (a session's open with its first run), or within ``_HOLD_S``.
        One write instead of two: a pipe write is a system call here and a wake-up there."""
        if not self.alive:
            raise _Gone
        self._held.append(frame(0, *body))
        if self._flush_at is None:
            self._flush_at = self.loop.call_later(_HOLD_S, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        if self._held and self.alive:
            with contextlib.suppress(Exception):  # the pipe closing: the child is going away
                self._write(b"")

    def _write(self, data: bytes) -> None:
        """Write the held frames, then ``data``: requests reach the child in the order made."""
        if self._held:
            self._held.append(data)
            data = b"".join(self._held)
            self._held.clear()
        self._stdin.write(data)

    def send(self, body: tuple[bytes, int]) -> tuple[int, asyncio.Future[list[Any]]]:
        """Write a request; its answer resolves the future. Synchronous, so no answer is missed:
        a child seen alive here fails the future should it die later."""
        if not self.alive:
            raise _Gone
        request_id = next(self._ids)
        future: asyncio.Future[list[Any]] = self.loop.create_future()
        self.pending[request_id] = future
        self._write(frame(request_id, *body))
        return request_id, future

    def runs_until(self, timeout_ms: int) -> None:
        """A run (or background run) with that time limit was sent: a retired child waits for it."""
        self.busy_until = max(self.busy_until, time.monotonic() + timeout_ms / 1000)

    async def ask(self, message: list[Any], timeout_s: float) -> Any:
        request_id, future = self.send(encode(message))
        return await self.wait(request_id, future, timeout_s, cancel_remote=False)

    async def wait(
        self, request_id: int, future: asyncio.Future[list[Any]], timeout_s: float, *, cancel_remote: bool
    ) -> Any:
        """The answer's value; ``_Gone`` if the child stopped, ``_Unavailable`` if it did not answer
        in ``timeout_s`` (it is then killed), ``RuntimeError`` if the request failed in it."""
        watchdog = self.loop.call_later(timeout_s, self._expire, request_id)
        try:
            answer = await future
        except asyncio.CancelledError:
            if cancel_remote and self.alive:
                with contextlib.suppress(Exception):
                    self.notify(encode(["cancel", request_id]))
            raise
        finally:
            watchdog.cancel()
            self.pending.pop(request_id, None)
        if len(answer) > 1:
            raise RuntimeError(f"the V8 sandbox process failed: {answer[1]}")
        return answer[0]

    def _expire(self, request_id: int) -> None:
        future = self.pending.pop(request_id, None)
        if future is None or future.done():
            return
        log.warning("V8 sandbox process %s did not answer in time; stopping it", self.pid)
        future.set_exception(_Unavailable("the sandbox process did not answer in time"))
        self.kill()

    async def _watch_memory(self) -> None:
        """Kill the child once its resident memory passes ``process_memory_mb``: V8's per-run limit
        counts the JavaScript heap only, not ``ArrayBuffer`` backing stores, so typed arrays could
        otherwise take the machine's memory. The runs in flight there end SANDBOX_CRASHED (retried
        by policy; the crash counts towards ``max_restarts``), as when V8 aborts the process."""
        limit = self.sandbox.process_memory_mb * 2**20
        page = os.sysconf("SC_PAGE_SIZE")
        path = f"/proc/{self.pid}/statm"
        while self.alive:
            await asyncio.sleep(_MEMORY_POLL_S)
            try:
                resident = _resident_pages(path) * page
            except (OSError, ValueError, IndexError):
                return  # it is gone
            if resident > limit and self.alive:
                log.warning(
                    "V8 sandbox process %s uses %d MB, over SANDBOX_PROCESS_MEMORY_MB (%d): stopping it "
                    "(%d requests in flight there fail)",
                    self.pid,
                    resident // 2**20,
                    self.sandbox.process_memory_mb,
                    len(self.pending),
                )
                self.kill()
                return

    def kill(self) -> None:
        """Stop the child now: what waits for it fails at once, and nothing more is sent to it."""
        self._died()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(self.pid, signal.SIGKILL)

    def _died(self) -> None:
        """Fail whatever waits for an answer (``_Gone``)."""
        if not self.alive:
            return
        self.alive = False
        if self._memory_watch is not None and self._memory_watch is not asyncio.current_task():
            self._memory_watch.cancel()
        self._held.clear()
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if not self.closing:
            self.sandbox._crashed()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_Gone())
                self.lost += 1

    # --- reading --------------------------------------------------------------------------------

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                size, request_id = HEADER.unpack(await stdout.readexactly(HEADER.size))
                answer = decode(await stdout.readexactly(size & LENGTH), size & JSON_MODULE)
                if request_id == 0:  # a notice, answering nothing
                    if answer == ["stuck"]:
                        self.sandbox._retire(self)
                    continue
                future = self.pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            self._died()  # the child's end closed: it stopped
        except asyncio.CancelledError:
            # Its event loop is ending (asyncio.run() returns): the child is of no use after it.
            self.closing = True
            self.kill()
            with contextlib.suppress(BaseException):  # so that asyncio can close its pipes
                await asyncio.wait_for(self.proc.wait(), 1.0)
            raise
        except Exception as exc:  # a garbled frame: the child cannot be trusted any more
            log.warning(
                "V8 sandbox process %s answered garbage (%s); stopping it", self.pid, type(exc).__name__
            )
            self.kill()
        code = await self.proc.wait()
        if not self.closing:
            how = f"exit code {code}"
            if code < 0:
                try:
                    how = f"signal {signal.Signals(-code).name}"
                except ValueError:
                    how = f"signal {-code}"
            log.warning(
                "V8 sandbox process %s stopped (%s); %d requests in flight were lost",
                self.pid,
                how,
                self.lost,
            )

    async def _read_stderr(self) -> None:
        """Log what the child writes on stderr: a burst of lines (V8's report of a fatal error) as
        one record, at most ``_STDERR_LINES`` lines per child."""
        stderr = self.proc.stderr
        assert stderr is not None
        burst: list[str] = []
        budget = _STDERR_LINES
        rest = b""

        def flush() -> None:
            nonlocal budget
            if burst and budget > 0:
                kept = burst[:budget]
                more = "\n(more not logged)" if len(burst) > budget else ""
                budget -= len(kept)
                log.warning("V8 sandbox process %s wrote:\n%s%s", self.pid, "\n".join(kept), more)
            burst.clear()

        with contextlib.suppress(Exception):
            while True:
                try:
                    if burst:
                        chunk = await asyncio.wait_for(stderr.read(65536), _STDERR_QUIET_S)
                    else:
                        chunk = await stderr.read(65536)
                except TimeoutError:
                    flush()
                    continue
                if not chunk:
                    break
                *complete, rest = (rest + chunk).split(b"\n")
                if len(rest) > _STDERR_LINE_CHARS:
                    complete.append(rest)
                    rest = b""
                for raw in complete:
                    line = raw.decode("utf-8", "replace").rstrip()
                    if line:
                        burst.append(line[:_STDERR_LINE_CHARS])
        if rest.strip():
            burst.append(rest.decode("utf-8", "replace").rstrip()[:_STDERR_LINE_CHARS])
        flush()

    # --- stopping -------------------------------------------------------------------------------

    async def stop(self, timeout_s: float) -> None:
        """Ask the child to stop; kill it if it has not exited within ``timeout_s``."""
        self.closing = True
        deadline = time.monotonic() + timeout_s
        if self.alive:
            with contextlib.suppress(Exception):
                await self.ask(["shutdown"], timeout_s)
        with contextlib.suppress(Exception):
            self._stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            log.warning("V8 sandbox process %s did not stop in time; killing it", self.pid)
            self.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(self.reader, self.stderr), 1.0)


class _Slot:
    """Where one child lives, one after another."""

    __slots__ = ("child", "index", "spawning")

    def __init__(self, index: int) -> None:
        self.index = index
        self.child: _Child | None = None
        self.spawning: asyncio.Task[_Child] | None = None


def _wire(run: SandboxRun) -> list[Any]:
    return [run.code, run.language, run.context, run.timeout_ms, run.expression]


_UNSERIALISABLE = (TypeError, ValueError, RecursionError)


class ProcessV8Session:
    """The runs of one execution, in one child: the remote session opens with the first run and
    opens again (in a new child) if its child died."""

    def __init__(self, sandbox: ProcessV8Sandbox, session_id: str, scope: str | None) -> None:
        self._sandbox = sandbox
        self.session_id = session_id
        self._scope = scope
        self._child: _Child | None = None
        self._closed = False

    async def _bind(self) -> _Child:
        child = self._child
        if child is not None and child.alive and not child.retiring:
            return child
        child = await self._sandbox._least_loaded()
        bound = self._child
        if bound is not None and bound.alive and not bound.retiring:  # an overlapping run bound it
            return bound
        self._leave()  # a retired child: the session's isolates stay there, it goes on in this one
        # Not waited for: the child handles an "open" before it reads the next request; it goes
        # with this run's request, in one write.
        child.hold(encode(["open", self.session_id, self._scope]))
        child.sessions += 1
        self._child = child
        return child

    def _leave(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.alive:
            child.sessions -= 1
            with contextlib.suppress(Exception):
                child.hold(encode(["close", self.session_id]))

    async def run(self, run: SandboxRun) -> SandboxResult:
        started = time.perf_counter()
        if (run.language or "").strip().lower() not in LANGUAGES:
            return self.failure("UNSUPPORTED_LANGUAGE", unsupported_message(run.language), started)
        sandbox = self._sandbox
        if self._closed or sandbox.closed:
            return self.failure("SANDBOX_UNAVAILABLE", "the V8 sandbox session is closed", started)
        try:
            body = encode(["run", self.session_id, *_wire(run)], run.context)
        except _UNSERIALISABLE as exc:
            return self.failure("RUNTIME_ERROR", f"the context is not JSON-serialisable: {exc}", started)
        timeout_ms = run.timeout_ms if run.timeout_ms > 0 else sandbox.default_timeout_ms
        for attempt in range(2):
            try:
                child = await self._bind()
                request_id, future = child.send(body)
                child.runs_until(timeout_ms)
            except _Unavailable as exc:
                return self.failure("SANDBOX_UNAVAILABLE", exc.message, started)
            except _Gone:  # it died before the run was sent: nothing lost, take a new one
                if attempt == 0:
                    continue
                return self.failure("SANDBOX_UNAVAILABLE", "the sandbox process keeps stopping", started)
            try:
                wire = await child.wait(
                    request_id, future, timeout_ms / 1000 + _WATCHDOG_S, cancel_remote=True
                )
            except _Gone:
                if child.closing or sandbox.closed:  # closed, or a retired child past its runs' limits
                    return self.failure(
                        "SANDBOX_UNAVAILABLE", "the V8 sandbox was closed while running this code", started
                    )
                return self.failure("SANDBOX_CRASHED", CRASHED_MESSAGE, started)
            except _Unavailable as exc:
                return self.failure("SANDBOX_UNAVAILABLE", exc.message, started)
            except RuntimeError as exc:
                return self.failure("SANDBOX_UNAVAILABLE", str(exc), started)
            return result_from_wire(wire)
        raise AssertionError("unreachable")

    def failure(self, code: str, message: str, started: float) -> SandboxResult:
        return failure(code, message, started, session_id=self.session_id)

    def close(self) -> None:
        self._closed = True
        self._leave()


class ProcessV8Sandbox:
    """The ``Sandbox`` port on embedded V8, in child processes that a V8 abort takes down instead of
    the server. See the module's notes."""

    name = "v8"

    def __init__(
        self,
        *,
        memory_mb: int | None = None,
        default_timeout_ms: int | None = None,
        max_output_bytes: int | None = None,
        warm_per_scope: int | None = None,
        warm_max: int | None = None,
        processes: int = 1,
        max_restarts: int = 5,
        restart_window_s: float = 10.0,
        shutdown_timeout_s: float = 3.0,
        process_memory_mb: int = 2048,
    ) -> None:
        """The ``V8Sandbox`` keywords (``None``: its default) apply in each child; ``warm_per_scope``
        and ``warm_max`` are per child. ``process_memory_mb``: a child whose resident memory passes
        it is killed (0: never), see ``_Child._watch_memory``."""
        given = {
            "memory_mb": memory_mb,
            "default_timeout_ms": default_timeout_ms,
            "max_output_bytes": max_output_bytes,
            "warm_per_scope": warm_per_scope,
            "warm_max": warm_max,
        }
        config = {key: _V8_DEFAULTS[key] if value is None else value for key, value in given.items()}
        self.memory_mb: int = config["memory_mb"]
        self.default_timeout_ms: int = config["default_timeout_ms"]  # for runs without a timeout
        self.max_output_bytes: int = config["max_output_bytes"]
        self.warm_per_scope: int = config["warm_per_scope"]
        self.warm_max: int = config["warm_max"]
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.process_memory_mb = process_memory_mb
        # What a child may hold without misbehaving: ~0.5 GB of its own, its warm isolates (~4 MB
        # each) and the heaps of the runs at once (a worker's default --concurrency, 16).
        needed = 512 + 4 * self.warm_max + _RUNS_AT_ONCE * self.memory_mb
        if 0 < process_memory_mb < needed:
            log.warning(
                "SANDBOX_PROCESS_MEMORY_MB=%d is below the ~%d MB a sandbox process may need with "
                "SANDBOX_WARM_ISOLATES=%d and SANDBOX_MEMORY_MB=%d (%d runs at once): it may be "
                "stopped under ordinary load",
                process_memory_mb,
                needed,
                self.warm_max,
                self.memory_mb,
                _RUNS_AT_ONCE,
            )
        self.closed = False
        self._slots = [_Slot(i) for i in range(max(1, processes))]
        self._turn = 0
        self._crashes: deque[float] = deque()
        self._background: OrderedDict[str, _Child] = OrderedDict()  # started runs, by session id
        # Results held here for their poll: background runs that could not start, and those
        # collected from a retired child before it was killed.
        self._ready: OrderedDict[str, SandboxResult] = OrderedDict()
        self._retired: set[_Child] = set()  # retired children not killed yet
        self._draining: set[asyncio.Task[None]] = set()
        self._config = orjson.dumps(config).decode()

    @property
    def pids(self) -> list[int]:
        """The process ids of the children taking runs now (not those retired, still finishing some)."""
        return [slot.child.pid for slot in self._slots if slot.child is not None and slot.child.alive]

    # --- children -----------------------------------------------------------------------------------

    async def _least_loaded(self) -> _Child:
        slots = self._slots
        if len(slots) == 1:
            return await self._child(slots[0])
        self._turn = (self._turn + 1) % len(slots)
        order = slots[self._turn :] + slots[: self._turn]  # round-robin among equals
        slot = min(order, key=lambda s: s.child.sessions if s.child is not None and s.child.alive else 0)
        return await self._child(slot)

    async def _child(self, slot: _Slot) -> _Child:
        child = slot.child
        loop = asyncio.get_running_loop()
        if child is not None and child.alive:
            if child.loop is loop:
                return child
            # Made on an event loop that is gone (asyncio.run() called again): of no use here.
            child.closing = True
            child.alive = False
            child.kill()
        if self.closed:
            raise _Unavailable("the V8 sandbox is closed")
        spawning = slot.spawning
        if spawning is None or spawning.get_loop() is not loop:
            self._check_restarts()
            spawning = slot.spawning = loop.create_task(self._spawn(slot), name="v8 sandbox spawn")
        try:
            return await asyncio.shield(spawning)
        except OSError as exc:
            raise _Unavailable(f"the V8 sandbox process could not start: {exc}") from None
        finally:
            if spawning.done() and slot.spawning is spawning:
                slot.spawning = None

    def _check_restarts(self) -> None:
        now = time.monotonic()
        crashes = self._crashes
        while crashes and now - crashes[0] > self.restart_window_s:
            crashes.popleft()
        if len(crashes) > self.max_restarts:
            wait = self.restart_window_s - (now - crashes[0])
            raise _Unavailable(
                f"the V8 sandbox process crashed {len(crashes)} times in the last "
                f"{self.restart_window_s:g} s; code runs are refused for {wait:.1f} s more"
            )

    def _crashed(self) -> None:
        self._crashes.append(time.monotonic())
        while len(self._crashes) > self.max_restarts + 1:
            self._crashes.popleft()

    async def _spawn(self, slot: _Slot) -> _Child:
        # A minimal environment: the parent's secrets (database URL, API keys...) stay in the parent.
        env = {key: value for key, value in os.environ.items() if key in _ENV_KEPT or key.startswith("LC_")}
        env["PYTHONPATH"] = _PROJECT_ROOT
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adapters.sandbox.v8_host",
            self._config,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=2**20,
        )
        child = _Child(self, proc, asyncio.get_running_loop())
        if self.closed:  # closed while it was starting
            await child.stop(self.shutdown_timeout_s)
            raise _Unavailable("the V8 sandbox is closed")
        slot.child = child
        log.info("V8 sandbox process %s started", child.pid)
        return child

    def _retire(self, child: _Child) -> None:
        """The child has an isolate V8 could not stop, burning a CPU core for as long as the process
        lives: it takes no new run (its sessions go on in a new child, as after a crash) and is
        killed once the runs in flight there are over. Not a crash: runs are not refused for it."""
        if child.retiring or not child.alive or self.closed:
            return
        child.retiring = True
        for slot in self._slots:
            if slot.child is child:
                slot.child = None
        log.warning(
            "V8 sandbox process %s has an isolate V8 could not stop; it takes no new runs and is "
            "stopped once those in flight there are over (%d requests waiting)",
            child.pid,
            len(child.pending),
        )
        self._retired.add(child)
        task = child.loop.create_task(self._drain(child), name=f"v8 sandbox {child.pid} retire")
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, child: _Child) -> None:
        """Wait for a retired child's runs in flight - collecting its background runs' results for
        their polls - at most until the last of their time limits (each answers by then, TIMEOUT
        if need be), then kill it."""
        try:
            while child.alive and time.monotonic() < child.busy_until + _RETIRE_GRACE_S:
                for session_id in [sid for sid, c in self._background.items() if c is child]:
                    await self._collect(child, session_id)
                if not child.pending and child not in self._background.values():
                    break
                await asyncio.sleep(_DRAIN_POLL_S)
        finally:
            child.closing = True
            child.kill()
            self._retired.discard(child)
            log.info("V8 sandbox process %s retired", child.pid)

    async def _collect(self, child: _Child, session_id: str) -> None:
        try:
            wire = await child.ask(["poll", session_id], _REQUEST_TIMEOUT_S)
        except (_Gone, _Unavailable, RuntimeError):
            return
        if wire is not None and self._background.get(session_id) is child:  # not polled meanwhile
            del self._background[session_id]
            self._hold(session_id, result_from_wire(wire))

    def _hold(self, session_id: str, result: SandboxResult) -> None:
        self._ready[session_id] = replace(result, session_id=session_id)
        while len(self._ready) > RESULTS_KEPT:
            self._ready.popitem(last=False)

    # --- the port -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, scope: str | None = None) -> AsyncIterator[ProcessV8Session]:
        session = ProcessV8Session(self, f"v8_{secrets.token_hex(8)}", scope)
        try:
            yield session
        finally:
            session.close()

    async def start(self, run: SandboxRun) -> str:
        started = time.perf_counter()
        try:
            body = encode(["start", *_wire(run)], run.context)
        except _UNSERIALISABLE as exc:
            failed = failure("RUNTIME_ERROR", f"the context is not JSON-serialisable: {exc}", started)
        else:
            try:
                child = await self._least_loaded()
                request_id, future = child.send(body)
                child.runs_until(run.timeout_ms if run.timeout_ms > 0 else self.default_timeout_ms)
                session_id = str(
                    await child.wait(request_id, future, _REQUEST_TIMEOUT_S, cancel_remote=False)
                )
            except _Unavailable as exc:
                failed = failure("SANDBOX_UNAVAILABLE", exc.message, started)
            except (_Gone, RuntimeError):
                failed = failure("SANDBOX_CRASHED", CRASHED_MESSAGE, started)
            else:
                self._background[session_id] = child
                while len(self._background) > RESULTS_KEPT * 2 * len(self._slots):
                    self._background.popitem(last=False)
                return session_id
        # Not started: the poll tells why, as for a run that failed at once.
        session_id = f"v8_{secrets.token_hex(8)}"
        self._hold(session_id, failed)
        return session_id

    async def stop(self, session_id: str) -> None:
        self._ready.pop(session_id, None)
        child = self._background.pop(session_id, None)
        if child is not None and child.alive and child.loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                child.notify(encode(["stop", session_id]))

    async def poll(self, session_id: str) -> SandboxResult | None:
        ready = self._ready.pop(session_id, None)
        if ready is not None:
            return ready
        child = self._background.get(session_id)
        unknown = SandboxResult(
            success=False,
            error={"message": UNKNOWN_SESSION, "code": "SANDBOX_UNAVAILABLE"},
            session_id=session_id,
        )
        if child is None or not child.alive or child.loop is not asyncio.get_running_loop():
            self._background.pop(session_id, None)
            return unknown
        if child.retiring:
            return None  # its drain collects the result
        try:
            wire = await child.ask(["poll", session_id], _REQUEST_TIMEOUT_S)
        except (_Gone, _Unavailable, RuntimeError):
            self._background.pop(session_id, None)
            return self._ready.pop(session_id, unknown)
        ready = self._ready.pop(session_id, None)
        if ready is not None:  # the child retired meanwhile and its drain asked first
            return ready
        if wire is None:
            return None
        self._background.pop(session_id, None)
        return result_from_wire(wire)

    async def aclose(self) -> None:
        """Stop the children (killing any that has not exited within ``shutdown_timeout_s``)."""
        self.closed = True
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            spawning = slot.spawning
            if spawning is not None and spawning.get_loop() is loop:
                with contextlib.suppress(Exception):
                    await asyncio.shield(spawning)
        children = []
        for slot in self._slots:
            child, slot.child = slot.child, None
            if child is None:
                continue
            if child.loop is loop:
                children.append(child)
            else:
                child.closing = True
                child.kill()
        if children:
            await asyncio.gather(*(child.stop(self.shutdown_timeout_s) for child in children))
        # Retired children: their runs in flight are not waited for any more.
        retired, self._retired = list(self._retired), set()
        for child in retired:
            child.closing = True
            child.kill()
        draining = [task for task in self._draining if task.get_loop() is loop]
        for task in draining:
            task.cancel()
        with contextlib.suppress(Exception):  # reaped by their readers
            await asyncio.wait_for(
                asyncio.gather(
                    *draining, *(c.reader for c in retired if c.loop is loop), return_exceptions=True
                ),
                1.0,
            )
        self._background.clear()
        self._ready.clear()
