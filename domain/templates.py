"""Templates: ``{{root.path.to.value}}`` placeholders filled by looking paths up, never by evaluating.

Roots: ``secrets`` (a tool's credentials), ``auth`` (e.g. ``auth.access_token``), ``inputs``,
``variables`` and ``steps`` (``steps.<id>.output.<path>``). A path walks dict keys and list
indexes. Anything between ``{{`` and ``}}`` that is not such a path is an error, so a template
can never smuggle an expression in. Rendering raises only TemplateError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from domain.errors import FieldError, ValidationFailed

ROOTS = ("secrets", "auth", "inputs", "variables", "steps")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_WHOLE = re.compile(r"\s*\{\{([^{}]*)\}\}\s*")
_PATH = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*$")


class TemplateError(ValidationFailed):
    """A placeholder that is malformed, or names a value that is not there (400)."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__([FieldError(field, message, code)], message)


def _path(expression: str, where: str) -> list[str]:
    match = _PATH.fullmatch(expression)
    if not match:
        raise TemplateError(
            where, f"Invalid placeholder '{{{{{expression.strip()[:80]}}}}}'", "invalid_template"
        )
    parts = match.group(1).split(".")
    if parts[0] not in ROOTS:
        raise TemplateError(
            where, f"Unknown placeholder root '{parts[0]}'; use one of {', '.join(ROOTS)}", "invalid_template"
        )
    if len(parts) < 2:
        raise TemplateError(
            where, f"Placeholder '{{{{{parts[0]}}}}}' needs a name after '{parts[0]}.'", "invalid_template"
        )
    return parts


def lookup(context: Mapping[str, Any], parts: list[str], where: str) -> Any:
    value: Any = context
    for depth, part in enumerate(parts):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            name = ".".join(parts[: depth + 1])
            # Only the path is named: the values around it may be secrets.
            raise TemplateError(where, f"Template value '{name}' is not set", "missing_value")
    return value


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def placeholders(template: str) -> list[str]:
    """The paths a template refers to (``['secrets.token', ...]``), checked for syntax."""
    return [".".join(_path(m.group(1), "template")) for m in _PLACEHOLDER.finditer(template)]


def render(
    template: str,
    context: Mapping[str, Any],
    where: str = "template",
    encode: Callable[[str], str] | None = None,
) -> str:
    """Fill every placeholder with its value as text; ``encode`` transforms inserted values only."""

    def fill(match: re.Match[str]) -> str:
        text = to_text(lookup(context, _path(match.group(1), where), where))
        return encode(text) if encode else text

    return _PLACEHOLDER.sub(fill, template)


def render_path(template: str, context: Mapping[str, Any], where: str = "endpoint") -> str:
    """For URL paths: each inserted value is percent-encoded, so it stays one path segment."""
    return render(template, context, where, encode=lambda text: quote(text, safe=""))


def render_value(value: Any, context: Mapping[str, Any], where: str = "body") -> Any:
    """Render every string inside a JSON document. A string that is exactly one placeholder is
    replaced by the value itself, keeping its type (numbers stay numbers, objects stay objects)."""
    if isinstance(value, str):
        whole = _WHOLE.fullmatch(value)
        if whole:
            return lookup(context, _path(whole.group(1), where), where)
        return render(value, context, where)
    if isinstance(value, list):
        return [render_value(item, context, f"{where}.{i}") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {key: render_value(item, context, f"{where}.{key}") for key, item in value.items()}
    return value
