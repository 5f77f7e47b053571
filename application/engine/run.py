"""One claim's worth of progress on one execution: the checkpointing loop AdvanceExecution runs
once it holds the execution's lease.

Each turn: record the steps that finished (state, log row, event), complete delays that are due,
plan, start the ready steps -- all in one (batched) transaction -- then run the started steps
concurrently and wait for the first to finish, the next wake-up, the flow's deadline or a cancel.
A step's result is committed before any step that depends on it is recorded as started, or runs if
it has side effects. With nothing running and only future wake-ups left, the loop ends and hands
back the wake-up time: no worker waits for it.
Steps without side effects (DEFERRED_START) have their start written with their result, in the
same checkpoint, unless they run longer than START_RECORD_AFTER, and they begin computing while the
checkpoint that made them ready commits (a refused or failed commit stops the run, dropping what
they computed): a chain of them overlaps each commit's round trip with the next step's run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from application.engine.steps import StepContext, StepFailed
from application.ports import Later, LeaseLost, SandboxSession, UnitOfWork
from domain import rules
from domain.credentials import MASK, masked, replaced, secret_values
from domain.events import OutboxEvent
from domain.execution import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RUNNING,
    SKIPPED,
    WAITING,
    Execution,
    StepState,
    execution_outputs,
    plan,
    retry_at,
    retry_policy,
)
from domain.execution_log import ExecutionLog
from domain.flow_definition import FlowDefinition, StepDefinition
from domain.ids import new_id
from domain.rules import Problems

if TYPE_CHECKING:
    from application.engine.advance import AdvanceExecution

log = logging.getLogger("tolstoy.engine")
SOON = timedelta(milliseconds=20)  # a wake-up this close is waited for here, not scheduled
# Steps without side effects (JavaScript over the context) whose start is recorded with their
# result, in one checkpoint, unless they are still running after START_RECORD_AFTER: a crash in
# between loses nothing that running them again would not give back. Every other step's start is
# committed before it runs (a request sent twice must carry the same attempt and key).
DEFERRED_START = frozenset({"data_transform", "conditional"})
START_RECORD_AFTER = timedelta(milliseconds=250)


@dataclass(frozen=True, slots=True)
class Advanced:
    """What one call achieved, for the scheduler: when to call again, or that it is over."""

    wake_at: datetime | None = None  # call again then
    finished: bool = False  # the execution is over
    admit: tuple[str, ...] = ()  # queued executions of its organization to call in: a slot freed up


@dataclass(slots=True)
class _Start:
    """A started attempt whose rows are not written yet (DEFERRED_START)."""

    at: datetime
    new_state: bool  # the step has no row yet
    log: ExecutionLog
    event: OutboxEvent


@dataclass(slots=True)
class _Finish:
    step_id: str
    output: Any = None
    error: StepFailed | None = None
    skipped: bool = False
    seconds: float = 0.0
    logs: list[dict[str, Any]] = field(default_factory=list)


def _storable(result: _Finish) -> _Finish:
    """What a step returned must be storable JSON (no NUL characters, finite numbers, bounded
    nesting) on every database; otherwise the step fails for good, instead of its checkpoint
    failing, and the step being sent again, forever. Integers beyond ±(2^53 - 1) are kept as
    doubles, as JavaScript reads them. Logs the code printed that cannot be stored are replaced by
    a note: they do not fail a step that succeeded."""
    problems = Problems()
    rules.json_object(problems, "logs", {"logs": result.logs})
    if problems.errors:
        result = replace(result, logs=rules.wide_integers_as_doubles(result.logs))
        problems = Problems()
        rules.json_object(problems, "logs", {"logs": result.logs})
    if problems.errors:
        first = problems.errors[0]
        note = f"The step's logs were dropped: they cannot be stored ({first.field}: {first.message})"
        dropped = {"type": "warn", "message": note}
        if result.logs and isinstance(result.logs[0], dict) and "timestamp" in result.logs[0]:
            dropped["timestamp"] = result.logs[0]["timestamp"]
        result = replace(result, logs=[dropped])
        problems = Problems()
    document: dict[str, Any] = {"output": result.output}
    if result.error is not None:
        document["error"] = result.error.as_error()
    rules.json_object(problems, "result", document)
    if problems.errors and result.output is not None:
        result = replace(result, output=rules.wide_integers_as_doubles(result.output))
        document["output"], problems = result.output, Problems()
        rules.json_object(problems, "result", document)
    if not problems.errors:
        return result
    first = problems.errors[0]
    failure = StepFailed(
        f"The step's result cannot be stored ({first.field}: {first.message})",
        "OUTPUT_NOT_STORABLE",
        retryable=False,
    )
    return _Finish(result.step_id, error=failure, seconds=result.seconds)


class ExecutionRun:
    """One claim's worth of progress on one execution."""

    def __init__(
        self,
        engine: AdvanceExecution,
        execution: Execution,
        definition: FlowDefinition,
        states: dict[str, StepState],
        mode: str = "durable",
    ) -> None:
        self.e = engine
        self.mode = mode
        self.execution = execution
        self.definition = definition
        self.states = states
        self.tasks: dict[str, asyncio.Task[_Finish]] = {}
        self.cancel = asyncio.Event()
        self.lost = False
        self.stopping = False  # concluding (cancel or timeout): failures are final, no retries
        # Steps written in the checkpoint being built: a batched checkpoint is one statement, in
        # which a row may be written only once, so a step recorded in it starts in the next one.
        self.touched: set[str] = set()
        self.logs: dict[str, ExecutionLog] = {}  # log rows this run started, by id
        self.unwritten: dict[str, _Start] = {}  # started attempts not yet in the database
        # Secret values in the variables and the outputs looked at so far (see _secrets): gathered
        # only once a step fails or prints.
        self._secret_values: set[str] | None = None
        self._outputs_scanned: set[str] = set()
        self._cancel_waiter: asyncio.Future[Any] | None = None

    def _outputs(self) -> dict[str, Any]:
        return execution_outputs(self.definition, self.states)

    async def go(self) -> Advanced:
        keeper = asyncio.create_task(self._keep_lease())
        try:
            async with self.e.sandbox.session(self.execution.org_id) as sandbox:
                try:
                    return await self._loop(sandbox)
                finally:  # the steps still running stop before their sandbox session closes
                    for task in self.tasks.values():
                        task.cancel()
                    await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        except LeaseLost:  # another worker took the execution over: it wrote nothing, stop here
            log.warning("lost the lease of %s; another worker goes on with it", self.execution.id)
            self.lost = True
            return Advanced()
        finally:
            keeper.cancel()
            if self._cancel_waiter is not None:
                self._cancel_waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self) -> None:
        """Renew the lease while working; notice a cancel request made through another process."""
        renew_every = self.e.lease.total_seconds() / 3
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, renew_every))
            try:
                if time.monotonic() - last >= renew_every:
                    async with self.e.uow() as uow:
                        until = self.e.clock.now() + self.e.lease
                        renewed = await uow.executions.renew(self.execution.id, self.e.worker_id, until)
                        await uow.commit()
                    if not renewed:  # another worker took it over: stop, write nothing more
                        self.lost = True
                        self.cancel.set()
                        return
                    last = time.monotonic()
                async with self.e.uow(read_only=True) as uow:
                    current = await uow.executions.get(self.execution.org_id, self.execution.id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: the lease has two more renewals'
                log.warning("keeping the lease of %s failed; trying again", self.execution.id, exc_info=True)
                continue  # worth of time left
            if current is not None and current.cancel_requested:
                self.cancel.set()

    async def _loop(self, sandbox: SandboxSession) -> Advanced:
        finished: list[_Finish] = []
        while True:
            now = self.e.clock.now()
            if self.lost:
                return Advanced()
            stop = self._stop_reason(now)
            if stop is not None:
                return await self._stop(stop, finished, now)
            self.touched = set()
            async with self.e.uow(batched=True) as uow:  # a checkpoint: one statement
                await uow.executions.fence(self.execution.id, self.e.worker_id)
                for result in finished:
                    await self._record(uow, result, now)
                finished = []
                for step_id in [k for k, v in self.unwritten.items() if now - v.at >= START_RECORD_AFTER]:
                    await self._write_start(uow, step_id)
                decision = self._plan(now)
                while decision.wake:
                    for step_id in decision.wake:
                        await self._record(uow, _Finish(step_id, output=self._delay_output(step_id)), now)
                    decision = self._plan(now)
                if decision.outcome is not None and not self.tasks:
                    waiting = await self._finish(uow, decision.outcome, decision.failed_step, now)
                    await uow.commit()
                    return Advanced(finished=True, admit=tuple(waiting.value))
                ready = [s for s in (*decision.start, *decision.rerun) if s not in self.touched]
                again = len(ready) < len(decision.start) + len(decision.rerun)  # e.g. a retry due at once
                started = [await self._begin(uow, s, now, rerun=s in decision.rerun) for s in ready]
                wake = decision.next_at
                if wake is not None and self.execution.deadline_at is not None:
                    wake = min(wake, self.execution.deadline_at)  # the flow's timeout ends the wait
                sleeping = not self.tasks and not any(started) and wake is not None and not again
                if sleeping and wake - now > SOON:
                    await uow.executions.save_and_release(
                        self.execution.but(now, wake_at=wake, lease_owner=None, lease_until=None)
                    )
                    await uow.commit()
                    return Advanced(wake_at=wake)
                # A step without side effects starts computing while this checkpoint commits
                # (nothing of it is written before its result, which waits for this commit:
                # should the commit fail, the run stops and the result is dropped unseen).
                # Any other step starts once its start is committed.
                runnable = [s for s in started if s is not None]
                for step in runnable:
                    if step.type in DEFERRED_START:
                        self.tasks[step.id] = asyncio.create_task(self._execute(step, sandbox))
                await uow.commit()
            for step in runnable:
                if step.id not in self.tasks:
                    self.tasks[step.id] = asyncio.create_task(self._execute(step, sandbox))
            if not self.tasks and again:
                continue  # the steps held back from this checkpoint start in the next
            if not self.tasks:
                if wake is not None:
                    await asyncio.sleep(max(0.0, (wake - self.e.clock.now()).total_seconds()))
                continue
            finished = await self._wait(now if again else decision.next_at)

    async def _wait(self, next_at: datetime | None) -> list[_Finish]:
        cancel = self._cancel_waiter
        if cancel is None:  # one for the whole run: it outlives the waits that see no cancel
            cancel = self._cancel_waiter = asyncio.ensure_future(self.cancel.wait())
        timeout = None
        deadline = self.execution.deadline_at
        first_unwritten = min((v.at for v in self.unwritten.values()), default=None)
        record_at = None if first_unwritten is None else first_unwritten + START_RECORD_AFTER
        for moment in (next_at, deadline, record_at):
            if moment is not None:
                seconds = max(0.0, (moment - self.e.clock.now()).total_seconds())
                timeout = seconds if timeout is None else min(timeout, seconds)
        done, _ = await asyncio.wait(
            [*self.tasks.values(), cancel], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        results = []
        for step_id, task in list(self.tasks.items()):
            if task in done:
                del self.tasks[step_id]
                results.append(task.result())
        return results

    def _plan(self, now: datetime):
        return plan(self.definition, self.states, now, tuple(self.tasks))

    def _stop_reason(self, now: datetime) -> str | None:
        if self.cancel.is_set():
            return CANCELLED
        deadline = self.execution.deadline_at
        if deadline is not None and now >= deadline:
            return "timeout"
        return None

    async def _stop(self, reason: str, finished: list[_Finish], now: datetime) -> Advanced:
        self.stopping = True
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.lost:
            return Advanced()
        code = "CANCELLED" if reason == CANCELLED else "FLOW_TIMEOUT"
        message = (
            "The execution was cancelled" if reason == CANCELLED else "The flow's execution timeout passed"
        )
        async with self.e.uow(batched=True) as uow:
            await uow.executions.fence(self.execution.id, self.e.worker_id)
            for result in finished:
                await self._record(uow, result, now)
            for step_id in list(self.tasks):
                failure = StepFailed(message, code, retryable=False)
                await self._record(uow, _Finish(step_id, error=failure), now)
            self.tasks.clear()
            for state in list(self.states.values()):  # delays and waiting retries end here too
                if state.status in (RUNNING, WAITING):
                    await self._record(
                        uow, _Finish(state.step_id, error=StepFailed(message, code, retryable=False)), now
                    )
            status = CANCELLED if reason == CANCELLED else FAILED
            error = {"message": message, "code": code}
            _, waiting = await self.e.conclude(
                uow, self.execution, status, now, outputs=self._outputs(), error=error, counts=self._counts()
            )
            await uow.commit()
        return Advanced(finished=True, admit=tuple(waiting.value))

    def _counts(self) -> dict[str, int]:
        statuses = [s.status for s in self.states.values()]
        return {
            "totalSteps": len(self.definition.steps),
            "completedSteps": statuses.count(COMPLETED),
            "failedSteps": statuses.count(FAILED),
            "skippedSteps": statuses.count(SKIPPED),
        }

    async def _finish(
        self, uow: UnitOfWork, outcome: str, failed_step: str | None, now: datetime
    ) -> Later[list[str]]:
        error = None
        if outcome == FAILED:
            state = self.states.get(failed_step) if failed_step else None
            cause = state.error if state and state.error else {}
            error = {
                "message": f"Critical step '{failed_step}' failed: {cause.get('message', 'unknown error')}"
                if failed_step
                else "The execution could not complete",
                "code": "STEP_FAILED",
                "stepId": failed_step,
            }
        self.execution, waiting = await self.e.conclude(
            uow, self.execution, outcome, now, outputs=self._outputs(), error=error, counts=self._counts()
        )
        return waiting

    # --- one step ---------------------------------------------------------------------------------

    def _delay_output(self, step_id: str) -> dict[str, Any]:
        return {"delayed": self.definition.step(step_id).config.get("ms", 0)}

    def _secrets(self, output: Any) -> list[str]:
        """The values under secret-looking names in the variables, the steps' outputs so far and
        ``output``, longest first (each output is looked at once)."""
        if self._secret_values is None:
            self._secret_values = secret_values(self.execution.variables, set())
        for step_id, state in self.states.items():
            if state.output is not None and step_id not in self._outputs_scanned:
                secret_values(state.output, self._secret_values)
                self._outputs_scanned.add(step_id)
        return sorted(secret_values(output, set(self._secret_values)), key=len, reverse=True)

    def _log_inputs(self, step: StepDefinition) -> dict[str, Any]:
        return {
            "stepName": step.name,
            "stepType": step.type,
            "config": masked(step.config),
            "executeIf": step.execute_if,
            "variables": masked(self.execution.variables),
            "stepOutputs": masked({d: self.states[d].output for d in step.depends_on if d in self.states}),
        }

    async def _begin(
        self, uow: UnitOfWork, step_id: str, now: datetime, *, rerun: bool
    ) -> StepDefinition | None:
        """Record the start of an attempt (a rerun keeps its attempt and its log row)."""
        self.touched.add(step_id)
        step = self.definition.step(step_id)
        state = self.states.get(step_id) or StepState.new(
            self.execution.org_id, self.execution.id, step_id, now
        )
        new_state = step_id not in self.states
        if rerun and state.log_id:
            self.states[step_id] = state
            return step
        log = ExecutionLog(
            id=new_id("log"),
            org_id=self.execution.org_id,
            user_id=self.execution.user_id,
            flow_id=self.execution.flow_id,
            execution_id=self.execution.id,
            step_key=step_id,
            status="started",
            inputs=self._log_inputs(step),
            created_at=now,
            updated_at=now,
        )
        self.logs[log.id] = log
        next_at = now + timedelta(milliseconds=step.config.get("ms", 0)) if step.type == "delay" else None
        state = state.but(
            now,
            status=RUNNING,
            attempt=state.attempt + 1,
            log_id=log.id,
            next_at=next_at,
            started_at=state.started_at or now,
            error=None,
        )
        self.states[step_id] = state
        event = self.e.event(
            self.execution,
            "step.started",
            now,
            stepId=step_id,
            stepName=step.name,
            attempt=state.attempt,
            status="started",
        )
        self.unwritten[step_id] = _Start(now, new_state, log, event)
        if step.type not in DEFERRED_START:
            await self._write_start(uow, step_id)
        return None if step.type == "delay" else step

    async def _write_start(self, uow: UnitOfWork, step_id: str) -> None:
        """Commit the start of an attempt (its state, log row and event) with this checkpoint."""
        start = self.unwritten.pop(step_id)
        self.touched.add(step_id)
        await uow.execution_logs.add(start.log)
        state = self.states[step_id]
        await (uow.execution_steps.add(state) if start.new_state else uow.execution_steps.update(state))
        await uow.outbox.add(start.event)

    async def _execute(self, step: StepDefinition, sandbox: SandboxSession) -> _Finish:
        state = self.states[step.id]
        outputs = {k: v.output for k, v in self.states.items() if v.status == COMPLETED}
        ctx = StepContext(
            org_id=self.execution.org_id,
            user_id=self.execution.user_id,
            flow_id=self.execution.flow_id,
            execution_id=self.execution.id,
            step=step,
            attempt=state.attempt,
            variables=self.execution.variables,
            step_outputs=outputs,
            sandbox=sandbox,
            timestamp=self.e.clock.now().isoformat().replace("+00:00", "Z"),
        )
        started = time.perf_counter()
        try:
            if step.execute_if and not await self.e.runners.condition(step.execute_if, ctx):
                return _Finish(step.id, skipped=True, seconds=time.perf_counter() - started, logs=ctx.logs)
            output = await self.e.runners.run(ctx)
            return _Finish(step.id, output=output, seconds=time.perf_counter() - started, logs=ctx.logs)
        except StepFailed as exc:
            return _Finish(step.id, error=exc, seconds=time.perf_counter() - started, logs=ctx.logs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a runner must not take the engine down
            failure = StepFailed(f"Internal error: {type(exc).__name__}", "INTERNAL_ERROR", retryable=True)
            return _Finish(step.id, error=failure, seconds=time.perf_counter() - started, logs=ctx.logs)

    async def _record(self, uow: UnitOfWork, result: _Finish, now: datetime) -> None:
        """Checkpoint one finished attempt: the step's state, its log row and its event."""
        self.touched.add(result.step_id)
        step = self.definition.step(result.step_id)
        state = self.states[result.step_id]
        execution, org, flow = self.execution, self.execution.org_id, self.execution.flow_id
        duration = int(result.seconds * 1000)
        meta = {"executionMode": self.mode, "stepType": step.type, "attempt": state.attempt}
        result = _storable(result)
        if result.skipped:
            status, log_outputs, log_error = (
                SKIPPED,
                {
                    "skipped": True,
                    "reason": "executeIf evaluated to false",
                    "duration": duration,
                    "metadata": meta,
                },
                None,
            )
            state = state.but(now, status=SKIPPED, finished_at=now, next_at=None)
        elif result.error is None:
            status, log_error = COMPLETED, None
            log_outputs = {"output": result.output, "duration": duration, "metadata": meta}
            state = state.but(
                now, status=COMPLETED, output=result.output, error=None, finished_at=now, next_at=None
            )
        else:
            status, log_error = FAILED, result.error.as_error()
            log_outputs = {"duration": duration, "metadata": meta}
            self.e.metrics.step_failed(org, flow, step.id)
            when = (
                retry_at(retry_policy(step, self.definition), state.attempt, now, self.e.jitter())
                if result.error.retryable
                else None
            )
            if when is not None and not self.cancel.is_set() and not self.stopping:
                state = state.but(now, status=WAITING, error=log_error, next_at=when)
                self.e.metrics.step_retried(org, flow, step.id)
                log_outputs["retryAt"] = when.isoformat().replace("+00:00", "Z")
            else:
                state = state.but(now, status=FAILED, error=log_error, finished_at=now, next_at=None)
        if result.logs:
            log_outputs["logs"] = result.logs
        # The log row shows what the step returned, threw and printed with values under
        # secret-looking names masked, as its inputs are: by name where the output is keyed, by
        # value in free text (the variables' and the outputs' secrets, e.g. in an error message).
        if "output" in log_outputs:
            log_outputs["output"] = masked(log_outputs["output"])
        secrets = self._secrets(result.output) if log_error is not None or result.logs else []
        if secrets:
            log_outputs = replaced(log_outputs, secrets, MASK)
            log_error = replaced(log_error, secrets, MASK)
            if state.error is not None:
                state = state.but(now, error=log_error)
        if step.type != "delay":
            self.e.metrics.step_executed(org, flow, step.id, result.seconds)
        self.states[step.id] = state
        start = self.unwritten.get(step.id)
        if start is not None:  # started and finished in one checkpoint: its rows are written once
            self.logs.pop(start.log.id, None)
            finished_log = start.log.changed(now=now, status=status, outputs=log_outputs, error=log_error)
            self.unwritten[step.id] = replace(start, log=finished_log)
            await self._write_start(uow, step.id)
        else:
            await uow.execution_steps.update(state)
            if state.log_id:
                await self._finish_log(uow, state.log_id, status, log_outputs, log_error, now)
        payload: dict[str, Any] = {
            "stepId": step.id,
            "stepName": step.name,
            "status": status,
            "duration": duration,
            "attempt": state.attempt,
        }
        if status == COMPLETED:
            payload["output"] = result.output
        if log_error is not None:
            payload["error"] = log_error
            payload["willRetry"] = state.status == WAITING
        await uow.outbox.add(self.e.event(execution, f"step.{status}", now, **payload))

    async def _finish_log(
        self,
        uow: UnitOfWork,
        log_id: str,
        status: str,
        outputs: dict[str, Any],
        error: dict[str, Any] | None,
        now: datetime,
    ) -> None:
        log = self.logs.pop(log_id, None) or await uow.execution_logs.get(self.execution.org_id, log_id)
        if log is None or log.finished:
            return
        await uow.execution_logs.update(log.changed(now=now, status=status, outputs=outputs, error=error))
