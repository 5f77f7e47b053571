"""Tool credentials at the seed's paths. Values are masked unless ``?unmask=true`` (audited)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from application.credentials import CredentialView
from entrypoints.rest import presenters as p
from entrypoints.rest.deps import Paging, Tenant
from entrypoints.rest.resource_router import ERRORS
from entrypoints.rest.responses import JSONBytes, json
from entrypoints.rest.strict_json import StrictJSONRoute

router = APIRouter(prefix="/tools", tags=["Tool credentials"], responses=ERRORS, route_class=StrictJSONRoute)


class CredentialsIn(BaseModel):
    credentials: dict[str, Any] = Field(examples=[{"api_key": "sk-1234567890abcdef"}])


def _view(view: CredentialView) -> dict[str, Any]:
    values_key = "maskedCredentials" if view.masked else "credentials"
    return {
        "toolId": view.tool.id,
        "toolName": view.tool.name,
        values_key: view.values,
        "createdAt": p.iso(view.created_at),
        "updatedAt": p.iso(view.updated_at),
    }


def _service(request: Request):
    return request.app.state.container.credentials()


@router.get("/secrets", summary="Every tool of the organization with its credential status")
async def list_credential_status(request: Request, ctx: Tenant, page: Paging) -> JSONBytes:
    out = []
    for status in await _service(request).statuses(ctx, page):
        item = {
            "toolId": status.tool.id,
            "toolName": status.tool.name,
            "baseUrl": status.tool.base_url,
            "authType": status.tool.auth_type,
            "hasCredentials": status.keys is not None,
        }
        if status.keys is not None:
            item["credentialKeys"] = status.keys
        out.append(item)
    return json(out)


@router.post("/{tool_id}/secrets", status_code=201, summary="Store (replace) a tool's credentials")
async def store_credentials(request: Request, ctx: Tenant, tool_id: str, body: CredentialsIn) -> JSONBytes:
    return json(_view(await _service(request).store(ctx, tool_id, body.credentials)), 201)


@router.get("/{tool_id}/secrets", summary="A tool's credentials, masked unless unmask=true (audited)")
async def get_credentials(
    request: Request, ctx: Tenant, tool_id: str, unmask: Annotated[bool, Query()] = False
) -> JSONBytes:
    return json(_view(await _service(request).get(ctx, tool_id, unmask=unmask)))


@router.delete("/{tool_id}/secrets", summary="Delete a tool's credentials")
async def delete_credentials(request: Request, ctx: Tenant, tool_id: str) -> JSONBytes:
    tool = await _service(request).delete(ctx, tool_id)
    return json({"toolId": tool.id, "toolName": tool.name, "deleted": True})
