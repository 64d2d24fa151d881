"""Builders for the Kubernetes-backed tests: a RayCluster, an engine config with a
provisioning check, and a fake cluster-autoscaler that sets request conditions."""

from __future__ import annotations

import datetime
from typing import Any

from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionCheckRef,
    ClusterQueue,
    FlavorQuotas,
    ProvisioningMode,
    Queue,
    QueueConfig,
    RequeuingStrategy,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    Settings,
)
from ray_queue.engine.model import BundleGroup, PlacementStrategy, WorkloadId, WorkloadSpec

RAY = ("ray.io", "v1", "rayclusters")
PR = ("autoscaling.x-k8s.io", "v1", "provisioningrequests")
IMAGE = "rayproject/ray:2.49.0"


def worker_group(
    name: str,
    *,
    cpu: str = "1",
    gpu: str | None = None,
    tpu: str | None = None,
    hosts: int = 1,
    max_replicas: int = 4,
    replicas: int = 0,
    labels: str | None = None,
) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": cpu, "memory": "512Mi"}
    if gpu:
        limits["nvidia.com/gpu"] = gpu
    if tpu:
        limits["google.com/tpu"] = tpu
    params: dict[str, str] = {}
    if labels:
        params["labels"] = labels
    group: dict[str, Any] = {
        "groupName": name,
        "replicas": replicas,
        "minReplicas": 0,
        "maxReplicas": max_replicas,
        "rayStartParams": params,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "ray-worker",
                        "image": IMAGE,
                        "resources": {"limits": limits, "requests": {"cpu": cpu}},
                    }
                ]
            }
        },
    }
    if hosts > 1:
        group["numOfHosts"] = hosts
    return group


def raycluster(name: str, *groups: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": IMAGE,
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    }
                },
            },
            "workerGroupSpecs": list(groups),
        },
    }


def queue_config(*, backoff_limit: int | None = 2) -> QueueConfig:
    """Three ClusterQueues, one per flavor; the a100 flavor is all-at-once behind a
    provisioning check."""

    def cq(name: str, flavor: str, resources: dict[str, int], checks: tuple[str, ...] = ()):
        return ClusterQueue(
            name=name,
            resource_groups=(
                ResourceGroup(
                    covered_resources=tuple(resources),
                    flavors=(
                        FlavorQuotas(
                            flavor, tuple(ResourceQuota(r, q) for r, q in resources.items())
                        ),
                    ),
                ),
            ),
            admission_checks=tuple(AdmissionCheckRef(c) for c in checks),
        )

    return QueueConfig(
        flavors={
            "cpu": ResourceFlavor("cpu", worker_group="cpu-workers"),
            "a100": ResourceFlavor(
                "a100", worker_group="gpu-workers", provisioning=ProvisioningMode.ALL_AT_ONCE
            ),
            "tpu": ResourceFlavor("tpu", worker_group="tpu-slices"),
        },
        cluster_queues={
            "cq-cpu": cq("cq-cpu", "cpu", {"CPU": 64_000}),
            "cq-gpu": cq("cq-gpu", "a100", {"CPU": 64_000, "GPU": 64_000}, ("prov",)),
            "cq-tpu": cq("cq-tpu", "tpu", {"TPU": 64_000}),
        },
        queues={
            "cpu": Queue("cpu", "cq-cpu"),
            "gpu": Queue("gpu", "cq-gpu"),
            "tpu": Queue("tpu", "cq-tpu"),
        },
        admission_checks={
            "prov": AdmissionCheck(
                "prov",
                "kueue.x-k8s.io/provisioning-request",
                {"provisioningClassName": "best-effort-atomic-scale-up.autoscaling.x-k8s.io"},
            )
        },
        settings=Settings(
            requeuing=RequeuingStrategy(
                backoff_limit_count=backoff_limit, backoff_base_s=1.0, backoff_max_s=1.0
            )
        ),
    )


def spec(
    workload: str,
    queue: str,
    bundle: dict[str, int],
    count: int,
    *,
    strategy: PlacementStrategy = PlacementStrategy.PACK,
) -> WorkloadSpec:
    return WorkloadSpec(
        id=WorkloadId(workload),
        queue=queue,
        bundle_groups=(BundleGroup(bundle, count=count),),
        created_at=0.0,
        strategy=strategy,
    )


def set_condition(custom: Any, namespace: str, name: str, kind: str, message: str = "") -> None:
    """Play cluster-autoscaler: set one True condition on a ProvisioningRequest."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    current = custom.get_namespaced_custom_object(*PR[:2], namespace, PR[2], name)
    conditions = [c for c in (current.get("status") or {}).get("conditions") or []
                  if c["type"] != kind]
    conditions.append(
        {
            "type": kind,
            "status": "True",
            "reason": kind,
            "message": message or kind,
            "lastTransitionTime": now,
            "observedGeneration": current["metadata"].get("generation", 1),
        }
    )
    custom.patch_namespaced_custom_object_status(
        *PR[:2], namespace, PR[2], name, {"status": {"conditions": conditions}}
    )
