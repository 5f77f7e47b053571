"""OpenAPI additions: the bearer scheme and the tenant headers on every authenticated route."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PUBLIC = ("/health", "/status", "/status/detailed", "/metrics")

_HEADERS = [
    {
        "name": "X-Org-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "When sent, must equal the organization of the API key (else 403)",
    },
    {
        "name": "X-User-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "A user of the organization, recorded as the actor of writes (else 403)",
    },
]


def document_auth(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An organization API key, or the admin token for /organizations",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                if path in PUBLIC:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation["parameters"] = [*operation.get("parameters", []), *_HEADERS]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
