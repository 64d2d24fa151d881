"""Fair sharing: DRS ordering of ClusterQueues (with weights, weight 0, nested cohorts),
the two fair-sharing preemption strategies, and usage-based fair sharing among the
Queues of one ClusterQueue with half-life decay and Queue weights.

Shares are worked out by hand: share = max over resources of borrowed / lendable(parent),
divided by the weight (docs/scheduling.md, "Fair sharing").
"""

from __future__ import annotations

import math

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import FairSharingStrategy, ReclaimWithinCohort, WithinClusterQueue
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import DecisionKind, WorkloadId, WorkloadState
from tests.engine.builders import (
    ClusterQueueBuilder,
    CohortBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    admitted,
    flavor,
    new_engine,
    state,
    wl,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState
LTE_FINAL = FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE
LT_INITIAL = FairSharingStrategy.LESS_THAN_INITIAL_SHARE


def cq(name: str, nominal: float, cohort: str) -> ClusterQueueBuilder:
    return (
        ClusterQueueBuilder(name)
        .cohort(cohort)
        .resource_group(flavor("default").resource("CPU", nominal))
    )


def pooled_cohort(weight_a: float, weight_b: float, *, fair: bool) -> Engine:
    """a and b own nothing; cohort c owns 10 CPU. a runs 4, b runs 2: 4 CPU free."""
    builder = (
        ConfigBuilder()
        .cohort(CohortBuilder("c").resource_group(flavor("default").resource("CPU", 10)))
        .cluster_queue(cq("a", 0, "c").weight(weight_a), "qa")
        .cluster_queue(cq("b", 0, "c").weight(weight_b), "qb")
    )
    if fair:
        builder.fair_sharing()
    engine, _ = new_engine(builder.build())
    engine.submit(wl("a0", "qa", CPU=4))
    engine.submit(wl("b0", "qb", CPU=2))
    engine.schedule()
    assert admitted(engine) == {"a0", "b0"}
    return engine


@pytest.mark.parametrize(
    ("fair", "weight_a", "weight_b", "winner"),
    [
        # Without fair sharing both heads borrow, so the older one (a1) goes first.
        pytest.param(False, 1, 1, "a1", id="off-oldest-first"),
        # Share as if admitted: a (4 + 4) / 10 = 0.8, b (2 + 4) / 10 = 0.6: b first.
        pytest.param(True, 1, 1, "b1", id="lower-share-first"),
        # a's weight 2 halves its share: 0.4 < 0.6: a first.
        pytest.param(True, 2, 1, "a1", id="weight-2"),
        # Weight 0 borrowing is an infinite share: always last.
        pytest.param(True, 0, 1, "b1", id="weight-0-a"),
        pytest.param(True, 1, 0, "a1", id="weight-0-b"),
        # Both infinite: as in Kueue, their unweighted shares decide (0.8 > 0.6): b first.
        pytest.param(True, 0, 0, "b1", id="weight-0-both"),
    ],
)
def test_heads_are_ordered_by_dominant_resource_share(
    fair: bool, weight_a: float, weight_b: float, winner: str
) -> None:
    engine = pooled_cohort(weight_a, weight_b, fair=fair)
    engine.submit(wl("a1", "qa", CPU=4, created=1))
    engine.submit(wl("b1", "qb", CPU=4, created=2))
    decisions = engine.schedule()
    assert [(d.kind, d.workload) for d in decisions] == [(DecisionKind.ADMIT, winner)]


@pytest.mark.parametrize(
    ("weight", "share"),
    [
        pytest.param(1, 0.4, id="weight-1"),
        pytest.param(2, 0.2, id="weight-2"),
        pytest.param(0, math.inf, id="weight-0"),
    ],
)
def test_weighted_share_is_reported(weight: float, share: float) -> None:
    engine = pooled_cohort(weight, 1, fair=True)
    status = {s.name: s for s in engine.cluster_queue_status()}
    # a borrows 4 of the cohort's lendable 10.
    assert status["a"].weighted_share == pytest.approx(share)
    assert status["b"].weighted_share == pytest.approx(0.2)


def test_nested_cohorts_compare_shares_top_down() -> None:
    # org (own 10) ─┬─ x ─┬─ a (0)
    #               │     └─ a2 (0)
    #               └─ y ── b (0)
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org").resource_group(flavor("default").resource("CPU", 10)))
        .cohort(CohortBuilder("x").parent("org"))
        .cohort(CohortBuilder("y").parent("org"))
        .cluster_queue(cq("a", 0, "x"), "qa")
        .cluster_queue(cq("a2", 0, "x"), "qa2")
        .cluster_queue(cq("b", 0, "y"), "qb")
        .fair_sharing()
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a0", "qa", CPU=2))
    engine.submit(wl("a20", "qa2", CPU=3))
    engine.submit(wl("b0", "qb", CPU=4))
    engine.schedule()
    # x holds 5 of org's 10 (0.5), y holds 4 (0.4). With either head added: x 0.6, y 0.5.
    # a itself holds only 2, less than b's 4, but the cohorts are compared first.
    engine.submit(wl("a1", "qa", CPU=1, created=1))
    engine.submit(wl("b1", "qb", CPU=1, created=2))
    assert [d.workload for d in engine.schedule()] == ["b1"]


# -- fair-sharing preemption -------------------------------------------------------------


def fair_preemption(*strategies: FairSharingStrategy) -> Engine:
    """a: 5, b: 5, d: 10 (lends everything), cohort 20, fair sharing on.

    a runs a0 (5, at nominal). b runs b1 4, b2 4, b3 4, b4 2 = 14: borrowing 9, share
    9/20 = 0.45. 19 of 20 used.
    """
    config = (
        ConfigBuilder()
        .cluster_queue(cq("a", 5, "c").preemption(reclaim=ReclaimWithinCohort.ANY), "qa")
        .cluster_queue(cq("b", 5, "c"), "qb")
        .cluster_queue(cq("d", 10, "c"), "qd")
        .fair_sharing(*strategies)
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a0", "qa", CPU=5))
    engine.schedule()
    for i, cpu in enumerate((4, 4, 4, 2), start=1):
        engine.submit(wl(f"b{i}", "qb", CPU=cpu, created=i))
        engine.schedule()
    assert admitted(engine) == {"a0", "b1", "b2", "b3", "b4"}
    return engine


@pytest.mark.parametrize(
    ("strategies", "victims"),
    [
        # a1 (4) makes a borrow 4: a's share with it = 4/20 = 0.2.
        # LessThanOrEqualToFinalShare: b4 (newest) -> b borrows 7 (0.35 >= 0.2) ok, 3 free;
        # b3 next -> b would borrow 3 (0.15 < 0.2): not allowed, and b has no more turns.
        pytest.param((LTE_FINAL,), None, id="final-share-refuses"),
        # LessThanInitialShare: b4 (0.2 < 0.45) then b3 (0.2 < 0.35): fits; b4 is then
        # given back because 5 free is already enough.
        pytest.param((LT_INITIAL,), ["b3"], id="initial-share-allows"),
        # The default tries LessThanOrEqualToFinalShare first, then LessThanInitialShare.
        pytest.param((), ["b3"], id="default-order"),
    ],
)
def test_fair_sharing_preemption_strategies(
    strategies: tuple[FairSharingStrategy, ...], victims: list[str] | None
) -> None:
    engine = fair_preemption(*strategies)
    engine.submit(wl("a1", "qa", CPU=4, created=10))
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    if victims is None:
        assert decisions == []
        assert state(engine, "a1") is S.PENDING
    else:
        assert decisions == [(DecisionKind.PREEMPT, v) for v in victims] + [
            (DecisionKind.ADMIT, "a1")
        ]
    assert engine.schedule() == []


def test_fair_preemption_leaves_queues_that_do_not_borrow_alone() -> None:
    engine = fair_preemption()
    # d is idle and lends, so nothing of d's may be taken; b is the only borrower.
    # a1 (2) makes a borrow 2: share 2/20 = 0.1. One CPU is free.
    engine.submit(wl("a1", "qa", CPU=2, created=10))
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    # b4 (2, newest) is enough: b keeps borrowing 7 (0.35 >= 0.1).
    assert decisions == [(DecisionKind.PREEMPT, "b4"), (DecisionKind.ADMIT, "a1")]


# -- usage-based fair sharing among Queues ---------------------------------------------------


def afs_engine(
    *, weight_a: float = 1.0, weight_b: float = 1.0, half_life_s: float = 600.0
) -> tuple[Engine, ManualClock]:
    cluster_queue = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 10))
        .usage_fair_sharing()
    )
    config = (
        ConfigBuilder()
        .cluster_queue(cluster_queue)
        .queue("qa", "cq", weight=weight_a)
        .queue("qb", "cq", weight=weight_b)
        .priorities(low=1, high=10)
        .usage_half_life(half_life_s)
        .build()
    )
    return new_engine(config)


@pytest.mark.parametrize(
    ("weight_a", "order"),
    [
        # Each 2-CPU admission adds 2/10 = 0.2 to its Queue. Ties go to the older one.
        # scores (qa, qb): (0,0) a1 -> (.2,0) b1 -> (.2,.2) a2 -> (.4,.2) b2 -> (.4,.4) a3
        pytest.param(1.0, ["a1", "b1", "a2", "b2", "a3"], id="equal-weights-alternate"),
        # qa's score is halved: (0,0) a1 -> (.1,0) b1 -> (.1,.2) a2 -> (.2,.2) a3
        # -> (.3,.2) b2.
        pytest.param(2.0, ["a1", "b1", "a2", "a3", "b2"], id="weight-2-gets-more"),
    ],
)
def test_queues_take_turns_by_recent_usage(weight_a: float, order: list[str]) -> None:
    engine, _ = afs_engine(weight_a=weight_a)
    for i in range(1, 5):
        engine.submit(wl(f"a{i}", "qa", CPU=2, created=i))
    for i in range(1, 5):
        engine.submit(wl(f"b{i}", "qb", CPU=2, created=10 + i))
    decisions = engine.schedule()
    assert [d.workload for d in decisions] == order


def test_recent_usage_outranks_priority() -> None:
    engine, _ = afs_engine()
    engine.submit(wl("a0", "qa", CPU=5))
    engine.schedule()
    engine.finish(WorkloadId("a0"))
    # qa has 0.5, qb 0: qb's low-priority workload goes before qa's high-priority one.
    engine.submit(
        WorkloadBuilder("a1").queue("qa").bundles({"CPU": 10}).priority("high").created(1).build()
    )
    engine.submit(
        WorkloadBuilder("b1").queue("qb").bundles({"CPU": 10}).priority("low").created(2).build()
    )
    assert [p.workload for p in engine.pending()] == ["b1", "a1"]
    assert [d.workload for d in engine.schedule()] == ["b1"]


@pytest.mark.parametrize(
    ("half_life_s", "winner"),
    [
        # At t=120: qa = 0.8 * 0.5 ** (120 / 60) = 0.2 < qb = 0.3: qa first.
        pytest.param(60.0, "a1", id="decayed"),
        # No decay: qa 0.8 > qb 0.3: qb first.
        pytest.param(0.0, "b1", id="no-decay"),
    ],
)
def test_usage_decays_with_half_life(half_life_s: float, winner: str) -> None:
    engine, clock = afs_engine(half_life_s=half_life_s)
    engine.submit(wl("a0", "qa", CPU=8))
    engine.schedule()
    engine.finish(WorkloadId("a0"))
    clock.advance(120)
    engine.submit(wl("b0", "qb", CPU=3, created=120))
    engine.schedule()
    engine.finish(WorkloadId("b0"))
    engine.submit(wl("a1", "qa", CPU=10, created=121))
    engine.submit(wl("b1", "qb", CPU=10, created=121))
    assert [d.workload for d in engine.schedule()] == [winner]


@pytest.mark.parametrize(
    ("weight_x", "winner"),
    [
        # x holds 4 of org's 10 (0.4), y holds 3 (0.3): y's member goes first ...
        pytest.param(1.0, "b1", id="equal-cohort-weights"),
        # ... unless x's weight 2 halves its share to 0.2.
        pytest.param(2.0, "a1", id="cohort-weight-2"),
    ],
)
def test_cohort_weights_scale_cohort_shares(weight_x: float, winner: str) -> None:
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org").resource_group(flavor("default").resource("CPU", 10)))
        .cohort(CohortBuilder("x").parent("org").weight(weight_x))
        .cohort(CohortBuilder("y").parent("org"))
        .cluster_queue(cq("a", 0, "x"), "qa")
        .cluster_queue(cq("b", 0, "y"), "qb")
        .fair_sharing()
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a0", "qa", CPU=4))
    engine.submit(wl("b0", "qb", CPU=3))
    engine.schedule()
    engine.submit(wl("a1", "qa", CPU=3, created=1))
    engine.submit(wl("b1", "qb", CPU=3, created=2))
    assert [d.workload for d in engine.schedule()] == [winner]


def test_fair_preemption_within_the_own_queue() -> None:
    config = (
        ConfigBuilder()
        .cluster_queue(cq("a", 4, "c").preemption(within=WithinClusterQueue.LOWER_PRIORITY), "qa")
        .cluster_queue(cq("b", 4, "c"), "qb")
        .priorities(low=1, high=10)
        .fair_sharing()
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(WorkloadBuilder("low").queue("qa").bundles({"CPU": 4}).priority("low").build())
    engine.submit(wl("b1", "qb", CPU=4))
    engine.schedule()
    engine.submit(
        WorkloadBuilder("high").queue("qa").bundles({"CPU": 4}).priority("high").created(1).build()
    )
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    # b is within its nominal quota (share 0): only a's own lower-priority work may go.
    assert decisions == [(DecisionKind.PREEMPT, "low"), (DecisionKind.ADMIT, "high")]


@pytest.mark.parametrize("strategy", [LT_INITIAL, LTE_FINAL])
def test_own_queue_preemption_does_not_borrow_what_a_reclaim_just_freed(
    strategy: FairSharingStrategy,
) -> None:
    # Found by make demo, where the manager hung in this loop, then shrunk by hypothesis:
    # big preempted small inside b and borrowed the 3 GPUs other's eviction had freed;
    # other reclaimed them from b; small reclaimed its nominal GPU from other; big
    # preempted small again... within one schedule() call, forever.
    config = ConfigBuilder().priorities(lo=10, mid=100).fair_sharing(strategy)
    for name, nominal in (("a", 1), ("b", 1), ("c", 2)):
        gpus = flavor("gpu").resource("GPU", nominal)
        config.cluster_queue(
            ClusterQueueBuilder(name)
            .cohort("all")
            .resource_group(gpus)
            .preemption(within=WithinClusterQueue.LOWER_PRIORITY, reclaim=ReclaimWithinCohort.ANY),
            name,
        )
    engine, _ = new_engine(config.build())
    for at, (workload, queue, gpu, priority) in enumerate(
        [("small", "b", 1, "lo"), ("big", "b", 4, "mid"), ("other", "c", 4, "lo")]
    ):
        engine.submit(
            WorkloadBuilder(workload)
            .queue(queue)
            .bundles({"GPU": gpu})
            .priority(priority)
            .created(at)
            .build()
        )
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    # other goes first (c borrows less with it than b would with big); small, within its
    # nominal GPU, reclaims it. big may not then evict small and borrow the rest: its own
    # work is no licence to borrow more (fair sharing would let c reclaim it at once).
    assert decisions == [
        (DecisionKind.ADMIT, "other"),
        (DecisionKind.PREEMPT, "other"),
        (DecisionKind.ADMIT, "small"),
    ]
    assert admitted(engine) == {"small"}
    assert engine.schedule() == []


@pytest.mark.parametrize(
    ("weight_b", "victim"),
    [
        # b borrows 1 with weight 0: infinite share, so b is preempted first.
        pytest.param(0.0, "b1", id="weight-0-goes-first"),
        # b's weight 2 makes its share 1/8/2 = 0.0625 < d's 0.125: d goes first.
        pytest.param(2.0, "d1", id="higher-share-goes-first"),
    ],
)
def test_fair_preemption_takes_from_the_highest_share_first(weight_b: float, victim: str) -> None:
    config = (
        ConfigBuilder()
        .cluster_queue(cq("a", 4, "c").preemption(reclaim=ReclaimWithinCohort.ANY), "qa")
        .cluster_queue(cq("b", 2, "c").weight(weight_b), "qb")
        .cluster_queue(cq("d", 2, "c"), "qd")
        .fair_sharing()
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("b1", "qb", CPU=3))
    engine.submit(wl("d1", "qd", CPU=3))
    engine.schedule()
    assert admitted(engine) == {"b1", "d1"}
    # a wants 4 of its own 4; 2 are free. One victim of 3 is enough.
    engine.submit(wl("a1", "qa", CPU=4, created=1))
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    assert decisions == [(DecisionKind.PREEMPT, victim), (DecisionKind.ADMIT, "a1")]


def test_a_workload_preempted_in_a_call_does_not_preempt_in_it() -> None:
    # Found by 10,000 random examples of test_preemption_never_goes_round_in_circles: big
    # preempted its own queue's low work (a borrowing no larger than before); other, with
    # the lower share, reclaimed from big; then low, back within a's nominal quota,
    # reclaimed other: big -> low -> other -> big, a cycle of evictions in one call.
    config = ConfigBuilder().priorities(low=1, high=10).fair_sharing(LTE_FINAL, LT_INITIAL)
    for name, nominal in (("a", 3), ("b", 2), ("c", 2)):
        config.cluster_queue(
            cq(name, nominal, "all").preemption(
                within=WithinClusterQueue.LOWER_PRIORITY, reclaim=ReclaimWithinCohort.ANY
            ),
            name,
        )
    engine, _ = new_engine(config.build())

    def submit(workload: str, queue: str, cpu: int, priority: str, at: float) -> None:
        spec = WorkloadBuilder(workload).queue(queue).bundles({"CPU": cpu}).priority(priority)
        engine.submit(spec.created(at).build())

    for i, (queue, cpu, priority) in enumerate(
        [("a", 1, "high")] * 2 + [("a", 1, "low")] * 3 + [("b", 1, "high")] * 2
    ):
        submit(f"w{i}", queue, cpu, priority, i)
    submit("other", "c", 3, "high", 7)
    engine.schedule()
    # a runs 5 (two high, three low), b 2; other was reclaimed by a's low work.
    assert admitted(engine) == {f"w{i}" for i in range(7)}
    submit("big", "a", 3, "high", 8)
    decisions = [(d.kind.value, d.workload, d.preemptor) for d in engine.schedule()]
    # Since the fair-sharing victim search follows Kueue's (shares with the preemptor
    # counted in), other no longer reclaims from big: its share with it, 1/7, is not
    # below a's once big or w1 is gone, so the cycle cannot start here; the rule that
    # broke it still holds: w2, preempted just now, does not preempt in this call.
    assert decisions == [
        ("preempt", "w4", "big"),
        ("preempt", "w3", "big"),
        ("preempt", "w2", "big"),
        ("admit", "big", None),
    ]
    assert "preempted just now" in engine.workload(WorkloadId("w2")).message
    assert engine.schedule() == []
