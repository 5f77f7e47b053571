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

class AuthType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_TYPE_UNSPECIFIED: _ClassVar[AuthType]
    AUTH_TYPE_NONE: _ClassVar[AuthType]
    AUTH_TYPE_BEARER: _ClassVar[AuthType]
    AUTH_TYPE_API_KEY: _ClassVar[AuthType]
    AUTH_TYPE_BASIC: _ClassVar[AuthType]
    AUTH_TYPE_OAUTH2: _ClassVar[AuthType]
AUTH_TYPE_UNSPECIFIED: AuthType
AUTH_TYPE_NONE: AuthType
AUTH_TYPE_BEARER: AuthType
AUTH_TYPE_API_KEY: AuthType
AUTH_TYPE_BASIC: AuthType
AUTH_TYPE_OAUTH2: AuthType

class Tool(_message.Message):
    __slots__ = ("id", "org_id", "name", "key", "base_url", "auth_type", "options", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    name: str
    key: str
    base_url: str
    auth_type: AuthType
    options: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., name: _Optional[str] = ..., key: _Optional[str] = ..., base_url: _Optional[str] = ..., auth_type: _Optional[_Union[AuthType, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ToolCredentials(_message.Message):
    __slots__ = ("tool_id", "tool_name", "masked_credentials", "credentials", "created_at", "updated_at")
    class MaskedCredentialsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CredentialsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    MASKED_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    tool_name: str
    masked_credentials: _containers.ScalarMap[str, str]
    credentials: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, tool_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., masked_credentials: _Optional[_Mapping[str, str]] = ..., credentials: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ToolCredentialStatus(_message.Message):
    __slots__ = ("tool_id", "tool_name", "base_url", "auth_type", "has_credentials", "credential_keys")
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    HAS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_KEYS_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    tool_name: str
    base_url: str
    auth_type: AuthType
    has_credentials: bool
    credential_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tool_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., base_url: _Optional[str] = ..., auth_type: _Optional[_Union[AuthType, str]] = ..., has_credentials: _Optional[bool] = ..., credential_keys: _Optional[_Iterable[str]] = ...) -> None: ...
