"""The real sidecar process (``python -m autoscaler``) killed with SIGKILL mid-flow and
restarted: it talks to a real gRPC manager (``LocalManager`` behind ``QueueServer``), the
real API server, the real KubeRay operator and a real Ray head's GCS. Each restart must
neither scale up twice nor leave a second (or orphaned) ProvisioningRequest, and the flow
must finish and clean up after the last restart.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.providers.kuberay import CONSUME_ANNOTATION
from autoscaler.requests import request_name
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadState
from ray_queue.logs import parse
from tests.autoscaler.k8s_fixtures import PR, RAY, raycluster, worker_group
from tests.k8s.process import ManagedProcess, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(400)]

CLUSTER = "sc"
CONFIG = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: cpu}
spec: {workerGroup: cpu-workers}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: gpu}
spec: {provisioning: all-at-once, workerGroup: gpu-workers}
---
apiVersion: ray-queue.io/v1alpha1
kind: AdmissionCheck
metadata: {name: prov}
spec:
  controllerName: ray-queue.io/provisioning
  parameters: {provisioningClassName: check-capacity.autoscaling.x-k8s.io}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: cq}
spec:
  admissionChecksStrategy:
    admissionChecks:
    - {name: prov, onFlavors: [gpu]}
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources: [{name: CPU, nominalQuota: 16}]
  - coveredResources: [GPU]
    flavors:
    - name: gpu
      resources: [{name: GPU, nominalQuota: 16}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team}
spec: {clusterQueue: cq}
"""


@pytest.fixture
def manager() -> Iterator[tuple[Any, str]]:
    from ray_queue.grpc.local_manager import LocalManager
    from ray_queue.grpc.server import QueueServer, ServerOptions

    backend = LocalManager(load_config(CONFIG), SystemClock())
    server = QueueServer(backend, ServerOptions(port=0, host="127.0.0.1")).start()
    try:
        yield backend, server.address
    finally:
        server.stop()


@pytest.fixture
def cluster(k8s_api: Any, k8s_namespace: str, kuberay_operator: Any) -> Iterator[str]:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)
    body = raycluster(
        CLUSTER,
        worker_group("cpu-workers", cpu="1", max_replicas=4),
        worker_group("gpu-workers", cpu="2", gpu="4", max_replicas=4),
    )
    custom.create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], body)
    try:
        yield CLUSTER
    finally:
        custom.delete_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)


class Sidecar:
    """Starts ``python -m autoscaler`` processes, one at a time, each with its own log."""

    def __init__(self, argv: list[str], log_dir: Path) -> None:
        self.argv = argv
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> ManagedProcess:
        self.starts += 1
        self.process = ManagedProcess(
            f"autoscaler-{self.starts}", self.argv, self.log_dir / f"sidecar-{self.starts}.log"
        )
        return self.process

    def kill(self) -> None:
        assert self.process is not None
        self.process.stop(grace_s=0.0)  # SIGTERM then SIGKILL at once: no clean shutdown

    def passes(self) -> int:
        assert self.process is not None
        self.process.check_alive()
        path = self.process.log_path
        log = path.read_text(errors="replace") if path.exists() else ""
        # The sidecar logs logfmt (ray_queue.logs): one ``msg="autoscaler pass"`` per pass.
        return sum(
            1 for line in log.splitlines()
            if line.startswith("ts=") and parse(line).get("msg") == "autoscaler pass"
        )


def test_sidecar_killed_and_restarted_mid_flow(
    k8s_api: Any, k8s_namespace: str, cluster: str, ray_head: Any,
    manager: tuple[Any, str], tmp_path: Path,
) -> None:
    from kubernetes import client

    from ray_queue.grpc.client import QueueClient
    from ray_queue.wire import SubmitRequest

    backend, address = manager
    custom = client.CustomObjectsApi(k8s_api.api_client)
    queue = QueueClient(address)
    sidecar = Sidecar(
        [
            sys.executable, "-m", "autoscaler",
            "--cluster-name", CLUSTER, "--namespace", k8s_namespace,
            "--manager-address", address, "--kubeconfig", str(k8s_api.kubeconfig),
            "--gcs-address", ray_head.address, "--interval-s", "0.3",
            "--idle-timeout-s", "1", "--metrics-port", "0",
        ],
        tmp_path,
    )

    def requests() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object(*PR[:2], k8s_namespace, PR[2])["items"]

    def groups() -> dict[str, Any]:
        rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], CLUSTER)
        return {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}

    def restart_and_settle() -> None:
        sidecar.kill()
        sidecar.start()
        wait_for(lambda: sidecar.passes() >= 5, 60, what="five passes of the restarted sidecar")

    import logging

    import ray
    from ray.util.placement_group import placement_group

    ray.init(address=ray_head.address, logging_level=logging.ERROR)
    try:
        queue.submit(SubmitRequest(id=WorkloadId("etl"), queue="team",
                                   bundle_groups=(BundleGroup({"CPU": 1000}, 2),)))
        # This manager runs no Ray adapter; create the admitted gang's group as it would.
        # The head has no CPUs, so Ray reports it pending until a worker joins.
        placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
        queue.submit(SubmitRequest(id=WorkloadId("train"), queue="team",
                                   bundle_groups=(BundleGroup({"GPU": 2000}, 4),)))
        assert queue.workload("train").state is WorkloadState.QUOTA_RESERVED

        sidecar.start()
        name = request_name(WorkloadId("train"), 0)
        wait_for(lambda: [r["metadata"]["name"] for r in requests()] == [name], 60,
                 what="the gang's ProvisioningRequest")
        wait_for(lambda: groups()["cpu-workers"]["replicas"] == 2, 30, what="cpu scale-up")
        request = requests()[0]
        assert request["spec"]["provisioningClassName"] == "check-capacity.autoscaling.x-k8s.io"
        assert request["spec"]["podSets"][0]["count"] == 2

        restart_and_settle()
        assert [r["metadata"]["name"] for r in requests()] == [name]
        assert groups()["cpu-workers"]["replicas"] == 2  # not 4
        assert queue.workload("train").state is WorkloadState.QUOTA_RESERVED

        from tests.autoscaler.k8s_fixtures import set_condition

        set_condition(custom, k8s_namespace, name, "Provisioned")
        wait_for(lambda: queue.workload("train").state is WorkloadState.ADMITTED, 60,
                 what="the gang to be admitted")
        gang_groups = [g for g in groups() if g.startswith("gpu-workers-g")]
        assert len(gang_groups) == 1
        gang = groups()[gang_groups[0]]
        assert gang["replicas"] == 2
        assert gang["template"]["metadata"]["annotations"][CONSUME_ANNOTATION] == name

        restart_and_settle()
        assert [g for g in groups() if g.startswith("gpu-workers-g")] == gang_groups
        assert [r["metadata"]["name"] for r in requests()] == [name]

        # The work ends: everything the gang had goes, even across one more restart.
        backend.finish(WorkloadId("train"))
        backend.cancel(WorkloadId("etl"), message="done")
        restart_and_settle()
        wait_for(
            lambda: requests() == [] and not any(g.startswith("gpu-workers-g") for g in groups()),
            90, interval_s=0.5, what="the request and the gang's group to be cleaned up",
        )
        core = client.CoreV1Api(k8s_api.api_client)
        wait_for(lambda: core.list_namespaced_pod_template(k8s_namespace).items == [], 30,
                 what="the PodTemplate to be deleted")
    finally:
        if sidecar.process is not None:
            sidecar.process.stop()
        queue.close()
        ray.shutdown()
