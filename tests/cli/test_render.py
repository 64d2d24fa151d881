"""How the CLI's tables read to a person: names as given, states as named, cohort quota
that adds up, amounts in the user's units. Pure rendering, no server."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from ray_queue.cli import render
from ray_queue.engine.model import (
    BundleGroup,
    ClusterQueueStatus,
    CohortStatus,
    PendingPosition,
    ResourceStatus,
    WorkloadId,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.wire import UnmanagedUsage

pytestmark = pytest.mark.timeout(30)

GPU = 1000  # milli-units per GPU


def text(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(renderable)
    return out.getvalue()


def gpu(flavor: str, nominal: int, usage: int, *, lending: int | None = None) -> ResourceStatus:
    borrowed = max(0, usage - nominal)
    return ResourceStatus(flavor, "GPU", nominal, None, lending, usage, borrowed)


def test_a_cohort_without_quota_of_its_own_is_measured_against_what_its_members_lend() -> None:
    # training: 6 GPUs, lends at most 2; research: 2 GPUs. training runs 8: 4 of them
    # count in the cohort, whose pool is 2 + 2. It used to read "4/0" with an empty bar.
    cqs = [
        ClusterQueueStatus(
            "training", "ml-platform", 0, 0, 1, (gpu("a100", 6 * GPU, 8 * GPU, lending=2 * GPU),), 0
        ),
        ClusterQueueStatus("research", "ml-platform", 1, 0, 0, (gpu("a100", 2 * GPU, 0),), 0),
    ]
    cohort = CohortStatus("ml-platform", None, (gpu("a100", 0, 4 * GPU),), 0.0)
    assert render.cohort_pools(cqs, [cohort]) == {"ml-platform": {("a100", "GPU"): 4 * GPU}}
    shown = text(render.status_view(cqs, [cohort]))
    assert "4/4" in shown and "4/0" not in shown, shown
    assert "USAGE / POOL" in shown


def test_nested_cohorts_pass_up_what_they_may_lend() -> None:
    cqs = [ClusterQueueStatus("a", "child", 0, 0, 0, (gpu("a100", 4 * GPU, 0),), 0)]
    child = CohortStatus("child", "root", (gpu("a100", 2 * GPU, 0, lending=3 * GPU),), 0)
    root = CohortStatus("root", None, (), 0)
    pools = render.cohort_pools(cqs, [child, root])
    # child: its own 2 + a's 4 = 6, of which it lends 3 to root.
    assert pools == {"child": {("a100", "GPU"): 6 * GPU}, "root": {("a100", "GPU"): 3 * GPU}}


def test_status_columns_are_named_as_the_workload_states_are() -> None:
    cq = ClusterQueueStatus("training", None, 1, 2, 3, (gpu("a100", 8 * GPU, 0),), 0)
    header = text(render.status_view([cq], [])).splitlines()[2]
    for state in ("PENDING", "QUOTA_RESERVED", "ADMITTED"):
        assert state in header
    assert "RSV" not in header


def test_memory_is_shown_in_binary_units() -> None:
    memory = ResourceStatus("cpu", "memory", 64 * 2**30 * 1000, None, None, 16 * 2**30 * 1000, 0)
    cq = ClusterQueueStatus("training", None, 0, 0, 1, (memory,), 0)
    assert "16Gi/64Gi" in text(render.status_view([cq], []))


def workload(workload_id: str, name: str) -> WorkloadStatus:
    spec = WorkloadSpec(
        id=WorkloadId(workload_id),
        queue="training",
        bundle_groups=(BundleGroup({"GPU": GPU}),),
        created_at=0.0,
        name=name,
    )
    return WorkloadStatus(
        spec=spec,
        state=WorkloadState.PENDING,
        cluster_queue="training",
        priority=100,
        admission=None,
        checks={},
        reason="Created",
        message="waiting for its turn in queue training",
        requeue_count=0,
        requeue_at=None,
        placed=False,
    )


def test_list_and_pending_show_the_names_workloads_were_given() -> None:
    listed = text(render.workloads_table([workload("pg-1f2e", "resnet-sweep-3")]))
    assert "NAME" in listed and "resnet-sweep-3" in listed
    named = PendingPosition(
        WorkloadId("pg-1f2e"), "training", "training", 100, 0, 0, "waiting", "resnet-sweep-3"
    )
    pending = text(render.pending_table([named]))
    assert "NAME" in pending and "resnet-sweep-3" in pending
    # Without a name, a dash.
    unnamed = dataclasses.replace(named, name="")
    assert "resnet" not in text(render.pending_table([unnamed]))


def test_status_text_is_the_status_tables_in_plain_text() -> None:
    memory = ResourceStatus("cpu", "memory", 64 * 2**30 * 1000, None, None, 16 * 2**30 * 1000, 0)
    plain = render.status_text([ClusterQueueStatus("training", None, 0, 0, 1, (memory,), 0)], [])
    assert "16Gi/64Gi" in plain and "\x1b[" not in plain


def test_status_shows_what_runs_outside_the_queue_in_rays_units() -> None:
    outside = [
        UnmanagedUsage("a100", "GPU", 2000, (("03000000", 1500),)),
        UnmanagedUsage("cpu", "memory", 2**30 * 1000),
    ]
    shown = text(render.status_view([], [], outside))
    assert "In use outside the queue" in shown
    assert "a100" in shown and "GPU" in shown and "1Gi" in shown
    assert "03000000 1.5" in shown  # the Ray job Ray says holds most of it
    assert "outside the queue" not in text(render.status_view([], []))
