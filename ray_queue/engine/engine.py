"""The engine's front door: events in, decisions out.

``Engine`` owns every workload record, the quota tree and the pending queues. Each public
method is one event (submit, finish, cancel, check result, placement, eviction, config
change, clock tick via ``schedule``); each returns the ``Decision`` list the adapter must
carry out, in order. Nothing here touches Ray, gRPC or Kubernetes, and nothing reads a
clock, uuid or random source except the injected ``Clock``: the same event sequence
always yields the same decisions.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from ray_queue.engine import lifecycle, views
from ray_queue.engine.clock import Clock
from ray_queue.engine.config import (
    BorrowWithinCohortPolicy,
    ClusterQueue,
    QueueConfig,
    QueueingStrategy,
    ReclaimWithinCohort,
    StopPolicy,
)
from ray_queue.engine.errors import (
    ConfigError,
    ConfigProblem,
    DuplicateWorkloadError,
    InvalidTransitionError,
    InvalidWorkloadError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)
from ray_queue.engine.fair_share import admission_penalty, decay, dominant_resource_share
from ray_queue.engine.flavor_assignment import Assignment, Mode, assign_flavors
from ray_queue.engine.model import (
    Admission,
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    Decision,
    DecisionKind,
    FlavorResource,
    GangDemand,
    GroupAdmission,
    LeaseKey,
    PendingPosition,
    Transition,
    Usage,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
    shape_of,
)
from ray_queue.engine.preemption import (
    Candidate,
    Preemptor,
    classical_victims,
    fair_victims,
    reclaim_allows,
    under_nominal,
    within_cluster_queue_allows,
)
from ray_queue.engine.queues import BucketKey, ClusterQueuePending, order_key
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record

S = WorkloadState


@dataclass(slots=True)
class _Entry:
    """A head being considered in one scheduling round."""

    record: Record
    cq: ClusterQueue
    node: QuotaNode
    assignment: Assignment


class Engine:
    """Kueue's admission model over an in-memory cache.

    Not thread-safe: the manager calls it from one asyncio loop (the "lock" of
    DESIGN §2). Every method either fully applies or raises before changing anything.
    """

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
        #: Per ClusterQueue, the workloads holding its quota, as ready-made victim candidates.
        self._holding: dict[str, dict[WorkloadId, Candidate]] = {
            n: {} for n in config.cluster_queues
        }
        self._backoff: list[tuple[float, WorkloadId]] = []
        self._placement_deadlines: list[tuple[float, int, WorkloadId]] = []
        #: ClusterQueues whose head may have changed since the last cycle.
        self._dirty: set[str] = set()
        #: Queue → (decayed usage score, when it was last updated).
        self._queue_usage: dict[str, tuple[float, float]] = {}
        self._seq = 0
        self._borrowed_memo: dict[
            tuple[QuotaNode, frozenset[FlavorResource]], tuple[int, list[Candidate]]
        ] = {}
        #: Admitted tasks by lease key (insertion-ordered, so a replay picks the same one).
        self._leases: dict[LeaseKey, dict[WorkloadId, None]] = {}

    # -- events ---------------------------------------------------------------------

    def apply_config(self, config: QueueConfig) -> list[Decision]:
        """Switch to a new validated config.

        Raises ``ConfigError`` (and changes nothing) if a Queue, ClusterQueue or
        PriorityClass that live workloads still use would disappear. Admitted workloads
        keep their admissions even if quotas shrink (Kueue does not preempt on quota
        decrease); set-aside workloads are retried. Returns evictions caused by a new
        HoldAndDrain.
        """
        self._check_config_keeps_live_workloads(config)
        self._config = config
        self._tree = QuotaTree(config)
        self._borrowed_memo.clear()
        self._pending = {name: ClusterQueuePending() for name in config.cluster_queues}
        holding: dict[str, dict[WorkloadId, Candidate]] = {n: {} for n in config.cluster_queues}
        live = sorted(self._live.values(), key=lambda r: (r.admitted_seq, r.spec.id))
        for record in live:
            record.priority = self._priority(record.spec.priority_class)
            if record.state.holds_quota and record.admission is not None:
                cq = record.admission.cluster_queue
                self._tree.add_usage(self._tree.cluster_queues[cq], record.admission.usage)
                holding[cq][record.spec.id] = _candidate(record)
            elif record.state is S.PENDING:
                record.cluster_queue = config.queues[record.spec.queue].cluster_queue
                self._enqueue(record)
            elif record.state is S.EVICTED:
                record.cluster_queue = config.queues[record.spec.queue].cluster_queue
        self._holding = holding
        self._dirty = set(config.cluster_queues)
        return self._drain_stopped()

    def submit(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Queue a new workload (state PENDING).

        Raises ``InvalidWorkloadError`` (malformed), ``DuplicateWorkloadError``,
        ``UnknownQueueError``, ``UnknownPriorityClassError``, or ``WorkloadRejected`` when
        no flavor of its ClusterQueue could ever hold it, even with the whole cohort
        lent to it. Admission happens in ``schedule``.
        """
        _validate_spec(spec)
        if spec.id in self._records:
            raise DuplicateWorkloadError(f"workload {spec.id!r} was already submitted")
        queue = self._config.queues.get(spec.queue)
        if queue is None:
            known = ", ".join(sorted(self._config.queues)) or "none"
            raise UnknownQueueError(
                f"queue {spec.queue!r} does not exist (known queues: {known}); "
                "submit to one of those or apply a config that defines it"
            )
        priority = self._priority(spec.priority_class)
        cq = self._config.cluster_queues[queue.cluster_queue]
        node = self._tree.cluster_queues[cq.name]
        ever = assign_flavors(spec, cq, node, self._tree, first_group_count=spec.min_count)
        if ever.mode is Mode.NO_FIT:
            raise WorkloadRejected(
                f"workload {spec.id!r} can never be admitted to ClusterQueue {cq.name}: "
                f"{ever.reason}. Ask for less, or raise the quota."
            )
        record = Record(spec=spec, priority=priority, cluster_queue=cq.name)
        record.message = f"waiting for its turn in queue {spec.queue}"
        record.history.append(
            Transition(self._clock.now(), S.PENDING, S.PENDING, "Created", record.message)
        )
        self._records[spec.id] = record
        self._live[spec.id] = record
        if spec.owner:
            self._by_owner.setdefault(spec.owner, set()).add(spec.id)
        self._enqueue(record)
        return self._status(record)

    def submit_many(self, specs: Iterable[WorkloadSpec]) -> list[WorkloadStatus | Exception]:
        """Submit a batch; one bad workload does not stop the others."""
        results: list[WorkloadStatus | Exception] = []
        for spec in specs:
            try:
                results.append(self.submit(spec))
            except (
                InvalidWorkloadError,
                DuplicateWorkloadError,
                LookupError,
                WorkloadRejected,
            ) as e:
                results.append(e)
        return results

    def finish(self, workload: WorkloadId, *, failed: bool = False, message: str = "") -> None:
        """The admitted workload ended (FINISHED, or FAILED when ``failed``); frees quota."""
        record = self._get(workload)
        if record.state is not S.ADMITTED:
            raise InvalidTransitionError(
                f"workload {workload!r} is {record.state.value}; only an admitted one can finish"
            )
        self._release(record)
        self._transition(record, S.FAILED if failed else S.FINISHED, message=message)

    def cancel(self, workload: WorkloadId, *, reason: str = "Cancelled", message: str = "") -> bool:
        """Cancel a non-terminal workload, freeing any quota. Returns whether it held quota
        (the adapter must then tear down whatever it created). Idempotent on terminal ones
        (returns False)."""
        record = self._get(workload)
        if record.state.is_terminal:
            return False
        held = record.state.holds_quota
        if held:
            self._release(record)
        elif record.state is S.PENDING:
            self._pending[record.cluster_queue].remove(workload)
        self._transition(record, S.CANCELLED, reason=reason, message=message)
        return held

    def cancel_owner(self, owner: str, *, message: str = "") -> list[WorkloadId]:
        """Cancel every live workload of a dead driver/job; returns those that held quota."""
        held = []
        for workload in sorted(self._by_owner.get(owner, ())):
            if self.cancel(workload, reason="OwnerDied", message=message or f"{owner} died"):
                held.append(workload)
        return held

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> list[Decision]:
        """Report an admission check's result for a QUOTA_RESERVED workload.

        All checks READY → ADMIT. RETRY → quota released, requeued with back-off (EVICT),
        or REJECT past the back-off limit. REJECTED → REJECT (terminal). Reports for
        workloads no longer waiting on that check are ignored (returns []), so a retried
        report is harmless.
        """
        record = self._get(workload)
        if record.state is not S.QUOTA_RESERVED or check not in record.checks:
            return []
        if state is CheckState.REJECTED:
            self._release(record)
            reason = f"admission check {check} rejected the workload"
            self._transition(record, S.REJECTED, reason="AdmissionCheckRejected", message=message)
            return [
                Decision(DecisionKind.REJECT, workload, "AdmissionCheckRejected", message or reason)
            ]
        if state is CheckState.RETRY:
            return [
                self._evict(record, "AdmissionCheckRetry", message or f"{check} asked to retry")
            ]
        record.checks[check] = state
        if any(s is not CheckState.READY for s in record.checks.values()):
            return []
        self._transition(record, S.ADMITTED, message="all admission checks are Ready")
        self._start_placement_clock(record)
        return [self._admit_decision(record, "AdmissionChecksReady")]

    def mark_placed(self, workload: WorkloadId) -> bool:
        """The admitted workload's bundles are on nodes (its placement group is ready);
        stops its placement timeout and removes it from autoscaler demand. Returns False
        if it is no longer admitted (a placement racing an eviction is not an error)."""
        record = self._get(workload)
        if record.state is not S.ADMITTED:
            return False
        record.placed = True
        return True

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> list[Decision]:
        """Evict a workload holding quota (e.g. capacity revoked) and requeue it with
        back-off, or reject it past the back-off limit."""
        record = self._get(workload)
        if not record.state.holds_quota:
            raise InvalidTransitionError(
                f"workload {workload!r} is {record.state.value}; only one holding quota can be "
                "evicted"
            )
        return [self._evict(record, reason, message)]

    def schedule(self) -> list[Decision]:
        """Run scheduling at ``clock.now()``.

        0. release expired back-offs and evict work that missed its placement deadline;
        then, in rounds until a round admits nothing:
        1. heads: the next eligible workload of each ClusterQueue that changed;
        2. flavor assignment for each head;
        3. order heads (fair share, or non-borrowing first; then priority, age);
        4. admit what fits; preempt for what fits only by preempting;
        5. set aside what cannot be admitted (BestEffortFIFO) or block (StrictFIFO).
        """
        now = self._clock.now()
        decisions: list[Decision] = []
        self._release_backoffs(now)
        decisions.extend(self._enforce_placement_deadlines(now))
        changed, self._dirty = self._dirty, set()
        while changed:
            changed = self._round(changed, decisions)
            changed |= self._dirty
            self._dirty = set()
        return decisions

    # -- hand-over: a finished task's quota goes straight to its owner's next one ----------

    def lease_states(self) -> dict[LeaseKey, bool]:
        """For each (owner, queue, priority class, shape) with admitted tasks: whether one
        of them that finishes may hand its quota to a pending sibling (``hand_over``).

        A hint for clients, so they only try hand-overs that would be accepted now.
        """
        memo: dict[QuotaNode, set[tuple[BucketKey, str]]] = {}
        return {
            key: self._lease_refusal(self._records[next(iter(holders))], memo) is None
            for key, holders in self._leases.items()
        }

    def has_backlog(self, workload: WorkloadId) -> bool:
        """Whether an admitted task may hand its quota over now and its owner has identical
        tasks pending to take it: they can then run back to back in its place."""
        record = self._records.get(workload)
        if record is None or record.state is not S.ADMITTED:
            return False
        if record.spec.kind is not WorkloadKind.TASK:
            return False
        assert record.admission is not None
        own = (record.spec.queue, record.priority, _shape(record.spec))
        pending = self._pending.get(record.admission.cluster_queue)
        if pending is None or not pending.has(own, record.spec.owner):
            return False
        return self._lease_refusal(record, {}) is None

    def handover_refusal(self, finished: WorkloadId, successor: WorkloadId) -> str | None:
        """Why ``hand_over(finished, successor)`` would be refused now, or ``None``."""
        done, nxt = self._records.get(finished), self._records.get(successor)
        if done is None or nxt is None:
            return f"{finished if done is None else successor} is not a known workload"
        if done.state is not S.ADMITTED:
            return f"{finished} is {done.state.value}, not admitted"
        if nxt.state is not S.PENDING:
            return f"{successor} is {nxt.state.value}, not pending"
        if done.spec.kind is not WorkloadKind.TASK or nxt.spec.kind is not WorkloadKind.TASK:
            return "only tasks hand their quota over"
        if done.lease_key != nxt.lease_key or nxt.spec.min_count is not None:
            return "they differ in owner, queue, priority class or resources"
        assert done.admission is not None
        if nxt.cluster_queue != done.admission.cluster_queue:
            return f"{successor} waits in another ClusterQueue ({nxt.cluster_queue})"
        return self._lease_refusal(done, {})

    def hand_over(self, finished: WorkloadId, successor: WorkloadId) -> Decision:
        """``finished`` (an admitted task) ended and its owner already started ``successor``
        (a pending task of the same owner, queue, priority class and resources) in its
        place: ``finished`` becomes FINISHED and ``successor`` ADMITTED with the same
        admission, without a scheduling cycle.

        Accepted only when that is what the next cycle would do anyway (see
        ``handover_refusal``), so quota, cohorts and fairness see exactly what a cycle
        would have done; among one owner's identical tasks, the owner picks the order.
        Raises ``InvalidTransitionError`` if refused (nothing changes).
        """
        outcome = self.try_hand_over(finished, successor)
        if isinstance(outcome, str):
            raise InvalidTransitionError(f"cannot hand {finished} over to {successor}: {outcome}")
        return outcome

    def try_hand_over(self, finished: WorkloadId, successor: WorkloadId) -> Decision | str:
        """``hand_over`` if accepted, else why not (and nothing changes): one check, for
        callers that expect refusals."""
        refusal = self.handover_refusal(finished, successor)
        if refusal is not None:
            return refusal
        done, nxt = self._records[finished], self._records[successor]
        admission = done.admission
        assert admission is not None
        self._release(done)
        self._transition(done, S.FINISHED, message=f"finished; its quota went to {successor}")
        cq = self._config.cluster_queues[admission.cluster_queue]
        self._grant(nxt, cq, self._tree.cluster_queues[cq.name], admission.groups, admission.usage)
        self._transition(
            nxt,
            S.ADMITTED,
            reason="HandedOver",
            message=f"took over the quota of {finished}, which finished; nothing else was "
            "waiting for it",
        )
        # The owner started it before telling us: it is on a node already.
        nxt.placed = True
        return self._admit_decision(nxt, "HandedOver")

    def _lease_refusal(
        self, record: Record, memo: dict[QuotaNode, set[tuple[BucketKey, str]]]
    ) -> str | None:
        """Why an admitted task's quota may not go straight to a sibling: the hand-over
        must be exactly what the next cycle would do. That holds when every workload
        pending anywhere in the quota tree is the owner's identical task (the freed quota
        then fits the bucket's top and nobody else could take it), the ClusterQueue is
        running, and no admission check would have to run first."""
        assert record.admission is not None
        cq = self._config.cluster_queues.get(record.admission.cluster_queue)
        if cq is None:
            return f"ClusterQueue {record.admission.cluster_queue} no longer exists"
        if cq.stop_policy is not StopPolicy.NONE or self._queue_held(record.spec.queue):
            return f"queue {record.spec.queue} or ClusterQueue {cq.name} is stopped"
        if _checks_for(cq, record.admission):
            return f"ClusterQueue {cq.name} runs admission checks before admitting"
        node = self._tree.cluster_queues[cq.name]
        waiting = memo.get(node.tree_root)
        if waiting is None:
            waiting = set()
            for member in self._tree.same_tree(node):
                waiting |= self._pending[member.name].groups(limit=2)
                if len(waiting) >= 2:
                    break
            memo[node.tree_root] = waiting
        own = ((record.spec.queue, record.priority, _shape(record.spec)), record.spec.owner)
        if waiting - {own}:
            return f"other workloads are waiting for quota in ClusterQueue {cq.name}'s cohort"
        return None

    # -- the cycle ----------------------------------------------------------------------

    def _round(self, cluster_queues: set[str], decisions: list[Decision]) -> set[str]:
        heads = [e for name in sorted(cluster_queues) if (e := self._head(name)) is not None]
        heads.sort(key=self._entry_order)
        next_round: set[str] = set()
        touched_roots: set[QuotaNode] = set()
        for entry in heads:
            root = entry.node.tree_root
            if root in touched_roots:
                entry.assignment = self._assign(entry.record, entry.cq, entry.node)
            if entry.assignment.mode is Mode.PREEMPT:
                victims = self._find_victims(entry)
                if victims:
                    for victim in victims:
                        decisions.append(self._preempt(victim, entry.record))
                    entry.assignment = self._assign(entry.record, entry.cq, entry.node)
            if entry.assignment.mode is Mode.FIT:
                decisions.append(self._reserve(entry))
                touched_roots.add(root)
            else:
                self._set_aside(entry)
            next_round.add(entry.cq.name)
        return next_round

    def _head(self, cq_name: str) -> _Entry | None:
        cq = self._config.cluster_queues[cq_name]
        if cq.stop_policy is not StopPolicy.NONE:
            return None
        pending = self._pending[cq_name]
        score = self._queue_score if cq.usage_based_fair_sharing else None
        workload = pending.head(skip_queue=self._queue_held, queue_score=score)
        if workload is None:
            return None
        record = self._records[workload]
        node = self._tree.cluster_queues[cq_name]
        return _Entry(record, cq, node, self._assign(record, cq, node))

    def _assign(self, record: Record, cq: ClusterQueue, node: QuotaNode) -> Assignment:
        spec = record.spec
        full = assign_flavors(spec, cq, node, self._tree)
        if full.mode is Mode.FIT or spec.min_count is None:
            return full
        # Partial admission: the largest count of the first group that fits (Kueue
        # searches the same way, since fitting is monotone in the count).
        low, high = spec.min_count, spec.bundle_groups[0].count - 1
        best: Assignment | None = None
        while low <= high:
            mid = (low + high) // 2
            attempt = assign_flavors(spec, cq, node, self._tree, first_group_count=mid)
            if attempt.mode is Mode.FIT:
                best, low = attempt, mid + 1
            else:
                high = mid - 1
        return best or full

    def _entry_order(self, entry: _Entry) -> tuple[object, ...]:
        spec = entry.record.spec
        tail = (-entry.record.priority, spec.created_at, spec.id)
        if self._config.settings.fair_sharing.enable:
            # Compare cohorts top-down, then the ClusterQueue as if the head were admitted.
            ancestors = [a for a in entry.node.ancestors() if a.parent is not None]
            shares = tuple(dominant_resource_share(a) for a in reversed(ancestors))
            own = dominant_resource_share(entry.node, entry.assignment.usage)
            return (*shares, own, *tail)
        return (entry.assignment.borrows, *tail)

    def _find_victims(self, entry: _Entry) -> list[Candidate] | None:
        preemptor = Preemptor(
            priority=entry.record.priority,
            created_at=entry.record.spec.created_at,
            cq=entry.cq,
            node=entry.node,
            usage=entry.assignment.usage,
            needs=entry.assignment.needs_preemption,
        )
        candidates = [
            c
            for c in self._candidates(entry.cq.name, preemptor.needs)
            if within_cluster_queue_allows(preemptor, c)
        ]
        if self._may_take_from_cohort(entry, preemptor):
            candidates.extend(
                c
                for c in self._borrowed_candidates(entry.node, preemptor.needs)
                if c.cluster_queue != entry.cq.name and reclaim_allows(preemptor, c)
            )
        if not candidates:
            return None
        fair = self._config.settings.fair_sharing
        if fair.enable:
            return fair_victims(preemptor, self._tree, candidates, fair.preemption_strategies)
        return classical_victims(preemptor, self._tree, candidates)

    def _may_take_from_cohort(self, entry: _Entry, preemptor: Preemptor) -> bool:
        """Whether other ClusterQueues' workloads can be victims at all.

        Classical preemption only reclaims while the preemptor's queue is under nominal
        quota, unless borrowWithinCohort allows it; skipping the cohort scan otherwise
        keeps a blocked head cheap in cohorts with hundreds of queues.
        """
        preemption = entry.cq.preemption
        if (
            preemption.reclaim_within_cohort is ReclaimWithinCohort.NEVER
            or entry.node.parent is None
        ):
            return False
        if self._config.settings.fair_sharing.enable:
            return True
        if preemption.borrow_within_cohort.policy is BorrowWithinCohortPolicy.LOWER_PRIORITY:
            return True
        return under_nominal(preemptor)

    def _borrowed_candidates(
        self, node: QuotaNode, needs: frozenset[FlavorResource]
    ) -> list[Candidate]:
        """Workloads of queues in ``node``'s tree that borrow what ``needs`` names.

        Cached per quota-tree state: after a release, every blocked head of a cohort is
        retried against the same state, and rescanning hundreds of queues each time
        would dominate the cycle.
        """
        key = (node.tree_root, needs)
        cached = self._borrowed_memo.get(key)
        if cached is not None and cached[0] == self._tree.version:
            return cached[1]
        found = [
            c
            for other in self._tree.same_tree(node)
            if self._tree.is_borrowing(other, iter(needs))
            for c in self._candidates(other.name, needs)
        ]
        self._borrowed_memo[key] = (self._tree.version, found)
        return found

    def _candidates(self, cq_name: str, needs: frozenset[FlavorResource]) -> Iterable[Candidate]:
        return (c for c in self._holding[cq_name].values() if not needs.isdisjoint(c.usage))

    def _reserve(self, entry: _Entry) -> Decision:
        record, cq, assignment = entry.record, entry.cq, entry.assignment
        workload = record.spec.id
        self._grant(record, cq, entry.node, assignment.groups, assignment.usage)
        assert record.admission is not None
        checks = _checks_for(cq, record.admission)
        if checks:
            record.checks = {name: CheckState.PENDING for name in checks}
            self._transition(
                record,
                S.QUOTA_RESERVED,
                message=f"quota reserved in {cq.name}; waiting for {', '.join(checks)}",
            )
            return Decision(
                DecisionKind.RESERVE, workload, "QuotaReserved", record.message, record.admission
            )
        record.checks = {}
        self._transition(record, S.ADMITTED, message=f"admitted by ClusterQueue {cq.name}")
        self._start_placement_clock(record)
        return self._admit_decision(record, "Admitted")

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
        self._holding[cq.name][workload] = _candidate(record)
        record.placed = False
        if cq.usage_based_fair_sharing:
            self._charge_queue(record.spec.queue, record.admission, self._clock.now())

    def _admit_decision(self, record: Record, reason: str) -> Decision:
        return Decision(
            DecisionKind.ADMIT, record.spec.id, reason, record.message, record.admission
        )

    def _preempt(self, victim: Candidate, preemptor: Record) -> Decision:
        record = self._records[victim.workload]
        where = (
            "within ClusterQueue" if victim.cluster_queue == preemptor.cluster_queue else "reclaim"
        )
        message = (
            f"preempted ({where}) to admit {preemptor.spec.id} "
            f"(priority {preemptor.priority}) in ClusterQueue {preemptor.cluster_queue}"
        )
        # Kueue requeues preempted work at once, keeping its place in line.
        return self._evict(
            record,
            "Preempted",
            message,
            backoff=False,
            kind=DecisionKind.PREEMPT,
            preemptor=preemptor.spec.id,
        )

    def _set_aside(self, entry: _Entry) -> None:
        assignment = entry.assignment
        reason = assignment.reason or "does not fit"
        if assignment.mode is Mode.PREEMPT:
            reason += "; no workload may be preempted to make room"
        # The reason belongs to the set-aside bucket (or queue), not to the record: it
        # disappears the moment quota is released, for every workload it covered.
        strict = entry.cq.queueing_strategy is QueueingStrategy.STRICT_FIFO
        self._pending[entry.cq.name].block(
            entry.record.spec.id, f"waiting: {reason}", whole_queue=strict
        )

    # -- phase 0: time-driven events -------------------------------------------------------

    def _release_backoffs(self, now: float) -> None:
        while self._backoff and self._backoff[0][0] <= now:
            due, workload = heapq.heappop(self._backoff)
            record = self._records.get(workload)
            if record is None or record.state is not S.EVICTED or record.requeue_at != due:
                continue
            record.requeue_at = None
            self._transition(record, S.PENDING, message="back-off expired")
            self._enqueue(record)

    def _enforce_placement_deadlines(self, now: float) -> list[Decision]:
        decisions = []
        while self._placement_deadlines and self._placement_deadlines[0][0] <= now:
            _, seq, workload = heapq.heappop(self._placement_deadlines)
            record = self._records.get(workload)
            if record is None or record.state is not S.ADMITTED or record.placed:
                continue
            if record.admitted_seq != seq:
                continue
            timeout = self._config.settings.wait_for_placement.timeout_s
            decisions.append(
                self._evict(record, "PlacementTimeout", f"not placed on nodes within {timeout:g}s")
            )
        return decisions

    def _start_placement_clock(self, record: Record) -> None:
        wait = self._config.settings.wait_for_placement
        if wait.enable:
            deadline = self._clock.now() + wait.timeout_s
            heapq.heappush(
                self._placement_deadlines, (deadline, record.admitted_seq, record.spec.id)
            )

    def _drain_stopped(self) -> list[Decision]:
        decisions = []
        for cq_name, holding in self._holding.items():
            cq_drains = (
                self._config.cluster_queues[cq_name].stop_policy is StopPolicy.HOLD_AND_DRAIN
            )
            for workload in list(holding):
                record = self._records[workload]
                queue = self._config.queues.get(record.spec.queue)
                queue_drains = queue is not None and queue.stop_policy is StopPolicy.HOLD_AND_DRAIN
                if cq_drains or queue_drains:
                    decisions.append(
                        self._evict(
                            record, "Stopped", "its queue is stopped (HoldAndDrain)", backoff=False
                        )
                    )
        return decisions

    # -- bookkeeping ---------------------------------------------------------------------

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
        self._holding[admission.cluster_queue].pop(record.spec.id, None)
        record.admission = None
        record.checks = {}
        record.placed = False
        # Freed quota may let set-aside work in the whole cohort tree in.
        for cq_node in self._tree.same_tree(node):
            if self._pending[cq_node.name].unblock_all():
                self._dirty.add(cq_node.name)

    def _enqueue(self, record: Record) -> None:
        spec = record.spec
        bucket = (spec.queue, record.priority, _shape(spec))
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
                self._add_lease(record)
            elif record.state is S.ADMITTED:
                self._drop_lease(record)
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

    def _add_lease(self, record: Record) -> None:
        self._leases.setdefault(record.lease_key, {})[record.spec.id] = None

    def _drop_lease(self, record: Record) -> None:
        key = record.lease_key
        holders = self._leases.get(key)
        if holders is not None:
            holders.pop(record.spec.id, None)
            if not holders:
                del self._leases[key]

    def _priority(self, priority_class: str | None) -> int:
        if priority_class is None:
            return self._config.default_priority()
        pc = self._config.priority_classes.get(priority_class)
        if pc is None:
            known = ", ".join(sorted(self._config.priority_classes)) or "none"
            raise UnknownPriorityClassError(
                f"priority class {priority_class!r} does not exist (known: {known}); "
                "use one of those, omit it for the default, or define it in the config"
            )
        return pc.value

    def _queue_held(self, queue: str) -> bool:
        q = self._config.queues.get(queue)
        return q is None or q.stop_policy is not StopPolicy.NONE

    def _queue_score(self, queue: str) -> float:
        score, at = self._queue_usage.get(queue, (0.0, 0.0))
        half_life = self._config.settings.admission_fair_sharing.usage_half_life_s
        decayed = decay(score, self._clock.now() - at, half_life)
        weight = self._config.queues[queue].fair_sharing_weight
        # A zero-weight Queue goes after every other Queue that has any usage.
        return decayed / weight if weight > 0 else (float("inf") if decayed > 0 else 0.0)

    def _charge_queue(self, queue: str, admission: Admission, at: float) -> None:
        node = self._tree.cluster_queues.get(admission.cluster_queue)
        if node is None:
            return
        score, since = self._queue_usage.get(queue, (0.0, at))
        half_life = self._config.settings.admission_fair_sharing.usage_half_life_s
        penalty = admission_penalty(admission.usage, node.nominal)
        self._queue_usage[queue] = (decay(score, at - since, half_life) + penalty, at)

    def _check_config_keeps_live_workloads(self, config: QueueConfig) -> None:
        problems: list[ConfigProblem] = []
        seen: set[tuple[str, str]] = set()
        for record in self._live.values():
            spec = record.spec
            needs = [("Queue", spec.queue, spec.queue in config.queues)]
            if spec.priority_class is not None:
                needs.append(
                    (
                        "PriorityClass",
                        spec.priority_class,
                        spec.priority_class in config.priority_classes,
                    )
                )
            if record.admission is not None:
                cq = record.admission.cluster_queue
                needs.append(("ClusterQueue", cq, cq in config.cluster_queues))
            for kind, name, present in needs:
                if not present and (kind, name) not in seen:
                    seen.add((kind, name))
                    problems.append(
                        ConfigProblem(
                            f"{kind}/{name}",
                            "",
                            "is still used by queued or running workloads; cancel or let them "
                            "finish before removing it",
                        )
                    )
        if problems:
            raise ConfigError(problems)

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

    # -- restore -------------------------------------------------------------------------

    @classmethod
    def restore(
        cls, config: QueueConfig, clock: Clock, records: Iterable[WorkloadStatus]
    ) -> Engine:
        """Rebuild an engine from persisted workload records (``workloads()`` output):
        quota held by reserved/admitted records is re-added, pending ones re-queued."""
        engine = cls(config, clock)
        statuses = list(records)
        holding_order = sorted(
            (s for s in statuses if s.state.holds_quota),
            key=lambda s: (views.admitted_at(s), s.spec.id),
        )
        seq = {s.spec.id: i + 1 for i, s in enumerate(holding_order)}
        engine._seq = len(holding_order)
        for status in statuses:
            record = views.record_from_status(status, seq.get(status.spec.id, 0))
            engine._adopt(record)
        engine._rebuild_queue_usage(statuses)
        for status in statuses:
            if status.set_aside and status.state is S.PENDING:
                cq = engine._config.cluster_queues[status.cluster_queue]
                strict = cq.queueing_strategy is QueueingStrategy.STRICT_FIFO
                engine._pending[cq.name].block(status.spec.id, status.message, whole_queue=strict)
        return engine

    def _rebuild_queue_usage(self, statuses: list[WorkloadStatus]) -> None:
        """Replay every recorded admission of usage-fair-shared queues, oldest first."""
        fair_shared = {
            name for name, cq in self._config.cluster_queues.items() if cq.usage_based_fair_sharing
        }
        charges = sorted(
            (
                (t.at, status.spec.queue, t.admission)
                for status in statuses
                for t in status.history
                if t.admission is not None and t.admission.cluster_queue in fair_shared
            ),
            key=lambda charge: (charge[0], charge[1]),
        )
        for at, queue, admission in charges:
            self._charge_queue(queue, admission, at)

    def _adopt(self, record: Record) -> None:
        workload = record.spec.id
        self._records[workload] = record
        if record.state.is_terminal:
            return
        self._live[workload] = record
        if record.spec.owner:
            self._by_owner.setdefault(record.spec.owner, set()).add(workload)
        if record.state.holds_quota and record.admission is not None:
            cq = record.admission.cluster_queue
            self._tree.add_usage(self._tree.cluster_queues[cq], record.admission.usage)
            self._holding[cq][workload] = _candidate(record)
            if record.state is S.ADMITTED and not record.placed:
                self._start_placement_clock(record)
            if record.state is S.ADMITTED and record.spec.kind is WorkloadKind.TASK:
                self._add_lease(record)
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

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]:
        """Pending workloads in the order they would be considered, with positions."""
        names = [cluster_queue] if cluster_queue is not None else sorted(self._pending)
        out: list[PendingPosition] = []
        for name in names:
            pending = self._pending.get(name)
            if pending is None:
                continue
            cq = self._config.cluster_queues[name]
            score = self._queue_score if cq.usage_based_fair_sharing else None
            per_queue: dict[str, int] = {}
            for index, (workload, q) in enumerate(pending.ordered(score)):
                position_in_queue = per_queue.get(q, 0)
                per_queue[q] = position_in_queue + 1
                if queue is not None and q != queue:
                    continue
                record = self._records[workload]
                reason = (
                    pending.blocked_reason_for(workload) or record.message or "waiting for its turn"
                )
                out.append(
                    PendingPosition(
                        workload, q, name, record.priority, position_in_queue, index, reason
                    )
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
        holders = (self._records[w] for h in self._holding.values() for w in h)
        return views.demand(self._config, holders)

    def forget_finished(self, *, older_than: float) -> int:
        """Drop terminal workloads that ended before ``older_than``; returns how many."""
        old = [
            w
            for w, r in self._records.items()
            if r.state.is_terminal and r.ended_at is not None and r.ended_at < older_than
        ]
        for workload in old:
            del self._records[workload]
        return len(old)


def _validate_spec(spec: WorkloadSpec) -> None:
    if not spec.id:
        raise InvalidWorkloadError("a workload needs a non-empty id")
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
    if spec.min_count is not None and not 1 <= spec.min_count <= spec.bundle_groups[0].count:
        raise InvalidWorkloadError(
            f"workload {spec.id!r}: min_count {spec.min_count} must be between 1 and the first "
            f"group's count ({spec.bundle_groups[0].count})"
        )


def _candidate(record: Record) -> Candidate:
    assert record.admission is not None
    return Candidate(
        workload=record.spec.id,
        cluster_queue=record.admission.cluster_queue,
        priority=record.priority,
        created_at=record.spec.created_at,
        admitted_seq=record.admitted_seq,
        usage=record.admission.usage,
    )


def _checks_for(cq: ClusterQueue, admission: Admission) -> list[str]:
    """The admission checks that apply to the flavors an admission was given."""
    flavors = admission.flavors()
    applies = [
        c for c in cq.admission_checks if not c.on_flavors or not flavors.isdisjoint(c.on_flavors)
    ]
    return [c.name for c in applies]


def _shape(spec: WorkloadSpec) -> Hashable:
    """Workloads with equal shapes (and priority and Queue) succeed or fail together."""
    return shape_of(spec.bundle_groups, spec.min_count)
