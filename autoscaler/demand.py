"""The autoscaler's input: unplaced gangs per flavor, as plain frozen values.

The manager's engine reports demand as ``GangDemand`` (workloads holding quota whose
bundles are not on nodes yet). The autoscaler needs a little more than the engine knows by
itself — which worker group provides the flavor, which admission check to answer, which
attempt this is — so every source (in-process or gRPC) converts to these types at the edge
and the planner never sees an engine object, a protobuf or a Kubernetes dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ray_queue.engine.model import (
    GangDemand,
    Milli,
    PlacementStrategy,
    ResourceName,
    WorkloadId,
    WorkloadState,
)

#: One bundle: resource name → amount in milli-units (1 CPU == 1000).
Bundle = Mapping[ResourceName, Milli]


@dataclass(frozen=True, slots=True)
class Gang:
    """One workload's unplaced bundles on one flavor: all of them land, or none does."""

    workload: WorkloadId
    flavor: str
    bundles: tuple[Bundle, ...]
    strategy: PlacementStrategy
    #: The flavor is provisioned all-at-once (ProvisioningRequest) rather than incrementally.
    all_at_once: bool
    #: QUOTA_RESERVED (waiting on admission checks) or ADMITTED (waiting to be placed).
    state: WorkloadState
    #: The worker group that provides the flavor's nodes; ``None``: not autoscaled.
    worker_group: str | None = None
    #: The provisioning admission check this gang waits on, if any; reports go to it.
    check: str | None = None
    #: ProvisioningRequest class for this gang (from the check's parameters), if known.
    provisioning_class: str | None = None
    #: How many times the workload was requeued before; a new attempt gets a new request,
    #: so a stale Failed request can never fail the next attempt (Kueue names them alike).
    attempt: int = 0

    @property
    def waiting_for_capacity(self) -> bool:
        """Quota reserved, admission checks not all Ready yet."""
        return self.state is WorkloadState.QUOTA_RESERVED


@dataclass(frozen=True, slots=True)
class Demand:
    """Everything waiting for nodes, in a deterministic order (by workload, then flavor)."""

    gangs: tuple[Gang, ...] = ()

    @staticmethod
    def of(gangs: Iterable[Gang]) -> Demand:
        return Demand(tuple(sorted(gangs, key=lambda g: (g.workload, g.flavor))))

    def workloads(self) -> frozenset[WorkloadId]:
        return frozenset(g.workload for g in self.gangs)

    def by_group(self) -> dict[str, list[Gang]]:
        """Gangs per worker group; gangs with no worker group are left out."""
        out: dict[str, list[Gang]] = {}
        for gang in self.gangs:
            if gang.worker_group is not None:
                out.setdefault(gang.worker_group, []).append(gang)
        return out


def gang_from_engine(
    demand: GangDemand,
    *,
    worker_group: str | None = None,
    check: str | None = None,
    provisioning_class: str | None = None,
    attempt: int = 0,
) -> Gang:
    """Convert the engine's ``GangDemand``, adding what only the caller knows."""
    return Gang(
        workload=demand.workload,
        flavor=demand.flavor,
        bundles=tuple(dict(b) for b in demand.bundles),
        strategy=demand.strategy,
        all_at_once=demand.all_at_once,
        state=demand.state,
        worker_group=worker_group,
        check=check,
        provisioning_class=provisioning_class,
        attempt=attempt,
    )
