"""The engine's front door: events in, decisions out.

``Engine`` owns every workload record, the quota tree and the pending queues (kept, with
the bookkeeping every event shares, by ``EngineState`` in state.py). Each public
method is one event (submit, finish, cancel, check result, placement, eviction, config
change, clock tick via ``schedule``); each returns the ``Decision`` list the adapter must
carry out, in order. Nothing here touches Ray, gRPC or Kubernetes, and nothing reads a
clock, uuid or random source except the injected ``Clock``: the same event sequence
always yields the same decisions.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping

from ray_queue.engine import handover, job_caps, views
from ray_queue.engine.clock import Clock
from ray_queue.engine.config import (
    ClusterQueue,
    QueueConfig,
    QueueingStrategy,
    StopPolicy,
)
from ray_queue.engine.config_change import live_workload_problems
from ray_queue.engine.errors import (
    ConfigError,
    DuplicateWorkloadError,
    InvalidTransitionError,
    InvalidWorkloadError,
    UnknownQueueError,
    WorkloadRejected,
)
from ray_queue.engine.flavor_assignment import (
    Assignment,
    Mode,
    assign_flavors,
    preempts_while_borrowing,
)
from ray_queue.engine.heads import Entry, classical_order, fair_order, plan, plan_is_stale
from ray_queue.engine.model import (
    HANDED_OVER,
    CheckState,
    Decision,
    DecisionKind,
    LeaseKey,
    Transition,
    Usage,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
    validate_spec,
)
from ray_queue.engine.preemption import Candidate, Holders
from ray_queue.engine.queues import ClusterQueuePending
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record
from ray_queue.engine.state import CutShort, EngineState
from ray_queue.engine.waiting import Waits

S = WorkloadState

#: Rounds one ``schedule()`` call may take: this many per live workload, plus
#: ``ROUND_SLACK``. A sound call ends far sooner (each round admits something or sets heads
#: aside, and the preemption rules cannot go round in circles), so more means a bug; the
#: call then stops, leaving the rest to the next call, instead of hanging the manager.
ROUNDS_PER_WORKLOAD = 4
ROUND_SLACK = 8


class Engine(EngineState):
    """Kueue's admission model over an in-memory cache.

    Not thread-safe: the manager calls it from one asyncio loop (the "lock" of
    docs/contract.md §2). Every method either fully applies or raises before changing anything.
    """

    # -- events ---------------------------------------------------------------------

    def apply_config(self, config: QueueConfig) -> list[Decision]:
        """Switch to a new validated config.

        Raises ``ConfigError`` (and changes nothing) if a Queue, ClusterQueue or
        PriorityClass that live workloads still use would disappear. Admitted workloads
        keep their admissions even if quotas shrink (Kueue does not preempt on quota
        decrease); set-aside workloads are retried. Returns evictions caused by a new
        HoldAndDrain.
        """
        problems = live_workload_problems(config, self._live.values())
        if problems:
            raise ConfigError(problems)
        self._config = config
        self._tree = QuotaTree(config)
        self._while_borrowing = {}
        # Waits name nodes of the old tree, and the new config may wait otherwise:
        # heads start their waits again.
        self._waits = Waits()
        self._pending = {name: ClusterQueuePending() for name in config.cluster_queues}
        self._holders = Holders(config.cluster_queues)
        live = sorted(self._live.values(), key=lambda r: (r.admitted_seq, r.spec.id))
        for record in live:
            record.priority = config.priority_value(record.spec.priority_class)
            if record.state.holds_quota and record.admission is not None:
                cq = record.admission.cluster_queue
                self._tree.add_usage(self._tree.cluster_queues[cq], record.admission.usage)
                self._holders.add(record)
            elif record.state is S.PENDING:
                record.cluster_queue = config.queues[record.spec.queue].cluster_queue
                self._enqueue(record)
            elif record.state is S.EVICTED:
                record.cluster_queue = config.queues[record.spec.queue].cluster_queue
        self._dirty = set(config.cluster_queues)
        return self._drain_stopped()

    def submit(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Queue a new workload (state PENDING).

        Raises ``InvalidWorkloadError`` (malformed), ``DuplicateWorkloadError``,
        ``UnknownQueueError``, ``UnknownPriorityClassError``, or ``WorkloadRejected`` when
        no flavor of its ClusterQueue could ever hold it, even with the whole cohort
        lent to it. Admission happens in ``schedule``.
        """
        validate_spec(spec)
        if spec.id in self._records:
            raise DuplicateWorkloadError(f"workload {spec.id!r} was already submitted")
        parent = self._parent_of(spec)
        if parent is not None and spec.priority_class is None:
            # A job's work runs at the job's priority unless it names its own.
            spec = dataclasses.replace(spec, priority_class=parent.spec.priority_class)
        queue = self._config.queues.get(spec.queue)
        if queue is None:
            known = ", ".join(sorted(self._config.queues)) or "none"
            raise UnknownQueueError(
                f"queue {spec.queue!r} does not exist (known queues: {known}); "
                "submit to one of those or apply a config that defines it"
            )
        priority = self._config.priority_value(spec.priority_class)
        cq = self._config.cluster_queues[queue.cluster_queue]
        node = self._tree.cluster_queues[cq.name]
        ever = assign_flavors(spec, cq, node, self._tree, first_group_count=spec.min_count)
        if ever.mode is Mode.NO_FIT:
            raise WorkloadRejected(
                f"workload {spec.id!r} can never be admitted to ClusterQueue {cq.name}: "
                f"{ever.reason}. Ask for less, or raise the quota."
            )
        self._check_cap(spec, cq, parent)
        record = Record(spec=spec, priority=priority, cluster_queue=cq.name)
        record.message = f"waiting for its turn in queue {spec.queue}"
        record.history.append(
            Transition(self._clock.now(), S.PENDING, S.PENDING, "Created", record.message)
        )
        self._records[spec.id] = record
        self._live[spec.id] = record
        if spec.owner:
            self._by_owner.setdefault(spec.owner, set()).add(spec.id)
        if parent is not None:
            self._children.setdefault(parent.spec.id, set()).add(spec.id)
        self._enqueue(record)
        return self._status(record)

    def _parent_of(self, spec: WorkloadSpec) -> Record | None:
        """The admitted job ``spec`` says it belongs to (only an admitted job's run makes
        work); ``InvalidWorkloadError`` if it is not one."""
        if spec.parent is None:
            return None
        parent = self._records.get(spec.parent)
        if (
            parent is None
            or parent.spec.kind is not WorkloadKind.JOB
            or parent.state is not S.ADMITTED
        ):
            what = (
                "no workload has that id"
                if parent is None
                else f"it is a {parent.spec.kind.value}, {parent.state.value}"
            )
            raise InvalidWorkloadError(
                f"workload {spec.id!r}: parent {spec.parent!r} is not a live job ({what}); "
                "only work made by an admitted job's driver or workers can belong to it: "
                "submit it without a parent"
            )
        return parent

    def _check_cap(self, spec: WorkloadSpec, cq: ClusterQueue, parent: Record | None) -> None:
        """A job's cap names resources its ClusterQueue knows; a child fits under its
        job's cap beside the entrypoint, at least at its smallest count."""
        if spec.max_resources is not None:
            covered = {r for rg in cq.resource_groups for r in rg.covered_resources}
            unknown = sorted(set(spec.max_resources) - covered)
            if unknown:
                raise InvalidWorkloadError(
                    f"job {spec.id!r}: max_resources names {', '.join(unknown)}, which "
                    f"ClusterQueue {cq.name} does not cover ({', '.join(sorted(covered))}); "
                    "cap only those resources"
                )
        if parent is None or parent.spec.max_resources is None:
            return
        least = dataclasses.replace(
            spec.bundle_groups[0], count=spec.min_count or spec.bundle_groups[0].count
        )
        child_least = dataclasses.replace(spec, bundle_groups=(least, *spec.bundle_groups[1:]))
        why = job_caps.never_fits(
            parent.spec.max_resources,
            parent.spec.total_request(),
            child_least.total_request(),
            parent.spec.id,
        )
        if why is not None:
            raise WorkloadRejected(f"workload {spec.id!r} can never be admitted: {why}")

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
            # It may have been the head holding a StrictFIFO queue back.
            self._dirty.add(record.cluster_queue)
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

    def schedule(self, *, kueue_pace: bool = False) -> list[Decision]:
        """Run scheduling at ``clock.now()``.

        0. release expired back-offs and evict work that missed its placement deadline;
        then, in rounds until a round admits nothing:
        1. heads: the next eligible workload of each ClusterQueue that changed;
        2. flavor assignment for each head;
        3. order heads (fair share, or non-borrowing first; then priority, age);
        4. admit what fits; preempt for what fits only by preempting;
        5. set aside what cannot be admitted (BestEffortFIFO) or block (StrictFIFO).

        At most ``ROUNDS_PER_WORKLOAD`` rounds per live workload (plus ``ROUND_SLACK``);
        a call that reaches that sets ``cut_short`` and leaves the rest to the next call.

        ``kueue_pace`` runs one round only, as one Kueue cycle (one head per
        ClusterQueue), and a head that preempts is admitted in a later call, once its
        victims are gone, its quota held back for the rest of the round as Kueue does.
        For experiments (``benchmarks.engine --pace kueue``); ``more_rounds_due`` then
        says whether another call has work.
        """
        now = self._clock.now()
        decisions: list[Decision] = self._take_ended_children()
        self.cut_short = None
        self._preempted_this_call = set()
        self._kueue_pace = kueue_pace
        self._release_backoffs(now)
        decisions.extend(self._enforce_placement_deadlines(now))
        if self._waits:
            for node in self._waits.forget(self._still_pending):
                # What was held for it is free again, for the whole tree.
                self._unblock_tree(node)
            for node in self._waits.wake(now):
                # Its head may preempt now, though no quota was released.
                self._pending[node.name].unblock_all()
                self._dirty.add(node.name)
        limit = 1 if kueue_pace else ROUNDS_PER_WORKLOAD * len(self._live) + ROUND_SLACK
        changed, self._dirty = self._dirty, set()
        rounds = 0
        while changed:
            if rounds == limit:
                if not kueue_pace:
                    self.cut_short = CutShort(rounds, tuple(decisions[-8:]))
                self._dirty = changed
                break
            rounds += 1
            changed = self._round(changed, decisions)
            changed |= self._dirty
            self._dirty = set()
        decisions.extend(self._take_ended_children())
        return decisions

    def next_wakeup_at(self) -> float | None:
        """When ``schedule()`` next has time-driven work (a back-off or a wait before
        preempting ends, a placement deadline passes), if ever; between events, call it
        then."""
        due = [
            self._backoff[0][0] if self._backoff else None,
            self._placement_deadlines[0][0] if self._placement_deadlines else None,
            self._waits.next_at(),
        ]
        return min((t for t in due if t is not None), default=None)

    @property
    def more_rounds_due(self) -> bool:
        """Whether a ``schedule()`` call now has heads to look at (after a Kueue-paced
        call: whether its next cycle has work)."""
        return bool(self._dirty)

    # -- hand-over: a finished task's quota goes straight to its owner's next one ----------

    def lease_states(self) -> dict[LeaseKey, bool]:
        """For each (owner, queue, priority class, shape) with admitted tasks: whether one
        of them that finishes may hand its quota to a pending sibling (``hand_over``).

        A hint for clients, so they only try hand-overs that would be accepted now.
        """
        memo: handover.WaitingMemo = {}
        return {
            key: self._lease_refusal(self._records[first], memo) is None
            for key, first in self._leases.firsts()
        }

    def has_backlog(self, workload: WorkloadId) -> bool:
        """Whether an admitted task may hand its quota over now and its owner has identical
        tasks pending to take it: they can then run back to back in its place."""
        record = self._records.get(workload)
        if record is None or not handover.sibling_waiting(record, self._pending):
            return False
        return self._lease_refusal(record, {}) is None

    def handover_refusal(self, finished: WorkloadId, successor: WorkloadId) -> str | None:
        """Why ``hand_over(finished, successor)`` would be refused now, or ``None``."""
        done, nxt = self._records.get(finished), self._records.get(successor)
        refusal = handover.pair_refusal(finished, successor, done, nxt)
        if refusal is not None:
            return refusal
        assert done is not None
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
            reason=HANDED_OVER,
            message=f"took over the quota of {finished}, which finished; nothing else was "
            "waiting for it",
        )
        # The owner started it before telling us: it is on a node already.
        nxt.placed = True
        return self._admit_decision(nxt, HANDED_OVER)

    def _lease_refusal(self, record: Record, memo: handover.WaitingMemo) -> str | None:
        return handover.lease_refusal(
            record, self._config, self._tree, self._pending, self._queue_held, memo
        )

    # -- the cycle ----------------------------------------------------------------------

    def _round(self, cluster_queues: set[str], decisions: list[Decision]) -> set[str]:
        if not self._waits:
            return self._round_with_holds(cluster_queues, decisions)
        self._waits.hold(self._tree)
        try:
            return self._round_with_holds(cluster_queues, decisions)
        finally:
            self._waits.release(self._tree)

    def _round_with_holds(self, cluster_queues: set[str], decisions: list[Decision]) -> set[str]:
        heads = [e for name in sorted(cluster_queues) if (e := self._head(name)) is not None]
        if self._config.settings.fair_sharing.enable:
            ordered: Iterable[Entry] = fair_order(heads, self._tree)
        else:
            ordered = sorted(heads, key=classical_order)
        next_round: set[str] = set()
        touched_roots: set[QuotaNode] = set()
        #: Roots where a preemption freed quota this round (not only took more).
        freed_roots: set[QuotaNode] = set()
        #: Quota held for preemptors that wait for their victims (Kueue's pace).
        held: list[tuple[QuotaNode, Usage]] = []
        for entry in ordered:
            if entry.record.state is not S.PENDING:
                continue  # cancelled this round with its job (a victim's children)
            root = entry.node.tree_root
            if root in touched_roots and plan_is_stale(
                entry, root in freed_roots, self._preempted_this_call, self._tree
            ):
                entry.assignment, entry.victims = self._plan(entry.record, entry.cq, entry.node)
            if entry.assignment.mode is Mode.PREEMPT and entry.victims:
                if self._waits_before_preempting(entry):
                    self._set_aside(entry)
                    next_round.add(entry.cq.name)
                    continue
                for victim in entry.victims:
                    if self._records[victim.workload].state.holds_quota:
                        decisions.append(self._preempt(victim, entry.record))
                # Victims' children may have been cancelled with them (``_end_children``).
                decisions.extend(self._take_ended_children())
                touched_roots.add(root)
                freed_roots.add(root)
                if self._kueue_pace:
                    # Kueue admits it in a later cycle; until this one ends, the quota
                    # its victims free is its own.
                    self._tree.add_usage(entry.node, entry.assignment.usage)
                    held.append((entry.node, entry.assignment.usage))
                    next_round.add(entry.cq.name)
                    continue
                entry.assignment, entry.victims = self._plan(entry.record, entry.cq, entry.node)
            if entry.assignment.mode is Mode.FIT:
                self._waits.end(entry.record.spec.id, self._tree)
                decisions.append(self._reserve(entry))
                touched_roots.add(root)
            else:
                self._set_aside(entry)
            next_round.add(entry.cq.name)
        for node, usage in held:
            self._tree.remove_usage(node, usage)
        return next_round

    def _head(self, cq_name: str) -> Entry | None:
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
        return Entry(record, cq, node, *self._plan(record, cq, node))

    def _plan(
        self, record: Record, cq: ClusterQueue, node: QuotaNode
    ) -> tuple[Assignment, list[Candidate] | None]:
        """The head's plan within its quota and, for a job's child, its job's cap."""
        assignment, victims = self._plan_quota(record, cq, node)
        parent = self._live.get(record.spec.parent) if record.spec.parent else None
        cap = parent.spec.max_resources if parent is not None else None
        if parent is None or cap is None or assignment.mode is Mode.NO_FIT:
            return assignment, victims
        siblings = (self._records[c] for c in self._children.get(parent.spec.id, ()))
        holding = job_caps.held(parent, siblings)
        why = job_caps.refusal(cap, holding, job_caps.by_resource(assignment.usage), parent.spec.id)
        if why is None:
            return assignment, victims
        smaller = self._under_cap(record, cap, holding)
        if smaller is not None:
            fits, its_victims = self._plan_quota(smaller, cq, node)
            asked = job_caps.by_resource(fits.usage)
            if fits.mode is not Mode.NO_FIT and not job_caps.refusal(
                cap, holding, asked, parent.spec.id
            ):
                return fits, its_victims
        return dataclasses.replace(assignment, mode=Mode.NO_FIT, reason=why), None

    def _under_cap(
        self, record: Record, cap: Mapping[str, int], holding: Mapping[str, int]
    ) -> Record | None:
        """``record`` at the largest first-group count its job's cap leaves room for,
        when partial admission allows one; planned in its place, never stored."""
        spec = record.spec
        if spec.min_count is None:
            return None
        first, rest = spec.bundle_groups[0], spec.bundle_groups[1:]
        others: dict[str, int] = {}
        for group in rest:
            for name, amount in group.total().items():
                others[name] = others.get(name, 0) + amount
        count = job_caps.largest_count(cap, holding, first.resources, others, first.count)
        if count < spec.min_count or count >= first.count:
            return None
        groups = (dataclasses.replace(first, count=count), *rest)
        smaller = dataclasses.replace(spec, bundle_groups=groups)
        return Record(spec=smaller, priority=record.priority, cluster_queue=record.cluster_queue)

    def _plan_quota(
        self, record: Record, cq: ClusterQueue, node: QuotaNode
    ) -> tuple[Assignment, list[Candidate] | None]:
        workload = record.spec.id
        self._waits.lift(workload, self._tree)
        try:
            return plan(
                record,
                cq,
                node,
                self._tree,
                self._holders,
                self._config.settings.fair_sharing,
                may_preempt=workload not in self._preempted_this_call,
                while_borrowing=self._preempts_while_borrowing(cq),
            )
        finally:
            self._waits.put_back(workload, self._tree)

    def _waits_before_preempting(self, entry: Entry) -> bool:
        """Whether the head, which could preempt now, waits first (and so starts or goes
        on waiting); if it preempts now, what was held for it is let go first."""
        workload = entry.record.spec.id
        wait_s = entry.cq.preemption.wait_before_preempting_s
        now = self._clock.now()
        if wait_s > 0 and self._waits.start(
            workload, entry.node, entry.assignment.usage, now=now, wait_s=wait_s
        ):
            return True
        self._waits.end(workload, self._tree)
        return False

    def _preempts_while_borrowing(self, cq: ClusterQueue) -> bool:
        """``preempts_while_borrowing`` (cached: asked for every head)."""
        cached = self._while_borrowing.get(cq.name)
        if cached is None:
            fair = self._config.settings.fair_sharing.enable
            cached = preempts_while_borrowing(cq, fair_sharing=fair)
            self._while_borrowing[cq.name] = cached
        return cached

    def _reserve(self, entry: Entry) -> Decision:
        record, cq, assignment = entry.record, entry.cq, entry.assignment
        workload = record.spec.id
        self._grant(record, cq, entry.node, assignment.groups, assignment.usage)
        assert record.admission is not None
        checks = cq.checks_for(record.admission)
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

    def _preempt(self, victim: Candidate, preemptor: Record) -> Decision:
        record = self._records[victim.workload]
        self._preempted_this_call.add(victim.workload)
        where = (
            "within ClusterQueue" if victim.cluster_queue == preemptor.cluster_queue else "reclaim"
        )
        # The name its owner gave it (``name=``) says more to a person than the id.
        named = f" ({preemptor.spec.name})" if preemptor.spec.name else ""
        message = (
            f"preempted ({where}) to admit {preemptor.spec.id}{named} "
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

    def _set_aside(self, entry: Entry) -> None:
        assignment = entry.assignment
        reason = assignment.reason or "does not fit"
        if entry.record.spec.id in self._waits:
            wait_s = entry.cq.preemption.wait_before_preempting_s
            reason += f"; waits up to {wait_s:g}s for quota to free before it preempts"
        elif entry.record.spec.id in self._preempted_this_call:
            reason += "; it was itself preempted just now, and may preempt once quota is released"
        elif assignment.mode is Mode.PREEMPT:
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

    def _drain_stopped(self) -> list[Decision]:
        decisions = []
        for cq_name, holding in self._holders.by_cluster_queue():
            cq_drains = (
                self._config.cluster_queues[cq_name].stop_policy is StopPolicy.HOLD_AND_DRAIN
            )
            for workload in holding:
                record = self._records[workload]
                if not record.state.holds_quota:
                    continue  # cancelled just now with its job
                queue = self._config.queues.get(record.spec.queue)
                queue_drains = queue is not None and queue.stop_policy is StopPolicy.HOLD_AND_DRAIN
                if cq_drains or queue_drains:
                    decisions.append(
                        self._evict(
                            record, "Stopped", "its queue is stopped (HoldAndDrain)", backoff=False
                        )
                    )
        return decisions

    # -- restore -------------------------------------------------------------------------

    @classmethod
    def restore(
        cls, config: QueueConfig, clock: Clock, records: Iterable[WorkloadStatus]
    ) -> Engine:
        """Rebuild an engine from persisted workload records (``workloads()`` output):
        quota held by reserved/admitted records is re-added, pending ones re-queued."""
        engine = cls(config, clock)
        statuses = list(records)
        restored, engine._seq = views.restored_records(statuses)
        for record in restored:
            engine._adopt(record)
        engine._rebuild_queue_usage(statuses)
        strict = {
            name: cq.queueing_strategy is QueueingStrategy.STRICT_FIFO
            for name, cq in config.cluster_queues.items()
        }
        for status in statuses:
            if status.set_aside and status.state is S.PENDING:
                engine._pending[status.cluster_queue].block(
                    status.spec.id, status.message, whole_queue=strict[status.cluster_queue]
                )
        return engine
