"""The databases' integrity errors as the domain's errors: REST and gRPC map them by type."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from adapters.persistence.integrity import translate
from domain.errors import AlreadyExists, InvalidReference


def error(text: str) -> IntegrityError:
    return IntegrityError("INSERT ...", None, Exception(text))


@pytest.mark.parametrize(
    "text",
    [
        'duplicate key value violates unique constraint "uq_tools_org_id_key"',  # PostgreSQL
        "UNIQUE constraint failed: tools.org_id, tools.key",  # SQLite
    ],
)
def test_a_unique_key_per_organization_names_its_field(text: str) -> None:
    found = translate(error(text), "Tool")
    assert isinstance(found, AlreadyExists)
    assert [(e.field, e.code) for e in found.errors] == [("key", "already_exists")]


def test_another_unique_violation_is_a_duplicate_too() -> None:
    """E.g. a primary key: no field to name, still ALREADY_EXISTS over gRPC (by type, not text)."""
    found = translate(error('duplicate key value violates unique constraint "pk_tools"'), "Tool")
    assert isinstance(found, AlreadyExists) and found.errors == []


def test_a_missing_reference_is_invalid_and_anything_else_is_raised() -> None:
    assert isinstance(translate(error("violates foreign key constraint"), "Action"), InvalidReference)
    with pytest.raises(IntegrityError):
        translate(error('null value in column "name" violates not-null constraint'), "Tool")
