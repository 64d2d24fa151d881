"""Every RPC of QueueService and AutoscalerService, over a real server and the real engine."""

from __future__ import annotations

import dataclasses
import threading

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ray_queue.engine.errors import (
    ConfigError,
    DuplicateWorkloadError,
    InvalidTransitionError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)
from ray_queue.engine.model import CheckState, WorkloadKind, WorkloadState
from ray_queue.grpc.backend import JobsUnsupportedError, WorkloadEvent
from ray_queue.grpc.client import DemandSnapshot
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.gen import queue_pb2_grpc
from ray_queue.wire import NodeShape, RayJobHolding
from tests.grpc.conftest import ADMIN_TOKEN, CONFIG_YAML, TENANT_A_TOKEN, Harness, request

pytestmark = pytest.mark.timeout(60)
S = WorkloadState


def test_submit_batch_reports_each_item(harness: Harness) -> None:
    client = harness.client()
    out = client.submit_many(
        [
            request("ok"),
            request("bad-queue", "nope"),
            request("bad-priority", priority="ultra"),
            request("too-big", cpu=100_000),
            request("ok"),
        ]
    )
    assert out[0].state is S.ADMITTED
    assert isinstance(out[1], UnknownQueueError)
    assert isinstance(out[2], UnknownPriorityClassError)
    assert isinstance(out[3], WorkloadRejected)
    assert isinstance(out[4], DuplicateWorkloadError)
    assert [w.spec.id for w in client.workloads()] == ["ok"]


def test_submit_single_raises_typed_error(harness: Harness) -> None:
    with pytest.raises(UnknownQueueError, match="nope"):
        harness.client().submit(request("x", "nope"))


def test_get_workload_with_history(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("w", priority="high"))
    status = client.workload("w")
    assert status.state is S.ADMITTED and status.priority == 100
    assert [t.reason for t in status.history] == ["Created", "Admitted"]
    assert status.admission is not None and status.admission.usage == {("cpu", "CPU"): 1000}
    assert status == harness.backend.workload(status.spec.id)


def test_get_unknown_workload_is_not_found(harness: Harness) -> None:
    with pytest.raises(UnknownWorkloadError):
        harness.client().workload("ghost")


def test_cancel_frees_quota_and_admits_the_next(harness: Harness) -> None:
    client = harness.client()
    client.submit_many([request("big", cpu=8000), request("next", cpu=1000)])
    assert client.workload("next").state is S.PENDING
    assert client.cancel("big", message="not needed") is True
    assert client.workload("big").state is S.CANCELLED
    assert client.workload("big").history[-1].message == "not needed"
    assert client.workload("next").state is S.ADMITTED
    assert client.cancel("big") is False  # idempotent
    with pytest.raises(UnknownWorkloadError):
        client.cancel("ghost")


def test_list_filters_and_pages(harness: Harness) -> None:
    client = harness.client()
    client.submit_many(
        [request(f"a{i}", cpu=2000) for i in range(6)] + [request("b0", "team-b", cpu=1000)]
    )
    everything = client.workloads(page_size=2)
    assert [w.spec.id for w in everything] == [f"a{i}" for i in range(6)] + ["b0"]
    assert [w.spec.id for w in client.workloads(queue="team-b")] == ["b0"]
    assert {w.spec.id for w in client.workloads(cluster_queue="cq-a")} == {
        f"a{i}" for i in range(6)
    }
    pending = client.workloads(states=[S.PENDING])
    assert pending and all(w.state is S.PENDING for w in pending)
    assert client.workloads(owner="someone-else") == []
    assert all(w.history == () for w in everything)
    assert client.workloads(queue="team-b", include_history=True)[0].history


def test_list_pending_positions(harness: Harness) -> None:
    client = harness.client()
    # cq-b never preempts, so the filler keeps its quota and the others wait in line.
    client.submit(request("fill", "team-b", cpu=8000))
    client.submit_many(
        [
            request("p-low", "team-b", priority="low"),
            dataclasses.replace(request("p-high", "team-b", priority="high"), name="sweep-3"),
        ]
    )
    pending = client.pending(queue="team-b")
    assert [(p.workload, p.position_in_queue) for p in pending] == [("p-high", 0), ("p-low", 1)]
    assert pending[0].reason
    # The name given with name= comes with the position, as ray_queue.pending() gives it.
    assert [p.name for p in pending] == ["sweep-3", ""]
    assert [p.workload for p in client.pending(cluster_queue="cq-b", limit=1)] == ["p-high"]


def test_unmanaged_usage_is_empty_where_the_manager_sees_no_ray_nodes(harness: Harness) -> None:
    # The development server runs no Ray; on a real cluster see tests/ray/test_queueing.py.
    assert harness.client().unmanaged_usage() == []
    assert harness.client(token=TENANT_A_TOKEN).unmanaged_usage() == []


def test_unmanaged_usage_names_the_ray_jobs_holding_it(harness: Harness) -> None:
    # What the manager's slow tick hands the core on a real cluster (tests/ray has the
    # end-to-end test): a node with 2 of 4 GPUs in use, one Ray job holding them.
    core = harness.backend.core
    core.set_nodes([NodeShape("n1", {}, {"GPU": 4000}, available={"GPU": 2000})])
    core.set_ray_holdings([RayJobHolding("02000000", "n1", {"GPU": 2000, "CPU": 1000})])
    (usage,) = harness.client().unmanaged_usage()
    assert (usage.resource, usage.amount, usage.by_job) == ("GPU", 2000, (("02000000", 2000),))


def test_cluster_queue_and_cohort_status(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("borrower", cpu=6000))
    (cq_a,) = client.cluster_queues(["cq-a"])
    cpu = next(r for r in cq_a.resources if r.resource == "CPU")
    assert (cpu.nominal, cpu.usage, cpu.borrowed) == (4000, 6000, 2000)
    assert cq_a.admitted == 1 and cq_a.weighted_share > 0
    assert {c.name for c in client.cluster_queues()} == {"cq-a", "cq-b"}
    (shared,) = client.cohorts()
    assert shared.name == "shared" and shared.parent is None
    assert client.cluster_queues() == harness.backend.cluster_queues()


def test_get_and_apply_config(harness: Harness) -> None:
    client = harness.client()
    text = client.config_yaml()
    assert "kind: ClusterQueue" in text
    result = client.apply_config(text)
    assert result.applied and "2 ClusterQueues" in result.summary
    tail = "\n---\napiVersion: ray-queue.io/v1alpha1\nkind: Queue"  # cq-b's quota is last
    bigger = CONFIG_YAML.replace(
        "[{name: CPU, nominalQuota: 4}]" + tail, "[{name: CPU, nominalQuota: 40}]" + tail
    )
    assert bigger != CONFIG_YAML
    dry = client.apply_config(bigger, validate_only=True)
    assert not dry.applied and dry.problems == ()
    assert client.cluster_queues(["cq-b"])[0].resources[0].nominal == 4000
    client.apply_config(bigger)
    assert client.cluster_queues(["cq-b"])[0].resources[0].nominal == 40_000


def test_apply_bad_config_lists_problems_and_changes_nothing(harness: Harness) -> None:
    client = harness.client()
    broken = CONFIG_YAML.replace("clusterQueue: cq-b", "clusterQueue: cq-missing")
    with pytest.raises(ConfigError) as info:
        client.apply_config(broken)
    assert info.value.problems and any("cq-missing" in str(p) for p in info.value.problems)
    dry = client.apply_config(broken, validate_only=True)
    assert not dry.applied and dry.problems
    with pytest.raises(ConfigError, match="YAML"):
        client.apply_config("kind: [unclosed")
    assert client.config_yaml() == harness.client().config_yaml()
    assert {q.name for q in client.cluster_queues()} == {"cq-a", "cq-b"}


def test_apply_config_that_drops_a_used_queue_is_refused(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("b", "team-b"))
    without_b = CONFIG_YAML.replace(
        "apiVersion: ray-queue.io/v1alpha1\nkind: Queue\nmetadata: {name: team-b}\n"
        "spec: {clusterQueue: cq-b}\n---\n",
        "",
    )
    assert without_b != CONFIG_YAML
    dry = client.apply_config(without_b, validate_only=True)
    assert [p.document for p in dry.problems] == ["Queue/team-b"]
    assert "used by 1 queued or running workload(s) (b)" in dry.problems[0].message
    with pytest.raises(ConfigError, match="team-b"):
        client.apply_config(without_b)


def test_apply_config_documents_as_structs(harness: Harness) -> None:
    import yaml
    from google.protobuf import struct_pb2

    docs = [d for d in yaml.safe_load_all(CONFIG_YAML) if d]
    items = []
    for d in docs:
        s = struct_pb2.Struct()
        s.update(d)
        items.append(s)
    stub = queue_pb2_grpc.QueueServiceStub(grpc.insecure_channel(harness.address))
    response = stub.ApplyConfig(
        pb.ApplyConfigRequest(documents=pb.ConfigDocuments(items=items), validate_only=True),
        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
    )
    assert not response.applied and list(response.problems) == []


def test_watch_streams_transitions(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("before"))
    events: list[WorkloadEvent] = []
    started = threading.Event()

    def watch() -> None:
        for event in client.watch(queue="team-a", send_initial=True, timeout_s=20):
            events.append(event)
            started.set()
            if event.workload == "w2" and event.transition.to_state is S.CANCELLED:
                return

    t = threading.Thread(target=watch)
    t.start()
    assert started.wait(10)
    client.submit_many([request("w2", cpu=4000), request("other", "team-b")])
    client.cancel("w2")
    t.join(20)
    assert not t.is_alive()
    seen = [(e.workload, e.transition.reason) for e in events]
    assert seen[0] == ("before", "Snapshot")
    assert ("w2", "Created") in seen and ("w2", "Admitted") in seen
    assert seen[-1] == ("w2", "Cancelled")
    assert all(e.queue == "team-a" for e in events)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_watch_demand_and_report_check(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("gang", cpu=1000, gpu=2000, count=2))
    snapshots = client.watch_demand(flavors=["gpu"], timeout_s=20)
    first: DemandSnapshot = next(snapshots)
    (gang,) = first.gangs
    assert gang.workload == "gang" and gang.all_at_once and gang.state is S.QUOTA_RESERVED
    assert gang.bundles == ({"GPU": 2000, "CPU": 1000}, {"GPU": 2000, "CPU": 1000})
    status = client.report_check("gang", "prov", CheckState.READY, "nodes are up")
    assert status.state is S.ADMITTED
    second = next(snapshots)
    assert second.generation == first.generation + 1
    assert second.gangs[0].state is S.ADMITTED
    harness.backend.mark_placed(status.spec.id)
    third = next(snapshots)
    assert third.gangs == ()
    snapshots.close()


def test_report_check_retry_and_reject(harness: Harness) -> None:
    client = harness.client()
    client.submit_many([request("r1", gpu=1000), request("r2", gpu=1000)])
    assert client.report_check("r1", "prov", CheckState.RETRY, "no capacity").state is S.EVICTED
    assert client.report_check("r2", "prov", CheckState.REJECTED).state is S.REJECTED
    # A stale report is ignored, not an error.
    assert client.report_check("r2", "prov", CheckState.READY).state is S.REJECTED
    with pytest.raises(UnknownWorkloadError):
        client.report_check("ghost", "prov", CheckState.READY)


def test_evict_workload_requeues_with_back_off(harness: Harness) -> None:
    client = harness.client()
    client.submit(request("gang", cpu=1000, gpu=1000))
    assert client.report_check("gang", "prov", CheckState.READY).state is S.ADMITTED
    status = client.evict("gang", reason="CapacityRevoked", message="nodes taken back")
    assert status.state is S.EVICTED and status.requeue_at is not None
    assert (status.history[-1].reason, status.history[-1].message) == (
        "CapacityRevoked",
        "nodes taken back",
    )
    with pytest.raises(InvalidTransitionError):  # holds no quota any more
        client.evict("gang", reason="CapacityRevoked")
    with pytest.raises(UnknownWorkloadError):
        client.evict("ghost", reason="CapacityRevoked")


def test_jobs_need_a_backend_that_runs_them(harness: Harness) -> None:
    job = request("job", kind=WorkloadKind.JOB, payload={"entrypoint": "python train.py"})
    (outcome,) = harness.client().submit_many([job])
    assert isinstance(outcome, JobsUnsupportedError)
    assert "cannot run jobs" in str(outcome)


def test_health_and_reflection(harness: Harness) -> None:
    client = harness.client(token=None)  # probes need no token
    assert client.health() == "SERVING"
    assert client.health("ray_queue.v1.QueueService") == "SERVING"
    channel = grpc.insecure_channel(harness.address)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(responses).list_services_response.service}
    assert {"ray_queue.v1.QueueService", "ray_queue.v1.AutoscalerService"} <= names
    channel.close()


def test_backend_failures_map_to_clean_statuses(harness: Harness) -> None:
    from ray_queue.grpc.status import RemoteError, ServerUnavailableError

    def busy() -> None:
        raise TimeoutError

    def broken() -> None:
        raise KeyError("secret internals")

    client = harness.client()
    harness.backend.cohorts = busy  # type: ignore[assignment, method-assign]
    with pytest.raises(ServerUnavailableError, match="busy"):
        client.cohorts()
    harness.backend.cohorts = broken  # type: ignore[assignment, method-assign]
    with pytest.raises(RemoteError) as info:
        client.cohorts()
    assert "secret" not in str(info.value)
    assert client.health() == "SERVING"


def test_a_config_with_hundreds_of_long_problems_reaches_the_client_whole(
    harness: Harness,
) -> None:
    # Each Queue names a missing ClusterQueue with a long name: 200 problems quoting it.
    queues = "".join(
        f"---\napiVersion: ray-queue.io/v1alpha1\nkind: Queue\nmetadata: {{name: q{i}}}\n"
        f"spec: {{clusterQueue: {'x' * 2000}{i}}}\n"
        for i in range(200)
    )
    client = harness.client()
    with pytest.raises(ConfigError) as info:
        client.apply_config(CONFIG_YAML + queues)
    problems = info.value.problems
    assert len([p for p in problems if p.document.startswith("Queue/q")]) == 200
    assert max(len(p.message) for p in problems) < 600
    assert {q.name for q in client.cluster_queues()} == {"cq-a", "cq-b"}
