"""Entities to tolstoy.v1 messages: the gRPC twins of entrypoints/rest/presenters.py, field for
field (REST's null is an unset field). Hashes never leave here."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from application.credentials import CredentialStatus, CredentialView
from application.engine.executions import ExecutionStats, ExecutionView, FlowMetrics
from application.execute_action import ActionResult
from domain.events import OutboxEvent
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


# None given to a message's constructor leaves the field unset (REST's null): no filtering needed.


def _stamped(entity: Any) -> dict[str, Any]:
    return {"created_at": timestamp(entity.created_at), "updated_at": timestamp(entity.updated_at)}


def organization(o: Organization) -> organization_pb2.Organization:
    return organization_pb2.Organization(id=o.id, name=o.name, **_stamped(o))


def user(u: User) -> user_pb2.User:
    return user_pb2.User(id=u.id, org_id=u.org_id, email=u.email, name=u.name, **_stamped(u))


def api_key(k: ApiKey) -> api_key_pb2.ApiKey:
    return api_key_pb2.ApiKey(
        id=k.id,
        org_id=k.org_id,
        name=k.name,
        prefix=k.prefix,
        created_by=k.created_by,
        revoked_at=timestamp(k.revoked_at),
        **_stamped(k),
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
# (protobuf builds them in Python, ~40 us for a few steps). They change only with the flow's version
# (domain.flow.Flow.changed), so recently presented ones are kept serialized, by (flow id, version),
# and merged into a message of the other fields (parsed in C, ~2 us). The other fields (name,
# description, updated_at) change without a new version: they are built every time.
FLOW_CACHE_SIZE = 1024
_definitions: OrderedDict[tuple[str, int], bytes] = OrderedDict()


def flow(f: Flow) -> flow_pb2.Flow:
    message = flow_pb2.Flow(
        id=f.id,
        org_id=f.org_id,
        name=f.name,
        description=f.description,
        version=f.version,
        **_stamped(f),
    )
    key = (f.id, f.version)
    cached = _definitions.get(key)
    if cached is None:
        cached = flow_pb2.Flow(steps=to_list(f.steps), settings=to_struct(f.settings)).SerializeToString()
        _definitions[key] = cached
        if len(_definitions) > FLOW_CACHE_SIZE:
            _definitions.popitem(last=False)
    else:
        _definitions.move_to_end(key)  # least recently used goes first
    message.MergeFromString(cached)
    return message


def flow_version(v: FlowVersion) -> flow_pb2.FlowVersion:
    return flow_pb2.FlowVersion(
        id=v.id,
        flow_id=v.flow_id,
        version=v.version,
        steps=to_list(v.steps),
        settings=to_struct(v.settings),
        created_by=v.created_by,
        created_at=timestamp(v.created_at),
    )


def execution_log(e: ExecutionLog) -> execution_log_pb2.ExecutionLog:
    return execution_log_pb2.ExecutionLog(
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


def execution(view: ExecutionView, *, detailed: bool = False) -> execution_pb2.Execution:
    e = view.execution
    message = execution_pb2.Execution(
        execution_id=e.id,
        flow_id=e.flow_id,
        flow_version=e.flow_version,
        status=EXECUTION_STATUSES.number(e.status),
        user_id=e.user_id,
        user_email=view.user_email,
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
    if detailed:
        message.steps.extend(
            execution_pb2.StepState(
                step_id=s.step_id,
                status=STEP_STATUSES.number(s.status),
                attempt=s.attempt,
                output=None if s.output is None else to_value(s.output),
                error=to_struct(s.error),
                next_attempt_at=timestamp(s.next_at),
                started_at=timestamp(s.started_at),
                finished_at=timestamp(s.finished_at),
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
        time_range=common_pb2.TimeRange(from_time=timestamp(found.start), to_time=timestamp(found.end)),
    )
