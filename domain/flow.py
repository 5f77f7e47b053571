"""Flows: named, versioned lists of steps. Step semantics arrive with the engine."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar, Self

from domain import rules
from domain.entity import Entity, Validator
from domain.rules import UNSET, Problems

STEPS_MAX = 500


def _steps(p: Problems, v: Any) -> list[dict[str, Any]]:
    steps = rules.json_list(p, "steps", v)
    if len(steps) > STEPS_MAX:
        p.add("steps", f"A flow has at most {STEPS_MAX} steps", "too_big")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            p.add(f"steps.{i}", f"Expected object, received {rules.type_name(step)}", "invalid_type")
    return steps


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Flow(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "name": lambda p, v: rules.text(p, "name", v),
        "description": lambda p, v: rules.optional_text(p, "description", v, max_len=5000),
        "steps": _steps,
        "settings": lambda p, v: rules.json_object(p, "settings", v),
    }
    org_id: str
    name: str
    description: str | None = None
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: int = 1

    def changed(self, *, now: datetime, **changes: Any) -> Self:
        """Changing the steps makes a new version; the engine pins executions to one."""
        updated = Entity.changed(self, now=now, **changes)
        if changes.get("steps", UNSET) is not UNSET and updated.steps != self.steps:
            updated = dataclasses.replace(updated, version=self.version + 1)
        return updated
