"""What every servicer shares: the container, who is calling, errors, and update requests."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from application.tenancy import Caller, TenantContext
from domain.errors import FieldError, ValidationFailed
from domain.rules import UNSET
from entrypoints.container import Container
from entrypoints.grpc import auth
from entrypoints.grpc.convert import EnumMap, from_list, from_struct
from entrypoints.grpc.errors import streaming, unary

Context = grpc.aio.ServicerContext


class Servicer:
    """Wraps each RPC of ``service`` so that domain errors become statuses (entrypoints.grpc.errors)."""

    service: ClassVar[ServiceDescriptor]

    def __init__(self, container: Container) -> None:
        self.container = container
        self.authenticator = container.authenticator()
        for method in self.service.methods:
            behavior = getattr(self, method.name)
            name = f"/{self.service.full_name}/{method.name}"
            wrap = streaming if method.server_streaming else unary
            setattr(self, method.name, wrap(behavior, name))

    async def tenant(self, context: Context) -> TenantContext:
        return await auth.tenant(self.authenticator, context)

    async def caller(self, context: Context) -> Caller:
        return await auth.caller(self.authenticator, context)


# How an update request gives a field: scalars and messages by presence, enums when not zero.
SCALAR, STRUCT, LIST = "scalar", "struct", "list"


def _read(request: Any, name: str, kind: str | EnumMap) -> tuple[bool, Any]:
    if isinstance(kind, EnumMap):
        number = getattr(request, name)
        return number != 0, kind.text(number, name)
    if not request.HasField(name):
        return False, None
    value = getattr(request, name)
    if kind == STRUCT:
        return True, from_struct(value, name)
    if kind == LIST:
        return True, from_list(value, name)
    return True, value


def changes(request: Any, fields: dict[str, str | EnumMap]) -> dict[str, Any]:
    """The changes an Update request asks for, under the domain's names; UNSET for the others.

    Without ``update_mask`` a field changes when it is given. With one, exactly the fields it names
    change, to their value or, when left unset, to null (REST ``"field": null``)."""
    if request.HasField("update_mask"):
        paths = list(request.update_mask.paths)
        unknown = [p for p in paths if p not in fields]
        if unknown:
            raise ValidationFailed(
                [
                    FieldError(
                        "update_mask",
                        f"Unknown field '{p}' (expected one of {', '.join(fields)})",
                        "invalid_field",
                    )
                    for p in unknown
                ]
            )
        return {
            name: _read(request, name, kind)[1] if name in paths else UNSET for name, kind in fields.items()
        }
    out = {}
    for name, kind in fields.items():
        present, value = _read(request, name, kind)
        out[name] = value if present else UNSET
    return out


def present(**fields: Any) -> dict[str, Any]:
    """The create fields the caller gave (REST: sent); the use case applies its defaults to the rest."""
    return {k: v for k, v in fields.items() if v is not None}


def given(request: Any, name: str) -> Any:
    """An ``optional`` scalar: its value when present, else None."""
    return getattr(request, name) if request.HasField(name) else None
