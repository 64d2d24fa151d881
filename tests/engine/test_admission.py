"""Admission inside one ClusterQueue: flavors, fungibility, resource groups, partial
admission, gangs, queueing strategies, stop policies, positions and pending reasons.

Outcomes are worked out by hand from Kueue's rules as summarised in docs/scheduling.md.
"""

from __future__ import annotations

import pytest

from ray_queue.engine.config import (
    QueueConfig,
    QueueingStrategy,
    StopPolicy,
    WhenCanBorrow,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import InvalidWorkloadError, WorkloadRejected
from ray_queue.engine.model import DecisionKind, WorkloadId, WorkloadState
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
    wl,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState


def one_cq(builder: ClusterQueueBuilder, **priorities: int) -> QueueConfig:
    return ConfigBuilder().cluster_queue(builder, "q").priorities(**priorities).build()


# -- flavors in order ------------------------------------------------------------------


def test_flavors_are_tried_in_listed_order() -> None:
    config = one_cq(
        ClusterQueueBuilder("cq").resource_group(
            flavor("on-demand").resource("CPU", 4), flavor("spot").resource("CPU", 10)
        )
    )
    engine, _ = new_engine(config)
    engine.submit(wl("w1", CPU=3))
    engine.submit(wl("w2", CPU=3, created=1))
    engine.submit(wl("w3", CPU=1, created=2))
    engine.schedule()
    # w1 takes 3 of on-demand's 4; w2 does not fit the 1 left and goes to spot;
    # w3 fits the last on-demand CPU (earlier flavor wins again).
    assert flavor_of(engine, "w1", "CPU") == "on-demand"
    assert flavor_of(engine, "w2", "CPU") == "spot"
    assert flavor_of(engine, "w3", "CPU") == "on-demand"
    assert used(engine, "cq", "on-demand", "CPU") == 4
    assert used(engine, "cq", "spot", "CPU") == 3


def test_bundle_groups_accumulate_before_choosing_a_flavor() -> None:
    config = one_cq(
        ClusterQueueBuilder("cq").resource_group(
            flavor("small").resource("CPU", 4), flavor("big").resource("CPU", 10)
        )
    )
    engine, _ = new_engine(config)
    spec = WorkloadBuilder("w").queue("q").bundles({"CPU": 3}).bundles({"CPU": 3}).build()
    engine.submit(spec)
    engine.schedule()
    # Group 0 fits small (3 <= 4); group 1 would make small 6 > 4, so it takes big.
    assert flavor_of(engine, "w", "CPU", group=0) == "small"
    assert flavor_of(engine, "w", "CPU", group=1) == "big"
    assert used(engine, "cq", "small", "CPU") == 3
    assert used(engine, "cq", "big", "CPU") == 3


def borrowing_fungibility(when_can_borrow: WhenCanBorrow) -> QueueConfig:
    a = (
        ClusterQueueBuilder("a")
        .cohort("c")
        .resource_group(flavor("f1").resource("CPU", 2), flavor("f2").resource("CPU", 10))
        .fungibility(when_can_borrow=when_can_borrow)
    )
    b = ClusterQueueBuilder("b").cohort("c").resource_group(flavor("f1").resource("CPU", 10))
    return ConfigBuilder().cluster_queue(a, "q").cluster_queue(b, "qb").build()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # f1 fits by borrowing 2 from b; Borrow (the default) stops there.
        pytest.param(WhenCanBorrow.BORROW, "f1", id="borrow-stops-at-borrowing-fit"),
        # TryNextFlavor goes on and finds f2, which fits without borrowing.
        pytest.param(WhenCanBorrow.TRY_NEXT_FLAVOR, "f2", id="try-next-prefers-no-borrowing"),
    ],
)
def test_when_can_borrow(policy: WhenCanBorrow, expected: str) -> None:
    engine, _ = new_engine(borrowing_fungibility(policy))
    engine.submit(wl("w", CPU=4))
    engine.schedule()
    assert flavor_of(engine, "w", "CPU") == expected


def test_try_next_flavor_falls_back_to_borrowing_when_nothing_fits_without() -> None:
    engine, _ = new_engine(borrowing_fungibility(WhenCanBorrow.TRY_NEXT_FLAVOR))
    engine.submit(wl("w", CPU=11))
    engine.schedule()
    # f1: fits borrowing (2 + 10 = 12 >= 11). f2: 11 > 10, NoFit. Best seen: f1.
    assert flavor_of(engine, "w", "CPU") == "f1"


def preempt_fungibility(when_can_preempt: WhenCanPreempt) -> QueueConfig:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("f1").resource("CPU", 4), flavor("f2").resource("CPU", 4))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY)
        .fungibility(when_can_preempt=when_can_preempt)
    )
    return one_cq(cq, low=1, high=10)


@pytest.mark.parametrize(
    ("policy", "flavor_name", "expected"),
    [
        # f1 needs preemption, f2 fits: TryNextFlavor (default) takes f2, nobody evicted.
        pytest.param(
            WhenCanPreempt.TRY_NEXT_FLAVOR,
            "f2",
            [(DecisionKind.ADMIT, "high")],
            id="try-next-flavor",
        ),
        # Preempt stops at f1 and evicts the low-priority workload there. Requeued, low
        # finds nobody it may preempt on f1, and a flavor without possible victims never
        # stops the search (Kueue's noPreemptionCandidates): it is admitted on f2.
        pytest.param(
            WhenCanPreempt.PREEMPT,
            "f1",
            [
                (DecisionKind.PREEMPT, "low"),
                (DecisionKind.ADMIT, "high"),
                (DecisionKind.ADMIT, "low"),
            ],
            id="preempt-first-flavor",
        ),
    ],
)
def test_when_can_preempt(
    policy: WhenCanPreempt, flavor_name: str, expected: list[tuple[DecisionKind, str]]
) -> None:
    engine, _ = new_engine(preempt_fungibility(policy))
    engine.submit(WorkloadBuilder("low").queue("q").bundles({"CPU": 4}).priority("low").build())
    engine.schedule()
    assert flavor_of(engine, "low", "CPU") == "f1"
    engine.submit(
        WorkloadBuilder("high").queue("q").bundles({"CPU": 4}).priority("high").created(1).build()
    )
    decisions = engine.schedule()
    assert [(d.kind, d.workload) for d in decisions] == expected
    assert flavor_of(engine, "high", "CPU") == flavor_name
    if policy is WhenCanPreempt.PREEMPT:
        assert flavor_of(engine, "low", "CPU") == "f2"
    else:
        assert flavor_of(engine, "low", "CPU") == "f1"


def test_resource_groups_choose_flavors_independently() -> None:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(
            flavor("cpu-a").resource("CPU", 2).resource("memory", 8),
            flavor("cpu-b").resource("CPU", 16).resource("memory", 64),
        )
        .resource_group(flavor("a100").resource("GPU", 1), flavor("t4").resource("GPU", 8))
    )
    engine, _ = new_engine(one_cq(cq))
    engine.submit(wl("w1", CPU=2, memory=4, GPU=1))
    engine.submit(wl("w2", CPU=1, memory=1, GPU=1, created=1))
    engine.schedule()
    # CPU and memory share a group, so they always get the same flavor; GPU has its own.
    assert (flavor_of(engine, "w1", "CPU"), flavor_of(engine, "w1", "memory")) == ("cpu-a",) * 2
    assert flavor_of(engine, "w1", "GPU") == "a100"
    # cpu-a has no CPU left: CPU and memory both move to cpu-b even though memory fits.
    assert (flavor_of(engine, "w2", "CPU"), flavor_of(engine, "w2", "memory")) == ("cpu-b",) * 2
    assert flavor_of(engine, "w2", "GPU") == "t4"


def test_a_resource_no_group_covers_is_rejected_at_submit_and_changes_nothing() -> None:
    engine, _ = new_engine(
        one_cq(ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10)))
    )
    with pytest.raises(WorkloadRejected):
        engine.submit(wl("tpu", CPU=1, TPU=4))
    assert engine.workloads() == []
    assert engine.pending() == []


@pytest.mark.parametrize(
    "bad",
    ["../../etc/x", "a/b/c", "/b", "a/", "../b", "", "-x", "x y", "é", "x" * 129, "a\x1b[2J"],
)
def test_a_workload_id_outside_the_safe_charset_is_refused_and_changes_nothing(bad: str) -> None:
    # Ids end up in file names: a job's id with ../ once put its log outside Ray's folder.
    engine, _ = new_engine(ten_cpus())
    with pytest.raises(InvalidWorkloadError, match="letters, digits"):
        engine.submit(wl(bad, CPU=1))
    assert engine.workloads() == []
    engine.submit(wl("ok-1.x_y", CPU=1))
    engine.submit(wl("team-a/ok-1", CPU=1))  # a tenant's namespace (access/namespaces.py)


def test_a_request_no_flavor_can_ever_hold_names_every_flavors_limit() -> None:
    # 100 GPUs named only the first flavor (cpu: 0 GPUs), not a100's 8.
    cpu = flavor("cpu").resource("CPU", 8).resource("GPU", 0)
    a100 = flavor("a100").resource("CPU", 8).resource("GPU", 8)
    engine, _ = new_engine(one_cq(ClusterQueueBuilder("cq").resource_group(cpu, a100)))
    with pytest.raises(WorkloadRejected) as rejected:
        engine.submit(wl("huge", GPU=100))
    message = str(rejected.value)
    # The flavor that carries GPUs comes first, with its limit; the one without says so.
    assert message.index("flavor a100") < message.index("flavor cpu"), message
    assert (
        "GPU in flavor a100: request 100 exceeds the most the ClusterQueue can ever get "
        "there (8, borrowing included)" in message
    )
    assert "flavor cpu has no GPU quota" in message


def test_a_memory_request_no_flavor_can_hold_is_named_in_memory_units() -> None:
    cpu = flavor("cpu").resource("CPU", 8).resource("memory", 64 * 2**30)
    engine, _ = new_engine(one_cq(ClusterQueueBuilder("cq").resource_group(cpu)))
    with pytest.raises(WorkloadRejected, match=r"request 1Ti exceeds .* \(64Gi, borrowing"):
        engine.submit(wl("big", CPU=1, memory=2**40))


# -- partial admission and gangs ---------------------------------------------------------


def ten_cpus(strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO) -> QueueConfig:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    return one_cq(cq.strategy(strategy))


@pytest.mark.parametrize(
    ("already_used", "expected_count"),
    [
        # 10 free: 8 x 2 = 16 does not fit; the largest count in [3, 8) that fits is 5.
        pytest.param(0, 5, id="five-of-eight"),
        # 6 free: 3 bundles.
        pytest.param(4, 3, id="exactly-min-count"),
        # 5 free: only 2 bundles fit, below min_count 3: stays pending.
        pytest.param(5, None, id="below-min-count"),
    ],
)
def test_partial_admission(already_used: int, expected_count: int | None) -> None:
    engine, _ = new_engine(ten_cpus())
    if already_used:
        engine.submit(wl("filler", CPU=already_used))
        engine.schedule()
    spec = (
        WorkloadBuilder("p").queue("q").bundles({"CPU": 2}, count=8).min_count(3).created(1)
    ).build()
    engine.submit(spec)
    engine.schedule()
    status = engine.workload(WorkloadId("p"))
    if expected_count is None:
        assert status.state is S.PENDING
        assert used(engine, "cq", "default", "CPU") == already_used
    else:
        assert status.state is S.ADMITTED
        assert status.admission is not None
        assert status.admission.groups[0].count == expected_count
        assert used(engine, "cq", "default", "CPU") == already_used + 2 * expected_count


def test_partial_admission_takes_the_full_count_when_it_fits() -> None:
    engine, _ = new_engine(ten_cpus())
    engine.submit(WorkloadBuilder("p").queue("q").bundles({"CPU": 1}, count=4).min_count(2).build())
    engine.schedule()
    admission = engine.workload(WorkloadId("p")).admission
    assert admission is not None and admission.groups[0].count == 4


def test_a_gang_is_admitted_whole_or_not_at_all() -> None:
    a = ClusterQueueBuilder("a").cohort("c").resource_group(flavor("default").resource("CPU", 10))
    b = ClusterQueueBuilder("b").cohort("c").resource_group(flavor("default").resource("CPU", 4))
    engine, _ = new_engine(ConfigBuilder().cluster_queue(a, "q").cluster_queue(b, "qb").build())
    engine.submit(wl("b1", "qb", CPU=4))
    engine.schedule()
    engine.submit(WorkloadBuilder("gang").queue("q").bundles({"CPU": 3}, count=4).build())
    engine.schedule()
    # 12 needed, 10 available: not 3 of the 4 bundles, none of them.
    assert state(engine, "gang") is S.PENDING
    assert engine.workload(WorkloadId("gang")).admission is None
    assert used(engine, "a", "default", "CPU") == 0
    engine.finish(WorkloadId("b1"))
    engine.schedule()
    admission = engine.workload(WorkloadId("gang")).admission
    assert admission is not None and admission.groups[0].count == 4
    assert used(engine, "a", "default", "CPU") == 12


# -- queueing strategies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "small_state"),
    [
        pytest.param(QueueingStrategy.BEST_EFFORT_FIFO, S.ADMITTED, id="best-effort-skips-head"),
        pytest.param(QueueingStrategy.STRICT_FIFO, S.PENDING, id="strict-head-blocks"),
    ],
)
def test_a_head_that_does_not_fit(strategy: QueueingStrategy, small_state: S) -> None:
    engine, _ = new_engine(ten_cpus(strategy))
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(wl("big", CPU=8, created=1))
    engine.submit(wl("small", CPU=2, created=2))
    engine.schedule()
    assert state(engine, "big") is S.PENDING
    assert state(engine, "small") is small_state
    engine.finish(WorkloadId("filler"))
    engine.schedule()
    # Freed quota brings the parked head back; both are running now in either strategy.
    assert state(engine, "big") is S.ADMITTED
    assert state(engine, "small") is S.ADMITTED


def test_parked_workloads_return_when_quota_is_released_elsewhere_in_the_cohort() -> None:
    a = ClusterQueueBuilder("a").cohort("c").resource_group(flavor("default").resource("CPU", 4))
    b = ClusterQueueBuilder("b").cohort("c").resource_group(flavor("default").resource("CPU", 4))
    engine, _ = new_engine(ConfigBuilder().cluster_queue(a, "qa").cluster_queue(b, "qb").build())
    engine.submit(wl("b1", "qb", CPU=6))
    engine.schedule()
    engine.submit(wl("a1", "qa", CPU=4, created=1))
    engine.schedule()
    assert state(engine, "a1") is S.PENDING  # 8 - 6 = 2 available
    assert engine.schedule() == []  # parked: nothing to retry
    engine.finish(WorkloadId("b1"))
    decisions = engine.schedule()
    assert [(d.kind, d.workload) for d in decisions] == [(DecisionKind.ADMIT, "a1")]


def test_best_effort_retries_a_parked_workload_when_config_changes() -> None:
    engine, _ = new_engine(ten_cpus())
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(wl("big", CPU=8, created=1))
    engine.schedule()
    assert state(engine, "big") is S.PENDING
    bigger = one_cq(ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 20)))
    engine.apply_config(bigger)
    engine.schedule()
    assert state(engine, "big") is S.ADMITTED
    assert used(engine, "cq", "default", "CPU") == 14


# -- stop policies -----------------------------------------------------------------------


def test_hold_stops_new_admissions_but_keeps_admitted_work() -> None:
    base = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    engine, _ = new_engine(one_cq(base))
    engine.submit(wl("running", CPU=2))
    engine.schedule()
    decisions = engine.apply_config(one_cq(base.stop(StopPolicy.HOLD)))
    assert decisions == []
    engine.submit(wl("new", CPU=2, created=1))
    assert engine.schedule() == []
    assert state(engine, "running") is S.ADMITTED
    assert state(engine, "new") is S.PENDING


@pytest.mark.parametrize("on", ["cluster-queue", "queue"])
def test_hold_and_drain_evicts_and_requeues_without_backoff(on: str) -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    engine, _ = new_engine(one_cq(cq))
    engine.submit(wl("r1", CPU=2))
    engine.submit(wl("r2", CPU=2, created=1))
    engine.schedule()
    if on == "cluster-queue":
        drained = one_cq(cq.stop(StopPolicy.HOLD_AND_DRAIN))
    else:
        drained = (
            ConfigBuilder()
            .cluster_queue(cq)
            .queue("q", "cq", stop=StopPolicy.HOLD_AND_DRAIN)
            .build()
        )
    decisions = engine.apply_config(drained)
    assert sorted((d.kind, d.workload, d.reason) for d in decisions) == [
        (DecisionKind.EVICT, "r1", "Stopped"),
        (DecisionKind.EVICT, "r2", "Stopped"),
    ]
    for workload in ("r1", "r2"):
        status = engine.workload(WorkloadId(workload))
        assert status.state is S.PENDING
        assert status.requeue_at is None
    assert used(engine, "cq", "default", "CPU") == 0
    assert engine.schedule() == []
    # Lifting the stop admits them again, in their original order.
    engine.apply_config(one_cq(cq.stop(StopPolicy.NONE)))
    assert [d.workload for d in engine.schedule()] == ["r1", "r2"]


def test_a_held_queue_does_not_block_other_queues_of_the_cluster_queue() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    config = (
        ConfigBuilder()
        .cluster_queue(cq)
        .queue("held", "cq", stop=StopPolicy.HOLD)
        .queue("open", "cq")
        .build()
    )
    engine, _ = new_engine(config)
    engine.submit(wl("h", "held", CPU=1))
    engine.submit(wl("o", "open", CPU=1, created=1))
    engine.schedule()
    assert state(engine, "h") is S.PENDING
    assert state(engine, "o") is S.ADMITTED


# -- positions and reasons -------------------------------------------------------------------


def test_pending_positions_follow_priority_then_creation_then_id() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 1))
    config = ConfigBuilder().cluster_queue(cq, "qa", "qb").priorities(low=1, high=10).build()
    engine, _ = new_engine(config)
    engine.submit(wl("running", "qa", CPU=1))
    engine.schedule()
    specs = [
        WorkloadBuilder("a-low").queue("qa").priority("low").created(1).build(),
        WorkloadBuilder("b-high-old").queue("qb").priority("high").created(2).build(),
        WorkloadBuilder("a-high-new").queue("qa").priority("high").created(3).build(),
        WorkloadBuilder("b-high-new").queue("qb").priority("high").created(3).build(),
    ]
    for spec in specs:
        engine.submit(spec)
    rows = [
        (p.workload, p.queue, p.position_in_queue, p.position_in_cluster_queue)
        for p in engine.pending()
    ]
    assert rows == [
        ("b-high-old", "qb", 0, 0),
        ("a-high-new", "qa", 0, 1),  # same time as b-high-new: the id breaks the tie
        ("b-high-new", "qb", 1, 2),
        ("a-low", "qa", 1, 3),
    ]
    assert [p.workload for p in engine.pending(queue="qa")] == ["a-high-new", "a-low"]
    assert [p.position_in_queue for p in engine.pending(queue="qa")] == [0, 1]
    assert all(p.cluster_queue == "cq" for p in engine.pending())


def test_parked_workloads_are_listed_after_eligible_ones() -> None:
    engine, _ = new_engine(ten_cpus())
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(wl("big", CPU=8, created=1))
    engine.schedule()  # big is parked
    engine.submit(wl("later", CPU=5, created=2))
    assert [p.workload for p in engine.pending()] == ["later", "big"]
    assert [p.position_in_cluster_queue for p in engine.pending()] == [0, 1]


def test_a_pending_workload_says_which_quota_it_is_short_of() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("a100").resource("GPU", 8))
    engine, _ = new_engine(one_cq(cq))
    engine.submit(wl("running", GPU=6))
    engine.schedule()
    engine.submit(wl("waiting", GPU=8, created=1))
    engine.schedule()
    status = engine.workload(WorkloadId("waiting"))
    assert status.state is S.PENDING
    for fragment in ("GPU", "a100", "8", "2"):
        assert fragment in status.message, (fragment, status.message)
    (position,) = engine.pending()
    assert "a100" in position.reason and "GPU" in position.reason


def test_admitting_everything_that_fits_in_one_call() -> None:
    engine, _ = new_engine(ten_cpus())
    for i in range(12):
        engine.submit(wl(f"w{i:02}", CPU=1, created=i))
    decisions = engine.schedule()
    # One call admits all ten that fit, oldest first, like many Kueue cycles would.
    assert [d.workload for d in decisions] == [f"w{i:02}" for i in range(10)]
    assert all(d.kind is DecisionKind.ADMIT for d in decisions)
    assert admitted(engine) == {f"w{i:02}" for i in range(10)}


def blocked_strict_fifo() -> Engine:
    """A StrictFIFO queue of 10 CPUs running filler (6), its head big (8) blocking small (2)."""
    engine, _ = new_engine(ten_cpus(QueueingStrategy.STRICT_FIFO))
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(wl("big", CPU=8, created=1))
    engine.submit(wl("small", CPU=2, created=2))
    engine.schedule()
    return engine


def test_strict_fifo_lists_every_waiting_workload_behind_the_blocked_head() -> None:
    engine = blocked_strict_fifo()
    rows = [(p.workload, p.position_in_cluster_queue) for p in engine.pending()]
    assert rows == [("big", 0), ("small", 1)]
    # Both wait on the head's shortage, and say so.
    for position in engine.pending():
        assert "CPU" in position.reason


def test_strict_fifo_tries_the_next_head_when_the_blocking_one_is_cancelled() -> None:
    engine = blocked_strict_fifo()
    assert state(engine, "small") is S.PENDING
    engine.cancel(WorkloadId("big"))
    engine.schedule()
    assert state(engine, "small") is S.ADMITTED
    assert "waiting" not in engine.workload(WorkloadId("small")).reason


def test_strict_fifo_tries_a_higher_priority_newcomer_at_once() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    config = ConfigBuilder().priorities(low=1, high=10).cluster_queue(cq.strict_fifo(), "q")
    engine, _ = new_engine(config.build())
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(WorkloadBuilder("big").queue("q").bundles({"CPU": 8}).priority("low").build())
    engine.schedule()
    assert state(engine, "big") is S.PENDING
    urgent = WorkloadBuilder("urgent").queue("q").bundles({"CPU": 2}).priority("high")
    engine.submit(urgent.created(2).build())
    engine.schedule()
    assert state(engine, "urgent") is S.ADMITTED
    assert state(engine, "big") is S.PENDING


def test_strict_fifo_head_unblocks_when_a_cohort_peer_releases_quota() -> None:
    a = (
        ClusterQueueBuilder("a")
        .cohort("c")
        .resource_group(flavor("default").resource("CPU", 4))
        .strict_fifo()
    )
    b = ClusterQueueBuilder("b").cohort("c").resource_group(flavor("default").resource("CPU", 4))
    engine, _ = new_engine(ConfigBuilder().cluster_queue(a, "qa").cluster_queue(b, "qb").build())
    engine.submit(wl("b1", "qb", CPU=6))
    engine.schedule()
    engine.submit(wl("a-big", "qa", CPU=4, created=1))
    engine.submit(wl("a-small", "qa", CPU=1, created=2))
    engine.schedule()
    assert admitted(engine) == {"b1"}
    engine.cancel(WorkloadId("b1"))
    assert [d.workload for d in engine.schedule()] == ["a-big", "a-small"]


def test_an_implicit_cohort_pools_quota_like_a_declared_one() -> None:
    # No Cohort object: naming it in two ClusterQueues is enough (Kueue does the same).
    a = (
        ClusterQueueBuilder("a")
        .cohort("implicit")
        .resource_group(flavor("default").resource("CPU", 4))
    )
    b = (
        ClusterQueueBuilder("b")
        .cohort("implicit")
        .resource_group(flavor("default").resource("CPU", 4))
    )
    config = ConfigBuilder().cluster_queue(a, "qa").cluster_queue(b, "qb").build()
    assert config.cohorts == {}
    engine, _ = new_engine(config)
    engine.submit(wl("a1", "qa", CPU=8))
    engine.schedule()
    assert state(engine, "a1") is S.ADMITTED


def test_shrinking_quota_keeps_admitted_work_and_blocks_new_work() -> None:
    engine, _ = new_engine(ten_cpus())
    engine.submit(wl("running", CPU=8))
    engine.schedule()
    smaller = one_cq(ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 9)))
    assert engine.apply_config(smaller) == []
    # Kueue does not preempt on a quota decrease; the running work keeps its quota.
    assert state(engine, "running") is S.ADMITTED
    assert used(engine, "cq", "default", "CPU") == 8
    engine.submit(wl("next", CPU=2, created=1))
    assert engine.schedule() == []
    engine.submit(wl("fits", CPU=1, created=2))
    assert [d.workload for d in engine.schedule()] == ["fits"]


def test_a_gang_of_several_groups_is_admitted_whole_or_not_at_all() -> None:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 10))
        .resource_group(flavor("a100").resource("GPU", 2))
    )
    engine, _ = new_engine(one_cq(cq))
    engine.submit(wl("gpu-user", GPU=1))
    engine.schedule()
    # Group 0 (4 x 2 CPU) fits; group 1 (2 x 1 GPU) does not (1 GPU left): nothing.
    spec = (
        WorkloadBuilder("gang")
        .queue("q")
        .bundles({"CPU": 2}, count=4)
        .bundles({"GPU": 1}, count=2)
        .created(1)
        .build()
    )
    engine.submit(spec)
    engine.schedule()
    assert state(engine, "gang") is S.PENDING
    assert used(engine, "cq", "default", "CPU") == 0
    engine.finish(WorkloadId("gpu-user"))
    engine.schedule()
    admission = engine.workload(WorkloadId("gang")).admission
    assert admission is not None
    assert [g.count for g in admission.groups] == [4, 2]
    assert used(engine, "cq", "default", "CPU") == 8
    assert used(engine, "cq", "a100", "GPU") == 2
