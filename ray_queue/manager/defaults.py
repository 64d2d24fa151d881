"""The configuration a manager starts with when nobody gave it one.

``ray_queue.init()`` on a bare cluster should just work: one ClusterQueue holding the
whole cluster (flavor ``default``, matching every node) and one Queue ``default`` feeding
it. Queueing then behaves like Ray with admission in submission order.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray_queue.engine.config import (
    ClusterQueue,
    FlavorQuotas,
    Queue,
    QueueConfig,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
)
from ray_queue.wire import NodeShape

DEFAULT = "default"

#: Ray resources that are bookkeeping, not something a workload asks quota for.
_IGNORED_PREFIXES = ("node:", "accelerator_type:", "object_store_memory")


def schedulable(resource: str) -> bool:
    return not resource.startswith(_IGNORED_PREFIXES)


def default_config(nodes: Sequence[NodeShape]) -> QueueConfig:
    """One ClusterQueue sized to the sum of ``nodes`` (CPU, GPU and memory at least)."""
    totals: dict[str, int] = {"CPU": 0, "GPU": 0, "memory": 0}
    for node in nodes:
        for resource, amount in node.resources.items():
            if schedulable(resource):
                totals[resource] = totals.get(resource, 0) + amount
    names = tuple(sorted(totals))
    quotas = tuple(ResourceQuota(name, totals[name]) for name in names)
    cq = ClusterQueue(
        name=DEFAULT,
        resource_groups=(ResourceGroup(names, (FlavorQuotas(DEFAULT, quotas),)),),
    )
    return QueueConfig(
        flavors={DEFAULT: ResourceFlavor(DEFAULT)},
        cluster_queues={DEFAULT: cq},
        queues={DEFAULT: Queue(DEFAULT, DEFAULT)},
    )
