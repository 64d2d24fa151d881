"""LocalProvider on a real local Ray cluster, driven by a real Engine.

A head with 1 CPU and no GPU; a queued gang of two GPU bundles is admitted by the engine,
its real placement group stays pending until the autoscaler adds a GPU node, then becomes
ready; once the work is done the node is drained and removed after the idle timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.planner import PlannerConfig
from autoscaler.providers.local import LocalGroupSpec, LocalProvider
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.config import (
    ClusterQueue,
    FlavorQuotas,
    Queue,
    QueueConfig,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
)
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadSpec, WorkloadState
from tests.k8s.process import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

GROUP = "gpu-workers"
IDLE_TIMEOUT_S = 2.0


def queue_config() -> QueueConfig:
    flavor = ResourceFlavor(name="gpu", node_labels={"accel": "test-gpu"}, worker_group=GROUP)
    cq = ClusterQueue(
        name="cq",
        resource_groups=(
            ResourceGroup(
                covered_resources=("CPU", "GPU"),
                flavors=(
                    FlavorQuotas(
                        "gpu", (ResourceQuota("CPU", 4000), ResourceQuota("GPU", 4000))
                    ),
                ),
            ),
        ),
    )
    return QueueConfig(
        flavors={"gpu": flavor},
        cluster_queues={"cq": cq},
        queues={"team": Queue(name="team", cluster_queue="cq")},
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "object_store_memory": 80 * 1024 * 1024,
            "include_dashboard": False,
        },
    )
    try:
        ray.init(address=c.address)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture
def provider(cluster: Any) -> Iterator[LocalProvider]:
    p = LocalProvider(
        cluster.address,
        [
            LocalGroupSpec(
                name=GROUP,
                shape={"CPU": 1000, "GPU": 2000},
                max_replicas=2,
                labels={"accel": "test-gpu"},
            )
        ],
        cluster=cluster,
    )
    try:
        yield p
    finally:
        p.shutdown()


def replicas(provider: LocalProvider) -> int:
    (group,) = provider.groups()
    return group.replicas


def test_grows_for_a_queued_gpu_gang_and_removes_the_idle_node(provider: LocalProvider) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    engine = Engine(queue_config(), SystemClock())
    gang = WorkloadId("train")
    engine.submit(
        WorkloadSpec(
            id=gang,
            queue="team",
            bundle_groups=(BundleGroup({"GPU": 1000}, count=2),),
            created_at=0.0,
        )
    )
    engine.schedule()
    assert engine.workload(gang).state is WorkloadState.ADMITTED
    assert ray.cluster_resources().get("GPU", 0) == 0

    loop = Reconciler(
        InProcessSource(engine),
        provider,
        config=LoopConfig(planner=PlannerConfig(idle_timeout_s=IDLE_TIMEOUT_S)),
    )
    # As the manager does on admission: the placement group exists, and Ray cannot place it.
    pg = placement_group([{"GPU": 1}, {"GPU": 1}], strategy="PACK")
    wait_for(lambda: provider.pending_gangs(), 30, what="Ray to report the pending group")
    first = loop.run_once().plan
    assert [(s.group, s.from_replicas, s.to_replicas) for s in first.scale_ups] == [(GROUP, 0, 1)]

    extra_scale_ups: list[object] = []

    def placed() -> bool:
        # Passes while the node joins (and right after the group is placed, before the
        # engine hears of it) must not ask for a second node. Recorded, not asserted:
        # wait_for treats an exception in its predicate as "not yet".
        extra_scale_ups.extend(loop.run_once().plan.scale_ups)
        ready, _ = ray.wait([pg.ready()], timeout=0.5)
        return bool(ready)

    wait_for(placed, 90, what="the GPU placement group to be placed")
    # Ray placed it but the engine does not know yet: still no second node.
    extra_scale_ups.extend(loop.run_once().plan.scale_ups)
    assert extra_scale_ups == []
    assert replicas(provider) == 1
    assert engine.mark_placed(gang)
    assert engine.demand() == []

    # Busy with the gang: once Ray reports the bundles on the node, it is never chosen,
    # however long the gang runs (and Ray refuses an idle-drain of a busy node anyway).
    wait_for(lambda: provider.groups()[0].nodes[0].busy, 30, what="Ray to see the node busy")
    assert loop.run_once().plan.deletions == ()
    assert replicas(provider) == 1

    remove_placement_group(pg)
    engine.finish(gang)

    def scaled_down() -> bool:
        loop.run_once()
        return replicas(provider) == 0

    wait_for(scaled_down, 90, interval_s=0.5, what="the idle GPU node to be removed")
    wait_for(lambda: ray.cluster_resources().get("GPU", 0) == 0, 30, what="GPUs to leave Ray")


def test_demand_past_the_maximum_stops_at_the_maximum(provider: LocalProvider) -> None:
    engine = Engine(queue_config(), SystemClock())
    # Three STRICT_SPREAD GPU bundles need three nodes; the group allows two.
    from ray_queue.engine.model import PlacementStrategy

    engine.submit(
        WorkloadSpec(
            id=WorkloadId("wide"),
            queue="team",
            bundle_groups=(BundleGroup({"GPU": 1000}, count=3),),
            created_at=0.0,
            strategy=PlacementStrategy.STRICT_SPREAD,
        )
    )
    engine.schedule()
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"GPU": 1}] * 3, strategy="STRICT_SPREAD")
    try:
        wait_for(lambda: provider.pending_gangs(), 30, what="Ray to report the pending group")
        loop = Reconciler(InProcessSource(engine), provider)
        result = loop.run_once().plan
        assert result.scale_ups == ()
        assert [u.workload for _, u in result.unplaceable] == ["wide"]
        assert replicas(provider) == 0
    finally:
        remove_placement_group(pg)
