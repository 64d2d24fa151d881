"""Incremental scaling end to end: the real API server, the real KubeRay operator, Pods
turned into real Ray nodes by the node simulator, and a real Engine as the demand source.

A pending gang grows the worker group; its placement group lands on the new node; once the
work is done and the node idle past the timeout it is drained in Ray and deleted by name
through ``scaleStrategy.workersToDelete``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.planner import PlannerConfig
from autoscaler.providers.kuberay import KubeRayProvider
from autoscaler.provisioning import ProvisioningClient
from autoscaler.ray_nodes import RayGcs
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import WorkloadId, WorkloadState
from tests.autoscaler.k8s_fixtures import RAY, queue_config, raycluster, spec, worker_group
from tests.k8s.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.ray, pytest.mark.timeout(420)]

CLUSTER = "rs"
GROUP = "cpu-workers"


class RecordingGcs(RayGcs):
    """The real GCS client, remembering every drain it was asked for."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.drains: list[tuple[str, bool]] = []

    def drain(self, node_id: str, *, message: str, deadline_s: float = 0.0) -> tuple[bool, str]:
        accepted, why = super().drain(node_id, message=message, deadline_s=deadline_s)
        self.drains.append((node_id, accepted))
        return accepted, why


@pytest.fixture(scope="module")
def cluster(
    k8s_api: Any, k8s_namespace: str, kuberay_operator: Any, node_simulator: Any
) -> Iterator[str]:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)
    body = raycluster(CLUSTER, worker_group(GROUP, cpu="1", max_replicas=2, labels="pool=cpu"))
    custom.create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], body)
    try:
        yield CLUSTER
    finally:
        custom.delete_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)


def test_pending_gang_scales_up_then_idle_node_is_drained_and_deleted(
    k8s_api: Any, k8s_namespace: str, cluster: str, ray_head: Any, node_simulator: Any
) -> None:
    import ray
    from kubernetes import client
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    core = client.CoreV1Api(k8s_api.api_client)
    custom = client.CustomObjectsApi(k8s_api.api_client)
    engine = Engine(queue_config(), SystemClock())
    etl = WorkloadId("etl")
    engine.submit(spec("etl", "cpu", {"CPU": 500}, 2))
    engine.schedule()
    assert engine.workload(etl).state is WorkloadState.ADMITTED

    gcs = RecordingGcs(ray_head.address)
    provider = KubeRayProvider(
        k8s_api.api_client, cluster_name=CLUSTER, namespace=k8s_namespace, gcs=gcs
    )
    loop = Reconciler(
        InProcessSource(engine),
        provider,
        requests=ProvisioningClient(
            k8s_api.api_client, cluster_name=CLUSTER, namespace=k8s_namespace
        ),
        config=LoopConfig(planner=PlannerConfig(idle_timeout_s=3.0)),
    )
    (group,) = provider.groups()
    assert group.shape["CPU"] == 1000 and group.labels["pool"] == "cpu"


    def worker_pods() -> list[str]:
        listed = core.list_namespaced_pod(
            k8s_namespace, label_selector=f"ray.io/cluster={CLUSTER},ray.io/group={GROUP}"
        )
        live = (p for p in listed.items if p.metadata.deletion_timestamp is None)
        return sorted(p.metadata.name for p in live)

    ray.init(address=ray_head.address, logging_level=logging.ERROR)
    try:
        # As the manager does on admission: the group exists, and Ray cannot place it.
        pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK")
        wait_for(lambda: provider.pending_gangs(), 30, what="Ray to report the pending group")
        first = loop.run_once().plan
        assert [(s.group, s.from_replicas, s.to_replicas) for s in first.scale_ups] == [
            (GROUP, 0, 1)
        ]

        extra_scale_ups: list[object] = []

        def placed() -> bool:
            # However long the node takes to join, no pass asks for a second one (recorded,
            # not asserted: wait_for treats an exception in its predicate as "not yet").
            extra_scale_ups.extend(loop.run_once().plan.scale_ups)
            ready, _ = ray.wait([pg.ready()], timeout=0.5)
            return bool(ready)

        wait_for(placed, 240, interval_s=1.0, what="the gang's placement group on the new node")
        # Ray placed it but the engine does not know yet: still no second node.
        extra_scale_ups.extend(loop.run_once().plan.scale_ups)
        assert extra_scale_ups == []
        # The Pod whose Ray node holds the gang. (Under load KubeRay may briefly run an extra
        # Pod of its own — e.g. replacing one it judged unhealthy — which is not ours to count.)
        bundle_nodes = set(placement_group_table(pg)["bundles_to_node_id"].values())
        (pod,) = {n.instance_id for n in gcs.nodes() if n.node_id in bundle_nodes}
        assert pod in worker_pods()
        rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)
        assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 1, worker_pods()
        assert engine.mark_placed(etl)

        wait_for(
            lambda: any(n.busy for n in provider.groups()[0].nodes if n.name == pod), 30,
            what="Ray to see the node busy",
        )
        assert all(pod not in d.workers for d in loop.run_once().plan.deletions)

        remove_placement_group(pg)
        engine.finish(etl)

        def removed() -> bool:
            loop.run_once()
            return worker_pods() == []

        wait_for(removed, 120, interval_s=1.0, what="the idle worker to be drained and deleted")
        rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)
        spec_ = rc["spec"]["workerGroupSpecs"][0]
        assert spec_["replicas"] == 0
        assert pod in spec_["scaleStrategy"]["workersToDelete"]
        assert gcs.drains and all(accepted for _, accepted in gcs.drains)
        wait_for(
            lambda: all(n.instance_id != pod for n in gcs.nodes() if n.alive),
            60,
            what="the drained node to leave Ray",
        )
    finally:
        ray.shutdown()
