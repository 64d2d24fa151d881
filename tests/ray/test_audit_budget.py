"""The placement-group audit's lookups stop when their time budget is spent.

Each lookup is a blocking GCS call on the manager's loop; ``RayAdapter`` looks groups up
for at most ``AUDIT_BUDGET_S`` per call (at least one), and reports only what it saw.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray.cluster_utils import Cluster
from ray.util.placement_group import remove_placement_group

from ray_queue.engine.model import PlacementStrategy, WorkloadId
from ray_queue.ray_adapter import actions
from ray_queue.ray_adapter.actions import RayAdapter, pg_from_hex
from tests.ray.harness import connected_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from connected_cluster(gpu_workers=0)


def test_the_audit_reports_only_the_groups_it_looked_up_within_its_budget(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = RayAdapter()
    ids = [
        adapter.create_placement_group(
            WorkloadId(f"audited-{i}"), [{"CPU": 0.01}], PlacementStrategy.PACK, [{}]
        )
        for i in range(3)
    ]
    kept = adapter.create_placement_group(
        WorkloadId("kept"), [{"CPU": 0.01}], PlacementStrategy.PACK, [{}]
    )
    for pg_id in ids:  # behind the adapter's back, as an operator would
        remove_placement_group(pg_from_hex(pg_id))
    monkeypatch.setattr(actions, "AUDIT_BUDGET_S", 60.0)  # time for all, however loaded
    assert adapter.removed_placement_groups([*ids, kept]) == set(ids)

    monkeypatch.setattr(actions, "AUDIT_BUDGET_S", 0.0)
    assert adapter.removed_placement_groups(ids) == {ids[0]}
    adapter.remove_placement_group(WorkloadId("kept"))
