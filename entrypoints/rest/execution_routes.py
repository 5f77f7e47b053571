"""Flow executions at the seed's paths: execute, list, inspect, cancel, retry, metrics, logs, stats."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.convertors import StringConvertor, register_url_convertor

from application.engine.executions import parse_period
from domain.ids import EXECUTION_ID_PATTERN
from entrypoints.rest import presenters as p
from entrypoints.rest.deps import Paging, Tenant, tenant
from entrypoints.rest.resource_router import ERRORS
from entrypoints.rest.responses import JSONBytes, json
from entrypoints.rest.schemas import Body
from entrypoints.rest.strict_json import StrictJSONRoute

flows = APIRouter(prefix="/flows", tags=["Flow executions"], responses=ERRORS, route_class=StrictJSONRoute)
logs = APIRouter(
    prefix="/execution-logs", tags=["Execution Logs"], responses=ERRORS, route_class=StrictJSONRoute
)


class ExecuteIn(Body):  # strict, unknown keys refused: a typo must not run a flow without its variables
    variables: dict[str, Any] = Field(default_factory=dict, examples=[{"userId": "user-456"}])
    useDurable: bool = Field(
        True, description="true (default): queued and run by the engine (202); false: run in this request"
    )


class RetryIn(Body):
    resume: bool = Field(
        False,
        description="Reuse the outputs of completed steps that depend on no step run again; start at the first that did not complete",
    )


def _executions(request: Request) -> Any:
    return request.app.state.container.executions()


@flows.post("/{flow_id}/execute", summary="Execute a flow (durable by default)")
async def execute(request: Request, ctx: Tenant, flow_id: str, body: ExecuteIn | None = None) -> JSONBytes:
    body = body or ExecuteIn()
    view = await _executions(request).start(ctx, flow_id, body.variables, durable=body.useDurable)
    if body.useDurable:
        e = view.execution
        return json({"executionId": e.id, "flowId": e.flow_id, "status": e.status}, status_code=202)
    return json(p.execution(view, detailed=True))


@flows.get("/{flow_id}/versions", summary="Every version of the flow's steps and settings, newest first")
async def versions(request: Request, ctx: Tenant, flow_id: str, page: Paging) -> JSONBytes:
    found = await request.app.state.container.flows().versions(ctx, flow_id, page)
    return json([p.flow_version(v) for v in found])


@flows.get("/{flow_id}/executions", summary="The flow's executions, newest first")
async def list_executions(
    request: Request,
    ctx: Tenant,
    flow_id: str,
    page: Paging,
    status: Annotated[
        str | None, Query(description="queued | running | completed | failed | cancelled")
    ] = None,
) -> JSONBytes:
    found = await _executions(request).list(ctx, flow_id, status, page)
    return json([p.execution(e) for e in found])


@flows.get("/{flow_id}/executions/{execution_id}", summary="One execution, with the state of each step")
async def get_execution(request: Request, flow_id: str, execution_id: str) -> JSONBytes:
    view = await _executions(request).get(await tenant(request), flow_id, execution_id)
    return json(p.execution(view, detailed=True))


@flows.post("/{flow_id}/executions/{execution_id}/cancel", summary="Cancel a queued or running execution")
async def cancel(request: Request, ctx: Tenant, flow_id: str, execution_id: str) -> JSONBytes:
    view = await _executions(request).cancel(ctx, flow_id, execution_id)
    return json(p.execution(view, detailed=True))


@flows.post("/{flow_id}/executions/{execution_id}/retry", summary="Run a finished execution again")
async def retry(
    request: Request, ctx: Tenant, flow_id: str, execution_id: str, body: RetryIn | None = None
) -> JSONBytes:
    view = await _executions(request).retry(ctx, flow_id, execution_id, resume=(body or RetryIn()).resume)
    e = view.execution
    return json(
        {
            "executionId": e.id,
            "flowId": e.flow_id,
            "status": e.status,
            "retryOf": e.retry_of,
            "resumed": e.resume,
        },
        status_code=202,
    )


@flows.get("/{flow_id}/executions/{execution_id}/logs", summary="The execution's step logs, in order")
async def execution_logs(request: Request, flow_id: str, execution_id: str) -> JSONBytes:
    found = await _executions(request).logs(await tenant(request), flow_id, execution_id)
    return json([p.execution_log(log) for log in found])


# The seed's second path to the same logs.
logs.get("/{flow_id}/execution/{execution_id}", summary="The step logs of one execution of a flow")(
    execution_logs
)


class _ExecutionId(StringConvertor):
    """A path segment that is an execution id (``exec_{unixTimestamp}_{random}``): the seed's
    ``GET /execution-logs/{executionId}`` shares its path with ``GET /execution-logs/{id}`` (one log
    row), so only execution ids are routed here; log ids (``log_…``) go on to the log by id."""

    regex = EXECUTION_ID_PATTERN


register_url_convertor("execution_id", _ExecutionId())


@logs.get("/{execution_id:execution_id}", summary="The step logs of one execution, named by its id alone")
async def logs_of_execution(request: Request, execution_id: str) -> JSONBytes:
    found = await _executions(request).logs(await tenant(request), None, execution_id)
    return json([p.execution_log(log) for log in found])


@flows.get("/{flow_id}/metrics", summary="Execution counts by status and the success rate")
async def flow_metrics(request: Request, flow_id: str) -> JSONBytes:
    return json(p.flow_metrics(await _executions(request).metrics(await tenant(request), flow_id)))


@logs.get("/stats", summary="Step and execution statistics over an optional time range")
async def stats(
    request: Request,
    ctx: Tenant,
    start: Annotated[str | None, Query(alias="from", description="YYYY-MM-DD or ISO 8601")] = None,
    end: Annotated[str | None, Query(alias="to", description="YYYY-MM-DD (inclusive) or ISO 8601")] = None,
) -> JSONBytes:
    begin, finish = parse_period(start, end)
    return json(p.execution_stats(await _executions(request).stats(ctx, begin, finish)))
