"""The gRPC contract as generated into entrypoints.grpc.gen: every service and RPC the REST API has
an equivalent for, the shapes handlers rely on, buf's enum convention, and a package that imports
(and serves) without sys.path tricks."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

import entrypoints.grpc.gen
from entrypoints.grpc.gen.tolstoy.v1 import execution_pb2, flow_service_pb2, flow_service_pb2_grpc

PACKAGE = "tolstoy.v1"
GEN = Path(entrypoints.grpc.gen.__file__).parent

# service -> its RPCs; WatchExecution is the one server-streaming RPC.
SERVICES: dict[str, set[str]] = {
    "OrganizationService": {
        "CreateOrganization", "ListOrganizations", "GetOrganization", "UpdateOrganization",
        "DeleteOrganization",
    },
    "UserService": {"CreateUser", "ListUsers", "GetUser", "UpdateUser", "DeleteUser"},
    "ApiKeyService": {"CreateApiKey", "ListApiKeys", "GetApiKey", "RevokeApiKey"},
    "ToolService": {
        "CreateTool", "ListTools", "GetTool", "UpdateTool", "DeleteTool",
        "SetCredentials", "GetCredentials", "DeleteCredentials", "ListCredentialStatus",
    },
    "ActionService": {
        "CreateAction", "ListActions", "GetAction", "UpdateAction", "DeleteAction", "ExecuteAction",
    },
    "FlowService": {
        "CreateFlow", "ListFlows", "GetFlow", "UpdateFlow", "DeleteFlow", "ListFlowVersions",
        "ExecuteFlow", "ListExecutions", "GetExecution", "CancelExecution", "RetryExecution",
        "GetFlowMetrics", "WatchExecution",
    },
    "ExecutionLogService": {"ListExecutionLogs", "GetExecutionLog", "GetExecutionLogs", "GetStats"},
}  # fmt: skip
STREAMING = {("FlowService", "WatchExecution")}

STRUCT, LIST, VALUE = "google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value"
TIMESTAMP, FIELD_MASK = "google.protobuf.Timestamp", "google.protobuf.FieldMask"


def _modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(entrypoints.grpc.gen.__path__, "entrypoints.grpc.gen.")]
    return [importlib.import_module(name) for name in sorted(names)]


def _files() -> list[FileDescriptor]:
    return [m.DESCRIPTOR for m in _modules() if isinstance(getattr(m, "DESCRIPTOR", None), FileDescriptor)]


def _message(name: str) -> Descriptor:
    _modules()
    return descriptor_pool.Default().FindMessageTypeByName(f"{PACKAGE}.{name}")


def _field(message: str, field: str) -> FieldDescriptor:
    found = _message(message).fields_by_name.get(field)
    assert found is not None, f"{message}.{field} is missing"
    return found


def _type_of(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return {
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BOOL: "bool",
        FieldDescriptor.TYPE_INT32: "int32",
        FieldDescriptor.TYPE_INT64: "int64",
        FieldDescriptor.TYPE_DOUBLE: "double",
    }.get(field.type, str(field.type))


# --- the package ------------------------------------------------------------------------------


def test_every_generated_module_imports_under_the_entrypoints_package() -> None:
    modules = _modules()
    names = {m.__name__.rsplit(".", 1)[1] for m in modules}
    for service in ("organization", "user", "api_key", "tool", "action", "flow", "execution_log"):
        assert {f"{service}_service_pb2", f"{service}_service_pb2_grpc", f"{service}_pb2"} <= names
    assert {"common_pb2", "execution_pb2"} <= names


def test_generated_code_imports_its_siblings_by_their_full_package_name() -> None:
    # protoc writes `from tolstoy.v1 import x_pb2`; the generator rewrites every such import.
    sources = [p for p in GEN.rglob("*.py*") if p.suffix in (".py", ".pyi")]
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) tolstoy\b", text, re.MULTILINE), path
    assert importlib.util.find_spec("tolstoy") is None  # nothing resolves the bare proto package


def test_every_proto_file_is_in_package_tolstoy_v1() -> None:
    files = _files()
    assert {f.name for f in files} >= {f"tolstoy/v1/{s}_service.proto" for s in ("flow", "tool")}
    assert {f.package for f in files} == {PACKAGE}


# --- services and RPCs ------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_has_exactly_the_expected_rpcs(service: str) -> None:
    _modules()
    found = descriptor_pool.Default().FindServiceByName(f"{PACKAGE}.{service}")
    assert {m.name for m in found.methods} == SERVICES[service]


@pytest.mark.parametrize(("service", "rpc"), sorted((s, r) for s, rpcs in SERVICES.items() for r in rpcs))
def test_rpc_has_its_own_request_and_response_and_streams_only_when_watching(service: str, rpc: str) -> None:
    _modules()
    method = descriptor_pool.Default().FindServiceByName(f"{PACKAGE}.{service}").methods_by_name[rpc]
    assert method.input_type.full_name == f"{PACKAGE}.{rpc}Request"
    assert method.output_type.full_name == f"{PACKAGE}.{rpc}Response"
    assert method.client_streaming is False
    assert method.server_streaming is ((service, rpc) in STREAMING)


def test_watch_execution_streams_execution_events() -> None:
    method = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"].methods_by_name["WatchExecution"]
    assert method.server_streaming
    assert _type_of(_field("WatchExecutionResponse", "event")) == f"{PACKAGE}.ExecutionEvent"
    event_types = {v.name for v in execution_pb2.ExecutionEventType.DESCRIPTOR.values}
    for kind in ("FLOW_STARTED", "FLOW_COMPLETED", "FLOW_FAILED", "FLOW_CANCELLED"):
        assert f"EXECUTION_EVENT_TYPE_{kind}" in event_types
    for kind in ("STARTED", "COMPLETED", "FAILED", "SKIPPED"):
        assert f"EXECUTION_EVENT_TYPE_STEP_{kind}" in event_types
    assert _type_of(_field("ExecutionEvent", "payload")) == STRUCT


# --- enums ------------------------------------------------------------------------------------


def _enums() -> list[EnumDescriptor]:
    found: list[EnumDescriptor] = []

    def nested(message: Descriptor) -> None:
        found.extend(message.enum_types)
        for inner in message.nested_types:
            nested(inner)

    for file in _files():
        found.extend(file.enum_types_by_name.values())
        for message in file.message_types_by_name.values():
            nested(message)
    return found


def test_every_enum_starts_with_unspecified_zero() -> None:
    enums = _enums()
    assert {e.name for e in enums} >= {
        "AuthType", "HttpMethod", "ExecutionStatus", "StepStatus", "ExecutionLogStatus", "ExecutionEventType",
    }  # fmt: skip
    for enum in enums:
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper()
        first = enum.values[0]
        assert (first.name, first.number) == (f"{prefix}_UNSPECIFIED", 0), enum.full_name
        assert all(v.name.startswith(f"{prefix}_") for v in enum.values), enum.full_name


def test_enums_hold_the_values_rest_accepts() -> None:
    def values(name: str) -> set[str]:
        enum = descriptor_pool.Default().FindEnumTypeByName(f"{PACKAGE}.{name}")
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() + "_"
        return {v.name.removeprefix(prefix).lower() for v in enum.values} - {"unspecified"}

    _modules()
    # The same sets the domain checks REST values against.
    from domain.execution import EXECUTION_STATUSES, STEP_STATUSES
    from domain.execution_log import LOG_STATUSES
    from domain.tool import AUTH_TYPES, HTTP_METHODS

    assert values("AuthType") == set(AUTH_TYPES)
    assert values("HttpMethod") == {m.lower() for m in HTTP_METHODS}
    assert values("ExecutionStatus") == set(EXECUTION_STATUSES)
    assert values("StepStatus") == set(STEP_STATUSES)
    assert values("ExecutionLogStatus") == set(LOG_STATUSES)


# --- shapes the handlers rely on ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field", "type_"),
    [
        ("Tool", "options", STRUCT),
        ("Action", "headers", STRUCT),
        ("Action", "input_schema", LIST),
        ("Flow", "steps", LIST),
        ("Flow", "settings", STRUCT),
        ("Flow", "created_at", TIMESTAMP),
        ("FlowVersion", "steps", LIST),
        ("Execution", "inputs", STRUCT),
        ("Execution", "outputs", STRUCT),
        ("Execution", "error", STRUCT),
        ("Execution", "status", f"{PACKAGE}.ExecutionStatus"),
        ("Execution", "finished_at", TIMESTAMP),
        ("StepState", "output", VALUE),
        ("StepState", "status", f"{PACKAGE}.StepStatus"),
        ("ExecutionLog", "inputs", STRUCT),
        ("ExecutionLog", "outputs", STRUCT),
        ("ExecutionLog", "error", STRUCT),
        ("ExecutionLog", "status", f"{PACKAGE}.ExecutionLogStatus"),
        ("ExecuteActionRequest", "inputs", STRUCT),
        ("ExecuteActionResponse", "data", VALUE),
        ("ExecuteActionResponse", "status_code", "int32"),
        ("ExecuteFlowRequest", "variables", STRUCT),
        ("ExecuteFlowRequest", "use_durable", "bool"),
        ("ListExecutionsRequest", "status", f"{PACKAGE}.ExecutionStatus"),
        ("ListExecutionsRequest", "page", f"{PACKAGE}.Page"),
        ("RetryExecutionRequest", "resume", "bool"),
        ("GetCredentialsRequest", "unmask", "bool"),
        ("GetStatsRequest", "from_time", TIMESTAMP),
        ("GetStatsRequest", "to_time", TIMESTAMP),
        ("GetStatsResponse", "success_rate", "double"),
        ("GetFlowMetricsResponse", "total_executions", "int64"),
        ("ListExecutionLogsRequest", "status", f"{PACKAGE}.ExecutionLogStatus"),
        ("ListToolsRequest", "auth_type", f"{PACKAGE}.AuthType"),
        ("ListActionsRequest", "method", f"{PACKAGE}.HttpMethod"),
    ],
)
def test_field_has_the_contract_type(message: str, field: str, type_: str) -> None:
    assert _type_of(_field(message, field)) == type_


def test_use_durable_has_presence_so_unset_means_true() -> None:
    assert _field("ExecuteFlowRequest", "use_durable").has_presence
    assert not flow_service_pb2.ExecuteFlowRequest().HasField("use_durable")


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ("UpdateOrganizationRequest", {"name"}),
        ("UpdateUserRequest", {"email", "name"}),
        ("UpdateToolRequest", {"name", "key", "base_url", "auth_type", "options"}),
        ("UpdateActionRequest", {"name", "key", "tool_id", "method", "endpoint", "headers", "input_schema"}),
        ("UpdateFlowRequest", {"name", "description", "steps", "settings"}),
    ],
)
def test_update_requests_say_which_fields_change(message: str, fields: set[str]) -> None:
    descriptor = _message(message)
    assert set(descriptor.fields_by_name) == {"id", "update_mask", *fields}
    assert _type_of(descriptor.fields_by_name["update_mask"]) == FIELD_MASK
    for name in fields:  # unset is distinguishable from empty: scalars are optional, enums UNSPECIFIED
        field = descriptor.fields_by_name[name]
        assert field.has_presence or field.enum_type is not None, f"{message}.{name}"


@pytest.mark.parametrize(
    ("message", "filters"),
    [
        ("ListUsersRequest", {"email"}),
        ("ListToolsRequest", {"key", "auth_type"}),
        ("ListActionsRequest", {"tool_id", "key", "method"}),
        ("ListFlowsRequest", {"name"}),
        ("ListExecutionLogsRequest", {"flow_id", "execution_id", "step_key", "status", "user_id"}),
        ("ListOrganizationsRequest", set()),
        ("ListApiKeysRequest", set()),
        ("ListCredentialStatusRequest", set()),
    ],
)
def test_list_requests_take_a_page_and_the_rest_filters(message: str, filters: set[str]) -> None:
    assert set(_message(message).fields_by_name) == {"page", *filters}
    assert set(_message("Page").fields_by_name) == {"limit", "offset"}


def test_free_form_json_round_trips_through_the_messages() -> None:
    request = flow_service_pb2.CreateFlowRequest(name="Triage")
    request.steps.extend([{"id": "wait", "type": "delay", "config": {"ms": 500}}])
    request.settings.update({"execution": {"retryPolicy": {"maxRetries": 2}}})
    decoded = flow_service_pb2.CreateFlowRequest.FromString(request.SerializeToString())
    assert decoded.steps[0]["config"]["ms"] == 500
    assert decoded.settings["execution"]["retryPolicy"]["maxRetries"] == 2


# --- the generated stubs serve over a real socket ----------------------------------------------


class _Watcher(flow_service_pb2_grpc.FlowServiceServicer):
    async def WatchExecution(self, request, context):
        for kind in ("FLOW_STARTED", "FLOW_COMPLETED"):
            yield flow_service_pb2.WatchExecutionResponse(
                event=execution_pb2.ExecutionEvent(
                    type=execution_pb2.ExecutionEventType.Value(f"EXECUTION_EVENT_TYPE_{kind}"),
                    execution_id=request.execution_id,
                    flow_id=request.flow_id,
                )
            )


async def test_generated_stub_and_servicer_stream_over_grpc_aio() -> None:
    server = grpc.aio.server()
    flow_service_pb2_grpc.add_FlowServiceServicer_to_server(_Watcher(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = flow_service_pb2_grpc.FlowServiceStub(channel)
            call = stub.WatchExecution(flow_service_pb2.WatchExecutionRequest(flow_id="f", execution_id="e"))
            events = [r.event async for r in call]
            assert [execution_pb2.ExecutionEventType.Name(e.type) for e in events] == [
                "EXECUTION_EVENT_TYPE_FLOW_STARTED",
                "EXECUTION_EVENT_TYPE_FLOW_COMPLETED",
            ]
            assert {(e.flow_id, e.execution_id) for e in events} == {("f", "e")}
            with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
                await stub.GetFlow(flow_service_pb2.GetFlowRequest(id="f"))
            assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)


def test_the_deepest_json_the_domain_accepts_is_answered_over_grpc() -> None:
    """protobuf parses at most 100 nested messages (3 per JSON level in a Struct): every document the
    domain stores (domain.rules.DOCUMENT_DEPTH_MAX) must survive being sent and parsed, also
    wrapped a few levels deeper (an event's payload, a log's inputs); one level more is refused."""
    from domain import rules
    from domain.errors import ValidationFailed
    from domain.rules import Problems
    from entrypoints.grpc.convert import to_list, to_struct

    def nested(depth: int) -> dict:
        doc: dict = {"leaf": 1}
        for _ in range(depth - 1):
            doc = {"a": doc}
        return doc  # its leaf sits at ``depth``

    deepest = nested(rules.DOCUMENT_DEPTH_MAX)
    problems = Problems()
    rules.json_object(problems, "variables", deepest)
    problems.raise_if_any()
    wrapped = {"payload": {"outputs": {"step": deepest}}}
    execution = execution_pb2.Execution(inputs=to_struct(wrapped), outputs=to_struct(wrapped))
    assert execution_pb2.Execution.FromString(execution.SerializeToString()) == execution
    steps = [{"id": "s", "type": "http_request", "config": {"body": deepest}}]
    request = flow_service_pb2.CreateFlowRequest(name="Deep", steps=to_list(steps))
    assert flow_service_pb2.CreateFlowRequest.FromString(request.SerializeToString()) == request
    problems = Problems()
    rules.json_object(problems, "variables", nested(rules.DOCUMENT_DEPTH_MAX + 1))
    with pytest.raises(ValidationFailed):
        problems.raise_if_any()


def test_a_flow_is_presented_as_it_is_now_even_when_changed_within_one_millisecond() -> None:
    """The presenter keeps converted steps and settings by (flow, version); the fields that change
    without a new version (name, description, updated_at) are never taken from that copy."""
    from datetime import UTC, datetime

    from domain.flow import Flow
    from entrypoints.grpc import presenters

    now = datetime(2030, 1, 1, tzinfo=UTC)
    steps = [{"id": "a", "type": "delay", "config": {"ms": 5}}]
    first = Flow.build(id="flow_same_ms", now=now, org_id="org_1", name="A", steps=steps, settings={})
    renamed = first.changed(now=now, name="B", description="same millisecond")
    assert (renamed.version, renamed.updated_at) == (first.version, first.updated_at)
    assert presenters.flow(first).name == "A"
    shown = presenters.flow(renamed)
    assert (shown.name, shown.description) == ("B", "same millisecond")
    assert shown.steps[0]["config"]["ms"] == 5
    resteps = renamed.changed(now=now, steps=[{"id": "a", "type": "delay", "config": {"ms": 9}}])
    assert presenters.flow(resteps).steps[0]["config"]["ms"] == 9 and resteps.version == first.version + 1


def test_a_struct_number_is_an_integer_exactly_where_the_domain_takes_integers() -> None:
    from google.protobuf import struct_pb2

    from domain.rules import SAFE_INTEGER_MAX
    from entrypoints.grpc.convert import from_struct

    struct = struct_pb2.Struct()
    struct.update({"safe": float(SAFE_INTEGER_MAX), "beyond": float(SAFE_INTEGER_MAX + 1), "half": 0.5})
    converted = from_struct(struct, "variables")
    assert converted == {"safe": SAFE_INTEGER_MAX, "beyond": float(SAFE_INTEGER_MAX + 1), "half": 0.5}
    assert type(converted["safe"]) is int and type(converted["beyond"]) is float  # no 400 for 2^53
