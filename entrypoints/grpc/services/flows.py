"""FlowService (flows, versions, executions, WatchExecution) and ExecutionLogService."""

from __future__ import annotations

from collections.abc import AsyncIterator

from domain.errors import FieldError, ValidationFailed
from entrypoints.grpc import presenters as p
from entrypoints.grpc.convert import from_struct, from_timestamp, optional_list, optional_struct, page
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_service_pb2 as logs_pb
from entrypoints.grpc.gen.tolstoy.v1 import execution_log_service_pb2_grpc as logs_grpc
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2 as flows_pb
from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2_grpc as flows_grpc
from entrypoints.grpc.services.base import LIST, SCALAR, STRUCT, Context, Servicer, changes, given, present

FLOW_FIELDS = {"name": SCALAR, "description": SCALAR, "steps": LIST, "settings": STRUCT}


class FlowService(Servicer, flows_grpc.FlowServiceServicer):
    service = flows_pb.DESCRIPTOR.services_by_name["FlowService"]

    async def CreateFlow(self, request: flows_pb.CreateFlowRequest, context: Context):
        ctx = await self.tenant(context)
        fields = present(
            description=given(request, "description"),
            steps=optional_list(request, "steps"),
            settings=optional_struct(request, "settings"),
        )
        flow = await self.container.flows().create(ctx, name=request.name, **fields)
        return flows_pb.CreateFlowResponse(flow=p.flow(flow))

    async def ListFlows(self, request: flows_pb.ListFlowsRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.flows().list(ctx, page(request), {"name": given(request, "name")})
        return flows_pb.ListFlowsResponse(flows=[p.flow(f) for f in found])

    async def GetFlow(self, request: flows_pb.GetFlowRequest, context: Context):
        flow = await self.container.flows().get(await self.tenant(context), request.id)
        return flows_pb.GetFlowResponse(flow=p.flow(flow))

    async def UpdateFlow(self, request: flows_pb.UpdateFlowRequest, context: Context):
        ctx = await self.tenant(context)
        flow = await self.container.flows().update(ctx, request.id, **changes(request, FLOW_FIELDS))
        return flows_pb.UpdateFlowResponse(flow=p.flow(flow))

    async def DeleteFlow(self, request: flows_pb.DeleteFlowRequest, context: Context):
        flow = await self.container.flows().delete(await self.tenant(context), request.id)
        return flows_pb.DeleteFlowResponse(flow=p.flow(flow))

    async def ListFlowVersions(self, request: flows_pb.ListFlowVersionsRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.flows().versions(ctx, request.flow_id, page(request))
        return flows_pb.ListFlowVersionsResponse(versions=[p.flow_version(v) for v in found])

    async def ExecuteFlow(self, request: flows_pb.ExecuteFlowRequest, context: Context):
        ctx = await self.tenant(context)
        durable = request.use_durable if request.HasField("use_durable") else True
        variables = from_struct(request.variables, "variables")
        view = await self.container.executions().start(ctx, request.flow_id, variables, durable=durable)
        return flows_pb.ExecuteFlowResponse(execution=p.execution(view, detailed=not durable))

    async def ListExecutions(self, request: flows_pb.ListExecutionsRequest, context: Context):
        ctx = await self.tenant(context)
        status = p.EXECUTION_STATUSES.text(request.status, "status")
        found = await self.container.executions().list(ctx, request.flow_id, status, page(request))
        return flows_pb.ListExecutionsResponse(executions=[p.execution(e) for e in found])

    async def GetExecution(self, request: flows_pb.GetExecutionRequest, context: Context):
        ctx = await self.tenant(context)
        view = await self.container.executions().get(ctx, request.flow_id, request.execution_id)
        return flows_pb.GetExecutionResponse(execution=p.execution(view, detailed=True))

    async def CancelExecution(self, request: flows_pb.CancelExecutionRequest, context: Context):
        ctx = await self.tenant(context)
        view = await self.container.executions().cancel(ctx, request.flow_id, request.execution_id)
        return flows_pb.CancelExecutionResponse(execution=p.execution(view, detailed=True))

    async def RetryExecution(self, request: flows_pb.RetryExecutionRequest, context: Context):
        ctx = await self.tenant(context)
        executions = self.container.executions()
        view = await executions.retry(ctx, request.flow_id, request.execution_id, resume=request.resume)
        return flows_pb.RetryExecutionResponse(execution=p.execution(view))

    async def GetFlowMetrics(self, request: flows_pb.GetFlowMetricsRequest, context: Context):
        metrics = await self.container.executions().metrics(await self.tenant(context), request.flow_id)
        return p.flow_metrics(metrics)

    async def WatchExecution(
        self, request: flows_pb.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[flows_pb.WatchExecutionResponse]:
        ctx = await self.tenant(context)
        events = self.container.executions().watch(ctx, request.flow_id, request.execution_id)
        try:
            async for event in events:
                yield flows_pb.WatchExecutionResponse(event=p.execution_event(event))
        finally:
            await events.aclose()


class ExecutionLogService(Servicer, logs_grpc.ExecutionLogServiceServicer):
    service = logs_pb.DESCRIPTOR.services_by_name["ExecutionLogService"]

    async def ListExecutionLogs(self, request: logs_pb.ListExecutionLogsRequest, context: Context):
        ctx = await self.tenant(context)
        filters = {
            name: given(request, name) for name in ("flow_id", "execution_id", "step_key", "user_id")
        } | {"status": p.LOG_STATUSES.text(request.status, "status")}
        found = await self.container.execution_logs().list(ctx, page(request), filters)
        return logs_pb.ListExecutionLogsResponse(execution_logs=[p.execution_log(e) for e in found])

    async def GetExecutionLog(self, request: logs_pb.GetExecutionLogRequest, context: Context):
        log = await self.container.execution_logs().get(await self.tenant(context), request.id)
        return logs_pb.GetExecutionLogResponse(execution_log=p.execution_log(log))

    async def GetExecutionLogs(self, request: logs_pb.GetExecutionLogsRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.executions().logs(ctx, request.flow_id or None, request.execution_id)
        return logs_pb.GetExecutionLogsResponse(execution_logs=[p.execution_log(e) for e in found])

    async def GetStats(self, request: logs_pb.GetStatsRequest, context: Context):
        ctx = await self.tenant(context)
        start, end = from_timestamp(request, "from_time"), from_timestamp(request, "to_time")
        if start and end and start > end:  # named as in the proto (the use case says REST's "from")
            raise ValidationFailed(
                [FieldError("from_time", "'from_time' is after 'to_time'", "invalid_range")]
            )
        return p.stats(await self.container.executions().stats(ctx, start, end))
