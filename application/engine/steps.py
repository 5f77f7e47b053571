"""What each step type does. A runner gets the step and the execution's context and returns the
step's output, or raises StepFailed (``retryable`` says whether the retry policy applies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from application.execute_action import SAFE_HEADERS, ExecuteAction, decode_body
from application.ports import HttpClient, OutboundRequest, Sandbox, SandboxResult, SandboxRun, SandboxSession
from application.tenancy import TenantContext
from domain import rules, templates
from domain.code_language import resolve_language
from domain.errors import DomainError, Unavailable, UpstreamTimeout, UpstreamUnreachable
from domain.flow_definition import StepDefinition
from domain.rules import Problems
from domain.tool import header_problems, with_default_header

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_NOT_RETRYABLE_SANDBOX = frozenset({"SYNTAX_ERROR", "UNSUPPORTED_LANGUAGE", "OUTPUT_TOO_LARGE"})
_SANDBOX_FAILURES = frozenset({"SANDBOX_UNAVAILABLE", "SANDBOX_CRASHED"})  # not the code's doing
POLL_INTERVAL_MS = 1000
MAX_POLL_ATTEMPTS = 300


class StepFailed(Exception):
    def __init__(self, message: str, code: str, *, retryable: bool = True, stack: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.retryable, self.stack = message, code, retryable, stack

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.stack:
            error["stack"] = self.stack
        return error


@dataclass(slots=True)
class StepContext:
    org_id: str
    user_id: str | None
    flow_id: str
    execution_id: str
    step: StepDefinition
    attempt: int
    variables: dict[str, Any]
    step_outputs: dict[str, Any]
    sandbox: SandboxSession
    timestamp: str
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.step.id}"

    def template_values(self) -> dict[str, Any]:
        steps = {k: {"output": v} for k, v in self.step_outputs.items()}
        return {"variables": self.variables, "inputs": self.variables, "steps": steps}

    def sandbox_context(self) -> dict[str, Any]:
        return {
            "variables": self.variables,
            "stepOutputs": self.step_outputs,
            "meta": {
                "orgId": self.org_id,
                "userId": self.user_id,
                "flowId": self.flow_id,
                "stepId": self.step.id,
                "executionId": self.execution_id,
                "attempt": self.attempt,
                "timestamp": self.timestamp,
            },
        }


def _template(value: Any, ctx: StepContext, where: str) -> Any:
    try:
        return templates.render_value(value, ctx.template_values(), where)
    except templates.TemplateError as exc:
        raise StepFailed(exc.errors[0].message, "TEMPLATE_ERROR", retryable=False) from None


_TRANSIENT = (UpstreamUnreachable, Unavailable)  # worth trying again; the rest stays refused


def _upstream_failure(exc: DomainError) -> StepFailed:
    """A call that failed or was refused before any answer: an upstream that timed out, could not
    be reached or Tolstoy itself busy are worth retrying; a refusal (egress guard, unknown action,
    invalid inputs, a missing credential) would only be refused again."""
    if isinstance(exc, UpstreamTimeout):
        return StepFailed(exc.message, "TIMEOUT")
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()  # EgressRefused -> EGRESS_REFUSED
    message = exc.message
    if exc.errors:  # which fields, not their values (they may hold secrets)
        message += ": " + "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    return StepFailed(message, code, retryable=isinstance(exc, _TRANSIENT))


def js_truthy(value: Any) -> bool:
    """JavaScript's truthiness of an expression's value, as it comes back (JSON): ``[]`` and ``{}``
    are true there, unlike in Python; NaN arrives as null, ``undefined`` as None (both false)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True  # arrays and objects, empty or not


def sandbox_outcome(result: SandboxResult, ctx: StepContext) -> Any:
    ctx.logs.extend(result.logs)
    if not result.success:
        error = result.error or {"message": "The code failed", "code": "RUNTIME_ERROR"}
        code = str(error.get("code") or "RUNTIME_ERROR")
        raise StepFailed(
            str(error.get("message") or code),
            code,
            retryable=code not in _NOT_RETRYABLE_SANDBOX,
            stack=error.get("stack"),
        )
    return result.output


class StepRunners:
    """One method per step type (``delay`` is the engine's own: it schedules a wake-up)."""

    def __init__(
        self, http: HttpClient, actions: ExecuteAction, sandbox: Sandbox, default_timeout_ms: int = 30_000
    ) -> None:
        self._http = http
        self._actions = actions
        self._sandbox = sandbox
        self._timeout_ms = default_timeout_ms
        self._by_type: dict[str, Callable[[StepContext], Awaitable[Any]]] = {
            "http_request": self.http_request,
            "action": self.action,
            "data_transform": self.data_transform,
            "conditional": self.conditional,
            "code_execution": self.code,
            "sandbox_sync": self.code,
            "sandbox_async": self.code,
        }

    def timeout_ms(self, step: StepDefinition) -> int:
        return step.timeout_ms or self._timeout_ms

    def _limit_ms(self, step: StepDefinition) -> int:
        """How long the whole step may take: the step's own ``timeout`` when it has one, as for
        every step type. Without one, a background run it waits for may take the polls it is
        allowed (the default timeout bounds each sandbox run, not that waiting)."""
        if step.timeout_ms is None and _waits_for_background_run(step):
            polls, interval = _polling(step.config)
            return int(polls * interval * 1000) + self._timeout_ms
        if step.type == "http_request":
            return _request_timeout_ms(step, self.timeout_ms(step))
        return self.timeout_ms(step)

    async def run(self, ctx: StepContext) -> Any:
        runner = self._by_type[ctx.step.type]
        limit = self._limit_ms(ctx.step)
        try:
            return await asyncio.wait_for(runner(ctx), limit / 1000 + 1)
        except TimeoutError:
            raise StepFailed(f"Step timed out after {limit} ms", "TIMEOUT") from None

    async def condition(self, expression: str, ctx: StepContext) -> bool:
        """``executeIf``: a JavaScript expression over the context, in the sandbox."""
        result = await ctx.sandbox.run(self._code_run(expression, ctx, "javascript", expression=True))
        try:
            return js_truthy(sandbox_outcome(result, ctx))
        except StepFailed as exc:
            if exc.code in _SANDBOX_FAILURES:  # the sandbox's failure, not the expression's: again
                raise StepFailed(f"executeIf failed: {exc.message}", exc.code) from None
            raise StepFailed(
                f"executeIf failed: {exc.message}", "EXECUTE_IF_ERROR", retryable=False
            ) from None

    def _code_run(self, code: str, ctx: StepContext, language: str, expression: bool = False) -> SandboxRun:
        return SandboxRun(
            code=code,
            language=language,
            context=ctx.sandbox_context(),
            timeout_ms=self.timeout_ms(ctx.step),
            expression=expression,
        )

    # --- the step types ---------------------------------------------------------------------------

    async def http_request(self, ctx: StepContext) -> Any:
        config = ctx.step.config
        url = _template(config["url"], ctx, "config.url")
        if not isinstance(url, str):  # the url is one template whose value is not text
            raise StepFailed(
                f"config.url: expected a URL, the template gave {rules.type_name(url)}",
                "TEMPLATE_ERROR",
                retryable=False,
            )
        if config.get("query"):  # values encoded, unlike those templated into the url itself
            url = _with_query(url, _template(config["query"], ctx, "config.query"))
        method = str(config.get("method") or "GET").upper()
        headers = {
            str(k): templates.to_text(v)
            for k, v in _template(config.get("headers") or {}, ctx, "config.headers").items()
        }
        with_default_header(headers, "Idempotency-Key", ctx.idempotency_key)
        content = None
        if "body" in config and method in BODY_METHODS:
            body = _template(config["body"], ctx, "config.body")
            content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            if not isinstance(body, str):
                with_default_header(headers, "Content-Type", "application/json")
        problems = Problems()
        header_problems(problems, "config.headers", headers)
        if problems.errors:
            first = problems.errors[0]
            raise StepFailed(f"{first.field}: {first.message}", "INVALID_HEADER", retryable=False)
        timeout = _request_timeout_ms(ctx.step, self.timeout_ms(ctx.step)) / 1000
        try:
            response = await self._http.send(OutboundRequest(method, url, headers, content, timeout))
        except DomainError as exc:
            raise _upstream_failure(exc) from None
        data = decode_body(response.content, response.headers.get("content-type", ""))
        output = {
            "status": response.status,
            "headers": {k: v for k, v in response.headers.items() if k in SAFE_HEADERS},
            "data": data,
        }
        if response.status >= 400:
            raise StepFailed(
                f"{method} {url.split('?')[0]} answered {response.status}",
                f"HTTP_{response.status}",
                retryable=response.status in RETRYABLE_STATUS,
            )
        return output

    async def action(self, ctx: StepContext) -> Any:
        config = ctx.step.config
        inputs = _template(config.get("inputs") or {}, ctx, "config.inputs")
        by_key = not config.get("actionId")
        reference = config.get("actionId") or config.get("actionKey")
        tenant = TenantContext(org_id=ctx.org_id, user_id=ctx.user_id)
        try:
            result = await self._actions.execute(
                tenant,
                reference,
                inputs,
                by_key=by_key,
                headers={"Idempotency-Key": ctx.idempotency_key},
                step_id=ctx.step.id,
                run_id=ctx.execution_id,
            )
        except DomainError as exc:
            raise _upstream_failure(exc) from None
        output = {"success": result.success, "statusCode": result.status_code, "data": result.data}
        if not result.success:
            raise StepFailed(
                f"Action '{result.action.key}' answered {result.status_code}",
                f"HTTP_{result.status_code}",
                retryable=result.status_code in RETRYABLE_STATUS,
            )
        return output

    async def data_transform(self, ctx: StepContext) -> Any:
        result = await ctx.sandbox.run(self._code_run(ctx.step.config["script"], ctx, "javascript"))
        return sandbox_outcome(result, ctx)

    async def conditional(self, ctx: StepContext) -> Any:
        condition = ctx.step.config["condition"]
        result = await ctx.sandbox.run(self._code_run(condition, ctx, "javascript", expression=True))
        return {"result": js_truthy(sandbox_outcome(result, ctx))}

    async def code(self, ctx: StepContext) -> Any:
        config = ctx.step.config
        language = resolve_language(config.get("language"), config["code"])
        run = self._code_run(config["code"], ctx, language)
        if not _background(ctx.step):
            return sandbox_outcome(await ctx.sandbox.run(run), ctx)
        session_id = await self._sandbox.start(run)
        if not _waits_for_background_run(ctx.step):
            return {"sessionId": session_id, "status": "started"}
        polls, interval = _polling(config)
        try:
            for _ in range(polls):
                result = await self._sandbox.poll(session_id)
                if result is not None:
                    output = sandbox_outcome(result, ctx)
                    return {"sessionId": session_id, "output": output}
                await asyncio.sleep(interval)
        except asyncio.CancelledError:  # the execution was cancelled, or the step timed out
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again meanwhile: still ours
                await _stop_quietly(self._sandbox, session_id)
            raise
        await _stop_quietly(self._sandbox, session_id)  # nobody will ask for its result
        raise StepFailed(f"The background run {session_id} did not finish in time", "TIMEOUT")


def _with_query(url: str, query: dict[str, Any]) -> str:
    """``url`` with ``query``'s parameters added, percent-encoded (a list repeats its name; null is
    left out), before any fragment."""
    pairs = [
        (name, templates.to_text(item))
        for name, value in query.items()
        for item in (value if isinstance(value, list) else [value])
        if item is not None
    ]
    if not pairs:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (the client would refuse it too): say so, once
        raise StepFailed("config.url: not a usable URL", "INVALID_URL", retryable=False) from None
    added = urlencode(pairs)
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))


def _request_timeout_ms(step: StepDefinition, default_ms: int) -> int:
    """An ``http_request``'s time for its call: its ``config.timeout`` when it has one (the seed's
    per-request setting), else the step's. A step ``timeout`` as well bounds the whole step."""
    given = step.config.get("timeout")
    if not given:
        return default_ms
    return min(given, step.timeout_ms) if step.timeout_ms else given


async def _stop_quietly(sandbox: Sandbox, session_id: str) -> None:
    """Stop a background run nobody waits for; shielded, so that the cancellation that brought
    us here does not stop the stopping (a sandbox that stays up would be billed meanwhile)."""
    with contextlib.suppress(Exception):
        await asyncio.shield(sandbox.stop(session_id))


def _background(step: StepDefinition) -> bool:
    """A code step run in the background (the seed's ``sandbox_async``, or ``mode: "async"``)."""
    return step.type == "sandbox_async" or step.config.get("mode") == "async"


def _waits_for_background_run(step: StepDefinition) -> bool:
    return _background(step) and step.config.get("waitForCompletion") is not False


def _polling(config: dict[str, Any]) -> tuple[int, float]:
    """(polls allowed, seconds between them) while waiting for a background run."""
    return (
        config.get("maxPollAttempts") or MAX_POLL_ATTEMPTS,
        (config.get("pollInterval") or POLL_INTERVAL_MS) / 1000,
    )
