"""Fluent builders for engine fixtures, in the style of Kueue's test wrappers.

Scenario tests read best when a ClusterQueue or a workload is one expression that names
only what the test is about, with every other field at Kueue's default. Amounts are given
in whole units (``CPU=10`` means ten CPUs) and converted to the engine's milli-units here,
so the numbers in a test match the numbers in its comment and in docs/scheduling.md.

The small helpers at the bottom (``new_engine``, ``used``, ``states``) are the few
questions every scenario asks of an engine; they live here so that each test module
builds and inspects engines the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionCheckRef,
    AdmissionFairSharing,
    BorrowWithinCohort,
    BorrowWithinCohortPolicy,
    ClusterQueue,
    Cohort,
    FairSharing,
    FairSharingStrategy,
    FlavorFungibility,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    ProvisioningMode,
    Queue,
    QueueConfig,
    QueueingStrategy,
    ReclaimWithinCohort,
    RequeuingStrategy,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    Settings,
    StopPolicy,
    WaitForPlacement,
    WhenCanBorrow,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import (
    BundleGroup,
    PlacementStrategy,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    to_milli,
)


def _opt_milli(amount: float | None) -> int | None:
    return None if amount is None else to_milli(amount)


class FlavorQuotasBuilder:
    """Quotas of one flavor inside a resource group: ``flavor("a100").resource("GPU", 8)``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._resources: list[ResourceQuota] = []

    @property
    def name(self) -> str:
        return self._name

    def resource(
        self,
        name: str,
        nominal: float,
        *,
        borrowing_limit: float | None = None,
        lending_limit: float | None = None,
    ) -> FlavorQuotasBuilder:
        self._resources.append(
            ResourceQuota(
                name=name,
                nominal=to_milli(nominal),
                borrowing_limit=_opt_milli(borrowing_limit),
                lending_limit=_opt_milli(lending_limit),
            )
        )
        return self

    def resource_names(self) -> list[str]:
        return [r.name for r in self._resources]

    def build(self) -> FlavorQuotas:
        return FlavorQuotas(flavor=self._name, resources=tuple(self._resources))


def flavor(name: str) -> FlavorQuotasBuilder:
    return FlavorQuotasBuilder(name)


def _resource_group(flavors: tuple[FlavorQuotasBuilder, ...]) -> ResourceGroup:
    covered: list[str] = []
    for fq in flavors:
        for resource in fq.resource_names():
            if resource not in covered:
                covered.append(resource)
    return ResourceGroup(
        covered_resources=tuple(covered), flavors=tuple(fq.build() for fq in flavors)
    )


class ClusterQueueBuilder:
    """``ClusterQueueBuilder("cq").cohort("all").resource_group(flavor(..)...).build()``."""

    def __init__(self, name: str) -> None:
        self._cq = ClusterQueue(name=name, resource_groups=())

    @property
    def name(self) -> str:
        return self._cq.name

    def cohort(self, name: str | None) -> ClusterQueueBuilder:
        self._cq = replace(self._cq, cohort=name)
        return self

    def resource_group(self, *flavors: FlavorQuotasBuilder) -> ClusterQueueBuilder:
        groups = (*self._cq.resource_groups, _resource_group(flavors))
        self._cq = replace(self._cq, resource_groups=groups)
        return self

    def strategy(self, strategy: QueueingStrategy) -> ClusterQueueBuilder:
        self._cq = replace(self._cq, queueing_strategy=strategy)
        return self

    def strict_fifo(self) -> ClusterQueueBuilder:
        return self.strategy(QueueingStrategy.STRICT_FIFO)

    def preemption(
        self,
        *,
        within: WithinClusterQueue = WithinClusterQueue.NEVER,
        reclaim: ReclaimWithinCohort = ReclaimWithinCohort.NEVER,
        borrow_within: BorrowWithinCohortPolicy = BorrowWithinCohortPolicy.NEVER,
        max_priority_threshold: int | None = None,
        wait_s: float = 0.0,
    ) -> ClusterQueueBuilder:
        self._cq = replace(
            self._cq,
            preemption=Preemption(
                within_cluster_queue=within,
                reclaim_within_cohort=reclaim,
                borrow_within_cohort=BorrowWithinCohort(borrow_within, max_priority_threshold),
                wait_before_preempting_s=wait_s,
            ),
        )
        return self

    def fungibility(
        self,
        *,
        when_can_borrow: WhenCanBorrow = WhenCanBorrow.BORROW,
        when_can_preempt: WhenCanPreempt = WhenCanPreempt.TRY_NEXT_FLAVOR,
    ) -> ClusterQueueBuilder:
        self._cq = replace(
            self._cq, flavor_fungibility=FlavorFungibility(when_can_borrow, when_can_preempt)
        )
        return self

    def weight(self, weight: float) -> ClusterQueueBuilder:
        self._cq = replace(self._cq, fair_sharing_weight=weight)
        return self

    def admission_check(self, name: str, *on_flavors: str) -> ClusterQueueBuilder:
        checks = (*self._cq.admission_checks, AdmissionCheckRef(name, tuple(on_flavors)))
        self._cq = replace(self._cq, admission_checks=checks)
        return self

    def stop(self, policy: StopPolicy) -> ClusterQueueBuilder:
        self._cq = replace(self._cq, stop_policy=policy)
        return self

    def usage_fair_sharing(self, enable: bool = True) -> ClusterQueueBuilder:
        self._cq = replace(self._cq, usage_based_fair_sharing=enable)
        return self

    def build(self) -> ClusterQueue:
        return self._cq


class CohortBuilder:
    """``CohortBuilder("org").parent("root").resource_group(flavor(..)).build()``."""

    def __init__(self, name: str) -> None:
        self._cohort = Cohort(name=name)

    def parent(self, name: str | None) -> CohortBuilder:
        self._cohort = replace(self._cohort, parent=name)
        return self

    def resource_group(self, *flavors: FlavorQuotasBuilder) -> CohortBuilder:
        groups = (*self._cohort.resource_groups, _resource_group(flavors))
        self._cohort = replace(self._cohort, resource_groups=groups)
        return self

    def weight(self, weight: float) -> CohortBuilder:
        self._cohort = replace(self._cohort, fair_sharing_weight=weight)
        return self

    def build(self) -> Cohort:
        return self._cohort


class ConfigBuilder:
    """Assembles a ``QueueConfig`` directly (never through the YAML loader).

    Every flavor a ClusterQueue or cohort names gets a ``ResourceFlavor`` unless one was
    declared with ``flavor``, so tests only spell out flavors whose labels matter.
    """

    def __init__(self) -> None:
        self._flavors: dict[str, ResourceFlavor] = {}
        self._cqs: dict[str, ClusterQueue] = {}
        self._cohorts: dict[str, Cohort] = {}
        self._queues: dict[str, Queue] = {}
        self._priorities: dict[str, PriorityClass] = {}
        self._checks: dict[str, AdmissionCheck] = {}
        self._settings = Settings()

    def flavor(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        worker_group: str | None = None,
        all_at_once: bool = False,
    ) -> ConfigBuilder:
        mode = ProvisioningMode.ALL_AT_ONCE if all_at_once else ProvisioningMode.INCREMENTAL
        self._flavors[name] = ResourceFlavor(name, dict(labels or {}), worker_group, mode)
        return self

    def cluster_queue(self, cq: ClusterQueueBuilder | ClusterQueue, *queues: str) -> ConfigBuilder:
        """Add a ClusterQueue and, for convenience, Queues (weight 1) that feed it."""
        built = cq.build() if isinstance(cq, ClusterQueueBuilder) else cq
        self._cqs[built.name] = built
        for queue in queues:
            self.queue(queue, built.name)
        return self

    def cohort(self, cohort: CohortBuilder | Cohort) -> ConfigBuilder:
        built = cohort.build() if isinstance(cohort, CohortBuilder) else cohort
        self._cohorts[built.name] = built
        return self

    def queue(
        self,
        name: str,
        cluster_queue: str,
        *,
        weight: float = 1.0,
        stop: StopPolicy = StopPolicy.NONE,
    ) -> ConfigBuilder:
        self._queues[name] = Queue(name, cluster_queue, weight, stop)
        return self

    def priority_class(self, name: str, value: int, *, default: bool = False) -> ConfigBuilder:
        self._priorities[name] = PriorityClass(name, value, default)
        return self

    def priorities(self, **values: int) -> ConfigBuilder:
        for name, value in values.items():
            self.priority_class(name, value)
        return self

    def admission_check(self, name: str, controller: str = "test") -> ConfigBuilder:
        self._checks[name] = AdmissionCheck(name, controller)
        return self

    def fair_sharing(self, *strategies: FairSharingStrategy, enable: bool = True) -> ConfigBuilder:
        fs = FairSharing(enable, tuple(strategies)) if strategies else FairSharing(enable)
        self._settings = replace(self._settings, fair_sharing=fs)
        return self

    def usage_half_life(self, seconds: float) -> ConfigBuilder:
        self._settings = replace(
            self._settings, admission_fair_sharing=AdmissionFairSharing(seconds)
        )
        return self

    def requeuing(
        self, *, base_s: float = 60.0, max_s: float = 3600.0, limit: int | None = None
    ) -> ConfigBuilder:
        self._settings = replace(self._settings, requeuing=RequeuingStrategy(limit, base_s, max_s))
        return self

    def wait_for_placement(self, timeout_s: float) -> ConfigBuilder:
        self._settings = replace(
            self._settings, wait_for_placement=WaitForPlacement(True, timeout_s)
        )
        return self

    def build(self) -> QueueConfig:
        flavors = dict(self._flavors)
        groups = [g for cq in self._cqs.values() for g in cq.resource_groups]
        groups += [g for c in self._cohorts.values() for g in c.resource_groups]
        for group in groups:
            for fq in group.flavors:
                flavors.setdefault(fq.flavor, ResourceFlavor(fq.flavor))
        return QueueConfig(
            flavors=flavors,
            cluster_queues=dict(self._cqs),
            cohorts=dict(self._cohorts),
            queues=dict(self._queues),
            priority_classes=dict(self._priorities),
            admission_checks=dict(self._checks),
            settings=self._settings,
        )


class WorkloadBuilder:
    """``WorkloadBuilder("w1").queue("a").bundles({"CPU": 1}, count=4).build()``.

    Bundle amounts are whole units; ``bundles`` may be called several times for several
    bundle groups. Without any call the workload asks for one bundle of 1 CPU.
    """

    def __init__(self, workload_id: str) -> None:
        self._id = workload_id
        self._queue = "q"
        self._groups: list[BundleGroup] = []
        self._created = 0.0
        self._priority: str | None = None
        self._owner = ""
        self._min_count: int | None = None
        self._kind = WorkloadKind.PLACEMENT_GROUP
        self._strategy = PlacementStrategy.PACK
        self._empty = False

    def queue(self, name: str) -> WorkloadBuilder:
        self._queue = name
        return self

    def bundles(self, resources: Mapping[str, float], count: int = 1) -> WorkloadBuilder:
        milli = {name: to_milli(amount) for name, amount in resources.items()}
        self._groups.append(BundleGroup(milli, count))
        return self

    def raw_group(self, group: BundleGroup) -> WorkloadBuilder:
        """A bundle group as-is (milli-units), for malformed-input tests."""
        self._groups.append(group)
        return self

    def no_bundles(self) -> WorkloadBuilder:
        self._groups = []
        self._empty = True
        return self

    def priority(self, name: str | None) -> WorkloadBuilder:
        self._priority = name
        return self

    def created(self, at: float) -> WorkloadBuilder:
        self._created = at
        return self

    def owner(self, owner: str) -> WorkloadBuilder:
        self._owner = owner
        return self

    def min_count(self, count: int) -> WorkloadBuilder:
        self._min_count = count
        return self

    def kind(self, kind: WorkloadKind) -> WorkloadBuilder:
        self._kind = kind
        return self

    def build(self) -> WorkloadSpec:
        groups = self._groups
        if not groups and not self._empty:
            groups = [BundleGroup({"CPU": to_milli(1)}, 1)]
        return WorkloadSpec(
            id=WorkloadId(self._id),
            queue=self._queue,
            bundle_groups=tuple(groups),
            created_at=self._created,
            kind=self._kind,
            strategy=self._strategy,
            priority_class=self._priority,
            owner=self._owner,
            min_count=self._min_count,
        )


def wl(workload_id: str, queue: str = "q", *, created: float = 0.0, **units: float) -> WorkloadSpec:
    """A one-bundle workload in one line: ``wl("a", "q", CPU=4, created=1)``."""
    builder = WorkloadBuilder(workload_id).queue(queue).created(created)
    if units:
        builder.bundles(units)
    return builder.build()


# -- questions every scenario asks -----------------------------------------------------


def new_engine(config: QueueConfig, start: float = 0.0) -> tuple[Engine, ManualClock]:
    clock = ManualClock(start)
    return Engine(config, clock), clock


def used(engine: Engine, cq: str, flavor_name: str, resource: str) -> float:
    """A ClusterQueue's usage of (flavor, resource), in whole units."""
    node = engine.tree.cluster_queues[cq]
    return node.usage.get((flavor_name, resource), 0) / 1000


def cohort_used(engine: Engine, cohort: str, flavor_name: str, resource: str) -> float:
    node = engine.tree.cohorts[cohort]
    return node.usage.get((flavor_name, resource), 0) / 1000


def state(engine: Engine, workload: str) -> WorkloadState:
    return engine.workload(WorkloadId(workload)).state


def states(engine: Engine, workloads: Iterable[str]) -> dict[str, WorkloadState]:
    return {w: state(engine, w) for w in workloads}


def admitted(engine: Engine) -> set[str]:
    """Ids of every workload holding quota (ADMITTED or QUOTA_RESERVED)."""
    return {s.spec.id for s in engine.workloads() if s.state.holds_quota}


def flavor_of(engine: Engine, workload: str, resource: str, group: int = 0) -> str:
    admission = engine.workload(WorkloadId(workload)).admission
    assert admission is not None, f"{workload} holds no admission"
    return admission.groups[group].flavors[resource]


def submit_all(engine: Engine, *specs: WorkloadSpec) -> None:
    for spec in specs:
        engine.submit(spec)
