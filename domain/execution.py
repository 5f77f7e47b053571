"""Executions: one run of one pinned flow version, and the state of each of its steps.

``plan`` is the engine's whole decision procedure as a pure function: given the definition and the
step states it says which steps start now, which delays are due, which in-flight steps a dead
worker left behind, when the engine must look again, and whether the execution is over.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.flow_definition import FlowDefinition, RetryPolicy, StepDefinition

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
EXECUTION_STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
# The outbox event that announces each way an execution ends (the last event of an execution).
FINAL_EVENT = {COMPLETED: "flow.completed", FAILED: "flow.failed", CANCELLED: "flow.cancelled"}

# Step states. RUNNING with ``next_at`` is a delay in progress (no worker holds it); WAITING is a
# failed attempt whose retry is due at ``next_at``.
PENDING, WAITING, SKIPPED = "pending", "waiting", "skipped"
STEP_STATUSES = (PENDING, RUNNING, WAITING, COMPLETED, FAILED, SKIPPED)
STEP_DONE = frozenset({COMPLETED, FAILED, SKIPPED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    id: str
    org_id: str
    flow_id: str
    flow_version: int
    user_id: str | None
    status: str
    variables: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_of: str | None = None
    resume: bool = False  # a retry that reuses the completed steps of ``retry_of``
    wake_at: datetime | None = None
    deadline_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def but(self, now: datetime, **changes: Any) -> Execution:
        return dataclasses.replace(self, updated_at=now, **changes)

    def concluded(self, now: datetime, status: str, **changes: Any) -> Execution:
        started = self.started_at or now
        duration = int((now - started).total_seconds() * 1000)
        return self.but(
            now,
            status=status,
            finished_at=now,
            duration_ms=duration,
            wake_at=None,
            lease_owner=None,
            lease_until=None,
            **changes,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    id: str  # "{execution_id}:{step_id}"
    org_id: str
    execution_id: str
    step_id: str
    status: str = PENDING
    attempt: int = 0  # attempts started so far
    output: Any = None
    error: dict[str, Any] | None = None
    next_at: datetime | None = None
    log_id: str | None = None  # the execution log row of the current attempt
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def new(cls, org_id: str, execution_id: str, step_id: str, now: datetime) -> StepState:
        return cls(
            id=f"{execution_id}:{step_id}",
            org_id=org_id,
            execution_id=execution_id,
            step_id=step_id,
            created_at=now,
            updated_at=now,
        )

    def but(self, now: datetime, **changes: Any) -> StepState:
        return dataclasses.replace(self, updated_at=now, **changes)


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[str, ...] = ()  # pending steps whose dependencies are done, and retries now due
    rerun: tuple[str, ...] = ()  # in flight when their worker stopped: run the same attempt again
    wake: tuple[str, ...] = ()  # delays that are due: complete them
    next_at: datetime | None = None  # the earliest future wake-up (a delay or a retry)
    outcome: str | None = None  # COMPLETED or FAILED once nothing more can happen
    failed_step: str | None = None  # the critical step that failed the execution


def plan(definition: FlowDefinition, states: dict[str, StepState], now: datetime, in_flight=()) -> Plan:
    """What to do next. ``in_flight`` are steps this worker is running right now."""
    for step in definition.steps:
        state = states.get(step.id)
        if state is not None and state.status == FAILED and step.critical:
            return Plan(outcome=FAILED, failed_step=step.id) if not in_flight else Plan()
    start: list[str] = []
    rerun: list[str] = []
    wake: list[str] = []
    later: list[datetime] = []
    for step_id in definition.order:
        state = states.get(step_id)
        status = state.status if state else PENDING
        if step_id in in_flight or status in STEP_DONE:
            continue
        if status == PENDING:
            if all(_done(states.get(d)) for d in definition.step(step_id).depends_on):
                start.append(step_id)
        elif status == WAITING or (status == RUNNING and state.next_at is not None):
            if state.next_at is None or state.next_at <= now:
                (start if status == WAITING else wake).append(step_id)
            else:
                later.append(state.next_at)
        elif status == RUNNING:
            rerun.append(step_id)
    if not (start or rerun or wake or later or in_flight):
        pending = [s for s in definition.order if not _done(states.get(s))]
        return Plan(outcome=COMPLETED if not pending else FAILED)
    return Plan(tuple(start), tuple(rerun), tuple(wake), min(later) if later else None)


def _done(state: StepState | None) -> bool:
    return state is not None and state.status in STEP_DONE


def retry_policy(step: StepDefinition, definition: FlowDefinition) -> RetryPolicy:
    return step.retry or definition.settings.retry


def retry_at(policy: RetryPolicy, attempt: int, now: datetime, jitter: float) -> datetime | None:
    """When attempt ``attempt + 1`` may start after attempt ``attempt`` failed, or None when the
    policy allows no more. ``jitter`` in [0, 1) spreads retries by up to ±10% of the delay."""
    if attempt > policy.max_retries:
        return None
    delay = policy.delay_ms(attempt) * (0.9 + 0.2 * jitter)
    return now + timedelta(milliseconds=min(delay, policy.max_delay_ms))


def execution_outputs(definition: FlowDefinition, states: dict[str, StepState]) -> dict[str, Any]:
    return {s: states[s].output for s in definition.order if s in states and states[s].status == COMPLETED}
