"""REST and gRPC are one API: the same scenario (organization -> tool -> credentials -> action ->
flow -> execute -> logs -> metrics) through each, compared field by field; and objects made
through one transport read identically through the other.

gRPC answers are turned into JSON with protobuf's JSON mapping (camelCase, like REST); then:
enums are compared as REST's strings, int64 (a JSON string there) as numbers, an unset field as
REST's null. Ids differ between the two runs, so they must correspond one to one; times and
durations must both be present (or both null)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from entrypoints.grpc import presenters as p
from entrypoints.grpc.gen.tolstoy.v1 import action_pb2, execution_log_pb2, execution_pb2, tool_pb2
from entrypoints.grpc.gen.tolstoy.v1 import action_service_pb2 as acs
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_service_pb2 as ls
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2 as fs
from entrypoints.grpc.gen.tolstoy.v1 import organization_service_pb2 as os_
from entrypoints.grpc.gen.tolstoy.v1 import tool_service_pb2 as ts
from entrypoints.grpc.gen.tolstoy.v1 import user_service_pb2 as us
from tests.e2e.helpers import created
from tests.grpc.conftest import Client
from tests.grpc.helpers import struct, values
from tests.grpc.helpers import wait as wait_rpc
from tests.support import ADMIN_TOKEN, Api, LiveServer

# enum value name -> REST string ("AUTH_TYPE_API_KEY" -> "api_key")
ENUM_TEXT = {
    name: enum_map.text(number, name)
    for enum, enum_map in (
        (tool_pb2.AuthType, p.AUTH_TYPES),
        (action_pb2.HttpMethod, p.METHODS),
        (execution_pb2.ExecutionStatus, p.EXECUTION_STATUSES),
        (execution_pb2.StepStatus, p.STEP_STATUSES),
        (execution_log_pb2.ExecutionLogStatus, p.LOG_STATUSES),
    )
    for name, number in enum.items()
    if number
}
TIMES = {"createdAt", "updatedAt", "startedAt", "finishedAt", "revokedAt", "nextAttemptAt", "timestamp"}
VOLATILE = {"duration", "avgExecutionTime", "date"}  # present in both runs; values differ by nature
ID = re.compile(r"^(id|.*Id|retryOf|createdBy)$")


def as_json(message: Any) -> Any:
    return MessageToDict(message, always_print_fields_with_no_presence=True)


class Parity:
    """Compares a REST answer with a gRPC one; ids must map one to one across the two runs."""

    def __init__(self, exact: bool = False) -> None:
        self.exact = exact  # the same objects read twice: ids and times must be equal
        self.ids: dict[str, str] = {}
        self.back: dict[str, str] = {}

    def __call__(self, rest: Any, grpc: Any, path: str = "") -> None:
        self.same(rest, as_json(grpc) if hasattr(grpc, "DESCRIPTOR") else grpc, path or "$")

    def same(self, rest: Any, rpc: Any, path: str) -> None:
        key = path.rsplit(".", 1)[-1]
        if rest is None:
            assert rpc is None, f"{path}: REST null, gRPC {rpc!r}"
            return
        assert rpc is not None, f"{path}: REST {rest!r}, gRPC unset"
        if isinstance(rest, dict):
            assert isinstance(rpc, dict), f"{path}: {rpc!r}"
            for name in rest.keys() | rpc.keys():
                if name not in rest and rpc[name] in ([], {}):
                    continue  # an empty repeated field where REST leaves the key out
                self.same(rest.get(name), rpc.get(name), f"{path}.{name}")
            return
        if isinstance(rest, list):
            assert isinstance(rpc, list) and len(rest) == len(rpc), f"{path}: {rest!r} vs {rpc!r}"
            for i, (a, b) in enumerate(zip(rest, rpc, strict=True)):
                self.same(a, b, f"{path}.{i}")
            return
        if key in TIMES:
            if self.exact:
                a, b = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (rest, rpc))
                assert abs((a - b).total_seconds()) < 0.001, f"{path}: {rest} vs {rpc}"
            return
        if isinstance(rpc, str) and rpc in ENUM_TEXT:
            rpc = ENUM_TEXT[rpc]
        if key in VOLATILE and not self.exact:
            return
        if isinstance(rest, bool) or (isinstance(rest, str) and not (ID.match(key) and not self.exact)):
            assert rest == rpc, f"{path}: REST {rest!r}, gRPC {rpc!r}"
            return
        if isinstance(rest, int | float):
            assert float(rest) == float(rpc), f"{path}: REST {rest!r}, gRPC {rpc!r}"
            return
        # an id: the n-th id seen in REST corresponds to the n-th in gRPC, consistently
        assert self.ids.setdefault(rest, rpc) == rpc, f"{path}: {rest} maps to {self.ids[rest]}, not {rpc}"
        assert self.back.setdefault(rpc, rest) == rest, f"{path}: {rpc} maps to {self.back[rpc]}, not {rest}"


def wait_rest(api: Api, flow_id: str, execution_id: str) -> dict[str, Any]:
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        body = api.get(f"/flows/{flow_id}/executions/{execution_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.03)
    raise AssertionError(body)


def test_the_same_scenario_through_rest_and_grpc_gives_the_same_results(
    server: LiveServer, channel: Any, upstream: str
) -> None:
    same = Parity()
    # organization
    rest_org = created(Api(server.url, ADMIN_TOKEN).post("/organizations", json={"name": "Parity"}))
    rpc_org = Client(channel, ADMIN_TOKEN).orgs.CreateOrganization(
        os_.CreateOrganizationRequest(name="Parity")
    )
    same({k: v for k, v in rest_org.items() if k != "apiKey"}, rpc_org.organization)
    api = Api(server.url, rest_org["apiKey"], rest_org["id"])
    rpc = Client(channel, rpc_org.api_key, rpc_org.organization.id)
    user = created(api.post("/users", json={"email": "ada@example.com", "name": "Ada"}))
    rpc_user = rpc.users.CreateUser(us.CreateUserRequest(email="ada@example.com", name="Ada")).user
    same(user, rpc_user)
    api, rpc = api.as_user(user["id"]), rpc.as_user(rpc_user.id)

    # tool and credentials
    tool_in = {
        "name": "Tickets",
        "baseUrl": f"{upstream}/t",
        "authType": "bearer",
        "options": {"timeoutMs": 5000},
    }
    tool = created(api.post("/tools", json=tool_in))
    rpc_tool = rpc.tools.CreateTool(
        ts.CreateToolRequest(
            name="Tickets",
            base_url=f"{upstream}/t",
            auth_type=tool_pb2.AUTH_TYPE_BEARER,
            options=struct({"timeoutMs": 5000}),
        )
    ).tool
    same(tool, rpc_tool)
    secret = {"access_token": "tok-1234567890abcdef"}
    stored = created(api.post(f"/tools/{tool['id']}/secrets", json={"credentials": secret}))
    same(
        stored,
        rpc.tools.SetCredentials(
            ts.SetCredentialsRequest(tool_id=rpc_tool.id, credentials=secret)
        ).tool_credentials,
    )
    same(
        api.get(f"/tools/{tool['id']}/secrets").json(),
        rpc.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=rpc_tool.id)).tool_credentials,
    )
    same(
        api.get(f"/tools/{tool['id']}/secrets", params={"unmask": "true"}).json(),
        rpc.tools.GetCredentials(ts.GetCredentialsRequest(tool_id=rpc_tool.id, unmask=True)).tool_credentials,
    )
    same(
        api.get("/tools/secrets").json(),
        as_json(rpc.tools.ListCredentialStatus(ts.ListCredentialStatusRequest()))["tools"],
    )

    # action, executed on its own
    schema = [{"name": "title", "type": "string", "required": True, "validation": {"min": 2}}]
    action = created(
        api.post(
            "/actions",
            json={
                "name": "Open ticket",
                "toolId": tool["id"],
                "method": "post",
                "endpoint": "/issues",
                "inputSchema": schema,
            },
        )
    )
    rpc_action = rpc.actions.CreateAction(
        acs.CreateActionRequest(
            name="Open ticket",
            tool_id=rpc_tool.id,
            method=action_pb2.HTTP_METHOD_POST,
            endpoint="/issues",
            input_schema=values(schema),
        )
    ).action
    same(action, rpc_action)
    ran = api.post(f"/actions/{action['id']}/execute", json={"inputs": {"title": "Broken"}})
    assert ran.status_code == 200, ran.text
    rpc_ran = rpc.actions.ExecuteAction(
        acs.ExecuteActionRequest(action_id=rpc_action.id, inputs=struct({"title": "Broken"}))
    )
    same(ran.json(), rpc_ran)

    # flow, executed in the request and durably
    steps = [
        {"id": "shape", "type": "data_transform", "config": {"script": "return { title: variables.name.toUpperCase() }"}},
        {"id": "ticket", "type": "action", "config": {"actionKey": "open-ticket", "inputs": {"title": "{{steps.shape.output.title}}"}}},
    ]  # fmt: skip
    flow = created(api.post("/flows", json={"name": "Triage", "description": "d", "steps": steps}))
    rpc_flow = rpc.flows.CreateFlow(
        fs.CreateFlowRequest(name="Triage", description="d", steps=values(steps))
    ).flow
    same(flow, rpc_flow)
    same(api.get(f"/flows/{flow['id']}").json(), rpc.flows.GetFlow(fs.GetFlowRequest(id=rpc_flow.id)).flow)

    direct = api.post(
        f"/flows/{flow['id']}/execute", json={"variables": {"name": "ada"}, "useDurable": False}
    )
    assert direct.status_code == 200, direct.text
    rpc_direct = rpc.flows.ExecuteFlow(
        fs.ExecuteFlowRequest(flow_id=rpc_flow.id, variables=struct({"name": "ada"}), use_durable=False)
    ).execution
    assert direct.json()["status"] == "completed"
    same(direct.json(), rpc_direct)

    queued = api.post(f"/flows/{flow['id']}/execute", json={"variables": {"name": "bob"}})
    assert queued.status_code == 202
    rpc_queued = rpc.flows.ExecuteFlow(
        fs.ExecuteFlowRequest(flow_id=rpc_flow.id, variables=struct({"name": "bob"}))
    ).execution
    same(queued.json(), {k: v for k, v in as_json(rpc_queued).items() if k in queued.json()})
    done = wait_rest(api, flow["id"], queued.json()["executionId"])
    same(done, wait_rpc(rpc, rpc_flow.id, rpc_queued.execution_id))
    same(
        api.get(f"/flows/{flow['id']}/executions").json(),
        as_json(rpc.flows.ListExecutions(fs.ListExecutionsRequest(flow_id=rpc_flow.id)))["executions"],
    )

    # logs, metrics, statistics
    logs = api.get(f"/flows/{flow['id']}/executions/{direct.json()['executionId']}/logs").json()
    rpc_logs = rpc.logs.GetExecutionLogs(
        ls.GetExecutionLogsRequest(flow_id=rpc_flow.id, execution_id=rpc_direct.execution_id)
    )
    assert len(logs) == 2
    same(logs, as_json(rpc_logs)["executionLogs"])
    same(
        api.get("/execution-logs", params={"flowId": flow["id"], "status": "completed"}).json(),
        as_json(rpc.logs.ListExecutionLogs(ls.ListExecutionLogsRequest(flow_id=rpc_flow.id, status=2)))[
            "executionLogs"
        ],
    )
    same(
        api.get(f"/flows/{flow['id']}/metrics").json(),
        rpc.flows.GetFlowMetrics(fs.GetFlowMetricsRequest(flow_id=rpc_flow.id)),
    )
    rest_stats = api.get("/execution-logs/stats").json()
    rpc_stats = as_json(rpc.logs.GetStats(ls.GetStatsRequest()))
    rpc_stats["timeRange"] = {
        "from": rpc_stats["timeRange"].get("fromTime"),
        "to": rpc_stats["timeRange"].get("toTime"),
    }
    same(rest_stats, rpc_stats)
    assert rest_stats["totalExecutions"] == 2 and rest_stats["completedSteps"] == 4


def test_objects_made_through_one_transport_read_the_same_through_the_other(
    server: LiveServer, channel: Any
) -> None:
    body = created(Api(server.url, ADMIN_TOKEN).post("/organizations", json={"name": "Both"}))
    api = Api(server.url, body["apiKey"], body["id"])
    rpc = Client(channel, body["apiKey"], body["id"])
    exact = Parity(exact=True)
    steps = [
        {"id": "s", "type": "data_transform", "config": {"script": "return [1, 2.5, 'x', null, {a: true}]"}}
    ]
    flow = created(
        api.post("/flows", json={"name": "F", "steps": steps, "settings": {"execution": {"timeout": 5000}}})
    )
    exact(flow, rpc.flows.GetFlow(fs.GetFlowRequest(id=flow["id"])).flow)
    rpc_flow = rpc.flows.CreateFlow(fs.CreateFlowRequest(name="G", steps=values(steps))).flow
    exact(api.get(f"/flows/{rpc_flow.id}").json(), rpc_flow)
    run = rpc.flows.ExecuteFlow(fs.ExecuteFlowRequest(flow_id=rpc_flow.id, use_durable=False)).execution
    exact(api.get(f"/flows/{rpc_flow.id}/executions/{run.execution_id}").json(), run)
    assert api.get(f"/flows/{rpc_flow.id}/executions/{run.execution_id}").json()["outputs"]["s"] == [
        1,
        2.5,
        "x",
        None,
        {"a": True},
    ]
    tool = rpc.tools.CreateTool(ts.CreateToolRequest(name="T", base_url="https://t.example.com")).tool
    exact(api.get(f"/tools/{tool.id}").json(), tool)
    exact(api.get("/users").json(), as_json(rpc.users.ListUsers(us.ListUsersRequest())).get("users", []))
