"""Node shapes per flavor, for refusing at submission what no node could ever run, and for
saying why an admitted workload is not placed yet.

Quota says whether a workload may run; nodes say whether it *can*. A bundle larger than
every node of every flavor its ClusterQueue may use would be admitted and then sit
unplaced forever, holding quota. So the manager keeps the alive nodes' shapes (from Ray,
following joins and leaves) and refuses such a bundle up front — unless the flavor is
autoscaled (bigger nodes may come) or no node of it has been seen yet (it may join).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import MILLI, WorkloadSpec, WorkloadState, WorkloadStatus
from ray_queue.wire import NodeShape, Unplaced


@dataclass(frozen=True, slots=True)
class NotPlaced:
    reason: Unplaced
    #: What stands in the way and what to do, for people.
    message: str


class Capacity:
    """Alive node shapes, and which flavor each node belongs to."""

    def __init__(self) -> None:
        self._nodes: tuple[NodeShape, ...] = ()
        self._known = False

    def set_nodes(self, nodes: Sequence[NodeShape], config: QueueConfig) -> None:
        self._nodes = tuple(nodes)
        self._known = True

    @property
    def nodes(self) -> tuple[NodeShape, ...]:
        return self._nodes

    def nodes_of(self, labels: Mapping[str, str]) -> list[NodeShape]:
        """Nodes carrying every one of ``labels`` (a flavor with no labels matches all)."""
        return [n for n in self._nodes if all(n.labels.get(k) == v for k, v in labels.items())]

    def why_never_fits(self, spec: WorkloadSpec, config: QueueConfig) -> str | None:
        """A reason if some bundle fits no node of any usable flavor; ``None`` if it may."""
        queue = config.queues.get(spec.queue)
        if not self._known or queue is None:
            return None  # unknown queue: the engine raises its own typed error
        cq = config.cluster_queues.get(queue.cluster_queue)
        if cq is None:
            return None
        for group in spec.bundle_groups:
            wanted = {r for r, a in group.resources.items() if a > 0}
            flavors = {
                fq.flavor
                for rg in cq.resource_groups
                if wanted & set(rg.covered_resources)
                for fq in rg.flavors
            }
            if not flavors or self._fits_some_flavor(group.resources, flavors, config):
                continue
            largest = sorted(
                {_fmt(n.resources, group.resources.keys()) for n in self._nodes}, reverse=True
            )[:3]
            return (
                f"a bundle {_fmt(group.resources, group.resources.keys())} is larger than every "
                f"node of flavors {sorted(flavors)} (largest: {', '.join(largest) or 'none'}); "
                "ask for less per bundle, or add bigger nodes"
            )
        return None

    def _fits_some_flavor(
        self, request: Mapping[str, int], flavors: set[str], config: QueueConfig
    ) -> bool:
        for name in flavors:
            flavor = config.flavors.get(name)
            if flavor is None or flavor.worker_group is not None:
                return True  # autoscaled (or undeclared): bigger nodes may come
            nodes = self.nodes_of(flavor.node_labels)
            if not nodes:
                return True  # no node seen yet: it may still join
            if any(
                all(n.resources.get(r, 0) >= a for r, a in request.items() if a > 0) for n in nodes
            ):
                return True
        return False

    def why_not_placed(self, status: WorkloadStatus, config: QueueConfig) -> NotPlaced | None:
        """For an admitted workload Ray has not placed: what stands in the way, as far as
        node shapes tell (not Ray's free room, which changes by the millisecond)."""
        if status.state is not WorkloadState.ADMITTED or status.placed or not self._known:
            return None
        if status.admission is None:
            return None
        for group, admitted in zip(
            status.spec.bundle_groups, status.admission.groups, strict=False
        ):
            for name in sorted(set(admitted.flavors.values())):
                flavor = config.flavors.get(name)
                if flavor is None:
                    continue
                scaled = (
                    f"; waiting for the autoscaler to add nodes of worker group "
                    f"{flavor.worker_group!r}"
                    if flavor.worker_group
                    else ""
                )
                nodes = self.nodes_of(flavor.node_labels)
                if not nodes:
                    labels = ", ".join(f"{k}={v}" for k, v in sorted(flavor.node_labels.items()))
                    fix = (
                        scaled or "; start nodes with those labels, or fix the flavor's nodeLabels"
                    )
                    return NotPlaced(
                        Unplaced.AWAITING_AUTOSCALER if scaled else Unplaced.NO_NODE,
                        f"no alive node of flavor {name} (labels {labels}){fix}",
                    )
                wanted = {r: a for r, a in group.resources.items() if a > 0}
                if not any(
                    all(n.resources.get(r, 0) >= a for r, a in wanted.items()) for n in nodes
                ):
                    return NotPlaced(
                        Unplaced.AWAITING_AUTOSCALER if scaled else Unplaced.BUNDLE_TOO_LARGE,
                        f"a bundle {_fmt(group.resources, wanted)} is larger than every node of "
                        f"flavor {name} now{scaled or '; it waits for a bigger node to join'}",
                    )
        flavors = ", ".join(sorted(status.admission.flavors()))
        return NotPlaced(
            Unplaced.NODES_BUSY,
            f"Ray has not placed it yet on the nodes of flavor {flavors}: their room is taken, "
            "by work outside the queue or being released",
        )


def _fmt(resources: Mapping[str, int], names: Iterable[str]) -> str:
    wanted = set(names)
    keys = sorted(k for k in resources if k in wanted)
    return "{" + ", ".join(f"{k}: {resources[k] / MILLI:g}" for k in keys) + "}"
