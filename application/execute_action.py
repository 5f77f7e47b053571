"""ExecuteAction: run one stored action against its tool, with the tool's credentials injected.

inputs validated by the action's schema -> URL from the tool's baseUrl and the action's endpoint
(values percent-encoded) -> header templates rendered -> auth injected by the tool's authType ->
sent through the egress-guarded HttpClient -> an answer, an audit row and an outbox event.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from application.ports import (
    Clock,
    HttpClient,
    Metrics,
    OutboundRequest,
    Page,
    SecretStore,
    UnitOfWorkFactory,
)
from application.resources import audit_event
from application.tenancy import TenantContext
from domain import templates
from domain.auth_injection import Injection, MissingCredential, inject
from domain.credentials import echo_forms, replaced
from domain.errors import DomainError, NotFound, UpstreamTimeout
from domain.events import OutboxEvent
from domain.ids import execution_id, new_id
from domain.input_schema import PatternCompiler, parse_schema
from domain.rules import Problems
from domain.tool import Action, Tool, header_problems, with_default_header

BODY_METHODS = ("POST", "PUT", "PATCH")
# Upstream headers worth showing; the rest (cookies, auth challenges, internals) stay behind.
SAFE_HEADERS = (
    "content-type", "content-length", "content-language", "date", "etag", "last-modified", "location",
    "retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
)  # fmt: skip
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class ActionResult:
    success: bool
    status_code: int
    data: Any
    headers: dict[str, str]
    duration_ms: int
    execution_id: str
    tool: Tool
    action: Action


def _js_int(text: str) -> int | float:
    value = int(text)
    return value if -(2**63) <= value < 2**63 else float(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_body(content: bytes, content_type: str) -> Any:
    """JSON as JavaScript reads it: integers beyond 64 bits become doubles (the stdlib would keep
    them exact, and no JSON encoder here could answer them); anything else is text."""
    if "json" in content_type:
        try:
            return json.loads(content, parse_int=_js_int, parse_constant=_no_constant)
        except ValueError:
            pass
    return content.decode("utf-8", "replace")


class ExecuteAction:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        secrets: SecretStore,
        http: HttpClient,
        compile_pattern: PatternCompiler,
        metrics: Metrics,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._secrets = secrets
        self._http = http
        self._compile_pattern = compile_pattern
        self._metrics = metrics
        self._timeout = timeout_seconds

    async def execute(
        self,
        ctx: TenantContext,
        action_id: str,
        inputs: Any,
        *,
        by_key: bool = False,
        headers: dict[str, str] | None = None,
        step_id: str | None = None,
        run_id: str | None = None,
    ) -> ActionResult:
        """Run an action (by id, or by key when ``by_key``). A flow step passes its ``step_id``,
        the execution as ``run_id`` and extra ``headers`` (its Idempotency-Key)."""
        async with self._uow(read_only=True) as uow:
            if by_key:
                found = await uow.actions.list(ctx.org_id, Page(limit=1), {"key": action_id})
                action = found[0] if found else None
            else:
                action = await uow.actions.get(ctx.org_id, action_id)
            tool = await uow.tools.get(ctx.org_id, action.tool_id) if action else None
        if action is None or tool is None:
            raise NotFound("Action", action_id)
        clean = parse_schema(action.input_schema, self._compile_pattern).validate(inputs)
        credentials = await self._secrets.get(ctx.org_id, tool.id) or {}
        try:
            request, injection = self._request(tool, action, clean, credentials)
        except MissingCredential:
            self._metrics.auth_injected(ctx.org_id, tool.key, tool.auth_type, "missing_credential")
            raise
        injected = bool(injection.headers or injection.query)
        self._metrics.auth_injected(
            ctx.org_id, tool.key, tool.auth_type, "success" if injected else "skipped"
        )
        if step_id is not None and injected:
            self._metrics.step_auth_injected(ctx.org_id, step_id, tool.auth_type)
        if headers:  # the action's own headers win, in whatever case they are spelt
            merged = dict(request.headers)
            for name, value in headers.items():
                with_default_header(merged, name, value)
            request = dataclasses.replace(request, headers=merged)
        run_id = run_id or execution_id(time.time())
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except DomainError as exc:
            await self._record(ctx, action, tool, run_id, None, started, error=exc)
            raise
        duration = int((time.perf_counter() - started) * 1000)
        values = echo_forms(credentials, [*injection.headers.values(), *injection.query.values()])
        data = replaced(
            decode_body(response.content, response.headers.get("content-type", "")), values, REDACTED
        )
        headers = {k: replaced(v, values, REDACTED) for k, v in response.headers.items() if k in SAFE_HEADERS}
        result = ActionResult(
            success=200 <= response.status < 400,
            status_code=response.status,
            data=data,
            headers=headers,
            duration_ms=duration,
            execution_id=run_id,
            tool=tool,
            action=action,
        )
        await self._record(ctx, action, tool, run_id, result, started)
        return result

    def _request(
        self, tool: Tool, action: Action, inputs: dict[str, Any], credentials: dict[str, str]
    ) -> tuple[OutboundRequest, Injection]:
        context = {"inputs": inputs, "secrets": credentials, "auth": credentials}
        path = templates.render_path(action.endpoint, context, "endpoint")
        used = {
            p.split(".", 2)[1] for p in templates.placeholders(action.endpoint) if p.startswith("inputs.")
        }
        rest = {k: v for k, v in inputs.items() if k not in used}
        headers = {
            name: templates.render(value, context, f"headers.{name}")
            for name, value in action.headers.items()
        }
        explicit = frozenset(name.lower() for name in headers)
        injection = inject(tool.auth_type, tool.key, tool.options, credentials, explicit)
        headers |= injection.headers
        query = dict(injection.query)
        content = None
        if action.method in BODY_METHODS:
            content = json.dumps(rest).encode()
            with_default_header(headers, "Content-Type", "application/json")
        else:
            query = {**{k: templates.to_text(v) for k, v in rest.items()}, **query}
        url = tool.base_url.rstrip("/") + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        timeout = tool.options.get("timeoutMs")
        seconds = timeout / 1000 if isinstance(timeout, int | float) and timeout > 0 else self._timeout
        problems = Problems()
        header_problems(problems, "headers", headers)  # as rendered: what would go on the wire
        problems.raise_if_any()
        return OutboundRequest(action.method, url, headers, content, seconds), injection

    async def _record(
        self,
        ctx: TenantContext,
        action: Action,
        tool: Tool,
        run_id: str,
        result: ActionResult | None,
        started: float,
        error: DomainError | None = None,
    ) -> None:
        now = self._clock.now()
        ok = result is not None and result.success
        seconds = result.duration_ms / 1000 if result else time.perf_counter() - started
        self._metrics.action_executed(ctx.org_id, tool.key, action.key, "success" if ok else "error", seconds)
        kind = "action.executed" if ok else "action.failed"
        summary: dict[str, Any] = {
            "executionId": run_id,
            "actionId": action.id,
            "actionKey": action.key,
            "toolKey": tool.key,
            "status": "success" if ok else ("timeout" if isinstance(error, UpstreamTimeout) else "error"),
            "statusCode": result.status_code if result else None,
            "duration": result.duration_ms if result else int((time.perf_counter() - started) * 1000),
            "userId": ctx.user_id,
        }
        if error is not None:
            summary["error"] = error.message
        async with self._uow() as uow:
            await uow.audit.add(audit_event(ctx, kind, "action", action.id, now, **summary))
            await uow.outbox.add(
                OutboxEvent(id=new_id("evt"), org_id=ctx.org_id, type=kind, payload=summary, created_at=now)
            )
            await uow.commit()
