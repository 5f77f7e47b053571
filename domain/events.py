"""Outbox events: written in the same transaction as the change they announce, relayed later
(webhooks, realtime, metrics), so a crash between commit and relay loses nothing."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

EVENT_TYPES = (
    "flow.started", "flow.completed", "flow.failed",
    "step.started", "step.completed", "step.failed", "step.skipped",
    "action.executed", "action.failed", "webhook.test",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEvent:
    id: str
    org_id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    dispatched_at: datetime | None = None
