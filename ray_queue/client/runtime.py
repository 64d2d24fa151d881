"""The per-driver client runtime: batched submission, owner events, completion reports.

One ``ClientRuntime`` per process (``ray_queue.init`` creates it). It keeps the manager
off the data path and off the per-task round trip:

- submissions go into a buffer that a sender thread flushes as one actor call per batch
  (whatever accumulated while the previous call was in flight);
- a poller thread long-polls the manager for this owner's events (admitted, preempted,
  cancelled…) and hands each to its handle, which launches or cancels the real Ray work;
- a watcher thread notices launched tasks finishing and reports them, batched, so their
  quota is released — or, while the manager says nothing else waits for that quota (the
  task's *lease* is open), starts this driver's next identical queued task in the
  finished one's place at once and reports the hand-over afterwards, the way Ray's own
  owners reuse a worker lease for tasks of one scheduling class. The manager accepts a
  hand-over only if it is exactly what its next cycle would have done, and otherwise
  tells the handle to stop and wait for its own admission. When the manager gave the
  admitted task a *slot* (a placement group of its shape, ``slots.py``), the next ones
  are queued in Ray behind it ahead of time, so Ray runs them back to back.

What a caller must see at once (unknown queue or priority class, negative resources, a
bundle that can never fit) is checked synchronously: the catalogue of queues and priority
classes is cached, and the first submission of each new shape goes through immediately.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import ray

from ray_queue.client.slots import PIPELINE_MAX_RUN_S, SLOT_DEPTH, Slot, new_slot
from ray_queue.engine.model import (
    BundleGroup,
    LeaseKey,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    WorkloadStatus,
    to_milli,
)
from ray_queue.errors import (
    InvalidWorkloadError,
    ManagerUnavailableError,
    RayQueueError,
    UnknownPriorityClassError,
    UnknownQueueError,
)
from ray_queue.wire import (
    Catalog,
    ClientEvent,
    HandOver,
    SubmitRequest,
    SubmitResult,
)

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 5.0
#: How long reports of started and finished work gather before they are sent...
_REPORT_BATCH_S = 0.005
#: ...and hand-overs, when nothing else is to be sent.
_HANDOVER_BATCH_S = 0.02
#: How long the watcher collects completions while every task it watches is in a slot.
_SLOT_SWEEP_S = 0.002
#: Forgotten workloads remembered (``forget``): enough for any readmission in flight.
_FORGOTTEN_MAX = 100_000
#: Successor queues are compacted once they are this long (or twice their last size).
_COMPACT_MIN = 1024


class Tracked(Protocol):
    """A client handle the runtime routes events to."""

    workload: WorkloadId

    def _on_event(self, event: ClientEvent) -> None: ...

    def _on_submitted(self, result: SubmitResult) -> None: ...


class Unstaged(NamedTuple):
    """What taking a task out of a slot did (``Successor._unstage``)."""

    #: It was queued there, not admitted, and has left.
    left: bool
    #: The Ray ref to cancel so it waits for an admission of its own again; ``None`` if it
    #: had returned already (then it is done: ``ClientRuntime.settled``).
    cancel: Any = None


class Successor(Protocol):
    """A queued task that may start in a finished identical task's place."""

    workload: WorkloadId
    lease_key: LeaseKey
    #: The manager gives it a slot when admitted with a backlog (``_wants_slot``).
    slot_eligible: bool

    @property
    def waiting(self) -> bool:
        """Queued and not started (a hint: read without the handle's lock)."""
        ...

    def _take_over(self, label_selector: Mapping[str, str]) -> bool:
        """Start now, with the predecessor's node labels, if still waiting; whether it did."""
        ...

    def _stage(self, slot: Slot) -> bool:
        """Queue the real task in ``slot`` behind its holder, if still waiting; whether it
        did. It stays pending (not admitted) until it takes the slot over."""
        ...

    def _promote(self, slot: Slot) -> bool:
        """Take the slot's quota over from the holder that just returned, if still queued
        in ``slot``; whether it did."""
        ...

    def _unstage(self, slot: Slot) -> Unstaged:
        """If queued in ``slot`` and not admitted, take it out."""
        ...

    @property
    def returned(self) -> bool:
        """Its real task returned (a hint: read without the handle's lock)."""
        ...

    def in_slot(self, slot: Slot) -> bool:
        """Its real task was launched in ``slot`` and has not left it (a hint)."""
        ...


@dataclass(slots=True)
class _Running:
    handle: Any
    attempt: int
    in_slot: bool


def new_workload_id(kind: WorkloadKind, namespace: str | None = None) -> WorkloadId:
    """A fresh id, in ``namespace`` (the caller's, from the manager's catalog) if given."""
    name = f"{kind.value[:2]}-{uuid.uuid4().hex[:16]}"
    return WorkloadId(f"{namespace}/{name}" if namespace else name)


def to_bundle(resources: dict[str, float], what: str) -> dict[str, int]:
    """Ray units → milli-units, refusing negative amounts in the caller's frame."""
    out = {}
    for name, amount in resources.items():
        if amount is None:
            continue
        if amount < 0:
            raise InvalidWorkloadError(
                f"{what}: {name} = {amount:g} is negative; resource amounts must be >= 0"
            )
        out[name] = to_milli(amount)
    return out


def require_names(catalog: Catalog, queue: str, priority: str | None) -> None:
    """Raise the typed error for a queue or priority class this caller cannot use."""
    if queue not in catalog.queues:
        known = ", ".join(sorted(catalog.queues)) or "none"
        if catalog.restricted:
            # A tenant is told the same of another tenant's Queue as of one that does not
            # exist: the names of others' Queues are not its business.
            raise UnknownQueueError(
                f"queue {queue!r} does not exist or this token may not use it (its queues: "
                f"{known}); submit to one of those, or ask an admin for access"
            )
        raise UnknownQueueError(
            f"queue {queue!r} does not exist (known queues: {known}); "
            "submit to one of those or apply a config that defines it"
        )
    if priority is not None and priority not in catalog.priority_classes:
        known = ", ".join(sorted(catalog.priority_classes)) or "none"
        raise UnknownPriorityClassError(
            f"priority class {priority!r} does not exist (known: {known}); "
            "use one of those, omit it for the default, or define it in the config"
        )


def call_manager(ref: Any, timeout_s: float = 120.0) -> Any:
    """``ray.get`` on a manager call: the manager's own typed error as it raised it (not
    wrapped in Ray's ``RayTaskError``), ``ManagerUnavailableError`` when it cannot be
    reached."""
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, RayQueueError):
            raise e.cause from None
        raise
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
        raise ManagerUnavailableError(f"the queue manager did not answer: {e}") from e


class ClientRuntime:
    def __init__(self, manager: Any, *, queue: str, priority: str | None) -> None:
        self.manager = manager
        self.owner = ray.get_runtime_context().get_job_id()
        self.queue = queue
        self.priority = priority
        self._lock = threading.Condition()
        #: Held while a batch is being sent: orders batches and lets ``flush`` wait for one
        #: in flight.
        self._send_lock = threading.Lock()
        self._buffer: list[tuple[SubmitRequest, Tracked]] = []
        self._reports_started: list[WorkloadId] = []
        self._reports_finished: list[tuple[WorkloadId, bool, str]] = []
        self._reports_handovers: list[HandOver] = []
        self._handles: dict[WorkloadId, Tracked] = {}
        #: Workloads whose handles this process dropped once their work ended, oldest
        #: first (an insertion-ordered dict as a bounded set).
        self._forgotten: dict[WorkloadId, None] = {}
        #: What the manager last said of each lease key (``ClientEvent.lease_open``).
        self._lease_open: dict[LeaseKey, bool] = {}
        #: Queued tasks the manager knows of, oldest first, that may take a slot over.
        #: Entries that were admitted or ended meanwhile are skipped when popped.
        self._successors: dict[LeaseKey, deque[Successor]] = {}
        self._compact_at: dict[LeaseKey, int] = {}
        #: Lease keys whose last task returned within ``PIPELINE_MAX_RUN_S``: only behind
        #: those are tasks queued in a slot (``_fill``).
        self._pipelined: set[LeaseKey] = set()
        #: Live slots per lease key (``open_slot`` / ``_close_slot``).
        self._slots_open: dict[LeaseKey, int] = {}
        self._accepted_shapes: set[Hashable] = set()
        self._catalog = Catalog(frozenset(), frozenset())
        self._running: dict[Any, _Running] = {}
        self._running_in_slots = 0
        self._running_cv = threading.Condition()
        #: Held by the watcher while it collects and handles one round of completions,
        #: and by nothing else: a test holds it to stand in for a driver too busy to see
        #: tasks return, without blocking the threads that launch and track tasks.
        self.watch_round = threading.Lock()
        self._stop = threading.Event()
        self._epoch: str | None = None
        self._seq = 0
        #: The long poll in flight, so ``close`` can cancel it instead of waiting it out.
        self._poll_ref: Any = None
        self.refresh_catalog()
        self._threads = [
            threading.Thread(target=self._send_loop, name="ray-queue-sender", daemon=True),
            threading.Thread(target=self._poll_loop, name="ray-queue-poller", daemon=True),
            threading.Thread(target=self._watch_loop, name="ray-queue-watcher", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        atexit.register(self.close)

    # -- catalogue and validation ---------------------------------------------------------

    def refresh_catalog(self) -> None:
        self._catalog = self.call(self.manager.catalog.remote())
        self._accepted_shapes.clear()

    def check_names(self, queue: str, priority: str | None) -> None:
        if queue not in self._catalog.queues or (
            priority is not None and priority not in self._catalog.priority_classes
        ):
            self.refresh_catalog()
        require_names(self._catalog, queue, priority)

    # -- submission -------------------------------------------------------------------------

    def request(
        self,
        kind: WorkloadKind,
        groups: Sequence[BundleGroup],
        *,
        queue: str | None,
        priority: str | None,
        name: str = "",
        **fields: Any,
    ) -> SubmitRequest:
        queue = queue or self.queue
        priority = priority if priority is not None else self.priority
        self.check_names(queue, priority)
        return SubmitRequest(
            # The manager would put a bare id in our namespace; naming it whole here keeps
            # the id we track ours and the manager's the same.
            id=new_workload_id(kind, self._catalog.namespace),
            queue=queue,
            bundle_groups=tuple(groups),
            kind=kind,
            priority_class=priority,
            owner=self.owner,
            name=name,
            **fields,
        )

    def submit(self, request: SubmitRequest, handle: Tracked, *, sync: bool = False) -> None:
        """Queue ``request``; with ``sync`` (or a shape not seen yet) wait for the manager's
        answer and raise its error here, in the caller."""
        groups = tuple((tuple(sorted(g.resources.items())), g.count) for g in request.bundle_groups)
        shape = (request.queue, request.priority_class, request.kind, groups)
        with self._lock:
            self._handles[request.id] = handle
            if not sync and shape in self._accepted_shapes:
                self._buffer.append((request, handle))
                self._lock.notify_all()
                return
        # Behind anything buffered or in flight, so the manager sees submissions in order.
        with self._send_lock:
            with self._lock:
                batch = self._take_buffer()
            batch.append((request, handle))
            results = self._send(batch)
        result = results[-1]
        if result.error is not None:
            raise result.error
        self._accepted_shapes.add(shape)

    def _take_buffer(self) -> list[tuple[SubmitRequest, Tracked]]:
        batch, self._buffer = self._buffer, []
        return batch

    def _send(self, batch: list[tuple[SubmitRequest, Tracked]]) -> list[SubmitResult]:
        results: list[SubmitResult] = self.call(
            self.manager.submit_many.remote([r for r, _ in batch], brief=True)
        )
        for (_, handle), result in zip(batch, results, strict=True):
            if result.error is not None:
                with self._lock:
                    self._handles.pop(result.workload, None)
            handle._on_submitted(result)
        return results

    def report_started(self, workload: WorkloadId) -> None:
        with self._lock:
            self._reports_started.append(workload)
            self._lock.notify_all()

    def report_finished(self, workload: WorkloadId, *, failed: bool, message: str = "") -> None:
        with self._lock:
            self._reports_finished.append((workload, failed, message))
            self._lock.notify_all()

    def add_successor(self, handle: Successor) -> None:
        with self._lock:
            key = handle.lease_key
            successors = self._successors.setdefault(key, deque())
            successors.append(handle)
            # While the lease stays closed nothing is popped, and tasks admitted in their
            # own right stay behind: drop them now and then (amortised O(1) per task).
            if len(successors) > self._compact_at.get(key, _COMPACT_MIN):
                waiting = deque(s for s in successors if s.waiting)
                self._successors[key] = waiting
                self._compact_at[key] = max(_COMPACT_MIN, 2 * len(waiting))

    def task_finished(
        self, handle: Successor, label_selector: Mapping[str, str], message: str
    ) -> None:
        """A launched task returned: start an identical queued one in its place if its
        lease is open, else give the quota back."""
        key = handle.lease_key
        with self._lock:
            successors = self._successors.get(key)
            open_ = self._lease_open.get(key, False)
            slots_open = self._slots_open.get(key, 0)
        if open_ and successors and handle.slot_eligible and not slots_open:
            # It ran without a slot (it was admitted alone): rather than hand over one
            # task at a time, give the quota back; the next admission comes with a slot.
            # Not while slots of its kind are open: the manager would admit the oldest
            # waiting task, likely one queued in a slot already, where it would wait.
            open_ = False
        while open_ and successors:
            try:
                successor = successors.popleft()
            except IndexError:
                break
            if successor._take_over(label_selector):
                with self._lock:
                    self._reports_handovers.append(HandOver(handle.workload, successor.workload))
                    self._forget_locked(handle.workload)
                    self._lock.notify_all()
                return
        self.report_finished(handle.workload, failed=False, message=message)
        self.forget(handle.workload)

    # -- slots (see slots.py) -------------------------------------------------------------

    def open_slot(self, pg_id: str, holder: Successor) -> Slot:
        """A slot for an admitted task the manager made a placement group for."""
        slot = new_slot(pg_id, holder.lease_key)
        slot.tasks.append(holder)
        with self._lock:
            self._slots_open[slot.lease_key] = self._slots_open.get(slot.lease_key, 0) + 1
        return slot

    def _close_slot(self, slot: Slot) -> None:
        """Nothing more is queued in ``slot`` (holding its lock)."""
        if not slot.alive:
            return
        slot.alive = False
        with self._lock:
            left = self._slots_open.pop(slot.lease_key) - 1
            if left:
                self._slots_open[slot.lease_key] = left

    def note_run(self, key: LeaseKey, seconds: float) -> None:
        """A task of ``key`` returned ``seconds`` after it started (as seen here)."""
        if seconds <= PIPELINE_MAX_RUN_S:
            self._pipelined.add(key)
        else:
            self._pipelined.discard(key)

    def _fill(self, slot: Slot) -> None:
        """Queue waiting identical tasks in ``slot`` behind its holder (holding its lock),
        while the lease is open: up to ``SLOT_DEPTH`` once a task has run to the end in
        it and while its kind is short, else just the next holder."""
        depth = SLOT_DEPTH if slot.warm and slot.lease_key in self._pipelined else 1
        while slot.alive and len(slot.tasks) < depth:
            with self._lock:
                successors = self._successors.get(slot.lease_key)
                if not successors or not self._lease_open.get(slot.lease_key, False):
                    return
                successor = successors.popleft()
            if successor._stage(slot):
                slot.tasks.append(successor)

    def slot_task_returned(self, slot: Slot, *, ran_in_it: bool = True) -> None:
        """A task in ``slot`` returned (``ran_in_it``; else it had run elsewhere and
        ``slot`` is new): each holder at the front that has returned hands the quota to
        the next one queued behind it, or gives it back (and with it the placement
        group) when none is left."""
        with slot.lock:
            slot.warm = slot.warm or ran_in_it
            while slot.tasks:
                if not slot.tasks[0].returned:
                    if slot.tasks[0].in_slot(slot):
                        break
                    # It left the slot (admitted on its own, preempted, cancelled): it
                    # must not keep the holders behind it waiting.
                    slot.tasks.popleft()
                    continue
                holder = slot.tasks.popleft()
                self._fill(slot)
                while slot.tasks and not slot.tasks[0]._promote(slot):
                    slot.tasks.popleft()
                if slot.tasks:
                    with self._lock:
                        handover = HandOver(holder.workload, slot.tasks[0].workload, slot.pg_id)
                        self._reports_handovers.append(handover)
                        self._forget_locked(holder.workload)
                        self._lock.notify_all()
                    continue
                self._close_slot(slot)
                self.report_finished(holder.workload, failed=False, message="task returned")
                self.forget(holder.workload)

    def pass_admission_on(self, handle: Successor, event: ClientEvent) -> None:
        """``handle`` was admitted on its own after it had already run (queued in a slot
        while the manager was behind): its admission goes to the next waiting identical
        task, in the slot made for it if any, as if it had just returned there."""
        if event.placement_group_id is None:
            self.task_finished(handle, event.label_selector, "had already run")
            return
        slot = self.open_slot(event.placement_group_id, handle)
        self.slot_task_returned(slot, ran_in_it=False)

    def abandon(self, slot: Slot) -> None:
        """``slot``'s placement group is gone: the tasks queued in it that were not
        admitted go back to waiting (their Ray tasks cancelled, since one of them may be
        running and Ray would retry it into the removed group forever)."""
        with slot.lock:
            self._close_slot(slot)
            stopped = [(task, task._unstage(slot)) for task in slot.tasks]
            # Admitted ones stay, so a holder that still returns gives its quota back.
            slot.tasks = deque(task for task, unstaged in stopped if not unstaged.left)
        for task, unstaged in stopped:
            if not unstaged.left:
                continue
            if unstaged.cancel is None:
                self.settled(task, WorkloadState.PENDING)
                continue
            with contextlib.suppress(Exception):
                ray.cancel(unstaged.cancel, force=True)
            self.add_successor(task)

    def settled(self, handle: Successor, state: WorkloadState) -> None:
        """``handle`` returned before a preemption, refusal or lost slot reached it, and
        the manager has it in ``state``: if admitted it finishes now; if pending, its
        admission, when it comes, is answered "had already ended" (the handle is
        forgotten, so it is never launched again)."""
        if state is WorkloadState.ADMITTED:
            self.report_finished(handle.workload, failed=False, message="task returned")
        self.forget(handle.workload)

    def cancel(self, workloads: Sequence[WorkloadId]) -> list[bool]:
        self.flush()
        result: list[bool] = self.call(self.manager.cancel.remote(list(workloads)))
        return result

    def flush(self) -> None:
        """Send everything buffered now (submissions and reports) and wait until the
        manager has it, including a batch the sender thread already has in flight: after
        ``flush`` this driver reads its own writes."""
        with self._send_lock:
            with self._lock:
                batch = self._take_buffer()
                started, self._reports_started = self._reports_started, []
                finished, self._reports_finished = self._reports_finished, []
                handovers, self._reports_handovers = self._reports_handovers, []
            try:
                if batch:
                    self._send(batch)
                    batch = []
                if started or finished or handovers:
                    self.call(self.manager.report.remote(started, finished, handovers))
            except ManagerUnavailableError:
                # Put it all back in front: nothing is dropped while the manager restarts.
                with self._lock:
                    self._buffer[:0] = batch
                    self._reports_started[:0] = started
                    self._reports_finished[:0] = finished
                    self._reports_handovers[:0] = handovers
                raise

    # -- running tasks --------------------------------------------------------------------

    def watch(self, ref: Any, handle: Any, attempt: int, *, in_slot: bool = False) -> None:
        with self._running_cv:
            self._running[ref] = _Running(handle, attempt, in_slot)
            self._running_in_slots += in_slot
            self._running_cv.notify_all()

    def forget(self, workload: WorkloadId) -> None:
        with self._lock:
            self._forget_locked(workload)

    def _forget_locked(self, workload: WorkloadId) -> None:
        """Drop the handle of work that ended here (returned, or handed its quota over),
        remembering that it was ours (holding ``_lock``)."""
        if self._handles.pop(workload, None) is not None:
            self._forgotten[workload] = None
            if len(self._forgotten) > _FORGOTTEN_MAX:
                del self._forgotten[next(iter(self._forgotten))]

    # -- threads -------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._has_work() and not self._stop.is_set():
                    self._lock.wait(0.5)
                delay = self._send_delay()
            # Submissions go at once: while one batch is in flight the next one
            # accumulates, so a burst becomes a few large calls and a lone submission is
            # not delayed. Reports may wait a moment: a call costs the manager about a
            # millisecond of CPU, and tasks returning a thousand times a second would
            # otherwise cost it a call each.
            if delay:
                self._stop.wait(delay)
            try:
                self.flush()
            except Exception:
                if not self._stop.is_set():
                    logger.exception("ray_queue: sending a batch to the manager failed")
                    time.sleep(0.5)

    def _send_delay(self) -> float:
        """How long what is buffered may wait (holding ``_lock``): nothing for
        submissions; a moment for reports that free or claim quota; longer for hand-overs
        alone, which change nothing anyone else could use (the quota stays taken)."""
        if self._buffer:
            return 0.0
        if self._reports_started or self._reports_finished:
            return _REPORT_BATCH_S
        return _HANDOVER_BATCH_S

    def _has_work(self) -> bool:
        return bool(
            self._buffer
            or self._reports_started
            or self._reports_finished
            or self._reports_handovers
        )

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_ref = self.manager.wait_events.remote(
                    self.owner, self._seq, self._epoch, POLL_TIMEOUT_S
                )
                batch = ray.get(self._poll_ref, timeout=POLL_TIMEOUT_S + 30)
            except (Exception, SystemExit) as e:
                # SystemExit: Ray raises it in threads blocked in ray.get at shutdown.
                if self._stop.is_set() or isinstance(e, SystemExit):
                    return
                logger.warning("ray_queue: polling the manager failed (%s); retrying", e)
                time.sleep(0.5)
                continue
            self._epoch = batch.epoch
            self._seq = batch.seq
            for event in batch.events:
                if event.lease_key is not None:
                    with self._lock:
                        self._lease_open[event.lease_key] = event.lease_open
                    continue
                with self._lock:
                    handle = self._handles.get(event.workload)
                    if event.state.is_terminal:
                        # The manager is done with it: no event for it will follow.
                        self._handles.pop(event.workload, None)
                if handle is None:
                    if (
                        event.decision == "admit"
                        and event.kind is not WorkloadKind.JOB
                        and event.workload in self._forgotten
                    ):
                        # Handles are forgotten only once their work ended, so this is work
                        # that ended while the manager preempted and readmitted it: give
                        # the quota back instead of holding it forever. Work this process
                        # never knew is another process's of the same Ray job (they share
                        # an owner): not ours to end.
                        self.report_finished(
                            event.workload, failed=False, message="had already ended"
                        )
                    continue
                try:
                    handle._on_event(event)
                except Exception:
                    logger.exception("ray_queue: handling %s failed", event)

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            with self._running_cv:
                while not self._running and not self._stop.is_set():
                    self._running_cv.wait(0.5)
                refs = list(self._running)
                all_in_slots = self._running_in_slots == len(refs)
            if not refs:
                continue
            with self.watch_round:
                self._watch_round(refs, all_in_slots)

    def _watch_round(self, refs: list[Any], all_in_slots: bool) -> None:
        try:
            if all_in_slots:
                # Ray runs what is queued in a slot without waiting for us: collect
                # completions in small batches rather than waking for each one.
                done, _ = ray.wait(
                    refs, num_returns=len(refs), timeout=_SLOT_SWEEP_S, fetch_local=False
                )
            else:
                # Block briefly for the first to finish, then sweep up all that have;
                # tasks launched meanwhile join the next round, so keep the block short.
                done, rest = ray.wait(refs, num_returns=1, timeout=0.01, fetch_local=False)
                if done and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
                    done += more
        except Exception:
            logger.exception("ray_queue: watching tasks failed")
            time.sleep(0.1)
            return
        for ref in done:
            with self._running_cv:
                running = self._running.pop(ref, None)
                if running is not None:
                    self._running_in_slots -= running.in_slot
            if running is not None:
                running.handle._on_done(ref, running.attempt)

    # -- helpers --------------------------------------------------------------------------------

    def call(self, ref: Any, timeout_s: float = 120.0) -> Any:
        return call_manager(ref, timeout_s)

    def status(self, workload: WorkloadId) -> WorkloadStatus:
        self.flush()
        result: WorkloadStatus = self.call(self.manager.workload.remote(workload))
        return result

    def close(self) -> None:
        if self._stop.is_set():
            return
        with contextlib.suppress(Exception):
            if ray.is_initialized():
                self.flush()
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        with self._running_cv:
            self._running_cv.notify_all()
        # A thread still inside a Ray call when the driver disconnects can take the whole
        # process down with it (Ray's core worker exits), so end the long poll and wait
        # for every thread before returning.
        if self._poll_ref is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.cancel(self._poll_ref)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=POLL_TIMEOUT_S + 5)


_runtime: ClientRuntime | None = None
_runtime_lock = threading.Lock()


def current() -> ClientRuntime:
    from ray_queue.errors import NotInitializedError

    if _runtime is None:
        raise NotInitializedError("call ray_queue.init() first")
    return _runtime


def install(factory: Callable[[], ClientRuntime]) -> ClientRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = factory()
        return _runtime


def uninstall() -> None:
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
