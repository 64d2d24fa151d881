"""Real gRPC servers on loopback over the real manager without Ray (``LocalManager``), and
clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind
from ray_queue.grpc.auth import Limits, Principal, Role, digest
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.local_manager import LocalManager
from ray_queue.grpc.server import QueueServer, ServerOptions
from ray_queue.grpc.service import ServiceLimits
from ray_queue.wire import SubmitRequest

#: Two teams in one cohort; team-a's GPU flavor is provisioned all-at-once behind a check.
CONFIG_YAML = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: cpu}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: gpu}
spec: {provisioning: all-at-once, workerGroup: gpu-group}
---
apiVersion: ray-queue.io/v1alpha1
kind: AdmissionCheck
metadata: {name: prov}
spec: {controllerName: ray-queue.io/provisioning}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: cq-a}
spec:
  cohortName: shared
  admissionChecksStrategy:
    admissionChecks:
    - {name: prov, onFlavors: [gpu]}
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources: [{name: CPU, nominalQuota: 4}]
  - coveredResources: [GPU]
    flavors:
    - name: gpu
      resources: [{name: GPU, nominalQuota: 4}]
  preemption: {withinClusterQueue: LowerPriority}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: cq-b}
spec:
  cohortName: shared
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources: [{name: CPU, nominalQuota: 4}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team-a}
spec: {clusterQueue: cq-a}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team-b}
spec: {clusterQueue: cq-b}
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: low}
value: 10
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: high}
value: 100
"""

ADMIN_TOKEN = "admin-token-0123"
TENANT_A_TOKEN = "tenant-a-token-0123"
AUTOSCALER_TOKEN = "autoscaler-token-0123"


def principals(limits: Limits | None = None) -> dict[str, Principal]:
    lim = limits or Limits()
    return {
        digest(ADMIN_TOKEN): Principal("ops", Role.ADMIN, limits=lim),
        digest(TENANT_A_TOKEN): Principal("team-a", Role.TENANT, frozenset({"team-a"}), lim),
        digest(AUTOSCALER_TOKEN): Principal("autoscaler", Role.AUTOSCALER, limits=lim),
    }


def request(
    workload: str,
    queue: str = "team-a",
    *,
    cpu: int = 1000,
    count: int = 1,
    priority: str | None = None,
    gpu: int = 0,
    kind: WorkloadKind = WorkloadKind.PLACEMENT_GROUP,
    payload: dict[str, Any] | None = None,
) -> SubmitRequest:
    resources = {"CPU": cpu} | ({"GPU": gpu} if gpu else {})
    return SubmitRequest(
        id=WorkloadId(workload),
        queue=queue,
        bundle_groups=(BundleGroup(resources, count),),
        priority_class=priority,
        kind=kind,
        payload=payload or {},
    )


def wait_for(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.02)


class Harness:
    """A started server and ways to reach it."""

    def __init__(self, server: QueueServer, backend: LocalManager, clock: ManualClock) -> None:
        self.server = server
        self.backend = backend
        self.clock = clock
        self._clients: list[QueueClient] = []

    @property
    def address(self) -> str:
        return self.server.address

    def client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> QueueClient:
        c = QueueClient(self.address, token=token, timeout_s=10, **kwargs)
        self._clients.append(c)
        return c

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self.server.stop(grace_s=0.2)


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        *,
        auth: bool = True,
        limits: Limits | None = None,
        service_limits: ServiceLimits | None = None,
        **options: Any,
    ) -> Harness:
        options.setdefault("host", "127.0.0.1")
        clock = ManualClock(1_000.0)
        backend = LocalManager(load_config(CONFIG_YAML), clock)
        server = QueueServer(
            backend,
            ServerOptions(
                port=0,
                principals=options.pop("principals", None)
                or (principals(limits) if auth else {}),
                limits=service_limits or ServiceLimits(poll_s=0.1, demand_heartbeat_s=0.5),
                **options,
            ),
        ).start()
        harness = Harness(server, backend, clock)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def assert_server_threads_end(before: set[int | None], timeout_s: float = 10.0) -> None:
    """The gRPC server threads started since ``before`` (thread idents) end within
    ``timeout_s``: each is joined until the deadline, so this waits on the threads
    themselves, not on a clock."""
    deadline = time.monotonic() + timeout_s

    def started() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("ray-queue-grpc") and t.is_alive()
        ]

    for thread in started():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not started(), f"threads leaked: {started()}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Servers and streams started by a test are gone when it ends."""
    before = {t.ident for t in threading.enumerate()}
    yield
    assert_server_threads_end(before)
