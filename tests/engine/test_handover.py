"""Hand-over: a finished task's quota goes straight to its owner's next identical task.

The rule under test (docs/scheduling.md, "Hand-over"): the engine accepts a hand-over only
when it is exactly what the next cycle would have done, so quota, cohorts and fairness
cannot tell the difference. The hand-worked cases pin each reason for refusing; the
property drives random configs and events and, for every accepted hand-over, compares it
with what ``finish`` + ``schedule`` does on a copy of the same engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import QueueConfig, StopPolicy
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import InvalidTransitionError, WorkloadRejected
from ray_queue.engine.model import Decision, DecisionKind, WorkloadId, WorkloadKind, WorkloadSpec
from ray_queue.engine.model import WorkloadState as S
from tests.engine.builders import (
    ClusterQueueBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    flavor,
    new_engine,
    state,
    used,
)
from tests.engine.test_properties import (
    PROPERTY_SETTINGS,
    Event,
    Run,
    TreeModel,
    check_invariants,
    configs,
    one_event,
    step,
)

pytestmark = pytest.mark.timeout(60)
W = WorkloadId


def task(
    workload: str, *, owner: str = "driver-1", cpu: float = 1, queue: str = "q", created: float = 0
) -> WorkloadSpec:
    return (
        WorkloadBuilder(workload)
        .kind(WorkloadKind.TASK)
        .owner(owner)
        .queue(queue)
        .created(created)
        .bundles({"CPU": cpu})
        .build()
    )


def two_slot_config(*, cohort: bool = False, check: bool = False) -> QueueConfig:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 2))
    builder = ConfigBuilder()
    if cohort:
        cq.cohort("all")
        other = ClusterQueueBuilder("other").cohort("all")
        builder.cluster_queue(other.resource_group(flavor("default").resource("CPU", 0)), "o")
    if check:
        cq.admission_check("prov")
        builder.admission_check("prov")
    return builder.cluster_queue(cq, "q").build()


def running_two_with_one_waiting(config: QueueConfig) -> Engine:
    engine, _ = new_engine(config)
    for i, name in enumerate(["a", "b", "c"]):
        engine.submit(task(name, created=i))
    engine.schedule()
    assert (state(engine, "a"), state(engine, "b"), state(engine, "c")) == (
        S.ADMITTED,
        S.ADMITTED,
        S.PENDING,
    )
    return engine


def test_a_finished_task_hands_its_quota_to_the_owners_next_task() -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    key = engine.workload(W("a")).spec.lease_key()
    assert engine.lease_states() == {key: True}
    before = engine.workload(W("a")).admission

    decision = engine.hand_over(W("a"), W("c"))

    assert decision.kind is DecisionKind.ADMIT and decision.reason == "HandedOver"
    assert decision.admission == before
    c = engine.workload(W("c"))
    assert (state(engine, "a"), c.state, c.placed) == (S.FINISHED, S.ADMITTED, True)
    assert c.history[-1].reason == "HandedOver" and c.history[-1].admission == before
    assert used(engine, "cq", "default", "CPU") == 2
    # Nothing is left for the cycle to do: the hand-over was its decision.
    assert engine.schedule() == []


@pytest.mark.parametrize(
    ("arrange", "why"),
    [
        pytest.param(
            lambda e: e.submit(task("x", owner="driver-2", created=9)),
            "other workloads are waiting",
            id="another-owner-waits",
        ),
        pytest.param(
            lambda e: e.submit(task("x", created=9)),
            None,
            id="same-owner-same-shape-waits-too",
        ),
        pytest.param(
            lambda e: e.submit(task("x", cpu=2, created=9)),
            "other workloads are waiting",
            id="another-shape-waits",
        ),
    ],
)
def test_anyone_else_waiting_closes_the_lease(arrange: object, why: str | None) -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    arrange(engine)  # type: ignore[operator]
    refusal = engine.handover_refusal(W("a"), W("c"))
    if why is None:
        assert refusal is None
    else:
        assert refusal is not None and why in refusal
        assert set(engine.lease_states().values()) == {False}


def test_work_waiting_elsewhere_in_the_cohort_closes_the_lease() -> None:
    engine = running_two_with_one_waiting(two_slot_config(cohort=True))
    assert engine.handover_refusal(W("a"), W("c")) is None
    engine.submit(task("borrower", owner="driver-2", queue="o", created=9))
    engine.schedule()
    refusal = engine.handover_refusal(W("a"), W("c"))
    assert refusal is not None and "cohort" in refusal
    # Refused means refused: nothing changes.
    with pytest.raises(InvalidTransitionError):
        engine.hand_over(W("a"), W("c"))
    assert (state(engine, "a"), state(engine, "c")) == (S.ADMITTED, S.PENDING)
    # Once the other work is gone the lease opens again.
    engine.cancel(W("borrower"))
    assert set(engine.lease_states().values()) == {True}


def test_a_backlog_is_an_open_lease_with_the_owners_identical_tasks_behind_it() -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    assert engine.has_backlog(W("a")) and engine.has_backlog(W("b"))
    assert not engine.has_backlog(W("c")), "pending, not admitted"
    engine.cancel(W("c"))
    assert not engine.has_backlog(W("a")), "nothing left to hand over to"
    engine.submit(task("c2", created=5))
    engine.submit(task("x", owner="driver-2", created=6))
    assert not engine.has_backlog(W("a")), "someone else waits: the lease is closed"


def test_hand_over_refuses_what_a_cycle_would_not_do() -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    engine.submit(task("big", cpu=2, created=9))
    cases = {
        ("c", "a"): "not admitted",
        ("a", "b"): "not pending",
        ("a", "a"): "not pending",
        ("a", "nope"): "not a known workload",
    }
    for (done, nxt), why in cases.items():
        refusal = engine.handover_refusal(W(done), W(nxt))
        assert refusal is not None and why in refusal, (done, nxt, refusal)
    engine.cancel(W("c"))
    refusal = engine.handover_refusal(W("a"), W("big"))
    assert refusal is not None and "differ" in refusal


def test_placement_groups_never_hand_over() -> None:
    engine, _ = new_engine(two_slot_config())
    for i, name in enumerate(["a", "b", "c"]):
        engine.submit(WorkloadBuilder(name).owner("driver-1").created(i).build())
    engine.schedule()
    assert engine.lease_states() == {}
    refusal = engine.handover_refusal(W("a"), W("c"))
    assert refusal is not None and "only tasks" in refusal


def test_admission_checks_and_stopped_queues_close_the_lease() -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    engine.apply_config(two_slot_config(check=True))
    refusal = engine.handover_refusal(W("a"), W("c"))
    assert refusal is not None and "admission checks" in refusal

    stopped = ConfigBuilder().cluster_queue(
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 2))
        .stop(StopPolicy.HOLD),
        "q",
    )
    engine.apply_config(stopped.build())
    refusal = engine.handover_refusal(W("a"), W("c"))
    assert refusal is not None and "stopped" in refusal


def test_leases_survive_a_restore() -> None:
    engine = running_two_with_one_waiting(two_slot_config())
    restored = Engine.restore(engine.config, ManualClock(0.0), engine.workloads())
    assert restored.lease_states() == engine.lease_states()
    restored.hand_over(W("a"), W("c"))
    assert restored.lease_states() == engine.lease_states()


# -- property: an accepted hand-over is the cycle's own decision ---------------------------


@dataclass(frozen=True)
class HandOver:
    pick_done: int
    pick_next: int


@dataclass(frozen=True)
class SubmitTasks:
    queue_pick: int
    owner: int
    cpu: int
    priority: str
    count: int


hand_overs = st.builds(HandOver, st.integers(0, 100), st.integers(0, 100))
# Few shapes and mostly one owner, so that quota trees often hold nothing but one owner's
# identical tasks (when a hand-over may be accepted) and sometimes do not.
task_submits = st.builds(
    SubmitTasks,
    queue_pick=st.integers(0, 100),
    owner=st.sampled_from([0] * 7 + [1]),
    cpu=st.sampled_from([1] * 5 + [2]),
    priority=st.sampled_from(["mid"] * 5 + ["high"]),
    count=st.integers(1, 8),
)
task_events = st.lists(
    st.one_of(one_event, task_submits, task_submits, task_submits, hand_overs, hand_overs),
    min_size=10,
    max_size=50,
)


def task_spec(
    event: SubmitTasks, index: int, config: QueueConfig, now: float, n: int
) -> WorkloadSpec:
    queues = sorted(config.queues)
    return (
        WorkloadBuilder(f"t{index}.{n}")
        .kind(WorkloadKind.TASK)
        .owner(f"driver-{event.owner}")
        .queue(queues[event.queue_pick % len(queues)])
        .priority(event.priority)
        .created(now)
        .bundles({"CPU": event.cpu})
        .build()
    )


def try_hand_over(run: Run, event: HandOver) -> object:
    engine = run.engine
    engine.schedule()  # the manager schedules after every event: pending means "did not fit"
    statuses = {s.spec.id: s for s in engine.workloads()}
    by_key: dict[object, dict[S, list[WorkloadId]]] = {}
    for workload, status in sorted(statuses.items()):
        if status.spec.kind is WorkloadKind.TASK:
            by_key.setdefault(status.spec.lease_key(), {}).setdefault(status.state, []).append(
                workload
            )
    pairs = [
        (done, nxt)
        for states in by_key.values()
        for done in states.get(S.ADMITTED, [])
        for nxt in states.get(S.PENDING, [])
    ]
    if not pairs:
        return None
    done, nxt = pairs[(event.pick_done * 101 + event.pick_next) % len(pairs)]
    key = statuses[done].spec.lease_key()
    refusal = engine.handover_refusal(done, nxt)
    if refusal is not None:
        before = engine.workloads()
        with pytest.raises(InvalidTransitionError):
            engine.hand_over(done, nxt)
        assert engine.workloads() == before
        return refusal
    what_a_cycle_does = copy.deepcopy(engine)
    what_a_cycle_does.finish(done, message="done")
    cycle = what_a_cycle_does.schedule()
    decision = engine.hand_over(done, nxt)
    # The cycle admits exactly one workload, one of the owner's identical tasks, with the
    # admission the hand-over gave, and preempts nobody.
    assert [d.kind for d in cycle] == [DecisionKind.ADMIT], cycle
    assert statuses[cycle[0].workload].spec.lease_key() == key
    assert cycle[0].admission == decision.admission
    return decision


@pytest.mark.timeout(180)
@settings(PROPERTY_SETTINGS, max_examples=150)
@given(config=configs(), sequence=task_events)
def test_an_accepted_hand_over_is_what_the_next_cycle_would_do(
    config: QueueConfig, sequence: list[Event | SubmitTasks | HandOver]
) -> None:
    clock = ManualClock(0.0)
    run = Run(config, Engine(config, clock), clock)
    model = TreeModel(config)
    accepted = 0
    for event in sequence:
        outcome: object
        if isinstance(event, HandOver):
            outcome = try_hand_over(run, event)
            accepted += isinstance(outcome, Decision)
        elif isinstance(event, SubmitTasks):
            outcome = []
            for n in range(event.count):
                spec = task_spec(event, len(run.outcomes), config, clock.now(), n)
                try:
                    outcome.append(run.engine.submit(spec))
                    run.submitted.append(spec.id)
                except WorkloadRejected as e:
                    outcome.append(str(e))
        else:
            outcome = step(run, event)
        run.outcomes.append(outcome)
        check_invariants(run, model)
    # Steer generation towards runs where hand-overs are accepted (the interesting ones).
    target(accepted)
