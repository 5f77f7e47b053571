"""gRPC tests: a channel to the shared `server` (REST and gRPC in one process, per backend), and
stubs that send one organization's metadata on every call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from entrypoints.grpc.gen.tolstoy.v1 import (
    action_service_pb2_grpc,
    api_key_service_pb2_grpc,
    execution_log_service_pb2_grpc,
    flow_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
    tool_service_pb2_grpc,
    user_service_pb2_grpc,
)
from tests.e2e.conftest import Recorder, upstream  # noqa: F401 - the recording upstream fixture
from tests.support import ADMIN_TOKEN, LiveServer

STUBS = {
    "orgs": organization_service_pb2_grpc.OrganizationServiceStub,
    "users": user_service_pb2_grpc.UserServiceStub,
    "keys": api_key_service_pb2_grpc.ApiKeyServiceStub,
    "tools": tool_service_pb2_grpc.ToolServiceStub,
    "actions": action_service_pb2_grpc.ActionServiceStub,
    "flows": flow_service_pb2_grpc.FlowServiceStub,
    "logs": execution_log_service_pb2_grpc.ExecutionLogServiceStub,
}


class _Bound:
    """A stub whose calls carry the client's metadata."""

    def __init__(self, stub: Any, metadata: list[tuple[str, str]]) -> None:
        self._stub, self._metadata = stub, metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            return method(request, metadata=self._metadata, **kwargs)

        return call


class Client:
    """Every tolstoy.v1 service, acting for one organization (or the admin)."""

    def __init__(
        self,
        channel: grpc.Channel,
        token: str | None,
        org_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        self.channel, self.token, self.org_id = channel, token, org_id
        metadata = []
        if token is not None:
            metadata.append(("authorization", f"Bearer {token}"))
        if org_id is not None:
            metadata.append(("x-org-id", org_id))
        if user_id is not None:
            metadata.append(("x-user-id", user_id))
        self.metadata = metadata
        for name, stub in STUBS.items():
            setattr(self, name, _Bound(stub(channel), metadata))

    def as_user(self, user_id: str) -> Client:
        return Client(self.channel, self.token, self.org_id, user_id)

    orgs: Any
    users: Any
    keys: Any
    tools: Any
    actions: Any
    flows: Any
    logs: Any


@pytest.fixture(scope="session")
def channel(server: LiveServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel


@pytest.fixture
def admin_rpc(channel: grpc.Channel) -> Client:
    return Client(channel, ADMIN_TOKEN)


def new_rpc_org(channel: grpc.Channel, name: str = "gRPC Org") -> Client:
    created = Client(channel, ADMIN_TOKEN).orgs.CreateOrganization(
        organization_service_pb2.CreateOrganizationRequest(name=name)
    )
    return Client(channel, created.api_key, created.organization.id)


@pytest.fixture
def rpc(channel: grpc.Channel) -> Client:
    """A fresh organization, over gRPC."""
    return new_rpc_org(channel)
