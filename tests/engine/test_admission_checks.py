"""Admission checks and the time-driven evictions: Pending/Ready/Retry/Rejected, the
back-off schedule under a ManualClock, the back-off limit, and the placement timeout.

Back-off for the n-th requeue is min(base * 2**(n-1), max): with base 10 s and max 25 s
the waits are 10, 20, 25, 25, ...
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import CheckState, Decision, DecisionKind, WorkloadId, WorkloadState
from tests.engine.builders import (
    ClusterQueueBuilder,
    ConfigBuilder,
    flavor,
    new_engine,
    state,
    used,
    wl,
)

pytestmark = pytest.mark.timeout(30)
S = WorkloadState
K = DecisionKind
W = WorkloadId("w")


def checked(*checks: str, limit: int | None = 3) -> QueueConfig:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    builder = ConfigBuilder().requeuing(base_s=10, max_s=25, limit=limit)
    for check in checks:
        cq.admission_check(check)
        builder.admission_check(check)
    return builder.cluster_queue(cq, "q").build()


def kinds(decisions: Sequence[Decision]) -> list[tuple[DecisionKind, str]]:
    return [(d.kind, d.workload) for d in decisions]


def reserved(
    checks: tuple[str, ...] = ("prov",), limit: int | None = 3
) -> tuple[Engine, ManualClock]:
    engine, clock = new_engine(checked(*checks, limit=limit))
    engine.submit(wl("w", CPU=4))
    decisions = engine.schedule()
    assert kinds(decisions) == [(K.RESERVE, "w")]
    assert decisions[0].admission is not None
    return engine, clock


def test_quota_is_reserved_until_every_check_is_ready() -> None:
    engine, _ = reserved(("prov", "budget"))
    status = engine.workload(W)
    assert status.state is S.QUOTA_RESERVED
    assert dict(status.checks) == {"prov": CheckState.PENDING, "budget": CheckState.PENDING}
    assert used(engine, "cq", "default", "CPU") == 4
    assert engine.set_check_state(W, "prov", CheckState.READY) == []
    assert state(engine, "w") is S.QUOTA_RESERVED
    decisions = engine.set_check_state(W, "budget", CheckState.READY)
    assert kinds(decisions) == [(K.ADMIT, "w")]
    assert decisions[0].admission is not None
    status = engine.workload(W)
    assert status.state is S.ADMITTED
    edges = [(t.from_state, t.to_state) for t in status.history[1:]]
    assert edges == [(S.PENDING, S.QUOTA_RESERVED), (S.QUOTA_RESERVED, S.ADMITTED)]
    assert used(engine, "cq", "default", "CPU") == 4


def test_checks_apply_only_to_the_flavors_they_name() -> None:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("cheap").resource("CPU", 2), flavor("big").resource("CPU", 10))
        .admission_check("prov", "big")
    )
    engine, _ = new_engine(ConfigBuilder().admission_check("prov").cluster_queue(cq, "q").build())
    engine.submit(wl("small", CPU=2))
    engine.submit(wl("large", CPU=4, created=1))
    assert kinds(engine.schedule()) == [(K.ADMIT, "small"), (K.RESERVE, "large")]


def test_a_reserved_workload_is_listed_as_demand() -> None:
    engine, _ = reserved()
    (demand,) = engine.demand()
    assert (demand.workload, demand.flavor, demand.state) == ("w", "default", S.QUOTA_RESERVED)
    assert demand.bundles == ({"CPU": 4000},)


def test_rejected_check_rejects_for_good_and_frees_quota() -> None:
    engine, clock = reserved()
    decisions = engine.set_check_state(W, "prov", CheckState.REJECTED, "no capacity anywhere")
    assert kinds(decisions) == [(K.REJECT, "w")]
    assert state(engine, "w") is S.REJECTED
    assert used(engine, "cq", "default", "CPU") == 0
    clock.advance(10_000)
    assert engine.schedule() == []
    assert state(engine, "w") is S.REJECTED


def test_retry_backs_off_doubling_up_to_the_max_then_rejects_past_the_limit() -> None:
    engine, clock = reserved(limit=3)
    expected_waits = [10, 20, 25]
    for n, wait in enumerate(expected_waits, start=1):
        decisions = engine.set_check_state(W, "prov", CheckState.RETRY, "try later")
        assert kinds(decisions) == [(K.EVICT, "w")]
        status = engine.workload(W)
        assert status.state is S.EVICTED
        assert status.requeue_count == n
        assert status.requeue_at == clock.now() + wait
        assert used(engine, "cq", "default", "CPU") == 0
        # One tick before the back-off ends nothing happens ...
        clock.advance(wait - 0.5)
        assert engine.schedule() == []
        assert state(engine, "w") is S.EVICTED
        # ... and when it ends the workload is back in line and reserves again at once.
        clock.advance(0.5)
        assert kinds(engine.schedule()) == [(K.RESERVE, "w")]
        assert engine.workload(W).checks == {"prov": CheckState.PENDING}
    # The fourth retry is past the limit of 3 requeues.
    decisions = engine.set_check_state(W, "prov", CheckState.RETRY)
    assert kinds(decisions) == [(K.REJECT, "w")]
    assert state(engine, "w") is S.REJECTED
    assert used(engine, "cq", "default", "CPU") == 0


def test_without_a_limit_retries_go_on() -> None:
    engine, clock = reserved(limit=None)
    for _ in range(6):
        assert kinds(engine.set_check_state(W, "prov", CheckState.RETRY)) == [(K.EVICT, "w")]
        clock.advance(25)
        assert kinds(engine.schedule()) == [(K.RESERVE, "w")]
    assert engine.workload(W).requeue_count == 6


def test_reports_for_workloads_not_waiting_on_the_check_are_ignored() -> None:
    engine, _ = reserved()
    assert engine.set_check_state(W, "other", CheckState.REJECTED) == []
    assert state(engine, "w") is S.QUOTA_RESERVED
    engine.set_check_state(W, "prov", CheckState.READY)
    # A duplicate or late report changes nothing.
    assert engine.set_check_state(W, "prov", CheckState.RETRY) == []
    assert state(engine, "w") is S.ADMITTED


def test_a_retry_frees_quota_for_the_next_workload() -> None:
    engine, _ = reserved()
    engine.submit(wl("next", CPU=8, created=1))
    assert engine.schedule() == []  # 6 free
    engine.set_check_state(W, "prov", CheckState.RETRY)
    assert kinds(engine.schedule()) == [(K.RESERVE, "next")]


# -- placement timeout ---------------------------------------------------------------------


def placement(timeout_s: float = 300, limit: int | None = 3) -> tuple[Engine, ManualClock]:
    cq = ClusterQueueBuilder("cq").resource_group(flavor("default").resource("CPU", 10))
    config = (
        ConfigBuilder()
        .cluster_queue(cq, "q")
        .wait_for_placement(timeout_s)
        .requeuing(base_s=10, max_s=25, limit=limit)
        .build()
    )
    return new_engine(config)


def test_admitted_work_not_placed_in_time_is_evicted_with_backoff() -> None:
    engine, clock = placement()
    engine.submit(wl("w", CPU=4))
    engine.submit(wl("placed", CPU=4, created=1))
    engine.schedule()
    assert engine.mark_placed(WorkloadId("placed")) is True
    clock.advance(299)
    assert engine.schedule() == []
    clock.advance(1)
    decisions = engine.schedule()
    assert [(d.kind, d.workload, d.reason) for d in decisions] == [
        (K.EVICT, "w", "PlacementTimeout")
    ]
    status = engine.workload(W)
    assert status.state is S.EVICTED
    assert status.requeue_at == 310
    assert state(engine, "placed") is S.ADMITTED
    assert used(engine, "cq", "default", "CPU") == 4
    # Readmitted when the back-off ends; a fresh deadline starts then.
    clock.set(310)
    assert kinds(engine.schedule()) == [(K.ADMIT, "w")]
    clock.set(609)
    assert engine.schedule() == []
    clock.set(610)
    assert kinds(engine.schedule()) == [(K.EVICT, "w")]


def test_placement_timeouts_count_toward_the_backoff_limit() -> None:
    engine, clock = placement(timeout_s=100, limit=1)
    engine.submit(wl("w", CPU=4))
    engine.schedule()
    clock.advance(100)
    assert kinds(engine.schedule()) == [(K.EVICT, "w")]
    clock.advance(10)
    assert kinds(engine.schedule()) == [(K.ADMIT, "w")]
    clock.advance(100)
    assert kinds(engine.schedule()) == [(K.REJECT, "w")]
    assert state(engine, "w") is S.REJECTED


def test_marking_placed_after_eviction_is_harmless() -> None:
    engine, clock = placement(timeout_s=100)
    engine.submit(wl("w", CPU=4))
    engine.schedule()
    clock.advance(100)
    engine.schedule()
    assert engine.mark_placed(W) is False
    assert state(engine, "w") is S.EVICTED


def test_capacity_revoked_evicts_with_backoff() -> None:
    engine, clock = placement()
    engine.submit(wl("w", CPU=4))
    engine.schedule()
    engine.mark_placed(W)
    decisions = engine.evict(W, reason="CapacityRevoked", message="node lost")
    assert [(d.kind, d.reason) for d in decisions] == [(K.EVICT, "CapacityRevoked")]
    assert engine.workload(W).requeue_at == clock.now() + 10
    assert used(engine, "cq", "default", "CPU") == 0
