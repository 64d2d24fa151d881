"""Demand sources (in-process and over real gRPC), RayCluster spec parsing and request
names/phases. No Ray, no Kubernetes API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from autoscaler.grpc_source import GrpcSource
from autoscaler.providers.base import PermanentError
from autoscaler.providers.kuberay import custom_resources, group_labels, group_shape
from autoscaler.requests import Phase, gang_group_name, label_value, phase_of, request_name
from autoscaler.sources import InProcessSource, Overrides
from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import CheckState, WorkloadId, WorkloadState
from tests.autoscaler.k8s_fixtures import queue_config, spec, worker_group
from tests.k8s.process import wait_for

# ------------------------------------------------------------------ in-process source


def test_in_process_source_adds_group_check_class_and_attempt() -> None:
    clock = ManualClock(0.0)
    engine = Engine(queue_config(), clock)
    engine.submit(spec("g", "gpu", {"GPU": 1000}, 2))
    engine.submit(spec("c", "cpu", {"CPU": 1000}, 1))
    engine.schedule()
    source = InProcessSource(engine)
    by_id = {g.workload: g for g in source.demand().gangs}
    gpu, cpu = by_id[WorkloadId("g")], by_id[WorkloadId("c")]
    assert (gpu.worker_group, gpu.check, gpu.all_at_once) == ("gpu-workers", "prov", True)
    assert gpu.provisioning_class == "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
    assert gpu.state is WorkloadState.QUOTA_RESERVED and gpu.attempt == 0
    assert (cpu.worker_group, cpu.check, cpu.all_at_once) == ("cpu-workers", None, False)

    source.report_check(WorkloadId("g"), "prov", CheckState.RETRY, "no capacity")
    clock.advance(5.0)
    engine.schedule()
    (again,) = [g for g in source.demand().gangs if g.workload == "g"]
    assert again.attempt == 1

    source.report_check(WorkloadId("g"), "prov", CheckState.READY, "")
    assert engine.workload(WorkloadId("g")).state is WorkloadState.ADMITTED
    source.evict(WorkloadId("g"), "revoked")
    assert engine.workload(WorkloadId("g")).state is not WorkloadState.ADMITTED
    source.evict(WorkloadId("g"), "revoked twice")  # no longer holds quota: ignored


def test_overrides_map_flavors_to_groups() -> None:
    engine = Engine(queue_config(), ManualClock(0.0))
    engine.submit(spec("c", "cpu", {"CPU": 1000}, 1))
    engine.schedule()
    source = InProcessSource(engine, overrides=Overrides(worker_groups={"cpu": "big-cpus"}))
    (gang,) = source.demand().gangs
    assert gang.worker_group == "big-cpus"


# ------------------------------------------------------------------ gRPC source

GRPC_CONFIG = """
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
metadata: {name: cq}
spec:
  admissionChecksStrategy:
    admissionChecks:
    - {name: prov, onFlavors: [gpu]}
  resourceGroups:
  - coveredResources: [GPU]
    flavors:
    - name: gpu
      resources: [{name: GPU, nominalQuota: 8}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team}
spec: {clusterQueue: cq}
"""


@pytest.fixture
def grpc_backend() -> Iterator[tuple[object, str]]:
    from ray_queue.grpc.local_manager import LocalManager
    from ray_queue.grpc.server import QueueServer, ServerOptions

    backend = LocalManager(load_config(GRPC_CONFIG), ManualClock(0.0))
    server = QueueServer(backend, ServerOptions(port=0, host="127.0.0.1")).start()
    try:
        yield backend, server.address
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_grpc_source_follows_the_demand_stream_and_reports(
    grpc_backend: tuple[object, str],
) -> None:
    from ray_queue.engine.model import BundleGroup
    from ray_queue.grpc.client import QueueClient
    from ray_queue.wire import SubmitRequest

    _backend, address = grpc_backend
    client = QueueClient(address)
    source = GrpcSource(client).start()
    try:
        wait_for(lambda: source.demand().gangs == (), 20, what="the first snapshot")
        client.submit(
            SubmitRequest(id=WorkloadId("train"), queue="team",
                          bundle_groups=(BundleGroup({"GPU": 2000}, 2),))
        )
        gangs = wait_for(lambda: source.demand().gangs, 20, what="the gang in the stream")
        (gang,) = gangs
        assert gang.workload == "train" and gang.all_at_once
        assert (gang.worker_group, gang.check, gang.attempt) == ("gpu-group", "prov", 0)
        assert gang.provisioning_class == "queued-provisioning.gke.io"  # the default
        assert len(gang.bundles) == 2
        source.report_check(WorkloadId("train"), "prov", CheckState.READY, "provisioned")
        assert client.workload("train").state is WorkloadState.ADMITTED
        source.report_check(WorkloadId("nope"), "prov", CheckState.READY, "")  # ignored
    finally:
        source.stop()
        client.close()


@pytest.mark.timeout(60)
def test_grpc_source_with_an_autoscaler_token_uses_the_overrides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An autoscaler token may call only the AutoscalerService: no config, no workloads."""
    from ray_queue.engine.model import BundleGroup
    from ray_queue.grpc.auth import Principal, Role, digest
    from ray_queue.grpc.client import QueueClient
    from ray_queue.grpc.local_manager import LocalManager
    from ray_queue.grpc.server import QueueServer, ServerOptions
    from ray_queue.wire import SubmitRequest

    clock = ManualClock(0.0)
    backend = LocalManager(load_config(GRPC_CONFIG), clock)
    backend.submit_many([SubmitRequest(id=WorkloadId("train"), queue="team",
                                       bundle_groups=(BundleGroup({"GPU": 1000}, 1),))])
    token = "autoscaler-token-0123"
    server = QueueServer(backend, ServerOptions(
        port=0, host="127.0.0.1",
        principals={digest(token): Principal("as", Role.AUTOSCALER)},
    )).start()
    client = QueueClient(server.address, token=token)
    source = GrpcSource(
        client,
        overrides=Overrides(worker_groups={"gpu": "gpu-group"}, provisioning_check="prov"),
        config_refresh_s=0.0,
    ).start()
    try:
        gangs = wait_for(lambda: source.demand().gangs, 20, what="the gang in the stream")
        (gang,) = gangs
        assert (gang.worker_group, gang.check, gang.attempt) == ("gpu-group", "prov", 0)
        # Refused once, the config is not asked for (nor warned about) again.
        for _ in range(3):
            source.demand()
        denials = [r for r in caplog.records if "may not read the config" in r.getMessage()]
        assert len(denials) == 1
        # Provisioning failed: the workload is requeued, and its next attempt (a new
        # ProvisioningRequest name) comes in the stream, though the token cannot read it.
        source.report_check(WorkloadId("train"), "prov", CheckState.RETRY, "no capacity")
        clock.advance(3600.0)
        backend.tick()
        wait_for(
            lambda: [g.attempt for g in source.demand().gangs] == [1], 20, what="attempt 1"
        )
        source.report_check(WorkloadId("train"), "prov", CheckState.READY, "provisioned")
        assert backend.workload(WorkloadId("train")).state is WorkloadState.ADMITTED
        # CapacityRevoked on a running gang: evicted over the AutoscalerService.
        source.evict(WorkloadId("train"), "ProvisioningRequest capacity revoked")
        evicted = backend.workload(WorkloadId("train"))
        assert evicted.state is WorkloadState.EVICTED
        assert evicted.history[-1].reason == "CapacityRevoked"
        source.evict(WorkloadId("train"), "revoked twice")  # holds no quota: ignored
    finally:
        source.stop()
        client.close()
        server.stop()


# ------------------------------------------------------------------ RayCluster spec


def test_shape_from_limits() -> None:
    group = worker_group("g", cpu="1500m", gpu="4")
    assert group_shape(group) == {"CPU": 2000, "GPU": 4000, "memory": 512 * 2**20 * 1000}


def test_shape_from_ray_start_params_wins() -> None:
    group = worker_group("g", cpu="8", tpu="4")
    group["rayStartParams"] = {
        "num-cpus": "2", "num-gpus": "1", "memory": "1000",
        "resources": '"{\\"widget\\": 2, \\"half\\": 0.5}"',
    }
    assert group_shape(group) == {
        "CPU": 2000, "GPU": 1000, "TPU": 4000, "memory": 1_000_000, "widget": 2000, "half": 500
    }


def test_custom_resources_plain_json_and_errors() -> None:
    assert custom_resources('{"a": 1}') == {"a": 1000}
    assert custom_resources(None) == {}
    with pytest.raises(PermanentError):
        custom_resources("{not json")
    with pytest.raises(PermanentError):
        custom_resources("[1, 2]")


def test_labels() -> None:
    group = worker_group("g", labels="team=a, accel=A100")
    assert group_labels(group) == {"ray.io/node-group": "g", "team": "a", "accel": "A100"}


# ------------------------------------------------------------------ names and phases

_DNS = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    "workload", ["simple", "Team_A/Job.42", "x" * 300, "---", "ünïcode wörkload"]
)
def test_names_are_valid_stable_and_distinct(workload: str) -> None:
    wid = WorkloadId(workload)
    name = request_name(wid, 3)
    assert _DNS.fullmatch(name) and len(name) <= 63
    assert name == request_name(wid, 3)
    assert name != request_name(wid, 4)
    assert request_name(WorkloadId(workload + "x"), 3) != name
    group = gang_group_name("gpu-workers", wid, 3)
    assert _DNS.fullmatch(group) and len(group) <= 40
    value = label_value(workload)
    assert len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9])?", value)


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ({}, Phase.PENDING),
        ({"Accepted": "True"}, Phase.PENDING),
        ({"Accepted": "True", "Provisioned": "False"}, Phase.PENDING),
        ({"Provisioned": "True"}, Phase.PROVISIONED),
        ({"Provisioned": "True", "BookingExpired": "True"}, Phase.BOOKING_EXPIRED),
        ({"Provisioned": "True", "CapacityRevoked": "True"}, Phase.CAPACITY_REVOKED),
        ({"Failed": "True"}, Phase.FAILED),
    ],
)
def test_phase_of(conditions: dict[str, str], phase: Phase) -> None:
    assert phase_of(conditions) is phase
