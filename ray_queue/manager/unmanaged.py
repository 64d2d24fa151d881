"""Resources in use in Ray that no admission accounts for.

Work from drivers that are not captured, or direct Ray API calls, takes room on a
flavor's nodes that the queue never granted. Ray says what is in use per node (total
minus available: placement-group reservations, running tasks and actors); the queue knows
what its admissions hold per flavor. The difference, per flavor and resource, is what runs
outside the queue. Pure functions over those two views.

Each node counts for one flavor: the most specific one whose labels it carries (most
labels, then name), so a catch-all flavor with no labels does not count every node twice.
Admissions hold quota as soon as they are admitted, before Ray places them; until then
they hide as much unmanaged usage as they hold (the figure is a lower bound).

Whose the usage is comes from what Ray says each job holds on each node outside the
queue's groups (``ray_adapter/ray_holdings.py``): summed per flavor, it names the Ray jobs
behind a figure (``by_job``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ray_queue.engine.config import QueueConfig, ResourceFlavor
from ray_queue.wire import NodeShape, RayJobHolding

#: (flavor, resource) → milli-units.
Usage = dict[tuple[str, str], int]


def flavor_of(node: NodeShape, flavors: Iterable[ResourceFlavor]) -> str | None:
    """The most specific flavor whose labels ``node`` carries, if any."""
    matching = [
        f for f in flavors if all(node.labels.get(k) == v for k, v in f.node_labels.items())
    ]
    if not matching:
        return None
    return min(matching, key=lambda f: (-len(f.node_labels), f.name)).name


def queued_resources(config: QueueConfig) -> set[str]:
    """The resources some ClusterQueue has quota for: the only ones worth comparing."""
    return {
        r
        for cq in config.cluster_queues.values()
        for rg in cq.resource_groups
        for r in rg.covered_resources
    }


def in_use(nodes: Iterable[NodeShape], config: QueueConfig) -> Usage:
    """What Ray says is in use on each flavor's nodes (nodes whose free room is unknown
    count for nothing)."""
    resources = queued_resources(config)
    flavors = list(config.flavors.values())
    used: Usage = {}
    for node in nodes:
        flavor = flavor_of(node, flavors)
        if flavor is None or node.available is None:
            continue
        for resource in resources:
            taken = node.resources.get(resource, 0) - node.available.get(resource, 0)
            if taken > 0:
                used[(flavor, resource)] = used.get((flavor, resource), 0) + taken
    return used


def unmanaged(used: Mapping[tuple[str, str], int], held: Mapping[tuple[str, str], int]) -> Usage:
    """In use in Ray beyond what the queue's admissions hold, per (flavor, resource)."""
    out: Usage = {}
    for key, amount in used.items():
        beyond = amount - held.get(key, 0)
        if beyond > 0:
            out[key] = beyond
    return out


def by_job(
    holdings: Iterable[RayJobHolding], nodes: Iterable[NodeShape], config: QueueConfig
) -> dict[tuple[str, str], dict[str, int]]:
    """What each Ray job holds per (flavor, resource), from Ray's per-node holdings."""
    flavors = list(config.flavors.values())
    flavor_by_node = {node.node_id: flavor_of(node, flavors) for node in nodes}
    resources = queued_resources(config)
    out: dict[tuple[str, str], dict[str, int]] = {}
    for held in holdings:
        flavor = flavor_by_node.get(held.node_id)
        if flavor is None:
            continue
        for resource, amount in held.resources.items():
            if resource in resources:
                jobs = out.setdefault((flavor, resource), {})
                jobs[held.job_id] = jobs.get(held.job_id, 0) + amount
    return out
