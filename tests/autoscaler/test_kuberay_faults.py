"""Kubernetes faults on the real API server: concurrent writers and an API-server restart.

The concurrent writer is real (a second client patching the same RayCluster between the
autoscaler's read and its write), and so is the restart (the kube-apiserver process of a
control plane owned by this module is stopped and started again on the same port and etcd).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.providers.base import ConflictError, TransientError
from autoscaler.providers.kuberay import KubeRayProvider
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.engine import Engine
from tests.autoscaler.k8s_fixtures import RAY, queue_config, raycluster, spec, worker_group
from tests.k8s.process import ManagedProcess, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

GROUP = "cpu-workers"


class RacingProvider(KubeRayProvider):
    """Runs ``race`` right after its first read of the RayCluster (each read is one API
    call; retries re-read): a writer that gets in first."""

    def __init__(self, *args: Any, race: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._race: Callable[[], None] | None = race
        self.reads = 0

    def _read_cluster(self) -> dict[str, Any]:
        cluster = super()._read_cluster()
        self.reads += 1
        if self._race is not None:
            race, self._race = self._race, None
            race()
        return cluster


def _json_patch(custom: Any, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
    custom.patch_namespaced_custom_object(
        *RAY[:2], namespace, RAY[2], name, ops, _content_type="application/json-patch+json"
    )


@pytest.fixture
def cluster(k8s_api: Any, k8s_namespace: str) -> Iterator[str]:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)
    name = f"rf-{secrets.token_hex(2)}"
    # Suspended: no operator (if one runs in this session) creates Pods for it.
    body = raycluster(name, worker_group(GROUP, cpu="1", max_replicas=4))
    body["spec"]["suspend"] = True
    custom.create_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], body)
    try:
        yield name
    finally:
        custom.delete_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], name)


def test_unrelated_concurrent_write_is_retried_and_kept(
    k8s_api: Any, k8s_namespace: str, cluster: str
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)

    def label_it() -> None:
        custom.patch_namespaced_custom_object(
            *RAY[:2], k8s_namespace, RAY[2], cluster, {"metadata": {"labels": {"owner": "x"}}}
        )

    provider = RacingProvider(
        k8s_api.api_client, cluster_name=cluster, namespace=k8s_namespace, race=label_it
    )
    provider.set_replicas(GROUP, 2, expected=0)
    rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], cluster)
    assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert rc["metadata"]["labels"]["owner"] == "x"  # the other writer's change survived
    # Read, patch refused, re-read to see it was a stale read (not a bad patch), patch again.
    assert provider.reads == 3

    # Setting what is already there is a no-op (a repeated pass after a crash).
    provider.set_replicas(GROUP, 2, expected=0)
    again = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], cluster)
    assert again["metadata"]["resourceVersion"] == rc["metadata"]["resourceVersion"]


def test_competing_change_to_the_same_group_is_not_overwritten(
    k8s_api: Any, k8s_namespace: str, cluster: str
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)

    def someone_scales() -> None:
        _json_patch(custom, k8s_namespace, cluster, [
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3}
        ])

    provider = RacingProvider(
        k8s_api.api_client, cluster_name=cluster, namespace=k8s_namespace, race=someone_scales
    )
    with pytest.raises(ConflictError, match="assumed 0"):
        provider.set_replicas(GROUP, 1, expected=0)
    rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], cluster)
    assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 3


def test_group_reordered_between_read_and_write_is_not_mistaken(
    k8s_api: Any, k8s_namespace: str, cluster: str
) -> None:
    """The patch addresses the group by index; a test op on its name guards the index."""
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)

    def insert_first() -> None:
        _json_patch(custom, k8s_namespace, cluster, [
            {"op": "add", "path": "/spec/workerGroupSpecs/0",
             "value": worker_group("other", cpu="1", max_replicas=4)}
        ])

    provider = RacingProvider(
        k8s_api.api_client, cluster_name=cluster, namespace=k8s_namespace, race=insert_first
    )
    provider.set_replicas(GROUP, 1, expected=0)
    rc = custom.get_namespaced_custom_object(*RAY[:2], k8s_namespace, RAY[2], cluster)
    replicas = {g["groupName"]: g["replicas"] for g in rc["spec"]["workerGroupSpecs"]}
    assert replicas == {"other": 0, GROUP: 1}


# -- API server restart (a control plane of this module's own) ---------------------------


@pytest.fixture(scope="module")
def own_control_plane(k8s_tools: Any) -> Iterator[dict[str, Any]]:
    from tests.k8s.apiserver import create_namespace, start_apiserver
    from tests.k8s.crds import install_crds

    workdir = Path(tempfile.mkdtemp(prefix="rq-as-restart-"))
    server = start_apiserver(k8s_tools, workdir=workdir)
    state: dict[str, Any] = {"server": server, "apiserver": server.apiserver}
    try:
        api_client = server.new_api_client()
        install_crds(api_client)
        create_namespace(api_client, "restart")
        state["api_client"] = api_client
        yield state
    finally:
        state["apiserver"].stop()
        server.etcd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_api_server_restart_is_ridden_out(own_control_plane: dict[str, Any]) -> None:
    from kubernetes import client

    api_client = own_control_plane["api_client"]
    custom = client.CustomObjectsApi(api_client)
    body = raycluster("rr", worker_group(GROUP, cpu="1", max_replicas=4))
    custom.create_namespaced_custom_object(*RAY[:2], "restart", RAY[2], body)

    engine = Engine(queue_config(), SystemClock())
    engine.submit(spec("job", "cpu", {"CPU": 1000}, 2))
    engine.schedule()
    provider = KubeRayProvider(
        api_client, cluster_name="rr", namespace="restart", attempts=2, request_timeout_s=2.0
    )
    loop = Reconciler(
        InProcessSource(engine), provider, config=LoopConfig(interval_s=0.2, max_backoff_s=1.0)
    )

    old: ManagedProcess = own_control_plane["apiserver"]
    old.stop()
    with pytest.raises(TransientError):
        loop.run_once()

    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(
            lambda: loop.metrics.errors.labels(kind="transient")._value.get() >= 2,
            60, what="the loop to fail (and back off) while the API server is down",
        )
        assert loop.passes == 0
        restarted = ManagedProcess("kube-apiserver", old.argv, old.log_path)
        own_control_plane["apiserver"] = restarted

        def converged() -> bool:
            rc = custom.get_namespaced_custom_object(*RAY[:2], "restart", RAY[2], "rr")
            return bool(rc["spec"]["workerGroupSpecs"][0]["replicas"] == 2)

        wait_for(converged, 120, interval_s=0.5, what="the scale-up once the API server is back")
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    rc = custom.get_namespaced_custom_object(*RAY[:2], "restart", RAY[2], "rr")
    assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 2  # exactly once, not 4
