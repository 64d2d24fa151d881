"""``ManagerCore``: the engine, its store and its Ray actions behind one typed front.

Every request follows the same path, one at a time (the caller serialises calls; the
actor does it by running them on one event loop): engine event → ``schedule()`` →
persist the changed workloads (write-ahead) → carry the decisions out in Ray, in order →
tell owners. Persisting before acting means a crash leaves the store at most *ahead* of
Ray, and ``recover`` reconciles Ray to it. Nothing here imports Ray: the actor and the
future gRPC server both wrap this class, and unit tests drive it with a recording fake.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from ray_queue.engine.clock import Clock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import (
    InvalidTransitionError,
    RayQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)
from ray_queue.engine.model import (
    HANDED_OVER,
    CheckState,
    ClusterQueueStatus,
    Decision,
    DecisionKind,
    GangDemand,
    PendingPosition,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.engine.state import CutShort
from ray_queue.manager import unmanaged
from ray_queue.manager.bundles import label_selector, ray_bundles
from ray_queue.manager.capacity import Capacity, NotPlaced
from ray_queue.manager.job_runs import DONE_STATES, JobRuns
from ray_queue.manager.owner_events import AdmittedShape, OwnerEvents
from ray_queue.manager.placement_flight import DeferredPlacements, Flight
from ray_queue.manager.release_pacing import ReleasePacer
from ray_queue.manager.slots import admitted_meanwhile, wants_slot, was_evicted
from ray_queue.metrics import MetricsSnapshot, snapshot_of
from ray_queue.store.base import Payload, Store
from ray_queue.wire import (
    EventBatch,
    EventKind,
    HandOver,
    JobRun,
    ManagerStatus,
    NodeShape,
    RayActions,
    RayJobHolding,
    SubmitRequest,
    SubmitResult,
    UnmanagedUsage,
    Unplaced,
    WorkerGroupShape,
    job_of_submission,
    job_runs,
    job_submission_id,
)

logger = logging.getLogger(__name__)

#: Kinds whose admission is a placement group the manager creates and owns (a task's is
#: its slot, if it gets one: ``slots.wants_slot``).
_PG_KINDS = (WorkloadKind.PLACEMENT_GROUP, WorkloadKind.ACTOR)
#: Cycles slower than this are logged at INFO.
_SLOW_CYCLE_S = 0.1


#: Decisions after which the manager removes what it holds for the workload (CANCEL:
#: a job's child, cancelled with its job).
_ENDS = (DecisionKind.PREEMPT, DecisionKind.EVICT, DecisionKind.REJECT, DecisionKind.CANCEL)

#: Told the statuses of the workloads whose change the manager just persisted, and the
#: ids of those it just forgot (``ManagerCore.watch_statuses``).
StatusWatcher = Callable[[Sequence[WorkloadStatus], Collection[WorkloadId]], None]


class ManagerCore:
    """The queue manager without Ray. Not thread-safe: call it from one thread/loop."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        actions: RayActions,
        clock: Clock,
        *,
        payloads: Mapping[WorkloadId, Payload] | None = None,
        on_events: Callable[[], None] | None = None,
        on_cycle: Callable[[float, list[Decision]], None] | None = None,
        release_lag_s: float = 0.0,
        job_env: Callable[[str], Mapping[str, str]] | None = None,
        statuses: Sequence[WorkloadStatus] | None = None,
        placements: DeferredPlacements | None = None,
    ) -> None:
        """``release_lag_s``: how long a placement group's creation waits after the
        manager removed one (``release_pacing``; the actor passes ``RELEASE_LAG_S``).
        ``placements``: creates and removes placement groups without waiting for Ray
        (``placement_flight``; the actor passes its ``PlacementDesk``); without it they
        go through ``actions`` synchronously.
        ``job_env``: extra env vars for a job run, by its submission id (its credential
        ticket, ``access_guard``). ``statuses``: the engine's workloads when the caller
        has them already (``recover``: building them again costs seconds at 100,000)."""
        self._engine = engine
        self._store = store
        self._actions = actions
        self._clock = clock
        self._payloads: dict[WorkloadId, Payload] = dict(payloads or {})
        self._on_events = on_events
        #: Told each cycle's scheduling time and decisions (the metrics hook).
        self._on_cycle = on_cycle
        self._job_env = job_env
        self._owner_events = OwnerEvents(
            statuses_of=lambda owner: self.workloads(owner=owner),
            placement_group_of=lambda workload: self._pgs.get(workload),
            admitted_shape=self._admitted_shape,
            clock=clock.now,
        )
        self._owned: dict[str, set[WorkloadId]] = {}
        self._pgs: dict[WorkloadId, str] = {}
        self._placements = placements
        #: Creations asked of ``placements`` and not yet answered (``placement_flight``).
        self._creating: dict[WorkloadId, Flight] = {}
        self._tickets = itertools.count(1)
        #: Placement-group workloads still to be checked in this round of the audit.
        self._audit_turns: deque[WorkloadId] = deque()
        self._pacer = ReleasePacer(release_lag_s)
        #: Every JOB workload's Ray job runs (``job_runs``: none overlaps, none outlives).
        self._runs = JobRuns(submit=self._submit_run, stop=self._actions.stop_job)
        self._capacity = Capacity()
        #: What Ray says each job holds outside the queue's groups (``set_ray_holdings``).
        self._ray_holdings: tuple[RayJobHolding, ...] = ()
        self._last_created = 0.0
        self._action_failures: list[tuple[WorkloadId, str]] = []
        self._status_watchers: list[StatusWatcher] = []
        self.admissions = 0
        self.preemptions = 0
        for status in engine.workloads() if statuses is None else statuses:
            self._own(status.spec)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def recover(
        cls,
        store: Store,
        actions: RayActions,
        clock: Clock,
        *,
        default_config: Callable[[], QueueConfig],
        on_events: Callable[[], None] | None = None,
        on_cycle: Callable[[float, list[Decision]], None] | None = None,
        release_lag_s: float = 0.0,
        job_env: Callable[[str], Mapping[str, str]] | None = None,
        placements: DeferredPlacements | None = None,
    ) -> ManagerCore:
        """Start from the store (or ``default_config()`` on first start) and reconcile Ray
        to it: re-adopt placement groups and jobs that belong to live admissions, create
        those missing, remove or stop those that belong to none."""
        # Most of a large recovery's CPU was the cyclic collector (``_cyclic_gc_paused``).
        with _cyclic_gc_paused():
            state = store.load()
            if state.config is None:
                config = default_config()
                engine = Engine(config, clock)
                store.write(config=config)
            else:
                engine = Engine.restore(state.config, clock, state.workloads)
            core = cls(
                engine,
                store,
                actions,
                clock,
                payloads=state.payloads,
                on_events=on_events,
                on_cycle=on_cycle,
                release_lag_s=release_lag_s,
                job_env=job_env,
                statuses=state.workloads,
                placements=placements,
            )
            core._reconcile([s.spec.id for s in state.workloads])
            return core

    def _reconcile(self, workloads: Sequence[WorkloadId]) -> None:
        live_pgs = dict(self._actions.placement_groups())
        admitted_jobs: dict[WorkloadId, str] = {}
        adopted = created = 0
        for workload in workloads:
            # The state alone first: whole statuses of every pending workload would cost
            # more than the rest of the reconcile.
            if self._engine.state(workload) is not WorkloadState.ADMITTED:
                continue
            status = self._engine.workload(workload)
            if status.spec.kind in _PG_KINDS:
                if workload in live_pgs:
                    self._pgs[workload] = live_pgs.pop(workload)
                    adopted += 1
                else:
                    self._create_pg(status)
                    created += 1
            elif status.spec.kind is WorkloadKind.TASK:
                # A slot is kept if Ray still has it; a task that lost it keeps running (or
                # is launched) without one, so there is nothing to create.
                created_for = self._payloads.get(workload, {}).get("placement_group_of", workload)
                if created_for in live_pgs:
                    self._pgs[workload] = live_pgs.pop(created_for)
                    if created_for != workload:
                        self._actions.move_placement_group(created_for, workload)
                    adopted += 1
            elif status.spec.kind is WorkloadKind.JOB:
                admitted_jobs[workload] = _submission_id(status)
        for workload in live_pgs:
            self._remove_pg(workload)
        # Runs not listed are submitted from the slow tick (the job server may not be up
        # yet), each once no earlier run of its workload is going; strays are stopped.
        self._runs.adopt(self._actions.jobs(), admitted_jobs, self._clock.now())
        logger.info(
            "recovered",
            extra={
                "workloads": len(workloads),
                "groups_adopted": adopted,
                "groups_recreated": created,
                "groups_removed": len(live_pgs),
            },
        )

    # -- requests -------------------------------------------------------------------------

    def submit_many(
        self, requests: Sequence[SubmitRequest], *, brief: bool = False
    ) -> list[SubmitResult]:
        """Queue a batch; each refused item gets its typed error, the rest are queued.
        With ``brief`` the results carry the state only (what a driver needs, at a
        fraction of the cost of whole statuses for thousands of tasks)."""
        specs: list[WorkloadSpec | RayQueueError] = []
        retried: dict[WorkloadId, WorkloadStatus] = {}
        for request in requests:
            if self._known(request.id):
                # A retried call after a manager restart: the first attempt was persisted.
                existing = self._engine.workload(request.id)
                if existing.spec.owner == request.owner and existing.spec.queue == request.queue:
                    retried[request.id] = existing
            built = self._spec(request)
            problem = self._capacity.why_never_fits(built, self._engine.config)
            specs.append(WorkloadRejected(problem) if problem else built)
        accepted = [s for s in specs if isinstance(s, WorkloadSpec)]
        outcomes = iter(self._engine.submit_many(accepted))
        results: list[SubmitResult] = []
        touched: set[WorkloadId] = set()
        payloads: dict[WorkloadId, Payload] = {}
        for request, spec in zip(requests, specs, strict=True):
            outcome: WorkloadStatus | Exception = (
                next(outcomes) if isinstance(spec, WorkloadSpec) else spec
            )
            if request.id in retried:
                outcome = retried[request.id]
            if isinstance(outcome, WorkloadStatus):
                touched.add(request.id)
                self._own(outcome.spec)
                if request.payload:
                    payloads[request.id] = dict(request.payload)
                results.append(SubmitResult(request.id, outcome))
            else:
                error = outcome if isinstance(outcome, RayQueueError) else RayQueueError(outcome)
                results.append(SubmitResult(request.id, error=error))
        self._payloads.update(payloads)
        self._commit(touched, [], payloads=payloads)
        # The status after this batch's scheduling, so callers see immediate admissions.
        if brief:
            return [
                SubmitResult(r.workload, state=self._engine.state(r.workload))
                if r.error is None
                else r
                for r in results
            ]
        statuses = [self._engine.workload(r.workload) if r.error is None else None for r in results]
        return [
            SubmitResult(r.workload, s, state=s.state) if s is not None else r
            for r, s in zip(results, statuses, strict=True)
        ]

    def cancel(self, workloads: Iterable[WorkloadId], *, message: str = "") -> list[bool]:
        """Cancel workloads (unknown or finished ones are skipped); returns which were live."""
        touched: set[WorkloadId] = set()
        out = []
        for workload in workloads:
            try:
                before = self._engine.workload(workload)
            except UnknownWorkloadError:
                out.append(False)
                continue
            live = not before.state.is_terminal
            if self._engine.cancel(workload, message=message or "cancelled by its owner"):
                self._teardown(before)
            touched.add(workload)
            out.append(live)
        self._commit(touched, [])
        return out

    def cancel_owner(self, owner: str, *, message: str = "") -> int:
        """Cancel every live workload of a dead driver or job; returns how many."""
        owned = self._owned.pop(owner, set())
        before = {w: self._engine.workload(w) for w in owned if self._known(w)}
        live = {w for w, s in before.items() if not s.state.is_terminal}
        held = set(self._engine.cancel_owner(owner, message=message or f"owner {owner} died"))
        for workload in held:
            self._teardown(before[workload])
        self._commit(live, [])
        # After the commit: its events about these cancellations would start a new log.
        self._owner_events.forget(owner)
        if live:
            logger.info(
                "owner gone: its workloads cancelled",
                extra={"owner": owner, "cancelled": len(live)},
            )
        return len(live)

    # long: the three kinds of report must be applied in this order in one cycle, and a
    # hand-over's four outcomes (accepted, raced by an admission, refused, stale) read best
    # side by side; split up, each part would need the others' bookkeeping passed along.
    def report(
        self,
        *,
        started: Iterable[WorkloadId] = (),
        finished: Iterable[tuple[WorkloadId, bool, str]] = (),
        handovers: Iterable[HandOver] = (),
    ) -> None:
        """Client reports, batched: work launched on nodes, work that ended, and tasks
        that ended and whose owner started an identical pending task in their place.

        A hand-over the engine refuses (someone else waits for the quota by now) counts
        as the first task finishing; the second is told ``handover_refused`` and must
        stop and wait for its own admission. An accepted one moves the first task's slot
        (its placement group, if it has one) to the second. Reports that no longer apply
        (the workload was preempted or cancelled meanwhile) are ignored: the client and
        the manager race by design.
        """
        touched: set[WorkloadId] = set()
        decisions: list[Decision] = []
        reported: set[WorkloadId] = set()
        refused: list[tuple[WorkloadId, WorkloadId, str]] = []
        payloads: dict[WorkloadId, Payload] = {}
        for workload in started:
            if self._known(workload) and self._engine.mark_placed(workload):
                touched.add(workload)
        # Hand-overs before finishes: a task that took over and then ended is in both
        # lists of one report, and it must be admitted before it can finish.
        for handover in handovers:
            done, successor = handover.done, handover.successor
            reported.add(done)
            if handover.slot != self._pgs.get(done):
                outcome: Decision | str = (
                    f"it was not started in the placement group {done} was given"
                )
            else:
                outcome = self._engine.try_hand_over(done, successor)
            if isinstance(outcome, Decision):
                decisions.append(outcome)
                touched |= {done, successor}
                if not was_evicted(self._engine.workload(successor)):
                    reported.add(successor)
                payloads.update(self._move_slot(done, successor))
                continue
            if admitted_meanwhile(self._engine, handover, self._pgs.get(done)):
                # A cycle admitted the successor in its own right while its owner was
                # already running it in done's slot: it stays there, on its own quota
                # (the slot made for it goes unused), and done's quota goes back.
                self._drop_pg(successor)
                payloads.update(self._move_slot(done, successor))
                touched |= self._finish(done, failed=False, message="task returned")
                touched.add(successor)
                reported.add(successor)
                continue
            touched |= self._finish(done, failed=False, message="task returned")
            if self._known(successor):
                refused.append((done, successor, outcome))
        for workload, failed, message in finished:
            touched |= self._finish(workload, failed=failed, message=message)
            reported.add(workload)
        self._commit(touched, decisions, payloads=payloads, reported=frozenset(reported))
        # Told after the cycle, so the event carries where the successor now stands: the
        # cycle may have admitted it in its own right, and then it keeps running.
        for done, successor, refusal in refused:
            now = self._engine.workload(successor)
            self._owner_events.emit(
                now,
                decision=EventKind.HANDOVER_REFUSED,
                reason="HandOverRefused",
                message=f"not admitted in place of {done}: {refusal}",
                label_selector=self._label_selector(now),
            )
        if refused and self._on_events is not None:
            self._on_events()

    def mark_placed(self, workload: WorkloadId, pg_id: str | None = None) -> None:
        """A placement group the manager created is ready (ignored if it was replaced)."""
        if pg_id is not None and self._pgs.get(workload) != pg_id:
            return
        # Not persisted: after a restart the manager watches its groups again and marks
        # them placed within moments, so the write would buy nothing but an fsync.
        placed = self._known(workload) and self._engine.mark_placed(workload)
        if placed and self._on_events is not None:
            self._on_events()

    def job_states(
        self,
        states: Mapping[str, str],
        failures: Mapping[str, str] | None = None,
        messages: Mapping[str, str] | None = None,
    ) -> None:
        """Ray's view of the jobs it runs for us (submission id → JobStatus name), the
        submissions that failed since last time (submission id → error), and Ray's
        message of each job that has one (why it failed)."""
        touched: set[WorkloadId] = set()
        seen = self._runs.observe(states, failures or {}, self._clock.now())
        for workload in seen.running:
            if self._engine.mark_placed(workload):
                touched.add(workload)
        for workload, submission_id, state in seen.ended:
            # Named by its submission id: ``ray job logs <id>`` says what happened;
            # Ray's own message says it first, where people look (describe, status).
            said = (messages or {}).get(submission_id)
            message = f"Ray job {submission_id} {state}" + (f": {said}" if said else "")
            touched |= self._finish(workload, failed=DONE_STATES[state], message=message)
        for workload, message in seen.refused:
            touched |= self._finish(workload, failed=True, message=message)
        self._commit(touched, [])

    def audit_placement_groups(self, limit: int) -> None:
        """End each admitted placement group or actor whose group Ray no longer has: it
        was removed outside ray_queue (``ray.util.remove_placement_group`` on the handle),
        and its quota would otherwise stay held forever. Looks up at most ``limit``
        groups per call, taking turns, so the cost of a call stays bounded however many
        groups are live. A task's slot is left to its owner, who sees the loss itself."""
        if not self._audit_turns:
            self._audit_turns = deque(w for w in self._pgs if self._is_pg_kind(w))
        batch: dict[str, WorkloadId] = {}
        while self._audit_turns and len(batch) < limit:
            workload = self._audit_turns.popleft()
            pg_id = self._pgs.get(workload)
            if pg_id is not None:
                batch[pg_id] = workload
        if not batch:
            return
        touched: set[WorkloadId] = set()
        for pg_id in self._actions.removed_placement_groups(list(batch)):
            workload = batch[pg_id]
            if self._pgs.get(workload) != pg_id:
                continue  # its workload ended meanwhile
            kind = self._engine.workload(workload).spec.kind
            touched |= self._finish(
                workload,
                failed=kind is WorkloadKind.ACTOR,
                message="its placement group was removed outside ray_queue",
            )
        if touched:
            self._commit(touched, [])

    def _is_pg_kind(self, workload: WorkloadId) -> bool:
        return self._known(workload) and self._engine.workload(workload).spec.kind in _PG_KINDS

    def apply_config(self, config: QueueConfig) -> list[Decision]:
        """Switch config live (raises ``ConfigError`` and changes nothing if refused)."""
        decisions = self._engine.apply_config(config)
        for decision in decisions:
            self._teardown_decision(decision)
        self._commit(set(), decisions, config=config, acted=True)
        return decisions

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> None:
        decisions = self._engine.set_check_state(workload, check, state, message)
        self._commit({workload}, decisions)

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> None:
        """Capacity revoked (autoscaler) or an operator's eviction."""
        before = self._engine.workload(workload)
        decisions = self._engine.evict(workload, reason=reason, message=message)
        self._teardown(before)
        self._commit({workload}, decisions, acted=True)

    def set_nodes(self, nodes: Sequence[NodeShape]) -> None:
        """The alive Ray nodes (joins and leaves); drives capacity checks at submission."""
        self._capacity.set_nodes(nodes, self._engine.config)

    def set_ray_holdings(self, holdings: Sequence[RayJobHolding]) -> None:
        """What each Ray job holds outside the queue's groups: names the jobs behind
        unmanaged usage."""
        self._ray_holdings = tuple(holdings)

    def set_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        """The autoscaled worker groups' node shapes (from the autoscaler)."""
        self._capacity.set_worker_groups(groups)

    @property
    def cut_short(self) -> bool:
        """Whether the last scheduling call hit the engine's round limit (a loop)."""
        return self._engine.cut_short is not None

    def tick(self) -> None:
        """Periodic: release back-offs, enforce placement timeouts, admit what now fits."""
        self.place_due()
        self._commit(set(), [])

    def next_placement_at(self) -> float | None:
        """When ``place_due`` next has a held placement group to create (clock time)."""
        return self._pacer.next_at()

    def place_due(self) -> None:
        """Create the placement groups held back after a removal (``release_pacing``)
        whose time has come, and tell their owners they are admitted."""
        due = self._pacer.due(self._clock.now())
        for decision in due:
            if self._engine.workload(decision.workload).state is not WorkloadState.ADMITTED:
                continue
            try:
                self._create_admitted_pg(self._as_decided(decision), decision)
            except Exception as e:
                self._refused(decision, e)
            if decision.workload not in self._creating:
                self._notify(decision)
        self._fail_refused()
        if due and self._on_events is not None:
            self._on_events()

    def forget_finished(self, *, older_than_s: float) -> int:
        """Drop workloads that ended more than ``older_than_s`` ago (memory and store);
        returns how many. (It once compared every workload's status before and after:
        0.7 s at 100,000 pending, right after each restart and once a minute.)"""
        gone = set(self._engine.forget_finished(older_than=self._clock.now() - older_than_s))
        if gone:
            for workload in gone:
                self._payloads.pop(workload, None)
            for owned in self._owned.values():
                owned -= gone
            self._store.write(forget=gone)
            self._tell_watchers((), gone)
        return len(gone)

    # -- queries ----------------------------------------------------------------------------

    @property
    def config(self) -> QueueConfig:
        return self._engine.config

    @property
    def epoch(self) -> str:
        """Changes whenever the manager restarts (``OwnerEvents``)."""
        return self._owner_events.epoch

    def status(self) -> ManagerStatus:
        cluster_queues = tuple(self._engine.cluster_queue_status())
        return ManagerStatus(
            cluster_queues=cluster_queues,
            cohorts=tuple(self._engine.cohort_status()),
            states=self._engine.state_counts(),
            preemptions=self.preemptions,
            admissions=self.admissions,
            epoch=self.epoch,
            unmanaged=self.unmanaged_usage(cluster_queues),
            jobs=tuple(self._engine.job_families()),
        )

    def unmanaged_usage(
        self, cluster_queues: Sequence[ClusterQueueStatus] | None = None
    ) -> tuple[UnmanagedUsage, ...]:
        """What Ray says is in use on each flavor's nodes beyond the quota admissions hold
        (``cluster_queues``: the engine's statuses, when the caller has them already)."""
        held: dict[tuple[str, str], int] = {}
        if cluster_queues is None:
            cluster_queues = self._engine.cluster_queue_status()
        for cq in cluster_queues:
            for r in cq.resources:
                held[(r.flavor, r.resource)] = held.get((r.flavor, r.resource), 0) + r.usage
        config, nodes = self._engine.config, self._capacity.nodes
        beyond = unmanaged.unmanaged(unmanaged.in_use(nodes, config), held)
        whose = unmanaged.by_job(self._ray_holdings, nodes, config) if beyond else {}
        return tuple(
            UnmanagedUsage(f, r, amount, _largest_first(whose.get((f, r), {})))
            for (f, r), amount in sorted(beyond.items())
        )

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        return self._explained(self._engine.workload(workload))

    def workloads(
        self, *, owner: str | None = None, ids: Iterable[WorkloadId] | None = None
    ) -> list[WorkloadStatus]:
        if ids is not None:
            return [self._explained(self._engine.workload(w)) for w in ids if self._known(w)]
        statuses = self._engine.workloads()
        if owner is not None:
            statuses = [s for s in statuses if s.spec.owner == owner]
        return [self._explained(s) for s in statuses]

    def _explained(self, status: WorkloadStatus) -> WorkloadStatus:
        """An admitted workload Ray has not placed says why, as far as the manager can
        tell (the engine's message says only that it was admitted)."""
        why = self._not_placed(status)
        if why is None:
            return status
        return dataclasses.replace(status, message=f"{status.message}; not placed: {why.message}")

    def _not_placed(self, status: WorkloadStatus) -> NotPlaced | None:
        if status.state is not WorkloadState.ADMITTED or status.placed:
            return None
        if status.spec.kind is WorkloadKind.JOB:
            why = self._runs.why_not_running(status.spec.id)
            return None if why is None else NotPlaced(Unplaced.JOB_NOT_RUNNING, why)
        return self._capacity.why_not_placed(status, self._engine.config)

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]:
        return self._engine.pending(queue=queue, cluster_queue=cluster_queue)

    def metrics_snapshot(self) -> MetricsSnapshot:
        # Only what the manager placed or submitted can be unplaced: O(admitted), never a
        # walk over every remembered workload (this runs on the loop every second).
        unplaced: dict[tuple[str, str], int] = {}
        for workload in (*self._pgs, *self._runs.tracked()):
            if not self._engine.awaits_placement(workload):
                continue
            status = self._engine.workload(workload)
            why = self._not_placed(status)
            if why is not None and status.admission is not None:
                key = (status.admission.cluster_queue, why.reason.value)
                unplaced[key] = unplaced.get(key, 0) + 1
        snapshot = snapshot_of(self._engine, self._clock.now())
        return dataclasses.replace(
            snapshot,
            unplaced=unplaced,
            unmanaged=self.unmanaged_usage(snapshot.cluster_queues),
            jobs=tuple(self._engine.job_families()),
        )

    def demand(self) -> list[GangDemand]:
        return self._engine.demand()

    def has_jobs(self) -> bool:
        """Whether Ray's jobs need watching: runs not yet seen ended."""
        return self._runs.busy()

    def nodes(self) -> tuple[NodeShape, ...]:
        return self._capacity.nodes

    def owners(self) -> set[str]:
        """Owners with live workloads or an event log: the ones owner-death tracking must
        watch (``cancel_owner`` forgets both once the owner is dead)."""
        live = {owner for owner, owned in self._owned.items() if owned}
        return live | self._owner_events.owners()

    def unplaced_placement_groups(self) -> dict[WorkloadId, str]:
        """Admitted placement groups not yet known to be ready, by workload."""
        return {w: pg_id for w, pg_id in self._pgs.items() if self._engine.awaits_placement(w)}

    def events(self, owner: str, *, after_seq: int, epoch: str | None) -> EventBatch:
        """Events for ``owner`` after ``after_seq``; a snapshot if the client is lost."""
        return self._owner_events.batch(owner, after_seq=after_seq, epoch=epoch)

    # -- the pipeline ------------------------------------------------------------------------

    def _commit(
        self,
        touched: set[WorkloadId],
        decisions: list[Decision],
        *,
        config: QueueConfig | None = None,
        payloads: Mapping[WorkloadId, Payload] | None = None,
        acted: bool = False,
        reported: frozenset[WorkloadId] = frozenset(),
    ) -> None:
        """Schedule, persist (write-ahead), act, notify: one cycle, logged with timings.

        ``decisions`` came from the event itself; when ``acted`` their teardown is already
        done (an eviction's teardown must see the workload's state before the event).
        ``reported``: workloads whose change the owner reported itself (it ended them, or
        started them in another's place); their owner needs no event for it.
        """
        t0 = time.perf_counter()
        scheduled = self._engine.schedule()
        t1 = time.perf_counter()
        if self._engine.cut_short is not None:
            _log_cut_short(self._engine.cut_short)
        # Causal order, never a set's: the store and every watch stream follow it, so a
        # watcher sees a finish before the admission it made room for.
        ids = dict.fromkeys(
            [*sorted(touched), *(d.workload for d in decisions), *(d.workload for d in scheduled)]
        )
        statuses = [self._engine.workload(w) for w in ids if self._known(w)]
        if statuses or config is not None:
            self._store.write(config=config, workloads=statuses, payloads=payloads)
            self._tell_watchers(statuses, ())
        t2 = time.perf_counter()
        notified: set[WorkloadId] = set()
        for decision in decisions:
            if not acted:
                self._carry_out(decision)
            if decision.workload not in reported and not self._told_later(decision.workload):
                self._notify(decision)
            notified.add(decision.workload)
        for decision in scheduled:
            self._carry_out(decision)
            if not self._told_later(decision.workload):
                # A held admission is told when its group is created (``place_due``), one
                # in flight when Ray has it (``placements_settled``).
                self._notify(decision)
            notified.add(decision.workload)
        for status in statuses:
            if status.spec.id in notified or status.spec.id in reported:
                continue
            if status.state.is_terminal:
                self._owner_events.state(status)
        self._fail_refused()
        t3 = time.perf_counter()
        if scheduled or decisions:
            _log_cycle(len(scheduled) + len(decisions), len(statuses), (t0, t1, t2, t3))
        if self._on_cycle is not None:
            self._on_cycle(t1 - t0, [*decisions, *scheduled])
        leases_changed = self._owner_events.publish_leases(self._engine.lease_states())
        if self._on_events is not None and (notified or statuses or leases_changed):
            self._on_events()

    def watch_statuses(self, watcher: StatusWatcher) -> None:
        """Tell ``watcher`` of every change as it is persisted: the changed workloads'
        statuses, then (separately) the ids of finished workloads forgotten. Called on the
        core's thread, inside the call that made the change."""
        self._status_watchers.append(watcher)

    def _tell_watchers(
        self, statuses: Sequence[WorkloadStatus], forgotten: Collection[WorkloadId]
    ) -> None:
        for watcher in self._status_watchers:
            watcher(statuses, forgotten)

    def _carry_out(self, decision: Decision) -> None:
        try:
            self._act(decision)
        except Exception as e:
            self._refused(decision, e)

    def _refused(self, decision: Decision, error: Exception) -> None:
        # Ray refused (bad label selector, job server down…): the workload cannot run as
        # admitted, so it fails visibly (``_fail_refused``) instead of holding quota forever.
        logger.exception(
            "carrying out a decision failed",
            extra={"decision": decision.kind.value, "workload": decision.workload},
        )
        self._action_failures.append((decision.workload, f"{type(error).__name__}: {error}"))

    def _fail_refused(self) -> None:
        failures, self._action_failures = self._action_failures, []
        for workload, message in failures:
            if self._engine.workload(workload).state is WorkloadState.ADMITTED:
                self._finish(workload, failed=True, message=f"Ray refused it: {message}")
                failed = self._engine.workload(workload)
                self._store.write(workloads=[failed])
                self._tell_watchers([failed], ())
                self._owner_events.state(failed)

    def _act(self, decision: Decision) -> None:
        if decision.kind is DecisionKind.ADMIT and decision.reason == HANDED_OVER:
            # A task that took a quota over already runs where its predecessor ran.
            self.admissions += 1
            return
        status = self._as_decided(decision)
        if decision.kind is DecisionKind.ADMIT:
            self.admissions += 1
            if status.spec.kind in _PG_KINDS or self._wants_slot(status):
                if not self._pacer.hold(decision, self._clock.now()):
                    self._create_admitted_pg(status, decision)
            elif status.spec.kind is WorkloadKind.JOB:
                # Submitted now, or once its previous run is listed ended (``job_runs``).
                self._runs.admit(status.spec.id, _submission_id(status), self._clock.now())
        elif decision.kind in _ENDS:
            self._teardown_decision(decision)

    def _as_decided(self, decision: Decision) -> WorkloadStatus:
        """The workload as the decision saw it. An ADMIT can be followed by a PREEMPT of
        the same workload in one cycle; the admission is carried out (and then undone) in
        order, so it must use the decision's admission, not the current (empty) one."""
        status = self._engine.workload(decision.workload)
        if decision.admission is not None and status.admission != decision.admission:
            status = dataclasses.replace(status, admission=decision.admission)
        return status

    def _teardown_decision(self, decision: Decision) -> None:
        if decision.kind is DecisionKind.PREEMPT:
            self.preemptions += 1
        if decision.kind in _ENDS:
            self._teardown(self._engine.workload(decision.workload))

    def _teardown(self, status: WorkloadStatus) -> None:
        """Remove whatever Ray objects the manager holds for the workload (idempotent)."""
        workload = status.spec.id
        self._pacer.drop(workload)
        self._drop_pg(workload)
        self._runs.release(workload, self._clock.now())

    def _drop_pg(self, workload: WorkloadId) -> None:
        """Remove the workload's group, created or in flight (``placement_flight``)."""
        created = self._pgs.pop(workload, None) is not None
        if self._creating.pop(workload, None) is not None or created:
            self._remove_pg(workload)

    def _remove_pg(self, workload: WorkloadId) -> None:
        if self._placements is not None and not self._is_task(workload):
            self._placements.remove(workload)
        else:
            self._actions.remove_placement_group(workload)
        self._pacer.released(self._clock.now())

    def _is_task(self, workload: WorkloadId) -> bool:
        """Whether the workload is a task (whose slot is made and removed at once, never
        by ``placements``: a slot moves between tasks by hand-over, which must see the
        removals and creations before it, and its owner must hear of it in the cycle
        that admitted it, or it hands over to a task the cycle admitted meanwhile)."""
        return self._known(workload) and self._engine.workload(workload).spec.kind is (
            WorkloadKind.TASK
        )

    def _create_admitted_pg(self, status: WorkloadStatus, decision: Decision | None) -> None:
        """Create an admission's group; with ``placements``, its owner is told
        ``decision`` once Ray has it (``placements_settled``), else by the caller now."""
        self._create_pg(status, decision)
        if status.spec.id in self._pgs:
            self._placed_if_slot(status.spec.id)

    def _placed_if_slot(self, workload: WorkloadId) -> None:
        if self._engine.workload(workload).spec.kind is WorkloadKind.TASK:
            # A slot: its owner launches the task at once, as any task; placement is
            # Ray's to wait for, not the manager's (no ready-watch for slots).
            self._engine.mark_placed(workload)

    def _create_pg(self, status: WorkloadStatus, decision: Decision | None = None) -> None:
        bundles, selectors = self._bundles(status)
        workload = status.spec.id
        if self._placements is None or status.spec.kind is WorkloadKind.TASK:
            self._pgs[workload] = self._actions.create_placement_group(
                workload, bundles, status.spec.strategy, selectors
            )
            return
        flight = Flight(next(self._tickets), decision)
        self._creating[workload] = flight
        self._placements.create(
            workload,
            flight.ticket,
            bundles,
            status.spec.strategy,
            selectors,
            watch=True,
        )

    def _told_later(self, workload: WorkloadId) -> bool:
        """Whether the owner hears of the workload's admission once its group exists."""
        return self._pacer.holds(workload) or workload in self._creating

    def placements_settled(
        self,
        *,
        created: Sequence[tuple[WorkloadId, int, str]] = (),
        refused: Sequence[tuple[WorkloadId, int, Exception]] = (),
        placed: Sequence[tuple[WorkloadId, str]] = (),
    ) -> None:
        """Ray's answers to ``placements``: groups created (workload, ticket, hex id),
        creations refused (workload, ticket, error), groups placed (workload, hex id).
        An answer for a creation no longer in flight (its workload left, and the group is
        removed after it) is ignored."""
        told = False
        for workload, ticket, pg_id in created:
            flight = self._creating.get(workload)
            if flight is None or flight.ticket != ticket:
                continue
            del self._creating[workload]
            self._pgs[workload] = pg_id
            self._placed_if_slot(workload)
            if flight.decision is not None:
                self._notify(flight.decision)
                told = True
        for workload, ticket, error in refused:
            flight = self._creating.get(workload)
            if flight is None or flight.ticket != ticket:
                continue
            del self._creating[workload]
            if flight.decision is not None:
                self._refused(flight.decision, error)
            else:
                logger.error(
                    "recreating a placement group failed",
                    extra={"workload": workload, "error": str(error)},
                )
        for workload, pg_id in placed:
            if self._pgs.get(workload) == pg_id and self._known(workload):
                told |= self._engine.mark_placed(workload)
        if refused:
            self._fail_refused()
            told = True
        if told and self._on_events is not None:
            self._on_events()

    def _wants_slot(self, status: WorkloadStatus) -> bool:
        """Whether an admitted task gets a slot (``slots.wants_slot``)."""
        return wants_slot(self._engine, status, self._payloads.get(status.spec.id, {}))

    def _move_slot(self, done: WorkloadId, successor: WorkloadId) -> dict[WorkloadId, Payload]:
        """Give ``done``'s slot to the task that took its quota over; returns the payload
        to persist, so a restarted manager knows whose group it is (Ray knows it by the
        name of the task it was created for)."""
        pg_id = self._pgs.pop(done, None)
        if pg_id is None:
            return {}
        self._pgs[successor] = pg_id
        self._actions.move_placement_group(done, successor)
        created_for = self._payloads.get(done, {}).get("placement_group_of", done)
        payload = {**self._payloads.get(successor, {}), "placement_group_of": created_for}
        self._payloads[successor] = payload
        return {successor: payload}

    def _submit_run(self, workload: WorkloadId, submission_id: str) -> None:
        """Hand a run to Ray (``JobRuns``' submit); raises if the workload is not admitted
        any more (preempted in the cycle that admitted it: its release follows)."""
        status = self._engine.workload(workload)
        if status.admission is None:
            raise RuntimeError(f"{workload} is no longer admitted")
        run = JobRun(workload, submission_id)
        payload = self._payloads.get(status.spec.id, {})
        extra = self._job_env(run.submission_id) if self._job_env is not None else {}
        if extra:
            runtime_env = dict(payload.get("runtime_env") or {})
            runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **extra}
            payload = {**payload, "runtime_env": runtime_env}
        self._actions.submit_job(run, payload, self._label_selector(status))

    def live_job(self, submission_id: str) -> tuple[str, WorkloadId] | None:
        """The Queue and workload of the job whose current run is ``submission_id``;
        ``None`` when that run is not live (ended, stopped, or a run before the current
        one)."""
        if not self._runs.live(submission_id):
            return None
        workload = job_of_submission(submission_id)
        return self._engine.workload(workload).spec.queue, workload

    def _finish(self, workload: WorkloadId, *, failed: bool, message: str) -> set[WorkloadId]:
        if not self._known(workload):
            return set()
        before = self._engine.workload(workload)
        try:
            self._engine.finish(workload, failed=failed, message=message)
        except InvalidTransitionError:
            return set()
        # A job run that ended by itself is no longer its workload's (``JobRuns.observe``)
        # and gets no stop; a PG is removed with its work done.
        self._teardown(before)
        return {workload}

    # -- events for owners (``owner_events``) ---------------------------------------------

    def _notify(self, decision: Decision) -> None:
        self._owner_events.decided(self._as_decided(decision), decision)

    def _admitted_shape(self, status: WorkloadStatus) -> AdmittedShape:
        return self._label_selector(status), tuple(self._bundles(status)[0])

    # -- helpers ---------------------------------------------------------------------------------

    def _spec(self, request: SubmitRequest) -> WorkloadSpec:
        # Strictly increasing creation times keep a batch in submission order (FIFO).
        created = max(self._clock.now(), self._last_created + 1e-6)
        self._last_created = created
        return request.to_spec(created)

    def _own(self, spec: WorkloadSpec) -> None:
        if spec.owner:
            self._owned.setdefault(spec.owner, set()).add(spec.id)

    def _known(self, workload: WorkloadId) -> bool:
        return self._engine.knows(workload)

    def _label_selector(self, status: WorkloadStatus) -> dict[str, str]:
        return label_selector(self._engine.config, status)

    def _bundles(
        self, status: WorkloadStatus
    ) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
        """The admitted bundles in Ray units and their label selectors (``bundles``)."""
        return ray_bundles(self._engine.config, status, self._payloads.get(status.spec.id, {}))


def _log_cut_short(cut: CutShort) -> None:
    logger.error(
        "schedule() stopped: a scheduling loop, which is a bug; the next cycle goes on",
        extra={
            "rounds": cut.rounds,
            "last_decisions": ", ".join(f"{d.kind.value} {d.workload}" for d in cut.last_decisions),
        },
    )


def _log_cycle(decisions: int, persisted: int, marks: tuple[float, float, float, float]) -> None:
    """One line per cycle, with each phase's duration (``marks``: perf_counter at its
    start, after scheduling, after persisting, at its end). At INFO only when slow, so a
    busy manager does not ship a log line to the driver for every submission."""
    t0, t1, t2, t3 = marks
    logger.log(
        logging.INFO if t3 - t0 > _SLOW_CYCLE_S else logging.DEBUG,
        "cycle",
        extra={
            "decisions": decisions,
            "persisted": persisted,
            "schedule_ms": round((t1 - t0) * 1e3, 1),
            "persist_ms": round((t2 - t1) * 1e3, 1),
            "act_ms": round((t3 - t2) * 1e3, 1),
        },
    )


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Recovery builds a few objects per stored workload and frees none, so Python's cyclic
    collector (run every 700 net allocations, each older generation scanned ever more
    often) rescans the growing state again and again: 43 % of the CPU of recovering
    100,000 workloads (6.5 s → 3.7 s without it). Nothing recovery builds is cyclic
    garbage, so pausing it loses nothing.

    Resumed as is, the collector would then scan all of it at its first young collection
    (in the youngest generation: ~0.4 s at 100,000 workloads, still inside recovery) and
    again at the next middle one (0.9 s, in the first moments of serving). Freezing and
    at once unfreezing moves every object to the oldest generation without scanning it
    (both are list splices), where only a full collection looks at it, as it would have
    anyway; nothing is exempted from collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _submission_id(status: WorkloadStatus) -> str:
    return job_submission_id(status.spec.id, job_runs(status))


def _largest_first(amounts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(amounts.items(), key=lambda item: (-item[1], item[0])))
