"""How a tool's credentials become request headers or query parameters, by the tool's authType."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.errors import FieldError, ValidationFailed

TOKEN_NAMES = ("token", "access_token", "api_key", "bearer_token")


class MissingCredential(ValidationFailed):
    def __init__(self, tool_key: str, auth_type: str, wanted: str) -> None:
        message = f"Tool '{tool_key}' uses {auth_type} auth but has no '{wanted}' credential stored"
        super().__init__([FieldError("credentials", message, "missing_credential")], message)


@dataclass(frozen=True, slots=True)
class Injection:
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def _first(credentials: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((credentials[n] for n in names if credentials.get(n)), None)


def auth_header(auth_type: str, options: Mapping[str, Any]) -> str | None:
    """The header (lower case) this authType would set, or None when it sets no header."""
    if auth_type in ("bearer", "oauth2", "basic"):
        return "authorization"
    if auth_type == "api_key" and not options.get("queryParam"):
        header = options.get("headerName")
        return (header if isinstance(header, str) and header else "X-API-Key").lower()
    return None


def inject(
    auth_type: str,
    tool_key: str,
    options: Mapping[str, Any],
    credentials: Mapping[str, str],
    explicit_headers: frozenset[str] = frozenset(),
) -> Injection:
    """The headers/query parameters that authenticate a request to this tool.

    bearer: ``Authorization: Bearer <token|access_token|api_key>``; api_key: the ``api_key``
    credential in the header ``options.headerName`` (default ``X-API-Key``) or, with
    ``options.queryParam``, in the query; basic: ``username``/``password``; oauth2: the stored
    ``access_token`` as a bearer token (obtaining and refreshing it comes with the OAuth flows).
    ``explicit_headers`` (lower case) are set by the action itself; they are never overridden.
    """
    if auth_type == "none" or auth_header(auth_type, options) in explicit_headers:
        return Injection()  # nothing to do, or the action sets that header itself (a template wins)
    if auth_type in ("bearer", "oauth2"):
        names = ("access_token",) if auth_type == "oauth2" else TOKEN_NAMES
        token = _first(credentials, names)
        if token is None:
            raise MissingCredential(tool_key, auth_type, names[0])
        return Injection(headers={"Authorization": f"Bearer {token}"})
    if auth_type == "api_key":
        key = _first(credentials, ("api_key", "key", "token"))
        if key is None:
            raise MissingCredential(tool_key, auth_type, "api_key")
        query_param = options.get("queryParam")
        if isinstance(query_param, str) and query_param:
            return Injection(query={query_param: key})
        header = options.get("headerName")
        return Injection(headers={header if isinstance(header, str) and header else "X-API-Key": key})
    if auth_type == "basic":
        user, password = credentials.get("username"), credentials.get("password")
        if not user or password is None:
            raise MissingCredential(tool_key, auth_type, "username" if not user else "password")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return Injection(headers={"Authorization": f"Basic {pair}"})
    raise ValidationFailed([FieldError("authType", f"Unknown authType '{auth_type}'", "invalid_enum_value")])
