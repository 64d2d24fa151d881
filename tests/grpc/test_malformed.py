"""Malformed, hostile and oversized messages: a clean status naming the field, never a
crash (INTERNAL/UNKNOWN), never a lost or half-queued workload."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ray_queue.grpc.gen import autoscaler_pb2 as apb
from ray_queue.grpc.gen import queue_pb2 as pb
from tests.grpc.conftest import ADMIN_TOKEN, Harness, request

pytestmark = pytest.mark.timeout(300)

METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
UNARY = [
    "/ray_queue.v1.QueueService/SubmitWorkloads",
    "/ray_queue.v1.QueueService/GetWorkload",
    "/ray_queue.v1.QueueService/CancelWorkload",
    "/ray_queue.v1.QueueService/ListWorkloads",
    "/ray_queue.v1.QueueService/ListPending",
    "/ray_queue.v1.QueueService/GetClusterQueues",
    "/ray_queue.v1.QueueService/GetCohorts",
    "/ray_queue.v1.QueueService/GetConfig",
    "/ray_queue.v1.QueueService/ApplyConfig",
    "/ray_queue.v1.AutoscalerService/ReportAdmissionCheck",
]
#: Statuses a bad request may get; INTERNAL or UNKNOWN would mean the server broke.
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture
def seeded(harness: Harness) -> Iterator[tuple[Harness, grpc.Channel]]:
    """A server holding two workloads that no bad request may disturb."""
    harness.client().submit_many([request("keep-a"), request("keep-b", "team-b")])
    channel = grpc.insecure_channel(harness.address)
    yield harness, channel
    channel.close()


def _raw(channel: grpc.Channel, method: str, body: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(body, metadata=METADATA, timeout=10)
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _still_intact(harness: Harness) -> None:
    ids = {w.spec.id for w in harness.backend.workloads()}
    assert {"keep-a", "keep-b"} <= ids
    assert harness.client().health() == "SERVING"


@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
@given(method=st.sampled_from(UNARY), body=st.binary(max_size=512))
def test_random_bytes(seeded: tuple[Harness, grpc.Channel], method: str, body: bytes) -> None:
    harness, channel = seeded
    code = _raw(channel, method, body)
    assert code in CLEAN, f"{method} answered {code} to {body!r}"
    _still_intact(harness)


def test_garbage_is_invalid_argument(seeded: tuple[Harness, grpc.Channel]) -> None:
    harness, channel = seeded
    # Field 1 (workloads) claims 5 bytes but the body ends after 1: truncated.
    code = _raw(channel, UNARY[0], b"\x0a\x05\x01")
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    _still_intact(harness)


names = st.text(max_size=300)
amounts = st.integers(min_value=-(2**63), max_value=2**63 - 1)
counts = st.integers(min_value=-(2**31), max_value=2**31 - 1)
enums = st.integers(min_value=-5, max_value=12)
groups = st.builds(
    lambda res, count: pb.BundleGroup(resources_milli=res, count=count),
    st.dictionaries(
        st.sampled_from(["CPU", "GPU", "memory", "", "x" * 300, "\x00"]), amounts, max_size=3
    ),
    counts,
)
specs = st.builds(
    lambda id_, queue, gs, kind, strategy, pc, min_count, entry, env: pb.WorkloadSpec(
        id=id_,
        queue=queue,
        bundle_groups=gs,
        kind=kind,
        strategy=strategy,
        priority_class=pc,
        min_count=min_count,
        job=pb.JobSpec(entrypoint=entry, runtime_env_json=env),
    ),
    st.one_of(names, st.sampled_from(["w1", "w2", "keep-a"])),
    st.sampled_from(["team-a", "team-b", "nope", ""]),
    st.lists(groups, max_size=3),
    enums,
    enums,
    st.sampled_from(["", "low", "high", "ultra"]),
    counts,
    st.sampled_from(["", "python x.py"]),
    st.sampled_from(["", "{}", "[1]", "{bad", '{"pip": ["x"]}']),
)


@settings(max_examples=120, deadline=None, suppress_health_check=SUPPRESS)
@given(batch=st.lists(specs, max_size=4))
def test_generated_submissions(
    seeded: tuple[Harness, grpc.Channel], batch: list[pb.WorkloadSpec]
) -> None:
    harness, channel = seeded
    before = {w.spec.id: w for w in harness.backend.workloads()}
    body = pb.SubmitWorkloadsRequest(workloads=batch).SerializeToString()
    call = channel.unary_unary(
        UNARY[0],
        request_serializer=None,
        response_deserializer=pb.SubmitWorkloadsResponse.FromString,
    )
    try:
        response = call(body, metadata=METADATA, timeout=10)
    except grpc.RpcError as e:
        assert e.code() is grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert e.details().startswith("workloads["), e.details()  # names the field
        after = {w.spec.id for w in harness.backend.workloads()}
        assert after == set(before)  # a refused batch queues nothing
    else:
        assert len(response.results) == len(batch)
        for spec, result in zip(batch, response.results, strict=True):
            assert result.id == spec.id
            if result.HasField("workload"):
                assert harness.backend.workload(result.id).spec.queue == spec.queue
            else:
                assert result.error.type and result.error.message
    after = {w.spec.id: w for w in harness.backend.workloads()}
    assert set(before) <= set(after)
    for workload, status in before.items():
        assert after[workload].spec == status.spec  # nothing lost or overwritten
    _still_intact(harness)


@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
@given(
    workload=names,
    check=names,
    state=enums,
    message=st.text(max_size=100),
)
def test_generated_check_reports(
    seeded: tuple[Harness, grpc.Channel], workload: str, check: str, state: int, message: str
) -> None:
    harness, channel = seeded
    body = apb.ReportAdmissionCheckRequest(
        workload=workload, check=check, state=state, message=message
    ).SerializeToString()
    assert _raw(channel, UNARY[-1], body) in CLEAN
    _still_intact(harness)


def test_named_fields_in_errors(seeded: tuple[Harness, grpc.Channel]) -> None:
    harness, channel = seeded
    cases = {
        "workloads[0].bundle_groups[0].count": pb.WorkloadSpec(
            id="x", queue="team-a", bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1})]
        ),
        "workloads[0].bundle_groups[0].resources_milli['CPU']": pb.WorkloadSpec(
            id="x",
            queue="team-a",
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": -1}, count=1)],
        ),
        "workloads[0].kind": pb.WorkloadSpec(
            id="x",
            queue="team-a",
            kind=99,
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=1)],
        ),
        "workloads[0].id": pb.WorkloadSpec(
            queue="team-a", bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=1)]
        ),
        "workloads[0].min_count": pb.WorkloadSpec(
            id="x",
            queue="team-a",
            min_count=5,
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=2)],
        ),
        "workloads[0].job.entrypoint": pb.WorkloadSpec(
            id="x",
            queue="team-a",
            kind=pb.WORKLOAD_KIND_JOB,
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=1)],
        ),
        # Nested deeper than Python's JSON parser goes: was INTERNAL (RecursionError).
        "workloads[0].job.runtime_env_json": pb.WorkloadSpec(
            id="x",
            queue="team-a",
            kind=pb.WORKLOAD_KIND_JOB,
            job=pb.JobSpec(entrypoint="python x.py", runtime_env_json="[" * 50_000),
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=1)],
        ),
    }
    stub = channel.unary_unary(
        UNARY[0],
        request_serializer=pb.SubmitWorkloadsRequest.SerializeToString,
        response_deserializer=pb.SubmitWorkloadsResponse.FromString,
    )
    for field, spec in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            stub(pb.SubmitWorkloadsRequest(workloads=[spec]), metadata=METADATA, timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(field), info.value.details()
    _still_intact(harness)


def test_oversized_messages(make_harness) -> None:  # type: ignore[no-untyped-def]
    from ray_queue.grpc.service import ServiceLimits

    harness: Harness = make_harness(
        max_message_bytes=64 * 1024, service_limits=ServiceLimits(max_batch=50)
    )
    channel = grpc.insecure_channel(harness.address)
    huge = pb.SubmitWorkloadsRequest(
        workloads=[pb.WorkloadSpec(id="x" * 200_000, queue="team-a")]
    ).SerializeToString()
    assert _raw(channel, UNARY[0], huge) is grpc.StatusCode.RESOURCE_EXHAUSTED
    spec = pb.WorkloadSpec(
        queue="team-a", bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1}, count=1)]
    )
    many = pb.SubmitWorkloadsRequest(workloads=[spec] * 51).SerializeToString()
    assert _raw(channel, UNARY[0], many) is grpc.StatusCode.INVALID_ARGUMENT
    assert harness.backend.workloads() == []
    channel.close()
