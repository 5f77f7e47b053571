"""Flows: named, versioned definitions of steps (domain/flow_definition.py says what a step is).

A flow's steps and execution settings are checked as a whole on every create and update. Changing
either makes a new version; each version is kept as an immutable ``FlowVersion`` and an execution
pins the version it started on.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar, Self

from domain import rules
from domain.entity import Entity, Validator
from domain.errors import ValidationFailed
from domain.flow_definition import STEPS_MAX, FlowDefinition, parse_definition
from domain.rules import UNSET, Problems

__all__ = ["STEPS_MAX", "Flow", "FlowVersion"]


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

    @property
    def definition(self) -> FlowDefinition:
        """The stored steps and settings, checked to run them; raises ValidationFailed naming each
        step and field (rules added since a flow was stored are not applied: it runs as it did)."""
        return parse_definition(self.steps, self.settings, stored=True)

    def _check_definition(self) -> None:
        """The definition as a whole must hold, by every rule: on every create and update."""
        parse_definition(self.steps, self.settings)

    @classmethod
    def build(cls, *, id: str, now: datetime, **values: Any) -> Self:
        flow = Entity.build.__func__(cls, id=id, now=now, **values)  # type: ignore[attr-defined]
        flow._check_definition()
        return flow

    def changed(self, *, now: datetime, **changes: Any) -> Self:
        """Changing the steps or the settings makes a new version; executions pin one. Omitting
        them on create means none, but an update cannot set them to null (REST ``"steps": null``,
        a gRPC update_mask naming an unset field): send ``[]`` or ``{}`` to clear them."""
        nulls = Problems()
        for name, kind in (("steps", "array"), ("settings", "object")):
            if name in changes and changes[name] is None:
                nulls.add(name, f"Expected {kind}, received null", "invalid_type")
                changes[name] = UNSET
        try:
            updated = Entity.changed(self, now=now, **changes)
        except ValidationFailed as exc:
            raise ValidationFailed([*nulls.errors, *exc.errors]) from None
        nulls.raise_if_any()
        if updated is self:
            return self
        if (updated.steps, updated.settings) != (self.steps, self.settings):
            updated._check_definition()
            updated = dataclasses.replace(updated, version=self.version + 1)
        return updated

    def snapshot(self, *, version_id: str, created_by: str | None) -> FlowVersion:
        return FlowVersion(
            id=version_id,
            org_id=self.org_id,
            flow_id=self.id,
            version=self.version,
            steps=self.steps,
            settings=self.settings,
            created_by=created_by,
            created_at=self.updated_at,
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FlowVersion:
    """One version of a flow's steps and settings, as it was; never changed after it is written."""

    id: str
    org_id: str
    flow_id: str
    version: int
    steps: list[dict[str, Any]]
    settings: dict[str, Any]
    created_by: str | None
    created_at: datetime

    @property
    def definition(self) -> FlowDefinition:
        return parse_definition(self.steps, self.settings, stored=True)
