"""Routes that are not plain tenant CRUD: organizations, API keys, audit trail, health."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from application.health import ComponentStatus
from entrypoints.rest import presenters as p
from entrypoints.rest import schemas as s
from entrypoints.rest.deps import AnyCaller, Paging, Tenant, caller, tenant
from entrypoints.rest.resource_router import ERRORS, ResourceSpec, fields_of
from entrypoints.rest.responses import JSONBytes, json
from entrypoints.rest.strict_json import StrictJSONRoute


def _c(request: Request):
    return request.app.state.container


# --- organizations (admin token, or an organization's own key) ---------------------------------

organizations = APIRouter(
    prefix="/organizations", tags=["Organizations"], responses=ERRORS, route_class=StrictJSONRoute
)


@organizations.get(
    "", response_model=list[s.OrganizationOut], summary="List organizations (own only with an org key)"
)
async def list_organizations(request: Request, who: AnyCaller, page: Paging) -> JSONBytes:
    return json([p.organization(o) for o in await _c(request).organizations().list(who, page)])


@organizations.post("", status_code=201, response_model=s.OrganizationCreated, summary="Create (admin token)")
async def create_organization(request: Request, who: AnyCaller, body: s.OrganizationCreate) -> JSONBytes:
    org, issued = await _c(request).organizations().create(who, name=body.name)
    return json({**p.organization(org), "apiKey": issued.plaintext}, 201)


@organizations.get("/{org_id}", response_model=s.OrganizationOut)
async def get_organization(request: Request, org_id: str) -> JSONBytes:
    return json(p.organization(await _c(request).organizations().get(await caller(request), org_id)))


@organizations.put("/{org_id}", response_model=s.OrganizationOut)
async def update_organization(
    request: Request, who: AnyCaller, org_id: str, body: s.OrganizationUpdate
) -> JSONBytes:
    org = await _c(request).organizations().update(who, org_id, **fields_of(body))
    return json(p.organization(org))


@organizations.delete(
    "/{org_id}", response_model=s.OrganizationOut, summary="Delete with everything it owns (admin token)"
)
async def delete_organization(request: Request, org_id: str) -> JSONBytes:
    return json(p.organization(await _c(request).organizations().delete(await caller(request), org_id)))


# --- API keys -------------------------------------------------------------------------------------

api_keys = APIRouter(prefix="/api-keys", tags=["API keys"], responses=ERRORS, route_class=StrictJSONRoute)


@api_keys.get("", response_model=list[s.ApiKeyOut], summary="List keys (prefix only)")
async def list_api_keys(request: Request, ctx: Tenant, page: Paging) -> JSONBytes:
    return json([p.api_key(k) for k in await _c(request).api_keys().list(ctx, page)])


@api_keys.post(
    "", status_code=201, response_model=s.ApiKeyCreated, summary="Issue a key (plaintext shown once)"
)
async def create_api_key(request: Request, ctx: Tenant, body: s.ApiKeyCreate) -> JSONBytes:
    issued = await _c(request).api_keys().issue(ctx, name=body.name)
    return json({**p.api_key(issued.key), "key": issued.plaintext}, 201)


@api_keys.get("/{key_id}", response_model=s.ApiKeyOut)
async def get_api_key(request: Request, key_id: str) -> JSONBytes:
    return json(p.api_key(await _c(request).api_keys().get(await tenant(request), key_id)))


@api_keys.delete("/{key_id}", response_model=s.ApiKeyOut, summary="Revoke; the key stops working at once")
async def revoke_api_key(request: Request, key_id: str) -> JSONBytes:
    return json(p.api_key(await _c(request).api_keys().revoke(await tenant(request), key_id)))


# --- audit trail ----------------------------------------------------------------------------------

audit = APIRouter(prefix="/audit-events", tags=["Audit"], responses=ERRORS, route_class=StrictJSONRoute)


class AuditFilters(BaseModel):
    action: str | None = None
    resourceType: str | None = None
    resourceId: str | None = None


@audit.get("", response_model=list[s.AuditEventOut], summary="Who changed what, newest first")
async def list_audit_events(
    request: Request, ctx: Tenant, page: Paging, filters: Annotated[AuditFilters, Query()]
) -> JSONBytes:
    events = await _c(request).audit_trail().list(ctx, page, fields_of(filters))
    return json([p.audit_event(e) for e in events])


# --- health (no auth, no tenant headers, no secrets) ----------------------------------------------

health = APIRouter(tags=["Health"], route_class=StrictJSONRoute)


@health.get("/health", summary="Liveness for load balancers")
async def get_health(request: Request) -> JSONBytes:
    status = _c(request).system_status()
    return json(
        {
            "status": "ok",
            "timestamp": p.iso(_c(request).clock().now()),
            "uptime": status.uptime(),
            "version": status.version,
        }
    )


@health.get("/status", summary="Overall status")
async def get_status(request: Request) -> JSONBytes:
    status = _c(request).system_status()
    report = await status.report(detailed=False)
    body = {
        "status": "ok" if report.healthy else "error",
        "timestamp": p.iso(_c(request).clock().now()),
        "uptime": status.uptime(),
        "version": status.version,
        "environment": status.environment,
        "database": {"status": report.database.status},
    }
    return json(body, 200 if report.healthy else 503)


@health.get("/status/detailed", summary="Database, Redis and runtime details")
async def get_status_detailed(request: Request) -> JSONBytes:
    status = _c(request).system_status()
    report = await status.report(detailed=True)
    body = {
        "status": "ok" if report.healthy else "error",
        "timestamp": p.iso(_c(request).clock().now()),
        "version": status.version,
        "database": _component(report.database),
        "environment": status.runtime(),
    }
    if report.cache is not None:
        body["redis"] = _component(report.cache)
    return json(body, 200 if report.healthy else 503)


def _component(c: ComponentStatus) -> dict[str, Any]:
    out: dict[str, Any] = {"status": c.status}
    if c.connection_time_ms is not None:
        out["connectionTime"] = c.connection_time_ms
    if c.error:
        out["error"] = c.error
    return out | c.details


# --- tenant CRUD resources ------------------------------------------------------------------------


class UserFilters(BaseModel):
    email: str | None = None


class ToolFilters(BaseModel):
    key: str | None = None
    authType: str | None = None


class ActionFilters(BaseModel):
    toolId: str | None = None
    key: str | None = None
    method: str | None = None


class FlowFilters(BaseModel):
    name: str | None = None


class ExecutionLogFilters(BaseModel):
    flowId: str | None = None
    executionId: str | None = None
    stepKey: str | None = None
    status: str | None = None
    userId: str | None = None


RESOURCES = [
    ResourceSpec("/users", "Users", "users", s.UserCreate, s.UserUpdate, s.UserOut, p.user, UserFilters),
    ResourceSpec("/tools", "Tools", "tools", s.ToolCreate, s.ToolUpdate, s.ToolOut, p.tool, ToolFilters),
    ResourceSpec(
        "/actions", "Actions", "actions", s.ActionCreate, s.ActionUpdate, s.ActionOut, p.action, ActionFilters
    ),
    ResourceSpec("/flows", "Flows", "flows", s.FlowCreate, s.FlowUpdate, s.FlowOut, p.flow, FlowFilters),
    ResourceSpec(
        "/execution-logs",
        "Execution logs",
        "execution_logs",
        s.ExecutionLogCreate,
        s.ExecutionLogUpdate,
        s.ExecutionLogOut,
        p.execution_log,
        ExecutionLogFilters,
    ),
]
