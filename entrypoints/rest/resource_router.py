"""One router shape for every tenant resource: list, create, get, update, delete."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from application.resources import TenantResources
from domain.rules import UNSET
from entrypoints.rest.deps import Paging, Tenant, tenant
from entrypoints.rest.presenters import snake
from entrypoints.rest.responses import JSONBytes, json
from entrypoints.rest.schemas import ErrorOut
from entrypoints.rest.strict_json import StrictJSONRoute

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413)
}


@dataclass(frozen=True)
class ResourceSpec:
    path: str
    tag: str
    service: str  # name of the container provider
    create: type[BaseModel]
    update: type[BaseModel]
    out: type[BaseModel]
    present: Callable[[Any], dict[str, Any]]
    filters: type[BaseModel]


def fields_of(body: BaseModel) -> dict[str, Any]:
    """Only the fields the client sent, under the domain's names; the rest stay UNSET."""
    return {snake(name): getattr(body, name) for name in body.model_fields_set}


def changes_of(body: BaseModel) -> dict[str, Any]:
    sent = body.model_fields_set
    return {snake(name): getattr(body, name) if name in sent else UNSET for name in type(body).model_fields}


def resource_router(spec: ResourceSpec) -> APIRouter:
    router = APIRouter(prefix=spec.path, tags=[spec.tag], responses=ERRORS, route_class=StrictJSONRoute)
    present = spec.present
    Create, Update, Filters = spec.create, spec.update, spec.filters

    def service(request: Request) -> TenantResources[Any]:
        return getattr(request.app.state.container, spec.service)()

    @router.get("", response_model=list[spec.out], summary=f"List {spec.tag.lower()} of the organization")
    async def list_items(
        request: Request, ctx: Tenant, page: Paging, filters: Annotated[Filters, Query()]
    ) -> JSONBytes:
        items = await service(request).list(ctx, page, fields_of(filters))
        return json([present(item) for item in items])

    @router.post("", status_code=201, response_model=spec.out, summary=f"Create ({spec.tag.lower()})")
    async def create_item(request: Request, ctx: Tenant, body: Create) -> JSONBytes:
        return json(present(await service(request).create(ctx, **fields_of(body))), 201)

    @router.get("/{item_id}", response_model=spec.out, summary="Get by id")
    async def get_item(request: Request, item_id: str) -> JSONBytes:
        return json(present(await service(request).get(await tenant(request), item_id)))

    @router.put("/{item_id}", response_model=spec.out, summary="Update (only the fields sent change)")
    async def update_item(request: Request, ctx: Tenant, item_id: str, body: Update) -> JSONBytes:
        return json(present(await service(request).update(ctx, item_id, **changes_of(body))))

    @router.delete("/{item_id}", response_model=spec.out, summary="Delete; answers the deleted object")
    async def delete_item(request: Request, item_id: str) -> JSONBytes:
        return json(present(await service(request).delete(await tenant(request), item_id)))

    return router
