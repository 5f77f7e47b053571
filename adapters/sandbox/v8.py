"""The embedded code sandbox: V8 isolates (mini-racer), with time and memory limits and no I/O.

An isolate is made per session (one execution's steps on one worker; making one costs ~2 ms of
CPU, so steps of a session share it) and never shared between sessions, hence never between
tenants. Between runs nothing leaks: at creation the JavaScript intrinsics are frozen (no prototype
pollution) and the host's timers, WebAssembly and shared memory are removed; after each run every
global the run added is deleted (an isolate where that fails, or that hit a limit, is replaced).

User code never reaches the host: it is compiled on its own (so a syntax error shows only its own
lines), the context arrives as a JSON string, and the result leaves as a JSON string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSParseException, JSTimeoutException, MiniRacer

from application.ports import SandboxResult, SandboxRun

UNSUPPORTED = (
    "{language} code needs a Daytona sandbox: set SANDBOX_BACKEND=daytona "
    "(the embedded V8 sandbox runs JavaScript only)"
)
RESULTS_KEPT = 1000
# What user code sees: the seed's context object (also as ``input``) and its parts by name, so an
# executeIf reads ``variables.flag === true`` as well as ``context.variables.flag === true``.
_PARAMETERS = "context, input, console, variables, stepOutputs, meta, utils"

_PRELUDE = r"""
(function () {
  "use strict";
  for (const name of ["setTimeout", "clearTimeout", "__timer_manager", "WebAssembly", "SharedArrayBuffer",
                      "Atomics", "FinalizationRegistry", "WeakRef", "console"]) {
    const d = Object.getOwnPropertyDescriptor(globalThis, name);
    if (!d) continue;
    if (d.configurable) delete globalThis[name];
    else if (d.writable) globalThis[name] = undefined;
  }
  const seen = new Set();
  const freeze = (value) => {
    if ((typeof value !== "object" && typeof value !== "function") || value === null || seen.has(value)) return;
    seen.add(value);
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) {
      const d = Object.getOwnPropertyDescriptor(value, key);
      if (d && "value" in d) freeze(d.value);
      if (d && d.get) freeze(d.get);
      if (d && d.set) freeze(d.set);
    }
    freeze(Object.getPrototypeOf(value));
  };
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (name !== "globalThis") freeze(globalThis[name]);
  }
  const baseline = new Set(Object.getOwnPropertyNames(globalThis));
  baseline.add("__tolstoyReset");
  baseline.add("__tolstoyFn");
  Object.defineProperty(globalThis, "__tolstoyReset", {
    value: function () {
      let stuck = 0;
      for (const name of Object.getOwnPropertyNames(globalThis)) {
        if (!baseline.has(name) && !delete globalThis[name]) stuck++;
      }
      globalThis.__tolstoyFn = undefined;
      return stuck;
    },
  });
})();
"""

_CALL = r"""
(function (contextJson) {
  "use strict";
  const logs = [];
  const record = (type) => (message, data) => {
    logs.push({ type, message: String(message), data: data === undefined ? null : data, timestamp: new Date().toISOString() });
  };
  const utils = Object.freeze({ log: record("log"), warn: record("warn"), error: record("error") });
  const console = Object.freeze({ log: utils.log, info: utils.log, debug: utils.log, warn: utils.warn, error: utils.error });
  const context = JSON.parse(contextJson);
  context.utils = utils;
  const fail = (e) => JSON.stringify({ ok: false, logs, error: {
    message: String(e && e.message !== undefined ? e.message : e),
    name: e && e.name ? String(e.name) : "Error",
    stack: e && e.stack ? String(e.stack) : null,
  } });
  let out;
  try {
    out = globalThis.__tolstoyFn(context, context, console, context.variables, context.stepOutputs, context.meta, utils);
  } catch (e) {
    return fail(e);
  }
  if (out && typeof out.then === "function") {
    return fail(new TypeError("The code returned a promise; return a value (async code is not supported here)"));
  }
  let text;
  try {
    text = JSON.stringify(out === undefined ? null : out);
  } catch (e) {
    return fail(new TypeError("The return value is not JSON: " + e.message));
  }
  return '{"ok":true,"logs":' + JSON.stringify(logs) + ',"output":' + (text === undefined ? "null" : text) + "}";
})
"""


def _failure(
    code: str, message: str, started: float, stack: str | None = None, logs: Any = ()
) -> SandboxResult:
    error: dict[str, Any] = {"message": message, "code": code}
    if stack:
        error["stack"] = stack
    return SandboxResult(
        False, error=error, logs=tuple(logs), execution_ms=int((time.perf_counter() - started) * 1000)
    )


class _Isolate:
    """One V8 isolate, used from one thread at a time."""

    def __init__(self, memory_bytes: int) -> None:
        self.racer = MiniRacer()
        self.racer.set_hard_memory_limit(memory_bytes)
        self.racer.eval(_PRELUDE)
        self.call = self.racer.eval(_CALL)
        self.broken = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.racer.close()


class V8Session:
    def __init__(self, sandbox: V8Sandbox) -> None:
        self._sandbox = sandbox
        self._isolate: _Isolate | None = None

    async def run(self, run: SandboxRun) -> SandboxResult:
        return await self._sandbox._in_thread(self._run, run)

    def _run(self, run: SandboxRun) -> SandboxResult:
        started = time.perf_counter()
        if run.language != "javascript":
            return _failure(
                "UNSUPPORTED_LANGUAGE", UNSUPPORTED.format(language=run.language.capitalize()), started
            )
        if self._isolate is None or self._isolate.broken:
            if self._isolate is not None:
                self._isolate.close()
            self._isolate = _Isolate(self._sandbox.memory_bytes)
        isolate = self._isolate
        body = f"return ({run.code}\n);" if run.expression else run.code
        timeout = max(1, run.timeout_ms or self._sandbox.default_timeout_ms)
        try:
            isolate.racer.eval(
                f'globalThis.__tolstoyFn = (function ({_PARAMETERS}) {{ "use strict";\n{body}\n}});'
            )
            deadline = timeout - (time.perf_counter() - started) * 1000
            raw = isolate.call(json.dumps(run.context), timeout_sec=max(1, deadline) / 1000)
        except JSParseException as exc:
            return _failure("SYNTAX_ERROR", _first_line(str(exc)), started)
        except JSTimeoutException:
            isolate.broken = True
            # The cancelled run reports back asynchronously; one more (queued) eval waits for that
            # report, so closing the isolate later cannot race it.
            with contextlib.suppress(Exception):
                isolate.racer.eval("0", timeout_sec=1)
            return _failure("TIMEOUT", f"The code ran longer than {timeout} ms", started)
        except JSOOMException:
            isolate.broken = True
            return _failure(
                "MEMORY_LIMIT", f"The code used more than {self._sandbox.memory_bytes // 2**20} MiB", started
            )
        except JSEvalException as exc:
            isolate.broken = True
            if isolate.racer.was_hard_memory_limit_reached():  # V8 stops the run with a bare "null"
                return _failure(
                    "MEMORY_LIMIT",
                    f"The code used more than {self._sandbox.memory_bytes // 2**20} MiB",
                    started,
                )
            return _failure("RUNTIME_ERROR", _first_line(str(exc)), started)
        finally:
            if not isolate.broken:
                try:
                    if isolate.racer.eval("__tolstoyReset()"):
                        isolate.broken = True  # a global it could not delete: do not reuse
                except Exception:
                    isolate.broken = True
        if isolate.racer.was_hard_memory_limit_reached():
            isolate.broken = True
            return _failure(
                "MEMORY_LIMIT", f"The code used more than {self._sandbox.memory_bytes // 2**20} MiB", started
            )
        if len(raw) > self._sandbox.max_output_bytes:
            return _failure(
                "OUTPUT_TOO_LARGE",
                f"The result is larger than {self._sandbox.max_output_bytes} bytes",
                started,
            )
        result = json.loads(raw)
        elapsed = int((time.perf_counter() - started) * 1000)
        if not result["ok"]:
            e = result["error"]
            message = e["message"] if e["name"] in ("Error", None) else f"{e['name']}: {e['message']}"
            return SandboxResult(
                False,
                logs=tuple(result["logs"]),
                error={
                    "message": message,
                    "code": "RUNTIME_ERROR",
                    **({"stack": e["stack"]} if e["stack"] else {}),
                },
                execution_ms=elapsed,
            )
        return SandboxResult(True, output=result["output"], logs=tuple(result["logs"]), execution_ms=elapsed)

    def close(self) -> None:
        if self._isolate is not None:
            self._isolate.close()
            self._isolate = None


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line:
            return line.strip()[:1000]
    return (lines[0] if lines else message)[:1000]


class V8Sandbox:
    name = "v8"

    def __init__(
        self,
        *,
        memory_mb: int = 64,
        default_timeout_ms: int = 30_000,
        max_output_bytes: int = 1_048_576,
        threads: int = 4,
    ) -> None:
        self.memory_bytes = memory_mb * 2**20
        self.default_timeout_ms = default_timeout_ms
        self.max_output_bytes = max_output_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="v8")
        self._background: dict[str, asyncio.Task[SandboxResult]] = {}
        self._finished: OrderedDict[str, SandboxResult] = OrderedDict()

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[V8Session]:
        session = V8Session(self)
        try:
            yield session
        finally:
            await self._in_thread(session.close)

    async def start(self, run: SandboxRun) -> str:
        session_id = f"v8_{secrets.token_hex(8)}"

        async def background() -> SandboxResult:
            async with self.session() as session:
                result = await session.run(run)
            self._background.pop(session_id, None)
            self._finished[session_id] = result
            while len(self._finished) > RESULTS_KEPT:
                self._finished.popitem(last=False)
            return result

        self._background[session_id] = asyncio.create_task(background())
        return session_id

    async def poll(self, session_id: str) -> SandboxResult | None:
        if session_id in self._background:
            return None
        result = self._finished.pop(session_id, None)
        if result is None:
            return SandboxResult(
                False,
                error={
                    "message": "Unknown session; it may have run on a worker that stopped",
                    "code": "SANDBOX_UNAVAILABLE",
                },
            )
        return SandboxResult(
            result.success, result.output, result.logs, result.error, result.execution_ms, session_id
        )

    async def aclose(self) -> None:
        for task in self._background.values():
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
