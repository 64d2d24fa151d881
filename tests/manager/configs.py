"""Small QueueConfigs shared by the manager unit tests and the real-Ray tests.

Amounts are whole units here (``gpu=4`` is four GPUs) and converted to milli-units once.
"""

from __future__ import annotations

from ray_queue.engine.config import (
    ClusterQueue,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    Queue,
    QueueConfig,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    WithinClusterQueue,
)
from ray_queue.engine.model import to_milli

A100 = {"ray.io/accelerator-type": "A100"}


def cq(
    name: str,
    *,
    cpu: float,
    gpu: float = 0,
    cohort: str | None = None,
    flavor: str = "a100",
    borrowing_limit: float | None = None,
    preempt: bool = True,
) -> ClusterQueue:
    def quota(resource: str, amount: float) -> ResourceQuota:
        limit = None if borrowing_limit is None else to_milli(borrowing_limit)
        return ResourceQuota(resource, to_milli(amount), borrowing_limit=limit)

    group = ResourceGroup(
        ("CPU", "GPU"), (FlavorQuotas(flavor, (quota("CPU", cpu), quota("GPU", gpu))),)
    )
    preemption = (
        Preemption(
            within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
            reclaim_within_cohort=ReclaimWithinCohort.ANY,
        )
        if preempt
        else Preemption()
    )
    return ClusterQueue(name=name, resource_groups=(group,), cohort=cohort, preemption=preemption)


def teams_config(
    *,
    cpu: float = 2,
    gpu: float = 2,
    flavor_labels: dict[str, str] | None = None,
    preempt: bool = True,
) -> QueueConfig:
    """Two teams in one cohort, each with ``cpu``/``gpu`` of flavor a100; priorities;
    with ``preempt``, LowerPriority within a queue and reclaim Any across the cohort."""
    labels = A100 if flavor_labels is None else flavor_labels
    return QueueConfig(
        flavors={"a100": ResourceFlavor("a100", labels)},
        cluster_queues={
            "cq-a": cq("cq-a", cpu=cpu, gpu=gpu, cohort="all", preempt=preempt),
            "cq-b": cq("cq-b", cpu=cpu, gpu=gpu, cohort="all", preempt=preempt),
        },
        queues={"team-a": Queue("team-a", "cq-a"), "team-b": Queue("team-b", "cq-b")},
        priority_classes={
            "low": PriorityClass("low", 10),
            "high": PriorityClass("high", 100),
        },
    )
