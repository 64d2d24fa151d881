"""Node shapes per flavor, for refusing at submission what no node could ever run, and for
saying why an admitted workload is not placed yet.

Quota says whether a workload may run; nodes say whether it *can*. A bundle larger than
every node of every flavor its ClusterQueue may use would be admitted and then sit
unplaced forever, holding quota. So the manager keeps the alive nodes' shapes (from Ray,
following joins and leaves) and refuses such a bundle up front — unless no node of the
flavor has been seen yet (it may join), or the flavor is autoscaled and its worker group's
nodes could hold the bundle (or the autoscaler has not reported the group's node shape
yet: bigger nodes may come).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import MILLI, WorkloadSpec, WorkloadState, WorkloadStatus
from ray_queue.wire import NodeShape, Unplaced, WorkerGroupShape


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
        #: Autoscaled worker groups' node shapes, by group name (from the autoscaler).
        self._groups: dict[str, WorkerGroupShape] = {}

    def set_nodes(self, nodes: Sequence[NodeShape], config: QueueConfig) -> None:
        self._nodes = tuple(nodes)
        self._known = True

    def set_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        self._groups = {g.name: g for g in groups}

    @property
    def nodes(self) -> tuple[NodeShape, ...]:
        return self._nodes

    def nodes_of(self, labels: Mapping[str, str]) -> list[NodeShape]:
        """Nodes carrying every one of ``labels`` (a flavor with no labels matches all)."""
        return [n for n in self._nodes if all(n.labels.get(k) == v for k, v in labels.items())]

    def why_never_fits(self, spec: WorkloadSpec, config: QueueConfig) -> str | None:
        """A reason if some bundle fits no node of any usable flavor; ``None`` if it may."""
        queue = config.queues.get(spec.queue)
        if queue is None:
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
            shapes = [n.resources for n in self._nodes] + [
                g.resources for g in self._groups.values()
            ]
            # The biggest offers of what the bundle asks for, biggest first.
            asked = sorted(group.resources)
            ranked = sorted(shapes, key=lambda s: [s.get(r, 0) for r in asked])
            offers = [_fmt(s, asked) for s in reversed(ranked) if any(s.get(r) for r in asked)]
            largest = list(dict.fromkeys(offers))[:3]
            return (
                f"a bundle {_fmt(group.resources, asked)} is larger than every "
                f"node of flavors {sorted(flavors)}, and than every node their worker groups "
                f"can add (largest: {', '.join(largest) or 'none'}); ask for less per bundle, "
                "or add bigger nodes"
            )
        return None

    def _fits_some_flavor(
        self, request: Mapping[str, int], flavors: set[str], config: QueueConfig
    ) -> bool:
        for name in flavors:
            flavor = config.flavors.get(name)
            if flavor is None:
                return True
            if flavor.worker_group is not None:
                group = self._groups.get(flavor.worker_group)
                if group is None or _holds(group.resources, request):
                    return True  # its group's nodes could (or may: shape not reported yet)
            nodes = self.nodes_of(flavor.node_labels)
            if not nodes and (flavor.worker_group is None or not self._known):
                return True  # no node seen yet: it may still join
            if any(_holds(n.resources, request) for n in nodes):
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


def _holds(offer: Mapping[str, int], request: Mapping[str, int]) -> bool:
    return all(offer.get(r, 0) >= a for r, a in request.items() if a > 0)


def _fmt(resources: Mapping[str, int], names: Iterable[str]) -> str:
    wanted = set(names)
    keys = sorted(k for k in resources if k in wanted)
    return "{" + ", ".join(f"{k}: {resources[k] / MILLI:g}" for k in keys) + "}"
