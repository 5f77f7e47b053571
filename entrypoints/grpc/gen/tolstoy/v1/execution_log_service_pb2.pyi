import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as _common_pb2
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_pb2 as _execution_log_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListExecutionLogsRequest(_message.Message):
    __slots__ = ("page", "flow_id", "execution_id", "step_key", "status", "user_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.Page
    flow_id: str
    execution_id: str
    step_key: str
    status: _execution_log_pb2.ExecutionLogStatus
    user_id: str
    def __init__(self, page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ..., flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., step_key: _Optional[str] = ..., status: _Optional[_Union[_execution_log_pb2.ExecutionLogStatus, str]] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListExecutionLogsResponse(_message.Message):
    __slots__ = ("execution_logs",)
    EXECUTION_LOGS_FIELD_NUMBER: _ClassVar[int]
    execution_logs: _containers.RepeatedCompositeFieldContainer[_execution_log_pb2.ExecutionLog]
    def __init__(self, execution_logs: _Optional[_Iterable[_Union[_execution_log_pb2.ExecutionLog, _Mapping]]] = ...) -> None: ...

class GetExecutionLogRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetExecutionLogResponse(_message.Message):
    __slots__ = ("execution_log",)
    EXECUTION_LOG_FIELD_NUMBER: _ClassVar[int]
    execution_log: _execution_log_pb2.ExecutionLog
    def __init__(self, execution_log: _Optional[_Union[_execution_log_pb2.ExecutionLog, _Mapping]] = ...) -> None: ...

class GetExecutionLogsRequest(_message.Message):
    __slots__ = ("flow_id", "execution_id")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    execution_id: str
    def __init__(self, flow_id: _Optional[str] = ..., execution_id: _Optional[str] = ...) -> None: ...

class GetExecutionLogsResponse(_message.Message):
    __slots__ = ("execution_logs",)
    EXECUTION_LOGS_FIELD_NUMBER: _ClassVar[int]
    execution_logs: _containers.RepeatedCompositeFieldContainer[_execution_log_pb2.ExecutionLog]
    def __init__(self, execution_logs: _Optional[_Iterable[_Union[_execution_log_pb2.ExecutionLog, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("from_time", "to_time")
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    def __init__(self, from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("total_executions", "completed_steps", "failed_steps", "skipped_steps", "avg_execution_time", "success_rate", "time_range")
    TOTAL_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_STEPS_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEPS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STEPS_FIELD_NUMBER: _ClassVar[int]
    AVG_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    total_executions: int
    completed_steps: int
    failed_steps: int
    skipped_steps: int
    avg_execution_time: int
    success_rate: float
    time_range: _common_pb2.TimeRange
    def __init__(self, total_executions: _Optional[int] = ..., completed_steps: _Optional[int] = ..., failed_steps: _Optional[int] = ..., skipped_steps: _Optional[int] = ..., avg_execution_time: _Optional[int] = ..., success_rate: _Optional[float] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...
