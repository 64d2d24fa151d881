"""Prometheus metrics for the manager, in Kueue's shape with the ``ray_queue_`` prefix.

Counters and histograms are fed from the engine's decisions as they happen; gauges
(queue lengths, usage, quotas, shares) are computed at scrape time from a snapshot the
manager hands over, so they can never drift from the engine's state. A ClusterQueue's
admission, eviction and rejection counters exist at 0 from its first scrape on, so
``rate``/``increase`` count its first eviction too (a series born at 1 hides that one). The table in
``docs/metrics.md`` is generated from ``METRICS`` below (``python -m ray_queue.metrics``)
and a test fails when the two disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ray_queue.engine.engine import Engine
from ray_queue.engine.model import (
    MILLI,
    ClusterQueueStatus,
    CohortStatus,
    Decision,
    DecisionKind,
    JobFamily,
    WorkloadId,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.wire import UnmanagedUsage, Unplaced

#: Waits from seconds (an idle cluster) to hours (a busy GPU queue).
WAIT_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
#: A scheduling cycle is milliseconds; a second means something is wrong.
CYCLE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


_RESOURCE_LABELS = ("cohort", "cluster_queue", "flavor", "resource")

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ray_queue_pending_workloads",
        "gauge",
        ("cluster_queue", "status"),
        "Pending workloads per ClusterQueue; status is active (will be tried) or "
        "inadmissible (set aside until quota is released).",
    ),
    MetricSpec(
        "ray_queue_gauges_computed_timestamp_seconds",
        "gauge",
        (),
        "When the gauges of this scrape were computed (Unix seconds). The manager recomputes "
        "them each second on its loop; one far behind time() means the loop is stuck, and "
        "a value compared with another source must be compared as of this time.",
    ),
    MetricSpec(
        "ray_queue_local_queue_pending_workloads",
        "gauge",
        ("queue", "cluster_queue"),
        "Pending workloads per Queue.",
    ),
    MetricSpec(
        "ray_queue_reserving_active_workloads",
        "gauge",
        ("cluster_queue",),
        "Workloads holding quota while their admission checks run.",
    ),
    MetricSpec(
        "ray_queue_admitted_active_workloads",
        "gauge",
        ("cluster_queue",),
        "Admitted workloads that have not finished.",
    ),
    MetricSpec(
        "ray_queue_unmanaged_usage",
        "gauge",
        ("flavor", "resource"),
        "Resources in use on a flavor's nodes (Ray's total minus available) beyond the quota "
        "admissions hold: work that runs outside the queue (uncaptured drivers, direct Ray "
        "calls). A lower bound while admitted work is still being placed.",
    ),
    MetricSpec(
        "ray_queue_unplaced_workloads",
        "gauge",
        ("cluster_queue", "reason"),
        "Admitted workloads Ray has not placed yet, by why: no_node (no node has the "
        "flavor's labels), bundle_too_large, awaiting_autoscaler, nodes_busy, "
        "job_not_running.",
    ),
    MetricSpec(
        "ray_queue_job_children",
        "gauge",
        ("queue", "job", "state"),
        "Live workloads a job's run made (its children: groups, tasks, actors of its driver "
        "and workers), by state. Only jobs with children or a max_resources cap.",
    ),
    MetricSpec(
        "ray_queue_job_resource_usage",
        "gauge",
        ("queue", "job", "resource"),
        "What a job and its children hold at once, in Ray units (against max_resources).",
    ),
    MetricSpec(
        "ray_queue_job_max_resources",
        "gauge",
        ("queue", "job", "resource"),
        "A job's cap on what it and its children hold at once, in Ray units.",
    ),
    MetricSpec(
        "ray_queue_admission_attempts_total",
        "counter",
        ("result",),
        "Scheduling cycles, by whether they admitted anything (success) or not (inadmissible).",
    ),
    MetricSpec(
        "ray_queue_admission_cycle_duration_seconds",
        "histogram",
        ("result",),
        "Wall time of one scheduling cycle.",
    ),
    MetricSpec(
        "ray_queue_admission_cycles_cut_short_total",
        "counter",
        (),
        "Scheduling cycles stopped at the engine's round limit: a scheduling loop, which is a "
        "bug (the next cycle goes on); see the manager's log for what looped.",
    ),
    MetricSpec(
        "ray_queue_quota_reserved_workloads_total",
        "counter",
        ("cluster_queue",),
        "Workloads that got quota (admitted, or reserved for admission checks).",
    ),
    MetricSpec(
        "ray_queue_quota_reserved_wait_time_seconds",
        "histogram",
        ("cluster_queue",),
        "Time from entering the queue (or being requeued) to getting quota.",
    ),
    MetricSpec(
        "ray_queue_admitted_workloads_total",
        "counter",
        ("cluster_queue",),
        "Workloads admitted.",
    ),
    MetricSpec(
        "ray_queue_admission_wait_time_seconds",
        "histogram",
        ("cluster_queue",),
        "Time from entering the queue (or being requeued) to admission.",
    ),
    MetricSpec(
        "ray_queue_evicted_workloads_total",
        "counter",
        ("cluster_queue", "reason"),
        "Workloads evicted (Preempted, AdmissionCheckRetry, PlacementTimeout, Stopped, ...).",
    ),
    MetricSpec(
        "ray_queue_preempted_workloads_total",
        "counter",
        ("preempting_cluster_queue", "reason"),
        "Workloads preempted, by the ClusterQueue of the workload that needed the room; "
        "reason is InClusterQueue or InCohortReclamation.",
    ),
    MetricSpec(
        "ray_queue_rejected_workloads_total",
        "counter",
        ("cluster_queue", "reason"),
        "Workloads rejected for good (admission check Rejected, back-off limit reached).",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_resource_usage",
        "gauge",
        _RESOURCE_LABELS,
        "Quota in use, in Ray units (CPUs, GPUs, bytes of memory).",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_nominal_quota",
        "gauge",
        _RESOURCE_LABELS,
        "Nominal quota, in Ray units.",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_borrowing_limit",
        "gauge",
        _RESOURCE_LABELS,
        "Borrowing limit, in Ray units (absent: unlimited).",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_lending_limit",
        "gauge",
        _RESOURCE_LABELS,
        "Lending limit, in Ray units (absent: all of nominal may be lent).",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_borrowed",
        "gauge",
        _RESOURCE_LABELS,
        "Usage above nominal quota, taken from the cohort, in Ray units.",
    ),
    MetricSpec(
        "ray_queue_cluster_queue_weighted_share",
        "gauge",
        ("cluster_queue", "cohort"),
        "Weighted dominant-resource share (0 when not borrowing; +Inf for weight 0).",
    ),
    MetricSpec(
        "ray_queue_cohort_resource_usage",
        "gauge",
        ("cohort", "flavor", "resource"),
        "Quota of the cohort's pool in use, in Ray units.",
    ),
    MetricSpec(
        "ray_queue_cohort_weighted_share",
        "gauge",
        ("cohort",),
        "Weighted dominant-resource share of a cohort within its parent.",
    ),
)

_BY_NAME = {spec.name: spec for spec in METRICS}

#: Label values the event counters are created with, at 0, for every ClusterQueue: the
#: reasons the engine evicts with (and the autoscaler's CapacityRevoked), and the ones it
#: rejects with. rate() and increase() cannot see a series' first sample, so a counter
#: born at 1 would show a lone eviction as none.
EVICTION_REASONS = (
    "Preempted",
    "AdmissionCheckRetry",
    "PlacementTimeout",
    "CapacityRevoked",
    "Stopped",
)
#: How a ClusterQueue's workload can need room: from its own queue or its cohort's.
PREEMPTION_REASONS = ("InClusterQueue", "InCohortReclamation")
REJECTION_REASONS = (
    "AdmissionCheckRejected",
    "AdmissionCheckRetry",
    "PlacementTimeout",
    "CapacityRevoked",
)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the gauges show; the manager builds it from the engine under its lock."""

    cluster_queues: Sequence[ClusterQueueStatus] = ()
    cohorts: Sequence[CohortStatus] = ()
    #: Pending workloads per (Queue, ClusterQueue).
    pending_by_queue: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Pending workloads set aside until quota is released, per ClusterQueue.
    inadmissible: dict[str, int] = field(default_factory=dict)
    #: Admitted workloads Ray has not placed, per (ClusterQueue, reason).
    unplaced: dict[tuple[str, str], int] = field(default_factory=dict)
    #: In use in Ray beyond what admissions hold, per flavor and resource.
    unmanaged: Sequence[UnmanagedUsage] = ()
    #: Live jobs with children or a cap (``Engine.job_families``).
    jobs: Sequence[JobFamily] = ()
    #: When it was built (Unix seconds; 0 before the first).
    computed_at: float = 0.0


def snapshot_of(engine: Engine, computed_at: float) -> MetricsSnapshot:
    """What the gauges need, read from the engine (call it where the engine is safe to
    read: the manager's loop). Costs O(live workloads), not O(every remembered one): it
    runs on the manager's loop every second, between admissions."""
    by_queue: dict[tuple[str, str], int] = {}
    inadmissible: dict[str, int] = {}
    for cq_name, (per_queue, set_aside) in engine.pending_counts().items():
        for queue, count in per_queue.items():
            by_queue[(queue, cq_name)] = count
        if set_aside:
            inadmissible[cq_name] = set_aside
    return MetricsSnapshot(
        engine.cluster_queue_status(),
        engine.cohort_status(),
        by_queue,
        inadmissible,
        computed_at=computed_at,
    )


def _units(milli: int) -> float:
    return milli / MILLI


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        families = {
            spec.name: GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
            for spec in METRICS
            if spec.kind == "gauge"
        }
        if snap.computed_at:
            families["ray_queue_gauges_computed_timestamp_seconds"].add_metric([], snap.computed_at)
        for (queue, cq_name), count in sorted(snap.pending_by_queue.items()):
            families["ray_queue_local_queue_pending_workloads"].add_metric([queue, cq_name], count)
        _add_unmanaged_series(families, snap)
        for cq in snap.cluster_queues:
            inadmissible = snap.inadmissible.get(cq.name, 0)
            pending = families["ray_queue_pending_workloads"]
            pending.add_metric([cq.name, "active"], cq.pending - inadmissible)
            pending.add_metric([cq.name, "inadmissible"], inadmissible)
            families["ray_queue_reserving_active_workloads"].add_metric([cq.name], cq.reserving)
            families["ray_queue_admitted_active_workloads"].add_metric([cq.name], cq.admitted)
            for reason in Unplaced:
                families["ray_queue_unplaced_workloads"].add_metric(
                    [cq.name, reason.value], snap.unplaced.get((cq.name, reason.value), 0)
                )
            cohort = cq.cohort or ""
            families["ray_queue_cluster_queue_weighted_share"].add_metric(
                [cq.name, cohort], cq.weighted_share
            )
            for r in cq.resources:
                labels = [cohort, cq.name, r.flavor, r.resource]
                families["ray_queue_cluster_queue_resource_usage"].add_metric(
                    labels, _units(r.usage)
                )
                families["ray_queue_cluster_queue_nominal_quota"].add_metric(
                    labels, _units(r.nominal)
                )
                families["ray_queue_cluster_queue_borrowed"].add_metric(labels, _units(r.borrowed))
                if r.borrowing_limit is not None:
                    families["ray_queue_cluster_queue_borrowing_limit"].add_metric(
                        labels, _units(r.borrowing_limit)
                    )
                if r.lending_limit is not None:
                    families["ray_queue_cluster_queue_lending_limit"].add_metric(
                        labels, _units(r.lending_limit)
                    )
        _add_job_series(families, snap.jobs)
        pooled = _pooled_by_cohort(snap)
        for cohort_status in snap.cohorts:
            families["ray_queue_cohort_weighted_share"].add_metric(
                [cohort_status.name], cohort_status.weighted_share
            )
            usage = {(r.flavor, r.resource): r.usage for r in cohort_status.resources}
            for flavor, resource in sorted(pooled.get(cohort_status.name, set()) | set(usage)):
                families["ray_queue_cohort_resource_usage"].add_metric(
                    [cohort_status.name, flavor, resource],
                    _units(usage.get((flavor, resource), 0)),
                )
        yield from families.values()


def _add_unmanaged_series(families: dict[str, GaugeMetricFamily], snap: MetricsSnapshot) -> None:
    """Every quota'd (flavor, resource) has a series, at 0 when nothing runs outside."""
    outside = {(u.flavor, u.resource): u.amount for u in snap.unmanaged}
    quotad = {(r.flavor, r.resource) for cq in snap.cluster_queues for r in cq.resources}
    for flavor, resource in sorted(quotad | set(outside)):
        families["ray_queue_unmanaged_usage"].add_metric(
            [flavor, resource], _units(outside.get((flavor, resource), 0))
        )


def _add_job_series(families: dict[str, GaugeMetricFamily], jobs: Iterable[JobFamily]) -> None:
    """Each job's children by state, what it holds, and its cap."""
    for job in jobs:
        by_state: dict[str, int] = {}
        for child in job.children:
            by_state[child.state.value] = by_state.get(child.state.value, 0) + 1
        for state, count in sorted(by_state.items()):
            families["ray_queue_job_children"].add_metric([job.queue, job.job, state], count)
        for resource, amount in sorted(job.holding.items()):
            families["ray_queue_job_resource_usage"].add_metric(
                [job.queue, job.job, resource], _units(amount)
            )
        for resource, amount in sorted((job.max_resources or {}).items()):
            families["ray_queue_job_max_resources"].add_metric(
                [job.queue, job.job, resource], _units(amount)
            )


def _pooled_by_cohort(snap: MetricsSnapshot) -> dict[str, set[tuple[str, str]]]:
    """The (flavor, resource) pairs each cohort pools: those of every ClusterQueue below it.

    A cohort with no quota of its own reports only what is in use; without this its usage
    series would vanish whenever it is idle, and the dashboard would say "No data" for 0.
    """
    parents = {c.name: c.parent for c in snap.cohorts}
    pooled: dict[str, set[tuple[str, str]]] = {c.name: set() for c in snap.cohorts}
    for cq in snap.cluster_queues:
        keys = {(r.flavor, r.resource) for r in cq.resources}
        cohort = cq.cohort
        while cohort in pooled:  # up to the root (the loader rejects cycles)
            pooled[cohort] |= keys
            cohort = parents[cohort]
    return pooled


def _counter(spec_name: str, registry: CollectorRegistry) -> Counter:
    spec = _BY_NAME[spec_name]
    return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)


def _histogram(spec_name: str, registry: CollectorRegistry, buckets: Sequence[float]) -> Histogram:
    spec = _BY_NAME[spec_name]
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=buckets)


class QueueMetrics:
    """The manager's metrics, registered on ``registry`` (inject one per test)."""

    def __init__(
        self, registry: CollectorRegistry, snapshot: Callable[[], MetricsSnapshot]
    ) -> None:
        self.registry = registry
        self._snapshot = snapshot
        #: ClusterQueues whose counters exist (at 0 or more).
        self._counted: set[str] = set()
        registry.register(_SnapshotCollector(self._scrape_snapshot))
        self._attempts = _counter("ray_queue_admission_attempts_total", registry)
        self._cycle = _histogram(
            "ray_queue_admission_cycle_duration_seconds", registry, CYCLE_BUCKETS_S
        )
        self._cut_short = _counter("ray_queue_admission_cycles_cut_short_total", registry)
        self._reserved = _counter("ray_queue_quota_reserved_workloads_total", registry)
        self._reserved_wait = _histogram(
            "ray_queue_quota_reserved_wait_time_seconds", registry, WAIT_BUCKETS_S
        )
        self._admitted = _counter("ray_queue_admitted_workloads_total", registry)
        self._admitted_wait = _histogram(
            "ray_queue_admission_wait_time_seconds", registry, WAIT_BUCKETS_S
        )
        self._evicted = _counter("ray_queue_evicted_workloads_total", registry)
        self._preempted = _counter("ray_queue_preempted_workloads_total", registry)
        self._rejected = _counter("ray_queue_rejected_workloads_total", registry)
        for result in ("success", "inadmissible"):
            self._attempts.labels(result)

    def _scrape_snapshot(self) -> MetricsSnapshot:
        """The gauges' snapshot; on the way, the counters of ClusterQueues not seen before
        are created at 0 (see ``EVICTION_REASONS``)."""
        snap = self._snapshot()
        for cq in snap.cluster_queues:
            if cq.name in self._counted:
                continue
            self._reserved.labels(cq.name)
            self._admitted.labels(cq.name)
            for reason in EVICTION_REASONS:
                self._evicted.labels(cq.name, reason)
            for reason in REJECTION_REASONS:
                self._rejected.labels(cq.name, reason)
            for reason in PREEMPTION_REASONS:
                self._preempted.labels(cq.name, reason)
            self._counted.add(cq.name)
        return snap

    def observe_cut_short(self) -> None:
        """A scheduling cycle stopped at the engine's round limit."""
        self._cut_short.inc()

    def observe_cycle(
        self,
        duration_s: float,
        decisions: Iterable[Decision],
        lookup: Callable[[WorkloadId], WorkloadStatus],
        now: float,
    ) -> None:
        """Count one scheduling cycle and everything it decided."""
        decided = list(decisions)
        admitted_any = any(d.kind in (DecisionKind.ADMIT, DecisionKind.RESERVE) for d in decided)
        result = "success" if admitted_any else "inadmissible"
        self._attempts.labels(result).inc()
        self._cycle.labels(result).observe(duration_s)
        self.observe_decisions(decided, lookup, now)

    def observe_decisions(
        self,
        decisions: Iterable[Decision],
        lookup: Callable[[WorkloadId], WorkloadStatus],
        now: float,
    ) -> None:
        """Count decisions made outside a cycle too (check results, evictions)."""
        for decision in decisions:
            status = lookup(decision.workload)
            cq = status.cluster_queue
            if decision.kind in (DecisionKind.ADMIT, DecisionKind.RESERVE):
                waited = max(0.0, now - queued_since(status))
                if decision.reason != "AdmissionChecksReady":
                    self._reserved.labels(cq).inc()
                    self._reserved_wait.labels(cq).observe(waited)
                if decision.kind is DecisionKind.ADMIT:
                    self._admitted.labels(cq).inc()
                    self._admitted_wait.labels(cq).observe(waited)
            elif decision.kind is DecisionKind.PREEMPT:
                self._evicted.labels(cq, decision.reason).inc()
                preemptor_cq = cq
                if decision.preemptor is not None:
                    preemptor_cq = lookup(decision.preemptor).cluster_queue
                reason = "InClusterQueue" if preemptor_cq == cq else "InCohortReclamation"
                self._preempted.labels(preemptor_cq, reason).inc()
            elif decision.kind is DecisionKind.EVICT:
                self._evicted.labels(cq, decision.reason).inc()
            elif decision.kind is DecisionKind.REJECT:
                self._rejected.labels(cq, decision.reason).inc()


def queued_since(status: WorkloadStatus) -> float:
    """When the workload last joined the queue: created, or requeued after an eviction."""
    for transition in reversed(status.history):
        if transition.to_state is WorkloadState.PENDING:
            return transition.at
    return status.spec.created_at


def markdown_table() -> str:
    """The metrics reference, as docs/metrics.md embeds it."""
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels)
        lines.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
