"""What every entity shares: validated construction and partial, validated updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Self

from domain.rules import UNSET, Problems

Validator = Callable[[Problems, Any], Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Entity:
    """An entity with an opaque id and creation/update times.

    Subclasses list in ``FIELDS`` a validator for each field a caller may set. ``build`` and
    ``changed`` run exactly those validators, so creation and update obey the same rules,
    and every problem of a request is reported at once.
    """

    FIELDS: ClassVar[dict[str, Validator]] = {}

    id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(cls, *, id: str, now: datetime, **values: Any) -> Self:
        problems = Problems()
        clean = {name: cls.FIELDS[name](problems, values.get(name)) for name in cls.FIELDS}
        fixed = {k: v for k, v in values.items() if k not in cls.FIELDS}
        problems.raise_if_any()
        return cls(id=id, created_at=now, updated_at=now, **fixed, **clean)

    def changed(self, *, now: datetime, **changes: Any) -> Self:
        """A copy with the given fields changed; fields passed as UNSET keep their value."""
        problems = Problems()
        clean = {
            name: self.FIELDS[name](problems, value) for name, value in changes.items() if value is not UNSET
        }
        problems.raise_if_any()
        if all(getattr(self, k) == v for k, v in clean.items()):
            return self
        return dataclasses.replace(self, updated_at=now, **clean)
