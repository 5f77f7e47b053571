"""plan(): the engine's decision procedure, checked on hand-made cases and on random DAGs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.execution import (
    COMPLETED,
    FAILED,
    RUNNING,
    SKIPPED,
    WAITING,
    StepState,
    plan,
    retry_at,
)
from domain.flow_definition import RetryPolicy, parse_definition

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def state(step_id: str, status: str, **extra) -> StepState:
    base = StepState.new("org", "exec", step_id, NOW)
    return base.but(NOW, status=status, **extra)


def chain(*ids: str, **configs) -> list[dict]:
    return [{"id": i, "type": "delay", "config": {"ms": 1, **configs.get(i, {})}} for i in ids]


def test_a_chain_starts_one_step_at_a_time() -> None:
    d = parse_definition(chain("a", "b", "c"))
    assert plan(d, {}, NOW).start == ("a",)
    assert plan(d, {"a": state("a", COMPLETED)}, NOW).start == ("b",)
    p = plan(d, {s: state(s, COMPLETED) for s in "abc"}, NOW)
    assert p.outcome == COMPLETED


def test_in_flight_steps_are_not_started_again_and_the_outcome_waits_for_them() -> None:
    d = parse_definition(
        [
            {"id": "a", "type": "delay", "config": {"ms": 1}},
            {"id": "b", "type": "delay", "config": {"ms": 1}, "dependsOn": []},
        ]
    )
    assert plan(d, {}, NOW).start == ("a", "b")
    p = plan(d, {"a": state("a", COMPLETED)}, NOW, in_flight=("b",))
    assert p.start == () and p.outcome is None


def test_delays_and_retries_wake_at_their_time() -> None:
    d = parse_definition(chain("a", "b"))
    later = NOW + timedelta(seconds=5)
    sleeping = {"a": state("a", RUNNING, next_at=later)}
    assert plan(d, sleeping, NOW).next_at == later
    assert plan(d, sleeping, later).wake == ("a",)
    waiting = {"a": state("a", WAITING, next_at=later)}
    assert plan(d, waiting, NOW).start == () and plan(d, waiting, later).start == ("a",)


def test_a_step_left_running_by_a_dead_worker_is_run_again() -> None:
    d = parse_definition(chain("a", "b"))
    assert plan(d, {"a": state("a", RUNNING, log_id="log_1")}, NOW).rerun == ("a",)


def test_critical_failure_fails_non_critical_failure_and_skips_go_on() -> None:
    d = parse_definition(chain("a", "b", "c", a={"critical": True}))
    failed = plan(d, {"a": state("a", FAILED)}, NOW)
    assert (failed.outcome, failed.failed_step, failed.start) == (FAILED, "a", ())
    soft = parse_definition(chain("a", "b"))
    assert plan(soft, {"a": state("a", FAILED)}, NOW).start == ("b",)
    assert plan(soft, {"a": state("a", SKIPPED)}, NOW).start == ("b",)


def test_retry_policy_backs_off_and_stops() -> None:
    policy = RetryPolicy(max_retries=3, backoff="exponential", base_delay_ms=100, max_delay_ms=250)
    delays = [retry_at(policy, n, NOW, 0.5) - NOW for n in (1, 2, 3)]
    assert delays == [timedelta(milliseconds=100), timedelta(milliseconds=200), timedelta(milliseconds=250)]
    assert retry_at(policy, 4, NOW, 0.5) is None
    jittered = retry_at(policy, 1, NOW, 0.0) - NOW
    assert timedelta(milliseconds=90) <= jittered <= timedelta(milliseconds=110)


@st.composite
def dags(draw) -> tuple[list[dict], dict[str, bool], dict[str, bool]]:
    """Random DAGs: each step may depend on any earlier ones; some fail, some are critical."""
    n = draw(st.integers(1, 12))
    steps, fails, critical = [], {}, {}
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        depends = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        critical[f"s{i}"] = draw(st.booleans())
        fails[f"s{i}"] = draw(st.integers(0, 9)) == 0
        config = {"ms": 1, "critical": critical[f"s{i}"]}
        steps.append({"id": f"s{i}", "type": "delay", "config": config, "dependsOn": depends})
    return steps, fails, critical


@settings(max_examples=200, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_random_dags_run_every_step_at_most_once_after_its_dependencies(case, rnd: random.Random) -> None:
    steps, fails, critical = case
    d = parse_definition(steps)
    states: dict[str, StepState] = {}
    runs: list[str] = []
    in_flight: list[str] = []
    for _ in range(200):
        p = plan(d, states, NOW, tuple(in_flight))
        for step_id in p.start:
            deps = d.step(step_id).depends_on
            assert all(states[x].status in (COMPLETED, FAILED, SKIPPED) for x in deps)
            assert step_id not in runs  # at most once (no retries in this policy)
            runs.append(step_id)
            in_flight.append(step_id)
            states[step_id] = state(step_id, RUNNING)
        if p.outcome is not None:
            break
        assert in_flight, "no progress and no outcome"
        done = in_flight.pop(rnd.randrange(len(in_flight)))  # finish in any order
        states[done] = state(done, FAILED if fails[done] else COMPLETED)
    else:
        raise AssertionError("did not finish")
    failed_critical = [s for s in runs if fails[s] and critical[s]]
    if failed_critical:
        assert p.outcome == FAILED
    else:
        assert p.outcome == COMPLETED and sorted(runs) == sorted(s["id"] for s in steps)
