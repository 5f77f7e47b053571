"""Request dependencies: who is calling, and which page of a list they want.

The credentials are read straight from the headers (one dict look-up each), not declared as
FastAPI ``Header``/``Security`` parameters, which FastAPI would re-inspect on every request;
``openapi.document_auth`` describes them in the OpenAPI document instead.
"""

from typing import Annotated

from fastapi import Depends, Query, Request

from application.ports import LIMIT_DEFAULT, LIMIT_MAX, Page
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


def page(
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Page size")] = LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, description="Items to skip")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


Tenant = Annotated[TenantContext, Depends(tenant)]
AnyCaller = Annotated[Caller, Depends(caller)]
Paging = Annotated[Page, Depends(page)]
