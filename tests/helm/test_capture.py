"""The chart's ``capture``, for real: a Ray job whose driver never imports ray_queue is
queued, as the tenant the chart names, with nothing but the environment the chart gives
the head container.

A real Ray head (dashboard and job API on) runs with the RAY_QUEUE_* environment the
chart renders for its ``ray-head`` container, the Secret's files standing in for the
mounts; the manager runs there as the chart's start script runs it. Ray's job API then
starts a driver on the head, which inherits that environment (as it does in the pod):
its ``ray.util.placement_group`` must come back from ray-queue, and the manager must hold
the group as a workload of the capture tenant's namespace. The manager itself must not
be captured, or it would queue itself behind itself.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ports import free_port
from ray_queue.engine.model import WorkloadKind
from ray_queue.grpc.client import QueueClient
from tests.helm.conftest import Helm
from tests.helm.test_chart import CAPTURE_ON
from tests.k8s.process import wait_for
from tests.k8s.ray_nodes import RayHead, head_ready, start_head

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

#: The queue config the test's manager runs: one flavor on any node (the test's head has
#: none of the labels the chart's worker groups carry), the chart's Queue `default`.
QUEUES = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: cpu}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: default}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources: [{name: CPU, nominalQuota: 1}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: default}
spec: {clusterQueue: default}
"""

#: The Ray job's entrypoint: plain Ray, as a user's script would be.
DRIVER = """
import ray
from ray.util.placement_group import placement_group, remove_placement_group
ray.init()
group = placement_group([{"CPU": 1}])
print("placed", group.wait(120))
print("made by", type(group).__module__)
remove_placement_group(group)
"""


def _head_env(objects: list[dict[str, Any]], files: Path) -> tuple[dict[str, str], str]:
    """The ``ray-head`` container's RAY_QUEUE_* environment with its Secret files written
    under ``files`` (paths changed to match), and the admin token."""
    secret = next(o for o in objects if o["kind"] == "Secret")["data"]
    cluster = next(o for o in objects if o["kind"] == "RayCluster")
    containers = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    head = next(c for c in containers if c["name"] == "ray-head")
    mounted = {
        "/etc/ray-queue/tokens/tokens.yaml": "tokens.yaml",
        "/etc/ray-queue/capture/token": "tenant-team-a",
    }
    env: dict[str, str] = {}
    for item in head["env"]:
        name, value = item["name"], item.get("value", "")
        if not name.startswith("RAY_QUEUE_"):
            continue
        if value in mounted:
            key = mounted[value]
            path = files / key
            path.write_bytes(base64.b64decode(secret[key]))
            path.chmod(0o400)
            value = str(path)
        env[name] = value
    assert env["RAY_QUEUE_CAPTURE"] == "1" and "RAY_QUEUE_TOKEN_FILE" in env, env
    # Loopback and a free port here; a state dir of the test's.
    env.update(
        RAY_QUEUE_GRPC_HOST="127.0.0.1",
        RAY_QUEUE_GRPC_PORT=str(free_port()),
        RAY_QUEUE_METRICS_HOST="127.0.0.1",
        RAY_QUEUE_STATE_DIR=str(files / "state"),
    )
    return env, base64.b64decode(secret["admin"]).decode()


@pytest.fixture(scope="module")
def captured_cluster(helm: Helm) -> Iterator[dict[str, Any]]:
    objects = helm.template(sets=CAPTURE_ON)
    # Short path: Ray's Unix sockets live under the temp dir and must stay < 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="rqcap-", dir="/tmp"))
    files = base / "files"
    files.mkdir()
    env, admin = _head_env(objects, files)
    (files / "queues.yaml").write_text(QUEUES)
    head = start_head(base / "ray", num_cpus=1, dashboard=True, env=env)
    manager: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: not head.process.alive() or head_ready(head), 120, what="Ray head")
        head.process.check_alive()
        # As the chart's start script runs it (its line is checked in test_chart.py).
        manager_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        manager_env |= env | head.driver_env()
        argv = ["env", "-u", "RAY_QUEUE_TOKEN_FILE", sys.executable, "-m", "ray_queue.manager"]
        argv += ["--address", head.address, "--config-file", str(files / "queues.yaml")]
        argv += ["--metrics-port", str(free_port()), "--state-dir", str(files / "state")]
        log = (base / "manager.log").open("wb")
        manager = subprocess.Popen(argv, env=manager_env, stdout=log, stderr=subprocess.STDOUT)
        client = QueueClient(f"127.0.0.1:{env['RAY_QUEUE_GRPC_PORT']}", token=admin, timeout_s=10)

        def serving() -> bool:
            assert manager is not None and manager.poll() is None, _tail(base / "manager.log")
            try:
                return bool(client.cluster_queues())
            except Exception:
                return False

        wait_for(serving, 180, what="the manager, started as the chart starts it")
        yield {"head": head, "client": client, "base": base}
        client.close()
    finally:
        if manager is not None:
            manager.terminate()
            try:
                manager.wait(timeout=30)
            except subprocess.TimeoutExpired:
                manager.kill()
                manager.wait(timeout=10)
        head.stop()
        shutil.rmtree(base, ignore_errors=True)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_a_plain_ray_jobs_group_is_queued_as_the_capture_tenant(
    captured_cluster: dict[str, Any],
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    head: RayHead = captured_cluster["head"]
    client: QueueClient = captured_cluster["client"]
    assert head.dashboard_url
    jobs = JobSubmissionClient(
        head.dashboard_url, headers={"Authorization": f"Bearer {head.auth_token}"}
    )
    job = jobs.submit_job(entrypoint=f"{sys.executable} -c '{DRIVER}'")
    done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    wait_for(lambda: jobs.get_job_status(job) in done, 240, what="the Ray job")
    logs = jobs.get_job_logs(job)
    assert jobs.get_job_status(job) is JobStatus.SUCCEEDED, logs[-3000:]
    assert "placed True" in logs and "made by ray_queue.capture" in logs, logs[-3000:]
    # The manager held it: a placement group of the capture tenant's namespace.
    mine = [
        w
        for w in client.workloads(include_history=True)
        if w.spec.id.startswith("team-a/") and w.spec.kind is WorkloadKind.PLACEMENT_GROUP
    ]
    assert mine and any(t.to_state.value == "ADMITTED" for t in mine[0].history), mine
