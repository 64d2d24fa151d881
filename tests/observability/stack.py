"""The processes of a ray-queue head pod, run for real beside the Kubernetes test harness.

Why this exists: the dashboard must be judged against what a user runs, not a stand-in.
The Helm chart's head pod runs three things next to Ray: ``python -m ray_queue.manager``
(the QueueManager actor, which serves gRPC and ``/metrics`` itself), the
``python -m autoscaler`` sidecar (demand over the manager's gRPC AutoscalerService, the
RayCluster patched and ProvisioningRequests made through the Kubernetes API), and a token
file that gives the sidecar the ``autoscaler`` role. This module starts the same commands
with the chart's arguments, against the harness's Ray head, API server and KubeRay
operator (``tests/k8s``).

One part of a real cluster is missing from the harness: cluster-autoscaler, which answers
ProvisioningRequests. ``StandInCloud`` plays it, as ``tests/autoscaler`` does: it accepts
each request at once and, a moment later, marks it Provisioned if it asks for no more
hosts than the cloud has room for, Failed otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.ports import free_port
from tests.autoscaler.k8s_fixtures import PR, RAY, raycluster, set_condition, worker_group
from tests.k8s.process import ManagedProcess, wait_for
from tests.observability.load import (
    CPU_GROUP,
    CPU_PER_WORKER,
    GPU_GROUP,
    GPU_POOL_LABEL,
    PROVISIONING_CHECK,
)

logger = logging.getLogger(__name__)

CLUSTER = "obs"
#: How long the sidecar lets a worker sit idle before removing it (chart default: 60).
IDLE_TIMEOUT_S = 10


@contextlib.contextmanager
def ray_cluster(api_client: Any, namespace: str) -> Iterator[str]:
    """The RayCluster the chart would install: 4-CPU workers (at most two) and GPU hosts
    for all-at-once gangs, both starting at zero replicas."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    body = raycluster(
        CLUSTER,
        worker_group(CPU_GROUP, cpu=str(CPU_PER_WORKER), max_replicas=2),
        worker_group(GPU_GROUP, cpu="1", gpu="4", max_replicas=2, labels="=".join(GPU_POOL_LABEL)),
    )
    custom.create_namespaced_custom_object(*RAY[:2], namespace, RAY[2], body)
    try:
        yield CLUSTER
    finally:
        custom.delete_namespaced_custom_object(*RAY[:2], namespace, RAY[2], CLUSTER)


@dataclass(frozen=True, slots=True)
class Tokens:
    """The chart's token Secret, as files: the manager's token file, the sidecar's, and an
    admin's for the driver (the manager actor checks tokens too)."""

    manager_file: Path
    autoscaler_file: Path
    admin_file: Path

    @classmethod
    def write(cls, directory: Path) -> Tokens:
        directory.mkdir(parents=True, exist_ok=True)
        admin, autoscaler = secrets.token_hex(20), secrets.token_hex(20)
        manager_file = directory / "tokens.yaml"
        manager_file.write_text(
            "tokens:\n"
            f"- {{name: admin, role: admin, token: {admin}}}\n"
            f"- {{name: autoscaler, role: autoscaler, token: {autoscaler}}}\n"
        )
        autoscaler_file = directory / "autoscaler-token"
        autoscaler_file.write_text(autoscaler)
        admin_file = directory / "admin-token"
        admin_file.write_text(admin)
        for path in (manager_file, autoscaler_file, admin_file):
            path.chmod(0o600)
        return cls(manager_file, autoscaler_file, admin_file)


@dataclass
class HeadPod:
    """The manager process and the autoscaler sidecar; ``stop()`` ends both."""

    ray_address: str
    workdir: Path
    config_file: Path
    tokens: Tokens
    env: Mapping[str, str]
    grpc_port: int
    metrics_port: int
    autoscaler_metrics_port: int
    manager: ManagedProcess | None = None
    autoscaler: ManagedProcess | None = None

    @classmethod
    def prepare(
        cls, ray_address: str, workdir: Path, config_yaml: str, env: Mapping[str, str]
    ) -> HeadPod:
        config_file = workdir / "queues.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        config_file.write_text(config_yaml)
        return cls(
            ray_address=ray_address,
            workdir=workdir,
            config_file=config_file,
            tokens=Tokens.write(workdir / "tokens"),
            env=dict(env),
            grpc_port=free_port(),
            metrics_port=free_port(),
            autoscaler_metrics_port=free_port(),
        )

    def start_autoscaler(self, kubeconfig: Path, namespace: str) -> ManagedProcess:
        """The sidecar with the chart's arguments (its token may not read the config, so it
        is told each flavor's group and the provisioning check)."""
        self.autoscaler = ManagedProcess(
            "ray-queue-autoscaler",
            [
                sys.executable, "-m", "autoscaler",
                f"--cluster-name={CLUSTER}",
                f"--namespace={namespace}",
                f"--manager-address=127.0.0.1:{self.grpc_port}",
                "--interval-s=1.0",
                f"--metrics-port={self.autoscaler_metrics_port}",
                f"--token-file={self.tokens.autoscaler_file}",
                f"--idle-timeout-s={IDLE_TIMEOUT_S}",
                f"--gcs-address={self.ray_address}",
                f"--worker-group=cpu={CPU_GROUP}",
                f"--worker-group=gpu={GPU_GROUP}",
                f"--provisioning-check={PROVISIONING_CHECK}",
                f"--kubeconfig={kubeconfig}",
            ],
            self.workdir / "autoscaler.log",
            env=self.env,
        )
        return self.autoscaler

    def start_manager(self) -> ManagedProcess:
        """``python -m ray_queue.manager`` as the chart's head script runs it; the gRPC
        port and the token file reach the actor as ``RAY_QUEUE_*`` variables."""
        env = {
            **self.env,
            "RAY_QUEUE_GRPC_PORT": str(self.grpc_port),
            "RAY_QUEUE_TOKENS_FILE": str(self.tokens.manager_file),
        }
        self.manager = ManagedProcess(
            "ray-queue-manager",
            [
                sys.executable, "-m", "ray_queue.manager",
                "--address", self.ray_address,
                "--config-file", str(self.config_file),
                "--watch-config",
                "--metrics-port", str(self.metrics_port),
                "--state-dir", str(self.workdir / "state"),
                "--log-level", "INFO",
            ],
            self.workdir / "manager.log",
            env=env,
        )
        return self.manager

    def autoscaler_log(self) -> str:
        path = self.workdir / "autoscaler.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def manager_serves_metrics(self) -> bool:
        assert self.manager is not None
        self.manager.check_alive()
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return b"ray_queue_cluster_queue_nominal_quota{" in response.read()

    def wait_for_sidecar_to_fail_a_pass(self, timeout_s: float) -> None:
        """Until the manager is up, the sidecar's passes fail (no demand yet) — as in a
        head pod, whose containers start together while the manager waits for Ray."""
        self._wait_for_sidecar_log("autoscaler pass failed", timeout_s, "first (failing) pass")

    def wait_for_sidecar_pass(self, timeout_s: float) -> None:
        self._wait_for_sidecar_log(
            'msg="autoscaler pass" pass=1 ', timeout_s, "first pass with the manager's demand"
        )

    def _wait_for_sidecar_log(self, line: str, timeout_s: float, what: str) -> None:
        assert self.autoscaler is not None
        process = self.autoscaler
        wait_for(
            lambda: process.check_alive() and line in self.autoscaler_log(),
            timeout_s,
            interval_s=0.5,
            what=f"the sidecar's {what}",
        )

    def stop(self) -> None:
        for process in (self.autoscaler, self.manager):
            if process is not None:
                process.stop(grace_s=10.0)


class StandInCloud:
    """Plays cluster-autoscaler for the ProvisioningRequests of one namespace: a cloud with
    room for ``hosts`` GPU hosts. Each request is Accepted when first seen and, after
    ``verdict_after_s``, Provisioned if its pods fit that room, else Failed."""

    def __init__(
        self, api_client: Any, namespace: str, *, hosts: int = 1, verdict_after_s: float = 2.0
    ) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._hosts = hosts
        self._verdict_after_s = verdict_after_s
        self._first_seen: dict[str, float] = {}  # request uid -> monotonic time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-cloud", daemon=True)
        #: (request name, verdict) in the order given.
        self.verdicts: list[tuple[str, str]] = []

    def start(self) -> StandInCloud:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._api_client.close()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._answer()
            except Exception as exc:  # the API server is busy: the next round retries
                logger.warning("stand-in cloud: %r", exc)

    def _answer(self) -> None:
        listed = self._custom.list_namespaced_custom_object(
            *PR[:2], self._namespace, PR[2], _request_timeout=10
        )
        now = time.monotonic()
        for request in listed["items"]:
            meta = request["metadata"]
            first = self._first_seen.setdefault(meta["uid"], now)
            conditions = {
                c["type"] for c in (request.get("status") or {}).get("conditions") or []
                if c.get("status") == "True"
            }
            if not conditions:
                set_condition(self._custom, self._namespace, meta["name"], "Accepted")
            elif conditions == {"Accepted"} and now - first >= self._verdict_after_s:
                pods = sum(int(p.get("count", 1)) for p in request["spec"].get("podSets", []))
                if pods <= self._hosts:
                    verdict, message = "Provisioned", f"{pods} host(s) ready"
                else:
                    verdict = "Failed"
                    message = f"asked for {pods} hosts; the zone has room for {self._hosts}"
                set_condition(self._custom, self._namespace, meta["name"], verdict, message)
                self.verdicts.append((meta["name"], verdict))
