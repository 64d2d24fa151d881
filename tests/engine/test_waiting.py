"""``preemption.waitBeforePreemptingSeconds``: a head that could preempt waits first,
its queue's free nominal quota held for it, then preempts as Kueue would (a departure,
docs/design.md "Waiting before preempting")."""

from __future__ import annotations

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import ReclaimWithinCohort, WithinClusterQueue
from ray_queue.engine.config_loader import dump_yaml, parse_yaml
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import ConfigError
from ray_queue.engine.model import DecisionKind, WorkloadId, WorkloadState
from tests.engine.builders import ClusterQueueBuilder, ConfigBuilder, WorkloadBuilder, flavor

ADMIT = DecisionKind.ADMIT
PREEMPT = DecisionKind.PREEMPT
S = WorkloadState


def cq(name: str, nominal: float, *, wait_s: float = 0.0) -> ClusterQueueBuilder:
    return (
        ClusterQueueBuilder(name)
        .cohort("co")
        .resource_group(flavor("default").resource("CPU", nominal))
        .preemption(
            within=WithinClusterQueue.LOWER_PRIORITY,
            reclaim=ReclaimWithinCohort.ANY,
            wait_s=wait_s,
        )
    )


def new_engine(wait_s: float) -> tuple[Engine, ManualClock]:
    """ClusterQueue ``a`` (4 CPU, waits ``wait_s``) and ``b`` (no quota) in one cohort."""
    builder = ConfigBuilder().priorities(low=1, high=10)
    builder.cluster_queue(cq("a", 4, wait_s=wait_s), "qa")
    builder.cluster_queue(cq("b", 0), "qb")
    clock = ManualClock(0.0)
    return Engine(builder.build(), clock), clock


def submit(engine: Engine, workload: str, queue: str, cpu: float, priority: str) -> None:
    created = engine.workloads()[-1].spec.created_at + 1 if engine.workloads() else 0.0
    engine.submit(
        WorkloadBuilder(workload)
        .queue(queue)
        .bundles({"CPU": cpu})
        .priority(priority)
        .created(created)
        .build()
    )


def kinds(engine: Engine) -> list[tuple[DecisionKind, str]]:
    return [(d.kind, d.workload) for d in engine.schedule()]


def fill_with_low_work(engine: Engine) -> None:
    submit(engine, "low1", "qa", 2, "low")
    submit(engine, "low2", "qa", 2, "low")
    assert kinds(engine) == [(ADMIT, "low1"), (ADMIT, "low2")]


def test_without_a_wait_the_head_preempts_at_once_as_kueue_does() -> None:
    engine, _ = new_engine(0.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    assert kinds(engine) == [(PREEMPT, "low2"), (PREEMPT, "low1"), (ADMIT, "high")]
    assert engine.next_wakeup_at() is None


def test_a_head_that_waits_is_admitted_without_preempting_when_quota_frees_in_time() -> None:
    engine, clock = new_engine(2.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    assert kinds(engine) == []
    status = engine.workload(WorkloadId("high"))
    assert status.state is S.PENDING
    assert status.set_aside
    assert "waits up to 2s for quota to free before it preempts" in status.message
    assert engine.next_wakeup_at() == 2.0
    clock.set(1.0)
    engine.finish(WorkloadId("low1"))
    engine.finish(WorkloadId("low2"))
    assert kinds(engine) == [(ADMIT, "high")]
    assert engine.next_wakeup_at() is None


def test_quota_freed_while_it_waits_is_held_for_it_against_its_queue_and_the_cohort() -> None:
    engine, clock = new_engine(2.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    assert kinds(engine) == []
    # Lower-priority work of its own queue, and a borrower from the cohort, both fit in
    # what low1 frees; neither gets it.
    submit(engine, "low3", "qa", 2, "low")
    submit(engine, "borrower", "qb", 2, "low")
    clock.set(0.5)
    engine.finish(WorkloadId("low1"))
    assert kinds(engine) == []
    assert engine.state(WorkloadId("low3")) is S.PENDING
    assert engine.state(WorkloadId("borrower")) is S.PENDING
    clock.set(1.0)
    engine.finish(WorkloadId("low2"))
    assert kinds(engine) == [(ADMIT, "high")]


def test_when_its_wait_is_over_it_preempts_what_still_holds_its_quota() -> None:
    engine, clock = new_engine(2.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    assert kinds(engine) == []
    clock.set(0.5)
    engine.finish(WorkloadId("low1"))
    assert kinds(engine) == []
    clock.set(2.0)
    # Only what is still missing is preempted.
    assert kinds(engine) == [(PREEMPT, "low2"), (ADMIT, "high")]


def test_a_cancelled_waiting_head_lets_go_of_what_was_held_for_it() -> None:
    engine, clock = new_engine(2.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    submit(engine, "low3", "qa", 2, "low")
    assert kinds(engine) == []
    clock.set(0.5)
    engine.finish(WorkloadId("low1"))
    assert kinds(engine) == []
    engine.cancel(WorkloadId("high"))
    assert kinds(engine) == [(ADMIT, "low3")]
    assert engine.next_wakeup_at() is None


def test_holds_never_show_in_status() -> None:
    engine, clock = new_engine(2.0)
    fill_with_low_work(engine)
    submit(engine, "high", "qa", 4, "high")
    engine.schedule()
    clock.set(0.5)
    engine.finish(WorkloadId("low1"))
    engine.schedule()
    usage = {s.name: sum(r.usage for r in s.resources) for s in engine.cluster_queue_status()}
    assert usage == {"a": 2000, "b": 0}


# -- the setting in Kueue-format YAML ------------------------------------------------------

YAML = """
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: a}
spec:
  preemption:
    withinClusterQueue: LowerPriority
    waitBeforePreemptingSeconds: %s
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: default
      resources: [{name: CPU, nominalQuota: 4}]
"""


def test_the_wait_is_read_from_yaml_and_written_back() -> None:
    config = parse_yaml(YAML % '"1m30s"')
    assert config.cluster_queues["a"].preemption.wait_before_preempting_s == 90.0
    assert parse_yaml(dump_yaml(config)) == config
    assert parse_yaml(YAML % "0").cluster_queues["a"].preemption.wait_before_preempting_s == 0.0


def test_a_negative_wait_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="waitBeforePreemptingSeconds: must be >= 0"):
        parse_yaml(YAML % "-1")
