"""Jobs own their work: children of a job, the job's ``max_resources``, and the cascade.

The rules under test (docs/capture.md, "Jobs own their work"): a workload whose
``parent`` is a live job counts against that job's cap (the job's own entrypoint and
every child holding quota, per resource name) and waits, set aside with the resource and
the cap in its reason, while admitting it would cross the cap; when the job ends (cancel,
preemption, finish, failure) its live children are cancelled in the same call and the
next ``schedule()`` hands them out as CANCEL decisions; a child preempted alone is
requeued like any other workload. The property drives random configs, jobs, children and
events, and checks after every step that no job ever holds more than its cap and that no
live child outlives its job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import QueueConfig, WithinClusterQueue
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import InvalidWorkloadError, WorkloadRejected
from ray_queue.engine.model import (
    DecisionKind,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    to_milli,
)
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
    Schedule,
    TreeModel,
    check_invariants,
    configs,
    one_event,
    step,
)

pytestmark = pytest.mark.timeout(60)
W = WorkloadId


def gpu_config(gpus: float = 8) -> QueueConfig:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 16).resource("GPU", gpus))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY)
    )
    return ConfigBuilder().priorities(low=0, high=100).cluster_queue(cq, "q").build()


def job(
    workload: str,
    *,
    cap: Mapping[str, float] | None = None,
    cpu: float = 1,
    priority: str | None = None,
    created: float = 0,
) -> WorkloadSpec:
    builder = WorkloadBuilder(workload).kind(WorkloadKind.JOB).queue("q").created(created)
    if priority is not None:
        builder.priority(priority)
    spec = builder.bundles({"CPU": cpu}).build()
    limits = None if cap is None else {name: to_milli(v) for name, v in cap.items()}
    return replace(spec, max_resources=limits)


def child(
    workload: str,
    parent: str,
    *,
    count: int = 1,
    min_count: int | None = None,
    created: float = 1,
    priority: str | None = None,
    **units: float,
) -> WorkloadSpec:
    builder = WorkloadBuilder(workload).queue("q").created(created)
    builder.bundles(units or {"GPU": 1}, count=count).owner("driver-of-" + parent)
    if min_count is not None:
        builder.min_count(min_count)
    if priority is not None:
        builder.priority(priority)
    return replace(builder.build(), parent=W(parent))


def test_a_jobs_children_are_charged_in_its_queue() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j"))
    engine.schedule()
    engine.submit(child("g", "j", GPU=4))
    engine.schedule()

    assert state(engine, "g") is S.ADMITTED
    assert (used(engine, "cq", "default", "GPU"), used(engine, "cq", "default", "CPU")) == (4, 1)


def test_the_cap_holds_a_child_until_a_sibling_gives_quota_back() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 2}))
    engine.schedule()
    engine.submit(child("a", "j", GPU=2))
    engine.submit(child("b", "j", GPU=2, created=2))
    engine.schedule()

    b = engine.workload(W("b"))
    assert (state(engine, "a"), b.state) == (S.ADMITTED, S.PENDING)
    assert b.set_aside
    assert "max_resources caps GPU at 2" in b.message and "holds 2" in b.message
    (position,) = [p for p in engine.pending() if p.workload == "b"]
    assert "max_resources" in position.reason and position.parent == "j"
    # Quota is there (8 GPUs): only the cap holds b back.
    assert used(engine, "cq", "default", "GPU") == 2

    engine.finish(W("a"))
    engine.schedule()
    assert state(engine, "b") is S.ADMITTED


def test_resources_the_cap_does_not_name_are_not_capped() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 1}))
    engine.schedule()
    engine.submit(child("a", "j", CPU=6))
    engine.submit(child("b", "j", CPU=6, created=2))
    engine.schedule()
    assert (state(engine, "a"), state(engine, "b")) == (S.ADMITTED, S.ADMITTED)


def test_the_cap_counts_the_entrypoint() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"CPU": 3}, cpu=2))
    engine.schedule()
    engine.submit(child("a", "j", CPU=1))
    engine.submit(child("b", "j", CPU=1, created=2))
    engine.schedule()
    assert (state(engine, "j"), state(engine, "a"), state(engine, "b")) == (
        S.ADMITTED,
        S.ADMITTED,
        S.PENDING,
    )


def test_a_partially_admissible_child_gets_what_the_cap_leaves() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 3}))
    engine.schedule()
    engine.submit(child("one", "j", GPU=1))
    engine.submit(child("lease", "j", count=8, min_count=1, created=2, GPU=1))
    engine.schedule()

    lease = engine.workload(W("lease"))
    assert lease.state is S.ADMITTED
    assert lease.admission is not None and lease.admission.groups[0].count == 2
    assert used(engine, "cq", "default", "GPU") == 3


def test_cancelling_a_job_cancels_its_children_and_frees_their_quota() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 2}))
    engine.schedule()
    engine.submit(child("a", "j", GPU=2))
    engine.submit(child("b", "j", GPU=2, created=2))
    engine.schedule()
    other = child("x", "j", GPU=1)  # not submitted: the job has ended by then

    assert engine.cancel(W("j"))
    assert (state(engine, "a"), state(engine, "b")) == (S.CANCELLED, S.CANCELLED)
    assert engine.workload(W("a")).reason == "JobEnded"
    assert "its job j was cancelled" in engine.workload(W("b")).message
    assert used(engine, "cq", "default", "GPU") == 0

    decisions = engine.schedule()
    assert {(d.kind, d.workload) for d in decisions} == {
        (DecisionKind.CANCEL, "a"),
        (DecisionKind.CANCEL, "b"),
    }
    assert engine.schedule() == []
    with pytest.raises(InvalidWorkloadError, match="not a live job"):
        engine.submit(other)


@pytest.mark.parametrize("failed", [False, True])
def test_a_job_that_ends_ends_its_children(failed: bool) -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j"))
    engine.schedule()
    engine.submit(child("a", "j", GPU=1))
    engine.schedule()
    engine.finish(W("j"), failed=failed)
    assert state(engine, "a") is S.CANCELLED
    assert [d.kind for d in engine.schedule()] == [DecisionKind.CANCEL]


def test_preempting_a_job_cancels_its_children_in_the_same_call() -> None:
    engine, _ = new_engine(gpu_config(gpus=4))
    engine.submit(job("j", priority="low"))
    engine.schedule()
    engine.submit(child("a", "j", GPU=4, priority="low"))
    engine.schedule()
    engine.submit(child("urgent", "j", GPU=1, priority="high", created=3))
    # Another team's high-priority group needs the GPUs: the child is the victim, alone.
    engine.submit(replace(child("h", "j", GPU=4, priority="high", created=2), parent=None))
    decisions = engine.schedule()
    preempted = [d.workload for d in decisions if d.kind is DecisionKind.PREEMPT]
    assert preempted == ["a"]
    # A child preempted alone is requeued like any other workload; its job runs on.
    assert (state(engine, "a"), state(engine, "j")) == (S.PENDING, S.ADMITTED)

    engine.evict(W("j"), reason="Preempted", message="test")
    assert (state(engine, "a"), state(engine, "urgent")) == (S.CANCELLED, S.CANCELLED)
    kinds = {(d.kind, d.workload) for d in engine.schedule()}
    assert {(DecisionKind.CANCEL, "a"), (DecisionKind.CANCEL, "urgent")} <= kinds


def test_a_child_runs_at_its_jobs_priority_unless_it_names_one() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", priority="high"))
    engine.schedule()
    assert engine.submit(child("a", "j")).priority == 100
    assert engine.submit(child("b", "j", priority="low")).priority == 0


def test_bad_caps_and_parents_are_refused_with_what_to_do() -> None:
    engine, _ = new_engine(gpu_config())
    with pytest.raises(InvalidWorkloadError, match="below what its entrypoint itself asks"):
        engine.submit(job("small", cap={"CPU": 0.5}))
    with pytest.raises(InvalidWorkloadError, match="does not cover"):
        engine.submit(job("typo", cap={"GPUS": 2}))
    with pytest.raises(InvalidWorkloadError, match="cannot have one"):
        engine.submit(replace(child("g", "j"), parent=None, max_resources={"GPU": 1000}))
    with pytest.raises(InvalidWorkloadError, match="no workload has that id"):
        engine.submit(child("orphan", "nobody"))
    engine.submit(replace(child("pg", "x"), parent=None))
    with pytest.raises(InvalidWorkloadError, match="it is a placement_group"):
        engine.submit(child("grandchild", "pg"))
    engine.submit(job("j", cap={"GPU": 2}))
    with pytest.raises(InvalidWorkloadError, match="it is a job, PENDING"):
        engine.submit(child("early", "j"))
    engine.schedule()
    with pytest.raises(WorkloadRejected, match="caps GPU at 2"):
        engine.submit(child("big", "j", GPU=4))
    # Nothing of the refused ones was kept.
    assert {s.spec.id for s in engine.workloads()} == {"pg", "j"}


def test_restore_keeps_the_cap_and_the_family() -> None:
    engine, clock = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 2}))
    engine.schedule()
    engine.submit(child("a", "j", GPU=2))
    engine.submit(child("b", "j", GPU=2, created=2))
    engine.schedule()
    again = Engine.restore(engine.config, clock, engine.workloads())
    assert again.schedule() == []
    assert state(again, "b") is S.PENDING
    again.cancel(W("j"))
    assert (state(again, "a"), state(again, "b")) == (S.CANCELLED, S.CANCELLED)


# -- the property -------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitJob:
    cap_cpu: int | None
    cap_gpu: int | None


@dataclass(frozen=True)
class SubmitChild:
    pick: int
    cpu: int
    gpu: int
    count: int
    partial: bool


@dataclass(frozen=True)
class EndJob:
    pick: int
    how: str


FamilyEvent = Event | SubmitJob | SubmitChild | EndJob

_children = st.builds(
    SubmitChild,
    st.integers(0, 100),
    st.integers(0, 3),
    st.integers(0, 2),
    st.integers(1, 3),
    st.booleans(),
)
# Children and cycles dominate, so caps are reached and children wait at them.
family_events = st.lists(
    st.one_of(
        one_event,
        st.builds(SubmitJob, st.none() | st.integers(1, 4), st.none() | st.integers(1, 3)),
        _children,
        _children,
        st.just(Schedule()),
        st.builds(EndJob, st.integers(0, 100), st.sampled_from(["cancel", "finish", "evict"])),
    ),
    min_size=8,
    max_size=40,
)


#: Room for a few jobs and their children, so caps, not quotas, are what children meet.
FAMILY_CONFIG = (
    ConfigBuilder()
    .priorities(low=0, mid=5, high=100)
    .cluster_queue(
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 12).resource("GPU", 6))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY),
        "q",
    )
    .build()
)


def family_step(run: Run, jobs: list[str], event: FamilyEvent) -> object:
    engine = run.engine
    if isinstance(event, SubmitJob):
        queue = sorted(run.config.queues)[len(jobs) % len(run.config.queues)]
        covered = {r for cq in run.config.cluster_queues.values() for _, r in cq.quotas()}
        cap = {"CPU": event.cap_cpu, "GPU": event.cap_gpu if "GPU" in covered else None}
        spec = replace(
            WorkloadBuilder(f"job{len(run.outcomes)}")
            .kind(WorkloadKind.JOB)
            .queue(queue)
            .created(run.clock.now())
            .bundles({"CPU": 1})
            .build(),
            max_resources={r: v * 1000 for r, v in cap.items() if v is not None} or None,
        )
        try:
            engine.submit(spec)
        except (InvalidWorkloadError, WorkloadRejected) as e:
            return type(e).__name__
        jobs.append(spec.id)
        run.submitted.append(spec.id)
        # Admitted at once where it fits: only an admitted job's run makes children.
        return spec.id, engine.schedule()
    if isinstance(event, SubmitChild):
        alive = [j for j in jobs if state(engine, j) is S.ADMITTED]
        if not alive:
            return None
        engine.schedule()  # the job's earlier children get their turn (or wait at the cap)
        alive = [j for j in alive if state(engine, j) is S.ADMITTED]
        if not alive:
            return None
        parent = engine.workload(W(alive[event.pick % len(alive)])).spec
        units: dict[str, float] = {"CPU": event.cpu / 2}
        if event.gpu:
            units["GPU"] = event.gpu
        builder = (
            WorkloadBuilder(f"c{len(run.outcomes)}")
            .queue(parent.queue)
            .created(run.clock.now())
            .bundles(units, count=event.count)
        )
        if event.partial and event.count > 1:
            builder.min_count(1)
        spec = replace(builder.build(), parent=parent.id)
        try:
            engine.submit(spec)
        except (InvalidWorkloadError, WorkloadRejected) as e:
            return type(e).__name__
        run.submitted.append(spec.id)
        return spec.id
    if isinstance(event, EndJob):
        alive = [j for j in jobs if not state(engine, j).is_terminal]
        if not alive:
            return None
        target = W(alive[event.pick % len(alive)])
        current = state(engine, target)
        if event.how == "cancel":
            return engine.cancel(target)
        if event.how == "finish" and current is S.ADMITTED:
            engine.finish(target)
        elif event.how == "evict" and current.holds_quota:
            return engine.evict(target, reason="Test", message="test")
        return None
    return step(run, event)


def check_family(run: Run, jobs: list[str]) -> None:
    engine = run.engine
    statuses = {s.spec.id: s for s in engine.workloads()}
    for status in statuses.values():
        parent = status.spec.parent
        if parent is None or status.state.is_terminal:
            continue
        # No live child outlives its job's run (it ends, or is evicted).
        assert statuses[parent].state is S.ADMITTED, (
            status.spec.id,
            statuses[parent].state,
        )
    for workload in jobs:
        spec = statuses[workload].spec
        if spec.max_resources is None:
            continue
        family = [s for s in statuses.values() if workload in (s.spec.id, s.spec.parent)]
        held: dict[str, int] = {}
        for member in family:
            if member.state.holds_quota and member.admission is not None:
                for (_, resource), amount in member.admission.usage.items():
                    held[resource] = held.get(resource, 0) + amount
        for resource, cap in spec.max_resources.items():
            assert held.get(resource, 0) <= cap, (workload, resource, held, cap)


@pytest.mark.timeout(180)
@PROPERTY_SETTINGS
@given(config=st.just(FAMILY_CONFIG) | configs(), sequence=family_events)
def test_no_job_holds_more_than_its_cap_and_no_child_outlives_its_job(
    config: QueueConfig, sequence: list[FamilyEvent]
) -> None:
    clock = ManualClock(0.0)
    run = Run(config, Engine(config, clock), clock)
    model = TreeModel(config)
    jobs: list[str] = []
    for event in sequence:
        run.outcomes.append(family_step(run, jobs, event))
        check_invariants(run, model)
        check_family(run, jobs)
    # Whatever ended meanwhile, a cycle hands it out and the next has nothing to do.
    run.engine.schedule()
    assert run.engine.schedule() == []


def test_job_families_show_what_a_job_and_its_children_hold_against_its_cap() -> None:
    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 2}))
    engine.submit(job("plain"))
    engine.schedule()
    engine.submit(child("a", "j", GPU=2))
    engine.submit(child("b", "j", GPU=2, created=2))
    engine.schedule()

    [family] = engine.job_families()  # "plain" has neither a cap nor children
    assert (family.job, family.queue, family.state) == ("j", "q", S.ADMITTED)
    assert family.max_resources == {"GPU": 2000}
    assert family.holding == {"CPU": 1000, "GPU": 2000}
    assert [(c.workload, c.state, dict(c.request)) for c in family.children] == [
        ("a", S.ADMITTED, {"GPU": 2000}),
        ("b", S.PENDING, {"GPU": 2000}),
    ]
    assert "max_resources" in family.children[1].message


def test_the_metrics_show_a_jobs_children_and_holding_against_its_cap() -> None:
    from prometheus_client import CollectorRegistry

    from ray_queue.metrics import MetricsSnapshot, QueueMetrics

    engine, _ = new_engine(gpu_config())
    engine.submit(job("j", cap={"GPU": 2}))
    engine.schedule()
    engine.submit(child("a", "j", GPU=2))
    engine.submit(child("b", "j", GPU=2, created=2))
    engine.schedule()
    registry = CollectorRegistry()
    QueueMetrics(registry, lambda: MetricsSnapshot(jobs=engine.job_families()))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"queue": "q", "job": "j", **labels})

    assert value("ray_queue_job_children", state="ADMITTED") == 1
    assert value("ray_queue_job_children", state="PENDING") == 1
    assert value("ray_queue_job_resource_usage", resource="GPU") == 2
    assert value("ray_queue_job_max_resources", resource="GPU") == 2
    assert value("ray_queue_job_max_resources", resource="CPU") is None  # not capped
