"""Building blocks for the gRPC tests."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from entrypoints.grpc.gen.tolstoy.v1 import execution_pb2
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2 as fs

FINISHED = {
    execution_pb2.EXECUTION_STATUS_COMPLETED,
    execution_pb2.EXECUTION_STATUS_FAILED,
    execution_pb2.EXECUTION_STATUS_CANCELLED,
}


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


def values(data: list[Any]) -> struct_pb2.ListValue:
    out = struct_pb2.ListValue()
    out.extend(data)
    return out


def rpc_error(call: Any, code: grpc.StatusCode) -> grpc.RpcError:
    """Calls ``call()`` and answers the RpcError it must raise with ``code``."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, reason) of each field violation in the error's google.rpc.BadRequest."""
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status details"
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.reason) for v in bad.field_violations]
    return found


def wait(client: Any, flow_id: str, execution_id: str, timeout: float = 20) -> execution_pb2.Execution:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        found = client.flows.GetExecution(
            fs.GetExecutionRequest(flow_id=flow_id, execution_id=execution_id)
        ).execution
        if found.status in FINISHED:
            return found
        time.sleep(0.03)
    raise AssertionError(f"{execution_id} still {found.status}")
