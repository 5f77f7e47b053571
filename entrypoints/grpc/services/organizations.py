"""OrganizationService, UserService and ApiKeyService."""

from __future__ import annotations

from entrypoints.grpc import presenters as p
from entrypoints.grpc.convert import page
from entrypoints.grpc.gen.tolstoy.v1 import (
    api_key_service_pb2 as keys_pb,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    api_key_service_pb2_grpc as keys_grpc,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    organization_service_pb2 as orgs_pb,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    organization_service_pb2_grpc as orgs_grpc,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    user_service_pb2 as users_pb,
)
from entrypoints.grpc.gen.tolstoy.v1 import (
    user_service_pb2_grpc as users_grpc,
)
from entrypoints.grpc.services.base import SCALAR, Context, Servicer, changes, given, present


class OrganizationService(Servicer, orgs_grpc.OrganizationServiceServicer):
    service = orgs_pb.DESCRIPTOR.services_by_name["OrganizationService"]

    async def CreateOrganization(self, request: orgs_pb.CreateOrganizationRequest, context: Context):
        who = await self.caller(context)
        org, issued = await self.container.organizations().create(who, name=request.name)
        return orgs_pb.CreateOrganizationResponse(organization=p.organization(org), api_key=issued.plaintext)

    async def ListOrganizations(self, request: orgs_pb.ListOrganizationsRequest, context: Context):
        who = await self.caller(context)
        found = await self.container.organizations().list(who, page(request))
        return orgs_pb.ListOrganizationsResponse(organizations=[p.organization(o) for o in found])

    async def GetOrganization(self, request: orgs_pb.GetOrganizationRequest, context: Context):
        org = await self.container.organizations().get(await self.caller(context), request.id)
        return orgs_pb.GetOrganizationResponse(organization=p.organization(org))

    async def UpdateOrganization(self, request: orgs_pb.UpdateOrganizationRequest, context: Context):
        who = await self.caller(context)
        name = changes(request, {"name": SCALAR})["name"]
        org = await self.container.organizations().update(who, request.id, name=name)
        return orgs_pb.UpdateOrganizationResponse(organization=p.organization(org))

    async def DeleteOrganization(self, request: orgs_pb.DeleteOrganizationRequest, context: Context):
        org = await self.container.organizations().delete(await self.caller(context), request.id)
        return orgs_pb.DeleteOrganizationResponse(organization=p.organization(org))


USER_FIELDS = {"email": SCALAR, "name": SCALAR}


class UserService(Servicer, users_grpc.UserServiceServicer):
    service = users_pb.DESCRIPTOR.services_by_name["UserService"]

    async def CreateUser(self, request: users_pb.CreateUserRequest, context: Context):
        ctx = await self.tenant(context)
        fields = present(email=request.email, name=given(request, "name"))
        return users_pb.CreateUserResponse(user=p.user(await self.container.users().create(ctx, **fields)))

    async def ListUsers(self, request: users_pb.ListUsersRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.users().list(ctx, page(request), {"email": given(request, "email")})
        return users_pb.ListUsersResponse(users=[p.user(u) for u in found])

    async def GetUser(self, request: users_pb.GetUserRequest, context: Context):
        user = await self.container.users().get(await self.tenant(context), request.id)
        return users_pb.GetUserResponse(user=p.user(user))

    async def UpdateUser(self, request: users_pb.UpdateUserRequest, context: Context):
        ctx = await self.tenant(context)
        user = await self.container.users().update(ctx, request.id, **changes(request, USER_FIELDS))
        return users_pb.UpdateUserResponse(user=p.user(user))

    async def DeleteUser(self, request: users_pb.DeleteUserRequest, context: Context):
        user = await self.container.users().delete(await self.tenant(context), request.id)
        return users_pb.DeleteUserResponse(user=p.user(user))


class ApiKeyService(Servicer, keys_grpc.ApiKeyServiceServicer):
    service = keys_pb.DESCRIPTOR.services_by_name["ApiKeyService"]

    async def CreateApiKey(self, request: keys_pb.CreateApiKeyRequest, context: Context):
        ctx = await self.tenant(context)
        issued = await self.container.api_keys().issue(ctx, name=given(request, "name"))
        return keys_pb.CreateApiKeyResponse(api_key=p.api_key(issued.key), key=issued.plaintext)

    async def ListApiKeys(self, request: keys_pb.ListApiKeysRequest, context: Context):
        ctx = await self.tenant(context)
        found = await self.container.api_keys().list(ctx, page(request))
        return keys_pb.ListApiKeysResponse(api_keys=[p.api_key(k) for k in found])

    async def GetApiKey(self, request: keys_pb.GetApiKeyRequest, context: Context):
        key = await self.container.api_keys().get(await self.tenant(context), request.id)
        return keys_pb.GetApiKeyResponse(api_key=p.api_key(key))

    async def RevokeApiKey(self, request: keys_pb.RevokeApiKeyRequest, context: Context):
        key = await self.container.api_keys().revoke(await self.tenant(context), request.id)
        return keys_pb.RevokeApiKeyResponse(api_key=p.api_key(key))
