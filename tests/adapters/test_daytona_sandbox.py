"""DaytonaSandbox against a local stand-in of the Daytona API and toolbox (tests/adapters/daytona_standin.py).

The real ``daytona`` SDK does the HTTP; the stand-in runs the harnessed code on this machine
(python: this interpreter; javascript: ``node``; rust: ``rustc``). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from adapters.sandbox.daytona import DaytonaSandbox, parse_output
from application.ports import SandboxRun
from tests.adapters.daytona_standin import DaytonaStandIn

API_KEY = "dtn_test_S3CRET_key_0123456789"
CONTEXT = {
    "variables": {"n": 21, "text": 'quotes " \' ``` """ ${x} \\ \n and `); process.exit(1); //'},
    "stepOutputs": {"fetch": {"items": [1, 2, 3]}},
    "meta": {"executionId": "exec-1"},
}
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
needs_rustc = pytest.mark.skipif(shutil.which("rustc") is None, reason="rustc is not installed")


@pytest.fixture(scope="module")
def standin() -> Iterator[DaytonaStandIn]:
    server = DaytonaStandIn(API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def daytona(standin: DaytonaStandIn) -> DaytonaSandbox:
    return DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url, sync_timeout_ms=10_000)


def run(code: str, language: str = "python", **kwargs) -> SandboxRun:
    return SandboxRun(code=code, language=language, context=CONTEXT, **kwargs)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_python_run_returns_output_and_logs(daytona: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    created, deleted = len(standin.created), len(standin.deleted)
    code = (
        "print('hello', 1)\n"
        "context.utils.warn('careful', {'k': 1})\n"
        "utils.error('bad')\n"
        "return {'double': context['variables']['n'] * 2, 'text': input.variables.text,\n"
        "        'items': stepOutputs['fetch']['items'], 'meta': meta['executionId']}\n"
    )
    async with daytona.session() as session:
        result = await session.run(run(code))
        again = await session.run(run("variables['n'] > 20", expression=True))

    assert result.success, result.error
    assert result.output == {
        "double": 42,
        "text": CONTEXT["variables"]["text"],
        "items": [1, 2, 3],
        "meta": "exec-1",
    }
    assert [(e["type"], e["message"], e.get("data")) for e in result.logs] == [
        ("log", "hello 1", None),
        ("warn", "careful", {"k": 1}),
        ("error", "bad", None),
    ]
    assert all(e["timestamp"].endswith("Z") for e in result.logs)
    assert again.success and again.output is True
    # one sandbox for the session, reused by both runs, deleted on exit; ephemeral, labelled
    assert len(standin.created) == created + 1
    assert len(standin.deleted) == deleted + 1
    assert result.session_id == again.session_id == standin.deleted[-1]
    body = standin.created[-1]
    assert body["labels"]["code-toolbox-language"] == "python"
    assert body["autoDeleteInterval"] == 0


@needs_node
async def test_javascript_run(daytona: DaytonaSandbox) -> None:
    code = (
        "console.log('hi', {a: 1});\n"
        "utils.warn('w', 2);\n"
        "await new Promise((r) => setTimeout(r, 10));\n"
        "return {double: context.variables.n * 2, text: input.variables.text, items: stepOutputs.fetch.items};"
    )
    async with daytona.session() as session:
        result = await session.run(run(code, "javascript"))
        expression = await session.run(run("variables.n === 21;", "javascript", expression=True))

    assert result.success, result.error
    assert result.output == {"double": 42, "text": CONTEXT["variables"]["text"], "items": [1, 2, 3]}
    assert [(e["type"], e["message"], e.get("data")) for e in result.logs] == [
        ("log", 'hi {"a":1}', None),
        ("warn", "w", 2),
    ]
    assert expression.success and expression.output is True


@needs_node
async def test_a_session_runs_other_languages_in_its_one_sandbox(
    daytona: DaytonaSandbox, standin: DaytonaStandIn
) -> None:
    created = len(standin.created)
    async with daytona.session() as session:
        py = await session.run(run("return 1"))
        js = await session.run(run("return context.variables.n + 1", "javascript"))  # uploaded + exec
        looping = await session.run(run("while (true) {}", "javascript", timeout_ms=1_000))
    assert (py.output, js.output) == (1, 22), (py.error, js.error)
    assert looping.error["code"] == "TIMEOUT"
    assert len(standin.created) == created + 1
    assert ("POST", f"/toolbox/{js.session_id}/files/bulk-upload") in standin.requests


async def test_runtime_error_is_a_runtime_error_with_message(daytona: DaytonaSandbox) -> None:
    async with daytona.session() as session:
        result = await session.run(run("utils.log('before')\nx = {}\nreturn x['missing']"))
        syntax = await session.run(run("return 1 +"))

    assert not result.success
    assert result.error["code"] == "RUNTIME_ERROR"
    assert result.error["message"] == "KeyError: 'missing'"
    assert 'File "<code>", line 3' in result.error["stack"]
    assert [e["message"] for e in result.logs] == ["before"]  # logs survive the failure
    assert syntax.error["code"] == "SYNTAX_ERROR"
    assert "line 1" in syntax.error["message"]


@needs_node
async def test_javascript_errors(daytona: DaytonaSandbox) -> None:
    async with daytona.session() as session:
        thrown = await session.run(run("throw new TypeError('boom')", "javascript"))
        syntax = await session.run(run("return 1 +", "javascript"))
        runtime_syntax = await session.run(run("return JSON.parse('nope')", "javascript"))
    assert (thrown.error["code"], thrown.error["message"]) == ("RUNTIME_ERROR", "TypeError: boom")
    assert syntax.error["code"] == "SYNTAX_ERROR"
    assert runtime_syntax.error["code"] == "RUNTIME_ERROR"  # a SyntaxError thrown while running


async def test_timeout_is_enforced_and_the_sandbox_stays_usable(daytona: DaytonaSandbox) -> None:
    async with daytona.session() as session:
        began = time.monotonic()
        result = await session.run(run("import time\ntime.sleep(30)\nreturn 1", timeout_ms=1_000))
        took = time.monotonic() - began
        after = await session.run(run("return 'still here'"))
    assert result.error["code"] == "TIMEOUT"
    assert took < 5
    assert after.output == "still here"


async def test_the_sync_timeout_caps_the_run_timeout(standin: DaytonaStandIn) -> None:
    daytona = DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url, sync_timeout_ms=1_000)
    async with daytona.session() as session:
        result = await session.run(run("import time\ntime.sleep(30)", timeout_ms=60_000))
    assert result.error["code"] == "TIMEOUT"


async def test_output_too_large(standin: DaytonaStandIn) -> None:
    daytona = DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url, max_output_bytes=1_000)
    async with daytona.session() as session:
        result = await session.run(run("return 'x' * 5000"))
        logs = await session.run(run("for i in range(1000):\n    utils.log('line %d' % i)\nreturn 1"))
    assert result.error["code"] == "OUTPUT_TOO_LARGE"
    assert logs.success and len(logs.logs) < 20
    assert logs.logs[-1]["message"] == "log output truncated"


async def test_unsupported_language(daytona: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    created = len(standin.created)
    async with daytona.session() as session:
        result = await session.run(run("return 1", "cobol"))
    assert result.error["code"] == "UNSUPPORTED_LANGUAGE"
    assert len(standin.created) == created
    assert (await daytona.poll(await daytona.start(run("1", "cobol")))).error[
        "code"
    ] == "UNSUPPORTED_LANGUAGE"


async def test_start_poll_round_trip(daytona: DaytonaSandbox, standin: DaytonaStandIn, tmp_path) -> None:
    marker = tmp_path / "release"
    code = (
        "import os, time\n"
        f"while not os.path.exists({str(marker)!r}):\n"
        "    time.sleep(0.02)\n"
        "utils.log('done')\n"
        "return {'n': context.variables.n}"
    )
    run_id = await daytona.start(run(code))

    # another process: a fresh adapter knows nothing but the id
    poller = DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url)
    assert await poller.poll(run_id) is None
    marker.touch()
    result = None
    for _ in range(100):
        if (result := await poller.poll(run_id)) is not None:
            break
        await asyncio.sleep(0.05)

    assert result is not None and result.success, result
    assert result.output == {"n": 21}
    assert [e["message"] for e in result.logs] == ["done"]
    assert result.session_id == run_id
    assert standin.sandboxes[standin.deleted[-1]].dto["state"] == "destroyed"  # deleted once finished
    gone = await poller.poll(run_id)
    assert gone is not None and gone.error["code"] == "SANDBOX_UNAVAILABLE"


async def test_a_stopped_background_run_deletes_its_sandbox(
    daytona: DaytonaSandbox, standin: DaytonaStandIn, tmp_path
) -> None:
    code = f"import os, time\nwhile not os.path.exists({str(tmp_path / 'never')!r}):\n    time.sleep(0.02)\n"
    run_id = await daytona.start(run(code))
    deleted = len(standin.deleted)
    await DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url).stop(run_id)  # any process can
    assert len(standin.deleted) == deleted + 1
    assert standin.sandboxes[standin.deleted[-1]].dto["state"] == "destroyed"
    gone = await daytona.poll(run_id)
    assert gone is not None and gone.error["code"] == "SANDBOX_UNAVAILABLE"
    await daytona.stop("not-a-run-id")  # nothing to do


async def test_poll_times_out_after_async_timeout(standin: DaytonaStandIn) -> None:
    daytona = DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url, async_timeout_ms=300)
    run_id = await daytona.start(run("import time\ntime.sleep(30)"))
    deleted = len(standin.deleted)
    await asyncio.sleep(0.4)
    result = await daytona.poll(run_id)
    assert result is not None and result.error["code"] == "TIMEOUT"
    assert len(standin.deleted) == deleted + 1


async def test_a_sandbox_that_did_not_start_in_time_is_deleted(standin: DaytonaStandIn) -> None:
    daytona = DaytonaSandbox(api_key=API_KEY, base_url=standin.api_url, create_timeout_ms=1_000)
    standin.start_state = "starting"
    try:
        created, deleted = len(standin.created), len(standin.deleted)
        async with daytona.session("org_1") as session:
            result = await session.run(run("print(1)"))
    finally:
        standin.start_state = "started"
    assert result.error["code"] == "SANDBOX_UNAVAILABLE", result.error
    assert len(standin.created) == created + 1
    assert len(standin.deleted) == deleted + 1  # the one that never started


async def test_the_api_key_never_appears_in_errors(standin: DaytonaStandIn) -> None:
    secret = "dtn_WRONG_but_still_secret_987"
    daytona = DaytonaSandbox(api_key=secret, base_url=standin.api_url)
    async with daytona.session() as session:
        result = await session.run(run("return 1"))
    run_id = await daytona.start(run("return 1"))
    started = await daytona.poll(run_id)

    for failed in (result, started):
        assert failed is not None and not failed.success
        assert failed.error["code"] == "SANDBOX_UNAVAILABLE"
        assert "refused" in failed.error["message"]
        assert secret not in repr(failed)
    assert secret not in run_id
    # the stand-in did echo it: the adapter scrubbed it
    assert "***" in result.error["message"]


async def test_an_unreachable_api_is_sandbox_unavailable_quickly() -> None:
    daytona = DaytonaSandbox(api_key=API_KEY, base_url=f"http://127.0.0.1:{closed_port()}/api")
    began = time.monotonic()
    async with daytona.session() as session:
        result = await session.run(run("return 1"))
    run_id = await daytona.start(run("return 1"))
    polled = await daytona.poll(run_id)
    assert time.monotonic() - began < 8  # the SDK retries a refused connect twice (~1 s each way)
    assert result.error["code"] == "SANDBOX_UNAVAILABLE"
    assert polled is not None and polled.error["code"] == "SANDBOX_UNAVAILABLE"
    assert API_KEY not in repr(result) + repr(polled)


async def test_poll_rejects_a_foreign_id(daytona: DaytonaSandbox) -> None:
    result = await daytona.poll("v8:1234")
    assert result is not None and result.error["code"] == "SANDBOX_UNAVAILABLE"


@needs_rustc
async def test_rust_is_compiled_and_run(daytona: DaytonaSandbox) -> None:
    code = (
        'context.utils.log(format!("n is {}", context.variables["n"]));\n'
        'let n = context.variables["n"].as_f64().unwrap_or(0.0);\n'
        'Value::from(vec![Value::from(n * 2.0), context.variables["text"].clone()])'
    )
    async with daytona.session() as session:
        result = await session.run(run(code, "rust"))
        broken = await session.run(run("let x: i32 = ;", "rust"))
        panic = await session.run(run("let v: Vec<i32> = vec![];\nValue::from(v[3])", "rust"))
    assert result.success, result.error
    assert result.output == [42, CONTEXT["variables"]["text"]]
    assert [e["message"] for e in result.logs] == ["n is 21"]
    assert broken.error["code"] == "SYNTAX_ERROR"
    assert panic.error["code"] == "RUNTIME_ERROR" and "index out of bounds" in panic.error["message"]
    assert panic.error["stack"].startswith("at code:2:")  # the line in the user's code


def test_output_without_a_result_line() -> None:
    def parse(text: str, code: int | None, language: str = "python"):
        return parse_output(text, code, language=language, max_output_bytes=1000).error

    assert parse("Traceback...\nMemoryError", 137)["code"] == "MEMORY_LIMIT"
    assert parse("__TOLSTOY_COMPILE_FAILED__\nmain.go:3: undefined: x", 1, "go")["code"] == "SYNTAX_ERROR"
    assert parse("", 0)["code"] == "RUNTIME_ERROR"
    crashed = parse("segfault", 139)
    assert (
        crashed["code"] == "RUNTIME_ERROR" and "139" in crashed["message"] and crashed["stack"] == "segfault"
    )
    # the last result line wins; NaN becomes null
    ok = parse_output(
        '\n__TOLSTOY_RESULT__{"output": 1}\nnoise\n__TOLSTOY_RESULT__{"output": NaN, "logs": []}\n',
        0,
        language="python",
        max_output_bytes=1000,
    )
    assert ok.success and ok.output is None
