"""POST /actions/{id}/execute: run an action with its tool's credentials injected."""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from entrypoints.rest.deps import Tenant
from entrypoints.rest.resource_router import ERRORS
from entrypoints.rest.responses import JSONBytes, json
from entrypoints.rest.strict_json import StrictJSONRoute

router = APIRouter(prefix="/actions", tags=["Actions"], responses=ERRORS, route_class=StrictJSONRoute)


class ExecuteIn(BaseModel):
    inputs: dict[str, Any] = Field(
        default_factory=dict, examples=[{"summary": "Login broken", "priority": "High"}]
    )


@router.post("/{action_id}/execute", summary="Execute the action (inputs validated, auth injected)")
async def execute_action(request: Request, ctx: Tenant, action_id: str, body: ExecuteIn) -> JSONBytes:
    result = await request.app.state.container.execute_action().execute(ctx, action_id, body.inputs)
    return json(
        {
            "success": result.success,
            "statusCode": result.status_code,
            "data": result.data,
            "headers": result.headers,
            "duration": result.duration_ms,
            "executionId": result.execution_id,
        }
    )
