"""The embedded V8 sandbox: limits, isolation between runs and between sessions, no I/O, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.sandbox.v8 import V8Sandbox
from application.ports import SandboxRun
from domain.code_language import detect_language, resolve_language

CONTEXT = {
    "variables": {"name": "john doe", "n": 3},
    "stepOutputs": {"prev": {"ok": True}},
    "meta": {"stepId": "s1"},
}


@pytest.fixture(scope="module")
async def sandbox():
    sandbox = V8Sandbox(memory_mb=32, default_timeout_ms=2000)
    yield sandbox
    await sandbox.aclose()


def js(code: str, context: dict[str, Any] = CONTEXT, **extra: Any) -> SandboxRun:
    return SandboxRun(code=code, language="javascript", context=context, **extra)


async def test_return_value_and_the_seed_context(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(js("return input.variables.name.toUpperCase()"))
        assert (r.success, r.output) == (True, "JOHN DOE")
        r = await s.run(
            js("return { ok: context.stepOutputs.prev.ok, step: meta.stepId, n: variables.n * 2 }")
        )
        assert r.output == {"ok": True, "step": "s1", "n": 6}
        r = await s.run(js("variables.n > 2 && stepOutputs.prev.ok", expression=True))
        assert r.output is True
        assert (await s.run(js("return undefined"))).output is None


async def test_logs_are_captured(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(
            js("context.utils.log('start', {a: 1}); utils.warn('careful'); console.error('bad'); return 1")
        )
    assert [(entry["type"], entry["message"], entry["data"]) for entry in r.logs] == [
        ("log", "start", {"a": 1}),
        ("warn", "careful", None),
        ("error", "bad", None),
    ]
    assert all(entry["timestamp"].endswith("Z") for entry in r.logs)


async def test_an_infinite_loop_is_stopped_and_the_session_goes_on(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(js("while (true) {}", timeout_ms=200))
        assert (r.success, r.error["code"]) == (False, "TIMEOUT") and 150 <= r.execution_ms < 2000
        assert (await s.run(js("return 2"))).output == 2


async def test_a_memory_bomb_is_stopped_and_the_session_goes_on(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(
            js("const a = []; while (true) { a.push(new Array(100000).fill(1)) }", timeout_ms=10_000)
        )
        assert (r.success, r.error["code"]) == (False, "MEMORY_LIMIT")
        assert (await s.run(js("return 3"))).output == 3


@pytest.mark.parametrize(
    "code",
    [
        "return typeof require",
        "return typeof process",
        "return typeof fetch",
        "return typeof XMLHttpRequest",
        "return typeof WebSocket",
        "return typeof setTimeout",
        "return typeof WebAssembly",
        "return typeof Deno + typeof Bun",
    ],
)
async def test_no_io_is_available(sandbox: V8Sandbox, code: str) -> None:
    async with sandbox.session() as s:
        r = await s.run(js(code))
    assert r.success and "function" not in r.output and "object" not in r.output


async def test_dynamic_import_is_refused(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(js("return import('fs')"))
    assert not r.success and r.error["code"] == "RUNTIME_ERROR"


async def test_nothing_leaks_from_one_run_to_the_next(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        assert (await s.run(js("globalThis.secret = variables.name; return 1"))).success
        assert (await s.run(js("return typeof secret"))).output == "undefined"
        polluted = await s.run(js("Array.prototype.evil = 1; Object.prototype.x = 2; return 1"))
        assert not polluted.success and "not extensible" in polluted.error["message"]
        assert (await s.run(js("return [[].evil, ({}).x]"))).output == [None, None]
        assert (await s.run(js("JSON.parse = () => 1; return 1"))).success is False


async def test_two_sessions_cannot_see_each_other(sandbox: V8Sandbox) -> None:
    acme = {**CONTEXT, "variables": {"token": "acme-only"}}
    async with sandbox.session() as a, sandbox.session() as b:
        assert (await a.run(js("globalThis.stash = variables.token; return 1", acme))).success
        r = await b.run(js("return [typeof stash, JSON.stringify(variables)]", {**CONTEXT, "variables": {}}))
    assert r.output == ["undefined", "{}"]


async def test_errors_carry_message_code_and_stack(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        thrown = await s.run(js("const x = 1;\nthrow new TypeError('bad input ' + x)"))
        assert thrown.error["code"] == "RUNTIME_ERROR" and thrown.error["message"] == "TypeError: bad input 1"
        assert "at " in thrown.error["stack"]
        syntax = await s.run(js("return ("))
        assert syntax.error["code"] == "SYNTAX_ERROR" and "SyntaxError" in syntax.error["message"]
        big = await s.run(js("return 'x'.repeat(2000000)"))
        assert big.error["code"] == "OUTPUT_TOO_LARGE"
        cyclic = await s.run(js("const a = {}; a.a = a; return a"))
        assert cyclic.error["code"] == "RUNTIME_ERROR" and "not JSON" in cyclic.error["message"]


async def test_a_thrown_error_never_echoes_the_context(sandbox: V8Sandbox) -> None:
    secret = {**CONTEXT, "variables": {"apiKey": "sk-live-do-not-show"}}
    async with sandbox.session() as s:
        r = await s.run(js("null.boom", secret))
    assert "sk-live" not in str(r.error)


async def test_other_languages_need_daytona(sandbox: V8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(SandboxRun(code="def f(): pass", language="python", context=CONTEXT))
    assert r.error["code"] == "UNSUPPORTED_LANGUAGE" and "SANDBOX_BACKEND=daytona" in r.error["message"]


async def test_background_runs(sandbox: V8Sandbox) -> None:
    session_id = await sandbox.start(js("return variables.n + 1"))
    for _ in range(200):
        result = await sandbox.poll(session_id)
        if result is not None:
            break
        await asyncio.sleep(0.01)
    assert result.success and result.output == 4 and result.session_id == session_id
    unknown = await sandbox.poll("v8_nope")
    assert unknown.error["code"] == "SANDBOX_UNAVAILABLE"


@pytest.mark.parametrize(
    ("code", "language"),
    [
        ("return input.name.toUpperCase()", "javascript"),
        ("const users = context.variables.users; return users.length", "javascript"),
        ("def process(data):\n    print(data)\n    return {'ok': True}", "python"),
        ("import json\nresult = json.dumps({})", "python"),
        ("package main\nfunc main() { fmt.Println(1) }", "go"),
        ('fn main() { let mut x = 1; println!("{}", x); }', "rust"),
        ("", "javascript"),
    ],
)
def test_language_detection(code: str, language: str) -> None:
    assert detect_language(code) == language
    assert resolve_language("python", code) == "python"
    assert resolve_language(None, code) == language
