"""Executions as users see them: start (durable or in the request), list, inspect, cancel, retry
(plain or resuming), per-flow metrics, step logs and organization-wide statistics."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from application.engine.advance import AdvanceExecution, pinned_definition
from application.ports import Clock, Page, Scheduler, UnitOfWork, UnitOfWorkFactory
from application.resources import Flows, audit_event
from application.tenancy import TenantContext
from domain import rules
from domain.errors import Conflict, FieldError, InvalidReference, NotFound, ValidationFailed
from domain.events import OutboxEvent
from domain.execution import COMPLETED, EXECUTION_STATUSES, FINAL_EVENT, QUEUED, Execution, StepState
from domain.execution_log import ExecutionLog
from domain.ids import execution_id
from domain.rules import Problems

LOGS_MAX = 10_000
DIRECT_MAX_SECONDS = 300.0  # an execution run inside a request gives up waiting after this
FINAL_EVENTS = frozenset(FINAL_EVENT.values())
WATCH_POLL_SECONDS = 0.15
WATCH_BATCH = 200
# Events of concurrent transactions may commit slightly out of created_at order: every poll looks
# this far back again (what was already sent is skipped by id).
WATCH_LOOKBACK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class ExecutionView:
    execution: Execution
    steps: tuple[StepState, ...] = ()
    user_email: str | None = None


async def _emails(uow: Any, org_id: str, executions: list[Execution]) -> dict[str, str]:
    found: dict[str, str] = {}
    for user_id in {e.user_id for e in executions if e.user_id}:
        user = await uow.users.get(org_id, user_id)
        if user is not None:
            found[user_id] = user.email
    return found


@dataclass(frozen=True, slots=True)
class FlowMetrics:
    total_executions: int
    status_breakdown: dict[str, int]  # every status, zero when none
    success_rate: float  # percent of executions completed, 1 decimal


@dataclass(frozen=True, slots=True)
class ExecutionStats:
    total_executions: int
    completed_steps: int
    failed_steps: int
    skipped_steps: int
    avg_execution_time_ms: int
    success_rate: float  # percent of finished step runs that completed, 1 decimal
    start: datetime | None
    end: datetime | None


def parse_period(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """REST's ``from``/``to``: dates (``to`` inclusive: the end of that day) or ISO 8601 times."""
    p = Problems()
    period = _period(start, "from", False, p), _period(end, "to", True, p)
    p.raise_if_any()
    return period


def _period(raw: str | None, field: str, end: bool, p: Problems) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, dtime.max if end else dtime.min, tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00: no such time in UTC
        p.add(
            field,
            f"Expected a time between the years 1 and 9999 in UTC, received '{raw[:40]}'",
            "invalid_date",
        )
        return None
    except ValueError:
        p.add(
            field, f"Expected a date (YYYY-MM-DD) or an ISO 8601 time, received '{raw[:40]}'", "invalid_date"
        )
        return None


CHECKED_KEPT = 4096  # flow versions known to hold, per process


class Executions:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        scheduler: Scheduler,
        advance: AdvanceExecution,
        *,
        flows: Flows | None = None,
    ) -> None:
        """``flows``: where a started execution's flow is read (the API's, with its read cache)."""
        self._uow = uow_factory
        self._clock = clock
        self._flows = flows or Flows(uow_factory, clock)
        self._scheduler = scheduler
        self._advance = advance
        # Flow versions whose definition was checked here: a version never changes, so it holds.
        self._checked: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    # --- start ------------------------------------------------------------------------------------

    async def start(
        self, ctx: TenantContext, flow_id: str, variables: Any, durable: bool = True
    ) -> ExecutionView:
        p = Problems()
        variables = rules.json_object(p, "variables", variables)
        p.raise_if_any()
        now = self._clock.now()
        flow = await self._flows.get(ctx, flow_id)  # NotFound; a copy, when the read cache has one
        if not flow.steps:
            raise ValidationFailed([FieldError("steps", "The flow has no steps to run", "too_small")])
        version = (ctx.org_id, flow.id, flow.version)
        if version in self._checked:
            self._checked.move_to_end(version)
        else:
            flow.definition  # noqa: B018 - a flow stored before definitions were checked may not hold
            self._checked[version] = None
            if len(self._checked) > CHECKED_KEPT:
                self._checked.popitem(last=False)
        execution = self._new(ctx, flow.id, flow.version, variables, now)
        try:  # one statement on PostgreSQL: no transaction round trips
            async with self._uow(batched=True) as uow:
                await uow.executions.add(execution)
                await uow.audit.add(
                    audit_event(
                        ctx, "flow.executed", "flow", flow.id, now, executionId=execution.id, durable=durable
                    )
                )
                await uow.commit()
        except InvalidReference:  # the flow was deleted since it was read
            raise NotFound("Flow", flow_id) from None
        return await self._launch(execution, durable)

    def _new(
        self,
        ctx: TenantContext,
        flow_id: str,
        version: int,
        variables: dict[str, Any],
        now: datetime,
        **extra: Any,
    ) -> Execution:
        return Execution(
            id=execution_id(time.time()),
            org_id=ctx.org_id,
            flow_id=flow_id,
            flow_version=version,
            user_id=ctx.user_id,
            status=QUEUED,
            variables=variables,
            created_at=now,
            updated_at=now,
            **extra,
        )

    async def _launch(self, execution: Execution, durable: bool) -> ExecutionView:
        if durable:
            await self._scheduler.schedule(execution.org_id, execution.id)
            return ExecutionView(execution)
        await self.run_here(execution.org_id, execution.id)
        ctx = TenantContext(org_id=execution.org_id)
        return await self.get(ctx, execution.flow_id, execution.id)

    async def run_here(self, org_id: str, execution_id: str) -> None:
        """Advance an execution in this task until it is over (``useDurable: false``)."""
        give_up = time.monotonic() + DIRECT_MAX_SECONDS
        while time.monotonic() < give_up:
            advanced = await self._advance(org_id, execution_id, direct=True)
            for waiting in advanced.admit:  # the slot it held is free: call in who waits for one
                await self._scheduler.schedule(org_id, waiting)
            if advanced.finished:
                return
            if advanced.wake_at is not None:
                await asyncio.sleep(max(0.0, (advanced.wake_at - self._clock.now()).total_seconds()))
                continue
            # Not claimed: queued behind the concurrency limits, held by another worker, or over -
            # the scheduler's sweep may have taken it while this task slept through a delay (its
            # lease is let go meanwhile), and finished it.
            async with self._uow(read_only=True) as uow:
                current = await uow.executions.get(org_id, execution_id)
            if current is None or current.finished:
                return
            await asyncio.sleep(0.05)
        await self._scheduler.schedule(org_id, execution_id)  # the engine carries on with it

    # --- read -------------------------------------------------------------------------------------

    async def list(
        self, ctx: TenantContext, flow_id: str, status: str | None, page: Page
    ) -> list[ExecutionView]:
        if status is not None:
            p = Problems()
            rules.one_of(p, "status", status, EXECUTION_STATUSES)
            p.raise_if_any()
        async with self._uow(read_only=True) as uow:
            if await uow.flows.get(ctx.org_id, flow_id) is None:
                raise NotFound("Flow", flow_id)
            filters = {"flow_id": flow_id} | ({"status": status} if status else {})
            found = await uow.executions.list(ctx.org_id, page, filters)
            emails = await _emails(uow, ctx.org_id, found)
        return [ExecutionView(e, user_email=emails.get(e.user_id or "")) for e in found]

    async def get(self, ctx: TenantContext, flow_id: str, exec_id: str) -> ExecutionView:
        async with self._uow(read_only=True) as uow:
            execution = await self._load(uow, ctx, flow_id, exec_id)
            steps = await uow.execution_steps.for_execution(ctx.org_id, exec_id)
            found = await uow.flow_versions.list(
                ctx.org_id, Page(limit=1), {"flow_id": flow_id, "version": execution.flow_version}
            )
            emails = await _emails(uow, ctx.org_id, [execution])
        version = found[0] if found else None
        order = {s.get("id"): i for i, s in enumerate(version.steps)} if version else {}
        steps.sort(key=lambda s: (order.get(s.step_id, len(order)), s.step_id))
        return ExecutionView(execution, tuple(steps), emails.get(execution.user_id or ""))

    async def _load(self, uow: Any, ctx: TenantContext, flow_id: str | None, exec_id: str) -> Execution:
        """The execution, of the flow ``flow_id`` (None: whichever flow it belongs to)."""
        execution = await uow.executions.get(ctx.org_id, exec_id)
        if execution is None or flow_id not in (None, execution.flow_id):
            raise NotFound("Execution", exec_id)
        return execution

    async def logs(self, ctx: TenantContext, flow_id: str | None, exec_id: str) -> list[ExecutionLog]:
        """The execution's step logs in order (``flow_id`` None: the execution named alone)."""
        async with self._uow(read_only=True) as uow:
            execution = await self._load(uow, ctx, flow_id, exec_id)
            found = await uow.execution_logs.list(
                ctx.org_id, Page(limit=LOGS_MAX), {"flow_id": execution.flow_id, "execution_id": exec_id}
            )
        return sorted(found, key=lambda log: (log.created_at, log.id))

    async def metrics(self, ctx: TenantContext, flow_id: str) -> FlowMetrics:
        async with self._uow(read_only=True) as uow:
            if await uow.flows.get(ctx.org_id, flow_id) is None:
                raise NotFound("Flow", flow_id)
            counts = await uow.executions.status_counts(ctx.org_id, flow_id)
        total = sum(counts.values())
        breakdown = {
            status: counts.get(status, 0) for status in (COMPLETED, "failed", "running", QUEUED, "cancelled")
        }
        rate = round(counts.get(COMPLETED, 0) * 100 / total, 1) if total else 0.0
        return FlowMetrics(total, breakdown, rate)

    async def stats(self, ctx: TenantContext, start: datetime | None, end: datetime | None) -> ExecutionStats:
        if start and end and start > end:
            raise ValidationFailed([FieldError("from", "'from' is after 'to'", "invalid_range")])
        async with self._uow(read_only=True) as uow:
            counts = await uow.execution_logs.stats(ctx.org_id, start, end)
            average = await uow.executions.average_duration_ms(ctx.org_id, start, end)
        steps = counts["completed"] + counts["failed"] + counts["skipped"]
        return ExecutionStats(
            total_executions=counts["executions"],
            completed_steps=counts["completed"],
            failed_steps=counts["failed"],
            skipped_steps=counts["skipped"],
            avg_execution_time_ms=round(average) if average is not None else 0,
            success_rate=round(counts["completed"] * 100 / steps, 1) if steps else 0.0,
            start=start,
            end=end,
        )

    async def watch(
        self, ctx: TenantContext, flow_id: str, exec_id: str, *, poll_seconds: float = WATCH_POLL_SECONDS
    ) -> AsyncIterator[OutboxEvent]:
        """Every event of the execution in the outbox, oldest first: those already recorded, then
        new ones as they are committed (polled), until the one that concludes it. Stop iterating
        (or cancel the task) to stop watching."""
        seen: set[str] = set()
        since: datetime | None = None
        while True:
            async with self._uow(read_only=True) as uow:
                # Read first: events commit with the state they announce, so once the execution
                # is seen finished, the poll below sees every one of its events.
                finished = (await self._load(uow, ctx, flow_id, exec_id)).finished
                found = await uow.outbox.for_execution(ctx.org_id, exec_id, since, WATCH_BATCH)
            for event in found:
                if event.id in seen:
                    continue
                seen.add(event.id)
                yield event
                if event.type in FINAL_EVENTS:
                    return
            if len(found) >= WATCH_BATCH:  # more are waiting: read on at once
                since = found[-1].created_at
                continue
            if finished:
                return
            if found:
                since = found[-1].created_at - WATCH_LOOKBACK
            await asyncio.sleep(poll_seconds)

    # --- change -----------------------------------------------------------------------------------

    async def cancel(self, ctx: TenantContext, flow_id: str, exec_id: str) -> ExecutionView:
        now = self._clock.now()
        async with self._uow() as uow:
            execution = await self._load(uow, ctx, flow_id, exec_id)
            if execution.finished:
                raise Conflict(f"Execution {exec_id} is already {execution.status}")
            await uow.executions.request_cancel(ctx.org_id, exec_id)
            await uow.audit.add(
                audit_event(ctx, "execution.cancel_requested", "execution", exec_id, now, flowId=flow_id)
            )
            await uow.commit()
        await self._scheduler.abort(exec_id)
        await self._scheduler.schedule(ctx.org_id, exec_id)  # whoever holds it next concludes it
        return await self.get(ctx, flow_id, exec_id)

    async def _resumable(self, uow: UnitOfWork, original: Execution) -> tuple[list[StepState], bool]:
        """The step states a resume of ``original`` reuses (completed, and after no step that runs
        again), and whether any step is left to run."""
        states = await uow.execution_steps.for_execution(original.org_id, original.id)
        completed = {s.step_id: s for s in states if s.status == COMPLETED}
        definition, _ = await pinned_definition(uow, original)
        if definition is None:  # the run will fail on it anyway: keep what completed
            return list(completed.values()), True
        kept = definition.reusable(completed)
        return [completed[s] for s in kept], len(kept) < len(definition.steps)

    async def retry(
        self, ctx: TenantContext, flow_id: str, exec_id: str, resume: bool = False
    ) -> ExecutionView:
        now = self._clock.now()
        async with self._uow() as uow:
            original = await self._load(uow, ctx, flow_id, exec_id)
            if not original.finished:
                raise Conflict(f"Execution {exec_id} is still {original.status}; cancel it first or wait")
            kept: list[StepState] = []
            if resume:
                kept, rerun = await self._resumable(uow, original)
                if not rerun:  # e.g. completed with every step: a resume would run nothing
                    raise Conflict(
                        f"Execution {exec_id} {original.status} every step; there is nothing to resume"
                    )
            execution = self._new(
                ctx,
                flow_id,
                original.flow_version,
                original.variables,
                now,
                retry_of=original.id,
                resume=resume,
            )
            await uow.executions.add(execution)
            for state in kept:
                reused = StepState.new(ctx.org_id, execution.id, state.step_id, now)
                await uow.execution_steps.add(
                    reused.but(now, status=COMPLETED, output=state.output, finished_at=state.finished_at)
                )
            await uow.audit.add(
                audit_event(
                    ctx, "execution.retried", "execution", execution.id, now, retryOf=exec_id, resume=resume
                )
            )
            await uow.commit()
        return await self._launch(execution, durable=True)
