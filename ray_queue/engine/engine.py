"""The engine's front door: events in, decisions out.

``Engine`` owns every workload record, the quota tree and the pending queues. Each public
method is one event (submit, finish, cancel, check result, placement, eviction, config
change, clock tick via ``schedule``); each returns the ``Decision`` list the adapter must
carry out, in order. Nothing here touches Ray, gRPC or Kubernetes, and nothing reads a
clock, uuid or random source except the injected ``Clock``: the same event sequence
always yields the same decisions.
"""

from __future__ import annotations

from collections.abc import Iterable

from ray_queue.engine.clock import Clock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import (
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    Decision,
    GangDemand,
    PendingPosition,
    WorkloadId,
    WorkloadSpec,
    WorkloadStatus,
)


class Engine:
    """Kueue's admission model over an in-memory cache.

    Not thread-safe: the manager calls it from one asyncio loop (the "lock" of
    DESIGN §2). Every method either fully applies or raises before changing anything.
    """

    def __init__(self, config: QueueConfig, clock: Clock) -> None:
        raise NotImplementedError

    # -- events ---------------------------------------------------------------------

    def apply_config(self, config: QueueConfig) -> list[Decision]:
        """Switch to a new validated config.

        Raises ``ConfigError`` (and changes nothing) if a Queue or ClusterQueue that still
        holds pending or admitted workloads would disappear. Admitted workloads keep their
        admissions even if quotas shrink (Kueue does not preempt on quota decrease);
        parked workloads are retried. Returns evictions caused by a new HoldAndDrain.
        """
        raise NotImplementedError

    def submit(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Queue a new workload (state PENDING).

        Raises ``InvalidWorkloadError`` (malformed), ``DuplicateWorkloadError``,
        ``UnknownQueueError``, ``UnknownPriorityClassError``, or ``WorkloadRejected`` when
        no flavor of its ClusterQueue could ever hold it, even with the whole cohort
        lent to it. Admission happens in ``schedule``.
        """
        raise NotImplementedError

    def submit_many(self, specs: Iterable[WorkloadSpec]) -> list[WorkloadStatus | Exception]:
        """Submit a batch; one bad workload does not stop the others."""
        raise NotImplementedError

    def finish(self, workload: WorkloadId, *, failed: bool = False, message: str = "") -> None:
        """The admitted workload ended (FINISHED, or FAILED when ``failed``); frees quota."""
        raise NotImplementedError

    def cancel(self, workload: WorkloadId, *, reason: str = "Cancelled", message: str = "") -> bool:
        """Cancel a non-terminal workload, freeing any quota. Returns whether it held quota
        (the adapter must then tear down whatever it created). Idempotent on terminal ones
        (returns False)."""
        raise NotImplementedError

    def cancel_owner(self, owner: str, *, message: str = "") -> list[WorkloadId]:
        """Cancel every live workload of a dead driver/job; returns those that held quota."""
        raise NotImplementedError

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> list[Decision]:
        """Report an admission check's result for a QUOTA_RESERVED workload.

        All checks READY → ADMIT. RETRY → quota released, requeued with back-off (EVICT),
        or REJECT past the back-off limit. REJECTED → REJECT (terminal). Reports for
        workloads no longer waiting on that check are ignored (returns []), so a retried
        report is harmless.
        """
        raise NotImplementedError

    def mark_placed(self, workload: WorkloadId) -> None:
        """The admitted workload's bundles are on nodes (its placement group is ready);
        stops its placement timeout and removes it from autoscaler demand."""
        raise NotImplementedError

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> list[Decision]:
        """Evict a workload holding quota (e.g. capacity revoked) and requeue it with
        back-off, or reject it past the back-off limit."""
        raise NotImplementedError

    def schedule(self) -> list[Decision]:
        """Run scheduling at ``clock.now()``: release expired back-offs, enforce placement
        timeouts and HoldAndDrain, then admit (and preempt) until nothing more fits."""
        raise NotImplementedError

    @classmethod
    def restore(
        cls, config: QueueConfig, clock: Clock, records: Iterable[WorkloadStatus]
    ) -> Engine:
        """Rebuild an engine from persisted workload records (see ``codec``): quota held by
        reserved/admitted records is re-added, pending ones re-queued in order."""
        raise NotImplementedError

    # -- queries ----------------------------------------------------------------------

    @property
    def config(self) -> QueueConfig:
        raise NotImplementedError

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        """Raises ``UnknownWorkloadError``."""
        raise NotImplementedError

    def workloads(self) -> list[WorkloadStatus]:
        """Every workload the engine remembers, in submission order."""
        raise NotImplementedError

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]:
        """Pending workloads in the order they would be considered, with positions."""
        raise NotImplementedError

    def cluster_queue_status(self) -> list[ClusterQueueStatus]:
        raise NotImplementedError

    def cohort_status(self) -> list[CohortStatus]:
        raise NotImplementedError

    def demand(self) -> list[GangDemand]:
        """Workloads holding quota whose bundles are not yet placed, per flavor."""
        raise NotImplementedError

    def forget_finished(self, *, older_than: float) -> int:
        """Drop terminal workloads that ended before ``older_than``; returns how many."""
        raise NotImplementedError
