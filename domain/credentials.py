"""Tool credentials: what may be stored, and how values are shown when they are not unmasked."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from domain.entity import Entity, Validator
from domain.rules import Problems, type_name

CREDENTIALS_MAX = 50
VALUE_MAX = 16 * 1024
SENSITIVE_MIN = 8
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
# Names that hold secrets. Anything else (username, region, header_name…) may be short.
_SENSITIVE = re.compile(r"(token|secret|password|passwd|pass$|key|credential|private|signature|auth)", re.I)
MASK = "*" * 11


def is_sensitive(name: str) -> bool:
    return bool(_SENSITIVE.search(name))


def mask(value: str) -> str:
    """At most the first 5 and last 4 characters of a long value; short values entirely hidden.

    The number of asterisks is fixed, so the mask does not tell the value's length either.
    """
    if len(value) >= 16:
        return f"{value[:5]}{MASK}{value[-4:]}"
    return "*" * 8


def validate_credentials(raw: Any, field: str = "credentials") -> dict[str, str]:
    problems = Problems()
    if not isinstance(raw, dict) or not raw:
        problems.add(
            field, "credentials must be a non-empty object of names to string values", "invalid_type"
        )
        problems.raise_if_any()
    if len(raw) > CREDENTIALS_MAX:
        problems.add(field, f"At most {CREDENTIALS_MAX} credentials per tool", "too_big")
    for name, value in raw.items():
        where = f"{field}.{name}"
        if not _KEY.fullmatch(name):
            problems.add(
                where, "Credential names are letters, digits, '_', '.' or '-' (max 128)", "invalid_string"
            )
        if not isinstance(value, str):
            problems.add(where, f"Expected string, received {type_name(value)}", "invalid_type")
        elif not value or "\x00" in value or len(value) > VALUE_MAX:
            problems.add(where, f"Values are 1-{VALUE_MAX} characters without NUL", "invalid_string")
        elif is_sensitive(name) and len(value) < SENSITIVE_MIN:
            # Never echo the value: only its name and the rule.
            problems.add(
                where, f"Sensitive credentials must be at least {SENSITIVE_MIN} characters", "too_small"
            )
    problems.raise_if_any()
    return dict(raw)


def _key_names(problems: Problems, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        problems.add("keys", "keys must be a list of credential names", "invalid_type")
        return []
    return sorted(value)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolCredentials(Entity):
    """That a tool has credentials, and their names. The values live in a SecretStore only."""

    FIELDS: ClassVar[dict[str, Validator]] = {"keys": _key_names}
    org_id: str
    tool_id: str
    keys: list[str]
    backend: str
    created_by: str | None = None
