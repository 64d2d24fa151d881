"""The quota tree's formulas: subtree quota, guaranteed quota, usage flow, available.

Every expected number below is worked out by hand from the formulas in
docs/scheduling.md ("Quota tree"), not read back from the engine. Flavor "default",
resource CPU, amounts in whole CPUs unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import WorkloadRejected
from ray_queue.engine.model import WorkloadId, WorkloadState
from tests.engine.builders import (
    ClusterQueueBuilder,
    CohortBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    cohort_used,
    flavor,
    new_engine,
    state,
    used,
    wl,
)

pytestmark = pytest.mark.timeout(30)

FR = ("default", "CPU")


def cq(
    name: str,
    nominal: float,
    cohort: str | None = None,
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


def standalone() -> QueueConfig:
    return ConfigBuilder().cluster_queue(cq("a", 10), "qa").build()


def pooled() -> QueueConfig:
    return (
        ConfigBuilder()
        .cluster_queue(cq("a", 10, "c"), "qa")
        .cluster_queue(cq("b", 6, "c"), "qb")
        .build()
    )


def borrowing_limit() -> QueueConfig:
    return (
        ConfigBuilder()
        .cluster_queue(cq("a", 10, "c", bl=2), "qa")
        .cluster_queue(cq("b", 6, "c"), "qb")
        .build()
    )


def lending_limit() -> QueueConfig:
    return (
        ConfigBuilder()
        .cluster_queue(cq("a", 10, "c", ll=4), "qa")
        .cluster_queue(cq("b", 6, "c"), "qb")
        .build()
    )


def both_limits() -> QueueConfig:
    return (
        ConfigBuilder()
        .cluster_queue(cq("a", 10, "c", bl=1, ll=4), "qa")
        .cluster_queue(cq("b", 6, "c"), "qb")
        .build()
    )


def nested_own_quota() -> QueueConfig:
    # org (root, own 5) ─┬─ team (own 0) ── x (4)
    #                    └─ y (3)
    return (
        ConfigBuilder()
        .cohort(CohortBuilder("org").resource_group(flavor("default").resource("CPU", 5)))
        .cohort(CohortBuilder("team").parent("org"))
        .cluster_queue(cq("x", 4, "team"), "qx")
        .cluster_queue(cq("y", 3, "org"), "qy")
        .build()
    )


def nested_cohort_lending_limit() -> QueueConfig:
    # org (root, 0) ─┬─ team (own 6, lendingLimit 2) ── x (4)
    #                └─ y (3)
    return (
        ConfigBuilder()
        .cohort(CohortBuilder("org"))
        .cohort(
            CohortBuilder("team")
            .parent("org")
            .resource_group(flavor("default").resource("CPU", 6, lending_limit=2))
        )
        .cluster_queue(cq("x", 4, "team"), "qx")
        .cluster_queue(cq("y", 3, "org"), "qy")
        .build()
    )


def nested_cohort_borrowing_limit() -> QueueConfig:
    # org (root, 0) ─┬─ team (own 0, borrowingLimit 1) ── x (4)
    #                └─ y (3)
    return (
        ConfigBuilder()
        .cohort(CohortBuilder("org"))
        .cohort(
            CohortBuilder("team")
            .parent("org")
            .resource_group(flavor("default").resource("CPU", 0, borrowing_limit=1))
        )
        .cluster_queue(cq("x", 4, "team"), "qx")
        .cluster_queue(cq("y", 3, "org"), "qy")
        .build()
    )


# (config, ClusterQueue, available with nothing running, potentialAvailable)
CAPACITY_CASES = [
    # A root: available = subtreeQuota - usage = 10.
    pytest.param(standalone, "a", 10, 10, id="standalone"),
    # subtree(c) = 10 + 6 = 16; a has no guaranteed part, so all of it comes via c.
    pytest.param(pooled, "a", 16, 16, id="pooled-a"),
    pytest.param(pooled, "b", 16, 16, id="pooled-b"),
    # a: min(avail(c)=16, (10 - 0) - 0 + BL 2) = 12.
    pytest.param(borrowing_limit, "a", 12, 12, id="borrowing-limit-caps-a"),
    pytest.param(borrowing_limit, "b", 16, 16, id="borrowing-limit-not-b"),
    # guaranteed(a) = 10 - 4 = 6; subtree(c) = (10 - 6) + 6 = 10.
    # a: local 6 + avail(c) 10 = 16.  b: 0 + 10 = 10 (6 own + the 4 a lends).
    pytest.param(lending_limit, "a", 16, 16, id="lending-limit-a"),
    pytest.param(lending_limit, "b", 10, 10, id="lending-limit-b"),
    # a: local 6 + min(avail(c)=10, (10 - 6) - 0 + BL 1 = 5) = 11.
    pytest.param(both_limits, "a", 11, 11, id="both-limits-a"),
    pytest.param(both_limits, "b", 10, 10, id="both-limits-b"),
    # subtree(team) = 0 + 4 = 4; subtree(org) = 5 + 4 + 3 = 12.
    pytest.param(nested_own_quota, "x", 12, 12, id="nested-own-quota-x"),
    pytest.param(nested_own_quota, "y", 12, 12, id="nested-own-quota-y"),
    # subtree(team) = 6 + 4 = 10, guaranteed(team) = 10 - 2 = 8; subtree(org) = 2 + 3 = 5.
    # x: 0 + (local(team) 8 + avail(org) 5) = 13.  y: 0 + 5.
    pytest.param(nested_cohort_lending_limit, "x", 13, 13, id="cohort-lending-limit-x"),
    pytest.param(nested_cohort_lending_limit, "y", 5, 5, id="cohort-lending-limit-y"),
    # subtree(team) = 4, subtree(org) = 7; team: min(7, 4 - 0 - 0 + 1) = 5.
    pytest.param(nested_cohort_borrowing_limit, "x", 5, 5, id="cohort-borrowing-limit-x"),
    pytest.param(nested_cohort_borrowing_limit, "y", 7, 7, id="cohort-borrowing-limit-y"),
]


@pytest.mark.parametrize(("make", "name", "available", "potential"), CAPACITY_CASES)
def test_available_and_potential_from_the_formulas(
    make: Callable[[], QueueConfig], name: str, available: int, potential: int
) -> None:
    engine, _ = new_engine(make())
    node = engine.tree.cluster_queues[name]
    assert engine.tree.available(node, FR) == available * 1000
    assert engine.tree.potential_available(node, FR) == potential * 1000


@pytest.mark.parametrize(("make", "name", "available", "potential"), CAPACITY_CASES)
def test_a_workload_of_exactly_available_is_admitted_and_one_more_is_not(
    make: Callable[[], QueueConfig], name: str, available: int, potential: int
) -> None:
    config = make()
    queue = "q" + name
    engine, _ = new_engine(config)
    engine.submit(wl("exact", queue, CPU=available))
    engine.schedule()
    assert state(engine, "exact") is WorkloadState.ADMITTED
    assert used(engine, name, "default", "CPU") == available

    fresh, _ = new_engine(config)
    with pytest.raises(WorkloadRejected):
        fresh.submit(wl("too-big", queue, CPU=potential + 0.001))
    assert fresh.workloads() == []


def test_usage_fills_guaranteed_quota_first_and_only_the_rest_reaches_the_cohort() -> None:
    # lending_limit: guaranteed(a) = 6. a runs 4 + 4 = 8: 6 stays local, 2 goes to c.
    engine, _ = new_engine(lending_limit())
    engine.submit(wl("a1", "qa", CPU=4))
    engine.submit(wl("a2", "qa", CPU=4, created=1))
    engine.schedule()
    assert used(engine, "a", "default", "CPU") == 8
    assert cohort_used(engine, "c", "default", "CPU") == 2
    # b: 0 + (subtree(c) 10 - usage(c) 2) = 8, so b may borrow 2 beyond its own 6.
    b = engine.tree.cluster_queues["b"]
    assert engine.tree.available(b, FR) == 8000
    engine.submit(wl("b1", "qb", CPU=8, created=2))
    engine.schedule()
    assert state(engine, "b1") is WorkloadState.ADMITTED
    assert cohort_used(engine, "c", "default", "CPU") == 10
    status = {s.name: s for s in engine.cluster_queue_status()}
    (b_res,) = status["b"].resources
    assert (b_res.usage, b_res.nominal, b_res.borrowed) == (8000, 6000, 2000)
    (a_res,) = status["a"].resources
    assert (a_res.usage, a_res.borrowed, a_res.lending_limit) == (8000, 0, 4000)
    # a is now full: local max(0, 6 - 8) = 0, cohort 10 - 10 = 0.
    assert engine.tree.available(engine.tree.cluster_queues["a"], FR) == 0


def test_removing_usage_takes_back_from_the_cohort_only_what_was_stored_there() -> None:
    engine, _ = new_engine(lending_limit())
    engine.submit(wl("a1", "qa", CPU=4))
    engine.submit(wl("a2", "qa", CPU=4, created=1))
    engine.schedule()
    # storedInParent = 8 - 6 = 2, so finishing 4 removes min(4, 2) = 2 from c.
    engine.finish(WorkloadId("a2"))
    assert used(engine, "a", "default", "CPU") == 4
    assert cohort_used(engine, "c", "default", "CPU") == 0
    engine.finish(WorkloadId("a1"))
    assert used(engine, "a", "default", "CPU") == 0
    assert cohort_used(engine, "c", "default", "CPU") == 0


def test_usage_flows_through_nested_cohorts_with_own_quota() -> None:
    engine, _ = new_engine(nested_own_quota())
    engine.submit(wl("x1", "qx", CPU=10))
    engine.schedule()
    # No lending limits anywhere: every unit of x's usage reaches team and org.
    assert used(engine, "x", "default", "CPU") == 10
    assert cohort_used(engine, "team", "default", "CPU") == 10
    assert cohort_used(engine, "org", "default", "CPU") == 10
    # y: 12 - 10 = 2 left in the whole tree.
    y = engine.tree.cluster_queues["y"]
    assert engine.tree.available(y, FR) == 2000
    engine.submit(wl("y1", "qy", CPU=3, created=1))
    engine.schedule()
    assert state(engine, "y1") is WorkloadState.PENDING


def test_the_last_milli_unit_counts() -> None:
    engine, _ = new_engine(standalone())
    engine.submit(WorkloadBuilder("w1").queue("qa").bundles({"CPU": 0.5}, count=19).build())
    engine.submit(WorkloadBuilder("w2").queue("qa").bundles({"CPU": 0.501}).created(1).build())
    engine.submit(WorkloadBuilder("w3").queue("qa").bundles({"CPU": 0.5}).created(2).build())
    engine.schedule()
    # 9.5 used; 0.501 > 0.5 left, so w2 waits while the exact 0.5 of w3 fits.
    assert state(engine, "w1") is WorkloadState.ADMITTED
    assert state(engine, "w2") is WorkloadState.PENDING
    assert state(engine, "w3") is WorkloadState.ADMITTED
    assert used(engine, "a", "default", "CPU") == 10


@pytest.mark.parametrize("before", [0, 3, 5, 9])
@pytest.mark.parametrize("amount", [1, 4, 8])
def test_added_along_path_is_what_add_usage_adds(before: int, amount: int) -> None:
    # org ⊃ team (own 6, lends 2) ⊃ x (4, lends 1), and y (3) in org: guaranteed quota
    # at two levels, so usage stops at different heights depending on how much is used.
    config = (
        ConfigBuilder()
        .cohort(CohortBuilder("org"))
        .cohort(
            CohortBuilder("team")
            .parent("org")
            .resource_group(flavor("default").resource("CPU", 6, lending_limit=2))
        )
        .cluster_queue(cq("x", 4, "team", ll=1), "qx")
        .cluster_queue(cq("y", 3, "org"), "qy")
        .build()
    )
    engine, _ = new_engine(config)
    tree = engine.tree
    x = tree.cluster_queues["x"]
    tree.add_usage(x, {FR: before * 1000})
    path = [x, *x.ancestors()]
    usage_before = [n.usage.get(FR, 0) for n in path]
    predicted = {n: added.get(FR, 0) for n, added in tree.added_along_path(x, {FR: amount * 1000})}
    tree.add_usage(x, {FR: amount * 1000})
    actual = {n: n.usage.get(FR, 0) - b for n, b in zip(path, usage_before, strict=True)}
    assert {n: a for n, a in actual.items() if a} == {n: a for n, a in predicted.items() if a}
