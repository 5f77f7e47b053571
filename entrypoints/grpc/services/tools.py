"""ToolService (tools and their credentials) and ActionService."""

from __future__ import annotations

from entrypoints.grpc import presenters as p
from entrypoints.grpc.convert import from_struct, optional_list, optional_struct, page
from entrypoints.grpc.gen.tolstoy.v1 import action_service_pb2 as actions_pb
from entrypoints.grpc.gen.tolstoy.v1 import action_service_pb2_grpc as actions_grpc
from entrypoints.grpc.gen.tolstoy.v1 import tool_service_pb2 as tools_pb
from entrypoints.grpc.gen.tolstoy.v1 import tool_service_pb2_grpc as tools_grpc
from entrypoints.grpc.services.base import LIST, SCALAR, STRUCT, Context, Servicer, changes, given, present

TOOL_FIELDS = {
    "name": SCALAR, "key": SCALAR, "base_url": SCALAR, "auth_type": p.AUTH_TYPES, "options": STRUCT,
}  # fmt: skip


class ToolService(Servicer, tools_grpc.ToolServiceServicer):
    service = tools_pb.DESCRIPTOR.services_by_name["ToolService"]

    async def CreateTool(self, request: tools_pb.CreateToolRequest, context: Context):
        ctx = await self.tenant(context)
        fields = present(
            key=given(request, "key"),
            auth_type=p.AUTH_TYPES.text(request.auth_type, "auth_type"),
            options=optional_struct(request, "options"),
        )
        tool = await self.container.tools().create(
            ctx, name=request.name, base_url=request.base_url, **fields
        )
        return tools_pb.CreateToolResponse(tool=p.tool(tool))

    async def ListTools(self, request: tools_pb.ListToolsRequest, context: Context):
        ctx = await self.tenant(context)
        filters = {
            "key": given(request, "key"),
            "auth_type": p.AUTH_TYPES.text(request.auth_type, "auth_type"),
        }
        found = await self.container.tools().list(ctx, page(request), filters)
        return tools_pb.ListToolsResponse(tools=[p.tool(t) for t in found])

    async def GetTool(self, request: tools_pb.GetToolRequest, context: Context):
        tool = await self.container.tools().get(await self.tenant(context), request.id)
        return tools_pb.GetToolResponse(tool=p.tool(tool))

    async def UpdateTool(self, request: tools_pb.UpdateToolRequest, context: Context):
        ctx = await self.tenant(context)
        tool = await self.container.tools().update(ctx, request.id, **changes(request, TOOL_FIELDS))
        return tools_pb.UpdateToolResponse(tool=p.tool(tool))

    async def DeleteTool(self, request: tools_pb.DeleteToolRequest, context: Context):
        tool = await self.container.tools().delete(await self.tenant(context), request.id)
        return tools_pb.DeleteToolResponse(tool=p.tool(tool))

    async def SetCredentials(self, request: tools_pb.SetCredentialsRequest, context: Context):
        ctx = await self.tenant(context)
        view = await self.container.credentials().store(ctx, request.tool_id, dict(request.credentials))
        return tools_pb.SetCredentialsResponse(tool_credentials=p.credentials(view))

    async def GetCredentials(self, request: tools_pb.GetCredentialsRequest, context: Context):
        ctx = await self.tenant(context)
        view = await self.container.credentials().get(ctx, request.tool_id, unmask=request.unmask)
        return tools_pb.GetCredentialsResponse(tool_credentials=p.credentials(view))

    async def DeleteCredentials(self, request: tools_pb.DeleteCredentialsRequest, context: Context):
        tool = await self.container.credentials().delete(await self.tenant(context), request.tool_id)
        return tools_pb.DeleteCredentialsResponse(tool_id=tool.id, tool_name=tool.name, deleted=True)

    async def ListCredentialStatus(self, request: tools_pb.ListCredentialStatusRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.credentials().statuses(ctx, page(request))
        return tools_pb.ListCredentialStatusResponse(tools=[p.credential_status(s) for s in found])


ACTION_FIELDS = {
    "name": SCALAR, "key": SCALAR, "tool_id": SCALAR, "method": p.METHODS, "endpoint": SCALAR,
    "headers": STRUCT, "input_schema": LIST,
}  # fmt: skip


class ActionService(Servicer, actions_grpc.ActionServiceServicer):
    service = actions_pb.DESCRIPTOR.services_by_name["ActionService"]

    async def CreateAction(self, request: actions_pb.CreateActionRequest, context: Context):
        ctx = await self.tenant(context)
        fields = present(
            key=given(request, "key"),
            method=p.METHODS.text(request.method, "method"),
            headers=optional_struct(request, "headers"),
            input_schema=optional_list(request, "input_schema"),
        )
        action = await self.container.actions().create(
            ctx, name=request.name, tool_id=request.tool_id, endpoint=request.endpoint, **fields
        )
        return actions_pb.CreateActionResponse(action=p.action(action))

    async def ListActions(self, request: actions_pb.ListActionsRequest, context: Context):
        ctx = await self.tenant(context)
        filters = {
            "tool_id": given(request, "tool_id"),
            "key": given(request, "key"),
            "method": p.METHODS.text(request.method, "method"),
        }
        found = await self.container.actions().list(ctx, page(request), filters)
        return actions_pb.ListActionsResponse(actions=[p.action(a) for a in found])

    async def GetAction(self, request: actions_pb.GetActionRequest, context: Context):
        action = await self.container.actions().get(await self.tenant(context), request.id)
        return actions_pb.GetActionResponse(action=p.action(action))

    async def UpdateAction(self, request: actions_pb.UpdateActionRequest, context: Context):
        ctx = await self.tenant(context)
        action = await self.container.actions().update(ctx, request.id, **changes(request, ACTION_FIELDS))
        return actions_pb.UpdateActionResponse(action=p.action(action))

    async def DeleteAction(self, request: actions_pb.DeleteActionRequest, context: Context):
        action = await self.container.actions().delete(await self.tenant(context), request.id)
        return actions_pb.DeleteActionResponse(action=p.action(action))

    async def ExecuteAction(self, request: actions_pb.ExecuteActionRequest, context: Context):
        ctx = await self.tenant(context)
        inputs = from_struct(request.inputs, "inputs")
        result = await self.container.execute_action().execute(ctx, request.action_id, inputs)
        return p.action_result(result)
