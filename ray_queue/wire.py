"""The manager's request, result and event values, and the ``RayActions`` seam.

The values cross the Ray actor boundary (pickled) and the gRPC boundary (converted in
``grpc/convert.py``), so they are plain frozen dataclasses of engine values and builtins.
They live below every layer that passes them (the Ray adapter, the manager, gRPC, the
client, the CLI: see the layer map in docs/design.md), so none of those imports another
for its types. ``RayActions`` is the manager's side of the Ray adapter, described in these
values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import (
    BundleGroup,
    ClusterQueueStatus,
    CohortStatus,
    DecisionKind,
    JobFamily,
    LeaseKey,
    PlacementStrategy,
    ResourceStatus,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
    lease_key,
)
from ray_queue.engine.quantity import human_amount

#: The variables that turn capture on in a process and say where its work goes
#: (``capture/settings.py`` reads them). The manager sets them for each job it submits,
#: so what the job's driver and its Ray workers make are children of the job.
CAPTURE_ENV = "RAY_QUEUE_CAPTURE"
CAPTURE_QUEUE_ENV = "RAY_QUEUE_QUEUE"
CAPTURE_PRIORITY_ENV = "RAY_QUEUE_PRIORITY"
CAPTURE_PARENT_ENV = "RAY_QUEUE_PARENT"


def job_capture_env(queue: str, job: WorkloadId) -> dict[str, str]:
    """Capture's variables for the run of ``job``, queued in ``queue``. No priority: a
    child runs at its job's priority unless it names its own."""
    return {CAPTURE_ENV: "1", CAPTURE_QUEUE_ENV: queue, CAPTURE_PARENT_ENV: job}


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """One workload as a client asks for it; the manager stamps its creation time."""

    id: WorkloadId
    queue: str
    bundle_groups: tuple[BundleGroup, ...]
    kind: WorkloadKind = WorkloadKind.PLACEMENT_GROUP
    strategy: PlacementStrategy = PlacementStrategy.PACK
    priority_class: str | None = None
    owner: str = ""
    name: str = ""
    min_count: int | None = None
    #: The job this workload belongs to (``WorkloadSpec.parent``).
    parent: WorkloadId | None = None
    #: A job's cap on what it and its children hold at once, milli-units per resource.
    max_resources: Mapping[str, int] | None = None
    #: Adapter data the engine does not model: ``bundle_label_selector`` (one dict per
    #: bundle), and for jobs ``entrypoint``, ``runtime_env``, ``metadata``,
    #: ``entrypoint_resources`` (Ray units). JSON-compatible.
    payload: Mapping[str, Any] = field(default_factory=dict)

    def lease_key(self) -> LeaseKey:
        return lease_key(self.owner, self.queue, self.priority_class, self.bundle_groups)

    def to_spec(self, created_at: float) -> WorkloadSpec:
        return WorkloadSpec(
            id=self.id,
            queue=self.queue,
            bundle_groups=self.bundle_groups,
            created_at=created_at,
            kind=self.kind,
            strategy=self.strategy,
            priority_class=self.priority_class,
            owner=self.owner,
            min_count=self.min_count,
            name=self.name,
            parent=self.parent,
            max_resources=dict(self.max_resources) if self.max_resources is not None else None,
        )


def slot_eligible(bundle_groups: Sequence[BundleGroup], payload: Mapping[str, Any]) -> bool:
    """Whether a task may run in a slot (``client/slots.py``) once admitted with a
    backlog: it asks for some resource (a placement group bundle cannot be empty) and
    its owner did not rule slots out (``payload["slot"] is False``). The one rule the
    manager and the driver both apply."""
    if payload.get("slot", True) is False:
        return False
    return any(amount > 0 for group in bundle_groups for amount in group.resources.values())


@dataclass(frozen=True, slots=True)
class SubmitResult:
    workload: WorkloadId
    #: The whole status after the batch's cycle (``None`` if refused, or when a brief
    #: answer was asked for: then only ``state``).
    status: WorkloadStatus | None = None
    #: Why the workload was refused; nothing was queued for it.
    error: RayQueueError | None = None
    state: WorkloadState | None = None


class EventKind(StrEnum):
    """What a ``ClientEvent`` tells its owner: an engine decision, or one of the manager's
    own news. A ``str`` enum, so it pickles and compares as the strings it replaced."""

    #: Quota reserved; it waits for its admission checks (nothing to launch yet).
    RESERVE = "reserve"
    #: Admitted: launch the task, create the actor, use the placement group.
    ADMIT = "admit"
    #: Evicted to make room for other work, and queued again.
    PREEMPT = "preempt"
    #: Evicted for another reason (check retry, placement timeout, drain), queued again.
    EVICT = "evict"
    #: Will never be admitted.
    REJECT = "reject"
    #: Cancelled because the job it belongs to ended.
    CANCEL = "cancel"
    #: Where it stands now, when no decision made the change (ended, resynced).
    STATE = "state"
    #: An owner's lease on one kind of task opened or closed (``ClientEvent.lease_key``).
    LEASE = "lease"
    #: A hand-over the owner reported was refused: stop and wait for an own admission.
    HANDOVER_REFUSED = "handover_refused"

    @classmethod
    def of(cls, decision: DecisionKind) -> EventKind:
        """The event that tells an owner of the engine's ``decision``."""
        return cls(decision.value)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Something a workload's owner must react to (launch, cancel, give up)."""

    seq: int
    workload: WorkloadId
    kind: WorkloadKind
    state: WorkloadState
    #: The engine decision behind the event, or the manager's own news.
    decision: EventKind
    reason: str
    message: str
    #: Node labels of the admitted flavor(s): where a task or actor must run.
    label_selector: Mapping[str, str] = field(default_factory=dict)
    #: Hex id of the placement group the manager created (placement groups, actors, a
    #: task's slot).
    placement_group_id: str | None = None
    #: The bundles admitted, in Ray units (partial admission may give fewer).
    bundles: tuple[Mapping[str, float], ...] = ()
    #: ``decision is EventKind.LEASE``: whether this owner's tasks with this lease key may hand
    #: their quota to the next identical task when they finish (``report(handovers=…)``).
    lease_key: LeaseKey | None = None
    lease_open: bool = False


@dataclass(frozen=True, slots=True)
class HandOver:
    """A task that returned, and the identical pending task its owner started in its
    place (``report(handovers=…)``)."""

    done: WorkloadId
    successor: WorkloadId
    #: Hex id of the slot (placement group) the successor runs in, ``None`` if it was
    #: launched without one. Refused unless it is the one the manager gave ``done``:
    #: the client and the manager must agree on where the quota is enforced.
    slot: str | None = None


@dataclass(frozen=True, slots=True)
class EventBatch:
    #: Changes whenever the manager restarts; a client seeing a new epoch resyncs.
    epoch: str
    #: The highest seq included; pass it back as ``after_seq``.
    seq: int
    events: tuple[ClientEvent, ...]
    #: True when the events are a full snapshot of the owner's workloads (new epoch or
    #: events dropped), not a delta.
    resync: bool = False


@dataclass(frozen=True, slots=True)
class NodeShape:
    """One alive Ray node as the manager sees it (resources in milli-units)."""

    node_id: str
    labels: Mapping[str, str]
    resources: Mapping[str, int]
    is_head: bool = False
    #: Free room as Ray reports it (``None``: not read), milli-units.
    available: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class WorkerGroupShape:
    """What one node of an autoscaled worker group offers (milli-units), as the
    autoscaler reads it from the group's spec."""

    name: str
    resources: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class UnmanagedUsage:
    """Resources in use on a flavor's nodes that no admission accounts for."""

    flavor: str
    resource: str
    #: Milli-units.
    amount: int
    #: Whose it is, where Ray says so: (Ray job id, milli-units that job holds here in
    #: placement groups and actors), largest first. Plain tasks are not attributed, so
    #: the amounts may sum to less than ``amount`` (``ray_adapter/ray_holdings.py``).
    by_job: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RayJobHolding:
    """What one Ray job holds on one node outside ray-queue's own groups (milli-units)."""

    job_id: str
    node_id: str
    resources: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ManagerStatus:
    cluster_queues: tuple[ClusterQueueStatus, ...]
    cohorts: tuple[CohortStatus, ...]
    #: Workloads per state, over every workload the manager remembers.
    states: Mapping[str, int]
    #: Preemptions carried out since the manager (re)started.
    preemptions: int
    admissions: int
    epoch: str
    #: Resources in use in Ray that no admission accounts for (``manager/unmanaged.py``).
    unmanaged: tuple[UnmanagedUsage, ...] = ()
    #: Live jobs with a cap or children: what each holds against its cap, and the
    #: children its run made (docs/capture.md, "Jobs own their work").
    jobs: tuple[JobFamily, ...] = ()

    def __str__(self) -> str:
        """For people (``print(ray_queue.status())``): Ray's units, one line per quota.
        The fields keep milli-units, as JSON and gRPC do."""
        lines = [
            f"workloads: {', '.join(f'{k} {v}' for k, v in sorted(self.states.items())) or 'none'}"
            f"; admissions {self.admissions}, preemptions {self.preemptions}"
        ]
        for cq in self.cluster_queues:
            cohort = f" (cohort {cq.cohort})" if cq.cohort else ""
            lines.append(
                f"ClusterQueue {cq.name}{cohort}: {cq.pending} pending, {cq.admitted} admitted"
            )
            lines += [f"  {_quota_line(r)}" for r in cq.resources]
        for co in self.cohorts:
            parent = f" (in {co.parent})" if co.parent else ""
            lines.append(f"Cohort {co.name}{parent}")
            lines += [f"  {_quota_line(r)}" for r in co.resources]
        lines += [_job_line(job) for job in self.jobs]
        for u in self.unmanaged:
            whose = ", ".join(
                f"Ray job {job} {human_amount(u.resource, amount)}" for job, amount in u.by_job
            )
            lines.append(
                f"Unmanaged: {human_amount(u.resource, u.amount)} {u.resource} in use on flavor "
                f"{u.flavor} outside the queue" + (f" ({whose})" if whose else "")
            )
        return "\n".join(lines)


def _job_line(job: JobFamily) -> str:
    def amounts(values: Mapping[str, int]) -> str:
        return ", ".join(f"{r} {human_amount(r, v)}" for r, v in sorted(values.items()))

    cap = f" of max {amounts(job.max_resources)}" if job.max_resources else ""
    kids = "; ".join(f"{c.workload} {c.state.value} ({amounts(c.request)})" for c in job.children)
    return (
        f"Job {job.job} in {job.queue} ({job.state.value}): holds "
        f"{amounts(job.holding) or 'nothing'}{cap}; {len(job.children)} children"
        + (f": {kids}" if kids else "")
    )


def _quota_line(r: ResourceStatus) -> str:
    def amount(milli: int) -> str:
        return human_amount(r.resource, milli)

    borrowed = f", {amount(r.borrowed)} borrowed" if r.borrowed else ""
    return f"{r.resource} in {r.flavor}: {amount(r.usage)} of {amount(r.nominal)} used{borrowed}"


class Unplaced(StrEnum):
    """Why an admitted workload is not placed yet (``manager/capacity.py``): the
    ``reason`` label of ``ray_queue_unplaced_workloads``."""

    #: No alive node carries the flavor's labels (and no worker group will add one).
    NO_NODE = "no_node"
    #: A bundle is larger than every alive node of the flavor.
    BUNDLE_TOO_LARGE = "bundle_too_large"
    #: The flavor is autoscaled and the nodes it needs are not there yet.
    AWAITING_AUTOSCALER = "awaiting_autoscaler"
    #: Nodes that could hold it exist, but their room is taken.
    NODES_BUSY = "nodes_busy"
    #: A job's Ray job has been submitted and is not running yet.
    JOB_NOT_RUNNING = "job_not_running"


@dataclass(frozen=True, slots=True)
class Catalog:
    """The names a caller may use: its Queues (all, for admin) and every priority class."""

    queues: frozenset[str]
    priority_classes: frozenset[str]
    #: Only the caller's own Queues are listed (a tenant), not every one.
    restricted: bool = False
    #: Where the caller's workload ids live (``access/namespaces.py``); ``None``: anywhere.
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class JobRun:
    """A Ray job the manager submitted for an admitted JOB workload."""

    workload: WorkloadId
    submission_id: str


#: A namespaced id's '/' as spelled in a Ray submission id, which names a log file and
#: a URL path segment; '~' is in no workload id, so the spelling reads back.
_SUBMISSION_SEPARATOR = "~"


def job_runs(status: WorkloadStatus) -> int:
    """How many times a JOB workload was admitted: each admission is a new Ray job run,
    since a stopped Ray job cannot be restarted under the same id."""
    return sum(1 for t in status.history if t.to_state is WorkloadState.ADMITTED)


def job_submission_id(workload: WorkloadId, run: int) -> str:
    """The Ray submission id of a job's ``run``-th run: ``rq-<workload>-<run>``.
    Deterministic, so a restarted manager finds the job it submitted."""
    return f"rq-{workload.replace('/', _SUBMISSION_SEPARATOR)}-{run}"


def job_of_submission(submission_id: str) -> WorkloadId:
    """The workload whose run ``job_submission_id`` named (for any string: a caller may
    pass anything; what it names need not exist)."""
    body = submission_id.removeprefix("rq-").rpartition("-")[0]
    return WorkloadId(body.replace(_SUBMISSION_SEPARATOR, "/"))


class RayActions(Protocol):
    """What the manager does to Ray. Implemented by ``ray_adapter``; faked in unit tests.

    Contract: every method is idempotent (creating what exists or removing what is gone
    is a no-op), so recovery may replay them. Called from the manager's single thread.
    """

    def create_placement_group(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> str:
        """Create (or find) the workload's placement group; return its hex id."""
        ...

    def remove_placement_group(self, workload: WorkloadId) -> None: ...

    def move_placement_group(self, workload: WorkloadId, to: WorkloadId) -> None:
        """The group made for ``workload`` now belongs to ``to`` (a task that took its
        quota over): later calls name ``to``. ``placement_groups`` still reports it under
        the workload it was created for."""
        ...

    def placement_groups(self) -> Mapping[WorkloadId, str]:
        """Every live placement group this manager created, by workload (for re-adoption)."""
        ...

    def removed_placement_groups(self, pg_ids: Sequence[str]) -> set[str]:
        """Those of ``pg_ids`` Ray no longer has (a read, no side effects: to notice groups
        removed behind the manager's back). Costs a lookup per id, not a table read."""
        ...

    def submit_job(
        self,
        run: JobRun,
        payload: Mapping[str, Any],
        label_selector: Mapping[str, str],
    ) -> None: ...

    def stop_job(self, submission_id: str) -> None: ...

    def jobs(self) -> Mapping[str, str]:
        """Status (Ray's JobStatus name) of every job this manager submitted, by submission id."""
        ...

    def job_submission_failures(self) -> Mapping[str, str]:
        """Submissions that failed since the last call (submission id → error), for an
        adapter that submits in the background (``submit_job`` then returns at once)."""
        ...
