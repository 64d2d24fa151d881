"""A provider's worker node as Ray last reported it: both providers name their nodes
(Pods, local raylets) and ask Ray's GCS how busy each one is."""

from __future__ import annotations

from autoscaler.providers.base import WorkerNode
from autoscaler.ray_nodes import RayNode


def worker_node(name: str, seen: RayNode | None, now: float) -> WorkerNode:
    """The worker ``name`` as Ray saw it (``seen``; ``None``: its raylet has not joined
    yet). It is idle only while Ray says so and runs nothing."""
    if seen is None:
        return WorkerNode(name=name)
    idle = seen.status == "IDLE" and not seen.busy
    return WorkerNode(
        name=name,
        ray_node_id=seen.node_id,
        available=seen.available,
        idle_since=now - seen.idle_duration_s if idle else None,
        busy=seen.busy,
    )
