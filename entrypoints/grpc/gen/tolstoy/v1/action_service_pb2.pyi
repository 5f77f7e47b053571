from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from entrypoints.grpc.gen.tolstoy.v1 import action_pb2 as _action_pb2
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateActionRequest(_message.Message):
    __slots__ = ("name", "key", "tool_id", "method", "endpoint", "headers", "input_schema")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    tool_id: str
    method: _action_pb2.HttpMethod
    endpoint: str
    headers: _struct_pb2.Struct
    input_schema: _struct_pb2.ListValue
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., tool_id: _Optional[str] = ..., method: _Optional[_Union[_action_pb2.HttpMethod, str]] = ..., endpoint: _Optional[str] = ..., headers: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., input_schema: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ...) -> None: ...

class CreateActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _action_pb2.Action
    def __init__(self, action: _Optional[_Union[_action_pb2.Action, _Mapping]] = ...) -> None: ...

class ListActionsRequest(_message.Message):
    __slots__ = ("page", "tool_id", "key", "method")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.Page
    tool_id: str
    key: str
    method: _action_pb2.HttpMethod
    def __init__(self, page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ..., tool_id: _Optional[str] = ..., key: _Optional[str] = ..., method: _Optional[_Union[_action_pb2.HttpMethod, str]] = ...) -> None: ...

class ListActionsResponse(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[_action_pb2.Action]
    def __init__(self, actions: _Optional[_Iterable[_Union[_action_pb2.Action, _Mapping]]] = ...) -> None: ...

class GetActionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _action_pb2.Action
    def __init__(self, action: _Optional[_Union[_action_pb2.Action, _Mapping]] = ...) -> None: ...

class UpdateActionRequest(_message.Message):
    __slots__ = ("id", "name", "key", "tool_id", "method", "endpoint", "headers", "input_schema", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    key: str
    tool_id: str
    method: _action_pb2.HttpMethod
    endpoint: str
    headers: _struct_pb2.Struct
    input_schema: _struct_pb2.ListValue
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., key: _Optional[str] = ..., tool_id: _Optional[str] = ..., method: _Optional[_Union[_action_pb2.HttpMethod, str]] = ..., endpoint: _Optional[str] = ..., headers: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., input_schema: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _action_pb2.Action
    def __init__(self, action: _Optional[_Union[_action_pb2.Action, _Mapping]] = ...) -> None: ...

class DeleteActionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _action_pb2.Action
    def __init__(self, action: _Optional[_Union[_action_pb2.Action, _Mapping]] = ...) -> None: ...

class ExecuteActionRequest(_message.Message):
    __slots__ = ("action_id", "inputs")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    inputs: _struct_pb2.Struct
    def __init__(self, action_id: _Optional[str] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ExecuteActionResponse(_message.Message):
    __slots__ = ("success", "status_code", "data", "headers", "duration", "execution_id")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    status_code: int
    data: _struct_pb2.Value
    headers: _containers.ScalarMap[str, str]
    duration: int
    execution_id: str
    def __init__(self, success: _Optional[bool] = ..., status_code: _Optional[int] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., headers: _Optional[_Mapping[str, str]] = ..., duration: _Optional[int] = ..., execution_id: _Optional[str] = ...) -> None: ...
