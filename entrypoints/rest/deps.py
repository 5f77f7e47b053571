"""Request dependencies: who is calling, and which page of a list they want."""

from typing import Annotated

from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from application.ports import LIMIT_DEFAULT, LIMIT_MAX, Page
from application.tenancy import Caller, TenantContext

# Declared for OpenAPI ("Authorize" in /docs); the header itself is read by the Authenticator.
bearer = HTTPBearer(auto_error=False, description="An organization API key, or the admin token")


def _auth(request: Request):
    return request.app.state.container.authenticator()


async def tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    x_org_id: Annotated[str | None, Header(description="Must equal the API key's organization")] = None,
    x_user_id: Annotated[str | None, Header(description="A user of the organization: the actor")] = None,
) -> TenantContext:
    return await _auth(request).tenant(request.headers.get("authorization"), x_org_id, x_user_id)


async def caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    x_org_id: Annotated[str | None, Header()] = None,
    x_user_id: Annotated[str | None, Header()] = None,
) -> Caller:
    return await _auth(request).caller(request.headers.get("authorization"), x_org_id, x_user_id)


def page(
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Page size")] = LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, description="Items to skip")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


Tenant = Annotated[TenantContext, Depends(tenant)]
AnyCaller = Annotated[Caller, Depends(caller)]
Paging = Annotated[Page, Depends(page)]
