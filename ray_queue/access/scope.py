"""What part of the queue a principal sees: its Queues, the ClusterQueues they feed and
the cohorts above those. Pure functions over the config; ``None`` means everything."""

from __future__ import annotations

from ray_queue.access.principals import Principal
from ray_queue.engine.config import QueueConfig


def cluster_queues_of(principal: Principal, config: QueueConfig) -> set[str] | None:
    """ClusterQueues fed by the principal's Queues (None: all)."""
    if principal.sees_all_queues:
        return None
    return {config.queues[q].cluster_queue for q in principal.queues if q in config.queues}


def cohorts_of(principal: Principal, config: QueueConfig) -> set[str] | None:
    """Cohorts above the principal's ClusterQueues, up to the roots (None: all)."""
    cqs = cluster_queues_of(principal, config)
    if cqs is None:
        return None
    out: set[str] = set()
    for cq in cqs:
        cohort = config.cluster_queues[cq].cohort if cq in config.cluster_queues else None
        while cohort is not None and cohort not in out:
            out.add(cohort)
            parent = config.cohorts.get(cohort)
            cohort = parent.parent if parent is not None else None
    return out
