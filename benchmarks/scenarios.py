"""Kueue's scheduler performance-test shapes, as data.

Kueue measures its scheduler with generated ClusterQueues, cohorts and streams of
one-pod workloads (``test/performance/scheduler/configs/*/generator.yaml``). We replay
the same shapes so our numbers can be put next to Kueue's published ones. A shape is
plain data here; ``to_queue_config`` builds the engine's ``QueueConfig`` directly from
the config dataclasses (no YAML round trip) and ``arrivals`` lists every workload with
its creation time. Nothing in this module knows how the workloads are run, so the
simulated-time benchmark (``benchmarks.engine``) and a real-Ray benchmark can share it.

Times are integer milliseconds and amounts integer milli-CPUs, so arrival times such
as ``37 * 100 ms`` are exact and a replay is identical on every machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ray_queue.engine.config import (
    ClusterQueue,
    Cohort,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    Queue,
    QueueConfig,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    WithinClusterQueue,
)
from ray_queue.engine.model import MILLI, BundleGroup, WorkloadId, WorkloadSpec

#: Kueue's generator puts every ClusterQueue on one flavor of this name.
FLAVOR = "rf"
RESOURCE = "CPU"


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """One of Kueue's ``workloadsSets``: ``count`` identical workloads per ClusterQueue.

    Kueue's generator waits ``interval_ms`` before creating each workload of a set, so
    the i-th (0-based) is created at ``(i + 1) * interval_ms``; the sets of one
    ClusterQueue are generated concurrently.
    """

    name: str
    count: int
    cpu_milli: int
    runtime_ms: int
    priority: int
    interval_ms: int

    @property
    def priority_class(self) -> str:
        return f"{self.name}-priority"


@dataclass(frozen=True, slots=True)
class KueueResult:
    """What Kueue recorded for this shape, to compare against (seconds)."""

    makespan_s: float
    #: Mean time from creation to admission, per workload class; empty if unpublished.
    mean_time_to_admission_s: tuple[tuple[str, float], ...] = ()
    #: Workloads evicted, per class, in a run of Kueue itself; empty if not measured.
    evictions: Mapping[str, int] = field(default_factory=dict)
    #: How that run differs from ours, to read the numbers side by side.
    note: str = ""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One workload to create at ``at_ms`` in ``cluster_queue`` (via its Queue)."""

    at_ms: int
    workload: WorkloadId
    cluster_queue: str
    queue: str
    cohort: str
    workload_class: WorkloadClass


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    #: Where the shape comes from (Kueue file and commit), recorded in every result.
    source: str
    cohorts: int
    cluster_queues_per_cohort: int
    nominal_cpu_milli: int
    borrowing_limit_cpu_milli: int | None
    reclaim_within_cohort: ReclaimWithinCohort
    within_cluster_queue: WithinClusterQueue
    classes: tuple[WorkloadClass, ...]
    kueue: KueueResult | None = None
    #: Every ClusterQueue's ``preemption.waitBeforePreemptingSeconds`` (ours, not
    #: Kueue's: 0 preempts at once, as Kueue does).
    wait_before_preempting_s: float = 0.0

    # -- names --------------------------------------------------------------------------

    def cohort_names(self) -> list[str]:
        return [f"cohort-{c}" for c in range(self.cohorts)]

    def cluster_queue_names(self, cohort: str) -> list[str]:
        return [f"{cohort}-cq-{q}" for q in range(self.cluster_queues_per_cohort)]

    @staticmethod
    def queue_name(cluster_queue: str) -> str:
        """Kueue's generator gives each ClusterQueue exactly one LocalQueue."""
        return f"{cluster_queue}-lq"

    # -- sizes ----------------------------------------------------------------------------

    @property
    def cluster_queue_count(self) -> int:
        return self.cohorts * self.cluster_queues_per_cohort

    @property
    def workload_count(self) -> int:
        return self.cluster_queue_count * sum(c.count for c in self.classes)

    @property
    def capacity_cpu_milli(self) -> int:
        """All nominal quota: cohorts own none, so this is every CPU there is."""
        return self.cluster_queue_count * self.nominal_cpu_milli

    def total_work_cpu_ms(self) -> int:
        """milli-CPU x ms of work if nothing were ever preempted."""
        per_cq = sum(c.count * c.cpu_milli * c.runtime_ms for c in self.classes)
        return per_cq * self.cluster_queue_count

    def last_possible_finish_ms(self) -> int:
        """When the last arrival would finish if it were admitted the moment it came."""
        return max(c.count * c.interval_ms + c.runtime_ms for c in self.classes)

    def ideal_makespan_s(self) -> float:
        """A lower bound no scheduler can beat: the work cannot finish faster than all
        capacity allows, nor before the last arrival could run."""
        work_bound_ms = self.total_work_cpu_ms() / self.capacity_cpu_milli
        return max(work_bound_ms, self.last_possible_finish_ms()) / 1000.0

    # -- engine inputs ----------------------------------------------------------------

    def to_queue_config(self) -> QueueConfig:
        quota = ResourceQuota(
            name=RESOURCE,
            nominal=self.nominal_cpu_milli,
            borrowing_limit=self.borrowing_limit_cpu_milli,
        )
        group = ResourceGroup(
            covered_resources=(RESOURCE,),
            flavors=(FlavorQuotas(flavor=FLAVOR, resources=(quota,)),),
        )
        preemption = Preemption(
            within_cluster_queue=self.within_cluster_queue,
            reclaim_within_cohort=self.reclaim_within_cohort,
            wait_before_preempting_s=self.wait_before_preempting_s,
        )
        cohorts: dict[str, Cohort] = {}
        cluster_queues: dict[str, ClusterQueue] = {}
        queues: dict[str, Queue] = {}
        for cohort in self.cohort_names():
            cohorts[cohort] = Cohort(name=cohort)
            for cq in self.cluster_queue_names(cohort):
                cluster_queues[cq] = ClusterQueue(
                    name=cq, resource_groups=(group,), cohort=cohort, preemption=preemption
                )
                queues[self.queue_name(cq)] = Queue(name=self.queue_name(cq), cluster_queue=cq)
        priority_classes = {
            c.priority_class: PriorityClass(name=c.priority_class, value=c.priority)
            for c in self.classes
        }
        return QueueConfig(
            flavors={FLAVOR: ResourceFlavor(name=FLAVOR)},
            cluster_queues=cluster_queues,
            cohorts=cohorts,
            queues=queues,
            priority_classes=priority_classes,
        )

    def arrivals(self) -> Iterator[Arrival]:
        """Every workload in creation order (time, then ClusterQueue, then class).

        Lazily merged per (ClusterQueue, class) stream, so the large shape never holds
        all 50,000 arrivals at once unless the caller keeps them.
        """
        streams: list[Iterator[Arrival]] = []
        for cohort in self.cohort_names():
            for cq in self.cluster_queue_names(cohort):
                for workload_class in self.classes:
                    streams.append(self._stream(cohort, cq, workload_class))
        # Streams are built in (cohort, ClusterQueue, class) order and heapq.merge is
        # stable, so equal times keep that order: deterministic, like the ids.
        return heapq.merge(*streams, key=lambda a: a.at_ms)

    def _stream(self, cohort: str, cq: str, workload_class: WorkloadClass) -> Iterator[Arrival]:
        queue = self.queue_name(cq)
        for i in range(workload_class.count):
            yield Arrival(
                at_ms=(i + 1) * workload_class.interval_ms,
                workload=WorkloadId(f"{cq}.{workload_class.name}-{i}"),
                cluster_queue=cq,
                queue=queue,
                cohort=cohort,
                workload_class=workload_class,
            )


def workload_spec(arrival: Arrival) -> WorkloadSpec:
    """The engine workload for an arrival: one bundle of the class's CPU (one pod)."""
    workload_class = arrival.workload_class
    return WorkloadSpec(
        id=arrival.workload,
        queue=arrival.queue,
        bundle_groups=(BundleGroup(resources={RESOURCE: workload_class.cpu_milli}),),
        created_at=arrival.at_ms / 1000.0,
        priority_class=workload_class.priority_class,
        name=workload_class.name,
    )


def _classes(
    small: tuple[int, int, int], medium: tuple[int, int, int], large: tuple[int, int, int]
) -> tuple[WorkloadClass, ...]:
    """(count, runtime_ms, interval_ms) per class; CPU and priority are Kueue's fixed
    1/5/20 CPU and 50/100/200 in every shape."""
    return tuple(
        WorkloadClass(name, count, cpu * MILLI, runtime_ms, priority, interval_ms)
        for name, cpu, priority, (count, runtime_ms, interval_ms) in (
            ("small", 1, 50, small),
            ("medium", 5, 100, medium),
            ("large", 20, 200, large),
        )
    )


KUEUE_BASELINE = Scenario(
    name="kueue-baseline",
    description="5 cohorts x 6 ClusterQueues (20 CPU nominal, borrow up to 100), "
    "15,000 one-pod workloads",
    source="kubernetes-sigs/kueue test/performance/scheduler/configs/baseline/"
    "generator.yaml (commit cc13fff80cdc62877729419a7f5733f3a90e2f7d)",
    cohorts=5,
    cluster_queues_per_cohort=6,
    nominal_cpu_milli=20 * MILLI,
    borrowing_limit_cpu_milli=100 * MILLI,
    reclaim_within_cohort=ReclaimWithinCohort.ANY,
    within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
    classes=_classes(small=(350, 200, 100), medium=(100, 500, 500), large=(50, 1000, 1200)),
    kueue=KueueResult(
        makespan_s=351.0,
        mean_time_to_admission_s=(("small", 215.5), ("medium", 76.8), ("large", 16.5)),
        evictions={"small": 65, "medium": 56, "large": 8},
        note="evictions from Kueue v0.19.2 (its runner and minimalkueue) on this machine, "
        "issue 18: its quota was ~55 % in use on average over 376 s, ours ~99 %",
    ),
)

KUEUE_LARGE = Scenario(
    name="kueue-large",
    description="10 cohorts x 100 ClusterQueues (20 CPU nominal, borrow up to 100), "
    "50,000 one-pod workloads",
    # Kueue's large-scale config has changed shape over time; this is the version with
    # 10 x 100 ClusterQueues and 50 workloads per ClusterQueue (35 small, 11 medium,
    # 4 large), whose recorded run took 1,179 s.
    source="kubernetes-sigs/kueue test/performance/scheduler/configs/large-scale/"
    "generator.yaml (commit f6517b0c466b63058f32a737a3c9172f13a4f9c7)",
    cohorts=10,
    cluster_queues_per_cohort=100,
    nominal_cpu_milli=20 * MILLI,
    borrowing_limit_cpu_milli=100 * MILLI,
    reclaim_within_cohort=ReclaimWithinCohort.ANY,
    within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
    classes=_classes(small=(35, 150, 60), medium=(11, 350, 300), large=(4, 700, 700)),
    kueue=KueueResult(makespan_s=1179.0),
)

#: A scaled-down baseline (1 cohort x 2 ClusterQueues, 30 workloads) for tests: small
#: enough to run in a second, busy enough to borrow and preempt.
TINY = Scenario(
    name="tiny",
    description="1 cohort x 2 ClusterQueues (4 CPU nominal, borrow up to 4), 30 workloads",
    source="scaled down from the kueue-baseline shape",
    cohorts=1,
    cluster_queues_per_cohort=2,
    nominal_cpu_milli=4 * MILLI,
    borrowing_limit_cpu_milli=4 * MILLI,
    reclaim_within_cohort=ReclaimWithinCohort.ANY,
    within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
    classes=(
        WorkloadClass("small", 10, 1 * MILLI, 200, 50, 100),
        WorkloadClass("medium", 3, 2 * MILLI, 500, 100, 300),
        WorkloadClass("large", 2, 4 * MILLI, 1000, 200, 400),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (KUEUE_BASELINE, KUEUE_LARGE, TINY)}
