"""``python -m ray_queue.manager``, the head pod's manager process, on a real Ray cluster.

It must bring the manager up with the file's config, serve /metrics and the gRPC API,
re-apply the file when it changes, keep the running config when the new one is bad, and
exit once Ray is gone (so Kubernetes restarts the head).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from benchmarks.ports import free_port
from tests.ray.harness import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

RAY_QUEUE = Path(sys.executable).parent / "ray-queue"

CONFIG = """\
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {{name: default}}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {{name: main}}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: default
      resources: [{{name: CPU, nominalQuota: {cpus}}}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: team}}
spec: {{clusterQueue: main}}
"""


TOKEN = "admin-token-7c41e9d2"

#: A job's view of every actor, runtime_env included (``list_actors(detail=True)``).
_LIST_ACTORS = """\
import sys
import ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1])
print([repr(a) for a in list_actors(detail=True)])
"""


def _sample(port: int, prefix: str, label: str = "") -> float | None:
    """The value of the first series of /metrics that starts with ``prefix`` and has
    ``label``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(prefix) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _nominal_cpus(port: int) -> float | None:
    return _sample(port, "ray_queue_cluster_queue_nominal_quota{", 'cluster_queue="main"')


def test_manager_process_serves_applies_and_follows_its_config(tmp_path: Path) -> None:
    os.environ.pop("RAY_ADDRESS", None)
    config = tmp_path / "queues.yaml"
    config.write_text(CONFIG.format(cpus=2))
    metrics_port = free_port()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "dashboard_port": free_port()}
    )
    process = None
    log = tmp_path / "manager.log"
    out = log.open("w")
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ray_queue.manager",
                "--address",
                cluster.address,
                "--config-file",
                str(config),
                "--watch-config",
                "--metrics-port",
                str(metrics_port),
                "--state-dir",
                str(tmp_path / "state"),
                "--poll-interval-s",
                "0.5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Tokens inline, as a container's environment from a Secret may give them.
            env={**os.environ, "RAY_QUEUE_TOKENS": f"tokens: [{{token: {TOKEN}, role: admin}}]"},
        )
        assert wait_for(lambda: _nominal_cpus(metrics_port) == 2, timeout_s=120)
        # Gauges are computed when scraped, not up to a second before: a scrape agrees
        # with a status read just before it.
        for _ in range(3):
            asked = time.time()
            computed = _sample(metrics_port, "ray_queue_gauges_computed_timestamp_seconds ")
            assert computed is not None and computed >= asked

        # The gRPC API comes up and is published (a moment after the metrics may answer):
        # the CLI finds it through Ray.
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_QUEUE_TOKEN": TOKEN}
        env.pop("RAY_QUEUE_ADDRESS", None)

        def cli_status() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(RAY_QUEUE), "status", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
            )

        status = wait_for(lambda: (s := cli_status()).returncode == 0 and s, timeout_s=120)
        assert "main" in json.dumps(json.loads(status.stdout))

        # The token reached the actor, but nothing any job can read: Ray's state API shows
        # every actor's runtime_env, and Ray's logs are on every node.
        actors = subprocess.run(
            [sys.executable, "-c", _LIST_ACTORS, cluster.address],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert actors.returncode == 0, actors.stderr
        assert "QueueManager" in actors.stdout and TOKEN not in actors.stdout
        session = Path(cluster.head_node.get_session_dir_path())
        leaked = [f for f in session.rglob("*") if f.is_file() and TOKEN.encode() in f.read_bytes()]
        assert not leaked, f"the token is in {leaked}"

        # A ConfigMap update: the file changes, the manager follows.
        config.write_text(CONFIG.format(cpus=4))
        assert wait_for(lambda: _nominal_cpus(metrics_port) == 4, timeout_s=60)

        # A bad update is refused whole; the running config stays and the process lives.
        config.write_text(CONFIG.format(cpus=-1))
        assert wait_for(lambda: "nominalQuota" in log.read_text(), timeout_s=60)
        assert _nominal_cpus(metrics_port) == 4
        assert process.poll() is None

        # Ray goes away: the process notices and exits non-zero.
        cluster.shutdown()
        assert process.wait(timeout=120) != 0
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        out.close()
        cluster.shutdown()
