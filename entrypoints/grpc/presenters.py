"""Entities to tolstoy.v1 messages: the gRPC twins of entrypoints/rest/presenters.py, field for
field (REST's null is an unset field). Hashes never leave here."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from application.credentials import CredentialStatus, CredentialView
from application.engine.executions import ExecutionStats, ExecutionView, FlowMetrics
from application.execute_action import ActionResult
from domain.events import OutboxEvent
from domain.execution import Execution
from domain.execution_log import ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.organization import ApiKey, Organization, User
from domain.tool import Action, Tool
from entrypoints.grpc.convert import (
    EnumMap,
    dotted,
    lower,
    timestamp,
    to_list,
    to_struct,
    to_value,
    upper,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    action_pb2,
    action_service_pb2,
    api_key_pb2,
    common_pb2,
    execution_log_pb2,
    execution_log_service_pb2,
    execution_pb2,
    flow_pb2,
    flow_service_pb2,
    organization_pb2,
    tool_pb2,
    user_pb2,
)

AUTH_TYPES = EnumMap(tool_pb2.AuthType, "AUTH_TYPE_", lower)
METHODS = EnumMap(action_pb2.HttpMethod, "HTTP_METHOD_", upper)
EXECUTION_STATUSES = EnumMap(execution_pb2.ExecutionStatus, "EXECUTION_STATUS_", lower)
STEP_STATUSES = EnumMap(execution_pb2.StepStatus, "STEP_STATUS_", lower)
LOG_STATUSES = EnumMap(execution_log_pb2.ExecutionLogStatus, "EXECUTION_LOG_STATUS_", lower)
EVENT_TYPES = EnumMap(execution_pb2.ExecutionEventType, "EXECUTION_EVENT_TYPE_", dotted)


def _set(**fields: Any) -> dict[str, Any]:
    """Only the fields that have a value: None is an unset field (REST's null)."""
    return {k: v for k, v in fields.items() if v is not None}


def _stamped(entity: Any) -> dict[str, Any]:
    return {"created_at": timestamp(entity.created_at), "updated_at": timestamp(entity.updated_at)}


def organization(o: Organization) -> organization_pb2.Organization:
    return organization_pb2.Organization(id=o.id, name=o.name, **_stamped(o))


def user(u: User) -> user_pb2.User:
    return user_pb2.User(**_set(id=u.id, org_id=u.org_id, email=u.email, name=u.name, **_stamped(u)))


def api_key(k: ApiKey) -> api_key_pb2.ApiKey:
    return api_key_pb2.ApiKey(
        **_set(
            id=k.id,
            org_id=k.org_id,
            name=k.name,
            prefix=k.prefix,
            created_by=k.created_by,
            revoked_at=timestamp(k.revoked_at),
            **_stamped(k),
        )
    )


def tool(t: Tool) -> tool_pb2.Tool:
    return tool_pb2.Tool(
        id=t.id,
        org_id=t.org_id,
        name=t.name,
        key=t.key,
        base_url=t.base_url,
        auth_type=AUTH_TYPES.number(t.auth_type),
        options=to_struct(t.options),
        **_stamped(t),
    )


def action(a: Action) -> action_pb2.Action:
    return action_pb2.Action(
        id=a.id,
        org_id=a.org_id,
        tool_id=a.tool_id,
        name=a.name,
        key=a.key,
        method=METHODS.number(a.method),
        endpoint=a.endpoint,
        headers=to_struct(a.headers),
        input_schema=to_list(a.input_schema),
        **_stamped(a),
    )


# Converting steps and settings to Struct/ListValue is the costliest part of answering a read
# (protobuf builds them in Python, ~40 us for a few steps). A flow's content only changes with its
# updated_at, so recently presented flows are kept serialized and parsed back (in C, ~2 us).
FLOW_CACHE_SIZE = 1024
_flows: OrderedDict[tuple[str, int, datetime], bytes] = OrderedDict()


def flow(f: Flow) -> flow_pb2.Flow:
    key = (f.id, f.version, f.updated_at)
    cached = _flows.get(key)
    if cached is not None:
        _flows.move_to_end(key)  # least recently used goes first
        return flow_pb2.Flow.FromString(cached)
    message = _flow(f)
    _flows[key] = message.SerializeToString()
    if len(_flows) > FLOW_CACHE_SIZE:
        _flows.popitem(last=False)
    return message


def _flow(f: Flow) -> flow_pb2.Flow:
    return flow_pb2.Flow(
        **_set(
            id=f.id,
            org_id=f.org_id,
            name=f.name,
            description=f.description,
            steps=to_list(f.steps),
            settings=to_struct(f.settings),
            version=f.version,
            **_stamped(f),
        )
    )


def flow_version(v: FlowVersion) -> flow_pb2.FlowVersion:
    return flow_pb2.FlowVersion(
        **_set(
            id=v.id,
            flow_id=v.flow_id,
            version=v.version,
            steps=to_list(v.steps),
            settings=to_struct(v.settings),
            created_by=v.created_by,
            created_at=timestamp(v.created_at),
        )
    )


def execution_log(e: ExecutionLog) -> execution_log_pb2.ExecutionLog:
    return execution_log_pb2.ExecutionLog(
        **_set(
            id=e.id,
            org_id=e.org_id,
            user_id=e.user_id,
            flow_id=e.flow_id,
            execution_id=e.execution_id,
            step_key=e.step_key,
            status=LOG_STATUSES.number(e.status),
            inputs=to_struct(e.inputs),
            outputs=to_struct(e.outputs),
            error=to_struct(e.error),
            **_stamped(e),
        )
    )


def execution(view: ExecutionView | Execution, *, detailed: bool = False) -> execution_pb2.Execution:
    e = view.execution if isinstance(view, ExecutionView) else view
    message = execution_pb2.Execution(
        **_set(
            execution_id=e.id,
            flow_id=e.flow_id,
            flow_version=e.flow_version,
            status=EXECUTION_STATUSES.number(e.status),
            user_id=e.user_id,
            user_email=view.user_email if isinstance(view, ExecutionView) else None,
            inputs=to_struct(e.variables),
            outputs=to_struct(e.outputs),
            error=to_struct(e.error),
            retry_of=e.retry_of,
            resumed=e.resume,
            created_at=timestamp(e.created_at),
            started_at=timestamp(e.started_at),
            finished_at=timestamp(e.finished_at),
            duration=e.duration_ms,
            cancel_requested=e.cancel_requested,
        )
    )
    if detailed and isinstance(view, ExecutionView):
        message.steps.extend(
            execution_pb2.StepState(
                **_set(
                    step_id=s.step_id,
                    status=STEP_STATUSES.number(s.status),
                    attempt=s.attempt,
                    output=None if s.output is None else to_value(s.output),
                    error=to_struct(s.error),
                    next_attempt_at=timestamp(s.next_at),
                    started_at=timestamp(s.started_at),
                    finished_at=timestamp(s.finished_at),
                )
            )
            for s in view.steps
        )
    return message


def execution_event(event: OutboxEvent) -> execution_pb2.ExecutionEvent:
    payload = event.payload
    return execution_pb2.ExecutionEvent(
        id=event.id,
        type=EVENT_TYPES.number(event.type),
        execution_id=str(payload.get("executionId") or ""),
        flow_id=str(payload.get("flowId") or ""),
        step_id=str(payload.get("stepId") or ""),
        timestamp=timestamp(event.created_at),
        payload=to_struct(payload),
    )


def credentials(view: CredentialView) -> tool_pb2.ToolCredentials:
    values = {"masked_credentials" if view.masked else "credentials": view.values}
    return tool_pb2.ToolCredentials(
        tool_id=view.tool.id,
        tool_name=view.tool.name,
        created_at=timestamp(view.created_at),
        updated_at=timestamp(view.updated_at),
        **values,
    )


def credential_status(status: CredentialStatus) -> tool_pb2.ToolCredentialStatus:
    return tool_pb2.ToolCredentialStatus(
        tool_id=status.tool.id,
        tool_name=status.tool.name,
        base_url=status.tool.base_url,
        auth_type=AUTH_TYPES.number(status.tool.auth_type),
        has_credentials=status.keys is not None,
        credential_keys=status.keys or [],
    )


def action_result(result: ActionResult) -> action_service_pb2.ExecuteActionResponse:
    return action_service_pb2.ExecuteActionResponse(
        success=result.success,
        status_code=result.status_code,
        data=to_value(result.data),
        headers=result.headers,
        duration=result.duration_ms,
        execution_id=result.execution_id,
    )


def flow_metrics(metrics: FlowMetrics) -> flow_service_pb2.GetFlowMetricsResponse:
    return flow_service_pb2.GetFlowMetricsResponse(
        total_executions=metrics.total_executions,
        status_breakdown=metrics.status_breakdown,
        success_rate=metrics.success_rate,
    )


def stats(found: ExecutionStats) -> execution_log_service_pb2.GetStatsResponse:
    return execution_log_service_pb2.GetStatsResponse(
        total_executions=found.total_executions,
        completed_steps=found.completed_steps,
        failed_steps=found.failed_steps,
        skipped_steps=found.skipped_steps,
        avg_execution_time=found.avg_execution_time_ms,
        success_rate=found.success_rate,
        time_range=common_pb2.TimeRange(
            **_set(from_time=timestamp(found.start), to_time=timestamp(found.end))
        ),
    )
