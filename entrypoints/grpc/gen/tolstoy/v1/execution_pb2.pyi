import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATUS_UNSPECIFIED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_QUEUED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_RUNNING: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_COMPLETED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_FAILED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_CANCELLED: _ClassVar[ExecutionStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_WAITING: _ClassVar[StepStatus]
    STEP_STATUS_COMPLETED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]

class ExecutionEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_EVENT_TYPE_UNSPECIFIED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_FLOW_STARTED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_FLOW_COMPLETED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_FLOW_FAILED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_FLOW_CANCELLED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_STEP_STARTED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_STEP_COMPLETED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_STEP_FAILED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_STEP_SKIPPED: _ClassVar[ExecutionEventType]
EXECUTION_STATUS_UNSPECIFIED: ExecutionStatus
EXECUTION_STATUS_QUEUED: ExecutionStatus
EXECUTION_STATUS_RUNNING: ExecutionStatus
EXECUTION_STATUS_COMPLETED: ExecutionStatus
EXECUTION_STATUS_FAILED: ExecutionStatus
EXECUTION_STATUS_CANCELLED: ExecutionStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_WAITING: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
EXECUTION_EVENT_TYPE_UNSPECIFIED: ExecutionEventType
EXECUTION_EVENT_TYPE_FLOW_STARTED: ExecutionEventType
EXECUTION_EVENT_TYPE_FLOW_COMPLETED: ExecutionEventType
EXECUTION_EVENT_TYPE_FLOW_FAILED: ExecutionEventType
EXECUTION_EVENT_TYPE_FLOW_CANCELLED: ExecutionEventType
EXECUTION_EVENT_TYPE_STEP_STARTED: ExecutionEventType
EXECUTION_EVENT_TYPE_STEP_COMPLETED: ExecutionEventType
EXECUTION_EVENT_TYPE_STEP_FAILED: ExecutionEventType
EXECUTION_EVENT_TYPE_STEP_SKIPPED: ExecutionEventType

class StepState(_message.Message):
    __slots__ = ("step_id", "status", "attempt", "output", "error", "next_attempt_at", "started_at", "finished_at")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    status: StepStatus
    attempt: int
    output: _struct_pb2.Value
    error: _struct_pb2.Struct
    next_attempt_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, step_id: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempt: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("execution_id", "flow_id", "flow_version", "status", "user_id", "user_email", "inputs", "outputs", "error", "retry_of", "resumed", "created_at", "started_at", "finished_at", "duration", "cancel_requested", "steps")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    flow_id: str
    flow_version: int
    status: ExecutionStatus
    user_id: str
    user_email: str
    inputs: _struct_pb2.Struct
    outputs: _struct_pb2.Struct
    error: _struct_pb2.Struct
    retry_of: str
    resumed: bool
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    duration: int
    cancel_requested: bool
    steps: _containers.RepeatedCompositeFieldContainer[StepState]
    def __init__(self, execution_id: _Optional[str] = ..., flow_id: _Optional[str] = ..., flow_version: _Optional[int] = ..., status: _Optional[_Union[ExecutionStatus, str]] = ..., user_id: _Optional[str] = ..., user_email: _Optional[str] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., retry_of: _Optional[str] = ..., resumed: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[int] = ..., cancel_requested: _Optional[bool] = ..., steps: _Optional[_Iterable[_Union[StepState, _Mapping]]] = ...) -> None: ...

class ExecutionEvent(_message.Message):
    __slots__ = ("id", "type", "execution_id", "flow_id", "step_id", "timestamp", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: ExecutionEventType
    execution_id: str
    flow_id: str
    step_id: str
    timestamp: _timestamp_pb2.Timestamp
    payload: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[ExecutionEventType, str]] = ..., execution_id: _Optional[str] = ..., flow_id: _Optional[str] = ..., step_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
