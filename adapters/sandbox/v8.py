"""The embedded code sandbox: JavaScript in V8 isolates (mini-racer), with time and memory limits.

Isolates
--------
A session (the runs of one execution on one worker) has its own isolates, never shared with
another session, hence never with another tenant. Making one costs ~5 ms of CPU (2 ms for V8, 3 ms
for the lockdown below), so the runs of a session reuse it (a run then costs ~0.13 ms on top of
the code); runs of the same session that overlap (parallel steps) get one each.

Nothing leaks from one run to the next, because at creation the isolate is locked down, SES-style:

* the timers mini-racer installs (``setTimeout``/``clearTimeout``), ``SharedArrayBuffer``,
  ``Atomics.wait``/``waitAsync``, ``WebAssembly`` and ``FinalizationRegistry`` are removed, and so
  are RegExp's legacy statics (``RegExp.$1``, ``lastMatch``...), which would carry the last match
  of one run into the next;
* every intrinsic reachable from the global object (and the hidden ones: generator, async and
  iterator prototypes...) is frozen, and the global object's own properties are made read-only,
  so neither prototype pollution nor ``JSON.parse = ...`` survives a run. Assigning
  ``constructor``, ``toString``, ``valueOf``, ``name``, ``message``... (and anything of
  ``Object.prototype``) to an ordinary object still works - the "override mistake" is tamed with
  accessors, as SES does - so ``this.name = "MyError"`` and ``counts["constructor"]`` work;
* before and after each run every global the run added is deleted; an isolate where that fails
  (a non-configurable global, a new prototype for the global object) or that hit a limit is
  replaced.

There is no I/O: no ``require``, ``process``, ``fetch``, ``XMLHttpRequest``, ``WebSocket``,
timers, ``Deno`` or ``Bun``, and ``import()`` is refused by mini-racer.

A run
-----
The code is a function body (``expression=True``: one expression) compiled with the ``Function``
constructor: whatever it writes after a closing brace never runs outside that function; it runs in strict mode as
``function (context, input)``, with ``variables``, ``stepOutputs``, ``meta`` and ``utils`` also in
scope as names (from an enclosing function, so the code may still declare its own ``meta``).
``context``/``input`` is ``{variables, stepOutputs, meta, utils}``, parsed by ``JSON.parse`` from a
JSON string literal (``_literal``: user values never become source code). ``utils.log/info/
warn/error(message, data?)`` and ``console.log/info/debug/warn/error(...)`` record log entries
``{type, message, data?, timestamp}``, up to half of ``max_output_bytes`` (then one "log output
truncated" entry). Code that uses ``await`` is compiled as an async function; a returned promise
is awaited (it must settle without timers: there are none). The return value is the output
(``undefined`` is ``None``), serialised by ``JSON.stringify`` in V8 and parsed in Python (``_loads``).

mini-racer runs an evaluation's promise jobs (V8's microtask checkpoint) after the evaluation has
answered. A run whose code cannot have made any is one evaluation: the code runs, its outcome is
collected and its globals deleted, all at once. Any other run - its code has ``async``, ``await``
or ``import`` in it, or it read ``Promise``, ``AsyncDisposableStack``, ``Array.fromAsync``,
``Function``, ``eval`` or a function's ``constructor`` (the lockdown makes these accessors that
note it: without async syntax they are the only ways to a promise job, and a test walks every
intrinsic to keep it so) - is two: the second, after the jobs, collects the outcome, so the run's
timeout covers what the code left running and a promise it returned is awaited. One evaluation is
~0.13 ms of CPU, most of it mini-racer's hand-offs between its thread and Python's.
As a backstop, an isolate that a run used is watched until that run's time limit: one not taken
by another run by then is asked for a value and disposed of if it does not answer at once.

Errors
------
``SandboxResult(success=False, error={message, code, stack?})`` with code SYNTAX_ERROR (with the
line and its excerpt, in the user's code, when V8 tells it), RUNTIME_ERROR (the message -
``"TypeError: ..."`` for an error other than a plain ``Error`` - and the stack, its lines counted in
the user's code; also a context that cannot be serialised or nests deeper than ``MAX_NESTING``
levels), TIMEOUT, MEMORY_LIMIT, OUTPUT_TOO_LARGE (a result over ``max_output_bytes`` or nested
deeper than ``MAX_NESTING``; a log's data nested deeper is replaced by a note), UNSUPPORTED_LANGUAGE
(anything but JavaScript) or SANDBOX_UNAVAILABLE.

Threads and limits
------------------
Evaluation does not block the event loop: mini-racer runs each isolate on a native thread of its
own and reports back through the loop (``eval_cancelable``), on the loop the session was opened
in. Creating and disposing of isolates block, so they run in a small executor the sandbox owns
(``aclose`` shuts it down). A timeout cancels the evaluation (V8's ``TerminateExecution``); the
isolate is then given up and disposed of on a throw-away daemon thread, because disposal waits for
V8 to stop and some built-ins (``Array.prototype.sort``/``reverse``/``indexOf`` over an
``{length: 2**40}`` array-like...) do not check for termination: such an isolate keeps one CPU
core busy until the built-in returns, possibly for good (``abandoned_isolates`` counts them). One
not stopped ``STUCK_AFTER_S`` after it was given up is reported (``on_stuck``, else a warning):
only the end of the process stops it, which is what the child-process sandbox does (``v8_process``).
The memory limit (``set_hard_memory_limit``) is checked by V8 after each garbage collection and
counts the JavaScript heap only - not ``ArrayBuffer`` backing stores - and a few allocations
(``"x".repeat(2**28).split("")``, ``new Array(1e9).fill(0)``...) abort the whole process inside
V8 before any limit is checked. The embedded sandbox protects tenants' data from each other and
stops ordinary runaway code; it does not protect the worker's availability from hostile code:
use the Daytona backend (or a process per sandbox) for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from py_mini_racer import (
    JSEvalException,
    JSOOMException,
    JSParseException,
    MiniRacer,
    init_mini_racer,
    mini_racer,
)

from adapters.clock import SystemClock
from application.ports import Clock, SandboxResult, SandboxRun

log = logging.getLogger("tolstoy.sandbox.v8")
LANGUAGES = frozenset({"javascript", "js"})
RESULTS_KEPT = 1_000  # finished background runs waiting for their poll; the oldest go first
UNKNOWN_SESSION = "unknown session; it may have run on a worker that stopped"
_RUNNER = "__tolstoy_sandbox__"
_SETUP_TIMEOUT_S = 10.0
_FINISH_GRACE_S = 0.05  # the collecting evaluation's minimum time, should the code use all of its own
# How long V8 may take to stop an isolate given up before it is deemed stuck (``on_stuck``): a
# terminated run stops, and its isolate is disposed of, within a few milliseconds.
STUCK_AFTER_S = 1.0
_SYNTAX_LOCATION = re.compile(r"^<anonymous>:(\d+): (SyntaxError: .*)$")
_PROBE = "__tolstoy_probe__"  # the function a syntax error is located in (``_locate_syntax_error``)

# V8's flags, set once per process before the first isolate. mini-racer's own default is
# ``--single-threaded``. Memory protection keys are off: on CPUs with PKU (``pku``/``ospke`` in
# /proc/cpuinfo) V8 guards its heap with a key that only threads started after V8's set-up may
# touch, so an isolate disposed of from an executor thread started earlier crashes the process
# (SIGSEGV in ``Heap::StartTearDown``). Tenants' code is kept apart by isolates (and by processes
# with SANDBOX_ISOLATION=process), not by that exploit-hardening layer.
V8_FLAGS = ("--single-threaded", "--no-memory-protection-keys")


def init_v8() -> None:
    """Sets V8 up with ``V8_FLAGS``, once per process (later calls do nothing)."""
    init_mini_racer(flags=V8_FLAGS, ignore_duplicate_init=True)


# How deep objects and arrays may nest in a context, a result or a log's data. The values that
# orjson cannot write or read (deeper than 254 levels for writing) go through the ``json`` module,
# here and on the way to and from a sandbox process, and it recurses once per level (Python's
# limit: ~1,000 frames, some of them already in use). A result nested deeper fails the run as
# OUTPUT_TOO_LARGE (not retried, like any result over a limit); a context, as not serialisable.
MAX_NESTING = 500

# Evaluated once per isolate, before any user code. Leaves one script-scope binding, the runner.
_LOCKDOWN = r"""
const __tolstoy_sandbox__ = (() => {
  "use strict";
  const G = globalThis;
  const { defineProperty, freeze, getOwnPropertyDescriptor, getPrototypeOf, hasOwn, isExtensible } = Object;
  const { apply, deleteProperty, ownKeys } = Reflect;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const now = Date.now;
  const StringOf = String;
  const ErrorType = Error;
  const SyntaxErrorType = SyntaxError;
  const TypeErrorType = TypeError;
  const FunctionType = Function;
  const PromiseType = Promise;
  const promiseResolve = Promise.resolve;
  const promiseThen = Promise.prototype.then;
  const AWAIT = /\bawait\b/;
  // Code that may leave promise jobs behind when it returns: it uses the syntax that makes them...
  const ASYNC_SYNTAX = /\b(?:async|await|import)\b/;
  // ...or it reached what makes promises or compiles code (see "touched" below).
  const codeMakers = new Set([FunctionType, getPrototypeOf(function* () {}).constructor,
                              getPrototypeOf(async function () {}).constructor,
                              getPrototypeOf(async function* () {}).constructor]);
  const FRAME = /code\.js:(\d+):(\d+)/g;
  const TRAILING = /[\s;]+$/;
  const OWN_SCRIPT = /^\s*at <anonymous>:\d+:\d+$/;
  const MAX_TEXT = 4000;
  const MAX_NESTING = __MAX_NESTING__;
  // Whether JSON text nests objects/arrays deeper than MAX_NESTING (brackets in strings do not
  // count). Text of at most 2 * MAX_NESTING characters cannot, so most is not even read; the rest
  // costs ~2 ms a megabyte (strings are skipped by indexOf).
  const tooDeep = (json) => {
    const length = json.length;
    if (length <= 2 * MAX_NESTING) return false;
    let depth = 0;
    for (let i = 0; i < length; i++) {
      const c = json.charCodeAt(i);
      if (c === 34) {  // a string: on to its closing quote (one after an even number of backslashes)
        for (;;) {
          i = json.indexOf('"', i + 1);
          if (i < 0) return false;  // not JSON.stringify's text
          let escapes = i;
          while (json.charCodeAt(escapes - 1) === 92) escapes--;
          if ((i - escapes) % 2 === 0) break;
        }
      } else if (c === 123 || c === 91) {
        if (++depth > MAX_NESTING) return true;
      } else if (c === 125 || c === 93) {
        depth--;
      }
    }
    return false;
  };

  // 1. Nothing that waits, keeps time for later, shares memory or compiles native code.
  for (const name of ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "setImmediate",
                      "queueMicrotask", "__timer_manager", "SharedArrayBuffer", "WebAssembly",
                      "FinalizationRegistry"]) {
    if (hasOwn(G, name) && !deleteProperty(G, name)) defineProperty(G, name, { value: undefined, writable: false });
  }
  if (typeof Atomics === "object") {
    deleteProperty(Atomics, "wait");
    deleteProperty(Atomics, "waitAsync");
  }
  // RegExp.$1, lastMatch, input...: they would show the last match of one run to the next.
  for (const key of ownKeys(RegExp)) {
    if (typeof key === "string" && key !== "length" && key !== "name" && key !== "prototype" && key !== "escape") {
      deleteProperty(RegExp, key);
    }
  }
  // mini-racer's timer class is a script-scope binding, out of reach of the global sweep.
  const resetBindings = () => {
    try { __TimerManager = undefined; } catch (e) { /* not in this mini-racer */ }
  };
  resetBindings();

  // mini-racer runs an evaluation's promise jobs (microtasks) after it has answered. A run whose
  // code cannot have made any is answered in one evaluation; any other waits for a second one
  // (finish), which runs after the jobs, so that the run's time limit covers them and nothing the
  // code started runs on in an isolate handed back. Without async syntax in the code, the only
  // ways to a promise job are reading these globals (Promise, AsyncDisposableStack, and Function
  // and eval, which could compile such syntax), Array.fromAsync, and the constructor of a
  // function: each sets "touched" when read (tests walk every intrinsic for others).
  let touched = false;
  const touching = (value) => {
    const get = () => { touched = true; return value; };
    freeze(get);
    return get;
  };

  // 2. Logs.
  let logs = [];
  let budget = 0;
  let t0 = 0;
  const clip = (s) => (s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) + "..." : s);
  const text = (value) => {
    if (typeof value === "string") return value;
    try {
      const s = stringify(value);
      if (s !== undefined) return s;
    } catch (e) { /* not JSON */ }
    try { return StringOf(value); } catch (e) { return "[unprintable]"; }
  };
  const record = (type, message, data) => {
    if (budget <= 0) return;
    let entry = '{"type":"' + type + '","t":' + (now() - t0) + ',"message":' + stringify(message);
    if (data.length) {
      const value = data.length === 1 ? data[0] : data;
      let json;
      try { json = stringify(value); } catch (e) { json = stringify(text(value)); }
      if (json !== undefined && tooDeep(json)) json = stringify("[data nested more than " + MAX_NESTING + " levels deep]");
      if (json !== undefined) entry += ',"data":' + json;
    }
    entry += "}";
    budget -= entry.length;
    if (budget <= 0) entry = '{"type":"warn","t":' + (now() - t0) + ',"message":"log output truncated"}';
    logs.push(entry);
  };
  const logger = (type) => (message, ...data) => record(type, text(message === undefined ? "" : message), data);
  const printer = (type) => (...args) => record(type, args.map(text).join(" "), []);
  const utils = freeze({ log: logger("log"), info: logger("log"), warn: logger("warn"), error: logger("error") });
  defineProperty(G, "console", {
    value: freeze({ log: printer("log"), info: printer("log"), debug: printer("log"), trace: printer("log"),
                    dir: printer("log"), warn: printer("warn"), error: printer("error") }),
    writable: true, enumerable: false, configurable: true,
  });

  // 3. Freeze every intrinsic (SES lockdown), taming the override mistake first.
  const seen = new Set();
  const queue = [];
  const visit = (value) => {
    if (value !== G && ((typeof value === "object" && value !== null) || typeof value === "function") && !seen.has(value)) {
      seen.add(value);
      queue.push(value);
    }
  };
  for (const key of ownKeys(G)) {
    const d = getOwnPropertyDescriptor(G, key);
    visit(d.value); visit(d.get); visit(d.set);
  }
  visit(getPrototypeOf(G));
  visit(utils);
  const hidden = [function* () {}, async function () {}, async function* () {}, [][Symbol.iterator](),
                  ""[Symbol.iterator](), new Map()[Symbol.iterator](), new Set()[Symbol.iterator](),
                  /./[Symbol.matchAll]("")];
  try { hidden.push([].values().map((x) => x), Iterator.from({ next() { return { done: true }; } })); } catch (e) { /* no helpers */ }
  try { const segments = new Intl.Segmenter().segment(""); hidden.push(segments, segments[Symbol.iterator]()); } catch (e) { /* no Intl */ }
  for (const value of hidden) visit(getPrototypeOf(value));
  // Own properties holding a function constructor, seen on the way (see below).
  const makers = [];
  for (let i = 0; i < queue.length; i++) {
    const object = queue[i];
    visit(getPrototypeOf(object));
    for (const key of ownKeys(object)) {
      const d = getOwnPropertyDescriptor(object, key);
      if (d === undefined) continue;
      if ("value" in d) {
        visit(d.value);
        if (codeMakers.has(d.value)) makers.push([object, key]);
      } else {
        visit(d.get);
        visit(d.set);
      }
    }
  }
  const tame = (object, key) => {
    const d = getOwnPropertyDescriptor(object, key);
    if (d === undefined || !("value" in d) || !d.writable || !d.configurable) return;
    const value = d.value;
    const makesCode = codeMakers.has(value);
    const accessors = {
      get() { if (makesCode) touched = true; return value; },
      set(newValue) {
        if (this === object) {
          throw new TypeErrorType("Cannot assign to read only property '" + StringOf(key) + "' of a frozen built-in");
        }
        defineProperty(this, key, { value: newValue, writable: true, enumerable: true, configurable: true });
      },
    };
    freeze(accessors.get);
    freeze(accessors.set);
    defineProperty(object, key, { get: accessors.get, set: accessors.set, enumerable: d.enumerable, configurable: false });
  };
  for (const key of ownKeys(Object.prototype)) tame(Object.prototype, key);
  for (const object of queue) {
    if (typeof object !== "function") continue;
    const d = getOwnPropertyDescriptor(object, "prototype");
    const proto = d === undefined ? undefined : d.value;
    if (proto === Object.prototype || proto === null || (typeof proto !== "object" && typeof proto !== "function")) continue;
    for (const key of ["constructor", "toString", "toLocaleString", "valueOf", "toJSON", "name", "message"]) tame(proto, key);
  }
  // Any other own property holding a function constructor (GeneratorFunction.prototype's
  // "constructor" is read-only, so not tamed above) notes its reading too.
  for (const [object, key] of makers) {
    const d = getOwnPropertyDescriptor(object, key);
    if (d !== undefined && "value" in d && d.configurable && codeMakers.has(d.value)) {
      defineProperty(object, key, { get: touching(d.value), enumerable: d.enumerable, configurable: false });
    }
  }
  const fromAsync = getOwnPropertyDescriptor(Array, "fromAsync");
  if (fromAsync !== undefined && "value" in fromAsync) {
    defineProperty(Array, "fromAsync", { get: touching(fromAsync.value), enumerable: false, configurable: false });
  }
  for (const object of queue) freeze(object);
  for (const name of ["Promise", "AsyncDisposableStack", "Function", "eval"]) {
    const d = getOwnPropertyDescriptor(G, name);
    if (d !== undefined && "value" in d) {
      defineProperty(G, name, { get: touching(d.value), enumerable: d.enumerable, configurable: false });
    }
  }
  for (const key of ownKeys(G)) {
    const d = getOwnPropertyDescriptor(G, key);
    if ("value" in d ? d.writable || d.configurable : d.configurable) {
      defineProperty(G, key, "value" in d ? { writable: false, configurable: false } : { configurable: false });
    }
  }
  const baseline = new Set(ownKeys(G));
  const baseProto = getPrototypeOf(G);
  const sweep = () => {
    resetBindings();
    let clean = true;
    for (const key of ownKeys(G)) {
      if (!baseline.has(key) && !deleteProperty(G, key)) clean = false;
    }
    return clean && getPrototypeOf(G) === baseProto && isExtensible(G);
  };

  // 4. Running user code.
  const compile = (code, expression, isAsync) => {
    const body = expression ? "return (\n" + code.replace(TRAILING, "") + "\n);" : code;
    return FunctionType("variables", "stepOutputs", "meta", "utils",
      '"use strict"; return ' + (isAsync ? "async " : "") + "function (context, input) {\n" + body +
      "\n};\n//# sourceURL=code.js");
  };
  const firstLine = (expression) => {
    try {
      compile(expression ? "(() => { throw new Error(); })()" : "throw new Error();", expression, false)()();
    } catch (e) {
      FRAME.lastIndex = 0;
      const m = FRAME.exec(StringOf(e.stack));
      if (m !== null) return +m[1];
    }
    return expression ? 4 : 3;
  };
  const OFFSET = [firstLine(false) - 1, firstLine(true) - 1];
  const cleanStack = (stack, offset) => {
    const kept = [];
    for (const line of stack.split("\n")) {
      // Frames of the sandbox's own code (the runner, the tamed setters, the per-run script) go.
      if (line.includes("tolstoy-sandbox.js") || OWN_SCRIPT.test(line)) continue;
      kept.push(line.replace(FRAME, (m, l, c) => "code.js:" + (l - offset) + ":" + c));
    }
    return clip(kept.join("\n"));
  };
  const describe = (err, offset) => {
    try {
      if (err instanceof ErrorType) {
        const name = StringOf(err.name);
        const message = StringOf(err.message);
        // A plain Error is told by its message alone, any other by its name too ("TypeError: ...").
        return { message: clip(!message ? name : name === "Error" ? message : name + ": " + message),
                 stack: cleanStack(err.stack === undefined ? "" : StringOf(err.stack), offset) };
      }
      return { message: clip("Uncaught " + text(err)), stack: "" };
    } catch (e) {
      return { message: "Uncaught exception (it could not be described)", stack: "" };
    }
  };

  let busy = false;
  let state = null;
  // The last run was answered at once (settle) and swept after the last of its code ran: nothing
  // of it can have run since (it left no promise jobs), so the next run need not sweep first.
  let swept = false;
  // The outcome of a run's state: { error } or { out } (the value as JSON text; undefined: none).
  // Turning a value into JSON may run the code's own toJSON and getters.
  const collect = (s, maxOutput) => {
    if (s === null) return { error: { code: "RUNTIME_ERROR", message: "the run's state was lost", stack: "" } };
    if (s.kind === "collected") return s.outcome;
    if (s.kind === "pending") {
      return { error: { code: "RUNTIME_ERROR", stack: "",
                        message: "the code's promise never settled (the V8 sandbox has no timers or I/O to wait for)" } };
    }
    if (s.kind === "error") return { error: { code: s.code, message: s.error.message, stack: s.error.stack } };
    let out;
    try {
      out = stringify(s.value);
    } catch (err) {
      let reason;
      try { reason = err instanceof ErrorType ? StringOf(err.message) : text(err); } catch (e) { reason = "?"; }
      return { error: { code: "RUNTIME_ERROR", stack: "", message: clip("TypeError: the result is not JSON-serialisable: " + reason) } };
    }
    if (out !== undefined && out.length > maxOutput) {
      return { error: { code: "OUTPUT_TOO_LARGE", stack: "", message: "the result is larger than " + maxOutput + " bytes" } };
    }
    if (out !== undefined && tooDeep(out)) {
      return { error: { code: "OUTPUT_TOO_LARGE", stack: "", message: "the result is nested more than " + MAX_NESTING + " levels deep" } };
    }
    return { out };
  };
  const envelope = (error) => {
    const clean = sweep();
    return '{"ok":' + (error === undefined) + ',"tainted":' + !clean +
      (error === undefined ? "" : ',"error":' + stringify(error)) + ',"logs":[' + logs.join(",") + "]}";
  };
  const answer = (outcome) => {
    if (outcome.error !== undefined) return envelope(outcome.error);
    const head = envelope(undefined);
    return outcome.out === undefined ? head : head + "\n" + outcome.out;
  };
  // The run's answer now if the code cannot have left promise jobs; else "" (finish answers).
  const settle = (code, maxOutput) => {
    if (touched || ASYNC_SYNTAX.test(code)) return "";
    const outcome = collect(state, maxOutput);
    if (touched) {
      state = { kind: "collected", outcome };
      return "";
    }
    state = null;
    const text = answer(outcome);
    swept = true;
    return text;
  };
  const run = (contextJson, code, expression, maxOutput) => {
    if (busy) throw new TypeErrorType("the sandbox is busy");
    busy = true;
    try {
      state = null;
      if (!swept && !sweep()) return "T";
      swept = false;
      touched = false;
      logs = [];
      budget = Math.floor(maxOutput / 2);
      t0 = now();
      const offset = OFFSET[expression ? 1 : 0];
      const context = parse(contextJson);
      for (const key of ["variables", "stepOutputs", "meta"]) {
        if (context[key] === null || typeof context[key] !== "object") context[key] = {};
      }
      context.utils = utils;
      let factory;
      try {
        factory = compile(code, expression, false);
      } catch (err) {
        let failure = err;
        if (err instanceof SyntaxErrorType && AWAIT.test(code)) {
          try { factory = compile(code, expression, true); } catch (err2) { failure = err2; }
        }
        if (factory === undefined) {
          // The Function constructor tells no line: the adapter asks V8's parser for it.
          state = { kind: "error", code: failure instanceof SyntaxErrorType ? "SYNTAX_ERROR" : "RUNTIME_ERROR",
                    error: { message: describe(failure, offset).message, stack: "" } };
          return settle(code, maxOutput);
        }
      }
      let value;
      try {
        value = factory(context.variables, context.stepOutputs, context.meta, utils)(context, context);
        if (value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function") {
          const pending = { kind: "pending", offset };
          apply(promiseThen, apply(promiseResolve, PromiseType, [value]), [
            (v) => { pending.kind = "value"; pending.value = v; },
            (e) => { pending.kind = "error"; pending.code = "RUNTIME_ERROR"; pending.error = describe(e, offset); },
          ]);
          state = pending;
          return "";
        }
      } catch (err) {
        state = { kind: "error", code: "RUNTIME_ERROR", error: describe(err, offset) };
        return settle(code, maxOutput);
      }
      state = { kind: "value", value };
      return settle(code, maxOutput);
    } finally {
      busy = false;
    }
  };
  const finish = (maxOutput) => {
    if (busy) throw new TypeErrorType("the sandbox is busy");
    busy = true;
    try {
      const s = state;
      state = null;
      return answer(collect(s, maxOutput));
    } finally {
      busy = false;
    }
  };
  freeze(run);
  freeze(finish);
  return freeze({ run, finish });
})();
//# sourceURL=tolstoy-sandbox.js
""".replace("__MAX_NESTING__", str(MAX_NESTING))


class _Isolate:
    """One locked-down V8 isolate. Evaluates on the loop it was made for; closing blocks.

    While it waits between runs it sits in a list (``home``: a session's idle isolates or a scope's
    warm ones) with a ``watch``: the moment its last run's time limit is over, after which anything
    that run left running in it must be stopped (``V8Sandbox._watch``)."""

    __slots__ = ("_maker", "home", "racer", "scope", "watch")

    def __init__(self, maker: AbstractContextManager[MiniRacer], racer: MiniRacer) -> None:
        self._maker: AbstractContextManager[MiniRacer] | None = maker
        self.racer = racer
        self.home: list[_Isolate] | None = None
        self.scope: str | None = None
        self.watch: asyncio.TimerHandle | None = None

    def taken(self) -> _Isolate:
        """Out of its list, for a run (which will show whether it is settled): no watch."""
        self.home = None
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        return self

    async def eval(self, script: str, timeout_s: float) -> Any:
        async with asyncio.timeout(timeout_s):  # cheaper than wait_for: no task of its own
            return await self.racer.eval_cancelable(script)

    def close(self) -> None:
        """Dispose of the isolate: waits for V8 to stop (terminating any JavaScript it runs)."""
        maker, self._maker = self._maker, None
        if maker is not None:
            with contextlib.suppress(Exception):
                maker.__exit__(None, None, None)


# One isolate is made at a time in a process: two made at once on two threads can abort the whole
# process (V8's first isolate sets its memory pools up unguarded: "Check failed:
# !IsConfigurablePoolInitialized()" in partition_address_space.cc, seen with mini-racer 0.14).
_MAKING = threading.Lock()


def _open_isolate(loop: asyncio.AbstractEventLoop, memory_bytes: int) -> _Isolate:
    """Blocking: a new isolate bound to ``loop`` (which must keep running meanwhile)."""
    init_v8()
    with _MAKING:
        maker = mini_racer(event_loop=loop)
        racer = maker.__enter__()
    try:
        racer.set_hard_memory_limit(memory_bytes)
    except BaseException:
        maker.__exit__(None, None, None)
        raise
    return _Isolate(maker, racer)


def _failure(
    code: str,
    message: str,
    started: float,
    *,
    stack: str | None = None,
    logs: tuple[dict[str, Any], ...] = (),
    session_id: str | None = None,
) -> SandboxResult:
    error: dict[str, Any] = {"message": message, "code": code}
    if stack:
        error["stack"] = stack
    return SandboxResult(
        success=False,
        error=error,
        logs=logs,
        execution_ms=int((time.perf_counter() - started) * 1000),
        session_id=session_id,
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_CONTEXT_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def check_nesting(value: Any) -> None:
    """Raise ``ValueError`` when dicts, lists and tuples in ``value`` nest deeper than
    ``MAX_NESTING``. Iterative, so that depth cannot exhaust Python's stack here either; a cycle is
    not followed (the encoder that comes next names it)."""
    path: list[int] = []  # the ids of the containers from the root to the one being looked at
    on_path: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        for gone in path[depth:]:
            on_path.discard(gone)
        del path[depth:]
        if id(item) in on_path:
            continue
        if depth >= MAX_NESTING:
            raise ValueError(f"it is nested more than {MAX_NESTING} levels deep")
        path.append(id(item))
        on_path.add(id(item))
        stack.extend((child, depth + 1) for child in children)


def _context_json(context: Any) -> str:
    """The context as JSON. NaN and infinities become null, as orjson writes them in the
    child-process sandbox: JSON.parse would refuse them, which would look like a stopped isolate.
    orjson (~5x cheaper) for what it writes as the ``json`` module would; the module for the rest
    (keys that are not strings, integers beyond 64 bits, lone surrogates, nesting deeper than 254
    levels - up to ``MAX_NESTING``)."""
    try:
        return orjson.dumps(context, default=str, option=_CONTEXT_OPTIONS).decode()
    except TypeError:
        pass
    check_nesting(context)
    try:
        return json.dumps(context, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        return json.dumps(_finite(context), ensure_ascii=False, separators=(",", ":"), default=str)


def _literal(text: str) -> str:
    """``text`` as a JavaScript string literal: a JSON string (JSON is a subset of JavaScript
    since ES2019, U+2028 and U+2029 included), by orjson, or by the ``json`` module (ASCII only)
    when ``text`` has a lone surrogate, which orjson refuses."""
    try:
        return orjson.dumps(text).decode()
    except TypeError:
        return json.dumps(text)


# An integer literal that may be beyond orjson's (-2^63 .. 2^64 - 1), which it reads as a float.
_LONG_NUMBER = re.compile(r"\d{19}")


def _loads(text: str) -> Any:
    """JSON from ``JSON.stringify``: orjson, or the ``json`` module where it would read differently
    (an integer literal beyond 64 bits, as V8 writes 2 ** 64 or -9.3e18, stays an exact int) or refuses (a
    lone surrogate, written ``\\ud800``)."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def unsupported_message(language: str | None) -> str:
    return (
        f"{(language or '').strip().capitalize() or 'This'} code needs a Daytona sandbox: set SANDBOX_BACKEND=daytona "
        "(the embedded V8 sandbox runs JavaScript only)"
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Stopped(Exception):
    """The isolate stopped the run without an answer (a limit, or V8 terminating it)."""

    def __init__(self, result: SandboxResult | None) -> None:
        super().__init__("stopped")
        self.result = result  # None: stopped for no reason of the run's; worth a retry elsewhere


class V8Session:
    """The runs of one execution: isolates of its own, reused run after run, disposed of on close."""

    def __init__(self, sandbox: V8Sandbox, session_id: str, scope: str | None = None) -> None:
        self._sandbox = sandbox
        self.session_id = session_id
        self._scope = scope
        self._idle: list[_Isolate] = []
        self._closed = False

    async def run(self, run: SandboxRun) -> SandboxResult:
        started = time.perf_counter()
        if (run.language or "").strip().lower() not in LANGUAGES:
            return _failure(
                "UNSUPPORTED_LANGUAGE", unsupported_message(run.language), started, session_id=self.session_id
            )
        if self._closed or self._sandbox.closed:
            return _failure(
                "SANDBOX_UNAVAILABLE", "the V8 sandbox session is closed", started, session_id=self.session_id
            )
        timeout_ms = run.timeout_ms if run.timeout_ms > 0 else self._sandbox.default_timeout_ms
        deadline = started + timeout_ms / 1000
        try:
            context_json = _context_json(run.context)
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure(
                "RUNTIME_ERROR",
                f"the context is not JSON-serialisable: {exc}",
                started,
                session_id=self.session_id,
            )
        # Two string literals: the context travels as data and the code is compiled by the
        # Function constructor.
        script = (
            f"{_RUNNER}.run({_literal(context_json)},{_literal(run.code)},"
            f"{'true' if run.expression else 'false'},{self._sandbox.max_output_bytes})"
        )
        for attempt in range(2):
            try:
                isolate = await self._acquire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return _failure(
                    "SANDBOX_UNAVAILABLE",
                    f"the V8 sandbox could not start an isolate: {exc}",
                    started,
                    session_id=self.session_id,
                )
            try:
                outcome = await self._execute(isolate, script, run, timeout_ms, deadline, started)
            except _Stopped as stopped:
                self._release(isolate, usable=False, abandon=stopped.result is not None)
                if stopped.result is not None:
                    return stopped.result
                if attempt == 0:
                    continue  # the code is pure: running it again on a fresh isolate is safe
                return _failure(
                    "SANDBOX_UNAVAILABLE",
                    "the V8 isolate stopped the run unexpectedly",
                    started,
                    session_id=self.session_id,
                )
            except Exception as exc:  # not expected: the runner's answer could not be read
                self._release(isolate, usable=False)
                return _failure(
                    "SANDBOX_UNAVAILABLE",
                    f"the V8 sandbox failed: {exc}",
                    started,
                    session_id=self.session_id,
                )
            except BaseException:
                self._release(isolate, usable=False, abandon=True)  # cancelled mid-run: state unknown
                raise
            if outcome is None:  # a previous run left the isolate in a state it cannot clean up
                self._release(isolate, usable=False)
                continue
            result, usable = outcome
            self._release(isolate, usable=usable, settle_by=deadline)
            return result
        return _failure(
            "SANDBOX_UNAVAILABLE", "no clean V8 isolate could be had", started, session_id=self.session_id
        )

    async def _execute(
        self,
        isolate: _Isolate,
        script: str,
        run: SandboxRun,
        timeout_ms: int,
        deadline: float,
        started: float,
    ) -> tuple[SandboxResult, bool] | None:
        base_time = self._sandbox.clock.now()
        begun = await self._evaluate(isolate, script, deadline, timeout_ms, started, grace=0.0)
        if begun == "T":
            return None
        # The answer itself ("{...}") when the code cannot have left promise jobs; otherwise "",
        # and a second evaluation collects it after them (see the runner's ``settle``).
        raw = begun or await self._evaluate(
            isolate,
            f"{_RUNNER}.finish({self._sandbox.max_output_bytes})",
            deadline,
            timeout_ms,
            started,
            grace=_FINISH_GRACE_S,
        )
        if not isinstance(raw, str):
            raise _Stopped(None)
        head, newline, output_text = raw.partition("\n")
        header = _loads(head)
        usable = not header.get("tainted", True)
        logs = self._logs(header.get("logs") or (), base_time)
        if not header.get("ok"):
            error = header.get("error") or {}
            code = str(error.get("code") or "RUNTIME_ERROR")
            message = str(error.get("message") or "error")
            stack = str(error.get("stack") or "") or None
            if code == "SYNTAX_ERROR":
                located = await self._sandbox._locate_syntax_error(run.code, run.expression)
                if located is not None:
                    message, stack = located
            return (
                _failure(code, message, started, stack=stack, logs=logs, session_id=self.session_id),
                usable,
            )
        output = None
        if newline:
            limit = self._sandbox.max_output_bytes
            if len(output_text) * 4 > limit and len(output_text.encode("utf-8")) > limit:
                return (
                    _failure(
                        "OUTPUT_TOO_LARGE",
                        f"the result is larger than {limit} bytes",
                        started,
                        logs=logs,
                        session_id=self.session_id,
                    ),
                    usable,
                )
            output = _loads(output_text)
        elapsed = int((time.perf_counter() - started) * 1000)
        return (
            SandboxResult(
                success=True, output=output, logs=logs, execution_ms=elapsed, session_id=self.session_id
            ),
            usable,
        )

    async def _evaluate(
        self, isolate: _Isolate, script: str, deadline: float, timeout_ms: int, started: float, grace: float
    ) -> Any:
        memory_mb = self._sandbox.memory_mb
        over_memory = f"the code used more than the {memory_mb} MiB of memory allowed"
        try:
            return await isolate.eval(script, max(deadline - time.perf_counter(), grace, 0.001))
        except TimeoutError:
            if isolate.racer.was_hard_memory_limit_reached():
                raise _Stopped(
                    _failure("MEMORY_LIMIT", over_memory, started, session_id=self.session_id)
                ) from None
            raise _Stopped(
                _failure(
                    "TIMEOUT",
                    f"the code ran longer than {timeout_ms} ms",
                    started,
                    session_id=self.session_id,
                )
            ) from None
        except JSOOMException:
            raise _Stopped(
                _failure("MEMORY_LIMIT", over_memory, started, session_id=self.session_id)
            ) from None
        except JSEvalException:
            if isolate.racer.was_hard_memory_limit_reached():
                raise _Stopped(
                    _failure("MEMORY_LIMIT", over_memory, started, session_id=self.session_id)
                ) from None
            raise _Stopped(None) from None  # terminated, or the runner itself failed: retry elsewhere

    @staticmethod
    def _logs(raw: Any, base_time: datetime) -> tuple[dict[str, Any], ...]:
        entries = []
        for item in raw:
            entry: dict[str, Any] = {"type": item.get("type", "log"), "message": item.get("message", "")}
            if "data" in item:
                entry["data"] = item["data"]
            entry["timestamp"] = _iso(base_time + timedelta(milliseconds=item.get("t", 0)))
            entries.append(entry)
        return tuple(entries)

    async def _acquire(self) -> _Isolate:
        if self._idle:
            return self._idle.pop().taken()
        isolate = self._sandbox._warm_isolate(self._scope) or await self._sandbox._new_isolate()
        return isolate.taken()

    def _release(
        self, isolate: _Isolate, *, usable: bool, abandon: bool = False, settle_by: float | None = None
    ) -> None:
        if usable and not self._closed:
            self._idle.append(isolate)
            isolate.home, isolate.scope = self._idle, self._scope
            if settle_by is not None:
                self._sandbox._watch(isolate, settle_by)
        else:
            self._sandbox._retire(isolate, abandon=abandon)

    def close(self) -> None:
        """Hand the idle isolates back to the scope's warm set (or dispose of them); one still
        running is disposed of when its run ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for isolate in idle:
            self._sandbox._keep_warm(self._scope, isolate)


class V8Sandbox:
    """The ``Sandbox`` port on embedded V8. JavaScript only; see the module's notes for the limits."""

    name = "v8"

    def __init__(
        self,
        *,
        memory_mb: int = 64,
        default_timeout_ms: int = 30_000,
        max_output_bytes: int = 1_048_576,
        clock: Clock | None = None,
        warm_per_scope: int = 16,
        warm_max: int = 64,
    ) -> None:
        self.memory_mb = memory_mb
        self.default_timeout_ms = default_timeout_ms  # for runs that do not give a timeout of their own
        self.max_output_bytes = max_output_bytes
        self.clock: Clock = clock or SystemClock()
        self.closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[str, asyncio.Task[SandboxResult]] = {}
        self._finished: OrderedDict[str, SandboxResult] = OrderedDict()
        self._abandoned = 0
        self._abandoned_lock = threading.Lock()
        # Clean isolates kept between sessions of the same scope (tenant), never lent to another:
        # making one costs ~12 ms of CPU (~3 to make, ~8.5 to lock down), more than the steps of
        # a short execution. Each kept one holds ~3.3 MB, so at most ``warm_max`` are kept (least
        # recently used scopes go first): with more tenants running code at once than that, their
        # sessions make isolates (tests/perf/bench_engine.py --burst-tenants shows the cost).
        self._warm: OrderedDict[str, list[_Isolate]] = OrderedDict()
        self.warm_per_scope = warm_per_scope
        self.warm_max = warm_max
        self._settling: set[asyncio.Task[None]] = set()
        # Called on the event loop when an isolate given up (timeout, memory limit, cancellation)
        # has not stopped ``STUCK_AFTER_S`` later: V8 runs on in a built-in that ignores
        # termination, on a core of its own, possibly for good, and nothing but the end of the
        # process stops it. The child-process host tells its parent, which retires the process;
        # without a callback, a warning is logged.
        self.on_stuck: Callable[[], None] | None = None

    @property
    def abandoned_isolates(self) -> int:
        """Isolates given up after a timeout or cancellation and not yet disposed of (V8 still busy)."""
        return self._abandoned

    # --- isolates -----------------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="v8-sandbox")
        return self._executor

    async def _new_isolate(self) -> _Isolate:
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(self._pool(), _open_isolate, loop, self.memory_mb * 2**20)
        try:
            isolate = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(
                lambda done: None if done.cancelled() or done.exception() else self._retire(done.result())
            )
            raise
        try:
            await isolate.eval(_LOCKDOWN, _SETUP_TIMEOUT_S)
        except BaseException:
            self._retire(isolate, abandon=True)
            raise
        return isolate

    def _warm_isolate(self, scope: str | None) -> _Isolate | None:
        kept = self._warm.get(scope) if scope is not None else None
        if not kept:
            return None
        isolate = kept.pop()
        if not kept:
            del self._warm[scope]
        return isolate

    def _keep_warm(self, scope: str | None, isolate: _Isolate) -> None:
        if scope is None or self.closed:
            self._retire(isolate)
            return
        kept = self._warm.setdefault(scope, [])
        self._warm.move_to_end(scope)
        if len(kept) >= self.warm_per_scope:
            self._retire(isolate)
            return
        kept.append(isolate)
        isolate.home, isolate.scope = kept, scope
        while sum(len(v) for v in self._warm.values()) > self.warm_max:
            _, oldest = self._warm.popitem(last=False)
            for extra in oldest:
                self._retire(extra)

    # A run is answered in one evaluation when its code cannot have left promise jobs (mini-racer
    # runs them after an evaluation has answered). Should anything still run in the isolate
    # anyway, it stops at the run's time limit: an isolate not taken by another run by then is
    # taken out of its list and asked for a value; one that does not answer within the grace is
    # disposed of, which stops V8. An isolate taken before then shows it with that run's evaluation
    # (it queues behind whatever still runs and times out with it, and the isolate goes).

    def _watch(self, isolate: _Isolate, settle_by: float) -> None:
        delay = max(0.0, settle_by - time.perf_counter()) + _FINISH_GRACE_S
        isolate.watch = asyncio.get_running_loop().call_later(delay, self._check, isolate)

    def _check(self, isolate: _Isolate) -> None:
        isolate.watch = None
        home = isolate.home
        if home is None or self.closed:  # taken for a run, or gone
            return
        home.remove(isolate)
        isolate.home = None
        if not home and self._warm.get(isolate.scope or "") is home:
            del self._warm[isolate.scope or ""]
        task = asyncio.get_running_loop().create_task(self._settle(isolate))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, isolate: _Isolate) -> None:
        try:
            await isolate.eval("0", _FINISH_GRACE_S)
        except asyncio.CancelledError:  # closing
            self._retire(isolate, abandon=True)
            raise
        except Exception:
            log.warning("a V8 isolate still ran code after its last run's time limit: disposed of")
            self._retire(isolate, abandon=True)
            return
        self._keep_warm(isolate.scope, isolate)

    def _retire(self, isolate: _Isolate, *, abandon: bool = False) -> None:
        """Dispose of an isolate without waiting: in the executor when it is idle, on a daemon thread
        of its own when it may still be running (disposal then waits for V8, possibly for good)."""
        isolate.taken()
        if not abandon and self._executor is not None:
            try:
                self._executor.submit(isolate.close)
                return
            except RuntimeError:  # the executor is shut down
                pass
        disposed: threading.Event | None = None
        if abandon:
            with self._abandoned_lock:
                self._abandoned += 1
            disposed = threading.Event()
            with contextlib.suppress(RuntimeError):  # off the event loop (never so far): not watched
                asyncio.get_running_loop().call_later(STUCK_AFTER_S, self._check_stopped, disposed)
        threading.Thread(
            target=self._dispose, args=(isolate, disposed), name="v8-sandbox-dispose", daemon=True
        ).start()

    def _dispose(self, isolate: _Isolate, disposed: threading.Event | None) -> None:
        try:
            isolate.close()
        finally:
            if disposed is not None:
                with self._abandoned_lock:
                    self._abandoned -= 1
                disposed.set()

    def _check_stopped(self, disposed: threading.Event) -> None:
        """An isolate given up ``STUCK_AFTER_S`` ago: if V8 has not stopped it yet, it is stuck."""
        if disposed.is_set() or self.closed:
            return
        if self.on_stuck is not None:
            self.on_stuck()
            return
        log.warning(
            "a V8 isolate given up %g s ago still runs (a built-in that ignores termination): it may "
            "keep a CPU core busy as long as this process lives",
            STUCK_AFTER_S,
        )

    async def _locate_syntax_error(self, code: str, expression: bool) -> tuple[str, str | None] | None:
        """The message and line of a syntax error, from V8's parser (the Function constructor does not
        say where), always in the user's code. The code is parsed, never run (each script begins with
        ``throw 0``), in throw-away isolates.

        First as the runner compiles it: in strict mode, inside a function. An error found within
        the user's lines is the answer. One found in the wrapper's closing lines means that the code
        left something open (``return {a: 1``, ``if (x) {``) or closed the function itself (an extra
        ``}``): V8 then blames the wrapper's ``});``. So the code is parsed again with nothing after
        it, where whatever it left open ends at its own last line ("Unexpected end of input"). If that
        parse succeeds, the code closed the function: the brace that did is found from the function's
        source text (``Function.prototype.toString`` of the declaration, hoisted though nothing ran)."""
        kind = "async function" if re.search(r"\bawait\b", code) else "function"
        user_code = code.rstrip()
        if expression:
            user_code = user_code.rstrip(";")
        user_lines = user_code.count("\n") + 1
        head = '"use strict"; throw 0;\n'
        opening = f"{head}({kind} (context, input) {{\n" + ("return (\n" if expression else "")
        wrapped = opening + user_code + ("\n);" if expression else "") + "\n});"
        # No parenthesis around the expression here: one the code closes too many is its own error.
        probe_opening = f"{head}{kind} {_PROBE}(context, input) {{\n" + ("return 0,\n" if expression else "")
        probe = probe_opening + user_code
        loop = asyncio.get_running_loop()

        def syntax_error(isolate: _Isolate, script: str, before: str) -> tuple[int, str, str | None] | None:
            """The user's line (``before`` is what precedes the user's code in ``script``), V8's
            message and the excerpt of a syntax error in ``script``."""
            try:
                isolate.racer.eval(script, timeout_sec=_SETUP_TIMEOUT_S)
                return None  # not reached: the script throws
            except JSParseException as exc:
                report = str(exc).splitlines()
            except Exception:  # it parsed (and threw 0), or the isolate failed
                return None
            match = _SYNTAX_LOCATION.match(report[0]) if report else None
            if match is None:
                return None
            line = int(match.group(1)) - before.count("\n")
            return line, match.group(2), "\n".join(report[1:3]).rstrip() or None

        def closing_brace(isolate: _Isolate) -> tuple[int, str, str | None] | None:
            """Where the code closed the probe's function, when the probe parsed."""
            try:
                text = isolate.racer.eval(f"Function.prototype.toString.call({_PROBE})", timeout_sec=1)
            except Exception:
                return None
            if not isinstance(text, str) or not probe.startswith(text, len(head)):
                return None  # the code declared a function of that name too
            offset = len(head) + len(text) - 1 - len(probe_opening)
            if offset < 0:
                return None
            line_start = user_code.rfind("\n", 0, offset) + 1
            line_end = user_code.find("\n", offset)
            source = user_code[line_start : line_end if line_end >= 0 else len(user_code)]
            excerpt = source + "\n" + " " * (offset - line_start) + "^"
            return user_code.count("\n", 0, offset) + 1, "SyntaxError: Unexpected token '}'", excerpt

        def locate() -> tuple[int, str, str | None] | None:
            isolate = _open_isolate(loop, self.memory_mb * 2**20)
            try:
                found = syntax_error(isolate, wrapped, opening)
            finally:
                isolate.close()
            if found is None or found[0] <= user_lines:
                return found
            isolate = _open_isolate(loop, self.memory_mb * 2**20)  # the first one may hold declarations
            try:
                return syntax_error(isolate, probe, probe_opening) or closing_brace(isolate)
            finally:
                isolate.close()

        try:
            found = await loop.run_in_executor(self._pool(), locate)
        except Exception:
            return None
        if found is None:
            return None
        line, message, excerpt = found
        return f"{message} (line {max(1, min(line, user_lines))})", excerpt

    # --- the port -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, scope: str | None = None) -> AsyncIterator[V8Session]:
        session = V8Session(self, f"v8_{secrets.token_hex(8)}", scope)
        try:
            yield session
        finally:
            session.close()

    async def start(self, run: SandboxRun) -> str:
        session_id = f"v8_{secrets.token_hex(8)}"
        task = asyncio.create_task(self._background(run, session_id), name=f"sandbox {session_id}")
        self._running[session_id] = task
        task.add_done_callback(lambda done: self._finish_background(session_id, done))
        return session_id

    async def _background(self, run: SandboxRun, session_id: str) -> SandboxResult:
        async with self.session() as session:
            session.session_id = session_id
            return await session.run(run)

    def _finish_background(self, session_id: str, task: asyncio.Task[SandboxResult]) -> None:
        self._running.pop(session_id, None)
        if task.cancelled():
            result = _failure(
                "SANDBOX_UNAVAILABLE", "the run was cancelled: the worker is stopping", time.perf_counter()
            )
        elif task.exception() is not None:
            result = _failure(
                "SANDBOX_UNAVAILABLE", f"the run failed: {task.exception()}", time.perf_counter()
            )
        else:
            result = task.result()
        self._finished[session_id] = replace(result, session_id=session_id)
        while len(self._finished) > RESULTS_KEPT:
            self._finished.popitem(last=False)

    async def stop(self, session_id: str) -> None:
        task = self._running.get(session_id)
        if task is not None:
            task.cancel()  # its isolate is given up (and disposed of) as for any cancelled run
        self._finished.pop(session_id, None)

    async def poll(self, session_id: str) -> SandboxResult | None:
        if session_id in self._running:
            return None
        result = self._finished.pop(session_id, None)
        if result is None:
            return SandboxResult(
                success=False,
                error={"message": UNKNOWN_SESSION, "code": "SANDBOX_UNAVAILABLE"},
                session_id=session_id,
            )
        return result

    async def aclose(self) -> None:
        """Cancel the background runs and shut the executor down (idle isolates are disposed of first)."""
        self.closed = True
        warm, self._warm = list(self._warm.values()), OrderedDict()
        for kept in warm:
            for isolate in kept:
                self._retire(isolate)
        tasks = [*self._running.values(), *self._settling]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
