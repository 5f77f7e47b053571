"""Organizations (tenants), their users and their API keys."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import ClassVar

from domain import rules
from domain.entity import Entity, Validator


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Organization(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "name": lambda p, v: rules.text(p, "name", v),
    }
    name: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class User(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "email": lambda p, v: rules.email(p, "email", v),
        "name": lambda p, v: rules.optional_text(p, "name", v, max_len=rules.NAME_MAX),
    }
    org_id: str
    email: str
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey(Entity):
    """An organization's API key. Only a hash of the secret is kept; the prefix identifies it."""

    FIELDS: ClassVar[dict[str, Validator]] = {
        "name": lambda p, v: rules.text(p, "name", "default" if v is None else v),
    }
    org_id: str
    name: str
    prefix: str
    key_hash: str
    created_by: str | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self, now: datetime) -> ApiKey:
        if self.revoked_at is not None:
            return self
        return dataclasses.replace(self, revoked_at=now, updated_at=now)
