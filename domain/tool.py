"""Tools (external APIs an organization registers) and their actions (HTTP endpoints)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from domain import rules
from domain.entity import Entity, Validator
from domain.rules import Problems

AUTH_TYPES = ("none", "bearer", "api_key", "basic", "oauth2")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
HEADERS_MAX = 100
HEADER_VALUE_MAX = 8192


def _auth_type(p: Problems, v: Any) -> str:
    return rules.one_of(p, "authType", "none" if v is None else v, AUTH_TYPES)


def _method(p: Problems, v: Any) -> str:
    if isinstance(v, str):
        v = v.upper()
    return rules.one_of(p, "method", v if v is not None else "GET", HTTP_METHODS)


def _endpoint(p: Problems, v: Any) -> str:
    value = rules.text(p, "endpoint", v, max_len=rules.URL_MAX)
    # "//host/x" is a network-path reference: joined to the base URL it would leave the tool's host
    # (and take the tool's credentials along), so an endpoint is a path and nothing else.
    if value and (not value.startswith("/") or value.startswith("//") or "\\" in value):
        p.add("endpoint", "endpoint must be a path starting with a single '/'", "invalid_string")
    return value


def _headers(p: Problems, v: Any) -> dict[str, str]:
    headers = rules.json_object(p, "headers", v)
    if len(headers) > HEADERS_MAX:
        p.add("headers", f"At most {HEADERS_MAX} headers", "too_big")
    for name, value in headers.items():
        if not isinstance(value, str):
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                p.add(f"headers.{name}", "Invalid header name", "invalid_string")
            p.add(f"headers.{name}", f"Expected string, received {rules.type_name(value)}", "invalid_type")
        else:
            header_problems(p, "headers", {name: value}, ascii_only=False)  # templates render later
    return headers


def header_problems(p: Problems, where: str, headers: dict[str, str], *, ascii_only: bool = True) -> None:
    """Headers that cannot go on the wire as given: a name that is not an HTTP token, a value too
    long, with a line break or NUL (header injection), or - once rendered, as sent - not ASCII
    (HTTP clients refuse to guess an encoding for it: percent- or base64-encode such values)."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            p.add(f"{where}.{name}", "Invalid header name", "invalid_string")
        if len(value) > HEADER_VALUE_MAX or any(c in value for c in "\r\n\x00"):
            p.add(f"{where}.{name}", "Header value too long or contains a line break", "invalid_string")
        elif ascii_only and not value.isascii():
            p.add(
                f"{where}.{name}",
                "Header values must be ASCII (percent- or base64-encode others)",
                "invalid_string",
            )


def with_default_header(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    """``headers`` with ``name: value`` unless it has that header already, in any case (HTTP
    header names are case-insensitive: a second spelling would send the header twice)."""
    wanted = name.lower()
    if not any(k.lower() == wanted for k in headers):
        headers[name] = value
    return headers


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tool(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "name": lambda p, v: rules.text(p, "name", v),
        "key": lambda p, v: rules.slug(p, "key", v),
        "base_url": lambda p, v: rules.http_url(p, "baseUrl", v),
        "auth_type": _auth_type,
        "options": lambda p, v: rules.json_object(p, "options", v),
    }
    org_id: str
    name: str
    key: str
    base_url: str
    auth_type: str = "none"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Action(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "name": lambda p, v: rules.text(p, "name", v),
        "key": lambda p, v: rules.slug(p, "key", v),
        "tool_id": lambda p, v: rules.text(p, "toolId", v),
        "method": _method,
        "endpoint": _endpoint,
        "headers": _headers,
        "input_schema": lambda p, v: rules.json_list(p, "inputSchema", v),
    }
    org_id: str
    tool_id: str
    name: str
    key: str
    method: str
    endpoint: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    input_schema: list[Any] = dataclasses.field(default_factory=list)
