from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as _common_pb2
from entrypoints.grpc.gen.tolstoy.v1 import execution_pb2 as _execution_pb2
from entrypoints.grpc.gen.tolstoy.v1 import flow_pb2 as _flow_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateFlowRequest(_message.Message):
    __slots__ = ("name", "description", "steps", "settings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    steps: _struct_pb2.ListValue
    settings: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., steps: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: _flow_pb2.Flow
    def __init__(self, flow: _Optional[_Union[_flow_pb2.Flow, _Mapping]] = ...) -> None: ...

class ListFlowsRequest(_message.Message):
    __slots__ = ("page", "name")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.Page
    name: str
    def __init__(self, page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ListFlowsResponse(_message.Message):
    __slots__ = ("flows",)
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[_flow_pb2.Flow]
    def __init__(self, flows: _Optional[_Iterable[_Union[_flow_pb2.Flow, _Mapping]]] = ...) -> None: ...

class GetFlowRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: _flow_pb2.Flow
    def __init__(self, flow: _Optional[_Union[_flow_pb2.Flow, _Mapping]] = ...) -> None: ...

class UpdateFlowRequest(_message.Message):
    __slots__ = ("id", "name", "description", "steps", "settings", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    steps: _struct_pb2.ListValue
    settings: _struct_pb2.Struct
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., steps: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: _flow_pb2.Flow
    def __init__(self, flow: _Optional[_Union[_flow_pb2.Flow, _Mapping]] = ...) -> None: ...

class DeleteFlowRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: _flow_pb2.Flow
    def __init__(self, flow: _Optional[_Union[_flow_pb2.Flow, _Mapping]] = ...) -> None: ...

class ListFlowVersionsRequest(_message.Message):
    __slots__ = ("flow_id", "page")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    page: _common_pb2.Page
    def __init__(self, flow_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ...) -> None: ...

class ListFlowVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[_flow_pb2.FlowVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[_flow_pb2.FlowVersion, _Mapping]]] = ...) -> None: ...

class ExecuteFlowRequest(_message.Message):
    __slots__ = ("flow_id", "variables", "use_durable")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    USE_DURABLE_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    variables: _struct_pb2.Struct
    use_durable: bool
    def __init__(self, flow_id: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., use_durable: _Optional[bool] = ...) -> None: ...

class ExecuteFlowResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: _execution_pb2.Execution
    def __init__(self, execution: _Optional[_Union[_execution_pb2.Execution, _Mapping]] = ...) -> None: ...

class ListExecutionsRequest(_message.Message):
    __slots__ = ("flow_id", "status", "page")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    status: _execution_pb2.ExecutionStatus
    page: _common_pb2.Page
    def __init__(self, flow_id: _Optional[str] = ..., status: _Optional[_Union[_execution_pb2.ExecutionStatus, str]] = ..., page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ...) -> None: ...

class ListExecutionsResponse(_message.Message):
    __slots__ = ("executions",)
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[_execution_pb2.Execution]
    def __init__(self, executions: _Optional[_Iterable[_Union[_execution_pb2.Execution, _Mapping]]] = ...) -> None: ...

class GetExecutionRequest(_message.Message):
    __slots__ = ("flow_id", "execution_id")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    execution_id: str
    def __init__(self, flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ...) -> None: ...

class GetExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: _execution_pb2.Execution
    def __init__(self, execution: _Optional[_Union[_execution_pb2.Execution, _Mapping]] = ...) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("flow_id", "execution_id")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    execution_id: str
    def __init__(self, flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ...) -> None: ...

class CancelExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: _execution_pb2.Execution
    def __init__(self, execution: _Optional[_Union[_execution_pb2.Execution, _Mapping]] = ...) -> None: ...

class RetryExecutionRequest(_message.Message):
    __slots__ = ("flow_id", "execution_id", "resume")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    execution_id: str
    resume: bool
    def __init__(self, flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., resume: _Optional[bool] = ...) -> None: ...

class RetryExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: _execution_pb2.Execution
    def __init__(self, execution: _Optional[_Union[_execution_pb2.Execution, _Mapping]] = ...) -> None: ...

class GetFlowMetricsRequest(_message.Message):
    __slots__ = ("flow_id",)
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    def __init__(self, flow_id: _Optional[str] = ...) -> None: ...

class GetFlowMetricsResponse(_message.Message):
    __slots__ = ("total_executions", "status_breakdown", "success_rate")
    class StatusBreakdownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    total_executions: int
    status_breakdown: _containers.ScalarMap[str, int]
    success_rate: float
    def __init__(self, total_executions: _Optional[int] = ..., status_breakdown: _Optional[_Mapping[str, int]] = ..., success_rate: _Optional[float] = ...) -> None: ...

class WatchExecutionRequest(_message.Message):
    __slots__ = ("flow_id", "execution_id")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    execution_id: str
    def __init__(self, flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ...) -> None: ...

class WatchExecutionResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _execution_pb2.ExecutionEvent
    def __init__(self, event: _Optional[_Union[_execution_pb2.ExecutionEvent, _Mapping]] = ...) -> None: ...
