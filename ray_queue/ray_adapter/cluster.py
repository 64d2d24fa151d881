"""What the cluster looks like: alive nodes with their labels, and which drivers died.

Both are read from the GCS (``ray.nodes()`` and the job table), which is the source of
truth that survives the manager's restarts; the manager polls them about once a second.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import ray

from ray_queue.engine.model import to_milli
from ray_queue.wire import NodeShape

logger = logging.getLogger(__name__)

_HEAD_RESOURCE = "node:__internal_head__"
#: Labels Ray sets on every node by itself; they identify a node, not a flavor.
_AUTOMATIC_LABELS = ("ray.io/node-id",)


def node_shapes() -> list[NodeShape]:
    """Alive nodes, their labels, total resources and free room (milli-units)."""
    free = _available_per_node()
    shapes = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]  # unannotated in Ray
        if not node.get("Alive"):
            continue
        resources: dict[str, float] = node.get("Resources") or {}
        labels = {k: v for k, v in (node.get("Labels") or {}).items() if k not in _AUTOMATIC_LABELS}
        available = free.get(node["NodeID"])
        shapes.append(
            NodeShape(
                node_id=node["NodeID"],
                labels=labels,
                resources={r: to_milli(a) for r, a in resources.items()},
                is_head=_HEAD_RESOURCE in resources,
                available=(
                    None if available is None else {r: to_milli(a) for r, a in available.items()}
                ),
            )
        )
    return shapes


def _available_per_node() -> dict[str, dict[str, float]]:
    """Ray's free room per node id (hex), from the GCS: one call for all nodes. Ray has
    no public per-node equivalent (``ray.available_resources()`` sums the cluster)."""
    try:
        return dict(ray._private.state.available_resources_per_node())  # type: ignore[no-untyped-call]  # unannotated in Ray
    except Exception as e:  # the GCS may be restarting: no figure beats a wrong one
        logger.debug("reading Ray's free room per node failed", extra={"error": str(e)})
        return {}


def on_the_head() -> dict[str, float]:
    """A resource request that only the head node satisfies: a task or actor asking it
    runs there. Unlike affinity to the head's node id, it follows the head across a head
    restart (GCS fault tolerance), when the new head has a new id and Ray restarts the
    detached actors that lived on the old one."""
    return {_HEAD_RESOURCE: 0.001}


def _job_table() -> list[dict[str, Any]]:
    # ``ray._private.state.jobs()`` is the GCS job table; there is no public equivalent
    # that includes plain drivers (the state API lists them too, but through the dashboard).
    return list(ray._private.state.jobs())  # type: ignore[no-untyped-call]  # unannotated in Ray


def dead_owners(owners: Iterable[str]) -> set[str]:
    """Which of ``owners`` (Ray job ids, hex) the GCS says are dead."""
    wanted = set(owners)
    if not wanted:
        return set()
    dead = set()
    for job in _job_table():
        job_id = job.get("JobID")
        if job_id in wanted and job.get("IsDead"):
            dead.add(job_id)
    return dead
