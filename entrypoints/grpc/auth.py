"""Who is calling, from gRPC metadata: the same Authenticator, with the same rules, as REST's headers.

``authorization: Bearer <key>``, ``x-org-id`` and ``x-user-id`` are read exactly as the REST
headers of the same names (gRPC metadata keys are lower case).
"""

from __future__ import annotations

import grpc

from application.tenancy import Authenticator, Caller, TenantContext

_NAMES = ("authorization", "x-org-id", "x-user-id")


def credentials(context: grpc.aio.ServicerContext) -> tuple[str | None, str | None, str | None]:
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in _NAMES and key not in found and isinstance(value, str):
            found[key] = value
    return found.get("authorization"), found.get("x-org-id"), found.get("x-user-id")


async def tenant(authenticator: Authenticator, context: grpc.aio.ServicerContext) -> TenantContext:
    return await authenticator.tenant(*credentials(context))


async def caller(authenticator: Authenticator, context: grpc.aio.ServicerContext) -> Caller:
    return await authenticator.caller(*credentials(context))
