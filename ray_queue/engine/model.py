"""The engine's value types: workloads, admissions, decisions.

Everything the engine takes in or hands out is one of these frozen dataclasses, so the
adapters (Ray, gRPC, store) convert at the edge and never leak their own types inward.
Resource amounts are integers in *milli-units* (1 CPU == 1000), like Kubernetes
quantities, so quota arithmetic is exact and replays are bit-for-bit deterministic.
``validate_spec`` sits beside ``WorkloadSpec`` so what makes a spec well-formed is
stated next to the spec itself.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

from ray_queue.engine.errors import InvalidWorkloadError

WorkloadId = NewType("WorkloadId", str)

#: A resource amount in milli-units (1 CPU == 1000, 1 byte of memory == 1000).
Milli = int
#: A resource name as Ray spells it ("CPU", "GPU", "TPU", "memory", custom names).
ResourceName = str
FlavorName = str
#: (flavor, resource): the unit in which quota is granted and used.
FlavorResource = tuple[FlavorName, ResourceName]
Resources = Mapping[ResourceName, Milli]
Usage = Mapping[FlavorResource, Milli]

MILLI: Milli = 1000


def to_milli(amount: float) -> Milli:
    """Convert a user-facing amount (1.5 CPUs) to milli-units, rounding up.

    Rounding up means a request is never admitted against less quota than it will use.
    """
    scaled = amount * MILLI
    as_int = int(scaled)
    return as_int if as_int >= scaled else as_int + 1


class WorkloadKind(StrEnum):
    PLACEMENT_GROUP = "placement_group"
    TASK = "task"
    ACTOR = "actor"
    JOB = "job"


class PlacementStrategy(StrEnum):
    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class WorkloadState(StrEnum):
    PENDING = "PENDING"
    QUOTA_RESERVED = "QUOTA_RESERVED"
    ADMITTED = "ADMITTED"
    EVICTED = "EVICTED"
    FINISHED = "FINISHED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATES

    @property
    def holds_quota(self) -> bool:
        return self in (WorkloadState.QUOTA_RESERVED, WorkloadState.ADMITTED)


_TERMINAL_STATES = frozenset(
    {
        WorkloadState.FINISHED,
        WorkloadState.REJECTED,
        WorkloadState.FAILED,
        WorkloadState.CANCELLED,
    }
)


class CheckState(StrEnum):
    """State of one admission check on one workload (Kueue's CheckState)."""

    PENDING = "Pending"
    READY = "Ready"
    RETRY = "Retry"
    REJECTED = "Rejected"


@dataclass(frozen=True, slots=True)
class BundleGroup:
    """``count`` identical bundles, each needing ``resources``."""

    resources: Resources
    count: int = 1

    def total(self, count: int | None = None) -> dict[ResourceName, Milli]:
        n = self.count if count is None else count
        return {name: amount * n for name, amount in self.resources.items()}


def shape_of(bundle_groups: Sequence[BundleGroup], min_count: int | None) -> Hashable:
    """What makes two workloads ask for exactly the same quota."""
    groups = tuple([(tuple(sorted(g.resources.items())), g.count) for g in bundle_groups])
    return (groups, min_count)


#: (owner, queue, priority class, shape): tasks one owner may hand a slot of quota between.
LeaseKey = tuple[str, str, str | None, Hashable]


def lease_key(
    owner: str, queue: str, priority_class: str | None, bundle_groups: Sequence[BundleGroup]
) -> LeaseKey:
    return (owner, queue, priority_class, shape_of(bundle_groups, None))


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What a client asks for. Immutable once submitted."""

    id: WorkloadId
    queue: str
    bundle_groups: tuple[BundleGroup, ...]
    created_at: float
    kind: WorkloadKind = WorkloadKind.PLACEMENT_GROUP
    strategy: PlacementStrategy = PlacementStrategy.PACK
    #: Name of a PriorityClass; ``None`` takes the global default (or 0).
    priority_class: str | None = None
    #: Who submitted it (a Ray job id, a driver id); cancelled together when it dies.
    owner: str = ""
    #: Partial admission: the first bundle group may be admitted with as few as this
    #: many bundles when the full count does not fit. ``None`` means all or nothing.
    min_count: int | None = None
    #: Free-form name shown to people; not used for scheduling.
    name: str = ""
    #: The job this workload belongs to (made by the job's captured driver or its
    #: workers): it counts against the job's ``max_resources`` and ends with the job.
    parent: WorkloadId | None = None
    #: A JOB's cap on what it holds at once, its own entrypoint and its children
    #: together, per resource name; resources it does not name are not capped.
    max_resources: Mapping[ResourceName, Milli] | None = None

    def lease_key(self) -> LeaseKey:
        return lease_key(self.owner, self.queue, self.priority_class, self.bundle_groups)

    def total_request(self) -> dict[ResourceName, Milli]:
        totals: dict[ResourceName, Milli] = {}
        for group in self.bundle_groups:
            for name, amount in group.total().items():
                totals[name] = totals.get(name, 0) + amount
        return totals


#: ``[<namespace>/]<name>``: a tenant's ids are in its namespace (``access/namespaces.py``).
_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,62}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_spec(spec: WorkloadSpec) -> None:
    """Raise ``InvalidWorkloadError`` if ``spec`` is malformed, naming what to fix."""
    if not _ID.fullmatch(spec.id):
        # Ids end up in paths (a Ray job's submission id names its log file, with the
        # namespace's '/' spelled '~'), Ray and Kubernetes names and terminals: a short
        # charset keeps all of them safe.
        raise InvalidWorkloadError(
            f"workload id {spec.id[:80]!r} is not valid: use 1-128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit, after an optional '<namespace>/'"
        )
    if not spec.bundle_groups:
        raise InvalidWorkloadError(f"workload {spec.id!r} has no bundles; give at least one")
    for index, group in enumerate(spec.bundle_groups):
        if group.count < 1:
            raise InvalidWorkloadError(
                f"workload {spec.id!r}: bundle group {index} has count {group.count}; use >= 1"
            )
        if not group.resources:
            raise InvalidWorkloadError(
                f"workload {spec.id!r}: bundle group {index} asks for no resources; "
                "give each bundle at least one resource, e.g. {'CPU': 1}"
            )
        for name, amount in group.resources.items():
            if amount < 0:
                raise InvalidWorkloadError(
                    f"workload {spec.id!r}: {name} = {amount / 1000:g} is negative; "
                    "resource amounts must be >= 0"
                )
    if spec.max_resources is not None:
        _validate_cap(spec)
    if spec.min_count is not None and not 1 <= spec.min_count <= spec.bundle_groups[0].count:
        raise InvalidWorkloadError(
            f"workload {spec.id!r}: min_count {spec.min_count} must be between 1 and the first "
            f"group's count ({spec.bundle_groups[0].count})"
        )


def _validate_cap(spec: WorkloadSpec) -> None:
    assert spec.max_resources is not None
    if spec.kind is not WorkloadKind.JOB:
        raise InvalidWorkloadError(
            f"workload {spec.id!r}: max_resources caps a job's work; a {spec.kind.value} "
            "cannot have one (submit it as a job, or drop max_resources)"
        )
    asked = spec.total_request()
    for name, cap in sorted(spec.max_resources.items()):
        if cap < 0:
            raise InvalidWorkloadError(
                f"job {spec.id!r}: max_resources {name} = {cap / MILLI:g} is negative; "
                "give a cap >= 0"
            )
        if asked.get(name, 0) > cap:
            raise InvalidWorkloadError(
                f"job {spec.id!r}: max_resources {name} = {cap / MILLI:g} is below what its "
                f"entrypoint itself asks ({name} = {asked[name] / MILLI:g}); the cap covers "
                "the entrypoint and everything the job creates: raise the cap to at least "
                "that, or ask for less for the entrypoint"
            )


@dataclass(frozen=True, slots=True)
class GroupAdmission:
    """How one bundle group was admitted: the flavor for each resource, and how many."""

    flavors: Mapping[ResourceName, FlavorName]
    count: int


@dataclass(frozen=True, slots=True)
class Admission:
    cluster_queue: str
    groups: tuple[GroupAdmission, ...]
    usage: Usage

    def flavors(self) -> frozenset[FlavorName]:
        return frozenset(f for g in self.groups for f in g.flavors.values())


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    from_state: WorkloadState
    to_state: WorkloadState
    reason: str
    message: str
    #: On edges that grant quota: what was granted. Kept in the history so ``describe``
    #: shows every admission, and so a restored engine can rebuild Queue usage.
    admission: Admission | None = None


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """A read-only view of a workload, as clients and the store see it."""

    spec: WorkloadSpec
    state: WorkloadState
    priority: int
    cluster_queue: str
    admission: Admission | None
    checks: Mapping[str, CheckState]
    #: Why it is where it is, for a person ("pending: insufficient quota for GPU ...").
    reason: str
    message: str
    requeue_count: int
    requeue_at: float | None
    placed: bool
    history: tuple[Transition, ...] = field(default=())
    #: Pending but set aside until quota is released (Kueue's "inadmissible").
    set_aside: bool = False


class DecisionKind(StrEnum):
    #: Quota reserved; the workload waits for its admission checks.
    RESERVE = "reserve"
    #: Admitted: the adapter creates the placement group / runs the task or job.
    ADMIT = "admit"
    #: Evicted to make room for ``preemptor``; already requeued by the engine.
    PREEMPT = "preempt"
    #: Evicted for another reason (check retry, placement timeout, capacity revoked,
    #: HoldAndDrain); already requeued (or rejected) by the engine.
    EVICT = "evict"
    #: Cancelled because the job it belongs to ended (``WorkloadSpec.parent``): the
    #: adapter removes what it holds, as for any cancelled workload.
    CANCEL = "cancel"
    #: Terminally rejected (admission check rejected, back-off limit reached).
    REJECT = "reject"


#: The reason of an ADMIT that took a finished task's quota over (``try_hand_over``):
#: its owner already runs it where the finished one ran, so there is nothing to carry out.
HANDED_OVER = "HandedOver"


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing the adapter must carry out. The engine's state already reflects it."""

    kind: DecisionKind
    workload: WorkloadId
    reason: str
    message: str
    admission: Admission | None = None
    preemptor: WorkloadId | None = None


@dataclass(frozen=True, slots=True)
class PendingPosition:
    """A pending workload's place in line (Kueue's visibility API)."""

    workload: WorkloadId
    queue: str
    cluster_queue: str
    priority: int
    position_in_queue: int
    position_in_cluster_queue: int
    reason: str
    #: The name it was given (``name=``), if any.
    name: str = ""
    #: The job it belongs to (``WorkloadSpec.parent``), if any.
    parent: WorkloadId | None = None


@dataclass(frozen=True, slots=True)
class JobChild:
    """One workload a job's run made, as ``status()`` shows it under the job."""

    workload: WorkloadId
    kind: WorkloadKind
    state: WorkloadState
    #: What it asks for (all its bundles), per resource.
    request: Mapping[ResourceName, Milli]
    message: str = ""


@dataclass(frozen=True, slots=True)
class JobFamily:
    """A live job with a cap or children: what it and its children hold, against its cap."""

    job: WorkloadId
    queue: str
    state: WorkloadState
    max_resources: Mapping[ResourceName, Milli] | None
    #: The job's own admission and its children's holding quota, per resource.
    holding: Mapping[ResourceName, Milli]
    children: tuple[JobChild, ...]


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    flavor: FlavorName
    resource: ResourceName
    nominal: Milli
    borrowing_limit: Milli | None
    lending_limit: Milli | None
    usage: Milli
    #: Usage above nominal quota (taken from the cohort).
    borrowed: Milli


@dataclass(frozen=True, slots=True)
class ClusterQueueStatus:
    name: str
    cohort: str | None
    pending: int
    reserving: int
    admitted: int
    resources: tuple[ResourceStatus, ...]
    weighted_share: float


@dataclass(frozen=True, slots=True)
class CohortStatus:
    name: str
    parent: str | None
    resources: tuple[ResourceStatus, ...]
    weighted_share: float


@dataclass(frozen=True, slots=True)
class GangDemand:
    """A workload holding quota whose bundles are not placed on nodes yet."""

    workload: WorkloadId
    flavor: FlavorName
    bundles: tuple[Resources, ...]
    strategy: PlacementStrategy
    all_at_once: bool
    state: WorkloadState
    #: How many times the workload was requeued before: each attempt gets its own
    #: ProvisioningRequest, so a stale Failed one never fails the next attempt.
    attempt: int = 0
