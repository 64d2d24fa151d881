"""On a real Ray cluster, ``ray-queue`` with no address finds the server the manager
published in Ray's KV store."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from benchmarks.ports import free_port
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.config_loader import load_config
from ray_queue.grpc.local_manager import LocalManager
from ray_queue.grpc.server import QueueServer, ServerOptions
from tests.cli.test_cli import RAY_QUEUE
from tests.grpc.conftest import CONFIG_YAML

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "dashboard_port": free_port()}
    )
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_cli_finds_the_published_address(ray_cluster: str) -> None:
    from ray_queue.grpc.manager_backend import publish_address

    server = QueueServer(
        LocalManager(load_config(CONFIG_YAML), SystemClock()), ServerOptions(port=0)
    ).start()
    try:
        assert publish_address(server) == server.address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_QUEUE_")}
        env["RAY_ADDRESS"] = ray_cluster
        result = subprocess.run(
            [str(RAY_QUEUE), "status", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert {c["name"] for c in json.loads(result.stdout)["cluster_queues"]} == {"cq-a", "cq-b"}
    finally:
        server.stop(grace_s=0.2)
