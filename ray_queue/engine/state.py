"""The engine's state, and the bookkeeping every event shares.

``EngineState`` holds every workload record, the quota tree, the pending queues and the
holders of quota, and does what every event needs done to them: move a record from one
state to the next (through ``lifecycle``'s table), grant and release quota, evict and
requeue, and answer the read-only queries. ``Engine`` (engine.py) adds the events and
the scheduling cycle on top; nothing here decides who is admitted.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter

from ray_queue.engine import handover, job_caps, lifecycle, views
from ray_queue.engine.clock import Clock
from ray_queue.engine.config import (
    ClusterQueue,
    QueueConfig,
    StopPolicy,
)
from ray_queue.engine.errors import (
    UnknownWorkloadError,
)
from ray_queue.engine.fair_share import QueueUsage, recorded_charges
from ray_queue.engine.model import (
    Admission,
    ClusterQueueStatus,
    CohortStatus,
    Decision,
    DecisionKind,
    GangDemand,
    GroupAdmission,
    JobChild,
    JobFamily,
    PendingPosition,
    Transition,
    Usage,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.engine.preemption import Holders
from ray_queue.engine.queues import ClusterQueuePending, bucket_key, order_key
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record
from ray_queue.engine.waiting import Waits

S = WorkloadState


@dataclass(frozen=True, slots=True)
class CutShort:
    """A ``schedule()`` call that hit the round limit: what it was doing when stopped."""

    rounds: int
    #: Its last decisions, oldest first: what went round.
    last_decisions: tuple[Decision, ...]


#: How a job that had children left: said in each child's cancellation message.
_ENDED = {
    S.EVICTED: "was preempted or evicted",
    S.CANCELLED: "was cancelled",
    S.FINISHED: "finished",
    S.FAILED: "failed",
    S.REJECTED: "was rejected",
}


class EngineState:
    """The records, quota and queues behind ``Engine``, and their bookkeeping."""

    def __init__(self, config: QueueConfig, clock: Clock) -> None:
        self._clock = clock
        self._config = config
        self._tree = QuotaTree(config)
        self._records: dict[WorkloadId, Record] = {}
        #: The records that are not terminal: most records are, and are only kept for
        #: status queries until ``forget_finished``.
        self._live: dict[WorkloadId, Record] = {}
        self._by_owner: dict[str, set[WorkloadId]] = {}
        self._pending: dict[str, ClusterQueuePending] = {
            name: ClusterQueuePending() for name in config.cluster_queues
        }
        self._holders = Holders(config.cluster_queues)
        self._backoff: list[tuple[float, WorkloadId]] = []
        self._placement_deadlines: list[tuple[float, int, WorkloadId]] = []
        #: ClusterQueues whose head may have changed since the last cycle.
        self._dirty: set[str] = set()
        self._queue_usage = QueueUsage()
        self._seq = 0
        #: Set when the last ``schedule()`` call hit the round limit, else ``None``.
        self.cut_short: CutShort | None = None
        #: Workloads preempted during the current ``schedule()`` call. They may be admitted
        #: again in it, but not preempt: if no victim of a call preempts later in that call,
        #: no chain of preemptions comes back to where it started (each link of a cycle
        #: would have to happen before the one that made its preemptor a victim). Kueue
        #: gets the same by requeueing victims only once they have gone.
        self._preempted_this_call: set[WorkloadId] = set()
        #: Whether the current ``schedule()`` call runs at Kueue's pace (``schedule``).
        self._kueue_pace = False
        #: Heads waiting before they preempt (``waitBeforePreemptingSeconds``).
        self._waits = Waits()
        self._leases = handover.Leases()
        #: Per ClusterQueue of the config: may it preempt while borrowing?
        self._while_borrowing: dict[str, bool] = {}
        #: A job's live children (``WorkloadSpec.parent``), by the job's id.
        self._children: dict[WorkloadId, set[WorkloadId]] = {}
        #: Children cancelled because their job ended, to hand out with the next
        #: ``schedule()`` call's decisions (the manager removes what they hold).
        self._ended_children: list[Decision] = []

    # -- bookkeeping ---------------------------------------------------------------------

    def _grant(
        self,
        record: Record,
        cq: ClusterQueue,
        node: QuotaNode,
        groups: tuple[GroupAdmission, ...],
        usage: Usage,
    ) -> None:
        """Take ``usage`` of ``cq``'s quota for a pending workload."""
        workload = record.spec.id
        self._pending[cq.name].remove(workload)
        self._tree.add_usage(node, usage)
        record.admission = Admission(cq.name, groups, usage)
        record.cluster_queue = cq.name
        self._seq += 1
        record.admitted_seq = self._seq
        self._holders.add(record)
        record.placed = False
        if cq.usage_based_fair_sharing:
            self._charge_queue(record.spec.queue, record.admission, self._clock.now())

    def _admit_decision(self, record: Record, reason: str) -> Decision:
        return Decision(
            DecisionKind.ADMIT, record.spec.id, reason, record.message, record.admission
        )

    def _start_placement_clock(self, record: Record) -> None:
        wait = self._config.settings.wait_for_placement
        if wait.enable:
            deadline = self._clock.now() + wait.timeout_s
            heapq.heappush(
                self._placement_deadlines, (deadline, record.admitted_seq, record.spec.id)
            )

    def _evict(
        self,
        record: Record,
        reason: str,
        message: str,
        *,
        backoff: bool = True,
        kind: DecisionKind = DecisionKind.EVICT,
        preemptor: WorkloadId | None = None,
    ) -> Decision:
        workload = record.spec.id
        requeuing = self._config.settings.requeuing
        if backoff:
            limit = requeuing.backoff_limit_count
            if limit is not None and record.requeue_count >= limit:
                self._release(record)
                final = f"{message}; gave up after {record.requeue_count} requeue(s)"
                self._transition(record, S.REJECTED, reason=reason, message=final)
                return Decision(DecisionKind.REJECT, workload, reason, final)
        self._release(record)
        self._transition(record, S.EVICTED, reason=reason, message=message)
        if backoff:
            record.requeue_count += 1
            delay = min(
                requeuing.backoff_base_s * 2 ** (record.requeue_count - 1), requeuing.backoff_max_s
            )
            record.requeue_at = self._clock.now() + delay
            heapq.heappush(self._backoff, (record.requeue_at, workload))
        else:
            self._transition(record, S.PENDING, message="requeued at its original position")
            self._enqueue(record)
        return Decision(kind, workload, reason, message, preemptor=preemptor)

    def _release(self, record: Record) -> None:
        admission = record.admission
        if admission is None:
            return
        node = self._tree.cluster_queues[admission.cluster_queue]
        self._tree.remove_usage(node, admission.usage)
        self._holders.discard(admission.cluster_queue, record.spec.id)
        record.admission = None
        record.checks = {}
        record.placed = False
        # Freed quota may let set-aside work in the whole cohort tree in.
        self._unblock_tree(node)
        if record.spec.parent is not None:
            # Siblings waiting at the job's cap may be in other cohort trees.
            self._unblock_siblings(record.spec.parent)

    def _unblock_siblings(self, parent: WorkloadId) -> None:
        for child in sorted(self._children.get(parent, ())):
            sibling = self._records[child]
            if sibling.state is S.PENDING and self._pending[sibling.cluster_queue].unblock_all():
                self._dirty.add(sibling.cluster_queue)

    def _end_children(self, parent: Record, how: str) -> None:
        """Cancel ``parent``'s live children: work a job made ends with the job."""
        children = self._children.pop(parent.spec.id, set())
        for child in sorted(children):
            record = self._records[child]
            if record.state.is_terminal:
                continue
            if record.state.holds_quota:
                self._release(record)
            elif record.state is S.PENDING:
                self._pending[record.cluster_queue].remove(child)
                self._dirty.add(record.cluster_queue)
            message = f"its job {parent.spec.id} {how}"
            self._transition(record, S.CANCELLED, reason="JobEnded", message=message)
            self._ended_children.append(Decision(DecisionKind.CANCEL, child, "JobEnded", message))

    def _take_ended_children(self) -> list[Decision]:
        ended, self._ended_children = self._ended_children, []
        return ended

    def _still_pending(self, workload: WorkloadId) -> bool:
        record = self._records.get(workload)
        return record is not None and record.state is S.PENDING

    def _unblock_tree(self, node: QuotaNode) -> None:
        for cq_node in self._tree.same_tree(node):
            if self._pending[cq_node.name].unblock_all():
                self._dirty.add(cq_node.name)

    def _enqueue(self, record: Record) -> None:
        spec = record.spec
        bucket = bucket_key(spec, record.priority, record.lease_key)
        key = order_key(record.priority, spec.created_at, spec.id)
        self._pending[record.cluster_queue].push(spec.id, bucket, key, spec.owner)
        self._dirty.add(record.cluster_queue)

    def _transition(
        self, record: Record, to: WorkloadState, *, reason: str | None = None, message: str = ""
    ) -> None:
        default_reason, default_message = lifecycle.check(record.state, to)
        now = self._clock.now()
        reason = reason or default_reason
        message = message or default_message
        granted = record.admission if record.state is S.PENDING and to.holds_quota else None
        record.history.append(Transition(now, record.state, to, reason, message, granted))
        if record.spec.kind is WorkloadKind.TASK:
            if to is S.ADMITTED:
                self._leases.add(record)
            elif record.state is S.ADMITTED:
                self._leases.drop(record)
        record.state = to
        record.reason = reason
        record.message = message
        if to.is_terminal:
            record.ended_at = now
            self._live.pop(record.spec.id, None)
            owned = self._by_owner.get(record.spec.owner)
            if owned is not None:
                owned.discard(record.spec.id)
                if not owned:
                    del self._by_owner[record.spec.owner]
            siblings = self._children.get(record.spec.parent) if record.spec.parent else None
            if siblings is not None:
                siblings.discard(record.spec.id)
        if (to.is_terminal or to is S.EVICTED) and record.spec.id in self._children:
            self._end_children(record, _ENDED[to])

    def _queue_held(self, queue: str) -> bool:
        q = self._config.queues.get(queue)
        return q is None or q.stop_policy is not StopPolicy.NONE

    def _queue_score(self, queue: str) -> float:
        half_life = self._config.settings.admission_fair_sharing.usage_half_life_s
        now = self._clock.now()
        weight = self._config.queues[queue].fair_sharing_weight
        return self._queue_usage.score(queue, now, half_life, weight)

    def _charge_queue(self, queue: str, admission: Admission, at: float) -> None:
        node = self._tree.cluster_queues.get(admission.cluster_queue)
        if node is None:
            return
        half_life = self._config.settings.admission_fair_sharing.usage_half_life_s
        self._queue_usage.charge(queue, admission.usage, node.nominal, at, half_life)

    def _get(self, workload: WorkloadId) -> Record:
        record = self._records.get(workload)
        if record is None:
            raise UnknownWorkloadError(f"no workload with id {workload!r}")
        return record

    def _status(self, record: Record) -> WorkloadStatus:
        blocked = None
        if record.state is S.PENDING:
            blocked = self._pending[record.cluster_queue].blocked_reason_for(record.spec.id)
        return views.status(record, blocked)

    # -- restore: re-adding persisted records ----------------------------------------------

    def _rebuild_queue_usage(self, statuses: list[WorkloadStatus]) -> None:
        """Replay every recorded admission of usage-fair-shared queues, oldest first."""
        fair_shared = {
            name for name, cq in self._config.cluster_queues.items() if cq.usage_based_fair_sharing
        }
        if not fair_shared:
            return  # nothing to replay: not worth a pass over every history
        for at, queue, admission in recorded_charges(statuses, fair_shared):
            self._charge_queue(queue, admission, at)

    def _adopt(self, record: Record) -> None:
        workload = record.spec.id
        self._records[workload] = record
        if record.state.is_terminal:
            return
        self._live[workload] = record
        if record.spec.owner:
            self._by_owner.setdefault(record.spec.owner, set()).add(workload)
        if record.spec.parent is not None:
            self._children.setdefault(record.spec.parent, set()).add(workload)
        if record.state.holds_quota and record.admission is not None:
            cq = record.admission.cluster_queue
            self._tree.add_usage(self._tree.cluster_queues[cq], record.admission.usage)
            self._holders.add(record)
            if record.state is S.ADMITTED and not record.placed:
                self._start_placement_clock(record)
            if record.state is S.ADMITTED and record.spec.kind is WorkloadKind.TASK:
                self._leases.add(record)
        elif record.state is S.PENDING:
            self._enqueue(record)
        elif record.state is S.EVICTED and record.requeue_at is not None:
            heapq.heappush(self._backoff, (record.requeue_at, workload))

    # -- queries ---------------------------------------------------------------------------

    @property
    def config(self) -> QueueConfig:
        return self._config

    @property
    def tree(self) -> QuotaTree:
        """The live quota tree (read-only by convention; for status and invariant checks)."""
        return self._tree

    def knows(self, workload: WorkloadId) -> bool:
        return workload in self._records

    def state(self, workload: WorkloadId) -> WorkloadState:
        """The workload's state alone (cheaper than ``workload``); raises
        ``UnknownWorkloadError``."""
        return self._get(workload).state

    def awaits_placement(self, workload: WorkloadId) -> bool:
        """Admitted but not yet known to be on nodes (cheaper than ``workload``)."""
        record = self._records.get(workload)
        return record is not None and record.state is S.ADMITTED and not record.placed

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        """Raises ``UnknownWorkloadError``."""
        return self._status(self._get(workload))

    def workloads(self) -> list[WorkloadStatus]:
        """Every workload the engine remembers, in submission order."""
        return [self._status(r) for r in self._records.values()]

    def state_counts(self) -> dict[str, int]:
        """How many remembered workloads are in each state (by the state's value). Counts
        records alone: building every status, as ``workloads`` does, took a second at
        100,000 pending, and ``status()`` asks this on every call."""
        counts = Counter(map(attrgetter("state"), self._records.values()))
        return {state.value: n for state, n in counts.items()}

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]:
        """Pending workloads in the order they would be considered, with positions."""
        names = [cluster_queue] if cluster_queue is not None else sorted(self._pending)
        return views.pending_positions(
            self._config, self._pending, self._records, names, queue, self._queue_score
        )

    def job_families(self) -> list[JobFamily]:
        """Live jobs that have a cap or live children, with those children (``status()``)."""
        out = []
        # Filtered before sorting: this runs for every metrics scrape, over every live
        # workload (100,000 pending at issue 23's scale), of which few are jobs.
        jobs = [
            r
            for r in self._live.values()
            if r.spec.kind is WorkloadKind.JOB
            and (r.spec.max_resources is not None or self._children.get(r.spec.id))
        ]
        for record in sorted(jobs, key=lambda r: r.spec.id):
            spec = record.spec
            kids = [self._records[c] for c in sorted(self._children.get(spec.id, ()))]
            kids.sort(key=lambda r: (r.spec.created_at, r.spec.id))
            # A set-aside child's reason (the cap, say) is its queue's, not its record's.
            children = tuple(
                JobChild(k.spec.id, k.spec.kind, k.state, k.spec.total_request(), message)
                for k in kids
                for message in [self._status(k).message]
            )
            holding = job_caps.held(record, kids)
            out.append(
                JobFamily(spec.id, spec.queue, record.state, spec.max_resources, holding, children)
            )
        return out

    def cluster_queue_status(self) -> list[ClusterQueueStatus]:
        return views.cluster_queue_status(self._config, self._tree, self._live.values())

    def pending_counts(self) -> dict[str, tuple[dict[str, int], int]]:
        """Per ClusterQueue: pending workloads per Queue, and how many are set aside.
        Cheap (no ordering), for metrics scraped every few seconds."""
        return {name: pending.counts() for name, pending in self._pending.items()}

    def cohort_status(self) -> list[CohortStatus]:
        return views.cohort_status(self._config, self._tree)

    def demand(self) -> list[GangDemand]:
        """Workloads holding quota whose bundles are not yet placed, per flavor."""
        holders = (self._records[w] for w in self._holders.workloads())
        return views.demand(self._config, holders)

    def forget_finished(self, *, older_than: float) -> list[WorkloadId]:
        """Drop terminal workloads that ended before ``older_than``; returns them."""
        old = [
            w
            for w, r in self._records.items()
            if r.state.is_terminal and r.ended_at is not None and r.ended_at < older_than
        ]
        for workload in old:
            del self._records[workload]
        return old
