"""The V8 sandbox in child processes: the same runs as in-process, and code that makes V8 abort kills
a child (its runs in flight end SANDBOX_CRASHED), never the server."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import psutil
import pytest

from adapters.sandbox.v8 import MAX_NESTING, UNKNOWN_SESSION
from adapters.sandbox.v8_process import CRASHED_MESSAGE, ProcessV8Sandbox
from application.ports import SandboxRun

CONTEXT = {
    "variables": {"name": "john doe", "n": 3},
    "stepOutputs": {"prev": {"ok": True}},
    "meta": {"stepId": "s1"},
}
SECRET = "s3cr3t-7f1c2a9e-do-not-log"
SECRET_CONTEXT = {**CONTEXT, "variables": {"apiKey": SECRET}}
# Aborts V8, and with it the process it runs in (Runtime_StringToArray: "invalid size error").
CRASH = (
    "console.log(variables.apiKey); utils.log(variables.apiKey); return 'x'.repeat(2 ** 28).split('').length"
)
BUSY = "const t = Date.now(); while (Date.now() - t < 4000) {} return 'done'"
# A built-in that does not check for V8's termination: it would run for hours after its TIMEOUT.
STUCK = "return Array.prototype.indexOf.call({length: 2 ** 40}, 1)"


def js(code: str, context: dict[str, Any] = CONTEXT, **extra: Any) -> SandboxRun:
    return SandboxRun(code=code, language="javascript", context=context, **extra)


@pytest.fixture(scope="module")
async def sandbox():
    sandbox = ProcessV8Sandbox(memory_mb=32, default_timeout_ms=2000)
    yield sandbox
    await sandbox.aclose()


@pytest.fixture
async def fresh():
    """A sandbox of its own, for the tests that crash children."""
    sandbox = ProcessV8Sandbox(memory_mb=32, default_timeout_ms=5000)
    yield sandbox
    await sandbox.aclose()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def eventually(check, timeout_s: float = 3.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


async def test_the_child_starts_on_first_run_and_aclose_leaves_none_behind(monkeypatch) -> None:
    monkeypatch.setenv("TOLSTOY_TEST_PARENT_SECRET", "parent-only")
    sandbox = ProcessV8Sandbox(memory_mb=16)
    assert sandbox.name == "v8" and sandbox.pids == []
    async with sandbox.session("org-a") as s:
        assert sandbox.pids == []  # a session that runs no code costs no process
        assert (await s.run(js("return 1"))).output == 1
        (pid,) = sandbox.pids
        child = psutil.Process(pid)
        assert child in psutil.Process().children()
        assert "TOLSTOY_TEST_PARENT_SECRET" not in child.environ()  # the parent's env stays there
        assert (await s.run(js("return 2"))).output == 2 and sandbox.pids == [pid]  # the same child
    await sandbox.aclose()
    assert gone(pid) and sandbox.pids == []
    assert pid not in [p.pid for p in psutil.Process().children()]
    async with sandbox.session() as s:  # a closed sandbox refuses politely, starting nothing
        r = await s.run(js("return 1"))
    assert r.error["code"] == "SANDBOX_UNAVAILABLE" and sandbox.pids == []


async def test_a_session_opens_with_its_first_run_and_closes_with_the_next_request() -> None:
    """One pipe write per run: a session's open goes in the same write as its first run, and its
    close waits for the next request (or a few milliseconds) instead of a write of its own."""
    sandbox = ProcessV8Sandbox(memory_mb=16)
    try:
        async with sandbox.session("org-a") as s:
            assert (await s.run(js("return 1"))).output == 1
        child = sandbox._slots[0].child
        assert child is not None
        writes: list[bytes] = []
        real_write = child._stdin.write
        child._stdin.write = lambda data: (writes.append(data), real_write(data))[1]  # type: ignore[method-assign]
        await asyncio.sleep(0.1)  # the first session's close has gone by now
        assert len(writes) == 1 and b'"close"' in writes[0]
        writes.clear()
        async with sandbox.session("org-a") as s:
            assert (await s.run(js("return 2"))).output == 2
            assert len(writes) == 1 and b'"open"' in writes[0] and b'"run"' in writes[0]
            assert (await s.run(js("return 3"))).output == 3
        assert len(writes) == 2  # the close is held back
        async with sandbox.session("org-a") as s:
            assert (await s.run(js("return 4"))).output == 4
        assert len(writes) == 3 and [b'"close"' in writes[2], b'"open"' in writes[2]] == [True, True]
        await eventually(lambda: len(writes) == 4)  # the last close goes on its own, soon
        assert b'"close"' in writes[3] and b'"run"' not in writes[3]
        assert child.alive and sandbox.pids == [child.pid]
    finally:
        await sandbox.aclose()


async def test_outputs_logs_and_errors_are_those_of_the_v8_sandbox(sandbox: ProcessV8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(js("return input.variables.name.toUpperCase()"))
        assert (r.success, r.output, r.error) == (True, "JOHN DOE", None)
        assert r.session_id is not None and r.session_id.startswith("v8_")
        r = await s.run(
            js("return { ok: context.stepOutputs.prev.ok, step: meta.stepId, n: variables.n * 2 }")
        )
        assert r.output == {"ok": True, "step": "s1", "n": 6}
        assert (await s.run(js("return undefined"))).output is None
        r = await s.run(js("variables.n > 2 && stepOutputs.prev.ok;", expression=True))
        assert (r.success, r.output) == (True, True)
        r = await s.run(
            js(
                "context.utils.log('start', {a: 1}); utils.warn('careful'); utils.error('bad', 1, 2);"
                "console.log('x', {b: 2}, 3); return 1"
            )
        )
        assert [(e["type"], e["message"], e.get("data")) for e in r.logs] == [
            ("log", "start", {"a": 1}),
            ("warn", "careful", None),
            ("error", "bad", [1, 2]),
            ("log", 'x {"b":2} 3', None),
        ]
        assert all(e["timestamp"].endswith("Z") for e in r.logs)
        thrown = await s.run(js("const x = 1;\nthrow new TypeError('bad input ' + x)"))
        assert (thrown.error["code"], thrown.error["message"]) == ("RUNTIME_ERROR", "TypeError: bad input 1")
        assert "code.js:2:" in thrown.error["stack"]
        r = await s.run(js("const a = 1;\nconst b = ;\nreturn a"))
        assert r.error["code"] == "SYNTAX_ERROR"
        assert r.error["message"] == "SyntaxError: Unexpected token ';' (line 2)"
        r = await s.run(js("const a = 1;\nif (a) {\n"))
        assert r.error["message"] == "SyntaxError: Unexpected end of input (line 2)"
        assert (await s.run(js("return await Promise.resolve(21) * 2"))).output == 42
        big = await s.run(js("return 'x'.repeat(2000000)"))
        assert big.error["code"] == "OUTPUT_TOO_LARGE"
        r = await s.run(SandboxRun(code="pass", language="python", context=CONTEXT))
        assert r.error["code"] == "UNSUPPORTED_LANGUAGE"


async def test_what_json_cannot_carry_as_is_arrives_as_in_process(sandbox: ProcessV8Sandbox) -> None:
    tricky = {
        "variables": {1: "int key", "big": 2**70, "line": "a\u2028b", "quote": '"); x = 1; ("'},
        "stepOutputs": {},
        "meta": {"when": datetime(2030, 1, 1, tzinfo=UTC)},  # not JSON: sent as its str(), as V8Sandbox does
    }
    async with sandbox.session() as s:
        r = await s.run(
            js("return [variables['1'], String(variables.big), variables.line, meta.when]", tricky)
        )
        assert r.output == ["int key", "1.1805916207174113e+21", "a\u2028b", "2030-01-01 00:00:00+00:00"]
        r = await s.run(js("return 2 ** 64"))  # an integer beyond 64 bits comes back exactly
        assert r.output == 18446744073709552000 and isinstance(r.output, int)
        cyclic: dict[str, Any] = {"variables": {}}
        cyclic["variables"]["self"] = cyclic
        r = await s.run(js("return 1", cyclic))
        assert r.error["code"] == "RUNTIME_ERROR" and "not JSON-serialisable" in r.error["message"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_nesting_deeper_than_the_limit_fails_the_run_as_in_process(sandbox: ProcessV8Sandbox) -> None:
    """Deep values cross the pipe through the json module, which recurses: up to MAX_NESTING levels
    they arrive, deeper they fail the run with V8Sandbox's errors - never the child, nor the parent."""
    async with sandbox.session() as s:
        deep = await s.run(
            js("let o = {}; let c = o; for (let i = 0; i < 5000; i++) { c.a = {}; c = c.a } return o")
        )
        assert deep.error == {
            "message": "the result is nested more than 500 levels deep",
            "code": "OUTPUT_TOO_LARGE",
        }
        r = await s.run(js("return variables", {"variables": nested(MAX_NESTING - 1)}))
        assert r.success and r.output == nested(MAX_NESTING - 1)
        for depth in (MAX_NESTING, 700, 2000):  # refused by the parent, before any reaches the pipe
            r = await s.run(js("return 1", {"variables": nested(depth)}))
            assert r.error == {
                "message": "the context is not JSON-serialisable: it is nested more than 500 levels deep",
                "code": "RUNTIME_ERROR",
            }
        background = await sandbox.start(js("return 1", {"variables": nested(2000)}))
        polled = await sandbox.poll(background)
        assert polled is not None and polled.error is not None and polled.error["code"] == "RUNTIME_ERROR"
        assert (await s.run(js("return 2"))).output == 2


async def test_a_child_whose_isolate_v8_cannot_stop_is_retired(
    fresh: ProcessV8Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A built-in that ignores termination gets TIMEOUT but runs on in the child, on a CPU core, for
    good. The child is retired: new runs go to a new child (its sessions too), and it is killed
    once the runs in flight there - of other tenants too, background ones included - are over."""
    caplog.set_level(logging.INFO, logger="tolstoy.sandbox.v8")
    busy = BUSY.replace("4000", "3000")
    async with fresh.session("org-evil") as evil, fresh.session("org-innocent") as innocent:
        assert (await evil.run(js("return 1"))).output == 1
        (first,) = fresh.pids
        bystander = asyncio.create_task(innocent.run(js(busy)))
        background = await fresh.start(js(busy))
        await asyncio.sleep(0.1)
        stuck = await evil.run(js(STUCK, timeout_ms=100))
        assert stuck.error is not None and stuck.error["code"] == "TIMEOUT"
        await eventually(lambda: first not in fresh.pids, 5.0)  # retired within a second or so...
        assert not gone(first) and not bystander.done()  # ...but its runs in flight go on
        again = await evil.run(js("return 'elsewhere'"))  # the session goes on in a new child
        assert again.output == "elsewhere" and again.session_id == evil.session_id
        (second,) = fresh.pids
        assert second != first
        assert (await bystander).output == "done"
        await eventually(lambda: gone(first), 5.0)  # killed once they are over: its CPU is back
        polled = await fresh.poll(background)  # collected before the child went
        assert polled is not None and (polled.output, polled.session_id) == ("done", background)
        assert (await innocent.run(js("return 'back'"))).output == "back"
        assert fresh.pids == [second]
    assert "could not stop" in caplog.text and f"{first} retired" in caplog.text
    assert not fresh._crashes and "stopped (signal" not in caplog.text  # not a crash: no run refused for it
    async with fresh.session() as s:
        assert (await s.run(js("return 3"))).output == 3


async def test_limits_still_hold(sandbox: ProcessV8Sandbox) -> None:
    async with sandbox.session() as s:
        r = await s.run(js("while (true) {}", timeout_ms=200))
        assert (r.success, r.error["code"]) == (False, "TIMEOUT") and 150 <= r.execution_ms < 1500
        assert (await s.run(js("return 2"))).output == 2
        r = await s.run(
            js("const a = []; while (true) a.push({ n: a.length, s: 'x' + a.length })", timeout_ms=10_000)
        )
        assert (r.success, r.error["code"]) == (False, "MEMORY_LIMIT") and "32 MiB" in r.error["message"]
        assert (await s.run(js("return 3"))).output == 3


async def test_two_scopes_do_not_see_each_other(sandbox: ProcessV8Sandbox) -> None:
    acme = {**CONTEXT, "variables": {"token": "acme-only"}}
    async with sandbox.session("org-acme") as a, sandbox.session("org-other") as b:
        assert (await a.run(js("globalThis.stash = variables.token; return 1", acme))).success
        r = await b.run(js("return [typeof stash, JSON.stringify(variables)]", {"variables": {}}))
        assert r.output == ["undefined", "{}"]
    async with sandbox.session("org-acme") as a:  # acme's next session: cleaned isolates
        assert (await a.run(js("return typeof stash"))).output == "undefined"


async def test_overlapping_runs_and_a_cancelled_run(sandbox: ProcessV8Sandbox) -> None:
    async with sandbox.session() as s:
        slow, fast = await asyncio.gather(
            s.run(js("let x = 0; for (let i = 0; i < 3e6; i++) x += i; return 'slow'")),
            s.run(js("return 'fast'")),
        )
        assert (slow.output, fast.output) == ("slow", "fast")
        task = asyncio.create_task(s.run(js("while (true) {}", timeout_ms=10_000)))
        await asyncio.sleep(0.1)
        task.cancel()  # the child is told to stop that run
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await s.run(js("return 6"))).output == 6


async def test_background_runs(sandbox: ProcessV8Sandbox) -> None:
    session_id = await sandbox.start(
        js("let s = 0; for (let i = 0; i < 1e5; i++) s += i; return variables.n + 1")
    )
    assert session_id.startswith("v8_")
    while (result := await sandbox.poll(session_id)) is None:
        await asyncio.sleep(0.005)
    assert result.success and result.output == 4 and result.session_id == session_id
    again = await sandbox.poll(session_id)  # a result is handed out once
    assert again is not None and again.error["code"] == "SANDBOX_UNAVAILABLE"
    unknown = await sandbox.poll("v8_nope")
    assert unknown is not None and unknown.error == {
        "message": UNKNOWN_SESSION,
        "code": "SANDBOX_UNAVAILABLE",
    }
    failing = await sandbox.start(js("while (true) {}", timeout_ms=100))
    while (result := await sandbox.poll(failing)) is None:
        await asyncio.sleep(0.01)
    assert result.error["code"] == "TIMEOUT" and result.session_id == failing


async def test_a_stopped_background_run_stops_in_its_child(sandbox: ProcessV8Sandbox) -> None:
    session_id = await sandbox.start(js("while (true) {}", timeout_ms=20_000))
    await asyncio.sleep(0.2)
    child = psutil.Process(sandbox.pids[0])
    await sandbox.stop(session_id)
    await asyncio.sleep(0.3)  # cancelled there: its isolate is given up
    before = sum(child.cpu_times()[:2])
    await asyncio.sleep(1.0)
    assert sum(child.cpu_times()[:2]) - before < 0.5  # no longer a core busy with it
    gone = await sandbox.poll(session_id)
    assert gone is not None and gone.error["code"] == "SANDBOX_UNAVAILABLE"
    await sandbox.stop("v8_nope")  # unknown: nothing to do


async def test_a_crash_fails_the_runs_in_flight_and_a_new_child_takes_over(
    fresh: ProcessV8Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """One child is shared: an innocent run (of another tenant, even) that happens to be running in
    it when it crashes fails too, with SANDBOX_CRASHED - and so does its background run."""
    caplog.set_level(logging.INFO, logger="tolstoy.sandbox.v8")
    async with fresh.session("org-evil") as evil, fresh.session("org-innocent") as innocent:
        assert (await evil.run(js("return 1"))).output == 1
        (first,) = fresh.pids
        background = await fresh.start(js(BUSY, SECRET_CONTEXT))
        bystander = asyncio.create_task(innocent.run(js(BUSY, SECRET_CONTEXT)))
        await asyncio.sleep(0.2)  # both are running in the child now
        crashed = await evil.run(js(CRASH, SECRET_CONTEXT))
        assert crashed.success is False
        assert crashed.error == {"message": CRASHED_MESSAGE, "code": "SANDBOX_CRASHED"}
        assert crashed.session_id == evil.session_id
        bystanding = await bystander
        assert bystanding.error == {"message": CRASHED_MESSAGE, "code": "SANDBOX_CRASHED"}
        await eventually(lambda: gone(first))
        polled = await fresh.poll(background)
        assert polled is not None
        assert polled.error == {"message": UNKNOWN_SESSION, "code": "SANDBOX_UNAVAILABLE"}
        # The same sessions go on, in a new child.
        again = await evil.run(js("return 'back'"))
        assert (again.output, again.session_id) == ("back", evil.session_id)
        assert (await innocent.run(js("return variables.n"))).output == 3
        (second,) = fresh.pids
        assert second != first
    async with fresh.session() as s:
        assert (await s.run(js("return 2"))).output == 2
    # V8's report reached the log, and no user data with it.
    await eventually(lambda: "stopped (signal" in caplog.text)
    assert "Fatal JavaScript invalid size error" in caplog.text
    assert SECRET not in caplog.text


async def test_typed_arrays_past_the_process_memory_limit_stop_the_child(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """V8's per-run limit (32 MB here) does not count ArrayBuffers: the process limit does."""
    caplog.set_level(logging.WARNING, logger="tolstoy.sandbox.v8")
    bomb = "const kept = []; for (let i = 0; i < 12; i++) kept.push(new Uint8Array(128 * 2**20).fill(1)); return 1"
    sandbox = ProcessV8Sandbox(memory_mb=32, default_timeout_ms=20_000, process_memory_mb=600)
    try:
        async with sandbox.session("org-1") as s:
            assert (await s.run(js("return 1"))).output == 1
            (first,) = sandbox.pids
            result = await s.run(js(bomb))
            assert result.error == {"message": CRASHED_MESSAGE, "code": "SANDBOX_CRASHED"}
            assert psutil.Process().memory_info().rss < 2**30  # this process was never in danger
            await eventually(lambda: gone(first))
            assert (await s.run(js("return 'back'"))).output == "back"  # in a new child
        assert "over SANDBOX_PROCESS_MEMORY_MB (600)" in caplog.text
    finally:
        await sandbox.aclose()


async def test_processes_share_the_sessions_and_a_crash_stays_in_its_child() -> None:
    sandbox = ProcessV8Sandbox(memory_mb=32, processes=2)
    try:
        async with sandbox.session("org-a") as a, sandbox.session("org-b") as b:
            await asyncio.gather(a.run(js("return 1")), b.run(js("return 1")))
            assert len(set(sandbox.pids)) == 2  # one session per child
            elsewhere = asyncio.create_task(b.run(js(BUSY.replace("4000", "600"))))
            await asyncio.sleep(0.1)
            assert (await a.run(js(CRASH))).error["code"] == "SANDBOX_CRASHED"
            assert (await elsewhere).output == "done"  # the other child's run was not touched
            assert (await a.run(js("return 'a again'"))).output == "a again"
    finally:
        await sandbox.aclose()


async def test_a_child_crashing_again_and_again_is_not_restarted_for_a_while() -> None:
    sandbox = ProcessV8Sandbox(memory_mb=32, max_restarts=1, restart_window_s=60)
    try:
        async with sandbox.session() as s:
            for _ in range(2):
                assert (await s.run(js(CRASH))).error["code"] == "SANDBOX_CRASHED"
            refused = await s.run(js("return 1"))
            assert (
                refused.error["code"] == "SANDBOX_UNAVAILABLE"
                and "crashed 2 times" in refused.error["message"]
            )
            assert sandbox.pids == []
            background = await sandbox.start(js("return 1"))
            polled = await sandbox.poll(background)
            assert polled is not None and polled.error["code"] == "SANDBOX_UNAVAILABLE"
            sandbox.restart_window_s = 0.01  # as if the window had passed
            await asyncio.sleep(0.02)
            assert (await s.run(js("return 'again'"))).output == "again"
    finally:
        await sandbox.aclose()


async def test_a_process_memory_cap_too_small_for_the_warm_pool_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tolstoy.sandbox.v8")
    await ProcessV8Sandbox(memory_mb=64, warm_max=64, process_memory_mb=2048).aclose()
    assert "SANDBOX_PROCESS_MEMORY_MB" not in caplog.text  # the defaults fit
    await ProcessV8Sandbox(memory_mb=256, warm_max=64, process_memory_mb=2048).aclose()
    assert "SANDBOX_PROCESS_MEMORY_MB=2048 is below the ~4864 MB" in caplog.text
