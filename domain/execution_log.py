"""Execution logs: one row per step run, following started -> completed | failed | skipped."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar, Self

from domain import rules
from domain.entity import Entity, Validator
from domain.errors import Conflict
from domain.rules import Problems

STARTED = "started"
LOG_STATUSES = (STARTED, "completed", "failed", "skipped")


def _optional_object(field: str) -> Validator:
    def check(p: Problems, v: Any) -> dict[str, Any] | None:
        return None if v is None else rules.json_object(p, field, v)

    return check


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionLog(Entity):
    FIELDS: ClassVar[dict[str, Validator]] = {
        "flow_id": lambda p, v: rules.text(p, "flowId", v),
        "execution_id": lambda p, v: rules.text(p, "executionId", v),
        "step_key": lambda p, v: rules.text(p, "stepKey", v),
        "status": lambda p, v: rules.one_of(p, "status", STARTED if v is None else v, LOG_STATUSES),
        "inputs": lambda p, v: rules.json_object(p, "inputs", v),
        "outputs": _optional_object("outputs"),
        "error": _optional_object("error"),
    }
    org_id: str
    user_id: str | None
    flow_id: str
    execution_id: str
    step_key: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status != STARTED

    def changed(self, *, now: datetime, **changes: Any) -> Self:
        """A finished step run is history: once it left 'started', nothing about it changes."""
        updated = Entity.changed(self, now=now, **changes)
        if updated is not self and self.finished:
            raise Conflict(f"Execution log is already '{self.status}'; a finished step run cannot change")
        return updated
