"""The validated queue configuration, as frozen dataclasses.

This is the engine's view of config: already parsed, unit-converted (milli-units) and
cross-checked by ``config_loader``. Field names follow Kueue's so a Kueue user can map
every knob one-to-one; defaults are Kueue's defaults unless a comment says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from ray_queue.engine.errors import UnknownPriorityClassError
from ray_queue.engine.model import Admission, FlavorName, FlavorResource, Milli, ResourceName


class QueueingStrategy(str, Enum):
    #: The head blocks the ClusterQueue until it is admitted.
    STRICT_FIFO = "StrictFIFO"
    #: A head that does not fit is set aside until quota is released; others go first.
    BEST_EFFORT_FIFO = "BestEffortFIFO"


class WithinClusterQueue(str, Enum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    LOWER_OR_NEWER_EQUAL_PRIORITY = "LowerOrNewerEqualPriority"


class ReclaimWithinCohort(str, Enum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    ANY = "Any"


class BorrowWithinCohortPolicy(str, Enum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"


class StopPolicy(str, Enum):
    NONE = "None"
    #: No new admissions; admitted work keeps running.
    HOLD = "Hold"
    #: No new admissions, and admitted work is evicted.
    HOLD_AND_DRAIN = "HoldAndDrain"


class WhenCanBorrow(str, Enum):
    BORROW = "Borrow"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class WhenCanPreempt(str, Enum):
    PREEMPT = "Preempt"
    TRY_NEXT_FLAVOR = "TryNextFlavor"


class ProvisioningMode(str, Enum):
    #: Nodes are added as demand appears, a few at a time.
    INCREMENTAL = "incremental"
    #: A gang's nodes are obtained together through a ProvisioningRequest.
    ALL_AT_ONCE = "all-at-once"


class FairSharingStrategy(str, Enum):
    LESS_THAN_OR_EQUAL_TO_FINAL_SHARE = "LessThanOrEqualToFinalShare"
    LESS_THAN_INITIAL_SHARE = "LessThanInitialShare"


@dataclass(frozen=True, slots=True)
class ResourceFlavor:
    name: FlavorName
    #: Ray node labels that identify the flavor's nodes; become the placement group's
    #: ``bundle_label_selector``.
    node_labels: Mapping[str, str] = field(default_factory=dict)
    #: The KubeRay worker group that provides these nodes (``None``: not autoscaled).
    worker_group: str | None = None
    provisioning: ProvisioningMode = ProvisioningMode.INCREMENTAL


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    name: ResourceName
    nominal: Milli
    #: How much above nominal may be borrowed from the cohort; ``None``: no limit.
    borrowing_limit: Milli | None = None
    #: How much of nominal may be lent to the cohort; ``None``: all of it.
    lending_limit: Milli | None = None


@dataclass(frozen=True, slots=True)
class FlavorQuotas:
    flavor: FlavorName
    resources: tuple[ResourceQuota, ...]


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """Resources that are assigned one flavor together, flavors tried in order."""

    covered_resources: tuple[ResourceName, ...]
    flavors: tuple[FlavorQuotas, ...]


@dataclass(frozen=True, slots=True)
class BorrowWithinCohort:
    policy: BorrowWithinCohortPolicy = BorrowWithinCohortPolicy.NEVER
    #: Only workloads at or below this priority may be preempted while borrowing.
    max_priority_threshold: int | None = None


@dataclass(frozen=True, slots=True)
class Preemption:
    within_cluster_queue: WithinClusterQueue = WithinClusterQueue.NEVER
    reclaim_within_cohort: ReclaimWithinCohort = ReclaimWithinCohort.NEVER
    borrow_within_cohort: BorrowWithinCohort = field(default_factory=BorrowWithinCohort)
    #: Seconds a head that could preempt first waits for quota to free on its own, its
    #: queue's free nominal quota held for it meanwhile (``waitBeforePreemptingSeconds``,
    #: ours, not Kueue's; docs/design.md "Waiting before preempting"). 0: preempt at once,
    #: as Kueue does.
    wait_before_preempting_s: float = 0.0


@dataclass(frozen=True, slots=True)
class FlavorFungibility:
    when_can_borrow: WhenCanBorrow = WhenCanBorrow.BORROW
    when_can_preempt: WhenCanPreempt = WhenCanPreempt.TRY_NEXT_FLAVOR


@dataclass(frozen=True, slots=True)
class AdmissionCheckRef:
    """An admission check a ClusterQueue requires, optionally only on some flavors."""

    name: str
    #: Empty: applies whatever flavor is assigned.
    on_flavors: tuple[FlavorName, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterQueue:
    name: str
    resource_groups: tuple[ResourceGroup, ...]
    cohort: str | None = None
    queueing_strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO
    preemption: Preemption = field(default_factory=Preemption)
    flavor_fungibility: FlavorFungibility = field(default_factory=FlavorFungibility)
    #: Weight in fair sharing across the cohort; 0 means "always last" (infinite share).
    fair_sharing_weight: float = 1.0
    admission_checks: tuple[AdmissionCheckRef, ...] = ()
    stop_policy: StopPolicy = StopPolicy.NONE
    #: Kueue's ``admissionScope.admissionMode: UsageBasedAdmissionFairSharing``: order
    #: the Queues of this ClusterQueue by their decayed recent usage.
    usage_based_fair_sharing: bool = False

    def quotas(self) -> dict[FlavorResource, ResourceQuota]:
        return _quotas(self.resource_groups)

    def checks_for(self, admission: Admission) -> list[str]:
        """The admission checks that apply to the flavors an admission was given."""
        flavors = admission.flavors()
        applies = [
            c
            for c in self.admission_checks
            if not c.on_flavors or not flavors.isdisjoint(c.on_flavors)
        ]
        return [c.name for c in applies]


@dataclass(frozen=True, slots=True)
class Cohort:
    name: str
    parent: str | None = None
    #: Quota the cohort itself owns and lends to its members.
    resource_groups: tuple[ResourceGroup, ...] = ()
    fair_sharing_weight: float = 1.0

    def quotas(self) -> dict[FlavorResource, ResourceQuota]:
        return _quotas(self.resource_groups)


@dataclass(frozen=True, slots=True)
class Queue:
    """Kueue's LocalQueue: what users submit to. One tenant."""

    name: str
    cluster_queue: str
    #: Weight for usage-based fair sharing among the Queues of one ClusterQueue.
    fair_sharing_weight: float = 1.0
    stop_policy: StopPolicy = StopPolicy.NONE


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    value: int
    global_default: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class AdmissionCheck:
    name: str
    controller_name: str
    #: Controller-specific settings, e.g. ``provisioningClassName`` for provisioning.
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequeuingStrategy:
    """Back-off for workloads evicted by a check Retry or a placement timeout.

    The n-th requeue waits ``min(base * 2**(n-1), max)`` seconds (Kueue's formula).
    """

    #: After this many requeues the workload is rejected; ``None``: never.
    backoff_limit_count: int | None = None
    backoff_base_s: float = 60.0
    backoff_max_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class WaitForPlacement:
    """Kueue's waitForPodsReady: evict work that was admitted but never got placed."""

    enable: bool = False
    #: 5 minutes, Kueue's default: long enough for a node to be added by the autoscaler.
    timeout_s: float = 300.0


@dataclass(frozen=True, slots=True)
class FairSharing:
    enable: bool = False
    preemption_strategies: tuple[FairSharingStrategy, ...] = (
        FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE,
        FairSharingStrategy.LESS_THAN_INITIAL_SHARE,
    )


@dataclass(frozen=True, slots=True)
class AdmissionFairSharing:
    #: Recent usage halves every this many seconds. 0 disables decay (pure history).
    usage_half_life_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Scheduler-wide settings (Kueue keeps these in its Configuration object)."""

    fair_sharing: FairSharing = field(default_factory=FairSharing)
    admission_fair_sharing: AdmissionFairSharing = field(default_factory=AdmissionFairSharing)
    wait_for_placement: WaitForPlacement = field(default_factory=WaitForPlacement)
    requeuing: RequeuingStrategy = field(default_factory=RequeuingStrategy)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A whole, consistent configuration. Build it with ``config_loader``."""

    flavors: Mapping[str, ResourceFlavor] = field(default_factory=dict)
    cluster_queues: Mapping[str, ClusterQueue] = field(default_factory=dict)
    cohorts: Mapping[str, Cohort] = field(default_factory=dict)
    queues: Mapping[str, Queue] = field(default_factory=dict)
    priority_classes: Mapping[str, PriorityClass] = field(default_factory=dict)
    admission_checks: Mapping[str, AdmissionCheck] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    def default_priority(self) -> int:
        for pc in self.priority_classes.values():
            if pc.global_default:
                return pc.value
        return 0

    def priority_value(self, priority_class: str | None) -> int:
        """The priority a workload naming ``priority_class`` gets (``None``: the default).

        Raises ``UnknownPriorityClassError`` for a name the config does not define.
        """
        if priority_class is None:
            return self.default_priority()
        pc = self.priority_classes.get(priority_class)
        if pc is None:
            known = ", ".join(sorted(self.priority_classes)) or "none"
            raise UnknownPriorityClassError(
                f"priority class {priority_class!r} does not exist (known: {known}); "
                "use one of those, omit it for the default, or define it in the config"
            )
        return pc.value


def _quotas(groups: tuple[ResourceGroup, ...]) -> dict[FlavorResource, ResourceQuota]:
    return {(fq.flavor, rq.name): rq for g in groups for fq in g.flavors for rq in fq.resources}
