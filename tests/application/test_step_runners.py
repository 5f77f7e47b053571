"""The step runners on their own (no engine): what a step sends, and how each failure is classed
(its code, and whether the retry policy applies to it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.regex import compile_pattern
from application.engine.steps import StepContext, StepFailed, StepRunners, js_truthy
from application.execute_action import ExecuteAction
from application.ports import OutboundRequest, OutboundResponse, SandboxResult
from domain.egress import EgressRefused
from domain.errors import DomainError, Unavailable, UpstreamTimeout, UpstreamUnreachable
from domain.flow_definition import parse_definition
from tests.fakes.http import FakeHttpClient
from tests.fakes.memory import MemoryUnitOfWorkFactory
from tests.fakes.sandbox import FakeSandbox

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Metrics:
    def __getattr__(self, name: str):
        return lambda *args: None


class NoSecrets:
    async def get(self, org_id: str, tool_id: str) -> None:
        return None


class Refusing(FakeHttpClient):
    """Raises ``error`` instead of answering (after recording the request)."""

    def __init__(self, error: DomainError | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.error, self.delay = error, delay

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        self.sent.append(request)
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return OutboundResponse(200, {"content-type": "application/json"}, b"{}", request.url)


def runners(http: FakeHttpClient, sandbox: FakeSandbox | None = None, default_ms: int = 5_000) -> StepRunners:
    actions = ExecuteAction(MemoryUnitOfWorkFactory(), Clock(), NoSecrets(), http, compile_pattern, Metrics())
    return StepRunners(http, actions, sandbox or FakeSandbox(), default_ms)


def context(
    step: dict[str, Any], variables: dict[str, Any] | None = None, sandbox: Any = None
) -> StepContext:
    definition = parse_definition([step])
    return StepContext(
        org_id="org_1",
        user_id=None,
        flow_id="flow_1",
        execution_id="exec_1_abcdefgh",
        step=definition.steps[0],
        attempt=1,
        variables=variables or {},
        step_outputs={},
        sandbox=sandbox,
        timestamp="2026-01-01T00:00:00Z",
    )


def http_step(**config: Any) -> dict[str, Any]:
    return {"id": "call", "type": "http_request", "config": {"url": "http://api.test/x", **config}}


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (UpstreamTimeout("no answer in 1 s"), "TIMEOUT", True),
        (UpstreamUnreachable("connection refused"), "UPSTREAM_UNREACHABLE", True),
        (Unavailable("busy"), "UNAVAILABLE", True),
        (EgressRefused("127.0.0.1 is a loopback address"), "EGRESS_REFUSED", False),
    ],
)
async def test_a_call_that_got_no_answer_is_classed_by_why(error, code, retryable) -> None:
    with pytest.raises(StepFailed) as failed:
        await runners(Refusing(error)).run(context(http_step()))
    assert (failed.value.code, failed.value.retryable) == (code, retryable)
    assert failed.value.message.startswith(error.message)


async def test_an_unknown_action_fails_its_step_for_good() -> None:
    step = {"id": "act", "type": "action", "config": {"actionKey": "no-such-action"}}
    with pytest.raises(StepFailed) as failed:
        await runners(Refusing()).run(context(step))
    assert failed.value.code == "NOT_FOUND" and failed.value.retryable is False
    assert "no-such-action" in failed.value.message


async def test_the_idempotency_key_is_not_sent_twice_whatever_the_case_of_the_users_header() -> None:
    http = Refusing()
    await runners(http).run(context(http_step(headers={"idempotency-key": "mine"})))
    await runners(http).run(context(http_step(method="POST", body={"a": 1}, headers={"content-type": "x/y"})))
    first, second = (request.headers for request in http.sent)
    assert first == {"idempotency-key": "mine"}
    assert second == {"content-type": "x/y", "Idempotency-Key": "exec_1_abcdefgh:call"}


@pytest.mark.parametrize(
    ("config", "variables", "field"),
    [
        ({"url": "{{variables.port}}"}, {"port": 8080}, "config.url"),
        ({"url": "{{variables.where}}"}, {"where": {"host": "x"}}, "config.url"),
        ({"headers": {"X-Name": "{{variables.name}}"}}, {"name": "José"}, "config.headers.X-Name"),
        ({"headers": {"X-Name": "{{variables.name}}"}}, {"name": "a\r\nX-Evil: 1"}, "config.headers.X-Name"),
        ({"headers": {"bad name": "v"}}, {}, "config.headers.bad name"),
    ],
)
async def test_values_that_cannot_go_on_the_wire_fail_the_step_for_good(config, variables, field) -> None:
    http = Refusing()
    with pytest.raises(StepFailed) as failed:
        await runners(http).run(context(http_step(**config), variables))
    assert failed.value.retryable is False and failed.value.message.startswith(field), failed.value.message
    assert "José" not in failed.value.message and "Evil" not in failed.value.message  # no values
    assert http.sent == []


async def test_an_http_steps_own_timeout_may_be_longer_than_the_default() -> None:
    http = Refusing(delay=1.3)  # the step's limit has a second's grace over the call's timeout
    fast = runners(http, default_ms=100)
    assert (await fast.run(context(http_step(timeout=2_000))))["status"] == 200
    assert http.sent[-1].timeout == 2.0
    with pytest.raises(StepFailed) as failed:  # without one, the default bounds the step
        await fast.run(context(http_step()))
    assert failed.value.code == "TIMEOUT"
    quick = Refusing()
    step = {**http_step(timeout=2_000), "timeout": 150}  # the step's timeout bounds its call too
    await runners(quick).run(context(step))
    assert quick.sent[-1].timeout == 0.15


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        (True, True),
        (-1, True),
        ("false", True),
        ("0", True),
        ([], True),
        ({}, True),
        ([0], True),
    ],
)
async def test_conditions_are_true_or_false_as_in_javascript(value, truthy) -> None:
    assert js_truthy(value) is truthy
    sandbox = FakeSandbox()
    sandbox.define("expr", lambda c: value)
    run = runners(Refusing(), sandbox)
    async with sandbox.session() as session:
        step = {"id": "if", "type": "conditional", "config": {"condition": "expr"}}
        assert await run.run(context(step, sandbox=session)) == {"result": truthy}
        assert await run.condition("expr", context(step, sandbox=session)) is truthy


async def test_an_execute_if_the_sandbox_failed_to_evaluate_is_retried_one_that_failed_is_not() -> None:
    class Failing(FakeSandbox):
        def __init__(self, code: str) -> None:
            super().__init__()
            self.code = code

        async def _run(self, run: Any) -> Any:
            return SandboxResult(False, error={"message": "it went", "code": self.code})

    for code, expected, retryable in (
        ("SANDBOX_CRASHED", "SANDBOX_CRASHED", True),
        ("SANDBOX_UNAVAILABLE", "SANDBOX_UNAVAILABLE", True),
        ("RUNTIME_ERROR", "EXECUTE_IF_ERROR", False),
        ("TIMEOUT", "EXECUTE_IF_ERROR", False),
    ):
        sandbox = Failing(code)
        async with sandbox.session() as session:
            with pytest.raises(StepFailed) as failed:
                await runners(Refusing(), sandbox).condition("x", context(http_step(), sandbox=session))
        assert (failed.value.code, failed.value.retryable) == (expected, retryable)
        assert failed.value.message == "executeIf failed: it went"


async def test_query_parameters_are_encoded_and_added_to_the_url() -> None:
    http = Refusing()
    step = http_step(
        url="http://api.test/search?page=2#top",
        query={"q": "{{variables.q}}", "tag": ["a b", "c"], "n": "{{variables.n}}", "gone": None},
    )
    await runners(http).run(context(step, {"q": "a&b=c#frag", "n": 3}))
    assert http.sent[-1].url == "http://api.test/search?page=2&q=a%26b%3Dc%23frag&tag=a+b&tag=c&n=3#top"
    await runners(http).run(context(http_step(query={"q": "x"})))
    assert http.sent[-1].url == "http://api.test/x?q=x"


async def test_a_background_run_nobody_waits_for_any_more_is_stopped() -> None:
    sandbox = FakeSandbox()

    async def forever(c: dict) -> None:
        await asyncio.sleep(60)

    sandbox.define("forever", forever)
    step = {
        "id": "bg",
        "type": "sandbox_async",
        "config": {"code": "forever", "language": "javascript", "maxPollAttempts": 2, "pollInterval": 100},
    }
    run = runners(Refusing(), sandbox)
    with pytest.raises(StepFailed) as failed:  # its polls are used up
        await run.run(context(step))
    assert failed.value.code == "TIMEOUT" and len(sandbox.stopped) == 1
    task = asyncio.create_task(run.run(context(step)))  # the execution is cancelled meanwhile
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sandbox.stopped) == 2 and sandbox.stopped[0] != sandbox.stopped[1]


async def test_a_malformed_url_with_query_parameters_fails_the_step_for_good() -> None:
    http = Refusing()
    step = http_step(url="http://[::1{{variables.rest}}", query={"q": "x"})
    with pytest.raises(StepFailed) as failed:
        await runners(http).run(context(step, {"rest": "/x"}))
    assert (failed.value.code, failed.value.retryable) == ("INVALID_URL", False) and http.sent == []
