"""AdvanceExecution: move one execution as far as it can go on this worker, checkpointing each step.

Engine-agnostic: a scheduler (in-process or ARQ) calls it and, from what it returns, schedules the
next call (a delay or a retry wake-up) or admits the queued executions that were waiting for a slot.

One call: take the execution's lease (no other worker advances it meanwhile; the lease expires if
this worker dies) -> admit it if it was queued (per-flow and per-organization slots) -> repeatedly
plan, write the step starts and the results of finished steps in one checkpoint (``run``), then run
the started steps concurrently. A step's result is committed before any step that depends on it
is recorded as started; a side-effect-free step's start is written with its result unless it runs
long, and it may compute while the checkpoint before it commits (see ``run``); any other step runs
only once its start is committed.
A delay or a waiting retry ends the call with a wake-up time: no worker waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from application.engine.run import Advanced, ExecutionRun
from application.engine.steps import StepRunners
from application.ports import Clock, Later, LeaseLost, Metrics, Page, Sandbox, UnitOfWork, UnitOfWorkFactory
from domain.errors import ValidationFailed
from domain.events import OutboxEvent
from domain.execution import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_EVENT,
    QUEUED,
    RUNNING,
    Execution,
    StepState,
)
from domain.flow_definition import FlowDefinition
from domain.ids import new_id

DEFINITIONS_KEPT = 256  # parsed flow versions kept per worker
ADMIT_BATCH = 3  # queued executions called in when one finishes
SWEEP_BATCH = 1000
STALE_QUEUED = timedelta(seconds=30)  # a queued execution nobody picked up for this long is pushed again
ADMISSION_RETRY = timedelta(seconds=30)  # a queued execution refused a slot is tried again by then


async def pinned_definition(uow: UnitOfWork, execution: Execution) -> tuple[FlowDefinition | None, str]:
    """The definition of the flow version ``execution`` pinned, or None and why it cannot run."""
    found = await uow.flow_versions.list(
        execution.org_id, Page(limit=1), {"flow_id": execution.flow_id, "version": execution.flow_version}
    )
    if not found:
        return None, "The flow version this execution pinned no longer exists"
    try:
        return found[0].definition, ""
    except ValidationFailed as exc:
        return None, exc.errors[0].message


class AdvanceExecution:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        runners: StepRunners,
        sandbox: Sandbox,
        metrics: Metrics,
        *,
        worker_id: str,
        lease_seconds: float = 30.0,
        flow_concurrency: int = 10,
        org_concurrency: int = 50,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        # Shared with the ExecutionRun of each claim (run.py), which works with them and with
        # ``event`` and ``conclude``.
        self.uow = uow_factory
        self.clock = clock
        self.runners = runners
        self.sandbox = sandbox
        self.metrics = metrics
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease_seconds)
        self._flow_concurrency = flow_concurrency
        self._org_concurrency = org_concurrency
        self.jitter = jitter
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._active: set[str] = set()
        self._definitions: OrderedDict[tuple[str, str, int], FlowDefinition] = OrderedDict()
        self._last_event = datetime.min.replace(tzinfo=UTC)

    # --- what schedulers ask (one answer for the in-process and the ARQ scheduler) --------------

    async def due(
        self, *, owner: str | None = None, fresh: bool = False
    ) -> list[tuple[str, str, datetime | None]]:
        """(org_id, id, wake_at) of what needs a push: running executions no live worker holds
        (with ``owner``: also its own, a restarted worker taking them back), due admission retries,
        and queued executions nobody picked up for STALE_QUEUED (``fresh``: whatever their age,
        as at start-up, when nothing scheduled before is remembered)."""
        now = self.clock.now()
        stale_before = None if fresh else now - STALE_QUEUED
        async with self.uow(read_only=True) as uow:
            return await uow.executions.due(now, SWEEP_BATCH, owner, stale_before)

    def abort(self, execution_id: str) -> bool:
        """Stop this worker's in-flight steps of the execution now (the cancel request is in the database)."""
        event = self._cancel_events.get(execution_id)
        if event is None:
            return False
        event.set()
        return True

    async def __call__(self, org_id: str, execution_id: str, *, direct: bool = False) -> Advanced:
        """``direct``: advanced inside the request that started it (``useDurable: false``); step
        logs say so (``metadata.executionMode``)."""
        # The lease keeps other workers out; this keeps out a second call on this worker (an ARQ
        # process runs several jobs at once, and a sweep may enqueue one for a running execution).
        if execution_id in self._active:
            return Advanced()
        self._active.add(execution_id)
        try:
            return await self._advance(org_id, execution_id, "direct" if direct else "durable")
        finally:
            self._active.discard(execution_id)

    async def _advance(self, org_id: str, execution_id: str, mode: str) -> Advanced:
        try:
            taken = await self._take(org_id, execution_id)
        except LeaseLost:  # taken over between the claim and a write: the new holder goes on
            return Advanced()
        except (asyncio.CancelledError, Exception):  # the claim may be committed: let it go, so
            await asyncio.shield(self._release(execution_id))  # that the next advance needn't
            raise  # wait for the lease to expire
        if isinstance(taken, Advanced):
            return taken
        run = ExecutionRun(self, *taken, mode)
        if run.execution.cancel_requested:  # concluded by the run, which finishes its steps' logs
            run.cancel.set()
        self._cancel_events[execution_id] = run.cancel
        try:
            return await run.go()
        except (asyncio.CancelledError, Exception):  # shutting down, or the database away: let
            await asyncio.shield(self._release(execution_id))  # the next advance take it at once
            raise
        finally:
            self._cancel_events.pop(execution_id, None)

    async def _take(
        self, org_id: str, execution_id: str
    ) -> Advanced | tuple[Execution, FlowDefinition, dict[str, StepState]]:
        """Claim the execution and admit it if it is queued: what the run needs, or the call's
        answer when there is nothing to run. Batched: on PostgreSQL the claim and the admission
        are a statement each, with no transaction around them (the lease, then the admission's
        lock, keep others out)."""
        now = self.clock.now()
        async with self.uow(batched=True) as uow:
            execution = await uow.executions.claim(execution_id, self.worker_id, now + self.lease, now)
            if execution is None:
                return Advanced()
            if execution.org_id != org_id:  # not the execution the job named: leave it be
                await uow.executions.release(execution_id, self.worker_id)
                await uow.commit()
                return Advanced()
            definition, problem = await self._definition(uow, execution)
            stop = None
            if definition is None:
                stop = FAILED, {"message": problem, "code": "INVALID_DEFINITION"}
            elif execution.cancel_requested and execution.status == QUEUED:
                stop = CANCELLED, {"message": "The execution was cancelled", "code": "CANCELLED"}
            if stop is not None:
                await uow.executions.fence(execution_id, self.worker_id)
                _, waiting = await self.conclude(uow, execution, stop[0], now, error=stop[1], outputs={})
                await uow.commit()
                return Advanced(finished=True, admit=tuple(waiting.value))
            assert definition is not None
            fresh = execution.status == QUEUED and not execution.resume
            if execution.status == QUEUED:
                admitted = await self._admit(uow, execution, definition, now)
                if admitted is None:
                    await uow.commit()  # waits for a slot (written at once when batched)
                    return Advanced()
                execution = admitted
            states = {}
            if not fresh:  # a new execution has no step states yet; a resumed one has reused ones
                states = {s.step_id: s for s in await uow.execution_steps.for_execution(org_id, execution_id)}
            await uow.commit()
        return execution, definition, states

    async def _definition(self, uow: UnitOfWork, execution: Execution) -> tuple[FlowDefinition | None, str]:
        """The pinned version's definition. Versions never change, so parsed ones are kept."""
        key = (execution.org_id, execution.flow_id, execution.flow_version)
        known = self._definitions.get(key)
        if known is not None:
            self._definitions.move_to_end(key)
            return known, ""
        definition, problem = await pinned_definition(uow, execution)
        if definition is None:
            return None, problem
        self._definitions[key] = definition
        if len(self._definitions) > DEFINITIONS_KEPT:
            self._definitions.popitem(last=False)
        return definition, ""

    async def _release(self, execution_id: str) -> None:
        with contextlib.suppress(Exception):
            async with self.uow() as uow:
                await uow.executions.release(execution_id, self.worker_id)
                await uow.commit()

    async def _admit(
        self, uow: UnitOfWork, execution: Execution, definition: FlowDefinition, now: datetime
    ) -> Execution | None:
        """A queued execution starts when its flow and its organization have a free slot;
        otherwise it waits for one: a finishing execution of the organization calls it in (and,
        in case that call is lost, the sweep tries again at ``wake_at``)."""
        timeout = definition.settings.timeout_ms
        started = execution.but(
            now,
            status=RUNNING,
            wake_at=None,
            started_at=now,
            deadline_at=now + timedelta(milliseconds=timeout) if timeout else None,
        )
        event = {
            "totalSteps": len(definition.steps),
            "flowVersion": execution.flow_version,
            "status": "started",
        }
        waiting = execution.but(now, wake_at=now + ADMISSION_RETRY, lease_owner=None, lease_until=None)
        admitted = await uow.executions.admit(
            started,
            waiting,
            self.event(started, "flow.started", now, **event),
            definition.settings.concurrency or self._flow_concurrency,
            self._org_concurrency,
        )
        return started if admitted else None

    def event(self, execution: Execution, kind: str, now: datetime, **payload: Any) -> OutboxEvent:
        body = {
            "executionId": execution.id,
            "flowId": execution.flow_id,
            "orgId": execution.org_id,
            "userId": execution.user_id,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            **payload,
        }
        # Events of one transaction share ``now``; a strictly rising time keeps their order for the relay.
        at = self._last_event = max(now, self._last_event + timedelta(microseconds=1))
        return OutboxEvent(id=new_id("evt"), org_id=execution.org_id, type=kind, payload=body, created_at=at)

    async def conclude(
        self,
        uow: UnitOfWork,
        execution: Execution,
        status: str,
        now: datetime,
        *,
        outputs: dict[str, Any],
        error: dict[str, Any] | None = None,
        counts: dict[str, int] | None = None,
    ) -> tuple[Execution, Later[list[str]]]:
        """Conclude the execution: with the commit, the queued executions of its organization
        that wait for the slot it frees (a few; the sweep and their own admission retry catch
        any others), read in the same round trip."""
        done = execution.concluded(now, status, outputs=outputs, error=error)
        await uow.executions.save_and_release(done)
        kind = FINAL_EVENT[status]
        payload: dict[str, Any] = {"status": status, "duration": done.duration_ms, **(counts or {})}
        if error is not None:
            payload["error"] = error
        if status == COMPLETED:
            payload["outputs"] = outputs
        await uow.outbox.add(self.event(done, kind, now, **payload))
        return done, await uow.executions.waiting_for_slot(execution.org_id, ADMIT_BATCH)
