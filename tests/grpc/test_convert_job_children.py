"""A job's cap and a child's parent cross the gRPC wire both ways, and a cap on
anything but a job is refused as a malformed request."""

from __future__ import annotations

import pytest

from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind
from ray_queue.grpc import convert
from ray_queue.grpc.status import InvalidRequestError
from ray_queue.wire import SubmitRequest

pytestmark = pytest.mark.timeout(30)


def test_parent_and_max_resources_round_trip() -> None:
    job = SubmitRequest(
        id=WorkloadId("j"),
        queue="q",
        bundle_groups=(BundleGroup({"CPU": 1000}),),
        kind=WorkloadKind.JOB,
        payload={"entrypoint": "python x.py"},
        max_resources={"GPU": 2000},
    )
    back = convert.submit_request(convert.request_to_pb(job), "w", owner="o")
    assert back.max_resources == {"GPU": 2000} and back.parent is None
    spec = back.to_spec(1.0)
    assert convert.spec_to_pb(spec).max_resources_milli == {"GPU": 2000}

    child = SubmitRequest(
        id=WorkloadId("g"), queue="q", bundle_groups=(BundleGroup({"GPU": 1000}),), parent=job.id
    )
    back = convert.submit_request(convert.request_to_pb(child), "w", owner="o")
    assert back.parent == "j" and back.max_resources is None


def test_a_cap_on_anything_but_a_job_is_refused() -> None:
    wire = convert.request_to_pb(
        SubmitRequest(id=WorkloadId("g"), queue="q", bundle_groups=(BundleGroup({"GPU": 1000}),))
    )
    wire.max_resources_milli["GPU"] = 1000
    with pytest.raises(InvalidRequestError, match="max_resources_milli"):
        convert.submit_request(wire, "w", owner="o")


def test_a_pending_childs_job_crosses_the_wire() -> None:
    from ray_queue.engine.model import PendingPosition

    position = PendingPosition(WorkloadId("g"), "q", "cq", 0, 1, 1, "waiting", "", WorkloadId("j"))
    assert convert.pending_from_pb(convert.pending_to_pb(position)) == position
