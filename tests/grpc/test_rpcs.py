"""Every tolstoy.v1 RPC over a real port, on each database: what it answers and what it changes."""

from __future__ import annotations

import time

import grpc
from google.protobuf import field_mask_pb2

from entrypoints.grpc.gen.tolstoy.v1 import action_pb2, execution_log_pb2, execution_pb2, tool_pb2
from entrypoints.grpc.gen.tolstoy.v1 import action_service_pb2 as acs
from entrypoints.grpc.gen.tolstoy.v1 import api_key_service_pb2 as ks
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as common
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_service_pb2 as ls
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2 as fs
from entrypoints.grpc.gen.tolstoy.v1 import organization_service_pb2 as os_
from entrypoints.grpc.gen.tolstoy.v1 import tool_service_pb2 as ts
from entrypoints.grpc.gen.tolstoy.v1 import user_service_pb2 as us
from tests.grpc.conftest import Client
from tests.grpc.helpers import rpc_error, struct, values, violations, wait

Code = grpc.StatusCode


def test_organizations(admin_rpc: Client, channel: grpc.Channel) -> None:
    created = admin_rpc.orgs.CreateOrganization(os_.CreateOrganizationRequest(name="Acme"))
    org = created.organization
    assert org.id.startswith("org_") and org.name == "Acme" and created.api_key.startswith("tsk_")
    assert org.created_at.seconds > 0 and org.updated_at == org.created_at
    assert admin_rpc.orgs.GetOrganization(os_.GetOrganizationRequest(id=org.id)).organization == org
    listed = admin_rpc.orgs.ListOrganizations(os_.ListOrganizationsRequest(page=common.Page(limit=500)))
    assert org.id in [o.id for o in listed.organizations]

    own = Client(channel, created.api_key, org.id)
    assert [o.id for o in own.orgs.ListOrganizations(os_.ListOrganizationsRequest()).organizations] == [
        org.id
    ]
    renamed = own.orgs.UpdateOrganization(os_.UpdateOrganizationRequest(id=org.id, name="Acme Corp"))
    assert renamed.organization.name == "Acme Corp"
    unchanged = own.orgs.UpdateOrganization(os_.UpdateOrganizationRequest(id=org.id))
    assert unchanged.organization.name == "Acme Corp"
    rpc_error(
        lambda: own.orgs.CreateOrganization(os_.CreateOrganizationRequest(name="x")), Code.PERMISSION_DENIED
    )
    rpc_error(
        lambda: own.orgs.DeleteOrganization(os_.DeleteOrganizationRequest(id=org.id)), Code.PERMISSION_DENIED
    )

    deleted = admin_rpc.orgs.DeleteOrganization(os_.DeleteOrganizationRequest(id=org.id)).organization
    assert deleted.id == org.id
    rpc_error(lambda: admin_rpc.orgs.GetOrganization(os_.GetOrganizationRequest(id=org.id)), Code.NOT_FOUND)
    rpc_error(lambda: own.users.ListUsers(us.ListUsersRequest()), Code.UNAUTHENTICATED)  # its key is gone


def test_users(rpc: Client) -> None:
    user = rpc.users.CreateUser(us.CreateUserRequest(email="ada@example.com", name="Ada")).user
    assert user.id.startswith("usr_") and user.org_id == rpc.org_id and user.name == "Ada"
    bare = rpc.users.CreateUser(us.CreateUserRequest(email="bob@example.com")).user
    assert not bare.HasField("name")
    assert rpc.users.GetUser(us.GetUserRequest(id=user.id)).user == user
    found = rpc.users.ListUsers(us.ListUsersRequest(email="ada@example.com")).users
    assert [u.id for u in found] == [user.id]
    assert [u.id for u in rpc.users.ListUsers(us.ListUsersRequest()).users] == [bare.id, user.id]
    assert [
        u.id for u in rpc.users.ListUsers(us.ListUsersRequest(page=common.Page(limit=1, offset=1))).users
    ] == [user.id]

    renamed = rpc.users.UpdateUser(us.UpdateUserRequest(id=user.id, name="Ada L.")).user
    assert renamed.name == "Ada L." and renamed.email == "ada@example.com"
    # update_mask: exactly the named fields change; a named field left unset is cleared (REST null)
    cleared = rpc.users.UpdateUser(
        us.UpdateUserRequest(
            id=user.id, email="x@example.com", update_mask=field_mask_pb2.FieldMask(paths=["name"])
        )
    ).user
    assert not cleared.HasField("name") and cleared.email == "ada@example.com"

    assert rpc.users.DeleteUser(us.DeleteUserRequest(id=user.id)).user.id == user.id
    rpc_error(lambda: rpc.users.GetUser(us.GetUserRequest(id=user.id)), Code.NOT_FOUND)


def test_api_keys(rpc: Client, channel: grpc.Channel) -> None:
    issued = rpc.keys.CreateApiKey(ks.CreateApiKeyRequest(name="ci"))
    key = issued.api_key
    assert issued.key.startswith(key.prefix) and key.name == "ci" and not key.HasField("revoked_at")
    assert rpc.keys.GetApiKey(ks.GetApiKeyRequest(id=key.id)).api_key == key
    assert key.id in [k.id for k in rpc.keys.ListApiKeys(ks.ListApiKeysRequest()).api_keys]

    spare = Client(channel, issued.key, rpc.org_id)
    assert spare.users.ListUsers(us.ListUsersRequest()).users == []
    revoked = rpc.keys.RevokeApiKey(ks.RevokeApiKeyRequest(id=key.id)).api_key
    assert revoked.HasField("revoked_at")
    rpc_error(lambda: spare.users.ListUsers(us.ListUsersRequest()), Code.UNAUTHENTICATED)


def test_tools_and_credentials(rpc: Client) -> None:
    tool = rpc.tools.CreateTool(
        ts.CreateToolRequest(
            name="Slack API",
            base_url="https://slack.example.com",
            auth_type=tool_pb2.AUTH_TYPE_BEARER,
            options=struct({"timeoutMs": 5000}),
        )
    ).tool
    assert tool.key == "slack-api" and tool.auth_type == tool_pb2.AUTH_TYPE_BEARER
    assert dict(tool.options) == {"timeoutMs": 5000}
    plain = rpc.tools.CreateTool(
        ts.CreateToolRequest(name="Plain", key="plain", base_url="https://p.example.com")
    ).tool
    assert plain.auth_type == tool_pb2.AUTH_TYPE_NONE
    assert rpc.tools.GetTool(ts.GetToolRequest(id=tool.id)).tool == tool
    bearer = rpc.tools.ListTools(ts.ListToolsRequest(auth_type=tool_pb2.AUTH_TYPE_BEARER)).tools
    assert [t.id for t in bearer] == [tool.id]
    assert [t.id for t in rpc.tools.ListTools(ts.ListToolsRequest(key="plain")).tools] == [plain.id]
    updated = rpc.tools.UpdateTool(
        ts.UpdateToolRequest(id=tool.id, auth_type=tool_pb2.AUTH_TYPE_API_KEY)
    ).tool
    assert updated.auth_type == tool_pb2.AUTH_TYPE_API_KEY and updated.name == "Slack API"

    stored = rpc.tools.SetCredentials(
        ts.SetCredentialsRequest(tool_id=tool.id, credentials={"api_key": "sk-1234567890abcdef"})
    ).tool_credentials
    assert stored.tool_name == "Slack API" and dict(stored.masked_credentials) == {
        "api_key": "sk-12***********cdef"
    }
    assert not stored.credentials
    masked = rpc.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=tool.id)).tool_credentials
    assert dict(masked.masked_credentials) == {"api_key": "sk-12***********cdef"}
    clear = rpc.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=tool.id, unmask=True)).tool_credentials
    assert dict(clear.credentials) == {"api_key": "sk-1234567890abcdef"} and not clear.masked_credentials
    statuses = {s.tool_id: s for s in rpc.tools.ListCredentialStatus(ts.ListCredentialStatusRequest()).tools}
    assert statuses[tool.id].has_credentials and list(statuses[tool.id].credential_keys) == ["api_key"]
    assert not statuses[plain.id].has_credentials and not statuses[plain.id].credential_keys
    assert statuses[tool.id].auth_type == tool_pb2.AUTH_TYPE_API_KEY
    gone = rpc.tools.DeleteCredentials(ts.DeleteCredentialsRequest(tool_id=tool.id))
    assert (gone.tool_id, gone.tool_name, gone.deleted) == (tool.id, "Slack API", True)
    rpc_error(lambda: rpc.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=tool.id)), Code.NOT_FOUND)

    assert rpc.tools.DeleteTool(ts.DeleteToolRequest(id=plain.id)).tool.id == plain.id
    rpc_error(lambda: rpc.tools.GetTool(ts.GetToolRequest(id=plain.id)), Code.NOT_FOUND)


def test_actions(rpc: Client, upstream: str) -> None:
    tool = rpc.tools.CreateTool(ts.CreateToolRequest(name="Tickets", base_url=f"{upstream}/t")).tool
    action = rpc.actions.CreateAction(
        acs.CreateActionRequest(
            name="Open ticket",
            tool_id=tool.id,
            method=action_pb2.HTTP_METHOD_POST,
            endpoint="/issues",
            headers=struct({"X-Trace": "{{inputs.title}}"}),
            input_schema=values([{"name": "title", "type": "string", "required": True}]),
        )
    ).action
    assert action.key == "open-ticket" and action.method == action_pb2.HTTP_METHOD_POST
    assert action.input_schema[0]["name"] == "title"
    assert rpc.actions.GetAction(acs.GetActionRequest(id=action.id)).action == action
    listed = rpc.actions.ListActions(
        acs.ListActionsRequest(tool_id=tool.id, method=action_pb2.HTTP_METHOD_POST)
    )
    assert [a.id for a in listed.actions] == [action.id]
    assert rpc.actions.ListActions(acs.ListActionsRequest(method=action_pb2.HTTP_METHOD_GET)).actions == []
    renamed = rpc.actions.UpdateAction(acs.UpdateActionRequest(id=action.id, name="Open a ticket")).action
    assert renamed.name == "Open a ticket" and renamed.key == "open-ticket"

    result = rpc.actions.ExecuteAction(
        acs.ExecuteActionRequest(action_id=action.id, inputs=struct({"title": "Hi"}))
    )
    assert result.success and result.status_code == 201 and result.execution_id
    assert dict(result.data.struct_value) == {"id": "10000", "key": "PROJ-1"}
    assert result.headers["x-request-id"] == "req-42" and result.duration >= 0
    bad = rpc_error(
        lambda: rpc.actions.ExecuteAction(acs.ExecuteActionRequest(action_id=action.id)),
        Code.INVALID_ARGUMENT,
    )
    assert ("title", "required") in violations(bad)

    rpc_error(lambda: rpc.tools.DeleteTool(ts.DeleteToolRequest(id=tool.id)), Code.FAILED_PRECONDITION)
    assert rpc.actions.DeleteAction(acs.DeleteActionRequest(id=action.id)).action.id == action.id
    rpc_error(lambda: rpc.actions.GetAction(acs.GetActionRequest(id=action.id)), Code.NOT_FOUND)


STEPS = [{"id": "hello", "type": "data_transform", "config": {"script": "return 'hi ' + variables.who"}}]


def test_flows_and_versions(rpc: Client) -> None:
    flow = rpc.flows.CreateFlow(
        fs.CreateFlowRequest(name="Greet", description="says hi", steps=values(STEPS))
    ).flow
    assert flow.version == 1 and flow.description == "says hi" and flow.steps[0]["id"] == "hello"
    assert rpc.flows.GetFlow(fs.GetFlowRequest(id=flow.id)).flow == flow
    assert [f.id for f in rpc.flows.ListFlows(fs.ListFlowsRequest(name="Greet")).flows] == [flow.id]
    steps = [*STEPS, {"id": "wait", "type": "delay", "config": {"ms": 5}}]
    updated = rpc.flows.UpdateFlow(fs.UpdateFlowRequest(id=flow.id, steps=values(steps))).flow
    assert updated.version == 2 and updated.name == "Greet" and len(updated.steps) == 2
    cleared = rpc.flows.UpdateFlow(
        fs.UpdateFlowRequest(id=flow.id, update_mask=field_mask_pb2.FieldMask(paths=["description"]))
    ).flow
    assert not cleared.HasField("description") and cleared.version == 2
    versions = rpc.flows.ListFlowVersions(fs.ListFlowVersionsRequest(flow_id=flow.id)).versions
    assert [v.version for v in versions] == [2, 1] and len(versions[1].steps) == 1
    assert rpc.flows.DeleteFlow(fs.DeleteFlowRequest(id=flow.id)).flow.id == flow.id
    rpc_error(lambda: rpc.flows.GetFlow(fs.GetFlowRequest(id=flow.id)), Code.NOT_FOUND)


def test_executions(rpc: Client) -> None:
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Greet", steps=values(STEPS))).flow
    direct = rpc.flows.ExecuteFlow(
        fs.ExecuteFlowRequest(flow_id=flow.id, variables=struct({"who": "bob"}), use_durable=False)
    ).execution
    assert direct.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert dict(direct.outputs) == {"hello": "hi bob"} and dict(direct.inputs) == {"who": "bob"}
    assert [(s.step_id, s.status) for s in direct.steps] == [("hello", execution_pb2.STEP_STATUS_COMPLETED)]
    assert direct.steps[0].output.string_value == "hi bob" and direct.HasField("duration")

    queued = rpc.flows.ExecuteFlow(
        fs.ExecuteFlowRequest(flow_id=flow.id, variables=struct({"who": "eve"}))
    ).execution
    assert queued.status == execution_pb2.EXECUTION_STATUS_QUEUED and not queued.steps
    done = wait(rpc, flow.id, queued.execution_id)
    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED and dict(done.outputs) == {
        "hello": "hi eve"
    }

    listed = rpc.flows.ListExecutions(fs.ListExecutionsRequest(flow_id=flow.id)).executions
    assert [e.execution_id for e in listed] == [queued.execution_id, direct.execution_id]
    assert all(not e.steps for e in listed)
    failed = fs.ListExecutionsRequest(flow_id=flow.id, status=execution_pb2.EXECUTION_STATUS_FAILED)
    assert rpc.flows.ListExecutions(failed).executions == []

    retried = rpc.flows.RetryExecution(
        fs.RetryExecutionRequest(flow_id=flow.id, execution_id=done.execution_id)
    ).execution
    assert retried.retry_of == done.execution_id and not retried.resumed
    wait(rpc, flow.id, retried.execution_id)
    rpc_error(
        lambda: rpc.flows.RetryExecution(
            fs.RetryExecutionRequest(flow_id=flow.id, execution_id=done.execution_id, resume=True)
        ),
        Code.FAILED_PRECONDITION,
    )

    metrics = rpc.flows.GetFlowMetrics(fs.GetFlowMetricsRequest(flow_id=flow.id))
    assert metrics.total_executions == 3 and metrics.success_rate == 100.0
    assert dict(metrics.status_breakdown) == {
        "completed": 3,
        "failed": 0,
        "running": 0,
        "queued": 0,
        "cancelled": 0,
    }


def test_cancel(rpc: Client) -> None:
    steps = [{"id": "wait", "type": "delay", "config": {"ms": 60_000}}]
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Slow", steps=values(steps))).flow
    started = rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=flow.id)).execution
    ids = fs.CancelExecutionRequest(flow_id=flow.id, execution_id=started.execution_id)
    cancelled = rpc.flows.CancelExecution(ids).execution
    assert cancelled.cancel_requested
    assert wait(rpc, flow.id, started.execution_id).status == execution_pb2.EXECUTION_STATUS_CANCELLED
    rpc_error(lambda: rpc.flows.CancelExecution(ids), Code.FAILED_PRECONDITION)


def test_execution_logs_and_stats(rpc: Client) -> None:
    flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="Greet", steps=values(STEPS))).flow
    run = rpc.flows.ExecuteFlow(
        fs.ExecuteFlowRequest(flow_id=flow.id, variables=struct({"who": "x"}), use_durable=False)
    ).execution
    logs = rpc.logs.GetExecutionLogs(
        ls.GetExecutionLogsRequest(flow_id=flow.id, execution_id=run.execution_id)
    ).execution_logs
    assert [(log.step_key, log.status) for log in logs] == [
        ("hello", execution_log_pb2.EXECUTION_LOG_STATUS_COMPLETED)
    ]
    alone = ls.GetExecutionLogsRequest(execution_id=run.execution_id)  # no flow_id: by its id alone
    assert rpc.logs.GetExecutionLogs(alone).execution_logs == logs
    log = logs[0]
    assert log.outputs["output"] == "hi x" and log.inputs["stepType"] == "data_transform"
    assert rpc.logs.GetExecutionLog(ls.GetExecutionLogRequest(id=log.id)).execution_log == log
    listed = rpc.logs.ListExecutionLogs(
        ls.ListExecutionLogsRequest(flow_id=flow.id, status=execution_log_pb2.EXECUTION_LOG_STATUS_COMPLETED)
    ).execution_logs
    assert [e.id for e in listed] == [log.id]
    none = ls.ListExecutionLogsRequest(execution_id=run.execution_id, step_key="nope")
    assert rpc.logs.ListExecutionLogs(none).execution_logs == []

    stats = rpc.logs.GetStats(ls.GetStatsRequest())
    assert stats.total_executions == 1 and stats.completed_steps == 1 and stats.success_rate == 100.0
    assert not stats.time_range.HasField("from_time")
    since = rpc.logs.GetStats(ls.GetStatsRequest(from_time=log.created_at))
    assert since.completed_steps == 1 and since.time_range.from_time == log.created_at
    later = log.created_at.__class__(seconds=int(time.time()) + 3600)
    assert rpc.logs.GetStats(ls.GetStatsRequest(from_time=later)).completed_steps == 0
    rpc_error(
        lambda: rpc.logs.GetStats(ls.GetStatsRequest(from_time=later, to_time=log.created_at)),
        Code.INVALID_ARGUMENT,
    )
