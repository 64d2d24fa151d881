"""All-at-once gangs through real ProvisioningRequests, and multi-host slices, on the real
Kubernetes API with the real KubeRay operator. The test plays cluster-autoscaler: it sets
the request's conditions. No Ray nodes join here (no node simulator), so the worker Pods
stay Pending — which is also what a slow cloud looks like.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.planner import PlannerConfig
from autoscaler.providers.base import GangGroup
from autoscaler.providers.kuberay import CONSUME_ANNOTATION, KubeRayProvider
from autoscaler.provisioning import ProvisioningClient
from autoscaler.requests import gang_group_name, request_name
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import ManualClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import PlacementStrategy, WorkloadId, WorkloadState
from tests.autoscaler.k8s_fixtures import (
    PR,
    RAY,
    queue_config,
    raycluster,
    set_condition,
    spec,
    worker_group,
)
from tests.k8s.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

CLUSTER = "rc"
GPU_BUNDLE = {"GPU": 2000, "CPU": 1000}


@pytest.fixture(scope="module")
def cluster(k8s_api: Any, k8s_namespace: str, kuberay_operator: Any) -> Iterator[str]:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)
    body = raycluster(
        CLUSTER,
        worker_group("cpu-workers", cpu="1"),
        worker_group("gpu-workers", cpu="2", gpu="4", max_replicas=4),
        worker_group("tpu-slices", cpu="1", tpu="4", hosts=2, max_replicas=3),
    )
    custom.create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], body)
    try:
        yield CLUSTER
    finally:
        custom.delete_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)


class Env:
    """A real Engine and the Kubernetes clients a (re)started autoscaler would build."""

    def __init__(self, k8s_api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = k8s_api.api_client
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.clock = ManualClock(1000.0)
        self.engine = Engine(queue_config(), self.clock)

    def autoscaler(self) -> Reconciler:
        """A fresh autoscaler: new clients, no memory of earlier passes (a restart)."""
        return Reconciler(
            InProcessSource(self.engine),
            KubeRayProvider(self.api, cluster_name=CLUSTER, namespace=self.namespace),
            requests=ProvisioningClient(self.api, cluster_name=CLUSTER, namespace=self.namespace),
            config=LoopConfig(planner=PlannerConfig(idle_timeout_s=3600)),
            clock=self.clock,
        )

    def requests(self) -> dict[str, Any]:
        items = self.custom.list_namespaced_custom_object(*PR[:2], self.namespace, PR[2])
        return {i["metadata"]["name"]: i for i in items["items"]}

    def templates(self) -> set[str]:
        listed = self.core.list_namespaced_pod_template(self.namespace)
        return {t.metadata.name for t in listed.items}

    def groups(self) -> dict[str, Any]:
        rc = self.custom.get_namespaced_custom_object(*RAY[:2], self.namespace, RAY[2], CLUSTER)
        return {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}

    def pods(self, group: str) -> list[Any]:
        listed = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"ray.io/cluster={CLUSTER},ray.io/group={group}"
        )
        return [p for p in listed.items if p.metadata.deletion_timestamp is None]

    def submit(self, workload: str, count: int = 2) -> WorkloadId:
        self.engine.submit(spec(workload, "gpu", GPU_BUNDLE, count))
        self.engine.schedule()
        wid = WorkloadId(workload)
        assert self.engine.workload(wid).state is WorkloadState.QUOTA_RESERVED
        return wid

    def state(self, workload: WorkloadId) -> WorkloadState:
        return self.engine.workload(workload).state

    def clean(self, workload: WorkloadId) -> None:
        """Finish or forget ``workload`` and pass until nothing of it is left."""
        if self.state(workload).holds_quota:
            self.engine.finish(workload)
        loop = self.autoscaler()

        def gone() -> bool:
            loop.run_once()
            return not any(
                g.startswith("gpu-workers-g") for g in self.groups()
            ) and not self.requests() and not self.templates()

        wait_for(gone, 90, interval_s=0.5, what=f"everything of {workload} to be cleaned up")


@pytest.fixture
def env(k8s_api: Any, k8s_namespace: str, cluster: str) -> Iterator[Env]:
    e = Env(k8s_api, k8s_namespace)
    yield e
    for workload in [s.spec.id for s in e.engine.workloads()]:
        e.clean(workload)


def test_provisioned_gang_gets_its_own_group_and_is_admitted(env: Env) -> None:
    train = env.submit("train")
    name = request_name(train, 0)

    first = env.autoscaler().run_once().plan
    assert [s.name for s in first.create_requests] == [name]
    assert first.scale_ups == ()  # nothing scales before the request is provisioned
    request = env.requests()[name]
    assert request["spec"]["provisioningClassName"] == (
        "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
    )
    assert request["spec"]["podSets"] == [{"podTemplateRef": {"name": name}, "count": 1}]
    template = env.core.read_namespaced_pod_template(name, env.namespace)
    assert template.template.metadata.annotations[CONSUME_ANNOTATION] == name
    assert template.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"

    # A restarted autoscaler finds the request instead of making another.
    assert env.autoscaler().run_once().plan.empty
    assert list(env.requests()) == [name]
    assert env.state(train) is WorkloadState.QUOTA_RESERVED

    set_condition(env.custom, env.namespace, name, "Accepted")
    assert env.autoscaler().run_once().plan.empty

    set_condition(env.custom, env.namespace, name, "Provisioned")
    env.autoscaler().run_once()
    assert env.state(train) is WorkloadState.ADMITTED
    group = gang_group_name("gpu-workers", train, 0)
    spec_ = env.groups()[group]
    assert spec_["replicas"] == 1
    annotations = spec_["template"]["metadata"]["annotations"]
    assert annotations[CONSUME_ANNOTATION] == name
    assert env.groups()["gpu-workers"]["replicas"] == 0  # the shared group is untouched

    pods = wait_for(lambda: env.pods(group), 60, what="KubeRay to create the gang's pod")
    assert pods[0].metadata.annotations[CONSUME_ANNOTATION] == name

    # Admitted, still unplaced: later passes change nothing (no second group).
    assert env.autoscaler().run_once().plan.empty
    env.clean(train)


@pytest.mark.parametrize("condition", ["Failed", "BookingExpired"])
def test_failed_and_expired_requests_retry_then_reject(env: Env, condition: str) -> None:
    job = env.submit(f"retry-{condition.lower()}")
    for attempt in range(3):
        name = request_name(job, attempt)
        env.autoscaler().run_once()
        assert name in env.requests(), f"attempt {attempt} made no request"
        set_condition(env.custom, env.namespace, name, condition, "out of GPUs in the zone")
        result = env.autoscaler().run_once().plan
        assert [r.state.value for r in result.reports] == ["Retry"]
        assert name not in env.requests() and name not in env.templates()
        status = env.engine.workload(job)
        if attempt < 2:
            assert status.state in (WorkloadState.PENDING, WorkloadState.EVICTED)
            assert status.requeue_count == attempt + 1
            env.clock.advance(2.0)
            env.engine.schedule()
            assert env.state(job) is WorkloadState.QUOTA_RESERVED
    # The back-off limit is 2 requeues: the third failure rejects it.
    assert env.state(job) is WorkloadState.REJECTED
    assert "out of GPUs" in env.engine.workload(job).message
    assert env.autoscaler().run_once().plan.empty
    assert env.requests() == {}


def test_booking_expired_after_admission_is_ignored(env: Env) -> None:
    job = env.submit("booked")
    name = request_name(job, 0)
    env.autoscaler().run_once()
    set_condition(env.custom, env.namespace, name, "Provisioned")
    env.autoscaler().run_once()
    assert env.state(job) is WorkloadState.ADMITTED
    set_condition(env.custom, env.namespace, name, "BookingExpired")
    assert env.autoscaler().run_once().plan.empty
    assert env.state(job) is WorkloadState.ADMITTED
    assert name in env.requests()
    env.clean(job)


def test_capacity_revoked_evicts_and_cleans_up(env: Env) -> None:
    job = env.submit("revoked")
    name = request_name(job, 0)
    env.autoscaler().run_once()
    set_condition(env.custom, env.namespace, name, "Provisioned")
    env.autoscaler().run_once()
    assert env.engine.mark_placed(job)
    set_condition(env.custom, env.namespace, name, "CapacityRevoked", "VMs reclaimed")
    result = env.autoscaler().run_once().plan
    assert [e.workload for e in result.evictions] == [job]
    status = env.engine.workload(job)
    assert status.state in (WorkloadState.PENDING, WorkloadState.EVICTED)
    assert any(t.reason == "CapacityRevoked" for t in status.history)
    assert name not in env.requests()
    env.engine.cancel(job)
    env.clean(job)


def test_restart_between_group_creation_and_report(env: Env) -> None:
    """The old process added the gang's group, then died before reporting Ready."""
    job = env.submit("crashy")
    name = request_name(job, 0)
    env.autoscaler().run_once()
    set_condition(env.custom, env.namespace, name, "Provisioned")
    group = GangGroup(
        name=gang_group_name("gpu-workers", job, 0), base="gpu-workers", replicas=1,
        request=name, provisioning_class="best-effort-atomic-scale-up.autoscaling.x-k8s.io",
        workload=job,
    )
    KubeRayProvider(env.api, cluster_name=CLUSTER, namespace=env.namespace).create_gang_group(
        group
    )
    result = env.autoscaler().run_once().plan
    assert result.create_groups == () and result.create_requests == ()
    assert env.state(job) is WorkloadState.ADMITTED
    assert sum(g.startswith("gpu-workers-g") for g in env.groups()) == 1
    env.clean(job)


def test_orphan_template_from_a_crash_is_swept(env: Env) -> None:
    """A crash between creating the PodTemplate and the request leaves a template."""
    from autoscaler.requests import RequestSpec

    client = ProvisioningClient(env.api, cluster_name=CLUSTER, namespace=env.namespace)
    group = next(g for g in KubeRayProvider(
        env.api, cluster_name=CLUSTER, namespace=env.namespace).groups()
        if g.name == "gpu-workers")
    spec_ = RequestSpec("rq-orphan-0", WorkloadId("orphan"), 0, "gpu-workers", 1, "x")
    template = client._pod_template(spec_, group)
    env.core.create_namespaced_pod_template(env.namespace, template)
    assert "rq-orphan-0" in env.templates()
    env.autoscaler().run_once()
    assert "rq-orphan-0" not in env.templates()


def test_multi_host_group_scales_in_whole_slices(env: Env) -> None:
    env.engine.submit(
        spec("slice-job", "tpu", {"TPU": 4000}, 3, strategy=PlacementStrategy.STRICT_SPREAD)
    )
    env.engine.schedule()
    result = env.autoscaler().run_once().plan
    assert [(s.group, s.from_replicas, s.to_replicas) for s in result.scale_ups] == [
        ("tpu-slices", 0, 2)
    ]
    pods = wait_for(
        lambda: (p := env.pods("tpu-slices")) and len(p) == 4 and p, 60,
        what="KubeRay to create two 2-host slices",
    )
    assert len(pods) == 4
    # The three hosts asked for are on their way: a restarted autoscaler adds nothing.
    assert env.autoscaler().run_once().plan.scale_ups == ()
    assert env.groups()["tpu-slices"]["replicas"] == 2
    # Put the group back for the other tests.
    env.engine.cancel(WorkloadId("slice-job"))
    env.custom.patch_namespaced_custom_object(
        *RAY[:2], env.namespace, RAY[2], CLUSTER,
        [{"op": "replace", "path": "/spec/workerGroupSpecs/2/replicas", "value": 0},
         {"op": "add", "path": "/spec/workerGroupSpecs/2/scaleStrategy",
          "value": {"workersToDelete": [p.metadata.name for p in pods]}}],
        _content_type="application/json-patch+json",
    )
    wait_for(lambda: env.pods("tpu-slices") == [], 60, what="the slices to go")
