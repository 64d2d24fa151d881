"""An admitted workload Ray has not placed says why, as far as node shapes tell."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import ResourceFlavor
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import WorkloadId, WorkloadState, to_milli
from ray_queue.errors import WorkloadRejected
from ray_queue.manager.core import ManagerCore
from ray_queue.metrics import QueueMetrics
from ray_queue.store.base import MemoryStore
from ray_queue.wire import NodeShape, WorkerGroupShape
from tests.manager.configs import A100, teams_config
from tests.manager.fakes import RecordingActions
from tests.manager.test_core import req


def _core(worker_group: str | None = None) -> ManagerCore:
    config = teams_config(cpu=8, gpu=8)
    config = dataclasses.replace(
        config, flavors={"a100": ResourceFlavor("a100", A100, worker_group=worker_group)}
    )
    return ManagerCore(
        Engine(config, ManualClock()), MemoryStore(), RecordingActions(), ManualClock()
    )


def _node(gpus: float) -> NodeShape:
    return NodeShape("n1", A100, {"GPU": to_milli(gpus), "CPU": to_milli(4)})


def test_no_node_of_the_flavor_is_named_with_its_labels() -> None:
    core = _core()
    core.set_nodes([NodeShape("cpu-only", {}, {"CPU": to_milli(4)})])
    core.submit_many([req("w1", gpu=1)])
    status = core.workload(WorkloadId("w1"))
    assert status.state is WorkloadState.ADMITTED and not status.placed
    assert "not placed: no alive node of flavor a100" in status.message
    assert "ray.io/accelerator-type=A100" in status.message
    assert "start nodes with those labels" in status.message


def test_a_bundle_larger_than_every_node_of_an_autoscaled_flavor_waits_for_one() -> None:
    core = _core(worker_group="gpu-group")
    core.set_nodes([_node(2)])
    core.submit_many([req("w1", gpu=4)])
    (status,) = core.workloads(ids=[WorkloadId("w1")])
    assert "larger than every node of flavor a100" in status.message
    assert "worker group 'gpu-group'" in status.message


def test_a_placed_workload_says_nothing_more() -> None:
    core = _core()
    core.set_nodes([_node(2)])
    core.submit_many([req("w1", gpu=1)])
    before = core.workload(WorkloadId("w1"))
    assert "not placed: Ray has not placed it yet" in before.message
    core.mark_placed(WorkloadId("w1"), core.unplaced_placement_groups()[WorkloadId("w1")])
    after = core.workload(WorkloadId("w1"))
    assert after.placed and "not placed" not in after.message


def test_unplaced_workloads_are_counted_by_reason_in_the_metrics() -> None:
    core = _core()
    core.set_nodes([NodeShape("cpu-only", {}, {"CPU": to_milli(4)})])
    core.submit_many([req("w1", gpu=1), req("w2", gpu=1)])
    registry = CollectorRegistry()
    QueueMetrics(registry, core.metrics_snapshot)

    def unplaced(reason: str) -> float | None:
        return registry.get_sample_value(
            "ray_queue_unplaced_workloads", {"cluster_queue": "cq-a", "reason": reason}
        )

    assert unplaced("no_node") == 2 and unplaced("nodes_busy") == 0
    core.set_nodes([_node(2)])
    assert unplaced("no_node") == 0 and unplaced("nodes_busy") == 2
    core.mark_placed(WorkloadId("w1"), core.unplaced_placement_groups()[WorkloadId("w1")])
    assert unplaced("nodes_busy") == 1


def test_a_bundle_no_node_of_the_autoscaled_group_could_hold_is_refused_at_submission() -> None:
    core = _core(worker_group="gpu-group")
    core.set_nodes([NodeShape("cpu-only", {}, {"CPU": to_milli(4)})])
    # Before the autoscaler says what the group's nodes offer, bigger ones may come.
    (may,) = core.submit_many([req("w0", gpu=6)])
    assert may.error is None
    core.set_worker_groups([WorkerGroupShape("gpu-group", {"GPU": to_milli(4), "CPU": 8000})])
    (refused,) = core.submit_many([req("w1", gpu=6)])
    assert isinstance(refused.error, WorkloadRejected)
    assert "larger than every node of flavors ['a100']" in str(refused.error)
    assert "worker groups can add (largest: {GPU: 4})" in str(refused.error)
    (fits,) = core.submit_many([req("w2", gpu=4)])
    assert fits.error is None
