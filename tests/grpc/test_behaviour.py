"""gRPC beyond single RPCs: authentication and tenant isolation (the REST rules), rich errors,
WatchExecution, client deadlines, health and reflection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from application.health import ComponentStatus
from domain.errors import FieldError, ValidationFailed
from entrypoints.grpc.errors import INTERNAL_MESSAGE, MALFORMED_MESSAGE, unary
from entrypoints.grpc.gen.tolstoy.v1 import action_service_pb2 as acs
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as common
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_service_pb2 as ls
from entrypoints.grpc.gen.tolstoy.v1 import execution_pb2, tool_pb2
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2 as fs
from entrypoints.grpc.gen.tolstoy.v1 import organization_service_pb2 as os_
from entrypoints.grpc.gen.tolstoy.v1 import tool_service_pb2 as ts
from entrypoints.grpc.gen.tolstoy.v1 import user_service_pb2 as us
from entrypoints.grpc.server import SERVICE_NAMES, GrpcServer
from tests.grpc.conftest import Client, new_rpc_org
from tests.grpc.helpers import rpc_error, struct, values, violations, wait
from tests.support import ADMIN_TOKEN

Code = grpc.StatusCode
E = execution_pb2


# --- authentication: the REST rules, from metadata ---------------------------------------------------


def test_missing_or_bad_credentials_are_unauthenticated(channel: grpc.Channel, rpc: Client) -> None:
    request = us.ListUsersRequest()
    anonymous = Client(channel, None)
    assert (
        "Authorization"
        in rpc_error(lambda: anonymous.users.ListUsers(request), Code.UNAUTHENTICATED).details()
    )
    wrong = Client(channel, "tsk_not-a-key")
    assert rpc_error(lambda: wrong.users.ListUsers(request), Code.UNAUTHENTICATED).details() == (
        "Invalid or revoked API key"
    )
    basic = us_stub_call(channel, [("authorization", f"Basic {rpc.token}")])
    assert (
        rpc_error(basic, Code.UNAUTHENTICATED).details() == "Authorization header must be 'Bearer <api key>'"
    )
    admin = Client(channel, ADMIN_TOKEN)  # the admin token manages organizations only
    rpc_error(lambda: admin.users.ListUsers(request), Code.UNAUTHENTICATED)
    anonymous_admin = Client(channel, None)
    rpc_error(
        lambda: anonymous_admin.orgs.ListOrganizations(os_.ListOrganizationsRequest()), Code.UNAUTHENTICATED
    )


def us_stub_call(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> Any:
    from entrypoints.grpc.gen.tolstoy.v1 import user_service_pb2_grpc

    stub = user_service_pb2_grpc.UserServiceStub(channel)
    return lambda: stub.ListUsers(us.ListUsersRequest(), metadata=metadata)


def test_header_mismatches_are_permission_denied(channel: grpc.Channel, rpc: Client) -> None:
    other = new_rpc_org(channel)
    wrong_org = Client(channel, rpc.token, other.org_id)
    assert (
        "X-Org-ID"
        in rpc_error(
            lambda: wrong_org.users.ListUsers(us.ListUsersRequest()), Code.PERMISSION_DENIED
        ).details()
    )
    foreign_user = other.users.CreateUser(us.CreateUserRequest(email="o@example.com")).user
    rpc_error(
        lambda: rpc.as_user(foreign_user.id).users.ListUsers(us.ListUsersRequest()), Code.PERMISSION_DENIED
    )


def test_writes_are_attributed_to_x_user_id(rpc: Client) -> None:
    user = rpc.users.CreateUser(us.CreateUserRequest(email="ada@example.com")).user
    steps = values([{"id": "s", "type": "data_transform", "config": {"script": "return 1"}}])
    flow = rpc.as_user(user.id).flows.CreateFlow(fs.CreateFlowRequest(name="F", steps=steps)).flow
    versions = rpc.flows.ListFlowVersions(fs.ListFlowVersionsRequest(flow_id=flow.id)).versions
    assert versions[0].created_by == user.id
    run = rpc.as_user(user.id).flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id, use_durable=False))
    assert run.execution.user_id == user.id and run.execution.user_email == "ada@example.com"


def test_another_tenants_objects_are_not_found(channel: grpc.Channel, rpc: Client) -> None:
    mine = rpc
    theirs = new_rpc_org(channel)
    user = theirs.users.CreateUser(us.CreateUserRequest(email="t@example.com")).user
    tool = theirs.tools.CreateTool(ts.CreateToolRequest(name="T", base_url="https://t.example.com")).tool
    theirs.tools.SetCredentials(ts.SetCredentialsRequest(tool_id=tool.id, credentials={"token": "x" * 20}))
    action = theirs.actions.CreateAction(
        acs.CreateActionRequest(name="A", tool_id=tool.id, endpoint="/a")
    ).action
    steps = values([{"id": "s", "type": "data_transform", "config": {"script": "return 1"}}])
    flow = theirs.flows.CreateFlow(fs.CreateFlowRequest(name="F", steps=steps)).flow
    run = theirs.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id, use_durable=False)).execution
    log = theirs.logs.ListExecutionLogs(ls.ListExecutionLogsRequest()).execution_logs[0]
    ids = {"flow_id": flow.id, "execution_id": run.execution_id}
    calls = [
        lambda: mine.orgs.GetOrganization(os_.GetOrganizationRequest(id=theirs.org_id)),
        lambda: mine.orgs.UpdateOrganization(os_.UpdateOrganizationRequest(id=theirs.org_id, name="x")),
        lambda: mine.users.GetUser(us.GetUserRequest(id=user.id)),
        lambda: mine.users.UpdateUser(us.UpdateUserRequest(id=user.id, name="x")),
        lambda: mine.users.DeleteUser(us.DeleteUserRequest(id=user.id)),
        lambda: mine.tools.GetTool(ts.GetToolRequest(id=tool.id)),
        lambda: mine.tools.UpdateTool(ts.UpdateToolRequest(id=tool.id, name="x")),
        lambda: mine.tools.DeleteTool(ts.DeleteToolRequest(id=tool.id)),
        lambda: mine.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=tool.id, unmask=True)),
        lambda: mine.tools.SetCredentials(ts.SetCredentialsRequest(tool_id=tool.id, credentials={"a": "b"})),
        lambda: mine.tools.DeleteCredentials(ts.DeleteCredentialsRequest(tool_id=tool.id)),
        lambda: mine.actions.GetAction(acs.GetActionRequest(id=action.id)),
        lambda: mine.actions.ExecuteAction(acs.ExecuteActionRequest(action_id=action.id)),
        lambda: mine.actions.DeleteAction(acs.DeleteActionRequest(id=action.id)),
        lambda: mine.flows.GetFlow(fs.GetFlowRequest(id=flow.id)),
        lambda: mine.flows.UpdateFlow(fs.UpdateFlowRequest(id=flow.id, name="x")),
        lambda: mine.flows.DeleteFlow(fs.DeleteFlowRequest(id=flow.id)),
        lambda: mine.flows.ListFlowVersions(fs.ListFlowVersionsRequest(flow_id=flow.id)),
        lambda: mine.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id)),
        lambda: mine.flows.ListExecutions(fs.ListExecutionsRequest(flow_id=flow.id)),
        lambda: mine.flows.GetExecution(fs.GetExecutionRequest(**ids)),
        lambda: mine.flows.CancelExecution(fs.CancelExecutionRequest(**ids)),
        lambda: mine.flows.RetryExecution(fs.RetryExecutionRequest(**ids)),
        lambda: mine.flows.GetFlowMetrics(fs.GetFlowMetricsRequest(flow_id=flow.id)),
        lambda: list(mine.flows.WatchExecution(fs.WatchExecutionRequest(**ids))),
        lambda: mine.logs.GetExecutionLog(ls.GetExecutionLogRequest(id=log.id)),
        lambda: mine.logs.GetExecutionLogs(ls.GetExecutionLogsRequest(**ids)),
        lambda: mine.logs.GetExecutionLogs(ls.GetExecutionLogsRequest(execution_id=ids["execution_id"])),
    ]
    for call in calls:
        rpc_error(call, Code.NOT_FOUND)
    assert mine.logs.ListExecutionLogs(ls.ListExecutionLogsRequest(flow_id=flow.id)).execution_logs == []
    assert theirs.users.GetUser(us.GetUserRequest(id=user.id)).user == user  # untouched


# --- errors --------------------------------------------------------------------------------------------


def test_unknown_enum_numbers_and_impossible_timestamps_are_refused(rpc: Client) -> None:
    """proto3 lets any enum number through: one the contract does not define is refused, never
    taken for "not given" (which would drop a filter or default a tool to no authentication)."""
    cases = [
        lambda: rpc.tools.CreateTool(
            ts.CreateToolRequest(name="T", base_url="https://x.example", auth_type=99)
        ),
        lambda: rpc.tools.ListTools(ts.ListToolsRequest(auth_type=42)),
        lambda: rpc.flows.ListExecutions(fs.ListExecutionsRequest(flow_id="flow_x", status=42)),
        lambda: rpc.logs.ListExecutionLogs(ls.ListExecutionLogsRequest(status=42)),
    ]
    for call, field in zip(cases, ["auth_type", "auth_type", "status", "status"], strict=True):
        assert violations(rpc_error(call, Code.INVALID_ARGUMENT)) == [(field, "invalid_enum_value")]
    assert rpc.tools.ListTools(ts.ListToolsRequest()).tools is not None  # 0 still means "any"
    request = ls.GetStatsRequest()
    request.from_time.seconds = 10**13  # far beyond year 9999
    error = rpc_error(lambda: rpc.logs.GetStats(request), Code.INVALID_ARGUMENT)
    assert violations(error) == [("from_time", "invalid_date")]
    backwards = ls.GetStatsRequest()
    backwards.from_time.seconds, backwards.to_time.seconds = 2_000_000_000, 1_000_000_000
    error = rpc_error(lambda: rpc.logs.GetStats(backwards), Code.INVALID_ARGUMENT)
    assert violations(error) == [("from_time", "invalid_range")]  # the proto's name, not REST's "from"


def test_bad_requests_are_invalid_argument_with_field_violations(rpc: Client) -> None:
    error = rpc_error(
        lambda: rpc.tools.CreateTool(ts.CreateToolRequest(name="T", base_url="not a url")),
        Code.INVALID_ARGUMENT,
    )
    assert [field for field, _ in violations(error)] == ["baseUrl"]
    bad_step = values([{"id": "s", "type": "http_request", "config": {}}])
    error = rpc_error(
        lambda: rpc.flows.CreateFlow(fs.CreateFlowRequest(name="F", steps=bad_step)), Code.INVALID_ARGUMENT
    )
    assert any(field.startswith("steps.0") for field, _ in violations(error)), violations(error)
    error = rpc_error(
        lambda: rpc.users.ListUsers(us.ListUsersRequest(page=common.Page(limit=501))), Code.INVALID_ARGUMENT
    )
    assert violations(error) == [("page.limit", "too_big")]
    error = rpc_error(
        lambda: rpc.users.ListUsers(us.ListUsersRequest(page=common.Page(offset=-1))), Code.INVALID_ARGUMENT
    )
    assert violations(error) == [("page.offset", "too_small")]
    mask = field_mask_pb2.FieldMask(paths=["nickname"])
    error = rpc_error(
        lambda: rpc.users.UpdateUser(us.UpdateUserRequest(id="usr_x", update_mask=mask)),
        Code.INVALID_ARGUMENT,
    )
    assert violations(error) == [("update_mask", "invalid_field")]
    error = rpc_error(
        lambda: rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id="flow_x", variables=struct({"a": 1}))),
        Code.NOT_FOUND,
    )


def test_malformed_requests_and_non_finite_numbers_are_invalid_argument(
    channel: grpc.Channel, rpc: Client
) -> None:
    """Bytes that are not a message of the method's type (here a string field that is not UTF-8)
    are refused as INVALID_ARGUMENT without quoting the parser; a Struct's NaN or infinity (which
    JSON, and so REST, cannot carry) is refused by its field's path."""
    raw = channel.unary_unary("/tolstoy.v1.FlowService/GetFlow")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\x0a\x02\xff\xfe", timeout=10)  # field 1 (id), two bytes that are not UTF-8
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert caught.value.details() == MALFORMED_MESSAGE
    rpc.tools.ListTools(ts.ListToolsRequest())  # the server is fine
    # an action's inputs go upstream as JSON without being stored, so no other rule refuses these
    for number in (float("nan"), float("-inf")):
        request = acs.ExecuteActionRequest(action_id="act_x", inputs=struct({"a": {"b": [1, number]}}))
        error = rpc_error(lambda request=request: rpc.actions.ExecuteAction(request), Code.INVALID_ARGUMENT)
        assert violations(error) == [("inputs.a.b.1", "invalid_type")]


def test_a_duplicate_is_already_exists(rpc: Client) -> None:
    request = ts.CreateToolRequest(
        name="Twice", base_url="https://t.example.com", auth_type=tool_pb2.AUTH_TYPE_NONE
    )
    rpc.tools.CreateTool(request)
    error = rpc_error(lambda: rpc.tools.CreateTool(request), Code.ALREADY_EXISTS)
    assert violations(error) == [("key", "already_exists")]


class _Context:
    """Just enough of grpc.aio.ServicerContext for the error wrapper."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise grpc.aio.AbortError()


async def test_unexpected_errors_are_internal_and_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Any, context: Any) -> Any:
        raise RuntimeError("secret internals: password=hunter2")

    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await unary(broken, "/tolstoy.v1.Test/Broken")(None, context)
    assert context.status.code == grpc.StatusCode.INTERNAL and context.status.details == INTERNAL_MESSAGE
    assert "hunter2" not in str(context.status.trailing_metadata)
    assert "hunter2" in caplog.text  # logged for the operator

    async def invalid(request: Any, context: Any) -> Any:
        raise ValidationFailed([FieldError("name", "Required", "required")])

    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await unary(invalid, "/x")(None, context)
    assert context.status.code == grpc.StatusCode.INVALID_ARGUMENT

    async def cancelled(request: Any, context: Any) -> Any:
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):  # the deadline's cancellation is never swallowed
        await unary(cancelled, "/x")(None, _Context())


# --- WatchExecution ---------------------------------------------------------------------------------------


def test_watch_execution_streams_every_event_in_order_and_ends(rpc: Client) -> None:
    steps = [
        {"id": "first", "type": "data_transform", "config": {"script": "return 1"}},
        {"id": "wait", "type": "delay", "config": {"ms": 300}},
        {"id": "last", "type": "data_transform", "config": {"script": "return 2"}},
    ]
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Watched", steps=values(steps))).flow
    started = rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id)).execution
    request = fs.WatchExecutionRequest(flow_id=flow.id, execution_id=started.execution_id)
    live = [r.event for r in rpc.flows.WatchExecution(request, timeout=30)]  # ends by itself
    seen = [(E.ExecutionEventType.Name(e.type), e.step_id) for e in live]
    assert seen == [
        ("EXECUTION_EVENT_TYPE_FLOW_STARTED", ""),
        ("EXECUTION_EVENT_TYPE_STEP_STARTED", "first"),
        ("EXECUTION_EVENT_TYPE_STEP_COMPLETED", "first"),
        ("EXECUTION_EVENT_TYPE_STEP_STARTED", "wait"),
        ("EXECUTION_EVENT_TYPE_STEP_COMPLETED", "wait"),
        ("EXECUTION_EVENT_TYPE_STEP_STARTED", "last"),
        ("EXECUTION_EVENT_TYPE_STEP_COMPLETED", "last"),
        ("EXECUTION_EVENT_TYPE_FLOW_COMPLETED", ""),
    ]
    assert len({e.id for e in live}) == len(live)
    assert all(e.execution_id == started.execution_id and e.flow_id == flow.id for e in live)
    assert [e.timestamp.ToNanoseconds() for e in live] == sorted(e.timestamp.ToNanoseconds() for e in live)
    assert live[-1].payload["status"] == "completed" and live[-1].payload["outputs"]["last"] == 2
    assert live[0].payload["executionId"] == started.execution_id

    replay = [
        r.event for r in rpc.flows.WatchExecution(request, timeout=10)
    ]  # a finished one: all, then the end
    assert replay == live


def test_watch_ends_with_a_cancelled_execution(rpc: Client) -> None:
    steps = [{"id": "wait", "type": "delay", "config": {"ms": 60_000}}]
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Slow", steps=values(steps))).flow
    started = rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id)).execution
    ids = {"flow_id": flow.id, "execution_id": started.execution_id}
    stream = rpc.flows.WatchExecution(fs.WatchExecutionRequest(**ids), timeout=30)
    first = next(stream).event
    assert first.type == E.EXECUTION_EVENT_TYPE_FLOW_STARTED
    rpc.flows.CancelExecution(fs.CancelExecutionRequest(**ids))
    rest = [r.event.type for r in stream]
    assert rest[-1] == E.EXECUTION_EVENT_TYPE_FLOW_CANCELLED


# --- deadlines ------------------------------------------------------------------------------------------


def test_client_deadlines_are_honoured(rpc: Client) -> None:
    steps = [{"id": "wait", "type": "delay", "config": {"ms": 5_000}}]
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Slow", steps=values(steps))).flow
    begin = time.monotonic()
    direct = fs.ExecuteFlowRequest(flow_id=flow.id, use_durable=False)
    rpc_error(lambda: rpc.flows.ExecuteFlow(direct, timeout=0.5), Code.DEADLINE_EXCEEDED)
    assert time.monotonic() - begin < 3

    started = rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id)).execution
    request = fs.WatchExecutionRequest(flow_id=flow.id, execution_id=started.execution_id)
    begin = time.monotonic()
    rpc_error(lambda: list(rpc.flows.WatchExecution(request, timeout=0.5)), Code.DEADLINE_EXCEEDED)
    assert time.monotonic() - begin < 3
    rpc.flows.CancelExecution(fs.CancelExecutionRequest(flow_id=flow.id, execution_id=started.execution_id))
    wait(rpc, flow.id, started.execution_id)


# --- health and reflection ------------------------------------------------------------------------------


def test_health_serves_while_the_database_answers(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", *SERVICE_NAMES):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert caught.value.code() == Code.NOT_FOUND


class _Status:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    async def database(self, *, with_counts: bool) -> ComponentStatus:
        return ComponentStatus(
            "healthy" if self.healthy else "unhealthy", error=None if self.healthy else "OSError"
        )


class _Container:
    def __init__(self) -> None:
        self.status = _Status(True)

    def authenticator(self) -> None:
        return None

    def system_status(self) -> _Status:
        return self.status


async def test_health_follows_the_database() -> None:
    container = _Container()
    server = GrpcServer(container, "127.0.0.1", 0)  # type: ignore[arg-type]
    request = health_pb2.HealthCheckRequest(service="tolstoy.v1.FlowService")
    await server._check_health()
    assert (await server.health.Check(request, None)).status == health_pb2.HealthCheckResponse.SERVING
    container.status.healthy = False
    await server._check_health()
    assert (await server.health.Check(request, None)).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        stub.ServerReflectionInfo(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol="tolstoy.v1.FlowService"),
                ]
            ),
            timeout=5,
        )
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert answers[1].file_descriptor_response.file_descriptor_proto


def test_requests_over_the_body_limit_are_refused_like_rest(rpc: Client) -> None:
    """The shared server runs with TOLSTOY_MAX_BODY_BYTES=64 KiB, for gRPC as for REST."""
    big = rpc_error(
        lambda: rpc.users.CreateUser(us.CreateUserRequest(email="a@example.com", name="x" * 100_000)),
        Code.RESOURCE_EXHAUSTED,
    )
    assert big.code() == Code.RESOURCE_EXHAUSTED


def test_grpc_tells_a_duplicate_from_a_forbidden_change_by_type() -> None:
    from google.rpc import code_pb2

    from domain.errors import AlreadyExists, Conflict
    from entrypoints.grpc.errors import code_of

    assert code_of(AlreadyExists("This tool conflicts with an existing one")) == code_pb2.ALREADY_EXISTS
    assert code_of(Conflict("Execution exec_1 is already completed")) == code_pb2.FAILED_PRECONDITION
