"""Turns the databases' integrity errors into the domain's AlreadyExists / InvalidReference."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

from domain.errors import AlreadyExists, DomainError, FieldError, InvalidReference

_PG_UNIQUE = re.compile(r'unique constraint "uq_(?P<table>[a-z_]+?)_org_id_(?P<column>[a-z_]+)"')
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<table>\w+)\.org_id, \w+\.(?P<column>\w+)")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def translate(exc: IntegrityError, resource: str) -> DomainError:
    text = str(exc.orig)
    match = _PG_UNIQUE.search(text) or _SQLITE_UNIQUE.search(text)
    if match:
        field = _camel(match["column"])
        message = f"A {resource.lower()} with this {field} already exists in the organization"
        return AlreadyExists(message, [FieldError(field, message, "already_exists")])
    if "foreign key" in text.lower():
        return InvalidReference("id", "A referenced object does not exist in this organization")
    if "unique" in text.lower():
        return AlreadyExists(f"This {resource.lower()} conflicts with an existing one")
    raise exc
