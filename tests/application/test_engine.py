"""The engine contract: AdvanceExecution driven by the in-process scheduler, on the in-memory fake,
SQLite and PostgreSQL alike (the ``uow_factory`` parameters). Steps use fakes of the sandbox and of
HTTP, so what is checked here is the engine: order, checkpoints, retries, skips, criticality,
delays that hold no worker, cancellation, retry/resume and concurrency slots."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.engine.arq_scheduler import ArqScheduler
from adapters.engine.arq_worker import Runtime, build_worker
from adapters.engine.inprocess import InProcessScheduler
from adapters.regex import compile_pattern
from application.engine.advance import AdvanceExecution
from application.engine.executions import Executions
from application.engine.steps import StepRunners
from application.execute_action import ExecuteAction
from application.ports import Page
from application.resources import Flows
from application.tenancy import TenantContext
from domain.errors import Conflict, NotFound, ValidationFailed
from domain.ids import new_id
from domain.organization import Organization
from tests.fakes.http import FakeHttpClient
from tests.fakes.sandbox import FakeSandbox, ScriptError
from tests.support import REDIS_URL, unavailable

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Metrics:
    def __init__(self) -> None:
        self.calls: dict[str, list[tuple]] = defaultdict(list)

    def __getattr__(self, name: str):
        return lambda *args: self.calls[name].append(args)


class NoSecrets:
    name = "none"

    async def get(self, org_id: str, tool_id: str) -> None:
        return None


class Engine:
    def __init__(self, uow: Any, kind: str = "inprocess", *, flow_concurrency: int = 10) -> None:
        self.kind = kind
        self.uow, self.clock = uow, Clock()
        self.http, self.sandbox, self.metrics = FakeHttpClient(), FakeSandbox(), Metrics()
        actions = ExecuteAction(uow, self.clock, NoSecrets(), self.http, compile_pattern, self.metrics)
        runners = StepRunners(self.http, actions, self.sandbox, 5_000)
        self.advance = AdvanceExecution(
            uow, self.clock, runners, self.sandbox, self.metrics, worker_id=new_id("w"),
            lease_seconds=5, flow_concurrency=flow_concurrency,
        )  # fmt: skip
        if kind == "arq":
            self.scheduler = ArqScheduler(REDIS_URL)
            self.worker = build_worker(REDIS_URL, 10, self._runtime, sweep_seconds=1, handle_signals=False)
        else:
            self.scheduler = InProcessScheduler(self.advance, self.clock, concurrency=10, sweep_seconds=0.2)
        self.executions = Executions(uow, self.clock, self.scheduler, self.advance)
        self.flows = Flows(uow, self.clock)

    async def _runtime(self) -> Runtime:
        return Runtime(self.advance, self.clock, ArqScheduler(REDIS_URL))

    async def start(self) -> None:
        await self.scheduler.start()
        if self.kind == "arq":
            self.worker_task = asyncio.create_task(self.worker.async_run())

    async def stop(self) -> None:
        if self.kind == "arq":
            self.worker_task.cancel()
            await asyncio.gather(self.worker_task, return_exceptions=True)
            for job in list(self.worker.tasks.values()):  # jobs cut short by the test's end
                job.cancel()
            await asyncio.gather(*self.worker.tasks.values(), return_exceptions=True)
            # runs the worker's shutdown (if it got as far as starting); a job it gathers may end
            # cancelled, having been cut short by the end of the test
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.worker.close()
        await self.scheduler.stop()

    async def idle(self) -> None:
        if self.kind == "arq":
            await asyncio.sleep(0.1)
        else:
            await self.scheduler.idle()

    async def tenant(self) -> TenantContext:
        now = self.clock.now()
        org = Organization(id=new_id("org"), name="Engine test", created_at=now, updated_at=now)
        async with self.uow() as uow:
            await uow.organizations.add(org)
            await uow.commit()
        return TenantContext(org_id=org.id)

    async def finished(self, ctx: TenantContext, flow_id: str, execution_id: str, seconds: float = 10):
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            view = await self.executions.get(ctx, flow_id, execution_id)
            if view.execution.finished:
                return view
            await asyncio.sleep(0.02)
        raise AssertionError(f"{execution_id} did not finish: {view.execution.status}")

    async def logs(self, ctx: TenantContext, flow_id: str, execution_id: str) -> list[tuple[str, str]]:
        return [(log.step_key, log.status) for log in await self.executions.logs(ctx, flow_id, execution_id)]

    async def events(self, ctx: TenantContext, execution_id: str) -> list[tuple[str, str | None]]:
        async with self.uow(read_only=True) as uow:
            found = await uow.outbox.list(ctx.org_id, Page(limit=500))
        mine = [e for e in found if e.payload.get("executionId") == execution_id]
        mine.sort(key=lambda e: (e.created_at, e.id))
        return [(e.type, e.payload.get("stepId")) for e in mine]


def _redis_up() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable("Redis", str(exc))


@pytest.fixture(params=["inprocess", "arq"])
async def engine(request: pytest.FixtureRequest, uow_factory: Any):
    """Both schedulers pass the same contract; ARQ with a worker in this process (the crash tests
    in tests/e2e run real worker processes). ARQ on the in-memory store is not collected
    (tests/application/conftest.py): its workers are other processes in production."""
    if request.param == "arq":
        _redis_up()
    engine = Engine(uow_factory, request.param)
    await engine.start()
    yield engine
    await engine.stop()


def transform(id: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "type": "data_transform", "config": {"script": script}, **extra}


async def test_a_sequential_flow_runs_every_step_in_order_and_checkpoints_each(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.sandbox.define("double", lambda c: c["variables"]["n"] * 2)
    engine.sandbox.define("plus-one", lambda c: c["stepOutputs"]["a"] + 1)
    engine.http.route("http://api.test/items/11", lambda r, n: (200, {"seen": r.headers["Idempotency-Key"]}))
    flow = await engine.flows.create(
        ctx,
        name="Seq",
        steps=[
            transform("a", "double"),
            transform("b", "plus-one"),
            {
                "id": "c",
                "type": "http_request",
                "config": {"url": "http://api.test/items/{{steps.b.output}}"},
            },
        ],
    )
    started = await engine.executions.start(ctx, flow.id, {"n": 5})
    assert started.execution.status == "queued" and started.execution.id.startswith("exec_")
    view = await engine.finished(ctx, flow.id, started.execution.id)
    e = view.execution
    assert e.status == "completed", e.error
    assert e.outputs["a"] == 10 and e.outputs["b"] == 11
    assert e.outputs["c"]["data"] == {"seen": f"{e.id}:c"}  # Idempotency-Key: {executionId}:{stepId}
    assert await engine.logs(ctx, flow.id, e.id) == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "completed"),
    ]
    assert await engine.events(ctx, e.id) == [
        ("flow.started", None),
        ("step.started", "a"), ("step.completed", "a"),
        ("step.started", "b"), ("step.completed", "b"),
        ("step.started", "c"), ("step.completed", "c"),
        ("flow.completed", None),
    ]  # fmt: skip
    assert [s.status for s in view.steps] == ["completed"] * 3
    assert engine.sandbox.sessions >= 1
    assert len(engine.metrics.calls["step_executed"]) == 3


async def test_execute_if_false_skips_and_the_flow_goes_on(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.sandbox.define("flag", lambda c: c["variables"]["go"])
    engine.sandbox.define("one", lambda c: 1)
    flow = await engine.flows.create(
        ctx, name="Skip", steps=[transform("a", "one", executeIf="flag"), transform("b", "one")]
    )
    e = (
        await engine.finished(
            ctx, flow.id, (await engine.executions.start(ctx, flow.id, {"go": False})).execution.id
        )
    ).execution
    assert e.status == "completed"
    assert await engine.logs(ctx, flow.id, e.id) == [("a", "skipped"), ("b", "completed")]
    assert e.outputs == {"b": 1}


async def test_retries_follow_the_policy_with_one_log_row_per_attempt(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.http.route("http://api.test/flaky", lambda r, n: (503, {}) if n < 3 else (200, {"ok": n}))
    retry = {"maxRetries": 3, "backoffStrategy": "fixed", "baseDelayMs": 30, "maxDelayMs": 30}
    flow = await engine.flows.create(
        ctx,
        name="Flaky",
        steps=[
            {"id": "call", "type": "http_request", "config": {"url": "http://api.test/flaky"}, "retry": retry}
        ],
    )
    e = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert e.status == "completed" and e.outputs["call"]["data"] == {"ok": 3}
    assert await engine.logs(ctx, flow.id, e.id) == [
        ("call", "failed"),
        ("call", "failed"),
        ("call", "completed"),
    ]
    keys = {r.headers["Idempotency-Key"] for r in engine.http.calls("http://api.test/flaky")}
    assert keys == {f"{e.id}:call"}  # every attempt carries the same key
    assert len(engine.metrics.calls["step_retried"]) == 2 and len(engine.metrics.calls["step_failed"]) == 2


async def test_non_critical_failures_are_recorded_critical_ones_fail_the_execution(engine: Engine) -> None:
    ctx = await engine.tenant()

    def boom(c: dict) -> None:
        raise ScriptError("no good")

    engine.sandbox.define("boom", boom)
    engine.sandbox.define("one", lambda c: 1)
    soft = await engine.flows.create(ctx, name="Soft", steps=[transform("a", "boom"), transform("b", "one")])
    e = (
        await engine.finished(ctx, soft.id, (await engine.executions.start(ctx, soft.id, {})).execution.id)
    ).execution
    assert e.status == "completed" and e.outputs == {"b": 1}
    logs = await engine.executions.logs(ctx, soft.id, e.id)
    assert logs[0].error == {"message": "no good", "code": "RUNTIME_ERROR", "stack": "at script"}

    hard = await engine.flows.create(
        ctx,
        name="Hard",
        steps=[
            {**transform("a", "boom"), "config": {"script": "boom", "critical": True}},
            transform("b", "one"),
        ],
    )
    e = (
        await engine.finished(ctx, hard.id, (await engine.executions.start(ctx, hard.id, {})).execution.id)
    ).execution
    assert e.status == "failed" and e.error["stepId"] == "a" and "no good" in e.error["message"]
    assert await engine.logs(ctx, hard.id, e.id) == [("a", "failed")]  # b never started
    assert ("flow.failed", None) in await engine.events(ctx, e.id)


async def test_independent_steps_run_concurrently(engine: Engine) -> None:
    ctx = await engine.tenant()
    running, peak = 0, 0

    async def slow(c: dict) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        return c["meta"]["stepId"]

    engine.sandbox.define("slow", slow)
    engine.sandbox.define("one", lambda c: sorted(c["stepOutputs"]))
    steps = [transform("root", "one"), *(transform(f"p{i}", "slow", dependsOn=["root"]) for i in range(3))]
    steps.append(transform("join", "one", dependsOn=["p0", "p1", "p2"]))
    flow = await engine.flows.create(ctx, name="Fan", steps=steps)
    e = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert e.status == "completed" and peak == 3
    assert e.outputs["join"] == ["p0", "p1", "p2", "root"]


async def test_a_delay_holds_no_worker(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.sandbox.define("one", lambda c: 1)
    flow = await engine.flows.create(
        ctx,
        name="Wait",
        steps=[{"id": "wait", "type": "delay", "config": {"ms": 400}}, transform("after", "one")],
    )
    e = (await engine.executions.start(ctx, flow.id, {})).execution
    await asyncio.sleep(0.15)
    await engine.idle()
    view = await engine.executions.get(ctx, flow.id, e.id)
    assert view.execution.status == "running" and view.execution.wake_at is not None
    assert view.steps[0].status == "running" and view.steps[0].next_at is not None
    done = (await engine.finished(ctx, flow.id, e.id)).execution
    assert done.status == "completed" and done.outputs == {"wait": {"delayed": 400}, "after": 1}
    assert done.duration_ms >= 400


async def test_cancel_stops_a_running_execution_and_retry_can_resume(engine: Engine) -> None:
    ctx = await engine.tenant()
    calls: list[str] = []

    def record(c: dict) -> str:
        calls.append(c["meta"]["stepId"])
        return c["meta"]["stepId"]

    engine.sandbox.define("record", record)
    flow = await engine.flows.create(
        ctx,
        name="Cancel me",
        steps=[
            transform("a", "record"),
            {"id": "wait", "type": "delay", "config": {"ms": 5000}},
            transform("b", "record"),
        ],
    )
    e = (await engine.executions.start(ctx, flow.id, {})).execution
    for _ in range(100):
        if (await engine.executions.get(ctx, flow.id, e.id)).execution.wake_at is not None:
            break
        await asyncio.sleep(0.02)
    await engine.executions.cancel(ctx, flow.id, e.id)
    cancelled = (await engine.finished(ctx, flow.id, e.id, seconds=3)).execution
    assert cancelled.status == "cancelled" and calls == ["a"]
    with pytest.raises(Conflict):
        await engine.executions.cancel(ctx, flow.id, e.id)

    fresh = (await engine.executions.retry(ctx, flow.id, e.id, resume=True)).execution
    assert fresh.retry_of == e.id and fresh.resume
    view = await engine.executions.get(ctx, flow.id, fresh.id)
    assert [s.step_id for s in view.steps if s.status == "completed"] == ["a"]  # reused, not rerun
    await engine.executions.cancel(ctx, flow.id, fresh.id)
    await engine.finished(ctx, flow.id, fresh.id, seconds=3)
    assert calls == ["a"]


async def test_retry_of_a_failed_execution_resumes_at_the_failed_step(engine: Engine) -> None:
    ctx = await engine.tenant()
    calls: list[str] = []
    broken = {"yes": True}

    def flaky(c: dict) -> str:
        calls.append(c["meta"]["stepId"])
        if c["meta"]["stepId"] == "b" and broken["yes"]:
            raise ScriptError("down")
        return c["meta"]["stepId"]

    engine.sandbox.define("flaky", flaky)
    flow = await engine.flows.create(
        ctx,
        name="Resume",
        steps=[
            transform("a", "flaky"),
            {**transform("b", "flaky"), "config": {"script": "flaky", "critical": True}},
            transform("c", "flaky"),
        ],
    )
    first = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert first.status == "failed" and calls == ["a", "b"]
    broken["yes"] = False
    plain = (await engine.executions.retry(ctx, flow.id, first.id)).execution
    assert (await engine.finished(ctx, flow.id, plain.id)).execution.status == "completed"
    assert calls == ["a", "b", "a", "b", "c"]
    resumed = (await engine.executions.retry(ctx, flow.id, first.id, resume=True)).execution
    done = (await engine.finished(ctx, flow.id, resumed.id)).execution
    assert done.status == "completed" and done.outputs == {"a": "a", "b": "b", "c": "c"}
    assert calls == ["a", "b", "a", "b", "c", "b", "c"]  # a's output was reused
    with pytest.raises(Conflict):
        await engine.executions.retry(ctx, flow.id, done.id, resume=True)


async def test_resume_reruns_every_step_after_one_that_did_not_complete(engine: Engine) -> None:
    """A non-critical step failed, so the execution completed: a resume runs that step again and
    every step after it (their inputs may change), and keeps an independent branch's output."""
    ctx = await engine.tenant()
    calls: list[str] = []
    broken = {"yes": True}

    def step(c: dict) -> str:
        me = c["meta"]["stepId"]
        calls.append(me)
        if me == "a" and broken["yes"]:
            raise ScriptError("down")
        if me == "b":
            return f"b after {c['stepOutputs'].get('a', 'nothing')}"
        return me

    engine.sandbox.define("step", step)
    flow = await engine.flows.create(
        ctx,
        name="Resume after a soft failure",
        steps=[
            transform("a", "step"),
            transform("b", "step"),  # after a (dependsOn defaults to the step before)
            transform("side", "step", dependsOn=[]),  # a branch of its own
        ],
    )
    first = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert first.status == "completed" and first.outputs == {"b": "b after nothing", "side": "side"}
    broken["yes"] = False
    calls.clear()
    resumed = (await engine.executions.retry(ctx, flow.id, first.id, resume=True)).execution
    done = (await engine.finished(ctx, flow.id, resumed.id)).execution
    assert done.outputs == {"a": "a", "b": "b after a", "side": "side"}
    assert sorted(calls) == ["a", "b"]  # side's output was reused; b ran again after a
    with pytest.raises(Conflict):  # every step completed: nothing to resume
        await engine.executions.retry(ctx, flow.id, done.id, resume=True)


async def one_at_a_time(engine: Engine) -> tuple[TenantContext, Any]:
    """A tenant and its flow of one 300 ms delay, one execution at a time."""
    ctx = await engine.tenant()
    flow = await engine.flows.create(
        ctx,
        name="One at a time",
        steps=[{"id": "wait", "type": "delay", "config": {"ms": 300}}],
        settings={"execution": {"concurrency": 1}},
    )
    return ctx, flow


async def test_flow_concurrency_queues_excess_executions_instead_of_failing_them(engine: Engine) -> None:
    ctx, flow = await one_at_a_time(engine)
    first = (await engine.executions.start(ctx, flow.id, {})).execution
    second = (await engine.executions.start(ctx, flow.id, {})).execution
    await asyncio.sleep(0.1)
    statuses = {
        v.execution.id: v.execution.status
        for v in [await engine.executions.get(ctx, flow.id, x.id) for x in (first, second)]
    }
    assert sorted(statuses.values()) == ["queued", "running"]
    a = (await engine.finished(ctx, flow.id, first.id)).execution
    b = (await engine.finished(ctx, flow.id, second.id)).execution
    assert a.status == b.status == "completed"
    assert max(a.started_at, b.started_at) >= min(a.finished_at, b.finished_at)  # never overlapped
    metrics = await engine.executions.metrics(ctx, flow.id)
    assert metrics.total_executions == 2 and metrics.status_breakdown["completed"] == 2
    assert metrics.success_rate == 100.0


async def test_a_direct_run_calls_in_the_execution_waiting_for_its_slot(engine: Engine) -> None:
    """A run inside the request (``useDurable: false``) holds a slot like any other; when it ends,
    the execution refused that slot starts at once, not at its admission retry (30 s later)."""
    ctx, flow = await one_at_a_time(engine)
    direct = asyncio.create_task(engine.executions.start(ctx, flow.id, {}, durable=False))
    for _ in range(100):  # until the direct run holds the slot
        if await engine.executions.list(ctx, flow.id, "running", Page()):
            break
        await asyncio.sleep(0.01)
    queued = (await engine.executions.start(ctx, flow.id, {})).execution
    await asyncio.sleep(0.1)
    assert (await engine.executions.get(ctx, flow.id, queued.id)).execution.status == "queued"
    assert (await direct).execution.status == "completed"
    done = (await engine.finished(ctx, flow.id, queued.id, seconds=5)).execution
    assert done.status == "completed"


async def test_a_direct_run_finished_by_the_engine_meanwhile_returns_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct run lets its lease go while it sleeps through a delay; the engine's sweep may take
    the execution then and finish it. The request returns as soon as it sees that (it went on
    trying to claim a finished execution for DIRECT_MAX_SECONDS, 300 s)."""
    from application.engine import executions as module

    class OverSleeping:  # the request oversleeps its delay: the engine gets there first
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(seconds + 0.5 if seconds > 0.1 else seconds)

    monkeypatch.setattr(module, "asyncio", OverSleeping())
    ctx = await engine.tenant()
    flow = await engine.flows.create(
        ctx,
        name="Wait, then work",
        steps=[
            {"id": "wait", "type": "delay", "config": {"ms": 200}},
            {"id": "work", "type": "data_transform", "config": {"script": "return 1"}},
        ],
    )
    direct = asyncio.create_task(engine.executions.start(ctx, flow.id, {}, durable=False))
    for _ in range(100):  # until the request sleeps through the delay
        running = await engine.executions.list(ctx, flow.id, "running", Page())
        if running and running[0].execution.lease_owner is None:
            break
        await asyncio.sleep(0.01)
    (view,) = running
    await asyncio.sleep(0.3)  # the delay is due; the request still sleeps
    await engine.advance(ctx.org_id, view.execution.id)  # what the sweep does
    started = time.monotonic()
    assert (await asyncio.wait_for(direct, 5)).execution.status == "completed"
    assert time.monotonic() - started < 2


@pytest.mark.sql_only
async def test_starting_a_flow_deleted_since_it_was_read_is_not_found(engine: Engine) -> None:
    """The flow is read before the execution is written (from the API's read cache, often): should
    it be deleted in between, the database refuses the execution and the caller gets a 404."""
    ctx = await engine.tenant()
    flow = await engine.flows.create(
        ctx, name="Gone", steps=[{"id": "a", "type": "data_transform", "config": {"script": "return 1"}}]
    )
    await engine.flows.delete(ctx, flow.id)

    class Stale:  # what a copy kept from before the deletion answers
        async def get(self, ctx: TenantContext, flow_id: str) -> Any:
            return flow

    executions = Executions(engine.uow, engine.clock, engine.scheduler, engine.advance, flows=Stale())
    with pytest.raises(NotFound):
        await executions.start(ctx, flow.id, {})
    async with engine.uow(read_only=True) as uow:
        assert await uow.executions.list(ctx.org_id, Page()) == []


async def test_bad_variables_and_broken_definitions_are_refused(engine: Engine) -> None:
    ctx = await engine.tenant()
    flow = await engine.flows.create(
        ctx, name="Ok", steps=[{"id": "w", "type": "delay", "config": {"ms": 1}}]
    )
    with pytest.raises(ValidationFailed) as caught:
        await engine.executions.start(ctx, flow.id, ["not", "an", "object"])
    assert caught.value.errors[0].field == "variables"
    with pytest.raises(ValidationFailed):
        await engine.executions.list(ctx, flow.id, "sleeping", Page())


async def test_a_stored_flow_whose_definition_does_not_hold_is_refused_every_time(engine: Engine) -> None:
    """A flow stored before definitions were checked (here written past the checks) is refused at
    execute, naming the step and field, however often it is tried; a version that holds is checked
    once per process (versions never change)."""
    import dataclasses

    ctx = await engine.tenant()
    flow = await engine.flows.create(
        ctx, name="Ok", steps=[{"id": "w", "type": "delay", "config": {"ms": 1}}]
    )
    await engine.executions.start(ctx, flow.id, {})
    assert (ctx.org_id, flow.id, flow.version) in engine.executions._checked
    broken = dataclasses.replace(
        flow, steps=[{"id": "w", "type": "nope", "config": {}}], version=flow.version + 1
    )
    async with engine.uow() as uow:
        await uow.flows.update(broken)
        await uow.commit()
    for _ in range(2):
        with pytest.raises(ValidationFailed) as caught:
            await engine.executions.start(ctx, flow.id, {})
        assert caught.value.errors[0].field == "steps.0.type"
    assert (ctx.org_id, flow.id, broken.version) not in engine.executions._checked


async def test_direct_execution_runs_inside_the_call(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.sandbox.define("hello", lambda c: f"hello {c['variables']['who']}")
    flow = await engine.flows.create(ctx, name="Direct", steps=[transform("greet", "hello")])
    view = await engine.executions.start(ctx, flow.id, {"who": "ada"}, durable=False)
    assert view.execution.status == "completed" and view.execution.outputs == {"greet": "hello ada"}
    stats = await engine.executions.stats(ctx, None, None)
    assert (stats.total_executions, stats.completed_steps, stats.success_rate) == (1, 1, 100.0)


async def test_the_flow_timeout_fails_a_running_execution(engine: Engine) -> None:
    ctx = await engine.tenant()

    async def slow(c: dict) -> int:
        await asyncio.sleep(5)
        return 1

    engine.sandbox.define("slow", slow)
    sleepy = await engine.flows.create(
        ctx,
        name="Too slow to wait",
        steps=[{"id": "nap", "type": "delay", "config": {"ms": 10_000}}],
        settings={"execution": {"timeout": 300}},
    )
    busy = await engine.flows.create(
        ctx,
        name="Too slow to run",
        steps=[transform("work", "slow")],
        settings={"execution": {"timeout": 300}},
    )
    for f in (sleepy, busy):
        e = (
            await engine.finished(ctx, f.id, (await engine.executions.start(ctx, f.id, {})).execution.id, 4)
        ).execution
        assert e.status == "failed" and e.error["code"] == "FLOW_TIMEOUT"
        assert 300 <= e.duration_ms < 3000
        [log] = await engine.executions.logs(ctx, f.id, e.id)
        assert log.status == "failed" and log.error["code"] == "FLOW_TIMEOUT"


async def test_a_background_run_may_be_waited_for_longer_than_one_run_may_last(uow_factory: Any) -> None:
    """The step's time limit bounds each run; waiting for a background run is bounded by the
    polls it is allowed (pollInterval x maxPollAttempts), not cut at the one-run limit."""
    engine = Engine(uow_factory)
    engine.advance.runners = StepRunners(engine.http, None, engine.sandbox, 100)  # runs: 100 ms
    await engine.start()
    try:
        ctx = await engine.tenant()

        async def slow(c: dict) -> str:
            await asyncio.sleep(1.3)  # longer than the one-run limit (0.1 s + 1 s of grace)
            return "late but fine"

        engine.sandbox.define("slow", slow)
        config = {"code": "slow", "language": "javascript", "pollInterval": 100, "maxPollAttempts": 20}
        flow = await engine.flows.create(
            ctx, name="Patient", steps=[{"id": "bg", "type": "sandbox_async", "config": config}]
        )
        e = (
            await engine.finished(
                ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id
            )
        ).execution
        assert e.status == "completed", e.error
        assert e.outputs["bg"]["output"] == "late but fine"
        short = {**config, "maxPollAttempts": 2}  # 200 ms of polls: not enough
        flow = await engine.flows.create(
            ctx, name="Impatient", steps=[{"id": "bg", "type": "sandbox_async", "config": short}]
        )
        e = (
            await engine.finished(
                ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id
            )
        ).execution
        [log] = await engine.executions.logs(ctx, flow.id, e.id)
        assert log.status == "failed" and log.error["code"] == "TIMEOUT"
    finally:
        await engine.stop()


async def test_a_retry_due_at_once_starts_in_the_next_checkpoint(engine: Engine) -> None:
    """baseDelayMs 0: the retry is due in the same checkpoint that recorded the failure. A batched
    checkpoint may write a row once (one statement on PostgreSQL; the fake refuses a second write),
    so the new attempt begins in the next checkpoint, and every attempt is kept."""
    ctx = await engine.tenant()
    engine.http.route("http://api.test/again", lambda r, n: (503, {}) if n < 3 else (200, {"n": n}))
    retry = {"maxRetries": 3, "backoffStrategy": "fixed", "baseDelayMs": 0, "maxDelayMs": 0}
    flow = await engine.flows.create(
        ctx,
        name="At once",
        steps=[
            {"id": "call", "type": "http_request", "config": {"url": "http://api.test/again"}, "retry": retry}
        ],
    )
    e = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert e.status == "completed", e.error
    assert await engine.logs(ctx, flow.id, e.id) == [
        ("call", "failed"),
        ("call", "failed"),
        ("call", "completed"),
    ]
    view = await engine.executions.get(ctx, flow.id, e.id)
    assert [(s.status, s.attempt) for s in view.steps] == [("completed", 3)]


async def test_a_result_that_cannot_be_stored_fails_its_step_for_good(engine: Engine) -> None:
    """An upstream answer with a NUL character (PostgreSQL's JSONB refuses it) fails the step with
    OUTPUT_NOT_STORABLE, once: it is not retried, and the checkpoint still commits."""
    ctx = await engine.tenant()
    engine.http.route("http://api.test/nul", lambda r, n: (200, {"text": "a\x00b"}))
    retry = {"maxRetries": 3, "backoffStrategy": "fixed", "baseDelayMs": 10, "maxDelayMs": 10}
    flow = await engine.flows.create(
        ctx,
        name="Unstorable",
        steps=[
            {"id": "call", "type": "http_request", "config": {"url": "http://api.test/nul"}, "retry": retry}
        ],
    )
    e = (
        await engine.finished(ctx, flow.id, (await engine.executions.start(ctx, flow.id, {})).execution.id)
    ).execution
    assert e.status == "completed"  # not critical: recorded, and the flow went on
    [log] = await engine.executions.logs(ctx, flow.id, e.id)
    assert log.status == "failed" and log.error["code"] == "OUTPUT_NOT_STORABLE"
    assert len(engine.http.calls("http://api.test/nul")) == 1


async def test_integers_a_double_cannot_hold_are_kept_as_doubles_as_javascript_reads_them(
    engine: Engine,
) -> None:
    """A 64-bit id from an upstream, or a big integer a script returns, does not fail its step."""
    ctx = await engine.tenant()
    wide = 1234567890123456789
    engine.http.route("http://api.test/wide", lambda r, n: (200, {"id": wide, "small": 7}))
    engine.sandbox.define("wide", lambda c: (c["log"]({"t": -wide}), [wide, True])[1])
    flow = await engine.flows.create(
        ctx,
        name="Wide",
        steps=[
            {"id": "call", "type": "http_request", "config": {"url": "http://api.test/wide"}},
            transform("code", "wide"),
        ],
    )
    started = await engine.executions.start(ctx, flow.id, {})
    e = (await engine.finished(ctx, flow.id, started.execution.id)).execution
    assert e.status == "completed", e.error
    # read back, the double may print as an integer (PostgreSQL's jsonb does): the same number
    call, code = e.outputs["call"]["data"], e.outputs["code"]
    assert float(call["id"]) == float(wide) and call["small"] == 7 and type(call["small"]) is int
    assert float(code[0]) == float(wide) and code[1] is True
    logs = {log.step_key: log for log in await engine.executions.logs(ctx, flow.id, e.id)}
    assert logs["code"].status == "completed"
    assert float(logs["code"].outputs["logs"][0]["message"]["t"]) == -float(wide)


async def test_logs_that_cannot_be_stored_do_not_fail_a_step_that_succeeded(engine: Engine) -> None:
    ctx = await engine.tenant()
    engine.sandbox.define("chatty", lambda c: (c["log"]("a\x00b"), 7)[1])
    flow = await engine.flows.create(ctx, name="Chatty", steps=[transform("s", "chatty")])
    started = await engine.executions.start(ctx, flow.id, {})
    view = await engine.finished(ctx, flow.id, started.execution.id)
    assert view.execution.status == "completed" and view.execution.outputs["s"] == 7
    [log] = await engine.executions.logs(ctx, flow.id, view.execution.id)
    [note] = log.outputs["logs"]
    assert note["type"] == "warn" and "logs were dropped" in note["message"] and "\x00" not in note["message"]


async def quick_then_held(engine: Engine, held: str, output: str):
    """A flow of two data_transform steps, "quick" then ``held``, started and run until ``held`` is
    running: it returns ``output`` once the returned event is set."""
    ctx = await engine.tenant()
    release = asyncio.Event()

    async def wait_then_answer(c: dict) -> str:
        await release.wait()
        return output

    engine.sandbox.define(held, wait_then_answer)
    engine.sandbox.define("quick", lambda c: 1)
    flow = await engine.flows.create(
        ctx, name=held, steps=[transform("quick", "quick"), transform(held, held)]
    )
    e = (await engine.executions.start(ctx, flow.id, {})).execution
    deadline = time.monotonic() + 5
    while ("quick", "completed") not in await engine.logs(ctx, flow.id, e.id):
        assert time.monotonic() < deadline, "the first step did not complete"
        await asyncio.sleep(0.01)
    return ctx, flow, e, release


async def test_a_pure_step_records_its_start_with_its_result_unless_it_runs_long(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data_transform/conditional steps (no side effects) commit start and result in one checkpoint;
    one still running after START_RECORD_AFTER has its start committed then, so it shows as running."""
    from application.engine import run

    # Long enough that a loaded machine still looks before it passes (the default is 250 ms).
    monkeypatch.setattr(run, "START_RECORD_AFTER", timedelta(seconds=1))
    START_RECORD_AFTER = run.START_RECORD_AFTER
    ctx, flow, e, release = await quick_then_held(engine, "slow", "done")

    async def slow_state() -> str | None:
        view = await engine.executions.get(ctx, flow.id, e.id)
        return next((s.status for s in view.steps if s.step_id == "slow"), None)

    # "slow" is running now, but its start is not recorded yet...
    assert await engine.logs(ctx, flow.id, e.id) == [("quick", "completed")] and await slow_state() is None
    # ...until it has run for START_RECORD_AFTER
    deadline = time.monotonic() + START_RECORD_AFTER.total_seconds() + 5
    while await slow_state() != "running":
        assert time.monotonic() < deadline, "the long step's start was never recorded"
        await asyncio.sleep(0.02)
    assert await engine.logs(ctx, flow.id, e.id) == [("quick", "completed"), ("slow", "started")]
    release.set()
    view = await engine.finished(ctx, flow.id, e.id)
    assert view.execution.status == "completed" and view.execution.outputs["slow"] == "done"
    assert await engine.logs(ctx, flow.id, e.id) == [("quick", "completed"), ("slow", "completed")]
    assert await engine.events(ctx, e.id) == [
        ("flow.started", None),
        ("step.started", "quick"), ("step.completed", "quick"),
        ("step.started", "slow"), ("step.completed", "slow"),
        ("flow.completed", None),
    ]  # fmt: skip
    assert [(s.step_id, s.attempt) for s in view.steps] == [("quick", 1), ("slow", 1)]


async def test_a_worker_that_lost_its_lease_writes_nothing_more(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fencing: once another worker holds the lease (this one stalled past it), this one's next
    checkpoint is refused whole: its step result, log row and events are not written."""
    from application.engine import run

    # The stalled step's start is not written while it runs, however slow the machine.
    monkeypatch.setattr(run, "START_RECORD_AFTER", timedelta(minutes=5))
    ctx, flow, e, release = await quick_then_held(engine, "stalled", "late")
    async with engine.uow() as uow:  # the lease passes to another worker (as if it had expired)
        await uow.executions.release(e.id, engine.advance.worker_id)
        now = engine.clock.now()
        assert await uow.executions.claim(e.id, "intruder", now + timedelta(minutes=5), now) is not None
        await uow.commit()
    events_before = await engine.events(ctx, e.id)
    assert e.id in engine.advance._active
    release.set()
    deadline = time.monotonic() + 10
    while e.id in engine.advance._active:  # the stalled run reaches its checkpoint, and stops
        assert time.monotonic() < deadline, "the stalled run never ended"
        await asyncio.sleep(0.02)
    view = await engine.executions.get(ctx, flow.id, e.id)
    assert view.execution.status == "running" and view.execution.lease_owner == "intruder"
    assert [(s.step_id, s.status) for s in view.steps] == [("quick", "completed")]
    assert await engine.logs(ctx, flow.id, e.id) == [("quick", "completed")]
    assert await engine.events(ctx, e.id) == events_before


class SlowCommits:
    """The engine's units of work, each commit 50 ms longer: ``committing`` tells whether one is
    under way (what a step saw when it ran)."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.committing = 0

    def __call__(self, **kwargs: Any) -> Any:
        return _SlowUnitOfWork(self, self.factory(**kwargs))


class _SlowUnitOfWork:
    def __init__(self, slow: SlowCommits, inner: Any) -> None:
        self._slow, self._inner, self._entered = slow, inner, None

    async def __aenter__(self) -> _SlowUnitOfWork:
        self._entered = await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entered, name)

    async def commit(self) -> None:
        self._slow.committing += 1
        try:
            await asyncio.sleep(0.05)
            await self._entered.commit()
        finally:
            self._slow.committing -= 1


async def test_a_pure_step_computes_while_the_checkpoint_before_it_commits(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step without side effects starts computing while the checkpoint that records the step
    before it commits (its own start is written with its result, so nothing of it shows earlier);
    any other step starts once its start is committed."""
    slow = SlowCommits(engine.advance.uow)
    monkeypatch.setattr(engine.advance, "uow", slow)
    ctx = await engine.tenant()
    seen: dict[str, int] = {}

    def noting(name: str):
        def step(c: dict) -> str:
            seen[name] = slow.committing
            return name

        return step

    for name in ("first", "second"):
        engine.sandbox.define(name, noting(name))

    def hook(request: Any, n: int) -> tuple[int, Any]:
        seen["call"] = slow.committing
        return 200, {"ok": True}

    engine.http.route("http://api.test/hook", hook)
    steps = [
        transform("first", "first"),
        transform("second", "second"),
        {"id": "call", "type": "http_request", "config": {"url": "http://api.test/hook", "method": "POST"}},
    ]
    flow = await engine.flows.create(ctx, name="Overlap", steps=steps)
    e = (await engine.executions.start(ctx, flow.id, {})).execution
    view = await engine.finished(ctx, flow.id, e.id)
    assert view.execution.status == "completed"
    assert view.execution.outputs["second"] == "second"
    # "second" ran while the checkpoint recording "first" was being committed. ("first" also ran
    # while one was: the admission's.)
    assert seen["second"] == 1
    # The HTTP step was sent once its start (attempt, idempotency key) was committed.
    assert seen["call"] == 0
    (request,) = engine.http.sent
    assert request.headers["Idempotency-Key"] == f"{e.id}:call"
    assert await engine.logs(ctx, flow.id, e.id) == [
        ("first", "completed"), ("second", "completed"), ("call", "completed")
    ]  # fmt: skip


async def test_a_refused_checkpoint_drops_the_result_computed_meanwhile(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the checkpoint a pure step started alongside is refused (the lease was lost
    meanwhile), the run stops and the result that step computed is written nowhere."""
    from application.engine import run

    monkeypatch.setattr(run, "START_RECORD_AFTER", timedelta(minutes=5))
    monkeypatch.setattr(engine.advance, "uow", SlowCommits(engine.advance.uow))
    ctx = await engine.tenant()
    release = asyncio.Event()
    computed: list[Any] = []

    async def stalled(c: dict) -> str:
        await release.wait()
        return "late"

    def after(c: dict) -> str:
        computed.append(c["stepOutputs"].get("stalled"))
        return "after"

    engine.sandbox.define("stalled", stalled)
    engine.sandbox.define("after", after)
    flow = await engine.flows.create(
        ctx, name="Refused", steps=[transform("stalled", "stalled"), transform("after", "after")]
    )
    e = (await engine.executions.start(ctx, flow.id, {})).execution
    deadline = time.monotonic() + 5
    while e.id not in engine.advance._active or not engine.sandbox.runs:
        assert time.monotonic() < deadline, "the first step did not start"
        await asyncio.sleep(0.01)
    async with engine.uow() as uow:  # the lease passes to another worker (as if it had expired)
        await uow.executions.release(e.id, engine.advance.worker_id)
        now = engine.clock.now()
        assert await uow.executions.claim(e.id, "intruder", now + timedelta(minutes=5), now) is not None
        await uow.commit()
    release.set()
    deadline = time.monotonic() + 10
    while e.id in engine.advance._active:  # stalled's checkpoint is refused: the run stops
        assert time.monotonic() < deadline, "the stalled run never ended"
        await asyncio.sleep(0.02)
    # "after" started from stalled's result alongside that checkpoint: whether it got as far as
    # running depends on where the database refuses the checkpoint (PostgreSQL: at commit, one
    # statement; SQLite and the fake: at the fence, in a transaction, before "after" starts).
    at_commit = getattr(engine.uow, "write_pool", None) is not None  # PostgreSQL
    assert computed == (["late"] if at_commit else [])
    view = await engine.executions.get(ctx, flow.id, e.id)  # nothing of either step was written
    assert view.execution.lease_owner == "intruder" and not view.steps
    assert await engine.logs(ctx, flow.id, e.id) == []
    assert await engine.events(ctx, e.id) == [("flow.started", None)]


async def test_an_error_after_the_claim_lets_the_lease_go(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim is committed on its own: a failure before the run starts (here reading the
    flow's version) must not leave the execution leased to this worker until the lease expires."""
    ctx = await engine.tenant()
    engine.sandbox.define("one", lambda c: 1)
    flow = await engine.flows.create(ctx, name="Lease", steps=[transform("a", "one")])
    failing = {"left": 1}
    definition = engine.advance._definition

    async def flaky(uow, execution):
        if failing["left"]:
            failing["left"] -= 1
            raise ConnectionError("the database went away for a moment")
        return await definition(uow, execution)

    monkeypatch.setattr(engine.advance, "_definition", flaky)
    with pytest.raises(ConnectionError):  # run in this call (useDurable: false), so the error shows
        await engine.executions.start(ctx, flow.id, {}, durable=False)
    (view,) = await engine.executions.list(ctx, flow.id, None, Page())
    assert failing["left"] == 0 and view.execution.lease_owner is None
    assert (await engine.advance(ctx.org_id, view.execution.id)).finished  # the next push runs it
    view = await engine.executions.get(ctx, flow.id, view.execution.id)
    assert view.execution.status == "completed"
