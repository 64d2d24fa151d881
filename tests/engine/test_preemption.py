"""Classical preemption (fair sharing off): who may be preempted, and the smallest set.

Covers withinClusterQueue and reclaimWithinCohort with each policy, borrowWithinCohort
with maxPriorityThreshold, the minimal victim set, preemption that would not make room,
and the absence of preemption cycles. Priorities: low=1, mid=5, high=10. Flavor
"default", CPU, whole CPUs.
"""

from __future__ import annotations

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import (
    BorrowWithinCohortPolicy,
    ReclaimWithinCohort,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.engine import ROUND_SLACK, ROUNDS_PER_WORKLOAD, Engine
from ray_queue.engine.model import Decision, DecisionKind, WorkloadId, WorkloadState
from tests.engine.builders import (
    ClusterQueueBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    admitted,
    flavor,
    flavor_of,
    new_engine,
    state,
    used,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState
W = WithinClusterQueue
R = ReclaimWithinCohort


def cq(name: str, nominal: float, cohort: str | None = None) -> ClusterQueueBuilder:
    return (
        ClusterQueueBuilder(name)
        .cohort(cohort)
        .resource_group(flavor("default").resource("CPU", nominal))
    )


def config(*cqs: ClusterQueueBuilder) -> ConfigBuilder:
    builder = ConfigBuilder().priorities(low=1, mid=5, high=10)
    for c in cqs:
        builder.cluster_queue(c, "q" + c.name)
    return builder


def run(
    engine: Engine, workload: str, cq_name: str, cpu: float, priority: str, created: float
) -> list[tuple[DecisionKind, str]]:
    """Submit one workload and schedule; return (kind, workload) of the decisions."""
    engine.submit(
        WorkloadBuilder(workload)
        .queue("q" + cq_name)
        .bundles({"CPU": cpu})
        .priority(priority)
        .created(created)
        .build()
    )
    return [(d.kind, d.workload) for d in engine.schedule()]


PREEMPT = DecisionKind.PREEMPT
ADMIT = DecisionKind.ADMIT


# -- withinClusterQueue -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "victim", "preemptor", "preempts"),
    [
        # (priority, created) of the running victim and of the pending preemptor.
        pytest.param(W.NEVER, ("low", 5), ("high", 1), False, id="never"),
        pytest.param(W.LOWER_PRIORITY, ("low", 5), ("high", 1), True, id="lower-lower"),
        pytest.param(W.LOWER_PRIORITY, ("mid", 5), ("mid", 1), False, id="lower-equal"),
        pytest.param(W.LOWER_PRIORITY, ("high", 5), ("mid", 1), False, id="lower-higher"),
        pytest.param(
            W.LOWER_OR_NEWER_EQUAL_PRIORITY, ("low", 0), ("high", 1), True, id="newer-equal-lower"
        ),
        # Equal priority and the victim was created after the preemptor: preempted.
        pytest.param(
            W.LOWER_OR_NEWER_EQUAL_PRIORITY,
            ("mid", 5),
            ("mid", 1),
            True,
            id="newer-equal-newer-victim",
        ),
        # Equal priority and the victim is older: it keeps running.
        pytest.param(
            W.LOWER_OR_NEWER_EQUAL_PRIORITY,
            ("mid", 0),
            ("mid", 1),
            False,
            id="newer-equal-older-victim",
        ),
        pytest.param(
            W.LOWER_OR_NEWER_EQUAL_PRIORITY, ("high", 5), ("mid", 1), False, id="newer-equal-higher"
        ),
    ],
)
def test_within_cluster_queue(
    policy: WithinClusterQueue,
    victim: tuple[str, float],
    preemptor: tuple[str, float],
    preempts: bool,
) -> None:
    engine, _ = new_engine(config(cq("a", 4).preemption(within=policy)).build())
    assert run(engine, "victim", "a", 4, *victim) == [(ADMIT, "victim")]
    decisions = run(engine, "preemptor", "a", 4, *preemptor)
    if preempts:
        assert decisions == [(PREEMPT, "victim"), (ADMIT, "preemptor")]
        assert state(engine, "victim") is S.PENDING
    else:
        assert decisions == []
        assert state(engine, "victim") is S.ADMITTED
        assert state(engine, "preemptor") is S.PENDING


def test_a_preempted_workload_is_requeued_at_once_with_a_recorded_reason() -> None:
    engine, _ = new_engine(config(cq("a", 4).preemption(within=W.LOWER_PRIORITY)).build())
    run(engine, "victim", "a", 4, "low", 0)
    engine.submit(
        WorkloadBuilder("preemptor").queue("qa").bundles({"CPU": 4}).priority("high").build()
    )
    decisions = engine.schedule()
    preempt = decisions[0]
    assert (preempt.kind, preempt.workload, preempt.preemptor) == (PREEMPT, "victim", "preemptor")
    assert preempt.reason == "Preempted"
    status = engine.workload(WorkloadId("victim"))
    assert status.state is S.PENDING
    assert status.requeue_at is None  # no back-off for preemption
    edges = [(t.from_state, t.to_state, t.reason) for t in status.history]
    assert (S.ADMITTED, S.EVICTED, "Preempted") in edges
    assert edges[-1][:2] == (S.EVICTED, S.PENDING)
    assert [p.workload for p in engine.pending()] == ["victim"]


def test_minimal_set_gives_back_victims_it_did_not_need() -> None:
    engine, _ = new_engine(config(cq("a", 6).preemption(within=W.LOWER_PRIORITY)).build())
    run(engine, "v-low-1cpu", "a", 1, "low", 0)
    run(engine, "v-mid-3cpu", "a", 3, "mid", 1)
    run(engine, "v-mid-2cpu", "a", 2, "mid", 2)
    # Order: lowest priority first, then most recently admitted: v-low-1cpu, v-mid-2cpu,
    # v-mid-3cpu. Taking v-low-1cpu frees 1 (not enough for 2); taking v-mid-2cpu frees
    # 3 (fits). Giving v-low-1cpu back leaves 2 free, still enough: only one victim.
    decisions = run(engine, "p", "a", 2, "high", 3)
    assert decisions == [(PREEMPT, "v-mid-2cpu"), (ADMIT, "p")]
    assert admitted(engine) == {"v-low-1cpu", "v-mid-3cpu", "p"}


def test_minimal_set_takes_several_when_one_is_not_enough() -> None:
    engine, _ = new_engine(config(cq("a", 6).preemption(within=W.LOWER_PRIORITY)).build())
    run(engine, "v1", "a", 2, "low", 0)
    run(engine, "v2", "a", 2, "low", 1)
    run(engine, "v3", "a", 2, "low", 2)
    # Most recently admitted first: v3 then v2 frees 4.
    decisions = run(engine, "p", "a", 4, "high", 3)
    assert sorted(decisions) == sorted([(PREEMPT, "v3"), (PREEMPT, "v2"), (ADMIT, "p")])
    assert decisions[-1] == (ADMIT, "p")
    assert admitted(engine) == {"v1", "p"}


def test_no_preemption_when_it_would_not_make_room() -> None:
    engine, _ = new_engine(config(cq("a", 4).preemption(within=W.LOWER_PRIORITY)).build())
    run(engine, "low", "a", 2, "low", 0)
    run(engine, "peer", "a", 2, "high", 1)
    # Only "low" may be preempted and it frees 2 of the 4 needed: evict nobody.
    assert run(engine, "p", "a", 4, "high", 2) == []
    assert admitted(engine) == {"low", "peer"}
    message = engine.workload(WorkloadId("p")).message
    assert "CPU" in message and "default" in message, message


# -- reclaimWithinCohort ----------------------------------------------------------------


def borrowing_b(reclaim: ReclaimWithinCohort, b_priority: str) -> Engine:
    """a: 4, b: 4 in cohort c. b runs b1 (own 4) then b2 (4 borrowed from a)."""
    engine, _ = new_engine(
        config(cq("a", 4, "c").preemption(reclaim=reclaim), cq("b", 4, "c")).build()
    )
    run(engine, "b1", "b", 4, b_priority, 0)
    run(engine, "b2", "b", 4, b_priority, 1)
    assert admitted(engine) == {"b1", "b2"}
    return engine


@pytest.mark.parametrize(
    ("reclaim", "b_priority", "reclaimed"),
    [
        pytest.param(R.NEVER, "low", False, id="never"),
        pytest.param(R.LOWER_PRIORITY, "low", True, id="lower-priority-lower"),
        pytest.param(R.LOWER_PRIORITY, "mid", False, id="lower-priority-equal"),
        pytest.param(R.LOWER_PRIORITY, "high", False, id="lower-priority-higher"),
        pytest.param(R.ANY, "high", True, id="any-even-higher"),
    ],
)
def test_reclaim_within_cohort(
    reclaim: ReclaimWithinCohort, b_priority: str, reclaimed: bool
) -> None:
    engine = borrowing_b(reclaim, b_priority)
    decisions = run(engine, "a1", "a", 4, "mid", 2)
    if reclaimed:
        # b2 was admitted last, so it goes; b1 runs on within b's own quota.
        assert decisions == [(PREEMPT, "b2"), (ADMIT, "a1")]
        assert admitted(engine) == {"b1", "a1"}
    else:
        assert decisions == []
        assert state(engine, "a1") is S.PENDING
    assert engine.schedule() == []


def test_reclaim_prefers_other_queues_then_lower_priority_and_gives_back() -> None:
    # a: 6, b: 2, cohort 8. b runs b-small (1, low) and b-big (5, mid): borrowing 4.
    engine, _ = new_engine(
        config(
            cq("a", 6, "c").preemption(within=W.LOWER_PRIORITY, reclaim=R.ANY), cq("b", 2, "c")
        ).build()
    )
    run(engine, "b-big", "b", 5, "mid", 0)
    run(engine, "b-small", "b", 1, "low", 1)
    run(engine, "a-low", "a", 1, "low", 2)
    # a-big wants 5 (a stays within its nominal 6). Free: 8 - 7 = 1. Candidates: b's first (other
    # queue), lower priority first: b-small (frees 1 -> 2), b-big (frees 5 -> 7, fits).
    # Giving b-small back leaves 6 free: still fits. a-low is never needed.
    decisions = run(engine, "a-big", "a", 5, "high", 3)
    assert decisions == [(PREEMPT, "b-big"), (ADMIT, "a-big")]
    assert admitted(engine) == {"b-small", "a-low", "a-big"}


def test_only_work_on_the_short_resource_is_a_candidate() -> None:
    def gpu_cq(name: str) -> ClusterQueueBuilder:
        return (
            ClusterQueueBuilder(name)
            .cohort("c")
            .resource_group(flavor("default").resource("CPU", 4).resource("GPU", 4))
        )

    engine, _ = new_engine(config(gpu_cq("a").preemption(reclaim=R.ANY), gpu_cq("b")).build())
    engine.submit(WorkloadBuilder("b-gpu").queue("qb").bundles({"GPU": 6}).priority("low").build())
    engine.schedule()
    engine.submit(
        WorkloadBuilder("b-cpu").queue("qb").bundles({"CPU": 6}).priority("low").created(1).build()
    )
    engine.schedule()
    # b borrows 2 CPU and 2 GPU. a wants 4 GPU (2 free): only b-gpu uses GPU, so b-cpu,
    # though admitted more recently, is not even considered.
    engine.submit(
        WorkloadBuilder("a1").queue("qa").bundles({"GPU": 4}).priority("high").created(2).build()
    )
    decisions = [(d.kind, d.workload) for d in engine.schedule()]
    assert decisions == [(PREEMPT, "b-gpu"), (ADMIT, "a1")]
    assert admitted(engine) == {"b-cpu", "a1"}


def test_a_queue_that_would_borrow_cannot_reclaim() -> None:
    # a: 4, b: 4. a runs 2, b runs 6 (borrowing 2). a asks for 4 more -> a would hold 6,
    # above its nominal 4: reclaim is only for getting back to nominal, so nothing moves.
    engine, _ = new_engine(
        config(cq("a", 4, "c").preemption(reclaim=R.ANY), cq("b", 4, "c")).build()
    )
    run(engine, "a0", "a", 2, "low", 0)
    run(engine, "b1", "b", 6, "low", 1)
    assert run(engine, "a1", "a", 4, "high", 2) == []
    assert admitted(engine) == {"a0", "b1"}


@pytest.mark.parametrize(
    "borrow_within", [BorrowWithinCohortPolicy.NEVER, BorrowWithinCohortPolicy.LOWER_PRIORITY]
)
def test_own_queue_victims_let_the_preemptor_borrow_only_with_borrow_within_cohort(
    borrow_within: BorrowWithinCohortPolicy,
) -> None:
    # a: 2, b: 4. a-low borrowed 2 of b's. a-high (4) is larger than a's nominal quota and
    # the cohort is full, so as in Kueue (fitsResourceQuota) it may preempt only when
    # borrowWithinCohort allows preempting while borrowing; then it replaces a-low,
    # borrowing the same.
    a = cq("a", 2, "c").preemption(
        within=W.LOWER_PRIORITY, reclaim=R.LOWER_PRIORITY, borrow_within=borrow_within
    )
    engine, _ = new_engine(config(a, cq("b", 4, "c")).build())
    run(engine, "a-low", "a", 4, "low", 0)
    run(engine, "b1", "b", 2, "low", 1)
    decisions = run(engine, "a-high", "a", 4, "high", 2)
    if borrow_within is BorrowWithinCohortPolicy.NEVER:
        assert decisions == []
    else:
        assert decisions == [(PREEMPT, "a-low"), (ADMIT, "a-high")]
    assert used(engine, "a", "default", "CPU") == 4


# -- borrowWithinCohort ------------------------------------------------------------------


def borrow_within(
    policy: BorrowWithinCohortPolicy, threshold: int | None, b_priority: str
) -> Engine:
    """a: 2, b: 2, d: 4 (cohort 8). a runs a0 (2, at nominal); b runs b1 (4, borrowing
    2 of d's); d runs d1 (2). Nothing is free."""
    a = cq("a", 2, "c").preemption(
        reclaim=R.ANY, borrow_within=policy, max_priority_threshold=threshold
    )
    engine, _ = new_engine(config(a, cq("b", 2, "c"), cq("d", 4, "c")).build())
    run(engine, "a0", "a", 2, "low", 0)
    run(engine, "b1", "b", 4, b_priority, 1)
    run(engine, "d1", "d", 2, "low", 2)
    assert admitted(engine) == {"a0", "b1", "d1"}
    return engine


BWC = BorrowWithinCohortPolicy


@pytest.mark.parametrize(
    ("policy", "threshold", "b_priority", "preempts"),
    [
        # a would borrow (2 + 2 > 2): without borrowWithinCohort only own victims count.
        pytest.param(BWC.NEVER, None, "low", False, id="never"),
        pytest.param(BWC.LOWER_PRIORITY, None, "low", True, id="lower-priority-no-threshold"),
        # b1 has priority 1: above a threshold of 0, at a threshold of 1.
        pytest.param(BWC.LOWER_PRIORITY, 0, "low", False, id="above-threshold"),
        pytest.param(BWC.LOWER_PRIORITY, 1, "low", True, id="at-threshold"),
        # Never a victim of equal or higher priority while borrowing.
        pytest.param(BWC.LOWER_PRIORITY, None, "high", False, id="equal-priority"),
    ],
)
def test_borrow_within_cohort(
    policy: BorrowWithinCohortPolicy, threshold: int | None, b_priority: str, preempts: bool
) -> None:
    engine = borrow_within(policy, threshold, b_priority)
    decisions = run(engine, "a1", "a", 2, "high", 3)
    if preempts:
        assert decisions == [(PREEMPT, "b1"), (ADMIT, "a1")]
        assert used(engine, "a", "default", "CPU") == 4  # borrowing 2
    else:
        assert decisions == []
        assert admitted(engine) == {"a0", "b1", "d1"}


# -- no cycles -------------------------------------------------------------------------------


def test_two_queues_do_not_take_quota_back_and_forth() -> None:
    # Both may reclaim Any. a reclaims its nominal from b; b, now within its own
    # nominal with nothing borrowed by a, has nothing it may take back.
    engine, _ = new_engine(
        config(
            cq("a", 4, "c").preemption(reclaim=R.ANY, within=W.LOWER_PRIORITY),
            cq("b", 4, "c").preemption(reclaim=R.ANY, within=W.LOWER_PRIORITY),
        ).build()
    )
    run(engine, "b1", "b", 4, "high", 0)
    run(engine, "b2", "b", 4, "high", 1)
    decisions = run(engine, "a1", "a", 4, "low", 2)
    assert decisions == [(PREEMPT, "b2"), (ADMIT, "a1")]
    # b2 is pending again in b, which is at nominal; a is not borrowing: nothing to do.
    assert engine.schedule() == []
    assert state(engine, "b2") is S.PENDING
    assert admitted(engine) == {"b1", "a1"}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # Equal priority: reclaiming a1 would let a2 borrow, which borrowWithinCohort
        # allows only past victims of lower priority. a2 waits (it looped before).
        pytest.param("mid", "mid", [], id="equal-priority-waits"),
        # Higher: a2 reclaims and borrows; a1, now lower, may not borrow past a2.
        pytest.param("low", "high", [(PREEMPT, "a1"), (ADMIT, "a2")], id="higher-takes-once"),
    ],
)
def test_queues_that_borrow_while_reclaiming_do_not_take_quota_back_and_forth(
    first: str, second: str, expected: list[tuple[DecisionKind, str]]
) -> None:
    # Found by test_borrowing_and_reclaiming_never_go_round_in_circles: each queue is
    # under nominal, so it may reclaim what the other borrows, and borrowWithinCohort
    # let it borrow that very quota, so schedule() never returned.
    def borrower(name: str) -> ClusterQueueBuilder:
        return cq(name, 1, "c").preemption(
            within=W.LOWER_PRIORITY, reclaim=R.ANY, borrow_within=BWC.LOWER_PRIORITY
        )

    engine, _ = new_engine(config(borrower("x"), borrower("y")).build())
    assert run(engine, "a1", "x", 2, first, 0) == [(ADMIT, "a1")]
    assert run(engine, "a2", "y", 2, second, 1) == expected
    assert engine.schedule() == []


class LoopingEngine(Engine):
    """A fake bug (no real loop is known to remain): every round says its ClusterQueues
    changed, so without the round limit ``schedule()`` would never end."""

    def _round(self, cluster_queues: set[str], decisions: list[Decision]) -> set[str]:
        super()._round(cluster_queues, decisions)
        return set(cluster_queues)


def test_a_call_that_goes_round_in_circles_is_cut_short_and_goes_on_next_call() -> None:
    engine = LoopingEngine(config(cq("a", 4)).build(), ManualClock(0.0))
    engine.submit(WorkloadBuilder("w1").queue("qa").bundles({"CPU": 2}).build())
    decisions = engine.schedule()
    assert [(d.kind, d.workload) for d in decisions] == [(ADMIT, "w1")]
    assert engine.cut_short is not None
    assert engine.cut_short.rounds == ROUNDS_PER_WORKLOAD * 1 + ROUND_SLACK
    assert engine.cut_short.last_decisions == tuple(decisions)
    # What was left is the next call's: a second workload is admitted there.
    engine.submit(WorkloadBuilder("w2").queue("qa").bundles({"CPU": 2}).created(1).build())
    assert [(d.kind, d.workload) for d in engine.schedule()] == [(ADMIT, "w2")]
    # A sound call is not cut short.
    sound = Engine(config(cq("a", 4)).build(), ManualClock(0.0))
    sound.submit(WorkloadBuilder("w1").queue("qa").bundles({"CPU": 2}).build())
    sound.schedule()
    assert sound.cut_short is None


def test_equal_priority_newer_work_is_replaced_once_and_not_back() -> None:
    engine, _ = new_engine(
        config(cq("a", 4).preemption(within=W.LOWER_OR_NEWER_EQUAL_PRIORITY)).build()
    )
    assert run(engine, "newer", "a", 4, "mid", 5) == [(ADMIT, "newer")]
    # "older" (created 1) preempts "newer" (created 5). Requeued, "newer" may not take
    # the quota back: "older" is not newer than it.
    assert run(engine, "older", "a", 4, "mid", 1) == [(PREEMPT, "newer"), (ADMIT, "older")]
    assert engine.schedule() == []
    assert state(engine, "newer") is S.PENDING


def test_quota_reserved_work_can_be_preempted_too() -> None:
    a = cq("a", 4).preemption(within=W.LOWER_PRIORITY).admission_check("prov")
    engine, _ = new_engine(config(a).admission_check("prov").build())
    assert run(engine, "low", "a", 4, "low", 0) == [(DecisionKind.RESERVE, "low")]
    decisions = run(engine, "high", "a", 4, "high", 1)
    assert decisions == [(PREEMPT, "low"), (DecisionKind.RESERVE, "high")]
    status = engine.workload(WorkloadId("low"))
    assert status.state is S.PENDING
    assert status.checks == {}
    assert (S.QUOTA_RESERVED, S.EVICTED) in [(t.from_state, t.to_state) for t in status.history]


def test_preemption_picks_the_flavor_that_needs_it() -> None:
    def two_flavors(when_can_preempt: WhenCanPreempt) -> ClusterQueueBuilder:
        return (
            ClusterQueueBuilder("a")
            .resource_group(flavor("f1").resource("CPU", 4), flavor("f2").resource("CPU", 4))
            .preemption(within=W.LOWER_PRIORITY)
            .fungibility(when_can_preempt=when_can_preempt)
        )

    engine, _ = new_engine(config(two_flavors(WhenCanPreempt.TRY_NEXT_FLAVOR)).build())
    run(engine, "on-f1", "a", 4, "low", 0)
    run(engine, "on-f2", "a", 4, "low", 1)
    assert (flavor_of(engine, "on-f1", "CPU"), flavor_of(engine, "on-f2", "CPU")) == ("f1", "f2")
    # Preempt stops at f1, so only the work on f1 is a candidate.
    engine.apply_config(config(two_flavors(WhenCanPreempt.PREEMPT)).build())
    decisions = run(engine, "high", "a", 4, "high", 2)
    assert decisions == [(PREEMPT, "on-f1"), (ADMIT, "high")]
    assert flavor_of(engine, "high", "CPU") == "f1"


# -- Kueue's pace (benchmarks.engine --pace kueue) ----------------------------------------


def kinds(decisions: list[Decision]) -> list[tuple[DecisionKind, str]]:
    return [(d.kind, d.workload) for d in decisions]


def test_at_kueues_pace_one_head_per_cluster_queue_is_admitted_per_call() -> None:
    engine = Engine(config(cq("a", 4)).build(), ManualClock(0.0))
    for i in range(3):
        engine.submit(WorkloadBuilder(f"w{i}").queue("qa").bundles({"CPU": 1}).created(i).build())
    assert kinds(engine.schedule(kueue_pace=True)) == [(ADMIT, "w0")]
    assert engine.more_rounds_due
    assert kinds(engine.schedule(kueue_pace=True)) == [(ADMIT, "w1")]
    assert kinds(engine.schedule(kueue_pace=True)) == [(ADMIT, "w2")]
    # The round after the last admission finds nothing left.
    assert engine.more_rounds_due
    assert engine.schedule(kueue_pace=True) == []
    assert not engine.more_rounds_due


def test_at_kueues_pace_a_preemptor_waits_a_call_for_its_victims_and_keeps_their_quota() -> None:
    """Kueue evicts in one cycle and admits the preemptor in a later one; the quota its
    victims free is not handed to another head of the same round meanwhile."""
    engine = Engine(
        config(
            cq("a", 4, "co").preemption(within=W.LOWER_PRIORITY),
            cq("b", 0, "co"),
        ).build(),
        ManualClock(0.0),
    )
    assert run(engine, "low", "a", 4, "low", 0) == [(ADMIT, "low")]
    engine.submit(
        WorkloadBuilder("high").queue("qa").bundles({"CPU": 4}).priority("high").created(1).build()
    )
    engine.submit(
        WorkloadBuilder("b1").queue("qb").bundles({"CPU": 4}).priority("high").created(1).build()
    )
    assert kinds(engine.schedule(kueue_pace=True)) == [(PREEMPT, "low")]
    assert engine.state(WorkloadId("high")) is S.PENDING
    assert engine.state(WorkloadId("b1")) is S.PENDING
    assert kinds(engine.schedule(kueue_pace=True)) == [(ADMIT, "high")]
    # At our own pace the same preemption admits in the same call.
    ours = Engine(config(cq("a", 4).preemption(within=W.LOWER_PRIORITY)).build(), ManualClock(0.0))
    assert run(ours, "low", "a", 4, "low", 0) == [(ADMIT, "low")]
    assert run(ours, "high", "a", 4, "high", 1) == [(PREEMPT, "low"), (ADMIT, "high")]
