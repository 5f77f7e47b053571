from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from entrypoints.grpc.gen.tolstoy.v1 import common_pb2 as _common_pb2
from entrypoints.grpc.gen.tolstoy.v1 import tool_pb2 as _tool_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateToolRequest(_message.Message):
    __slots__ = ("name", "key", "base_url", "auth_type", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    base_url: str
    auth_type: _tool_pb2.AuthType
    options: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., base_url: _Optional[str] = ..., auth_type: _Optional[_Union[_tool_pb2.AuthType, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateToolResponse(_message.Message):
    __slots__ = ("tool",)
    TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: _tool_pb2.Tool
    def __init__(self, tool: _Optional[_Union[_tool_pb2.Tool, _Mapping]] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("page", "key", "auth_type")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.Page
    key: str
    auth_type: _tool_pb2.AuthType
    def __init__(self, page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ..., key: _Optional[str] = ..., auth_type: _Optional[_Union[_tool_pb2.AuthType, str]] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_tool_pb2.Tool]
    def __init__(self, tools: _Optional[_Iterable[_Union[_tool_pb2.Tool, _Mapping]]] = ...) -> None: ...

class GetToolRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetToolResponse(_message.Message):
    __slots__ = ("tool",)
    TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: _tool_pb2.Tool
    def __init__(self, tool: _Optional[_Union[_tool_pb2.Tool, _Mapping]] = ...) -> None: ...

class UpdateToolRequest(_message.Message):
    __slots__ = ("id", "name", "key", "base_url", "auth_type", "options", "update_mask")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    key: str
    base_url: str
    auth_type: _tool_pb2.AuthType
    options: _struct_pb2.Struct
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., key: _Optional[str] = ..., base_url: _Optional[str] = ..., auth_type: _Optional[_Union[_tool_pb2.AuthType, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateToolResponse(_message.Message):
    __slots__ = ("tool",)
    TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: _tool_pb2.Tool
    def __init__(self, tool: _Optional[_Union[_tool_pb2.Tool, _Mapping]] = ...) -> None: ...

class DeleteToolRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteToolResponse(_message.Message):
    __slots__ = ("tool",)
    TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: _tool_pb2.Tool
    def __init__(self, tool: _Optional[_Union[_tool_pb2.Tool, _Mapping]] = ...) -> None: ...

class SetCredentialsRequest(_message.Message):
    __slots__ = ("tool_id", "credentials")
    class CredentialsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    credentials: _containers.ScalarMap[str, str]
    def __init__(self, tool_id: _Optional[str] = ..., credentials: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SetCredentialsResponse(_message.Message):
    __slots__ = ("tool_credentials",)
    TOOL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    tool_credentials: _tool_pb2.ToolCredentials
    def __init__(self, tool_credentials: _Optional[_Union[_tool_pb2.ToolCredentials, _Mapping]] = ...) -> None: ...

class GetCredentialsRequest(_message.Message):
    __slots__ = ("tool_id", "unmask")
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    UNMASK_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    unmask: bool
    def __init__(self, tool_id: _Optional[str] = ..., unmask: _Optional[bool] = ...) -> None: ...

class GetCredentialsResponse(_message.Message):
    __slots__ = ("tool_credentials",)
    TOOL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    tool_credentials: _tool_pb2.ToolCredentials
    def __init__(self, tool_credentials: _Optional[_Union[_tool_pb2.ToolCredentials, _Mapping]] = ...) -> None: ...

class DeleteCredentialsRequest(_message.Message):
    __slots__ = ("tool_id",)
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    def __init__(self, tool_id: _Optional[str] = ...) -> None: ...

class DeleteCredentialsResponse(_message.Message):
    __slots__ = ("tool_id", "tool_name", "deleted")
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    tool_name: str
    deleted: bool
    def __init__(self, tool_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class ListCredentialStatusRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.Page
    def __init__(self, page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ...) -> None: ...

class ListCredentialStatusResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_tool_pb2.ToolCredentialStatus]
    def __init__(self, tools: _Optional[_Iterable[_Union[_tool_pb2.ToolCredentialStatus, _Mapping]]] = ...) -> None: ...
