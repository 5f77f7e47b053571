"""Audit events: who did what to which object, and when."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    id: str
    org_id: str
    action: str  # e.g. "tool.created"
    resource_type: str
    resource_id: str
    actor_user_id: str | None
    api_key_id: str | None
    details: dict[str, Any]
    created_at: datetime
