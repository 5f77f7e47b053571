"""Request dependencies: who is calling, and which page of a list they want.

The credentials are read straight from the headers. Routes whose only input is a path id call
``tenant(request)`` / ``caller(request)`` inline, which spares them FastAPI's dependency machinery
(the largest framework cost per request in tests/perf/breakdown.py); routes with a body or query
parameters declare ``Tenant``/``AnyCaller`` so that authentication runs before validation.
``openapi.document_auth`` describes the bearer scheme and headers in the OpenAPI document instead.
"""

from typing import Annotated

from fastapi import Depends, Query, Request

from application.ports import LIMIT_DEFAULT, LIMIT_MAX, OFFSET_MAX, Page
from application.tenancy import Caller, TenantContext


async def tenant(request: Request) -> TenantContext:
    headers = request.headers
    return await request.app.state.authenticator.tenant(
        headers.get("authorization"), headers.get("x-org-id"), headers.get("x-user-id")
    )


async def caller(request: Request) -> Caller:
    headers = request.headers
    return await request.app.state.authenticator.caller(
        headers.get("authorization"), headers.get("x-org-id"), headers.get("x-user-id")
    )


async def page(  # async: FastAPI would run a plain function in a thread pool on every request
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Page size")] = LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Items to skip")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


# Routes with a body or query parameters declare these, so that authentication runs before
# FastAPI validates the rest (an anonymous request gets 401, never a validation answer).
Tenant = Annotated[TenantContext, Depends(tenant)]
AnyCaller = Annotated[Caller, Depends(caller)]
Paging = Annotated[Page, Depends(page)]
