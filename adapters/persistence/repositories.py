"""Repositories over SQLAlchemy Core. Rows map to entities field for field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from adapters.persistence import tables
from adapters.persistence.executor import Executor, prebuilt
from adapters.persistence.integrity import translate
from application.ports import KeyOwner, Page
from domain.organization import Organization

E = TypeVar("E")


def _storable(*values: Any) -> bool:
    """No stored text contains NUL (the domain refuses it, PostgreSQL cannot hold it), so a
    lookup by such a value matches nothing; asking the database would only raise."""
    return not any(isinstance(v, str) and "\x00" in v for v in values)


_COLUMNS: dict[str, tuple[str, ...]] = {}


def _columns(table: Table) -> tuple[str, ...]:
    found = _COLUMNS.get(table.name)
    if found is None:
        found = _COLUMNS[table.name] = tuple(table.c.keys())
    return found


class _Rows(Generic[E]):
    def __init__(self, db: Executor, table: Table, entity: type[E], resource: str) -> None:
        self._db = db
        self._table = table
        self._entity = entity
        self._resource = resource
        self._columns = _columns(table)

    def _values(self, entity: E) -> dict[str, Any]:
        return {column: getattr(entity, column) for column in self._columns}

    def _from_row(self, row: Mapping[str, Any]) -> E:
        return self._entity(**row)

    async def _write(self, statement: Executable) -> int:
        try:
            return await self._db.run(statement)
        except IntegrityError as exc:
            raise translate(exc, self._resource) from None

    async def count(self) -> int:
        return await self._db.scalar(select(func.count()).select_from(self._table))


_GET_BY_ID: dict[str, Any] = {}


def _get_by_id(table: Table) -> Any:
    """``SELECT … WHERE org_id = :org_id AND id = :id``, built once per table: the hottest read."""
    statement = _GET_BY_ID.get(table.name)
    if statement is None:
        statement = _GET_BY_ID[table.name] = prebuilt(
            select(table).where(table.c.org_id == bindparam("org_id"), table.c.id == bindparam("id"))
        )
    return statement


class SqlTenantRepository(_Rows[E]):
    """Every statement carries ``org_id = :org``: no method can reach another tenant's rows."""

    def __init__(
        self, db: Executor, table: Table, entity: type[E], resource: str, filterable: frozenset[str]
    ) -> None:
        super().__init__(db, table, entity, resource)
        self._filterable = filterable
        self._get = _get_by_id(table)

    async def add(self, entity: E) -> None:
        await self._write(insert(self._table).values(self._values(entity)))

    async def get(self, org_id: str, entity_id: str) -> E | None:
        if not _storable(org_id, entity_id):
            return None
        row = await self._db.first(self._get, {"org_id": org_id, "id": entity_id})
        return None if row is None else self._from_row(row)

    async def list(self, org_id: str, page: Page, filters: Mapping[str, Any] | None = None) -> list[E]:
        t = self._table
        query = select(t).where(t.c.org_id == org_id)
        for name, value in (filters or {}).items():
            if name not in self._filterable:
                raise ValueError(f"{self._resource} cannot be filtered by {name}")
            query = query.where(t.c[name] == value)
        if not _storable(org_id, *(filters or {}).values()):
            return []
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(page.limit).offset(page.offset)
        return [self._from_row(row) for row in await self._db.all(query)]

    async def update(self, entity: E) -> None:
        t = self._table
        values = self._values(entity)
        org_id, entity_id = values.pop("org_id"), values.pop("id")
        values.pop("created_at", None)
        await self._write(update(t).where(t.c.org_id == org_id, t.c.id == entity_id).values(values))

    async def delete(self, org_id: str, entity_id: str) -> bool:
        if not _storable(org_id, entity_id):
            return False
        t = self._table
        return await self._write(delete(t).where(t.c.org_id == org_id, t.c.id == entity_id)) > 0


class SqlApiKeyRepository(SqlTenantRepository[E]):
    async def resolve(self, key_hash: str, user_id: str | None) -> KeyOwner | None:
        k, u = tables.api_keys, tables.users
        if not _storable(user_id):
            user_id = "\ufffd"  # no such user: the membership answer is simply "no"
        if user_id is None:
            user_in_org: Any = False
            query = select(k.c.id, k.c.org_id, k.c.revoked_at)
        else:
            # One round trip answers both questions: whose key is this, and is the user theirs.
            member = select(u.c.id).where(u.c.id == user_id, u.c.org_id == k.c.org_id).exists()
            query = select(k.c.id, k.c.org_id, k.c.revoked_at, member.label("user_in_org"))
        row = await self._db.first(query.where(k.c.key_hash == key_hash))
        if row is None:
            return None
        user_in_org = bool(row["user_in_org"]) if user_id is not None else False
        return KeyOwner(row["id"], row["org_id"], row["revoked_at"] is not None, user_in_org)


class SqlOrganizationRepository(_Rows[Organization]):
    def __init__(self, db: Executor) -> None:
        super().__init__(db, tables.organizations, Organization, "Organization")

    async def add(self, org: Organization) -> None:
        await self._write(insert(self._table).values(self._values(org)))

    async def get(self, org_id: str) -> Organization | None:
        if not _storable(org_id):
            return None
        t = self._table
        row = await self._db.first(select(t).where(t.c.id == org_id))
        return None if row is None else self._from_row(row)

    async def list(self, page: Page, only_id: str | None = None) -> list[Organization]:
        t = self._table
        query = select(t)
        if only_id is not None:
            query = query.where(t.c.id == only_id)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(page.limit).offset(page.offset)
        return [self._from_row(row) for row in await self._db.all(query)]

    async def update(self, org: Organization) -> None:
        t = self._table
        await self._write(update(t).where(t.c.id == org.id).values(name=org.name, updated_at=org.updated_at))

    async def delete(self, org_id: str) -> bool:
        if not _storable(org_id):
            return False
        t = self._table
        return await self._write(delete(t).where(t.c.id == org_id)) > 0
