"""Entities to JSON-ready dicts with the seed's camelCase names. Hashes never leave here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from application.engine.executions import ExecutionStats, ExecutionView, FlowMetrics
from domain.audit import AuditEvent
from domain.execution import Execution
from domain.execution_log import ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.organization import ApiKey, Organization, User
from domain.tool import Action, Tool

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamped(entity: Any) -> dict[str, Any]:
    return {"createdAt": iso(entity.created_at), "updatedAt": iso(entity.updated_at)}


def organization(o: Organization) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, **_stamped(o)}


def user(u: User) -> dict[str, Any]:
    return {"id": u.id, "orgId": u.org_id, "email": u.email, "name": u.name, **_stamped(u)}


def api_key(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "orgId": k.org_id,
        "name": k.name,
        "prefix": k.prefix,
        "createdBy": k.created_by,
        "revokedAt": iso(k.revoked_at),
        **_stamped(k),
    }


def tool(t: Tool) -> dict[str, Any]:
    return {
        "id": t.id,
        "orgId": t.org_id,
        "name": t.name,
        "key": t.key,
        "baseUrl": t.base_url,
        "authType": t.auth_type,
        "options": t.options,
        **_stamped(t),
    }


def action(a: Action) -> dict[str, Any]:
    return {
        "id": a.id,
        "orgId": a.org_id,
        "toolId": a.tool_id,
        "name": a.name,
        "key": a.key,
        "method": a.method,
        "endpoint": a.endpoint,
        "headers": a.headers,
        "inputSchema": a.input_schema,
        **_stamped(a),
    }


def flow(f: Flow) -> dict[str, Any]:
    return {
        "id": f.id,
        "orgId": f.org_id,
        "name": f.name,
        "description": f.description,
        "steps": f.steps,
        "settings": f.settings,
        "version": f.version,
        **_stamped(f),
    }


def execution_log(e: ExecutionLog) -> dict[str, Any]:
    return {
        "id": e.id,
        "orgId": e.org_id,
        "userId": e.user_id,
        "flowId": e.flow_id,
        "executionId": e.execution_id,
        "stepKey": e.step_key,
        "status": e.status,
        "inputs": e.inputs,
        "outputs": e.outputs,
        "error": e.error,
        **_stamped(e),
    }


def audit_event(a: AuditEvent) -> dict[str, Any]:
    return {
        "id": a.id,
        "orgId": a.org_id,
        "action": a.action,
        "resourceType": a.resource_type,
        "resourceId": a.resource_id,
        "actorUserId": a.actor_user_id,
        "apiKeyId": a.api_key_id,
        "details": a.details,
        "createdAt": iso(a.created_at),
    }


def execution(view: ExecutionView | Execution, *, detailed: bool = False) -> dict[str, Any]:
    execution = view.execution if isinstance(view, ExecutionView) else view
    body: dict[str, Any] = {
        "executionId": execution.id,
        "flowId": execution.flow_id,
        "flowVersion": execution.flow_version,
        "status": execution.status,
        "userId": execution.user_id,
        "userEmail": view.user_email if isinstance(view, ExecutionView) else None,
        "inputs": execution.variables,
        "outputs": execution.outputs,
        "error": execution.error,
        "retryOf": execution.retry_of,
        "resumed": execution.resume,
        "createdAt": iso(execution.created_at),
        "startedAt": iso(execution.started_at),
        "finishedAt": iso(execution.finished_at),
        "duration": execution.duration_ms,
        "cancelRequested": execution.cancel_requested,
    }
    if detailed and isinstance(view, ExecutionView):
        body["steps"] = [
            {
                "stepId": s.step_id,
                "status": s.status,
                "attempt": s.attempt,
                "output": s.output,
                "error": s.error,
                "nextAttemptAt": iso(s.next_at),
                "startedAt": iso(s.started_at),
                "finishedAt": iso(s.finished_at),
            }
            for s in view.steps
        ]
    return body


def flow_version(v: FlowVersion) -> dict[str, Any]:
    return {
        "id": v.id,
        "flowId": v.flow_id,
        "version": v.version,
        "steps": v.steps,
        "settings": v.settings,
        "createdBy": v.created_by,
        "createdAt": iso(v.created_at),
    }


def flow_metrics(m: FlowMetrics) -> dict[str, Any]:
    return {
        "totalExecutions": m.total_executions,
        "statusBreakdown": m.status_breakdown,
        "successRate": m.success_rate,
    }


def execution_stats(s: ExecutionStats) -> dict[str, Any]:
    return {
        "totalExecutions": s.total_executions,
        "completedSteps": s.completed_steps,
        "failedSteps": s.failed_steps,
        "skippedSteps": s.skipped_steps,
        "avgExecutionTime": s.avg_execution_time_ms,
        "successRate": s.success_rate,
        "timeRange": {"from": iso(s.start), "to": iso(s.end)},
    }
