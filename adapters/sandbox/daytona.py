"""Code steps in Daytona sandboxes, through the official ``daytona`` SDK (its async client).

How a run works
---------------
The user's code is a function body that ``return``s its output (or, with ``expression=True``, a
single expression). It is wrapped in a small per-language *harness* that

1. decodes the context (``variables``, ``stepOutputs``, ``meta``) from base64-encoded JSON embedded
   as a string literal - user values are never spliced into source code - and adds ``utils``
   (``log``/``warn``/``error`` record log entries ``{type, message, data?, timestamp}``);
2. runs the code as a function of ``context`` (alias ``input``);
3. prints one line ``__TOLSTOY_RESULT__{"output": ..., "logs": [...]}`` or
   ``__TOLSTOY_RESULT__{"error": {"message", "name", "stack", "phase"}, "logs": [...]}``, which
   this adapter parses out of the command output (the last such line wins; everything else the
   process prints is ignored).

Per language:

* **python** - the user code travels base64-encoded too; the harness parses it with ``ast``, makes
  it the body of a function (``async`` when it awaits), so syntax errors are told apart from
  runtime errors. ``print`` is rebound to ``utils.log``; ``context`` is a dict that also allows
  attribute access. Expressions are ``eval``-ed. ``variables``/``stepOutputs``/``meta``/``utils``
  are in scope as bare names too (``executeIf: "variables.x"``).
* **javascript** - the body (base64) becomes an ``AsyncFunction(context, input, variables,
  stepOutputs, meta, utils)``; ``console.*`` is captured as logs.
* **typescript** - same harness, but the user code is placed inline in the file (it has to go
  through the TypeScript transpiler, ``ts-node -T``); a transpile failure has no result line and
  is reported as SYNTAX_ERROR.
* **go** - the code is the body of ``func tolstoyUser(context *Context, input *Context) any``
  (``context.Variables``/``StepOutputs``/``Meta`` are ``map[string]any``,
  ``context.Utils.Log(msg, data...)``); ``errors``, ``fmt``, ``math``, ``regexp``, ``sort``,
  ``strconv``, ``strings`` and ``time`` are importable-free. Returning an ``error`` fails the
  run. Built with ``go build`` and run (``go run`` cannot tell a compile error from a program
  that exits 1); a compile error is a SYNTAX_ERROR.
* **rust** - the code is the body of ``fn tolstoy_user(context: &Context, input: &Context) ->
  Value`` where ``Value`` is a small JSON enum defined by the harness (no crates: plain
  ``rustc``); ``context.variables["x"].as_f64()``, ``Value::from(...)``,
  ``context.utils.log(...)``. Compiled with ``rustc --edition 2021``.

Python, JavaScript and TypeScript run through the SDK's ``process.code_run`` (``POST
/process/code-run``) when they match the sandbox's language; Go, Rust (and a language other
than the one the sandbox was created for) are written with ``fs.upload_files`` (``POST
/files/bulk-upload``) to ``/tmp/tolstoy-<id>/`` and run by ``process.exec`` (``POST
/process/execute``) as ``sh -c "cd <dir> && ..."``. Go and Rust need a snapshot that has the
toolchain (the default Daytona snapshot has Python and Node); pass ``snapshot=``.

Sandboxes
---------
* ``session()``: one sandbox per execution, created on the first run (with that run's language),
  reused by the runs of the session and deleted on exit.
* ``start(run)``: creates a sandbox, uploads the harness, starts it as an asynchronous command of
  a process session (``create_session`` + ``execute_session_command(run_async=True)``) and returns
  an id carrying sandbox id, session id, command id and start time, so that ``poll(id)`` works
  from another process. ``poll`` returns None while the command runs, the result once it has an
  exit code (and deletes the sandbox), and TIMEOUT (deleting the sandbox) after
  ``async_timeout_ms``. If ``start`` cannot start the run, the id it returns carries the failure
  and ``poll`` returns it (a failed run is a result, not an exception).

Sandboxes are created ephemeral (deleted as soon as they stop) with an auto-stop interval, so
one leaked by a crashed worker does not live on.

Errors
------
``SandboxResult(success=False, error={message, code, stack?})`` with code RUNTIME_ERROR,
SYNTAX_ERROR (the code did not parse/compile), TIMEOUT, MEMORY_LIMIT (killed by SIGKILL without a
result: exit code 137), OUTPUT_TOO_LARGE (result over ``max_output_bytes``; logs are truncated at
half of it), UNSUPPORTED_LANGUAGE or SANDBOX_UNAVAILABLE (API unreachable, authentication
refused, sandbox could not be created...). The API key is scrubbed from every message.

SDK settings
------------
The client is built with ``use_deprecated_polling=True``: sandbox state is read by polling
instead of a Socket.IO connection that the SDK otherwise opens to the API (and keeps for 30 s)
for every client. OpenTelemetry stays off (``otel_enabled=False``; the SDK still honours
``DAYTONA_OTEL_ENABLED=true`` from the environment or a ``.env`` file). The SDK makes no other
telemetry or analytics calls on the paths used here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from daytona import (
    AsyncDaytona,
    AsyncSandbox,
    CreateSandboxFromSnapshotParams,
    DaytonaAuthenticationError,
    DaytonaConfig,
    DaytonaForbiddenError,
    DaytonaNotFoundError,
    DaytonaTimeoutError,
    FileUpload,
    SessionExecuteRequest,
)

from application.ports import SandboxResult, SandboxRun

log = logging.getLogger("tolstoy.sandbox.daytona")

RESULT_MARK = "__TOLSTOY_RESULT__"
COMPILE_FAILED_MARK = "__TOLSTOY_COMPILE_FAILED__"
_ID_PREFIX = "daytona:"
_GRACE_S = 10.0  # on top of the run's timeout, for the HTTP round trip; the daemon enforces the timeout
_CLEANUP_TIMEOUT_S = 15.0
_MESSAGE_TAIL = 4_000
_LOG_TYPES = frozenset({"log", "warn", "error"})


# --- harnesses --------------------------------------------------------------------------------------
# Placeholders are @@NAME@@; they are filled in one pass, with base64 strings, integers and booleans
# only - except @@USER_CODE@@ (TypeScript, Go, Rust), which is the user's code itself.

_PYTHON_HARNESS = r"""import ast, asyncio, base64, datetime, json, linecache, sys, traceback

_MARK = "__TOLSTOY_RESULT__"
_MAX = @@MAX_BYTES@@
_EXPR = @@EXPRESSION@@
_OUT = sys.stdout
_logs = []
_budget = [_MAX // 2]


class _Obj(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value):
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=_lenient)
    except Exception:
        return repr(value)


def _record(kind, message, data):
    if _budget[0] <= 0:
        return
    entry = {"type": kind, "message": message, "timestamp": _now()}
    if data:
        entry["data"] = data[0] if len(data) == 1 else list(data)
    _budget[0] -= len(message) + (len(_text(entry["data"])) if "data" in entry else 0) + 64
    if _budget[0] <= 0:
        entry = {"type": "warn", "message": "log output truncated", "timestamp": _now()}
    _logs.append(entry)


def _logger(kind):
    def log(message="", *data):
        _record(kind, _text(message), data)

    return log


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    if file is not None and file is not sys.stdout:
        print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    _record("log", (sep if sep is not None else " ").join(str(a) for a in args), ())


def _jsonable(value):
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if type(value).__name__ == "Decimal":
        return float(value)
    raise TypeError("%s is not JSON-serialisable" % type(value).__name__)


def _lenient(value):
    try:
        return _jsonable(value)
    except TypeError:
        return str(value)


def _emit(payload):
    try:
        text = json.dumps(payload, default=_lenient)
    except Exception as exc:
        text = json.dumps({"error": {"message": "result is not JSON-serialisable: %s" % exc, "name": "TypeError"}, "logs": _logs}, default=str)
    _OUT.write("\n" + _MARK + text + "\n")
    _OUT.flush()


def _failure(exc, phase):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<code>"]
    stack = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
    name = type(exc).__name__
    message = "%s: %s" % (name, exc) if str(exc) else name
    if isinstance(exc, SyntaxError):
        message = "%s: %s (line %s)" % (name, exc.msg, exc.lineno)
    return {"error": {"message": message, "name": name, "stack": stack, "phase": phase}, "logs": _logs}


def _main():
    ctx = json.loads(base64.b64decode("@@CONTEXT_B64@@").decode("utf-8"), object_hook=_Obj)
    utils = _Obj(log=_logger("log"), info=_logger("log"), warn=_logger("warn"), error=_logger("error"))
    ctx["utils"] = utils
    for key in ("variables", "stepOutputs", "meta"):
        if not isinstance(ctx.get(key), dict):
            ctx[key] = _Obj()
    src = base64.b64decode("@@CODE_B64@@").decode("utf-8")
    linecache.cache["<code>"] = (len(src), None, src.splitlines(True), "<code>")
    scope = {"__name__": "__tolstoy__", "__builtins__": __builtins__, "print": _print, "context": ctx,
             "input": ctx, "variables": ctx["variables"], "stepOutputs": ctx["stepOutputs"],
             "meta": ctx["meta"], "utils": utils}
    is_async = False
    try:
        if _EXPR:
            code = compile(ast.parse(src.strip(), "<code>", "eval"), "<code>", "eval")
        else:
            tree = ast.parse(src, "<code>", "exec")
            is_async = any(isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith)) for n in ast.walk(tree))
            shell = ast.parse(("async " if is_async else "") + "def __tolstoy_user__():\n    pass\n")
            shell.body[0].body = tree.body or [ast.Pass()]
            code = compile(ast.fix_missing_locations(shell), "<code>", "exec")
    except SyntaxError as exc:
        return _failure(exc, "compile")
    try:
        if _EXPR:
            result = eval(code, scope)
        else:
            exec(code, scope)
            fn = scope["__tolstoy_user__"]
            result = asyncio.run(fn()) if is_async else fn()
    except BaseException as exc:
        return _failure(exc, "run")
    try:
        size = len(json.dumps(result, default=_jsonable).encode("utf-8"))
    except Exception as exc:
        return _failure(exc, "run")
    if size > _MAX:
        return {"error": {"message": "output is %d bytes, more than the %d allowed" % (size, _MAX), "name": "RangeError", "code": "OUTPUT_TOO_LARGE"}, "logs": _logs}
    return {"output": result, "logs": _logs}


_emit(_main())
"""

_JS_HARNESS = r"""(function () {
  const MARK = "__TOLSTOY_RESULT__";
  const MAX = @@MAX_BYTES@@;
  const EXPR = @@EXPRESSION@@;
  const decode = (b64) => Buffer.from(b64, "base64").toString("utf8");
  const logs = [];
  let budget = Math.floor(MAX / 2);
  let done = false;
  const text = (value) => {
    if (typeof value === "string") return value;
    try {
      const s = JSON.stringify(value);
      return s === undefined ? String(value) : s;
    } catch (e) {
      return String(value);
    }
  };
  const record = (type, message, data) => {
    if (budget <= 0) return;
    const entry = { type: type, message: message, timestamp: new Date().toISOString() };
    if (data.length) entry.data = data.length === 1 ? data[0] : data;
    budget -= message.length + (entry.data === undefined ? 0 : text(entry.data).length) + 64;
    logs.push(budget > 0 ? entry : { type: "warn", message: "log output truncated", timestamp: entry.timestamp });
  };
  const logger = (type) => (message, ...data) => record(type, text(message === undefined ? "" : message), data);
  const consoleLogger = (type) => (...args) => record(type, args.map(text).join(" "), []);
  const utils = { log: logger("log"), info: logger("log"), warn: logger("warn"), error: logger("error") };
  console.log = consoleLogger("log");
  console.info = consoleLogger("log");
  console.debug = consoleLogger("log");
  console.warn = consoleLogger("warn");
  console.error = consoleLogger("error");
  const emit = (payload) => {
    if (done) return;
    done = true;
    let line;
    try {
      line = JSON.stringify(payload);
    } catch (e) {
      line = JSON.stringify({ error: { message: "result is not JSON-serialisable: " + text(e && e.message), name: "TypeError" }, logs: logs });
    }
    process.stdout.write("\n" + MARK + line + "\n", () => process.exit(0));
  };
  const userStack = (err, phase) => {
    const lines = String(err.stack || "").split("\n");
    if (phase === "compile") return lines[0];
    const user = lines.slice(1).filter((l) => l.includes("<anonymous>:"));
    return user.length ? [lines[0]].concat(user).join("\n") : lines.join("\n");
  };
  const failure = (err, phase) => {
    const isError = err instanceof Error;
    const name = isError ? err.name : "Error";
    const message = isError ? name + ": " + err.message : "Uncaught " + text(err);
    return { error: { message: message, name: name, stack: isError ? userStack(err, phase) : "", phase: phase }, logs: logs };
  };
  process.on("uncaughtException", (err) => emit(failure(err, "run")));
  process.on("unhandledRejection", (err) => emit(failure(err, "run")));
  const ctx = JSON.parse(decode("@@CONTEXT_B64@@"));
  for (const key of ["variables", "stepOutputs", "meta"]) {
    if (ctx[key] === null || typeof ctx[key] !== "object") ctx[key] = {};
  }
  ctx.utils = utils;
  const finish = (value) => {
    let size;
    try {
      const s = JSON.stringify(value === undefined ? null : value);
      size = Buffer.byteLength(s === undefined ? "null" : s, "utf8");
    } catch (e) {
      emit(failure(new TypeError("result is not JSON-serialisable: " + e.message), "run"));
      return;
    }
    if (size > MAX) {
      emit({ error: { message: "output is " + size + " bytes, more than the " + MAX + " allowed", name: "RangeError", code: "OUTPUT_TOO_LARGE" }, logs: logs });
      return;
    }
    emit({ output: value === undefined ? null : value, logs: logs });
  };
  let fn;
@@DEFINE_USER_FUNCTION@@
  Promise.resolve()
    .then(() => fn(ctx, ctx, ctx.variables, ctx.stepOutputs, ctx.meta, utils))
    .then(finish, (err) => emit(failure(err, "run")));
})();
"""

_JS_DYNAMIC_FUNCTION = r"""  try {
    const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
    const src = decode("@@CODE_B64@@");
    const body = EXPR ? "return (\n" + src.trim().replace(/;+$/, "") + "\n);" : src;
    fn = new AsyncFunction("context", "input", "variables", "stepOutputs", "meta", "utils", body);
  } catch (err) {
    emit(failure(err, "compile"));
    return;
  }"""

_TS_INLINE_FUNCTION = r"""  fn = async function (context: any, input: any, variables: any, stepOutputs: any, meta: any, utils: any): Promise<any> {
@@USER_CODE@@
  };"""

_TS_CONFIG = b'{"compilerOptions": {"module": "CommonJS", "target": "ES2020"}}\n'

_GO_HARNESS = r"""package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Packages the code may use without importing them itself.
var (
	_ = errors.New
	_ = math.Abs
	_ = regexp.MustCompile
	_ = sort.Strings
	_ = strconv.Itoa
	_ = strings.TrimSpace
)

const tolstoyMark = "__TOLSTOY_RESULT__"
const tolstoyMax = @@MAX_BYTES@@

// Utils is context.Utils: Log, Warn and Error record log entries.
type Utils struct {
	logs   []map[string]any
	budget int
}

func (u *Utils) record(kind string, message string, data []any) {
	if u.budget <= 0 {
		return
	}
	entry := map[string]any{"type": kind, "message": message, "timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
	u.budget -= len(message) + 64
	if len(data) == 1 {
		entry["data"] = data[0]
	} else if len(data) > 1 {
		entry["data"] = data
	}
	if d, ok := entry["data"]; ok {
		if b, err := json.Marshal(d); err == nil {
			u.budget -= len(b)
		} else {
			entry["data"] = fmt.Sprint(d)
		}
	}
	if u.budget <= 0 {
		entry = map[string]any{"type": "warn", "message": "log output truncated", "timestamp": entry["timestamp"]}
	}
	u.logs = append(u.logs, entry)
}

func (u *Utils) Log(message any, data ...any)   { u.record("log", tolstoyText(message), data) }
func (u *Utils) Warn(message any, data ...any)  { u.record("warn", tolstoyText(message), data) }
func (u *Utils) Error(message any, data ...any) { u.record("error", tolstoyText(message), data) }

func tolstoyText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// Context is what the code sees as context (and input).
type Context struct {
	Variables   map[string]any `json:"variables"`
	StepOutputs map[string]any `json:"stepOutputs"`
	Meta        map[string]any `json:"meta"`
	Utils       *Utils         `json:"-"`
}

func tolstoyUser(context *Context, input *Context) any {
//line code:1
@@USER_CODE@@
}

func tolstoyEmit(payload map[string]any) {
	b, err := json.Marshal(payload)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"error": map[string]any{"message": "result is not JSON-serialisable: " + err.Error(), "name": "TypeError"}})
	}
	os.Stdout.WriteString("\n" + tolstoyMark + string(b) + "\n")
}

func tolstoyFailure(message string, name string, stack string, logs []map[string]any) map[string]any {
	return map[string]any{"error": map[string]any{"message": message, "name": name, "stack": stack}, "logs": logs}
}

func tolstoyRun(ctx *Context) (payload map[string]any) {
	defer func() {
		if r := recover(); r != nil {
			payload = tolstoyFailure(fmt.Sprintf("panic: %v", r), "panic", string(debug.Stack()), ctx.Utils.logs)
		}
	}()
	result := tolstoyUser(ctx, ctx)
	if err, ok := result.(error); ok {
		return tolstoyFailure(err.Error(), "error", "", ctx.Utils.logs)
	}
	out, err := json.Marshal(result)
	if err != nil {
		return tolstoyFailure("result is not JSON-serialisable: "+err.Error(), "TypeError", "", ctx.Utils.logs)
	}
	if len(out) > tolstoyMax {
		failure := tolstoyFailure(fmt.Sprintf("output is %d bytes, more than the %d allowed", len(out), tolstoyMax), "RangeError", "", ctx.Utils.logs)
		failure["error"].(map[string]any)["code"] = "OUTPUT_TOO_LARGE"
		return failure
	}
	return map[string]any{"output": json.RawMessage(out), "logs": ctx.Utils.logs}
}

func main() {
	ctx := &Context{}
	raw, _ := base64.StdEncoding.DecodeString("@@CONTEXT_B64@@")
	if err := json.Unmarshal(raw, ctx); err != nil {
		tolstoyEmit(tolstoyFailure("context is not valid JSON: "+err.Error(), "Error", "", nil))
		return
	}
	ctx.Utils = &Utils{budget: tolstoyMax / 2}
	if ctx.Variables == nil {
		ctx.Variables = map[string]any{}
	}
	if ctx.StepOutputs == nil {
		ctx.StepOutputs = map[string]any{}
	}
	if ctx.Meta == nil {
		ctx.Meta = map[string]any{}
	}
	tolstoyEmit(tolstoyRun(ctx))
}
"""

_RUST_HARNESS = r"""#![allow(warnings)]
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

const TOLSTOY_MARK: &str = "__TOLSTOY_RESULT__";
const TOLSTOY_MAX: usize = @@MAX_BYTES@@;
const TOLSTOY_FIRST_LINE: u32 = @@USER_FIRST_LINE@@;

/// A JSON value: what `context` holds and what the code returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

static NULL: Value = Value::Null;

impl Value {
    pub fn is_null(&self) -> bool { matches!(self, Value::Null) }
    pub fn as_bool(&self) -> Option<bool> { if let Value::Bool(b) = self { Some(*b) } else { None } }
    pub fn as_f64(&self) -> Option<f64> { if let Value::Number(n) = self { Some(*n) } else { None } }
    pub fn as_i64(&self) -> Option<i64> { self.as_f64().map(|n| n as i64) }
    pub fn as_str(&self) -> Option<&str> { if let Value::String(s) = self { Some(s) } else { None } }
    pub fn as_array(&self) -> Option<&Vec<Value>> { if let Value::Array(a) = self { Some(a) } else { None } }
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> { if let Value::Object(o) = self { Some(o) } else { None } }
    pub fn get(&self, key: &str) -> Option<&Value> { self.as_object().and_then(|o| o.get(key)) }
    pub fn to_json(&self) -> String { let mut out = String::new(); tolstoy_write(self, &mut out); out }
}

impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value { self.get(key).unwrap_or(&NULL) }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value { self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL) }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self { Value::String(s) => f.write_str(s), other => f.write_str(&other.to_json()) }
    }
}

impl From<bool> for Value { fn from(v: bool) -> Self { Value::Bool(v) } }
impl From<f64> for Value { fn from(v: f64) -> Self { Value::Number(v) } }
impl From<f32> for Value { fn from(v: f32) -> Self { Value::Number(v as f64) } }
impl From<i32> for Value { fn from(v: i32) -> Self { Value::Number(v as f64) } }
impl From<i64> for Value { fn from(v: i64) -> Self { Value::Number(v as f64) } }
impl From<u32> for Value { fn from(v: u32) -> Self { Value::Number(v as f64) } }
impl From<u64> for Value { fn from(v: u64) -> Self { Value::Number(v as f64) } }
impl From<usize> for Value { fn from(v: usize) -> Self { Value::Number(v as f64) } }
impl From<&str> for Value { fn from(v: &str) -> Self { Value::String(v.to_string()) } }
impl From<String> for Value { fn from(v: String) -> Self { Value::String(v) } }
impl From<&Value> for Value { fn from(v: &Value) -> Self { v.clone() } }
impl From<()> for Value { fn from(_: ()) -> Self { Value::Null } }
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self { Value::Array(v.into_iter().map(Into::into).collect()) }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self { v.map(Into::into).unwrap_or(Value::Null) }
}
impl<T: Into<Value>> From<BTreeMap<String, T>> for Value {
    fn from(v: BTreeMap<String, T>) -> Self { Value::Object(v.into_iter().map(|(k, x)| (k, x.into())).collect()) }
}

fn tolstoy_write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => { let _ = write!(out, "\\u{:04x}", c as u32); }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn tolstoy_write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if !n.is_finite() { out.push_str("null"); }
            else if n.fract() == 0.0 && n.abs() < 1e15 { let _ = write!(out, "{}", *n as i64); }
            else { let _ = write!(out, "{}", n); }
        }
        Value::String(s) => tolstoy_write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() { if i > 0 { out.push(','); } tolstoy_write(item, out); }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 { out.push(','); }
                tolstoy_write_str(k, out);
                out.push(':');
                tolstoy_write(item, out);
            }
            out.push('}');
        }
    }
}

struct TolstoyParser<'a> { s: &'a [u8], i: usize }

impl<'a> TolstoyParser<'a> {
    fn ws(&mut self) { while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() { self.i += 1; } }
    fn peek(&self) -> u8 { if self.i < self.s.len() { self.s[self.i] } else { 0 } }
    fn lit(&mut self, word: &str, v: Value) -> Value { self.i += word.len(); v }
    fn value(&mut self) -> Value {
        self.ws();
        match self.peek() {
            b'n' => self.lit("null", Value::Null),
            b't' => self.lit("true", Value::Bool(true)),
            b'f' => self.lit("false", Value::Bool(false)),
            b'"' => Value::String(self.string()),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == b']' { self.i += 1; break; }
                    items.push(self.value());
                    self.ws();
                    if self.peek() == b',' { self.i += 1; }
                }
                Value::Array(items)
            }
            b'{' => {
                self.i += 1;
                let mut map = BTreeMap::new();
                loop {
                    self.ws();
                    if self.peek() == b'}' { self.i += 1; break; }
                    let key = self.string();
                    self.ws();
                    self.i += 1; // ':'
                    let v = self.value();
                    map.insert(key, v);
                    self.ws();
                    if self.peek() == b',' { self.i += 1; }
                }
                Value::Object(map)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) { self.i += 1; }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
                Value::Number(text.parse().unwrap_or(0.0))
            }
        }
    }
    fn hex4(&mut self) -> u32 {
        let text = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap_or("0");
        self.i += 4;
        u32::from_str_radix(text, 16).unwrap_or(0xfffd)
    }
    fn string(&mut self) -> String {
        self.i += 1; // opening quote
        let mut out = String::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let mut code = self.hex4();
                            if (0xd800..0xdc00).contains(&code) && self.s.get(self.i) == Some(&b'\\') {
                                self.i += 2;
                                let low = self.hex4();
                                code = 0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other as char),
                    }
                }
                _ => {
                    // copy one UTF-8 sequence as is
                    let start = self.i - 1;
                    let mut end = self.i;
                    while end < self.s.len() && (self.s[end] & 0xc0) == 0x80 { end += 1; }
                    out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap_or("\u{fffd}"));
                    self.i = end;
                }
            }
        }
        out
    }
}

fn tolstoy_b64(input: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 { bits -= 8; out.push((buf >> bits) as u8); buf &= (1 << bits) - 1; }
    }
    out
}

fn tolstoy_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, ms) = (d.as_secs() as i64, d.subsec_millis());
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil-from-days (Howard Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, ms)
}

/// `context.utils`: log, warn and error record log entries.
pub struct Utils { logs: RefCell<Vec<Value>>, budget: RefCell<i64> }

impl Utils {
    fn record(&self, kind: &str, message: &str, data: Option<Value>) {
        let mut budget = self.budget.borrow_mut();
        if *budget <= 0 { return; }
        let mut entry = BTreeMap::new();
        entry.insert("type".to_string(), Value::from(kind));
        entry.insert("message".to_string(), Value::from(message));
        entry.insert("timestamp".to_string(), Value::from(tolstoy_now()));
        *budget -= message.len() as i64 + 64;
        if let Some(d) = data { *budget -= d.to_json().len() as i64; entry.insert("data".to_string(), d); }
        if *budget <= 0 {
            entry.insert("type".to_string(), Value::from("warn"));
            entry.insert("message".to_string(), Value::from("log output truncated"));
            entry.remove("data");
        }
        self.logs.borrow_mut().push(Value::Object(entry));
    }
    pub fn log<M: std::fmt::Display>(&self, message: M) { self.record("log", &message.to_string(), None) }
    pub fn warn<M: std::fmt::Display>(&self, message: M) { self.record("warn", &message.to_string(), None) }
    pub fn error<M: std::fmt::Display>(&self, message: M) { self.record("error", &message.to_string(), None) }
    pub fn log_data<M: std::fmt::Display, D: Into<Value>>(&self, message: M, data: D) { self.record("log", &message.to_string(), Some(data.into())) }
}

/// What the code sees as `context` (and `input`).
pub struct Context { pub variables: Value, pub step_outputs: Value, pub meta: Value, pub utils: Utils }

#[allow(unused_variables, unreachable_code, unused_mut)]
fn tolstoy_user(context: &Context, input: &Context) -> Value {
@@USER_CODE@@
}

fn tolstoy_emit(payload: Value) {
    let line = format!("\n{}{}\n", TOLSTOY_MARK, payload.to_json());
    let mut out = std::io::stdout();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn tolstoy_error(message: String, name: &str, stack: String, code: Option<&str>, logs: Value) -> Value {
    let mut err = BTreeMap::new();
    err.insert("message".to_string(), Value::from(message));
    err.insert("name".to_string(), Value::from(name));
    err.insert("stack".to_string(), Value::from(stack));
    if let Some(c) = code { err.insert("code".to_string(), Value::from(c)); }
    let mut payload = BTreeMap::new();
    payload.insert("error".to_string(), Value::Object(err));
    payload.insert("logs".to_string(), logs);
    Value::Object(payload)
}

fn main() {
    let raw = tolstoy_b64("@@CONTEXT_B64@@");
    let parsed = TolstoyParser { s: &raw, i: 0 }.value();
    let field = |k: &str| match parsed.get(k) { Some(v @ Value::Object(_)) => v.clone(), _ => Value::Object(BTreeMap::new()) };
    let ctx = Context {
        variables: field("variables"),
        step_outputs: field("stepOutputs"),
        meta: field("meta"),
        utils: Utils { logs: RefCell::new(Vec::new()), budget: RefCell::new((TOLSTOY_MAX / 2) as i64) },
    };
    let panic_message: std::sync::Arc<std::sync::Mutex<(String, String)>> = Default::default();
    let sink = panic_message.clone();
    std::panic::set_hook(Box::new(move |info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() { s.to_string() }
            else if let Some(s) = info.payload().downcast_ref::<String>() { s.clone() }
            else { "panic".to_string() };
        let at = info.location().map(|l| {
            if l.file() == "main.rs" && l.line() >= TOLSTOY_FIRST_LINE {
                format!("at code:{}:{}", l.line() - TOLSTOY_FIRST_LINE + 1, l.column())
            } else {
                format!("at {}:{}:{}", l.file(), l.line(), l.column())
            }
        }).unwrap_or_default();
        if let Ok(mut slot) = sink.lock() { *slot = (msg, at); }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tolstoy_user(&ctx, &ctx)));
    let logs = Value::Array(ctx.utils.logs.borrow().clone());
    let payload = match outcome {
        Ok(value) => {
            let size = value.to_json().len();
            if size > TOLSTOY_MAX {
                tolstoy_error(format!("output is {} bytes, more than the {} allowed", size, TOLSTOY_MAX), "RangeError", String::new(), Some("OUTPUT_TOO_LARGE"), logs)
            } else {
                let mut payload = BTreeMap::new();
                payload.insert("output".to_string(), value);
                payload.insert("logs".to_string(), logs);
                Value::Object(payload)
            }
        }
        Err(_) => {
            let (msg, at) = panic_message.lock().map(|s| s.clone()).unwrap_or_default();
            tolstoy_error(format!("panic: {}", msg), "panic", at, None, logs)
        }
    };
    tolstoy_emit(payload);
}
"""

_PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Language:
    name: str
    native: str | None  # the language of Daytona's code_run, if it has it
    filename: str
    command: str  # run in the work directory by sh -c; no double quotes in it


_BUILD_FAILED = f"{{ echo {COMPILE_FAILED_MARK}; cat build.log; exit 1; }}"
LANGUAGES: dict[str, _Language] = {
    "python": _Language("python", "python", "main.py", "python3 -u main.py"),
    "javascript": _Language("javascript", "javascript", "main.js", "node main.js"),
    "typescript": _Language(
        "typescript",
        "typescript",
        "main.ts",
        "npm_config_loglevel=error npx ts-node -T --ignore-diagnostics 5107 main.ts",
    ),
    "go": _Language(
        "go", None, "main.go", f"go build -o main main.go > build.log 2>&1 || {_BUILD_FAILED}; exec ./main"
    ),
    "rust": _Language(
        "rust",
        None,
        "main.rs",
        f"rustc --edition 2021 -o main main.rs > build.log 2>&1 || {_BUILD_FAILED}; exec ./main",
    ),
}


def build_program(language: str, run: SandboxRun, max_output_bytes: int) -> str:
    """The harness source for ``run`` in ``language`` (a key of LANGUAGES)."""
    context = {k: v for k, v in (run.context or {}).items() if k != "utils"}
    values = {
        "CONTEXT_B64": _b64(json.dumps(context, ensure_ascii=True, separators=(",", ":"), default=str)),
        "CODE_B64": _b64(run.code),
        "MAX_BYTES": str(int(max_output_bytes)),
        "USER_CODE": run.code,
    }
    if language == "python":
        return _fill(_PYTHON_HARNESS, values | {"EXPRESSION": "True" if run.expression else "False"})
    if language in ("javascript", "typescript"):
        if language == "typescript":
            body = f"return (\n{run.code.strip().rstrip(';')}\n);" if run.expression else run.code
            definition = _TS_INLINE_FUNCTION
            values["USER_CODE"] = body
        else:
            definition = _JS_DYNAMIC_FUNCTION
        template = _JS_HARNESS.replace("@@DEFINE_USER_FUNCTION@@", definition)
        return _fill(template, values | {"EXPRESSION": "true" if run.expression else "false"})
    if language == "go":
        body = f"return {run.code.strip()}" if run.expression else run.code
        return _fill(_GO_HARNESS, values | {"USER_CODE": body})
    if language == "rust":
        body = f"Value::from(\n{run.code.strip().rstrip(';')}\n)" if run.expression else run.code
        first_line = _RUST_HARNESS[: _RUST_HARNESS.index("@@USER_CODE@@")].count("\n") + 1
        if run.expression:
            first_line += 1
        return _fill(_RUST_HARNESS, values | {"USER_CODE": body, "USER_FIRST_LINE": str(first_line)})
    raise ValueError(f"no harness for {language!r}")


# --- results ----------------------------------------------------------------------------------------


def _failure(code: str, message: str, *, stack: str | None = None, ms: int = 0, logs=(), session_id=None):
    error: dict[str, Any] = {"message": message, "code": code}
    if stack:
        error["stack"] = stack
    return SandboxResult(success=False, error=error, logs=tuple(logs), execution_ms=ms, session_id=session_id)


def _tail(text: str, limit: int = _MESSAGE_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _logs(raw: Any) -> tuple[dict[str, Any], ...]:
    entries = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        entry = {
            "type": kind if kind in _LOG_TYPES else "log",
            "message": str(item.get("message", "")),
            "timestamp": str(item.get("timestamp", "")),
        }
        if "data" in item:
            entry["data"] = item["data"]
        entries.append(entry)
    return tuple(entries)


def parse_output(
    text: str, exit_code: int | None, *, language: str, max_output_bytes: int, ms: int = 0
) -> SandboxResult:
    """The result of a finished harness run, from its (combined) output and exit code."""
    at = text.rfind("\n" + RESULT_MARK)
    if at < 0:
        if COMPILE_FAILED_MARK in text:
            build_log = text.split(COMPILE_FAILED_MARK, 1)[1]
            return _failure("SYNTAX_ERROR", f"{language} compilation failed", stack=_tail(build_log), ms=ms)
        if language == "typescript" and ("TSError" in text or "error TS" in text):
            return _failure("SYNTAX_ERROR", "typescript compilation failed", stack=_tail(text), ms=ms)
        if exit_code in (137, -9):
            return _failure(
                "MEMORY_LIMIT", "the process was killed (SIGKILL), most likely out of memory", ms=ms
            )
        if exit_code == 0:
            message = "the code ended the process before returning a result"
        else:
            message = f"the process exited with code {exit_code} before returning a result"
        return _failure("RUNTIME_ERROR", message, stack=_tail(text) or None, ms=ms)
    start = at + 1 + len(RESULT_MARK)
    end = text.find("\n", start)
    payload = text[start:] if end < 0 else text[start:end]
    if len(payload) > 2 * max_output_bytes + 65_536:
        return _failure("OUTPUT_TOO_LARGE", f"the result is more than {max_output_bytes} bytes", ms=ms)
    try:
        data = json.loads(payload, parse_constant=lambda _: None)
    except ValueError:
        return _failure("RUNTIME_ERROR", "the code printed a malformed result line", ms=ms)
    if not isinstance(data, dict):
        return _failure("RUNTIME_ERROR", "the code printed a malformed result line", ms=ms)
    logs = _logs(data.get("logs"))
    error = data.get("error")
    if error is not None:
        error = error if isinstance(error, dict) else {"message": str(error)}
        code = error.get("code")
        if code not in ("OUTPUT_TOO_LARGE",):
            code = "SYNTAX_ERROR" if error.get("phase") == "compile" else "RUNTIME_ERROR"
        return _failure(
            code, str(error.get("message") or "error"), stack=error.get("stack") or None, ms=ms, logs=logs
        )
    return SandboxResult(success=True, output=data.get("output"), logs=logs, execution_ms=ms)


# --- the adapter ------------------------------------------------------------------------------------


class _Unavailable(Exception):
    """Daytona could not be used (message already scrubbed of the API key)."""


def _is_timeout(exc: BaseException) -> bool:
    return (
        isinstance(exc, TimeoutError | DaytonaTimeoutError)
        or getattr(exc, "status", None) in (408, 504)
        or getattr(exc, "status_code", None) in (408, 504)
    )


def _work_dir() -> str:
    return f"/tmp/tolstoy-{uuid.uuid4().hex}"  # noqa: S108 - a path inside the sandbox


def _shell(work_dir: str, language: _Language) -> str:
    return f'sh -c "cd {work_dir} && {language.command}"'


def _files(work_dir: str, language: _Language, program: str) -> list[FileUpload]:
    files = [FileUpload(program.encode("utf-8"), f"{work_dir}/{language.filename}")]
    if language.name == "typescript":
        files.append(FileUpload(_TS_CONFIG, f"{work_dir}/tsconfig.json"))
    return files


def _encode_id(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return _ID_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_id(session_id: str) -> dict[str, Any] | None:
    if not session_id.startswith(_ID_PREFIX):
        return None
    token = session_id[len(_ID_PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        return None
    return data if isinstance(data, dict) else None


class DaytonaSandbox:
    """The ``Sandbox`` port on Daytona (see the module docstring)."""

    name = "daytona"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        sync_timeout_ms: int = 30_000,
        async_timeout_ms: int = 300_000,
        max_output_bytes: int = 1_048_576,
        snapshot: str | None = None,
        create_timeout_ms: int = 60_000,
    ) -> None:
        self._api_key = api_key or ""
        self._base_url = base_url
        self.sync_timeout_ms = sync_timeout_ms
        self.async_timeout_ms = async_timeout_ms
        self.max_output_bytes = max_output_bytes
        self._snapshot = snapshot
        self._create_timeout_s = max(1.0, create_timeout_ms / 1000)

    # -- plumbing --

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _unavailable(self, what: str, exc: BaseException) -> _Unavailable:
        detail = self._scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, DaytonaAuthenticationError | DaytonaForbiddenError):
            detail = f"the API key was refused ({detail})"
        return _Unavailable(f"Daytona is unavailable: {what}: {detail}")

    def _client(self) -> AsyncDaytona:
        if not self._api_key:
            raise _Unavailable("Daytona is unavailable: no API key is configured")
        if not self._base_url:
            raise _Unavailable("Daytona is unavailable: no base URL is configured")
        config = DaytonaConfig(
            api_key=self._api_key,
            api_url=self._base_url,
            use_deprecated_polling=True,
            otel_enabled=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # polling mode is "deprecated"
            try:
                return AsyncDaytona(config)
            except Exception as exc:
                raise self._unavailable("cannot configure the client", exc) from None

    async def _close(self, client: AsyncDaytona | None) -> None:
        if client is None:
            return
        try:
            await asyncio.wait_for(client.close(), _CLEANUP_TIMEOUT_S)
        except Exception as exc:
            log.warning("closing the Daytona client failed: %s", self._scrub(str(exc)))

    async def _create(self, client: AsyncDaytona, language: _Language) -> AsyncSandbox:
        params = CreateSandboxFromSnapshotParams(
            language=language.native or "python",
            snapshot=self._snapshot,
            ephemeral=True,
            auto_stop_interval=max(15, math.ceil(self.async_timeout_ms / 60_000) + 5),
            labels={"app": "tolstoy"},
        )
        try:
            async with asyncio.timeout(self._create_timeout_s + _GRACE_S):
                return await client.create(params, timeout=self._create_timeout_s)
        except Exception as exc:
            # The SDK names a sandbox it created but that did not start in time (it may still be
            # starting): ours to delete, or it would live on until its auto-stop.
            created = getattr(exc, "sandbox_id", None)
            if isinstance(created, str) and created:
                await self._delete_by_id(client, created)
            raise self._unavailable("cannot create a sandbox", exc) from None

    async def _delete_by_id(self, client: AsyncDaytona, sandbox_id: str) -> None:
        try:
            sandbox = await asyncio.wait_for(client.get(sandbox_id), _CLEANUP_TIMEOUT_S)
        except Exception as exc:
            log.warning(
                "finding Daytona sandbox %s to delete it failed: %s", sandbox_id, self._scrub(str(exc))
            )
            return
        await self._delete(sandbox)

    async def _delete(self, sandbox: AsyncSandbox) -> None:
        try:
            await asyncio.wait_for(sandbox.delete(timeout=_CLEANUP_TIMEOUT_S), _CLEANUP_TIMEOUT_S + 1)
        except Exception as exc:
            log.warning("deleting Daytona sandbox %s failed: %s", sandbox.id, self._scrub(str(exc)))

    async def _execute(
        self, sandbox: AsyncSandbox, sandbox_language: str, language: _Language, run: SandboxRun
    ) -> SandboxResult:
        timeout_s = max(0.001, min(run.timeout_ms, self.sync_timeout_ms) / 1000)
        program = build_program(language.name, run, self.max_output_bytes)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s + _GRACE_S):
                if language.native is not None and language.native == sandbox_language:
                    response = await sandbox.process.code_run(program, timeout=math.ceil(timeout_s))
                else:
                    work_dir = _work_dir()
                    await sandbox.fs.upload_files(_files(work_dir, language, program))
                    response = await sandbox.process.exec(
                        _shell(work_dir, language), timeout=math.ceil(timeout_s)
                    )
        except Exception as exc:
            ms = int((time.monotonic() - started) * 1000)
            if _is_timeout(exc):
                return _failure("TIMEOUT", f"the code ran longer than {int(timeout_s * 1000)} ms", ms=ms)
            return _failure(
                "SANDBOX_UNAVAILABLE", str(self._unavailable("running the code failed", exc)), ms=ms
            )
        ms = int((time.monotonic() - started) * 1000)
        return parse_output(
            response.result or "",
            response.exit_code,
            language=language.name,
            max_output_bytes=self.max_output_bytes,
            ms=ms,
        )

    # -- the port --

    @asynccontextmanager
    async def session(self, scope: str | None = None) -> AsyncIterator[DaytonaSession]:
        session = DaytonaSession(self)
        try:
            yield session
        finally:
            await session.close()

    async def start(self, run: SandboxRun) -> str:
        language = LANGUAGES.get(run.language)
        if language is None:
            return _encode_id(
                {"err": {"code": "UNSUPPORTED_LANGUAGE", "message": _unsupported(run.language)}}
            )
        started_ms = int(time.time() * 1000)
        client: AsyncDaytona | None = None
        sandbox: AsyncSandbox | None = None
        try:
            client = self._client()
            sandbox = await self._create(client, language)
            work_dir = _work_dir()
            process_session = f"tolstoy-{uuid.uuid4().hex}"
            try:
                async with asyncio.timeout(self._create_timeout_s):
                    program = build_program(language.name, run, self.max_output_bytes)
                    await sandbox.fs.upload_files(_files(work_dir, language, program))
                    await sandbox.process.create_session(process_session)
                    command = await sandbox.process.execute_session_command(
                        process_session,
                        SessionExecuteRequest(command=_shell(work_dir, language), run_async=True),
                    )
            except Exception as exc:
                raise self._unavailable("cannot start the code", exc) from None
            ref = {"sb": sandbox.id, "ss": process_session, "cmd": command.cmd_id, "t": started_ms}
            sandbox = None  # it now belongs to the run; poll deletes it
            return _encode_id(ref | {"lang": language.name})
        except _Unavailable as exc:
            return _encode_id({"err": {"code": "SANDBOX_UNAVAILABLE", "message": str(exc)}})
        finally:
            if sandbox is not None:
                await self._delete(sandbox)
            await self._close(client)

    async def poll(self, session_id: str) -> SandboxResult | None:
        ref = _decode_id(session_id)
        if ref is None:
            return _failure("SANDBOX_UNAVAILABLE", "not the id of a Daytona run", session_id=session_id)
        if "err" in ref:
            err = ref["err"] if isinstance(ref["err"], dict) else {}
            return _failure(
                str(err.get("code") or "SANDBOX_UNAVAILABLE"),
                str(err.get("message") or "the run could not be started"),
                session_id=session_id,
            )
        client: AsyncDaytona | None = None
        try:
            client = self._client()
            result = await self._poll(client, ref)
        except _Unavailable as exc:
            result = _failure("SANDBOX_UNAVAILABLE", str(exc))
        finally:
            await self._close(client)
        return None if result is None else replace(result, session_id=session_id)

    async def stop(self, session_id: str) -> None:
        """Delete the run's sandbox now rather than at its auto-stop (Daytona bills it meanwhile)."""
        ref = _decode_id(session_id)
        if ref is None or "err" in ref or not ref.get("sb"):
            return
        client: AsyncDaytona | None = None
        try:
            client = self._client()
            await self._delete_by_id(client, str(ref["sb"]))
        except _Unavailable:
            pass
        finally:
            await self._close(client)

    async def _poll(self, client: AsyncDaytona, ref: dict[str, Any]) -> SandboxResult | None:
        elapsed_ms = max(0, int(time.time() * 1000) - int(ref.get("t", 0)))
        overdue = elapsed_ms > self.async_timeout_ms
        session, command_id = str(ref.get("ss")), str(ref.get("cmd"))
        sandbox: AsyncSandbox | None = None
        try:
            async with asyncio.timeout(self._create_timeout_s):
                sandbox = await client.get(str(ref.get("sb")))
                command = await sandbox.process.get_session_command(session, command_id)
                if command.exit_code is None:
                    if not overdue:
                        return None
                    await self._delete(sandbox)
                    return _failure(
                        "TIMEOUT", f"the code ran longer than {self.async_timeout_ms} ms", ms=elapsed_ms
                    )
                logs = await sandbox.process.get_session_command_logs(session, command_id)
        except Exception as exc:
            gone = isinstance(exc, DaytonaNotFoundError)
            if not (gone or overdue or isinstance(exc, DaytonaAuthenticationError | DaytonaForbiddenError)):
                # A passing failure (network, 5xx): the next poll tries again, until async_timeout_ms.
                log.warning("polling a Daytona run failed, will retry: %s", self._scrub(str(exc)))
                return None
            if sandbox is not None:
                await self._delete(sandbox)
            elif not gone and ref.get("sb"):  # overdue but not reached: one more try, or it lives on
                await self._delete_by_id(client, str(ref["sb"]))
            message = (
                "Daytona is unavailable: the sandbox or command of this run no longer exists"
                if gone
                else str(self._unavailable("cannot read the run", exc))
            )
            return _failure("SANDBOX_UNAVAILABLE", message, ms=elapsed_ms)
        stdout = logs.stdout or ""
        text = stdout if "\n" + RESULT_MARK in stdout else (logs.output or stdout)
        await self._delete(sandbox)
        return parse_output(
            text,
            command.exit_code,
            language=str(ref.get("lang", "")),
            max_output_bytes=self.max_output_bytes,
            ms=elapsed_ms,
        )


def _unsupported(language: str) -> str:
    return (
        f"language {language!r} is not supported by the Daytona sandbox (use one of {', '.join(LANGUAGES)})"
    )


class DaytonaSession:
    """The runs of one execution: one sandbox, created by the first run, deleted by ``close``."""

    def __init__(self, owner: DaytonaSandbox) -> None:
        self._owner = owner
        self._lock = asyncio.Lock()
        self._client: AsyncDaytona | None = None
        self._sandbox: AsyncSandbox | None = None
        self._sandbox_language = ""
        self._closed = False

    async def _ensure(self, language: _Language) -> AsyncSandbox:
        async with self._lock:
            if self._closed:
                raise _Unavailable("Daytona is unavailable: the session is closed")
            if self._sandbox is None:
                if self._client is None:
                    self._client = self._owner._client()
                self._sandbox = await self._owner._create(self._client, language)
                self._sandbox_language = language.native or "python"
            return self._sandbox

    async def run(self, run: SandboxRun) -> SandboxResult:
        language = LANGUAGES.get(run.language)
        if language is None:
            return _failure("UNSUPPORTED_LANGUAGE", _unsupported(run.language))
        try:
            sandbox = await self._ensure(language)
        except _Unavailable as exc:
            return _failure("SANDBOX_UNAVAILABLE", str(exc))
        result = await self._owner._execute(sandbox, self._sandbox_language, language, run)
        return replace(result, session_id=sandbox.id)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            sandbox, client = self._sandbox, self._client
            self._sandbox = self._client = None
        if sandbox is not None:
            await self._owner._delete(sandbox)
        await self._owner._close(client)
