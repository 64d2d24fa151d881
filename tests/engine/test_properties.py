"""Property tests: random valid configs and random event sequences, with the engine's
invariants checked after every step against an independent model of the quota tree.

The model below re-derives every node's usage from the admitted workloads alone
(a cohort holds, of each child's usage, only what exceeds the child's guaranteed
quota), so a bookkeeping slip in the engine's incremental add/remove shows up as a
mismatch instead of being checked against itself. Example counts are bounded so the
file runs in well under a minute on two slow cores.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import (
    BorrowWithinCohortPolicy,
    FairSharingStrategy,
    QueueConfig,
    QueueingStrategy,
    ReclaimWithinCohort,
    ResourceQuota,
    WhenCanBorrow,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import WorkloadRejected
from ray_queue.engine.model import (
    CheckState,
    Decision,
    DecisionKind,
    WorkloadId,
    WorkloadSpec,
    WorkloadState,
)
from tests.engine.builders import (
    ClusterQueueBuilder,
    CohortBuilder,
    ConfigBuilder,
    FlavorQuotasBuilder,
    WorkloadBuilder,
    flavor,
)

FR = tuple[str, str]
PRIORITIES = {"low": 1, "mid": 5, "high": 10}
FLAVORS = ("f0", "f1")

# -- random configs ----------------------------------------------------------------------


@st.composite
def flavor_quotas(
    draw: st.DrawFn, name: str, resources: tuple[str, ...], in_cohort: bool
) -> FlavorQuotasBuilder:
    fq = flavor(name)
    for resource in resources:
        # Listed non-zero first: hypothesis leans towards the first choice, and a tree
        # full of zero quotas admits nothing worth checking.
        nominal = draw(st.sampled_from([6, 10, 3, 0]))
        bl = draw(st.none() | st.sampled_from([2, 0, 5])) if in_cohort else None
        ll = draw(st.none() | st.sampled_from([n for n in (2, 0, 5) if n <= nominal]))
        ll = ll if in_cohort else None
        fq.resource(resource, nominal, borrowing_limit=bl, lending_limit=ll)
    return fq


@st.composite
def configs(draw: st.DrawFn, *, checks: bool = True, waits: bool = True) -> QueueConfig:
    """``waits``: ClusterQueues may wait before preempting (waitBeforePreemptingSeconds);
    a wait is not persisted, so a restored engine starts it again."""
    builder = ConfigBuilder()
    for name, value in PRIORITIES.items():
        builder.priority_class(name, value)
    resources = ("CPU", "GPU") if draw(st.booleans()) else ("CPU",)
    n_flavors = draw(st.integers(1, 2))
    # Cohorts: each may nest under an earlier one and may own quota.
    n_cohorts = draw(st.integers(1, 3))
    cohort_names = [f"c{i}" for i in range(n_cohorts)]
    for i, name in enumerate(cohort_names):
        cohort = CohortBuilder(name)
        if i > 0 and draw(st.booleans()):
            cohort.parent(cohort_names[draw(st.integers(0, i - 1))])
        if draw(st.booleans()):
            nested = cohort.build().parent is not None
            cohort.resource_group(draw(flavor_quotas(FLAVORS[0], resources, nested)))
        cohort.weight(draw(st.sampled_from([0.5, 1.0, 2.0])))
        builder.cohort(cohort)
    fair = draw(st.booleans())
    if fair:
        strategies = draw(
            st.lists(
                st.sampled_from(list(FairSharingStrategy)), min_size=1, max_size=2, unique=True
            )
        )
        builder.fair_sharing(*strategies)
    if checks:
        builder.admission_check("prov")
    builder.requeuing(base_s=5, max_s=20, limit=draw(st.none() | st.integers(0, 3)))
    if checks and draw(st.booleans()):
        builder.wait_for_placement(draw(st.sampled_from([10.0, 50.0])))
    for i in range(draw(st.integers(1, 6))):
        cohort_name = draw(st.none() | st.sampled_from([*cohort_names, "implicit"]))
        in_cohort = cohort_name is not None
        order = draw(st.permutations(FLAVORS[:n_flavors]))
        cq = ClusterQueueBuilder(f"cq{i}").cohort(cohort_name)
        cq.resource_group(*(draw(flavor_quotas(f, resources, in_cohort)) for f in order))
        cq.preemption(
            # Active policies first, for the same reason as the quotas.
            within=draw(st.sampled_from(list(reversed(WithinClusterQueue)))),
            reclaim=draw(st.sampled_from(list(reversed(ReclaimWithinCohort)))),
            borrow_within=draw(st.sampled_from(list(reversed(BorrowWithinCohortPolicy)))),
            max_priority_threshold=draw(st.none() | st.sampled_from([1, 5])),
            wait_s=draw(st.sampled_from([0.0, 3.0, 30.0])) if waits else 0.0,
        )
        cq.fungibility(
            when_can_borrow=draw(st.sampled_from(list(WhenCanBorrow))),
            when_can_preempt=draw(st.sampled_from(list(WhenCanPreempt))),
        )
        cq.strategy(draw(st.sampled_from(list(QueueingStrategy))))
        cq.weight(draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])))
        cq.usage_fair_sharing(draw(st.booleans()))
        if checks and draw(st.integers(0, 3)) == 0:
            cq.admission_check("prov")
        builder.cluster_queue(cq, f"q{i}")
        if draw(st.booleans()):
            builder.queue(f"q{i}b", f"cq{i}", weight=draw(st.sampled_from([0.5, 1.0, 2.0])))
    return builder.build()


# -- random events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    queue_pick: int
    cpu_halves: int
    gpu: int
    count: int
    second_group: bool
    partial: bool
    priority: str


@dataclass(frozen=True)
class Schedule:
    pass


@dataclass(frozen=True)
class Finish:
    pick: int


@dataclass(frozen=True)
class Cancel:
    pick: int


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Check:
    pick: int
    state: CheckState


@dataclass(frozen=True)
class Place:
    pick: int


Event = Submit | Schedule | Finish | Cancel | Advance | Check | Place

submits = st.builds(
    Submit,
    queue_pick=st.integers(0, 100),
    cpu_halves=st.sampled_from([2, 4, 1, 6, 0, 12]),
    gpu=st.sampled_from([0, 1, 2]),
    count=st.sampled_from([1, 2, 3]),
    second_group=st.booleans(),
    partial=st.booleans(),
    priority=st.sampled_from(["low", "high", "mid"]),
)
_EVENT_KINDS: dict[str, st.SearchStrategy[Event]] = {
    "submit": submits,
    "schedule": st.just(Schedule()),
    "finish": st.builds(Finish, st.integers(0, 100)),
    "cancel": st.builds(Cancel, st.integers(0, 100)),
    "advance": st.builds(Advance, st.sampled_from([1.0, 5.0, 12.0, 60.0])),
    "check": st.builds(Check, st.integers(0, 100), st.sampled_from(list(CheckState))),
    "place": st.builds(Place, st.integers(0, 100)),
}
# Submits dominate so queues fill up and preemption has something to choose from.
_MIX = ["submit"] * 5 + ["schedule"] * 3 + ["finish", "cancel", "advance", "check", "place"]
one_event = st.sampled_from(_MIX).flatmap(lambda kind: _EVENT_KINDS[kind])
events = st.lists(one_event, min_size=8, max_size=40)


@dataclass
class Run:
    """One engine driven by one event list, with what each step returned."""

    config: QueueConfig
    engine: Engine
    clock: ManualClock
    submitted: list[str] = field(default_factory=list)
    outcomes: list[object] = field(default_factory=list)


def spec_for(
    event: Submit, index: int, config: QueueConfig, now: float, *, partial: bool = True
) -> WorkloadSpec:
    queues = sorted(config.queues)
    builder = WorkloadBuilder(f"w{index}").queue(queues[event.queue_pick % len(queues)])
    bundle: dict[str, float] = {"CPU": event.cpu_halves / 2}
    has_gpu = any(r == "GPU" for cq in config.cluster_queues.values() for _, r in cq.quotas())
    if event.gpu and has_gpu:
        bundle["GPU"] = event.gpu
    builder.bundles(bundle, count=event.count).priority(event.priority).created(now)
    if event.second_group:
        builder.bundles({"CPU": 1})
    if partial and event.partial and event.count > 1:
        builder.min_count(1 + event.queue_pick % event.count)
    return builder.build()


def live(run: Run, *states: WorkloadState) -> list[str]:
    return [w for w in run.submitted if run.engine.workload(WorkloadId(w)).state in states]


def step(run: Run, event: Event) -> object:
    """Apply one event; return a comparable record of what the engine answered."""
    engine, S = run.engine, WorkloadState
    if isinstance(event, Submit):
        spec = spec_for(event, len(run.outcomes), run.config, run.clock.now())
        try:
            status = engine.submit(spec)
        except WorkloadRejected as e:
            return ("rejected", str(e))
        run.submitted.append(spec.id)
        return status
    if isinstance(event, Schedule):
        return engine.schedule()
    if isinstance(event, Advance):
        run.clock.advance(event.seconds)
        return None
    if isinstance(event, Finish):
        running = live(run, S.ADMITTED)
        if not running:
            return None
        target = running[event.pick % len(running)]
        engine.finish(WorkloadId(target), failed=event.pick % 5 == 0, message="done")
        return target
    if isinstance(event, Cancel):
        if not run.submitted:
            return None
        return engine.cancel(WorkloadId(run.submitted[event.pick % len(run.submitted)]))
    if isinstance(event, Check):
        waiting = live(run, S.QUOTA_RESERVED)
        if not waiting:
            return None
        target = waiting[event.pick % len(waiting)]
        return engine.set_check_state(WorkloadId(target), "prov", event.state, "test")
    running = live(run, S.ADMITTED)
    if not running:
        return None
    return engine.mark_placed(WorkloadId(running[event.pick % len(running)]))


# -- an independent model of the quota tree --------------------------------------------------


class TreeModel:
    """The quota formulas, evaluated from scratch from the config and admissions."""

    def __init__(self, config: QueueConfig) -> None:
        self.parent: dict[str, str | None] = {}
        self.children: dict[str, list[str]] = {}
        self.quotas: dict[str, dict[FR, tuple[int, int | None, int | None]]] = {}
        for cohort in config.cohorts.values():
            self._node(cohort.name, cohort.parent, cohort.quotas())
        for cq in config.cluster_queues.values():
            self._node(cq.name, cq.cohort, cq.quotas())
        for cohort in config.cohorts.values():
            if cohort.parent is not None and cohort.parent not in self.quotas:
                self._node(cohort.parent, None, {})
        for cq in config.cluster_queues.values():
            if cq.cohort is not None and cq.cohort not in self.quotas:
                self._node(cq.cohort, None, {})
        for name, parent in self.parent.items():
            if parent is not None:
                self.children.setdefault(parent, []).append(name)
        self.cluster_queues = set(config.cluster_queues)

    def _node(self, name: str, parent: str | None, quotas: Mapping[FR, ResourceQuota]) -> None:
        self.parent[name] = parent
        self.quotas[name] = {
            fr: (q.nominal, q.borrowing_limit, q.lending_limit) for fr, q in quotas.items()
        }

    def frs(self) -> set[FR]:
        return {fr for q in self.quotas.values() for fr in q}

    def nominal(self, node: str, fr: FR) -> int:
        return self.quotas[node].get(fr, (0, None, None))[0]

    def borrowing_limit(self, node: str, fr: FR) -> int | None:
        return self.quotas[node].get(fr, (0, None, None))[1]

    def subtree(self, node: str, fr: FR) -> int:
        own = self.nominal(node, fr)
        return own + sum(
            self.subtree(c, fr) - self.guaranteed(c, fr) for c in self.children.get(node, [])
        )

    def guaranteed(self, node: str, fr: FR) -> int:
        ll = self.quotas[node].get(fr, (0, None, None))[2]
        return 0 if ll is None else max(0, self.subtree(node, fr) - ll)

    def usage(self, node: str, fr: FR, cq_usage: dict[str, dict[FR, int]]) -> int:
        if node in self.cluster_queues:
            return cq_usage.get(node, {}).get(fr, 0)
        return sum(
            max(0, self.usage(c, fr, cq_usage) - self.guaranteed(c, fr))
            for c in self.children.get(node, [])
        )

    def available(self, node: str, fr: FR, cq_usage: dict[str, dict[FR, int]]) -> int:
        use = self.usage(node, fr, cq_usage)
        parent = self.parent[node]
        if parent is None:
            return self.subtree(node, fr) - use
        guaranteed = self.guaranteed(node, fr)
        from_parent = self.available(parent, fr, cq_usage)
        bl = self.borrowing_limit(node, fr)
        if bl is not None:
            lent = self.subtree(node, fr) - guaranteed
            from_parent = min(from_parent, lent - max(0, use - guaranteed) + bl)
        return max(0, guaranteed - use) + from_parent


def check_invariants(run: Run, model: TreeModel) -> None:
    engine, config = run.engine, run.config
    statuses = engine.workloads()
    # status()'s counts come from the records alone: they must agree with the statuses.
    assert engine.state_counts() == Counter(s.state.value for s in statuses)
    holders = [s for s in statuses if s.state.holds_quota]
    cq_usage: dict[str, dict[FR, int]] = {}
    for status in holders:
        admission = status.admission
        assert admission is not None, status.spec.id
        cq = config.cluster_queues[admission.cluster_queue]
        spec = status.spec
        # Gangs: every group whole, except a partially admitted first group within
        # [min_count, count].
        assert len(admission.groups) == len(spec.bundle_groups)
        for index, (group, granted) in enumerate(
            zip(spec.bundle_groups, admission.groups, strict=True)
        ):
            if index == 0 and spec.min_count is not None:
                assert spec.min_count <= granted.count <= group.count
            else:
                assert granted.count == group.count, spec.id
        # The admission's usage is exactly the bundles on their assigned flavors, and
        # every flavor-resource is one the ClusterQueue has quota for.
        expected: dict[FR, int] = {}
        for group, granted in zip(spec.bundle_groups, admission.groups, strict=True):
            for resource, amount in group.resources.items():
                if amount > 0:
                    fr = (granted.flavors[resource], resource)
                    expected[fr] = expected.get(fr, 0) + amount * granted.count
        assert dict(admission.usage) == expected, spec.id
        assert set(expected) <= set(cq.quotas()), spec.id
        per_cq = cq_usage.setdefault(admission.cluster_queue, {})
        for fr, amount in admission.usage.items():
            per_cq[fr] = per_cq.get(fr, 0) + amount
    tree = engine.tree
    for fr in model.frs() | {fr for u in cq_usage.values() for fr in u}:
        for node, parent in model.parent.items():
            use = model.usage(node, fr, cq_usage)
            live_node = tree.cluster_queues.get(node) or tree.cohorts[node]
            # Usage equals the sum of admitted workloads' admissions, at every level.
            assert live_node.usage.get(fr, 0) == use, (node, fr)
            subtree = model.subtree(node, fr)
            bl = model.borrowing_limit(node, fr)
            if parent is None:
                # A root never hands out more than it has: this is also where every
                # lending limit below it is enforced, since only lendable quota counts.
                assert use <= subtree, (node, fr, use, subtree)
            elif bl is not None:
                assert use <= subtree + bl, (node, fr, use, subtree, bl)
            # Lending limits: whatever the others took, every ClusterQueue can still get
            # all of its guaranteed (never lent) quota.
            if node in model.cluster_queues:
                keep = max(0, model.guaranteed(node, fr) - use)
                assert model.available(node, fr, cq_usage) >= keep, (node, fr)
    # The cheap counts the metrics read agree with the workloads themselves.
    statuses = engine.workloads()
    for name, (per_queue, set_aside) in engine.pending_counts().items():
        waiting = [
            s for s in statuses if s.state is WorkloadState.PENDING and s.cluster_queue == name
        ]
        assert sum(per_queue.values()) == len(waiting), name
        assert set_aside == sum(s.set_aside for s in waiting), name
    for cq_status in engine.cluster_queue_status():
        mine = [s for s in statuses if s.cluster_queue == cq_status.name]
        assert cq_status.admitted == sum(s.state is WorkloadState.ADMITTED for s in mine)
    # Every pending workload is really pending (not holding quota) and listed once.
    listed = [p.workload for p in engine.pending()]
    assert len(listed) == len(set(listed))
    assert set(listed) == {
        s.spec.id for s in engine.workloads() if s.state is WorkloadState.PENDING
    }


def check_no_cycle(decisions: list[Decision]) -> None:
    """Within one call, no chain of preemptions comes back to where it started (a
    preempted b, b preempted c, ..., which preempted a), however long the chain."""
    pairs = {(d.preemptor, d.workload) for d in decisions if d.kind is DecisionKind.PREEMPT}
    victims: dict[str | None, set[str]] = {}
    for preemptor, victim in pairs:
        victims.setdefault(preemptor, set()).add(victim)
    for start in victims:
        seen: set[str] = set()
        frontier = set(victims[start])
        while frontier:
            assert start not in frontier, f"a preemption cycle through {start}"
            seen |= frontier
            frontier = {v for w in frontier for v in victims.get(w, ())} - seen
    # Victims are only ever evicted for a head that is admitted in the same step.
    admitted = {
        d.workload for d in decisions if d.kind in (DecisionKind.ADMIT, DecisionKind.RESERVE)
    }
    for preemptor, _ in pairs:
        assert preemptor in admitted


def check_waits(run: Run, decisions: list[Decision]) -> None:
    """A ClusterQueue that waits before preempting never preempts for a workload sooner
    than that long after it was created (its wait starts no sooner)."""
    now = run.clock.now()
    for decision in decisions:
        if decision.kind is not DecisionKind.PREEMPT or decision.preemptor is None:
            continue
        preemptor = run.engine.workload(decision.preemptor)
        cq = run.config.cluster_queues[preemptor.cluster_queue]
        wait_s = cq.preemption.wait_before_preempting_s
        assert preemptor.spec.created_at + wait_s <= now, (decision, wait_s, now)


class SchedulingLoops(AssertionError):
    """A ``schedule()`` call went round far more often than any sound one can."""


class RoundLimitedEngine(Engine):
    """The engine, except that a ``schedule()`` call its round limit cut short (one going
    round in circles) fails the test, and lets hypothesis shrink it."""

    def schedule(self, *, kueue_pace: bool = False) -> list[Decision]:
        decisions = super().schedule(kueue_pace=kueue_pace)
        if self.cut_short is not None:
            recent = [
                (d.kind.value, d.workload, d.preemptor) for d in self.cut_short.last_decisions
            ]
            raise SchedulingLoops(f"schedule() does not end; its last decisions: {recent}")
        return decisions


def drive(config: QueueConfig, sequence: list[Event], check: bool) -> Run:
    clock = ManualClock(0.0)
    run = Run(config, RoundLimitedEngine(config, clock), clock)
    model = TreeModel(config)
    for event in sequence:
        outcome = step(run, event)
        run.outcomes.append(outcome)
        if check:
            check_invariants(run, model)
            if isinstance(event, Schedule):
                assert isinstance(outcome, list)
                check_no_cycle(outcome)
                check_waits(run, outcome)
                # Nothing happened in between: a second cycle has nothing to do.
                assert run.engine.schedule() == []
    return run


#: ``RAY_QUEUE_LOOP_EXAMPLES=10000`` runs the two no-loop properties longer, with fresh
#: random examples instead of the fixed ones CI runs (docs/scheduling.md, "Tests").
LOOP_EXAMPLES = int(os.environ.get("RAY_QUEUE_LOOP_EXAMPLES", "400"))
LOOP_SETTINGS = {
    "max_examples": LOOP_EXAMPLES,
    "derandomize": "RAY_QUEUE_LOOP_EXAMPLES" not in os.environ,
}

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)


@pytest.mark.timeout(120)
@PROPERTY_SETTINGS
@given(config=configs(), sequence=events)
def test_invariants_hold_after_every_step(config: QueueConfig, sequence: list[Event]) -> None:
    drive(config, sequence, check=True)


@pytest.mark.timeout(120)
@settings(PROPERTY_SETTINGS, max_examples=60)
@given(config=configs(), sequence=events)
def test_the_same_events_give_the_same_decisions(
    config: QueueConfig, sequence: list[Event]
) -> None:
    first = drive(config, sequence, check=False)
    second = drive(config, sequence, check=False)
    assert first.outcomes == second.outcomes
    assert first.engine.workloads() == second.engine.workloads()
    assert first.engine.cluster_queue_status() == second.engine.cluster_queue_status()


@pytest.mark.timeout(120)
@settings(PROPERTY_SETTINGS, max_examples=100)
@given(nominal=st.sampled_from([4, 6, 10]), sequence=events)
def test_preemption_happens_whenever_lower_priority_work_would_make_room(
    nominal: int, sequence: list[Event]
) -> None:
    # One ClusterQueue, one flavor, LowerPriority, BestEffortFIFO, no partial admission:
    # after a cycle, no pending workload could fit by evicting only work of strictly
    # lower priority (Kueue would have preempted it), and nothing was preempted needlessly.
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("f0").resource("CPU", nominal))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY)
    )
    builder = ConfigBuilder().cluster_queue(cq, "q")
    for name, value in PRIORITIES.items():
        builder.priority_class(name, value)
    config = builder.build()
    clock = ManualClock(0.0)
    run = Run(config, RoundLimitedEngine(config, clock), clock)
    fr = ("f0", "CPU")
    for event in sequence:
        if isinstance(event, Submit):
            spec = spec_for(event, len(run.outcomes), config, clock.now(), partial=False)
            run.outcomes.append(spec.id)
            try:
                run.engine.submit(spec)
            except WorkloadRejected:
                continue
            run.submitted.append(spec.id)
            continue
        run.outcomes.append(step(run, event))
        if not isinstance(event, Schedule):
            continue
        statuses = run.engine.workloads()
        held = [
            (w.priority, w.admission.usage.get(fr, 0))
            for w in statuses
            if w.state.holds_quota and w.admission is not None
        ]
        free = nominal * 1000 - sum(amount for _, amount in held)
        for waiting in (w for w in statuses if w.state is WorkloadState.PENDING):
            lower = sum(amount for priority, amount in held if priority < waiting.priority)
            need = waiting.spec.total_request().get("CPU", 0)
            assert need > free + lower, (waiting.spec.id, need, free, lower)


def assert_same_workloads(a: Engine, b: Engine) -> None:
    """Equal ``workloads()``; on a mismatch, name the first differing field."""
    for x, y in zip(a.workloads(), b.workloads(), strict=True):
        for name in ("spec", "state", "priority", "cluster_queue", "admission", "checks"):
            assert getattr(x, name) == getattr(y, name), (x.spec.id, name)
        for name in ("reason", "message", "requeue_count", "requeue_at", "placed", "history"):
            assert getattr(x, name) == getattr(y, name), (x.spec.id, name)


# Two event lists make shrinking slow (minutes on two cores); a failure here prints the
# generated example as is, and assert_same_workloads names the first field that differs.
@pytest.mark.timeout(120)
@settings(PROPERTY_SETTINGS, max_examples=60, phases=[Phase.explicit, Phase.generate])
@given(config=configs(waits=False), first=events, then=events)
def test_restore_from_workloads_continues_identically(
    config: QueueConfig, first: list[Event], then: list[Event]
) -> None:
    original = drive(config, first, check=False)
    clock = ManualClock(original.clock.now())
    restored = Run(
        config,
        Engine.restore(config, clock, original.engine.workloads()),
        clock,
        submitted=list(original.submitted),
        outcomes=list(original.outcomes),
    )
    assert restored.engine.workloads() == original.engine.workloads()
    assert restored.engine.pending() == original.engine.pending()
    for event in then:
        for run in (original, restored):
            run.outcomes.append(step(run, event))
        assert original.outcomes[-1] == restored.outcomes[-1], event
        assert_same_workloads(original.engine, restored.engine)


# -- no preemption loops --------------------------------------------------------------------


@st.composite
def contended_configs(draw: st.DrawFn) -> QueueConfig:
    """Where preemption loops live: fair sharing, and three ClusterQueues of one cohort
    that borrow freely, preempt their own lower-priority work and reclaim anything."""
    builder = ConfigBuilder()
    for name, value in PRIORITIES.items():
        builder.priority_class(name, value)
    strategies = st.lists(st.sampled_from(list(FairSharingStrategy)), min_size=1, unique=True)
    builder.fair_sharing(*draw(strategies))
    for i in range(3):
        quotas = flavor(FLAVORS[0]).resource("CPU", draw(st.integers(1, 3)))
        quotas.resource("GPU", draw(st.integers(1, 3)))
        cq = (
            ClusterQueueBuilder(f"cq{i}")
            .cohort("all")
            .resource_group(quotas)
            .preemption(within=WithinClusterQueue.LOWER_PRIORITY, reclaim=ReclaimWithinCohort.ANY)
        )
        builder.cluster_queue(cq, f"q{i}")
    return builder.build()


#: Requests as large as a whole cohort are what loops need: they can only be admitted by
#: preempting, and only by borrowing. Listed first, since hypothesis leans that way.
contended_submits = st.builds(
    Submit,
    queue_pick=st.integers(0, 2),
    cpu_halves=st.sampled_from([12, 2, 6]),
    gpu=st.just(0),
    count=st.just(1),
    second_group=st.just(False),
    partial=st.just(False),
    priority=st.sampled_from(["high", "low", "mid"]),
)
#: Mostly submissions: a loop needs several workloads pending at once in one call.
_CONTENDED_MIX: dict[str, st.SearchStrategy[Event]] = {
    "submit": contended_submits,
    "schedule": st.just(Schedule()),
    "finish": st.builds(Finish, st.integers(0, 100)),
}
contended_events = st.lists(
    st.sampled_from(["submit"] * 6 + ["schedule", "finish"]).flatmap(_CONTENDED_MIX.__getitem__),
    min_size=4,
    max_size=30,
)


@pytest.mark.timeout(120 + LOOP_EXAMPLES // 20)
@settings(PROPERTY_SETTINGS, **LOOP_SETTINGS)
@given(config=contended_configs(), sequence=contended_events)
def test_preemption_never_goes_round_in_circles(config: QueueConfig, sequence: list[Event]) -> None:
    # make demo once hung the manager in such a loop (test_fair_sharing has the case).
    drive(config, sequence, check=True)


@st.composite
def borrowing_configs(draw: st.DrawFn) -> QueueConfig:
    """Classical preemption where Kueue's rules meet: ClusterQueues that borrow while
    preempting (``borrowWithinCohort`` with and without a threshold) beside ones that
    reclaim (``Any`` or ``LowerPriority``), in a flat or a two-level cohort tree whose
    inner cohorts may hold quota of their own."""
    builder = ConfigBuilder()
    for name, value in PRIORITIES.items():
        builder.priority_class(name, value)
    nested = draw(st.booleans())
    builder.cohort(CohortBuilder("all"))
    if nested:
        for name in ("left", "right"):
            inner = CohortBuilder(name).parent("all")
            if draw(st.booleans()):
                inner.resource_group(flavor(FLAVORS[0]).resource("CPU", draw(st.integers(1, 2))))
            builder.cohort(inner)
    for i in range(draw(st.integers(2, 4))):
        quotas = flavor(FLAVORS[0]).resource(
            "CPU", draw(st.integers(1, 3)), borrowing_limit=draw(st.none() | st.integers(0, 4))
        )
        cohort = ("left", "right")[i % 2] if nested else "all"
        cq = (
            ClusterQueueBuilder(f"cq{i}")
            .cohort(cohort)
            .resource_group(quotas)
            .preemption(
                within=draw(
                    st.sampled_from([WithinClusterQueue.LOWER_PRIORITY, WithinClusterQueue.NEVER])
                ),
                reclaim=draw(
                    st.sampled_from([ReclaimWithinCohort.ANY, ReclaimWithinCohort.LOWER_PRIORITY])
                ),
                borrow_within=draw(st.sampled_from(list(reversed(BorrowWithinCohortPolicy)))),
                max_priority_threshold=draw(st.none() | st.sampled_from([1, 5])),
            )
        )
        builder.cluster_queue(cq, f"q{i}")
    return builder.build()


borrowing_submits = st.builds(
    Submit,
    queue_pick=st.integers(0, 3),
    cpu_halves=st.sampled_from([8, 2, 4, 6, 12]),
    gpu=st.just(0),
    count=st.just(1),
    second_group=st.just(False),
    partial=st.just(False),
    priority=st.sampled_from(["high", "low", "mid"]),
)
borrowing_events = st.lists(
    st.sampled_from(["submit"] * 6 + ["schedule", "finish"]).flatmap(
        {**_CONTENDED_MIX, "submit": borrowing_submits}.__getitem__
    ),
    min_size=4,
    max_size=30,
)


@pytest.mark.timeout(120 + LOOP_EXAMPLES // 20)
@settings(PROPERTY_SETTINGS, **LOOP_SETTINGS)
@given(config=borrowing_configs(), sequence=borrowing_events)
def test_borrowing_and_reclaiming_never_go_round_in_circles(
    config: QueueConfig, sequence: list[Event]
) -> None:
    drive(config, sequence, check=True)


# -- no starvation -------------------------------------------------------------------------


@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[float, Submit, int]]:
    """(arrival time, shape, duration in seconds) for 1-15 workloads."""
    items = draw(
        st.lists(
            st.tuples(st.integers(0, 30), submits, st.integers(1, 10)), min_size=1, max_size=15
        )
    )
    return sorted(((float(t), s, d) for t, s, d in items), key=lambda x: x[0])


@pytest.mark.timeout(120)
@settings(PROPERTY_SETTINGS, max_examples=60)
@given(config=configs(checks=False), plan=arrivals())
def test_every_admissible_workload_is_eventually_admitted(
    config: QueueConfig, plan: list[tuple[float, Submit, int]]
) -> None:
    clock = ManualClock(0.0)
    run = Run(config, RoundLimitedEngine(config, clock), clock)
    durations: dict[str, int] = {}
    started: dict[str, float] = {}
    ever_admitted: set[str] = set()
    last_arrival = plan[-1][0]
    # Work-conserving bound: whenever something waits, something runs, and each run
    # that is preempted restarts; four times the total work leaves room for that.
    bound = last_arrival + 4 * sum(d for _, _, d in plan) + 50
    pending_plan = list(plan)
    while clock.now() <= bound:
        now = clock.now()
        while pending_plan and pending_plan[0][0] <= now:
            _, shape, duration = pending_plan.pop(0)
            spec = spec_for(shape, len(run.outcomes), config, now)
            run.outcomes.append(spec.id)
            try:
                run.engine.submit(spec)
            except WorkloadRejected:
                continue  # can never fit its ClusterQueue: out of scope
            run.submitted.append(spec.id)
            durations[spec.id] = duration
        for workload, at in list(started.items()):
            status = run.engine.workload(WorkloadId(workload))
            if status.state is not WorkloadState.ADMITTED:
                del started[workload]  # preempted: it starts over when readmitted
            elif now - at >= durations[workload]:
                run.engine.finish(WorkloadId(workload), message="done")
                del started[workload]
        for decision in run.engine.schedule():
            if decision.kind is DecisionKind.ADMIT:
                started[decision.workload] = now
                ever_admitted.add(decision.workload)
        finished = live(run, WorkloadState.FINISHED, WorkloadState.FAILED)
        if not pending_plan and len(finished) == len(run.submitted):
            break
        clock.advance(1.0)
    waiting = set(run.submitted) - set(live(run, WorkloadState.FINISHED))
    assert not waiting, f"starved until t={clock.now()}: {sorted(waiting)}"
    assert ever_admitted == set(run.submitted)


def test_the_model_agrees_with_a_hand_worked_tree() -> None:
    # Guard the guard: the model must reproduce test_quota's lending-limit numbers.
    config = (
        ConfigBuilder()
        .cluster_queue(
            ClusterQueueBuilder("a")
            .cohort("c")
            .resource_group(flavor("default").resource("CPU", 10, lending_limit=4)),
            "qa",
        )
        .cluster_queue(
            ClusterQueueBuilder("b")
            .cohort("c")
            .resource_group(flavor("default").resource("CPU", 6)),
            "qb",
        )
        .build()
    )
    model = TreeModel(config)
    fr = ("default", "CPU")
    assert model.guaranteed("a", fr) == 6000
    assert model.subtree("c", fr) == 10000
    assert model.usage("c", fr, {"a": {fr: 8000}, "b": {fr: 8000}}) == 10000


# -- waiting before preempting --------------------------------------------------------------


@st.composite
def waiting_configs(draw: st.DrawFn) -> QueueConfig:
    """Three ClusterQueues of one cohort that preempt their own lower-priority work and
    reclaim anything, some after a wait (waitBeforePreemptingSeconds), with or without
    fair sharing."""
    builder = ConfigBuilder()
    for name, value in PRIORITIES.items():
        builder.priority_class(name, value)
    if draw(st.booleans()):
        builder.fair_sharing(FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE)
    for i in range(3):
        cq = (
            ClusterQueueBuilder(f"cq{i}")
            .cohort("all")
            .resource_group(flavor(FLAVORS[0]).resource("CPU", draw(st.integers(1, 3))))
            .preemption(
                within=WithinClusterQueue.LOWER_PRIORITY,
                reclaim=ReclaimWithinCohort.ANY,
                wait_s=draw(st.sampled_from([2.0, 0.0, 10.0])),
            )
        )
        builder.cluster_queue(cq, f"q{i}")
    return builder.build()


_WAITING_MIX: dict[str, st.SearchStrategy[Event]] = {
    **_CONTENDED_MIX,
    "advance": st.builds(Advance, st.sampled_from([1.0, 5.0, 12.0])),
}
waiting_events = st.lists(
    st.sampled_from(["submit"] * 4 + ["schedule"] * 2 + ["finish", "advance"]).flatmap(
        _WAITING_MIX.__getitem__
    ),
    min_size=4,
    max_size=30,
)


@pytest.mark.timeout(180)
@settings(PROPERTY_SETTINGS, max_examples=300)
@given(config=waiting_configs(), sequence=waiting_events)
def test_waiting_heads_hold_quota_only_during_rounds_and_preempt_only_after_waiting(
    config: QueueConfig, sequence: list[Event]
) -> None:
    """Usage is always exactly what admitted work holds (``check_invariants``), no call
    goes round in circles, and no head preempts before its wait could have ended
    (``check_waits``)."""
    drive(config, sequence, check=True)
