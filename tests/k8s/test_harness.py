"""Tests of the Kubernetes harness itself: if these fail, no k8s end-to-end result means much.

They pin the real behaviours the autoscaler relies on (schema validation of the published
CRDs, the API server's answers to stale optimistic-concurrency writes, KubeRay turning
``replicas`` and ``workersToDelete`` into Pods) and that the node simulator turns those Pods
into Ray nodes shaped like them.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.k8s import toolchain
from tests.k8s.conftest import K8sApi
from tests.k8s.node_simulator import NodeSimulator, parse_quantity, worker_spec_from_pod
from tests.k8s.process import wait_for
from tests.k8s.ray_nodes import RayHead

pytestmark = pytest.mark.k8s

RAY = ("ray.io", "v1", "rayclusters")
T = TypeVar("T")


def raycluster(name: str, *, replicas: int) -> dict[str, Any]:
    """A small RayCluster: head plus one worker group "gpu-workers" (1 CPU, 1 GPU each)."""
    container = {"name": "ray-worker", "image": "rayproject/ray:2.49.0"}
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
                                "image": "rayproject/ray:2.49.0",
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    }
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu-workers",
                    "replicas": replicas,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "rayStartParams": {"resources": '"{\\"widget\\": 2}"', "labels": "team=a"},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    **container,
                                    "resources": {
                                        "limits": {
                                            "cpu": "1",
                                            "memory": "512Mi",
                                            "nvidia.com/gpu": "1",
                                        },
                                        "requests": {"cpu": "1", "memory": "512Mi"},
                                    },
                                }
                            ]
                        }
                    },
                }
            ],
        },
    }


def _custom(k8s_api: K8sApi) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(k8s_api.api_client)


def _core(k8s_api: K8sApi) -> Any:
    from kubernetes import client

    return client.CoreV1Api(k8s_api.api_client)


def _json_patch(custom: Any, namespace: str, name: str, patch: list[dict[str, Any]]) -> Any:
    """An RFC 6902 JSON patch of a RayCluster, as the autoscaler sends it."""
    return custom.patch_namespaced_custom_object(
        *RAY[:2], namespace, RAY[2], name, patch, _content_type="application/json-patch+json"
    )


def _worker_pods(k8s_api: K8sApi, namespace: str, cluster: str) -> list[str]:
    pods = _core(k8s_api).list_namespaced_pod(
        namespace, label_selector=f"ray.io/cluster={cluster},ray.io/node-type=worker"
    )
    return sorted(p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None)


# --- the API server and the CRDs -------------------------------------------------------------


def test_crds_are_served(k8s_api: K8sApi) -> None:
    custom = _custom(k8s_api)
    ray_kinds = {r.name for r in custom.get_api_resources("ray.io", "v1").resources}
    assert {"rayclusters", "rayclusters/status", "rayjobs", "rayservices"} <= ray_kinds
    pr_kinds = {r.name for r in custom.get_api_resources("autoscaling.x-k8s.io", "v1").resources}
    assert "provisioningrequests" in pr_kinds


def test_invalid_raycluster_is_rejected_by_the_schema(k8s_api: K8sApi, k8s_namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    bad = raycluster("bad-schema", replicas=1)
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    del bad["spec"]["headGroupSpec"]
    with pytest.raises(ApiException) as info:
        _custom(k8s_api).create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], bad)
    assert info.value.status == 422
    body = json.loads(info.value.body or "{}")
    assert body["reason"] == "Invalid"
    message = body["message"]
    assert "spec.headGroupSpec: Required value" in message
    assert "spec.workerGroupSpecs[0].replicas: Invalid value" in message


def test_provisioning_request_v1_validates(k8s_api: K8sApi, k8s_namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    custom = _custom(k8s_api)
    pr: dict[str, Any] = {
        "apiVersion": "autoscaling.x-k8s.io/v1",
        "kind": "ProvisioningRequest",
        "metadata": {"name": "gang"},
        "spec": {
            "provisioningClassName": "queued-provisioning.gke.io",
            "podSets": [{"count": 4, "podTemplateRef": {"name": "gang-template"}}],
        },
    }
    created = custom.create_namespaced_custom_object(
        "autoscaling.x-k8s.io", "v1", k8s_namespace, "provisioningrequests", pr
    )
    assert created["spec"]["podSets"][0]["count"] == 4
    pr["metadata"]["name"] = "gang-bad"
    pr["spec"]["podSets"][0]["count"] = 0  # the schema requires count >= 1
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(
            "autoscaling.x-k8s.io", "v1", k8s_namespace, "provisioningrequests", pr
        )
    assert info.value.status == 422


def test_stale_writes_are_refused(k8s_api: K8sApi, k8s_namespace: str) -> None:
    """What the API server really answers to the three optimistic-concurrency idioms."""
    from kubernetes.client.exceptions import ApiException

    custom = _custom(k8s_api)
    name = "occ"
    obj = raycluster(name, replicas=0)
    obj["spec"]["suspend"] = True  # keep the operator (if running) from adding pods
    created = custom.create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], obj)
    stale_rv = created["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(
        *RAY[:2], k8s_namespace, RAY[2], name, {"metadata": {"labels": {"touched": "yes"}}}
    )

    # 1. JSON patch whose `test` op (on resourceVersion) fails: the patch is not applied and
    #    the server answers 422 Unprocessable Entity, reason Invalid, with a generic message
    #    and no details (not 409 Conflict): a client must treat this 422 as "re-read, retry".
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale_rv},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
    ]
    with pytest.raises(ApiException) as info:
        _json_patch(custom, k8s_namespace, name, patch)
    assert info.value.status == 422, info.value.body
    status = json.loads(info.value.body or "{}")
    assert (status["reason"], status["code"]) == ("Invalid", 422)
    assert status["message"] == "the server rejected our request due to an error in our request"

    # 2. JSON patch that *sets* the stale resourceVersion: a precondition, 409 Conflict.
    patch = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": stale_rv},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
    ]
    with pytest.raises(ApiException) as info:
        _json_patch(custom, k8s_namespace, name, patch)
    assert info.value.status == 409, info.value.body
    assert json.loads(info.value.body or "{}")["reason"] == "Conflict"

    # 3. Update (PUT) carrying the stale resourceVersion: 409 Conflict.
    created["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    with pytest.raises(ApiException) as info:
        custom.replace_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], name, created)
    assert info.value.status == 409

    current = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], name)
    assert current["spec"]["workerGroupSpecs"][0]["replicas"] == 0  # nothing stale landed

    # And the fresh resourceVersion is accepted.
    fresh = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": current["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1},
    ]
    patched = _json_patch(custom, k8s_namespace, name, fresh)
    assert patched["spec"]["workerGroupSpecs"][0]["replicas"] == 1
    custom.delete_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], name)


def test_rbac_is_enforced(k8s_api: K8sApi, k8s_namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    authz = client.AuthorizationV1Api(k8s_api.api_client)

    def allowed(user: str, groups: list[str]) -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(
                    namespace=k8s_namespace, verb="patch", group="ray.io", resource="rayclusters"
                ),
            )
        )
        status = authz.create_subject_access_review(review).status
        return bool(status is not None and status.allowed)

    assert allowed("admin", ["system:masters"])
    assert not allowed("tenant", [])
    tenant = k8s_api.tenant_client()
    try:
        with pytest.raises(ApiException) as info:
            client.CoreV1Api(tenant).list_namespaced_pod(k8s_namespace)
        assert info.value.status == 403
    finally:
        tenant.close()


# --- helm ------------------------------------------------------------------------------------


def test_helm_assumes_the_kubernetes_version_a_released_helm_does(
    k8s_tools: toolchain.Tools, tmp_path: Path
) -> None:
    """Without a cluster (``helm template``), helm renders for its built-in Kubernetes
    version: a released helm 3.19 says v1.34, one built without helm's ldflags v1.20."""
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {kube: {{ .Capabilities.KubeVersion.Version | quote }}}\n"
    )
    rendered = subprocess.run(
        [str(k8s_tools.helm), "template", "probe", str(chart)],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert yaml.safe_load(rendered.stdout)["data"]["kube"] == toolchain.HELM_KUBE_VERSION


def test_helm_works(k8s_tools: toolchain.Tools, k8s_api: K8sApi) -> None:
    version = subprocess.run(
        [str(k8s_tools.helm), "version", "--short"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.strip().startswith(toolchain.HELM_VERSION)
    listed = subprocess.run(
        [
            str(k8s_tools.helm),
            "list",
            "--all-namespaces",
            "--output",
            "json",
            "--kubeconfig",
            str(k8s_api.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


# --- the node simulator's parsing (no processes) ---------------------------------------------


def test_worker_spec_from_a_kuberay_pod() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "rc-gpu-workers-abcde", "labels": {"ray.io/group": "gpu-workers"}},
        "spec": {
            "containers": [
                {
                    "name": "ray-worker",
                    "command": ["/bin/bash", "-lc", "--"],
                    "args": [
                        "ulimit -n 65536; ray start  --address=rc-head-svc:6379  --block "
                        " --labels=team=a  --memory=536870912  --num-cpus=1  --num-gpus=1 "
                        " --resources='{\"widget\": 2}' "
                    ],
                    "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1", "memory": "512Mi"}},
                    "env": [
                        {
                            "name": "RAY_CLOUD_INSTANCE_ID",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                        {
                            "name": "RAY_NODE_TYPE_NAME",
                            "valueFrom": {
                                "fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}
                            },
                        },
                    ],
                }
            ]
        },
    }
    spec = worker_spec_from_pod(pod)
    assert (spec.num_cpus, spec.num_gpus) == (1.0, 1.0)
    assert spec.resources == {"widget": 2.0}
    assert spec.labels == {"team": "a"}
    assert spec.memory_bytes == 512 * 2**20
    assert spec.env == {
        "RAY_NODE_TYPE_NAME": "gpu-workers",
        "RAY_CLOUD_INSTANCE_ID": "rc-gpu-workers-abcde",
    }
    # No ray start command: the container limits decide.
    pod["spec"]["containers"][0]["args"] = ["sleep infinity"]
    spec = worker_spec_from_pod(pod)
    assert (spec.num_cpus, spec.num_gpus, spec.resources) == (1.0, 1.0, {})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        ("1Gi", 2.0**30),
        ("1e3", 1000.0),
        ("1k", 1000.0),
    ],
    ids=["milli", "plain", "binary", "exponent", "decimal"],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert parse_quantity(text) == value


# --- KubeRay operator + node simulator -------------------------------------------------------


def _exactly(count: int, items: list[T]) -> list[T] | None:
    return items if len(items) == count else None


def _alive_group_nodes(group: str) -> list[dict[str, Any]]:
    import ray

    return [
        n
        for n in ray.nodes()  # type: ignore[no-untyped-call]
        if n["Alive"] and n.get("Labels", {}).get("ray.io/node-group") == group
    ]


@pytest.mark.timeout(420)
def test_kuberay_scales_workers_and_simulator_makes_ray_nodes(
    k8s_api: K8sApi,
    k8s_namespace: str,
    kuberay_operator: Any,
    node_simulator: NodeSimulator,
    ray_head: RayHead,
) -> None:
    import ray

    custom = _custom(k8s_api)
    name = "rc"
    custom.create_namespaced_custom_object(
        *RAY[:2], k8s_namespace, RAY[2], raycluster(name, replicas=2)
    )
    pods = wait_for(
        lambda: _exactly(2, _worker_pods(k8s_api, k8s_namespace, name)),
        120,
        what="KubeRay to create 2 worker pods",
    )

    def all_running() -> bool:
        listed = _core(k8s_api).list_namespaced_pod(
            k8s_namespace, label_selector=f"ray.io/cluster={name}"
        )
        return len(listed.items) == 3 and all(p.status.phase == "Running" for p in listed.items)

    wait_for(all_running, 60, what="head and workers marked Running by the simulator")

    if ray.is_initialized():  # a driver left connected elsewhere by an earlier module
        ray.shutdown()
    ray.init(address=ray_head.address, logging_level=logging.ERROR)
    nodes = wait_for(
        lambda: _exactly(2, _alive_group_nodes("gpu-workers")),
        180,
        interval_s=1.0,
        what="2 Ray worker nodes to join the head",
    )
    for node in nodes:
        resources = node["Resources"]
        assert resources["CPU"] == 1.0
        assert resources["GPU"] == 1.0
        assert resources["widget"] == 2.0
        assert node["Labels"]["team"] == "a"
    assert set(node_simulator.nodes()) == set(pods)

    # Scale down by naming the victim, as the autoscaler does.
    victim, survivor = pods
    custom.patch_namespaced_custom_object(
        *RAY[:2],
        k8s_namespace,
        RAY[2],
        name,
        {
            "spec": {
                "workerGroupSpecs": [
                    {
                        **raycluster(name, replicas=1)["spec"]["workerGroupSpecs"][0],
                        "scaleStrategy": {"workersToDelete": [victim]},
                    }
                ]
            }
        },
    )
    wait_for(
        lambda: _worker_pods(k8s_api, k8s_namespace, name) == [survivor],
        120,
        what=f"KubeRay to delete {victim} and keep {survivor}",
    )
    wait_for(
        lambda: len(_alive_group_nodes("gpu-workers")) == 1,
        120,
        interval_s=1.0,
        what="the deleted pod's Ray node to leave",
    )
    assert set(node_simulator.nodes()) == {survivor}
    assert node_simulator.errors == []
    ray.shutdown()
