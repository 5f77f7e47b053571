import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionLogStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_LOG_STATUS_UNSPECIFIED: _ClassVar[ExecutionLogStatus]
    EXECUTION_LOG_STATUS_STARTED: _ClassVar[ExecutionLogStatus]
    EXECUTION_LOG_STATUS_COMPLETED: _ClassVar[ExecutionLogStatus]
    EXECUTION_LOG_STATUS_FAILED: _ClassVar[ExecutionLogStatus]
    EXECUTION_LOG_STATUS_SKIPPED: _ClassVar[ExecutionLogStatus]
EXECUTION_LOG_STATUS_UNSPECIFIED: ExecutionLogStatus
EXECUTION_LOG_STATUS_STARTED: ExecutionLogStatus
EXECUTION_LOG_STATUS_COMPLETED: ExecutionLogStatus
EXECUTION_LOG_STATUS_FAILED: ExecutionLogStatus
EXECUTION_LOG_STATUS_SKIPPED: ExecutionLogStatus

class ExecutionLog(_message.Message):
    __slots__ = ("id", "org_id", "user_id", "flow_id", "execution_id", "step_key", "status", "inputs", "outputs", "error", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    user_id: str
    flow_id: str
    execution_id: str
    step_key: str
    status: ExecutionLogStatus
    inputs: _struct_pb2.Struct
    outputs: _struct_pb2.Struct
    error: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., user_id: _Optional[str] = ..., flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., step_key: _Optional[str] = ..., status: _Optional[_Union[ExecutionLogStatus, str]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
