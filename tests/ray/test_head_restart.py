"""A head restart with Ray's GCS fault tolerance: the queue comes back as it was.

KubeRay restarts a head pod that dies; with GCS fault tolerance (its state in Redis) the
worker nodes, their placement groups and detached actors outlive it, while every driver
connected through the head dies with it. Here, for real: a Redis server, a head whose
GCS stores into it, one worker with two logical A100 GPUs, and the manager on the head
with its store on disk (the head pod's persistent volume). Then every process of the
head is killed at once and a new head starts on the same GCS port, as a pod restart
would. What must hold afterwards (docs/contract.md §5): Ray restarts the manager on the *new*
head; a workload submitted over gRPC (its owner outlives drivers) keeps its admission
and its placement group, re-adopted rather than created again; the workload of the
driver that died with the head is cancelled and its quota and group freed; and the
workload that was waiting for that quota is admitted once, and placed.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.experimental import internal_kv

import ray_queue
from benchmarks.ports import free_port
from ray_queue.engine.model import (
    BundleGroup,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.grpc.address import KV_KEY, KV_NAMESPACE
from ray_queue.grpc.client import QueueClient
from ray_queue.wire import SubmitRequest
from tests.availability import unavailable
from tests.manager.configs import A100, teams_config
from tests.ray.harness import live_pgs, manager, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

S = WorkloadState


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of our own on loopback, for the GCS to store its state in."""
    binary = shutil.which(os.environ.get("REDIS_SERVER_BIN") or "redis-server")
    if binary is None:
        unavailable("there is no redis-server: run scripts/install-test-servers.sh")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    # No snapshots, no append-only file: the GCS's state lives as long as this server.
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *options, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _redis_answers(port), 20, interval_s=0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


#: The head: no dashboard (nothing here needs it, and it is a heavy process on 2 cores).
_HEAD_ARGS = {"num_cpus": 1, "include_dashboard": False}


@dataclass
class FaultTolerantCluster:
    cluster: Cluster
    gcs_port: int
    state_dir: str

    def restart_head(self) -> None:
        """Kill every process of the head at once, then start a new head on the same GCS
        port (what KubeRay does when a head pod dies). The workers stay."""
        head = self.cluster.head_node
        assert head is not None
        # Not Cluster.remove_node: it also deletes the head's state from Redis, which is
        # exactly what a restarted head recovers from.
        head.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
        self.cluster.head_node = None
        self.cluster.add_node(gcs_server_port=self.gcs_port, **_HEAD_ARGS)


@pytest.fixture(scope="module")
def ft_cluster(
    redis_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultTolerantCluster]:
    with pytest.MonkeyPatch.context() as env:
        # Every Ray process started from here inherits these: the GCS stores its tables
        # in this Redis, under a namespace of this cluster's own.
        env.setenv("RAY_REDIS_ADDRESS", redis_address)
        env.setenv("RAY_external_storage_namespace", f"rq-{uuid.uuid4().hex[:8]}")
        env.delenv("RAY_ADDRESS", raising=False)
        gcs_port = free_port()
        cluster = Cluster()
        try:
            cluster.add_node(gcs_server_port=gcs_port, **_HEAD_ARGS)
            cluster.add_node(num_cpus=2, num_gpus=2, labels=dict(A100))
            cluster.wait_for_nodes()
            yield FaultTolerantCluster(
                cluster, gcs_port, str(tmp_path_factory.mktemp("manager-state"))
            )
        finally:
            ray_queue.shutdown()
            ray.shutdown()
            cluster.shutdown()


def _connect(cluster: Cluster) -> None:
    ray.init(address=cluster.address, log_to_driver=False)


def _grpc() -> QueueClient:
    address = wait_for(lambda: internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE), 30)
    return QueueClient(address.decode())


def _gpu_group(workload: str, queue: str) -> SubmitRequest:
    return SubmitRequest(
        id=WorkloadId(workload),
        queue=queue,
        bundle_groups=(BundleGroup({"CPU": 1000, "GPU": 1000}, 1),),
        kind=WorkloadKind.PLACEMENT_GROUP,
    )


_DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray, ray_queue
    ray.init(address=sys.argv[1], log_to_driver=False)
    ray_queue.init(queue="team-b")
    pg = ray_queue.placement_group([{"CPU": 1, "GPU": 1}])
    assert pg.wait(timeout_seconds=60)
    print(pg.workload, flush=True)
    time.sleep(600)
    """
)


def _start_driver(cluster: Cluster) -> tuple[subprocess.Popen[str], str]:
    """A driver that holds a placement group until it dies; returns it and its workload."""
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert driver.stdout is not None
    ready, _, _ = select.select([driver.stdout], [], [], 90)
    assert ready, "the driver did not report its placement group within 90 s"
    return driver, driver.stdout.readline().strip()


def test_the_queue_survives_a_head_restart(ft_cluster: FaultTolerantCluster) -> None:
    cluster = ft_cluster.cluster
    _connect(cluster)
    # team-a and team-b: one GPU each in one cohort; the worker has two.
    ray_queue.init(
        queue="team-a", config=teams_config(cpu=4, gpu=1), state_dir=ft_cluster.state_dir
    )
    with _grpc() as client:
        [kept] = client.submit_many([_gpu_group("kept", "team-a")])
    assert isinstance(kept, WorkloadStatus), kept
    wait_for(lambda: live_pgs().get("kept", {}).get("state") == "CREATED", 60)
    driver, owned = _start_driver(cluster)
    try:
        with _grpc() as client:
            [waiting] = client.submit_many([_gpu_group("waiting", "team-a")])
        assert isinstance(waiting, WorkloadStatus), waiting
        wait_for(lambda: _state("waiting") is S.PENDING and _state(owned) is S.ADMITTED, 30)
        before = {s.spec.id for s in ray.get(manager().workloads.remote())}
        kept_group = live_pgs()["kept"]["placement_group_id"]
        old_manager = psutil.Process(ray.get(manager().pid.remote()))
        ray_queue.shutdown()
        ray.shutdown()

        # The head pod dies: the head's processes and the driver connected through it.
        os.killpg(driver.pid, signal.SIGKILL)
        ft_cluster.restart_head()
        old_manager.wait(timeout=30)  # never two managers on one store

        _connect(cluster)
        wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 90)
        # Ray restarts the manager on the new head; it recovers from its store.
        wait_for(_manager_answers, 90, interval_s=0.5)
        assert _manager_node() == _head_node()
        after = {s.spec.id: s for s in ray.get(manager().workloads.remote())}
        assert before <= after.keys(), "workloads were lost"

        # The gRPC workload kept its admission and its very placement group.
        assert after["kept"].state is S.ADMITTED
        assert [t.to_state for t in after["kept"].history].count(S.ADMITTED) == 1
        assert live_pgs()["kept"]["placement_group_id"] == kept_group
        # The driver died with the head: its workload is cancelled, its group removed...
        wait_for(lambda: _state(owned) is S.CANCELLED, 60)
        assert ray.get(manager().workload.remote(owned)).reason == "OwnerDied"
        wait_for(lambda: owned not in live_pgs(), 30)
        # ...and the GPU it held goes to the workload that waited for it, once.
        wait_for(lambda: live_pgs().get("waiting", {}).get("state") == "CREATED", 60)
        waited = ray.get(manager().workload.remote("waiting"))
        assert waited.state is S.ADMITTED
        assert [t.to_state for t in waited.history].count(S.ADMITTED) == 1
        assert sorted(live_pgs()) == ["kept", "waiting"]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)


def _state(workload: str) -> WorkloadState:
    return ray.get(manager().workload.remote(workload)).state


def _manager_node() -> str:
    # Ray's actor table; the state API would need the dashboard, which this head lacks.
    info = ray._private.state.actors(manager()._actor_id.hex())
    return str(info["Address"]["NodeID"])


def _head_node() -> str:
    [head] = [
        n["NodeID"]
        for n in ray.nodes()
        if n["Alive"] and "node:__internal_head__" in n["Resources"]
    ]
    return str(head)


def _manager_answers() -> bool:
    try:
        ray.get(manager().ping.remote(), timeout=5)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, AssertionError):
        return False
    return True
