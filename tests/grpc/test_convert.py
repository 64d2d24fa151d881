"""Engine values survive the wire unchanged: encode then decode is the identity."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ray_queue.engine.model import (
    Admission,
    BundleGroup,
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    GroupAdmission,
    PendingPosition,
    PlacementStrategy,
    ResourceStatus,
    Transition,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.grpc import convert
from ray_queue.wire import SubmitRequest

names = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=20,
)
milli = st.integers(min_value=0, max_value=2**53)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
resources = st.dictionaries(names, milli, min_size=1, max_size=4)
groups = st.builds(BundleGroup, resources, st.integers(min_value=1, max_value=1000))
admissions = st.builds(
    Admission,
    names,
    st.tuples(
        st.builds(GroupAdmission, st.dictionaries(names, names, max_size=3), st.integers(1, 1000))
    ),
    st.dictionaries(st.tuples(names, names), milli, max_size=4),
)
transitions = st.builds(
    Transition,
    times,
    st.sampled_from(WorkloadState),
    st.sampled_from(WorkloadState),
    st.text(max_size=20),
    st.text(max_size=40),
    st.none() | admissions,
)
specs = st.builds(
    WorkloadSpec,
    id=names.map(WorkloadId),
    queue=names,
    bundle_groups=st.lists(groups, min_size=1, max_size=3).map(tuple),
    created_at=times,
    kind=st.sampled_from(WorkloadKind),
    strategy=st.sampled_from(PlacementStrategy),
    priority_class=st.none() | names,
    owner=st.text(max_size=10),
    min_count=st.none() | st.integers(1, 1000),
    name=st.text(max_size=10),
)
statuses = st.builds(
    WorkloadStatus,
    spec=specs,
    state=st.sampled_from(WorkloadState),
    priority=int32,
    cluster_queue=names,
    admission=st.none() | admissions,
    checks=st.dictionaries(names, st.sampled_from(CheckState), max_size=3),
    reason=st.text(max_size=20),
    message=st.text(max_size=40),
    requeue_count=st.integers(0, 1000),
    requeue_at=st.none() | times,
    placed=st.booleans(),
    history=st.lists(transitions, max_size=4).map(tuple),
    set_aside=st.booleans(),
)
resource_statuses = st.builds(
    ResourceStatus, names, names, milli, st.none() | milli, st.none() | milli, milli, milli
)
shares = st.floats(min_value=0, allow_nan=False) | st.just(math.inf)


@settings(max_examples=200, deadline=None)
@given(statuses)
def test_workload_status_round_trip(status: WorkloadStatus) -> None:
    assert convert.workload_from_pb(convert.workload_to_pb(status)) == status


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        ClusterQueueStatus,
        names,
        st.none() | names,
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.lists(resource_statuses, max_size=4).map(tuple),
        shares,
    ),
    st.builds(
        CohortStatus,
        names,
        st.none() | names,
        st.lists(resource_statuses, max_size=4).map(tuple),
        shares,
    ),
)
def test_queue_status_round_trip(cq: ClusterQueueStatus, cohort: CohortStatus) -> None:
    assert convert.cluster_queue_from_pb(convert.cluster_queue_to_pb(cq)) == cq
    assert convert.cohort_from_pb(convert.cohort_to_pb(cohort)) == cohort


@given(
    st.builds(
        PendingPosition,
        names.map(WorkloadId),
        names,
        names,
        int32,
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.text(max_size=30),
    )
)
def test_pending_round_trip(p: PendingPosition) -> None:
    assert convert.pending_from_pb(convert.pending_to_pb(p)) == p


gangs = st.builds(
    GangDemand,
    names.map(WorkloadId),
    st.sampled_from(["a100", "cpu", "tpu"]),
    st.lists(
        st.dictionaries(st.sampled_from(["CPU", "GPU"]), st.integers(1, 8000), min_size=1),
        min_size=1,
        max_size=4,
    ).map(tuple),
    st.sampled_from(PlacementStrategy),
    st.booleans(),
    st.sampled_from([WorkloadState.QUOTA_RESERVED, WorkloadState.ADMITTED]),
)


@settings(deadline=None)
@given(st.lists(gangs, max_size=6))
def test_demand_round_trip_and_shape_counts(demand: list[GangDemand]) -> None:
    wire = convert.demand_to_pb(demand)
    assert convert.demand_from_pb(wire) == sorted(demand, key=lambda g: g.flavor)
    for flavor in wire:
        wanted = sum(len(g.bundles) for g in demand if g.flavor == flavor.flavor)
        assert sum(s.count for s in flavor.shapes) == wanted
        assert flavor.all_at_once == any(g.all_at_once for g in demand if g.flavor == flavor.flavor)


@settings(deadline=None)
@given(
    st.builds(
        SubmitRequest,
        id=names.map(WorkloadId),
        queue=names,
        bundle_groups=st.lists(groups, min_size=1, max_size=3).map(tuple),
        kind=st.sampled_from([k for k in WorkloadKind if k is not WorkloadKind.JOB]),
        strategy=st.sampled_from(PlacementStrategy),
        priority_class=st.none() | names,
        owner=names,
        name=st.text(st.characters(min_codepoint=32, exclude_categories=("Cs", "Cc")), max_size=10),
    )
)
def test_submit_request_round_trip(request: SubmitRequest) -> None:
    back = convert.submit_request(convert.request_to_pb(request), "w", owner="ignored")
    assert back == request
