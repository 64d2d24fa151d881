"""The manager comes back after kill -9: with a large config, and serving gRPC by itself.

``start_manager`` hands the config to the actor's constructor. Pickled, a config of 1,000
ClusterQueues is ~213 KB, over the 100 KiB Ray carries inline in the creation task, so
Ray put it in the object store, freed it once the actor was created, and could not
restart the actor after a kill -9 (ray#53727): the manager stayed dead.

The loop, and the gRPC server with it, start with the actor's first call. After a restart
that waited for some driver to call; gRPC clients (the CLI, the autoscaler) found nothing
serving until then.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from benchmarks.manager_scale import config_yaml, process_gone, serving
from benchmarks.ports import free_port
from ray_queue.engine.config_loader import load_config
from ray_queue.grpc.client import QueueClient
from ray_queue.manager.actor import start_manager
from tests.ray.harness import connected_cluster, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

CLUSTER_QUEUES = 1000


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from connected_cluster(gpu_workers=0)


def _new_epoch(actor: Any, old: str) -> str | None:
    try:
        epoch: str = ray.get(actor.ping.remote(), timeout=5)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None
    return epoch if epoch != old else None


def test_manager_with_1000_cluster_queues_restarts_after_kill_9(
    cluster: Cluster, tmp_path: Path
) -> None:
    actor = start_manager(
        load_config(config_yaml(CLUSTER_QUEUES)),
        state_path=str(tmp_path / "state"),
        env={"RAY_QUEUE_GRPC_PORT": "off", "RAY_QUEUE_METRICS_PORT": "off"},
    )
    try:
        old_epoch = ray.get(actor.ping.remote(), timeout=120)
        os.kill(ray.get(actor.pid.remote(), timeout=30), signal.SIGKILL)
        wait_for(lambda: _new_epoch(actor, old_epoch), 180, 0.5)
        restored = ray.get(actor.get_config.remote(), timeout=60)
        assert len(restored.cluster_queues) == CLUSTER_QUEUES
    finally:
        ray.kill(actor, no_restart=True)


def test_grpc_serves_again_after_kill_9_with_no_call_to_the_actor(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = free_port()
    actor = start_manager(
        state_path=str(tmp_path / "state"),
        env={"RAY_QUEUE_GRPC_PORT": str(port), "RAY_QUEUE_METRICS_PORT": "off"},
    )
    try:
        pid = ray.get(actor.pid.remote(), timeout=120)
        with QueueClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_for(lambda: serving(client), 60, 0.2)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: process_gone(pid), 30, 0.1)
            # From here on nothing calls the actor: whatever serves is the new process,
            # started by itself.
            wait_for(lambda: serving(client), 120, 0.2)
            assert client.cluster_queues()  # the restored manager behind it, not a stub
    finally:
        ray.kill(actor, no_restart=True)
