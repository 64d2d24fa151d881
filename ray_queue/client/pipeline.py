"""The lease and slot pipeline: a finished task's quota goes to the next identical one.

When a launched task returns while the manager says nothing else waits for its quota
(its *lease* is open), this driver starts its next identical queued task in the finished
one's place at once and reports the hand-over afterwards, the way Ray's own owners reuse
a worker lease for tasks of one scheduling class. The manager accepts a hand-over only
if it is exactly what its next cycle would have done, and otherwise tells the handle to
stop and wait for its own admission. When the manager gave the admitted task a *slot* (a
placement group of its shape, ``slots.py``), the next ones are queued in Ray behind it
ahead of time, so Ray runs them back to back.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import ray

from ray_queue.client.slots import PIPELINE_MAX_RUN_S, SLOT_DEPTH, Slot, new_slot
from ray_queue.engine.model import LeaseKey, WorkloadId, WorkloadState
from ray_queue.wire import ClientEvent, HandOver

#: Successor queues are compacted once they are this long (or twice their last size).
_COMPACT_MIN = 1024


class Unstaged(NamedTuple):
    """What taking a task out of a slot did (``Successor._unstage``)."""

    #: It was queued there, not admitted, and has left.
    left: bool
    #: The Ray ref to cancel so it waits for an admission of its own again; ``None`` if it
    #: had returned already (then it is done: ``SlotPipeline.settled``).
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


class SlotPipeline:
    """Leases, the queued tasks that may take a quota over, and the live slots.

    Locks: a slot's lock is taken before a handle's, and a handle's before this one's.
    """

    def __init__(
        self,
        *,
        handed_over: Callable[[HandOver], None],
        ended: Callable[[WorkloadId, str], None],
        forget: Callable[[WorkloadId], None],
    ) -> None:
        """``handed_over(h)``: report ``h`` and forget ``h.done``. ``ended(workload,
        message)``: report ``workload`` finished and forget it. ``forget(workload)``:
        drop its handle, remembering it was ours."""
        self._handed_over = handed_over
        self._ended = ended
        self._forget = forget
        self._lock = threading.Lock()
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

    def set_lease(self, key: LeaseKey, open_: bool) -> None:
        """The manager's word on ``key``: whether a finished task may hand over."""
        with self._lock:
            self._lease_open[key] = open_

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
                self._handed_over(HandOver(handle.workload, successor.workload))
                return
        self._ended(handle.workload, message)

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
        with self._lock:
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
                    self._handed_over(HandOver(holder.workload, slot.tasks[0].workload, slot.pg_id))
                    continue
                self._close_slot(slot)
                self._ended(holder.workload, "task returned")

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
            self._ended(handle.workload, "task returned")
        else:
            self._forget(handle.workload)
