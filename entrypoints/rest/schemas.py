"""Request bodies (shape and types only: the domain owns the rules) and response models for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- requests ---------------------------------------------------------------------------------


class OrganizationCreate(Body):
    name: str = Field(examples=["My Organization"])


class OrganizationUpdate(Body):
    name: str | None = None


class UserCreate(Body):
    email: str = Field(examples=["user@example.com"])
    name: str | None = None


class UserUpdate(Body):
    email: str | None = None
    name: str | None = None


class ApiKeyCreate(Body):
    name: str | None = Field(None, examples=["ci-pipeline"])


class ToolCreate(Body):
    name: str = Field(examples=["Slack API"])
    key: str | None = Field(None, description="Unique per organization; derived from the name when omitted")
    baseUrl: str = Field(examples=["https://api.slack.com"])
    authType: str | None = Field(None, description="none | bearer | api_key | basic | oauth2 (default none)")
    options: dict[str, Any] | None = None


class ToolUpdate(Body):
    name: str | None = None
    key: str | None = None
    baseUrl: str | None = None
    authType: str | None = None
    options: dict[str, Any] | None = None


class ActionCreate(Body):
    name: str = Field(examples=["Create Jira Ticket"])
    key: str | None = Field(None, description="Unique per organization; derived from the name when omitted")
    toolId: str
    method: str | None = Field(None, description="GET | POST | PUT | PATCH | DELETE | HEAD | OPTIONS")
    endpoint: str = Field(examples=["/rest/api/2/issue"])
    headers: dict[str, Any] | None = None
    inputSchema: list[Any] | None = None


class ActionUpdate(Body):
    name: str | None = None
    key: str | None = None
    toolId: str | None = None
    method: str | None = None
    endpoint: str | None = None
    headers: dict[str, Any] | None = None
    inputSchema: list[Any] | None = None


class FlowCreate(Body):
    name: str
    description: str | None = None
    steps: list[Any] | None = None
    settings: dict[str, Any] | None = None


class FlowUpdate(Body):
    name: str | None = None
    description: str | None = None
    steps: list[Any] | None = None
    settings: dict[str, Any] | None = None


class ExecutionLogCreate(Body):
    flowId: str
    executionId: str
    stepKey: str
    status: str | None = Field(None, description="started | completed | failed | skipped (default started)")
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    userId: str | None = Field(None, description="Defaults to X-User-ID")


class ExecutionLogUpdate(Body):
    status: str | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


# --- responses (documentation) -----------------------------------------------------------------


class Stamped(BaseModel):
    id: str
    createdAt: str
    updatedAt: str


class OrganizationOut(Stamped):
    name: str


class OrganizationCreated(OrganizationOut):
    apiKey: str = Field(description="Plaintext API key of the organization: shown only in this response")


class UserOut(Stamped):
    orgId: str
    email: str
    name: str | None


class ApiKeyOut(Stamped):
    orgId: str
    name: str
    prefix: str
    createdBy: str | None
    revokedAt: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Plaintext key: shown only in this response")


class ToolOut(Stamped):
    orgId: str
    name: str
    key: str
    baseUrl: str
    authType: str
    options: dict[str, Any]


class ActionOut(Stamped):
    orgId: str
    toolId: str
    name: str
    key: str
    method: str
    endpoint: str
    headers: dict[str, Any]
    inputSchema: list[Any]


class FlowOut(Stamped):
    orgId: str
    name: str
    description: str | None
    steps: list[Any]
    settings: dict[str, Any]
    version: int


class ExecutionLogOut(Stamped):
    orgId: str
    userId: str | None
    flowId: str
    executionId: str
    stepKey: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None


class AuditEventOut(BaseModel):
    id: str
    orgId: str
    action: str
    resourceType: str
    resourceId: str
    actorUserId: str | None
    apiKeyId: str | None
    details: dict[str, Any]
    createdAt: str


class FieldErrorOut(BaseModel):
    field: str
    message: str
    code: str


class ErrorOut(BaseModel):
    statusCode: int
    message: str
    error: str
    errors: list[FieldErrorOut]
