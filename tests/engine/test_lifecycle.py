"""The workload life cycle: every transition recorded with a reason, quota freed by
finish/cancel/cancel_owner, errors at submit that change nothing, and restore() from
``workloads()`` reproducing the same state and the same future decisions.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import QueueConfig, WithinClusterQueue
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import (
    DuplicateWorkloadError,
    InvalidTransitionError,
    InvalidWorkloadError,
    RayQueueError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)
from ray_queue.engine.model import (
    BundleGroup,
    CheckState,
    DecisionKind,
    WorkloadId,
    WorkloadSpec,
    WorkloadState,
)
from tests.engine.builders import (
    ClusterQueueBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    flavor,
    new_engine,
    state,
    used,
    wl,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState
K = DecisionKind


def config() -> QueueConfig:
    """cq: 10 CPU, LowerPriority preemption; checked: 10 CPU behind check "prov"."""
    cq = (
        ClusterQueueBuilder("cq")
        .cohort("c")
        .resource_group(flavor("default").resource("CPU", 10))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY)
    )
    checked = (
        ClusterQueueBuilder("checked")
        .resource_group(flavor("default").resource("CPU", 10))
        .admission_check("prov")
    )
    return (
        ConfigBuilder()
        .cluster_queue(cq, "q")
        .cluster_queue(checked, "qc")
        .admission_check("prov")
        .priorities(low=1, high=10)
        .requeuing(base_s=10, max_s=100)
        .build()
    )


def edges(engine: Engine, workload: str) -> list[tuple[S, S, str]]:
    return [
        (t.from_state, t.to_state, t.reason) for t in engine.workload(WorkloadId(workload)).history
    ]


CREATED = (S.PENDING, S.PENDING, "Created")


def finish_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    engine.finish(WorkloadId("w"))


def fail_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    engine.finish(WorkloadId("w"), failed=True, message="exit code 1")


def cancel_pending_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", CPU=1))
    assert engine.cancel(WorkloadId("w")) is False


def cancel_admitted_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    assert engine.cancel(WorkloadId("w")) is True


def checks_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", "qc", CPU=1))
    engine.schedule()
    engine.set_check_state(WorkloadId("w"), "prov", CheckState.READY)
    engine.finish(WorkloadId("w"))


def retry_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", "qc", CPU=1))
    engine.schedule()
    engine.set_check_state(WorkloadId("w"), "prov", CheckState.RETRY)
    clock.advance(10)
    engine.schedule()
    engine.set_check_state(WorkloadId("w"), "prov", CheckState.REJECTED)


def preempted_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(WorkloadBuilder("w").queue("q").bundles({"CPU": 10}).priority("low").build())
    engine.schedule()
    engine.submit(WorkloadBuilder("p").queue("q").bundles({"CPU": 10}).priority("high").build())
    engine.schedule()
    engine.cancel(WorkloadId("w"))


def cancel_evicted_path(engine: Engine, clock: ManualClock) -> None:
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    engine.evict(WorkloadId("w"), reason="CapacityRevoked", message="node gone")
    assert engine.cancel(WorkloadId("w")) is False


PATHS = [
    pytest.param(
        finish_path,
        [CREATED, (S.PENDING, S.ADMITTED, "Admitted"), (S.ADMITTED, S.FINISHED, "Finished")],
        id="admit-finish",
    ),
    pytest.param(
        fail_path,
        [CREATED, (S.PENDING, S.ADMITTED, "Admitted"), (S.ADMITTED, S.FAILED, "Failed")],
        id="admit-fail",
    ),
    pytest.param(
        cancel_pending_path,
        [CREATED, (S.PENDING, S.CANCELLED, "Cancelled")],
        id="cancel-pending",
    ),
    pytest.param(
        cancel_admitted_path,
        [CREATED, (S.PENDING, S.ADMITTED, "Admitted"), (S.ADMITTED, S.CANCELLED, "Cancelled")],
        id="cancel-admitted",
    ),
    pytest.param(
        checks_path,
        [
            CREATED,
            (S.PENDING, S.QUOTA_RESERVED, "QuotaReserved"),
            (S.QUOTA_RESERVED, S.ADMITTED, "AdmissionChecksReady"),
            (S.ADMITTED, S.FINISHED, "Finished"),
        ],
        id="reserve-ready-finish",
    ),
    pytest.param(
        retry_path,
        [
            CREATED,
            (S.PENDING, S.QUOTA_RESERVED, "QuotaReserved"),
            (S.QUOTA_RESERVED, S.EVICTED, "AdmissionCheckRetry"),
            (S.EVICTED, S.PENDING, "Requeued"),
            (S.PENDING, S.QUOTA_RESERVED, "QuotaReserved"),
            (S.QUOTA_RESERVED, S.REJECTED, "AdmissionCheckRejected"),
        ],
        id="retry-requeue-reject",
    ),
    pytest.param(
        preempted_path,
        [
            CREATED,
            (S.PENDING, S.ADMITTED, "Admitted"),
            (S.ADMITTED, S.EVICTED, "Preempted"),
            (S.EVICTED, S.PENDING, "Requeued"),
            (S.PENDING, S.CANCELLED, "Cancelled"),
        ],
        id="preempted-requeued-cancelled",
    ),
    pytest.param(
        cancel_evicted_path,
        [
            CREATED,
            (S.PENDING, S.ADMITTED, "Admitted"),
            (S.ADMITTED, S.EVICTED, "CapacityRevoked"),
            (S.EVICTED, S.CANCELLED, "Cancelled"),
        ],
        id="evicted-cancelled",
    ),
]


@pytest.mark.parametrize(("path", "expected"), PATHS)
def test_every_transition_is_recorded_with_a_reason(
    path: Callable[[Engine, ManualClock], None], expected: list[tuple[S, S, str]]
) -> None:
    engine, clock = new_engine(config())
    path(engine, clock)
    assert edges(engine, "w") == expected
    history = engine.workload(WorkloadId("w")).history
    times = [t.at for t in history]
    assert times == sorted(times)
    final = engine.workload(WorkloadId("w"))
    assert final.state is expected[-1][1]
    assert final.reason == expected[-1][2]
    # Terminal: it holds no quota (only "p" of the preemption path still runs).
    assert final.admission is None
    assert used(engine, "checked", "default", "CPU") == 0
    assert used(engine, "cq", "default", "CPU") == (10 if path is preempted_path else 0)


@pytest.mark.parametrize(("path", "expected"), PATHS)
def test_every_transition_has_a_message_a_person_can_read(
    path: Callable[[Engine, ManualClock], None], expected: list[tuple[S, S, str]]
) -> None:
    # docs/contract.md §1: "Every transition has a reason and a message a person can read", also
    # when the caller (finish, cancel, a check controller) gave no message of its own.
    engine, clock = new_engine(config())
    path(engine, clock)
    for transition in engine.workload(WorkloadId("w")).history:
        assert transition.message.strip(), f"no message for {transition}"


def test_finish_and_cancel_free_quota_for_the_next_workload() -> None:
    engine, _ = new_engine(config())
    engine.submit(wl("a", CPU=6))
    engine.submit(wl("b", CPU=4, created=1))
    engine.submit(wl("c", CPU=6, created=2))
    engine.schedule()
    assert state(engine, "c") is S.PENDING
    engine.finish(WorkloadId("a"))
    assert used(engine, "cq", "default", "CPU") == 4
    assert [d.workload for d in engine.schedule()] == ["c"]
    engine.cancel(WorkloadId("b"))
    engine.cancel(WorkloadId("c"))
    assert used(engine, "cq", "default", "CPU") == 0


def test_cancel_is_idempotent_on_terminal_workloads() -> None:
    engine, _ = new_engine(config())
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    assert engine.cancel(WorkloadId("w")) is True
    before = engine.workload(WorkloadId("w"))
    assert engine.cancel(WorkloadId("w")) is False
    assert engine.workload(WorkloadId("w")) == before


def test_cancel_owner_cancels_only_that_owners_live_work() -> None:
    engine, _ = new_engine(config())
    for spec in [
        WorkloadBuilder("d1-run").queue("q").bundles({"CPU": 4}).owner("driver-1").build(),
        WorkloadBuilder("d1-reserved").queue("qc").owner("driver-1").created(1).build(),
        WorkloadBuilder("d1-wait")
        .queue("q")
        .bundles({"CPU": 8})
        .owner("driver-1")
        .created(2)
        .build(),
        WorkloadBuilder("d2-run")
        .queue("q")
        .bundles({"CPU": 2})
        .owner("driver-2")
        .created(3)
        .build(),
    ]:
        engine.submit(spec)
    engine.schedule()
    assert state(engine, "d1-reserved") is S.QUOTA_RESERVED
    held = engine.cancel_owner("driver-1")
    assert sorted(held) == ["d1-reserved", "d1-run"]
    for workload in ("d1-run", "d1-reserved", "d1-wait"):
        status = engine.workload(WorkloadId(workload))
        assert (status.state, status.reason) == (S.CANCELLED, "OwnerDied")
    assert state(engine, "d2-run") is S.ADMITTED
    assert used(engine, "cq", "default", "CPU") == 2
    assert used(engine, "checked", "default", "CPU") == 0
    assert engine.cancel_owner("driver-1") == []


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda e: e.finish(WorkloadId("pending")), id="finish-pending"),
        pytest.param(lambda e: e.finish(WorkloadId("done")), id="finish-finished"),
        pytest.param(
            lambda e: e.evict(WorkloadId("pending"), reason="X", message="y"), id="evict-pending"
        ),
    ],
)
def test_events_that_do_not_apply_raise_and_change_nothing(
    action: Callable[[Engine], object],
) -> None:
    engine, _ = new_engine(config())
    engine.submit(wl("done", CPU=10))
    engine.submit(wl("pending", CPU=10, created=1))
    engine.schedule()
    engine.finish(WorkloadId("done"))
    before = engine.workloads()
    with pytest.raises(InvalidTransitionError):
        action(engine)
    assert engine.workloads() == before


def test_unknown_workloads_raise() -> None:
    engine, _ = new_engine(config())
    with pytest.raises(UnknownWorkloadError):
        engine.workload(WorkloadId("nope"))
    with pytest.raises(UnknownWorkloadError):
        engine.cancel(WorkloadId("nope"))


# -- errors at submit -----------------------------------------------------------------------


def raw(workload: str, *groups: BundleGroup, min_count: int | None = None) -> WorkloadSpec:
    builder = WorkloadBuilder(workload).queue("q").no_bundles()
    for group in groups:
        builder.raw_group(group)
    if min_count is not None:
        builder.min_count(min_count)
    return builder.build()


BAD_SUBMISSIONS = [
    pytest.param(raw("x"), InvalidWorkloadError, id="no-bundle-groups"),
    pytest.param(raw("x", BundleGroup({"CPU": 1000}, 0)), InvalidWorkloadError, id="count-0"),
    pytest.param(raw("x", BundleGroup({"CPU": -1000})), InvalidWorkloadError, id="negative"),
    pytest.param(
        raw("x", BundleGroup({"CPU": 1000}, 4), min_count=0), InvalidWorkloadError, id="min-0"
    ),
    pytest.param(
        raw("x", BundleGroup({"CPU": 1000}, 4), min_count=5),
        InvalidWorkloadError,
        id="min-above-count",
    ),
    pytest.param(wl("x", "nowhere", CPU=1), UnknownQueueError, id="unknown-queue"),
    pytest.param(
        WorkloadBuilder("x").queue("q").priority("urgent").build(),
        UnknownPriorityClassError,
        id="unknown-priority",
    ),
    pytest.param(wl("running", CPU=1), DuplicateWorkloadError, id="duplicate-running"),
    pytest.param(wl("finished", CPU=1), DuplicateWorkloadError, id="duplicate-finished"),
    pytest.param(wl("x", CPU=11), WorkloadRejected, id="never-fits"),
    pytest.param(wl("x", GPU=1), WorkloadRejected, id="uncovered-resource"),
]


@pytest.mark.parametrize(("spec", "error"), BAD_SUBMISSIONS)
def test_a_bad_submission_raises_and_changes_nothing(
    spec: WorkloadSpec, error: type[RayQueueError]
) -> None:
    def setup() -> Engine:
        engine, _ = new_engine(config())
        engine.submit(wl("finished", CPU=1))
        engine.submit(wl("running", CPU=8, created=1))
        engine.schedule()
        engine.finish(WorkloadId("finished"))
        engine.submit(wl("waiting", CPU=4, created=2))
        return engine

    engine, twin = setup(), setup()
    before = engine.workloads()
    pending_before = engine.pending()
    with pytest.raises(error):
        engine.submit(spec)
    assert isinstance(error("m"), RayQueueError)
    assert engine.workloads() == before
    assert engine.pending() == pending_before
    # The engine behaves exactly as one that never saw the bad submission.
    engine.finish(WorkloadId("running"))
    twin.finish(WorkloadId("running"))
    assert engine.schedule() == twin.schedule()
    assert engine.workloads() == twin.workloads()


def test_submit_many_keeps_going_past_bad_workloads() -> None:
    engine, _ = new_engine(config())
    results = engine.submit_many([wl("a", CPU=1), wl("b", "nowhere"), wl("c", CPU=1, created=1)])
    assert isinstance(results[1], UnknownQueueError)
    assert [r.spec.id for r in results if not isinstance(r, Exception)] == ["a", "c"]
    assert [p.workload for p in engine.pending()] == ["a", "c"]


# -- restore ------------------------------------------------------------------------------


def busy_engine() -> tuple[Engine, ManualClock]:
    """An engine with workloads in every non-trivial state."""
    engine, clock = new_engine(config(), start=100.0)
    low = WorkloadBuilder("low").queue("q").bundles({"CPU": 4}).priority("low").created(100)
    engine.submit(low.build())
    mid = WorkloadBuilder("mid").queue("q").bundles({"CPU": 4}).priority("high").created(101)
    engine.submit(mid.build())
    engine.schedule()
    clock.advance(5)
    high = WorkloadBuilder("high").queue("q").bundles({"CPU": 6}).priority("high").created(105)
    engine.submit(high.build())  # preempts "low"
    engine.submit(wl("parked", CPU=9, created=106))
    engine.submit(wl("reserved", "qc", CPU=3, created=107))
    engine.submit(wl("retried", "qc", CPU=2, created=108))
    engine.submit(wl("done", "qc", CPU=1, created=109))
    engine.schedule()
    engine.set_check_state(WorkloadId("retried"), "prov", CheckState.RETRY)
    engine.set_check_state(WorkloadId("done"), "prov", CheckState.READY)
    engine.finish(WorkloadId("done"))
    engine.submit(wl("cancelled", CPU=1, created=110))
    engine.cancel(WorkloadId("cancelled"))
    clock.advance(3)
    engine.submit(wl("fresh", CPU=1, created=113))  # not scheduled yet
    return engine, clock


def test_restore_reproduces_state() -> None:
    engine, clock = busy_engine()
    assert {s.spec.id: s.state for s in engine.workloads()} == {
        "low": S.PENDING,
        "mid": S.ADMITTED,
        "high": S.ADMITTED,
        "parked": S.PENDING,
        "reserved": S.QUOTA_RESERVED,
        "retried": S.EVICTED,
        "done": S.FINISHED,
        "cancelled": S.CANCELLED,
        "fresh": S.PENDING,
    }
    restored = Engine.restore(config(), ManualClock(clock.now()), engine.workloads())
    assert restored.workloads() == engine.workloads()
    assert restored.cluster_queue_status() == engine.cluster_queue_status()
    assert restored.cohort_status() == engine.cohort_status()
    assert restored.demand() == engine.demand()


def test_restore_keeps_pending_positions() -> None:
    engine, clock = busy_engine()
    restored = Engine.restore(config(), ManualClock(clock.now()), engine.workloads())
    # "low" and "parked" were set aside (BestEffortFIFO), so they are listed after "fresh".
    assert [p.workload for p in engine.pending()] == ["fresh", "low", "parked"]
    assert restored.pending() == engine.pending()


def test_restore_reproduces_future_decisions() -> None:
    engine, clock = busy_engine()
    twin_clock = ManualClock(clock.now())
    twin = Engine.restore(config(), twin_clock, engine.workloads())

    def both(step: Callable[[Engine], object]) -> None:
        assert step(engine) == step(twin)
        assert engine.workloads() == twin.workloads()

    both(lambda e: e.schedule())
    both(lambda e: e.finish(WorkloadId("mid")))
    both(lambda e: e.schedule())
    both(lambda e: e.set_check_state(WorkloadId("reserved"), "prov", CheckState.READY))
    for c in (clock, twin_clock):
        c.advance(10)  # "retried" comes out of back-off
    both(lambda e: e.schedule())
    both(lambda e: e.finish(WorkloadId("high")))
    both(lambda e: e.submit(wl("late", CPU=2, created=200)))
    both(lambda e: e.schedule())
    assert state(engine, "retried") is S.QUOTA_RESERVED


def test_cancelling_reserved_work_frees_its_quota() -> None:
    engine, _ = new_engine(config())
    engine.submit(wl("w", "qc", CPU=4))
    engine.schedule()
    assert state(engine, "w") is S.QUOTA_RESERVED
    assert engine.cancel(WorkloadId("w")) is True
    assert used(engine, "checked", "default", "CPU") == 0
    assert engine.demand() == []


def test_evict_past_the_backoff_limit_rejects_admitted_work() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    engine, clock = new_engine(
        ConfigBuilder().cluster_queue(cq, "q").requeuing(base_s=1, max_s=1, limit=1).build()
    )
    engine.submit(wl("w", CPU=1))
    engine.schedule()
    first = engine.evict(WorkloadId("w"), reason="CapacityRevoked", message="node gone")
    assert [d.kind for d in first] == [K.EVICT]
    clock.advance(1)
    assert [d.kind for d in engine.schedule()] == [K.ADMIT]
    second = engine.evict(WorkloadId("w"), reason="CapacityRevoked", message="node gone")
    assert [d.kind for d in second] == [K.REJECT]
    assert edges(engine, "w")[-1] == (S.ADMITTED, S.REJECTED, "CapacityRevoked")


def test_forget_finished_drops_only_old_terminal_workloads() -> None:
    engine, clock = new_engine(config())
    engine.submit(wl("old", CPU=1))
    engine.submit(wl("running", CPU=1, created=1))
    engine.schedule()
    engine.finish(WorkloadId("old"))
    clock.advance(100)
    engine.submit(wl("recent", CPU=1, created=2))
    engine.cancel(WorkloadId("recent"))
    assert engine.forget_finished(older_than=50) == [WorkloadId("old")]
    assert sorted(s.spec.id for s in engine.workloads()) == ["recent", "running"]
    with pytest.raises(UnknownWorkloadError):
        engine.workload(WorkloadId("old"))


def test_restore_keeps_queue_usage_for_usage_based_fair_sharing() -> None:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 10))
        .usage_fair_sharing()
    )
    afs = ConfigBuilder().cluster_queue(cq, "qa", "qb").usage_half_life(600).build()
    engine, clock = new_engine(afs)
    engine.submit(wl("a0", "qa", CPU=8))
    engine.schedule()
    engine.finish(WorkloadId("a0"))
    twin = Engine.restore(afs, ManualClock(clock.now()), engine.workloads())
    for e in (engine, twin):
        e.submit(wl("a1", "qa", CPU=10, created=1))
        e.submit(wl("b1", "qb", CPU=10, created=2))
    # qa used 0.8 of the ClusterQueue moments ago, so qb goes first, restored or not.
    assert [d.workload for d in engine.schedule()] == ["b1"]
    assert [d.workload for d in twin.schedule()] == ["b1"]


def test_restore_does_not_turn_a_strict_fifo_blocked_reason_into_a_message() -> None:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    strict = ConfigBuilder().cluster_queue(cq.strict_fifo(), "q").build()
    engine, clock = new_engine(strict)
    engine.submit(wl("filler", CPU=6))
    engine.schedule()
    engine.submit(wl("big", CPU=8, created=1))
    engine.submit(wl("small", CPU=2, created=2))
    engine.schedule()
    # "small" waits behind the blocked head and shows the head's reason while it does.
    assert "CPU" in engine.workload(WorkloadId("small")).message
    twin = Engine.restore(strict, ManualClock(clock.now()), engine.workloads())
    assert twin.workloads() == engine.workloads()
    for e in (engine, twin):
        e.finish(WorkloadId("filler"))
    # The queue is unblocked: the borrowed reason must not stick to "small" after restore.
    assert twin.workloads() == engine.workloads()
    assert engine.schedule() == twin.schedule()
