"""``print(ray_queue.status())`` reads in Ray's units; the fields stay in milli-units."""

from __future__ import annotations

from ray_queue.engine.model import ClusterQueueStatus, CohortStatus, ResourceStatus
from ray_queue.wire import ManagerStatus

GI = 2**30 * 1000  # one GiB in milli-units


def test_status_prints_in_rays_units() -> None:
    gpu = ResourceStatus("a100", "GPU", 4000, None, None, 5000, 1000)
    memory = ResourceStatus("a100", "memory", 4 * GI, None, None, GI, 0)
    status = ManagerStatus(
        (ClusterQueueStatus("cq-a", "all", 1, 0, 2, (gpu, memory), 0.5),),
        (CohortStatus("all", None, (gpu,), 0.0),),
        {"ADMITTED": 2, "PENDING": 1},
        preemptions=0,
        admissions=2,
        epoch="e",
    )
    text = str(status)
    assert "ClusterQueue cq-a (cohort all): 1 pending, 2 admitted" in text
    assert "GPU in a100: 5 of 4 used, 1 borrowed" in text
    assert "memory in a100: 1Gi of 4Gi used" in text
    assert "Cohort all" in text and "000" not in text
    assert status.cluster_queues[0].resources[1].usage == GI
