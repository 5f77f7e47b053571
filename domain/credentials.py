"""Tool credentials: what may be stored, and how values are shown when they are not unmasked."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

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


def masked(value: Any) -> Any:
    """``value`` with what is under secret-looking names masked, at any depth (step logs' inputs)."""
    if isinstance(value, dict):
        return {
            k: MASK if is_sensitive(str(k)) and v not in (None, "") else masked(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


SECRET_MIN = 4  # shorter values under secret-looking names are not looked for in free text


def secret_values(value: Any, found: set[str]) -> set[str]:
    """Add to ``found`` the text under secret-looking names in ``value`` (what ``masked`` hides)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not is_sensitive(str(k)):
                secret_values(v, found)
            elif isinstance(v, str) and len(v) >= SECRET_MIN:
                found.add(v)
            elif isinstance(v, int | float) and not isinstance(v, bool) and len(str(v)) >= SECRET_MIN:
                found.add(str(v))
            else:
                secret_values(v, found)
    elif isinstance(value, list):
        for v in value:
            secret_values(v, found)
    return found


def replaced(value: Any, secrets: Iterable[str], by: str) -> Any:
    """``value`` with every occurrence of ``secrets`` (longest first, as ``echo_forms`` sorts them)
    in its text replaced ``by``, at any depth: for secrets in free text (an upstream's echo, an
    error message, a line the code logged)."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, by)
        return value
    if isinstance(value, dict):
        return {k: replaced(v, secrets, by) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(v, secrets, by) for v in value]
    return value


# Credential names that say who, not what proves it: an upstream may echo them (a login, an email)
# without that being a leak, and redacting them everywhere would garble answers.
_IDENTITY = frozenset({"username", "user", "login", "email", "client_id", "region", "header_name"})


def echo_forms(credentials: Mapping[str, str], sent: Iterable[str] = ()) -> list[str]:
    """What to redact from an upstream's answer: the credential values (secret-looking names from
    4 characters, others from 8, identities never), the credentials as they were sent (``sent``:
    e.g. the base64 of ``user:password`` sent as ``Basic ...``), and their percent-encoded forms.
    Longest first, so that a value inside another is not left half-redacted."""
    forms: set[str] = set()
    for name, value in credentials.items():
        if name.lower() not in _IDENTITY and len(value) >= (4 if is_sensitive(name) else 8):
            forms.add(value)
    for value in sent:
        scheme, _, rest = value.partition(" ")
        forms.add(rest if rest and scheme.isalpha() else value)  # "Basic x": x ("Basic [REDACTED]")
    for value in list(forms):
        forms.update((quote(value, safe=""), quote_plus(value)))
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


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
