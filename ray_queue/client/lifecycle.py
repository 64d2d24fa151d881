"""The client handles' state machines, as tables with one comment per edge.

A handle's *phase* is what this driver has done with its workload (launched it, queued it
in another task's slot, seen it return…); the manager's view of the workload is a
separate thing (``WorkloadState``, the engine's ``lifecycle.py``) that events carry in.
Every phase change of a handle goes through ``Machine.step``, so an input a handle was
not written for is a loud ``HandleTransitionError`` rather than a task quietly run twice
or never.

Self-edges are listed: they are inputs a phase takes and ignores on purpose (a resync
repeats an admission; the manager's FINISHED follows a task that returned). Jobs have no
machine: a queued job's handle keeps no state of its own, it asks the manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from ray_queue.engine.errors import InvalidTransitionError


class HandleTransitionError(InvalidTransitionError):
    """A client handle was given an input its phase has no edge for: a bug in ray_queue
    (please report it with the log line), not in the caller's code."""


P = TypeVar("P", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Machine(Generic[P, E]):
    """A transition table: (phase, event) → next phase."""

    #: What the handle is, for messages ("task", "actor", "placement group").
    name: str
    initial: P
    edges: Mapping[tuple[P, E], P]

    def step(self, phase: P, event: E) -> P:
        """The phase after ``event`` in ``phase``; raise if there is no such edge."""
        nxt = self.edges.get((phase, event))
        if nxt is None:
            raise HandleTransitionError(
                f"a queued {self.name} that is {phase.value} cannot take {event.value}"
            )
        return nxt


# -- queued tasks (``remote.QueuedObjectRef``) ------------------------------------------------


class TaskPhase(StrEnum):
    #: Queued at the manager; nothing launched here.
    WAITING = "waiting"
    #: Admitted; the real task is not launched yet (its arguments are queued tasks).
    LAUNCHING = "launching"
    #: Launched in Ray on a quota of its own (admitted, or taken over from a finished task).
    RUNNING = "running"
    #: Launched in Ray in an identical task's slot, behind it, without a quota of its own.
    STAGED = "staged"
    #: Staged, and admitted in its own right meanwhile: it stays there (Ray may have started
    #: it) and runs on that admission only if the slot is lost first.
    GUEST = "guest"
    #: Staged, and its run returned before the task ahead handed it the quota.
    RAN_STAGED = "ran_staged"
    #: Its run returned a result (or Ray holds one this driver has not seen yet).
    RETURNED = "returned"
    #: It will not run: refused, rejected, cancelled, failed, or preempted and not retriable.
    FAILED = "failed"


class TaskEvent(StrEnum):
    #: The manager refused the submission.
    REFUSE = "refuse"
    #: The manager admitted it.
    ADMIT = "admit"
    #: The real task was started on its own quota.
    LAUNCH = "launch"
    #: A finished identical task's quota was handed to it and it was started.
    TAKE_OVER = "take_over"
    #: It was queued in Ray in an identical task's slot, behind the holder.
    STAGE = "stage"
    #: The holder ahead of it in the slot returned and handed it the quota.
    PROMOTE = "promote"
    #: Its run returned a result (the watcher saw it).
    RESULT = "result"
    #: A stop reached it after its run had returned unseen: the result stands.
    SETTLE = "settle"
    #: Back to waiting for an admission: preempted (retriable), slot lost, hand-over
    #: refused while pending.
    REQUEUE = "requeue"
    #: Ended for good: preempted and not retriable, or the manager ended it.
    STOP = "stop"


_T, _TE = TaskPhase, TaskEvent

TASK = Machine[TaskPhase, TaskEvent](
    "task",
    _T.WAITING,
    {
        # The manager refused the submission (bad shape, unknown queue).
        (_T.WAITING, _TE.REFUSE): _T.FAILED,
        # Admitted: launched at once, or once its queued arguments are launched.
        (_T.WAITING, _TE.ADMIT): _T.LAUNCHING,
        (_T.LAUNCHING, _TE.LAUNCH): _T.RUNNING,
        # A hand-over was refused inside a slot that is gone, but the manager admitted it
        # meanwhile: the cancelled run starts again on that admission.
        (_T.RUNNING, _TE.LAUNCH): _T.RUNNING,
        # Started in a finished identical task's place (``ClientRuntime`` lease).
        (_T.WAITING, _TE.TAKE_OVER): _T.RUNNING,
        # Queued in Ray behind the holder of an identical task's slot.
        (_T.WAITING, _TE.STAGE): _T.STAGED,
        # Admitted on its own while staged: it stays queued where it is.
        (_T.STAGED, _TE.ADMIT): _T.GUEST,
        # Admitted on its own after it had already run in the slot: that admission passes
        # on to the next waiting identical task.
        (_T.RAN_STAGED, _TE.ADMIT): _T.RETURNED,
        # Repeated admissions (a resync's snapshot) change nothing.
        (_T.LAUNCHING, _TE.ADMIT): _T.LAUNCHING,
        (_T.RUNNING, _TE.ADMIT): _T.RUNNING,
        (_T.GUEST, _TE.ADMIT): _T.GUEST,
        (_T.RETURNED, _TE.ADMIT): _T.RETURNED,
        (_T.FAILED, _TE.ADMIT): _T.FAILED,
        # The holder ahead returned and handed it the quota (a guest takes the hand-over
        # too, and the manager drops the slot made for its own admission).
        (_T.STAGED, _TE.PROMOTE): _T.RUNNING,
        (_T.GUEST, _TE.PROMOTE): _T.RUNNING,
        # It had returned already: it is handed the quota and hands it on at once.
        (_T.RAN_STAGED, _TE.PROMOTE): _T.RETURNED,
        # Its slot was lost while it was a guest: it runs on its own admission.
        (_T.GUEST, _TE.LAUNCH): _T.RUNNING,
        # Its run returned.
        (_T.RUNNING, _TE.RESULT): _T.RETURNED,
        # Returned while queued on an admission of its own: that admission passes on.
        (_T.GUEST, _TE.RESULT): _T.RETURNED,
        # Returned in the slot before the holder handed over: it waits to be promoted.
        (_T.STAGED, _TE.RESULT): _T.RAN_STAGED,
        # A stop (preemption, refusal, lost slot) found its result already in Ray.
        (_T.RUNNING, _TE.SETTLE): _T.RETURNED,
        (_T.GUEST, _TE.SETTLE): _T.RETURNED,
        # The same while staged: it ran without an admission, and one that comes later
        # passes on.
        (_T.STAGED, _TE.SETTLE): _T.RAN_STAGED,
        # Refused after it was started in a finished task's place: the quota it took over
        # goes back when it returns.
        (_T.FAILED, _TE.RESULT): _T.FAILED,
        # Preempted or evicted (retriable), a hand-over refused while the manager has it
        # pending, or its slot lost while staged: cancelled in Ray, it waits again.
        (_T.WAITING, _TE.REQUEUE): _T.WAITING,
        (_T.LAUNCHING, _TE.REQUEUE): _T.WAITING,
        (_T.RUNNING, _TE.REQUEUE): _T.WAITING,
        (_T.STAGED, _TE.REQUEUE): _T.WAITING,
        (_T.GUEST, _TE.REQUEUE): _T.WAITING,
        # What returned stays returned; what failed stays failed.
        (_T.RETURNED, _TE.REQUEUE): _T.RETURNED,
        (_T.RAN_STAGED, _TE.REQUEUE): _T.RAN_STAGED,
        (_T.FAILED, _TE.REQUEUE): _T.FAILED,
        # Preempted and not retriable, or ended by the manager (cancelled, rejected, failed).
        (_T.WAITING, _TE.STOP): _T.FAILED,
        (_T.LAUNCHING, _TE.STOP): _T.FAILED,
        (_T.RUNNING, _TE.STOP): _T.FAILED,
        (_T.STAGED, _TE.STOP): _T.FAILED,
        (_T.GUEST, _TE.STOP): _T.FAILED,
        (_T.FAILED, _TE.STOP): _T.FAILED,
        # The manager's FINISHED (or a late cancel) after it returned: the result stands.
        (_T.RETURNED, _TE.STOP): _T.RETURNED,
        (_T.RAN_STAGED, _TE.STOP): _T.RETURNED,
        # The submission was refused after the task was already started in a finished
        # task's place (submissions are batched): it fails, but a result it returns
        # stands (``get`` prefers a run to the error).
        (_T.LAUNCHING, _TE.REFUSE): _T.FAILED,
        (_T.RUNNING, _TE.REFUSE): _T.FAILED,
        (_T.STAGED, _TE.REFUSE): _T.FAILED,
        (_T.GUEST, _TE.REFUSE): _T.FAILED,
        (_T.RAN_STAGED, _TE.REFUSE): _T.RETURNED,
        (_T.RETURNED, _TE.REFUSE): _T.RETURNED,
        (_T.FAILED, _TE.REFUSE): _T.FAILED,
    },
)


# -- queued actors (``actors.QueuedActor``) ---------------------------------------------------


class ActorPhase(StrEnum):
    #: Queued at the manager; no actor exists.
    WAITING = "waiting"
    #: Admitted; the real actor was created in the manager's placement group.
    CREATED = "created"
    #: It will not run (again): refused, rejected, cancelled, killed, or preempted and not
    #: restartable.
    FAILED = "failed"


class ActorEvent(StrEnum):
    #: The manager refused the submission.
    REFUSE = "refuse"
    #: The manager admitted it.
    ADMIT = "admit"
    #: Preempted or evicted and restartable: the actor died with its placement group.
    REQUEUE = "requeue"
    #: Ended for good: preempted and not restartable, ended by the manager, or killed.
    STOP = "stop"


_A, _AE = ActorPhase, ActorEvent

ACTOR = Machine[ActorPhase, ActorEvent](
    "actor",
    _A.WAITING,
    {
        (_A.WAITING, _AE.REFUSE): _A.FAILED,
        (_A.FAILED, _AE.REFUSE): _A.FAILED,
        # Admitted: the actor is created in the group made for it.
        (_A.WAITING, _AE.ADMIT): _A.CREATED,
        # A resync's repeated admission; or one after it ended here, which creates nothing.
        (_A.CREATED, _AE.ADMIT): _A.CREATED,
        (_A.FAILED, _AE.ADMIT): _A.FAILED,
        # Its placement group was removed, and the actor with it: created again when
        # readmitted.
        (_A.CREATED, _AE.REQUEUE): _A.WAITING,
        (_A.WAITING, _AE.REQUEUE): _A.WAITING,
        (_A.FAILED, _AE.REQUEUE): _A.FAILED,
        # Not restartable, ended by the manager, or killed by its owner.
        (_A.WAITING, _AE.STOP): _A.FAILED,
        (_A.CREATED, _AE.STOP): _A.FAILED,
        (_A.FAILED, _AE.STOP): _A.FAILED,
    },
)


# -- queued placement groups (``placement_group.QueuedPlacementGroup``) ------------------------


class GroupPhase(StrEnum):
    #: Queued at the manager (never admitted, or preempted and queued again).
    WAITING = "waiting"
    #: Admitted: the manager created the real placement group.
    ADMITTED = "admitted"
    #: The manager ended it (rejected, cancelled, failed) or refused its submission.
    ENDED = "ended"
    #: Its owner gave it back (``remove``): finished if admitted, cancelled if queued.
    REMOVED = "removed"


class GroupEvent(StrEnum):
    #: The manager refused the submission.
    REFUSE = "refuse"
    #: The manager admitted it and created the group.
    ADMIT = "admit"
    #: Preempted or evicted: the group was removed and it is queued again.
    REQUEUE = "requeue"
    #: The manager ended it.
    END = "end"
    #: Its owner removed it.
    REMOVE = "remove"


_G, _GE = GroupPhase, GroupEvent

GROUP = Machine[GroupPhase, GroupEvent](
    "placement group",
    _G.WAITING,
    {
        (_G.WAITING, _GE.REFUSE): _G.ENDED,
        # Admitted: the real group exists (a resync repeats it: the same group).
        (_G.WAITING, _GE.ADMIT): _G.ADMITTED,
        (_G.ADMITTED, _GE.ADMIT): _G.ADMITTED,
        # Preempted: the manager removed the group; it waits for re-admission.
        (_G.ADMITTED, _GE.REQUEUE): _G.WAITING,
        (_G.WAITING, _GE.REQUEUE): _G.WAITING,
        # Rejected, cancelled or failed by the manager.
        (_G.WAITING, _GE.END): _G.ENDED,
        (_G.ADMITTED, _GE.END): _G.ENDED,
        (_G.ENDED, _GE.END): _G.ENDED,
        # A late admission or requeue after the end (events race the submission's
        # answer) changes nothing.
        (_G.ENDED, _GE.ADMIT): _G.ENDED,
        (_G.ENDED, _GE.REQUEUE): _G.ENDED,
        # Given back by its owner, whatever the manager had last said.
        (_G.WAITING, _GE.REMOVE): _G.REMOVED,
        (_G.ADMITTED, _GE.REMOVE): _G.REMOVED,
        (_G.ENDED, _GE.REMOVE): _G.REMOVED,
        # Events still in flight after its owner removed it change nothing here.
        (_G.REMOVED, _GE.ADMIT): _G.REMOVED,
        (_G.REMOVED, _GE.REQUEUE): _G.REMOVED,
        (_G.REMOVED, _GE.END): _G.REMOVED,
        # Removed before its (batched) submission was answered, and refused.
        (_G.REMOVED, _GE.REFUSE): _G.REMOVED,
    },
)
