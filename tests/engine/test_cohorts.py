"""Cohorts in the scheduling cycle: borrowing, borrowingLimit, lendingLimit, nested
cohorts with their own quota, and the non-borrowing-first order of heads.

No preemption is configured here (Kueue's default), so every outcome is about who may
take unused quota, worked out by hand from the quota-tree formulas.
"""

from __future__ import annotations

import pytest

from ray_queue.engine.errors import WorkloadRejected
from ray_queue.engine.model import WorkloadId, WorkloadState
from tests.engine.builders import (
    ClusterQueueBuilder,
    CohortBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    admitted,
    cohort_used,
    flavor,
    new_engine,
    state,
    used,
    wl,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState


def cq(
    name: str,
    nominal: float,
    cohort: str | None,
    *,
    bl: float | None = None,
    ll: float | None = None,
) -> ClusterQueueBuilder:
    return (
        ClusterQueueBuilder(name)
        .cohort(cohort)
        .resource_group(
            flavor("default").resource("CPU", nominal, borrowing_limit=bl, lending_limit=ll)
        )
    )


def pair(a: ClusterQueueBuilder, b: ClusterQueueBuilder) -> ConfigBuilder:
    return ConfigBuilder().cluster_queue(a, "qa").cluster_queue(b, "qb")


def test_unused_quota_is_borrowed_and_reported() -> None:
    engine, _ = new_engine(pair(cq("a", 4, "c"), cq("b", 4, "c")).build())
    engine.submit(wl("a1", "qa", CPU=6))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    status = {s.name: s for s in engine.cluster_queue_status()}
    (res,) = status["a"].resources
    assert (res.usage, res.borrowed) == (6000, 2000)
    assert status["a"].cohort == "c"
    # b now has 8 - 6 = 2 available: 3 waits (no preemption configured), 2 fits.
    engine.submit(wl("b1", "qb", CPU=3, created=1))
    engine.submit(wl("b2", "qb", CPU=2, created=2))
    engine.schedule()
    assert state(engine, "b1") is S.PENDING
    assert state(engine, "b2") is S.ADMITTED
    assert cohort_used(engine, "c", "default", "CPU") == 8


def test_queues_in_different_cohorts_or_none_do_not_share() -> None:
    config = (
        ConfigBuilder()
        .cluster_queue(cq("a", 4, "c1"), "qa")
        .cluster_queue(cq("b", 4, "c2"), "qb")
        .cluster_queue(cq("solo", 4, None), "qs")
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a1", "qa", CPU=4))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    engine.submit(wl("b1", "qb", CPU=4, created=1))
    engine.submit(wl("s1", "qs", CPU=4, created=2))
    engine.schedule()
    assert admitted(engine) == {"a1", "b1", "s1"}
    for name in ("a", "b", "solo"):
        node = engine.tree.cluster_queues[name]
        assert engine.tree.potential_available(node, ("default", "CPU")) == 4000


@pytest.mark.parametrize(
    ("bl", "second_state"),
    [
        pytest.param(None, S.ADMITTED, id="no-limit-borrows-4"),
        # a may hold at most 4 + 1 = 5: the second 3 would make 6.
        pytest.param(1, S.PENDING, id="limit-1-caps-at-5"),
        pytest.param(2, S.ADMITTED, id="limit-2-allows-6"),
    ],
)
def test_borrowing_limit(bl: float | None, second_state: S) -> None:
    engine, _ = new_engine(pair(cq("a", 4, "c", bl=bl), cq("b", 4, "c")).build())
    engine.submit(wl("a1", "qa", CPU=3))
    engine.submit(wl("a2", "qa", CPU=3, created=1))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    assert state(engine, "a2") is second_state


def test_borrowing_limit_rejects_what_could_never_fit() -> None:
    engine, _ = new_engine(pair(cq("a", 4, "c", bl=1), cq("b", 4, "c")).build())
    with pytest.raises(WorkloadRejected):
        engine.submit(wl("a1", "qa", CPU=6))
    engine.submit(wl("a2", "qa", CPU=5))
    engine.schedule()
    assert state(engine, "a2") is S.ADMITTED


def test_lending_limit_caps_what_others_can_ever_borrow() -> None:
    # a: nominal 4, lendingLimit 1 -> guaranteed 3. subtree(c) = 1 + 4 = 5, all b can get.
    engine, _ = new_engine(pair(cq("a", 4, "c", ll=1), cq("b", 4, "c")).build())
    with pytest.raises(WorkloadRejected):
        engine.submit(wl("b1", "qb", CPU=6))
    assert engine.workloads() == []


def test_a_borrower_takes_only_what_is_lent() -> None:
    engine, _ = new_engine(pair(cq("a", 4, "c", ll=1), cq("b", 4, "c")).build())
    engine.submit(wl("b1", "qb", CPU=5))
    engine.schedule()
    assert state(engine, "b1") is S.ADMITTED
    assert cohort_used(engine, "c", "default", "CPU") == 5
    # a still has its guaranteed 3 even though b borrowed everything lendable.
    engine.submit(wl("a1", "qa", CPU=3, created=1))
    engine.submit(wl("a2", "qa", CPU=1, created=2))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    assert state(engine, "a2") is S.PENDING
    assert used(engine, "a", "default", "CPU") == 3
    # a's guaranteed usage stays out of the cohort.
    assert cohort_used(engine, "c", "default", "CPU") == 5


def test_a_cohort_with_its_own_quota_lends_it_to_members() -> None:
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org").resource_group(flavor("default").resource("CPU", 4)))
        .cluster_queue(cq("a", 2, "org"), "qa")
        .cluster_queue(cq("b", 2, "org"), "qb")
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a1", "qa", CPU=6))
    engine.submit(wl("b1", "qb", CPU=2, created=1))
    engine.schedule()
    # subtree(org) = 4 + 2 + 2 = 8: a borrows org's 4, and b still has room for its own 2.
    assert admitted(engine) == {"a1", "b1"}
    assert cohort_used(engine, "org", "default", "CPU") == 8


def test_nested_cohorts_share_through_the_common_root() -> None:
    # org (own 2) ─┬─ team1 ── a (2)
    #              └─ team2 ── b (2)
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org").resource_group(flavor("default").resource("CPU", 2)))
        .cohort(CohortBuilder("team1").parent("org"))
        .cohort(CohortBuilder("team2").parent("org"))
        .cluster_queue(cq("a", 2, "team1"), "qa")
        .cluster_queue(cq("b", 2, "team2"), "qb")
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("a1", "qa", CPU=5))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    assert cohort_used(engine, "team1", "default", "CPU") == 5
    assert cohort_used(engine, "team2", "default", "CPU") == 0
    assert cohort_used(engine, "org", "default", "CPU") == 5
    engine.submit(wl("b1", "qb", CPU=2, created=1))
    engine.schedule()
    assert state(engine, "b1") is S.PENDING  # 6 - 5 = 1 left in the whole tree
    engine.finish(WorkloadId("a1"))
    engine.schedule()
    assert state(engine, "b1") is S.ADMITTED


def test_a_nested_cohort_lending_limit_protects_its_members() -> None:
    # org (0) ─┬─ team (own 2, lendingLimit 0) ── a (2, lendingLimit 0)
    #          └─ b (2)
    team = (
        CohortBuilder("team")
        .parent("org")
        .resource_group(flavor("default").resource("CPU", 2, lending_limit=0))
    )
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org"))
        .cohort(team)
        .cluster_queue(cq("a", 2, "team", ll=0), "qa")
        .cluster_queue(cq("b", 2, "org"), "qb")
        .build()
    )
    engine, _ = new_engine(config)
    # team lends nothing: b can never get more than its own 2.
    b = engine.tree.cluster_queues["b"]
    assert engine.tree.potential_available(b, ("default", "CPU")) == 2000
    # a: own 2 guaranteed + team's 2 guaranteed + org's 2 (b's) = 6.
    engine.submit(wl("a1", "qa", CPU=6))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED
    assert cohort_used(engine, "org", "default", "CPU") == 2


def test_non_borrowing_heads_go_before_borrowing_ones() -> None:
    engine, _ = new_engine(
        pair(cq("a", 4, "c"), cq("b", 4, "c")).priorities(low=1, high=10).build()
    )
    engine.submit(wl("a0", "qa", CPU=4))
    engine.schedule()
    # Both heads want the same 4 free CPUs. a2 is older and higher priority but would
    # borrow; b1 stays within b's nominal quota, so b1 is considered first.
    engine.submit(WorkloadBuilder("a2").queue("qa").bundles({"CPU": 4}).priority("high").build())
    engine.submit(
        WorkloadBuilder("b1").queue("qb").bundles({"CPU": 4}).priority("low").created(5).build()
    )
    decisions = engine.schedule()
    assert [d.workload for d in decisions] == ["b1"]
    assert state(engine, "a2") is S.PENDING


def test_among_borrowing_heads_priority_then_age_decides() -> None:
    config = (
        ConfigBuilder()
        .cluster_queue(cq("a", 0, "c"), "qa")
        .cluster_queue(cq("b", 0, "c"), "qb")
        .cohort(CohortBuilder("c").resource_group(flavor("default").resource("CPU", 4)))
        .priorities(low=1, high=10)
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(WorkloadBuilder("a1").queue("qa").bundles({"CPU": 4}).priority("low").build())
    engine.submit(
        WorkloadBuilder("b1").queue("qb").bundles({"CPU": 4}).priority("high").created(9).build()
    )
    assert [d.workload for d in engine.schedule()] == ["b1"]
