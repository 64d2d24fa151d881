"""The manager's side of task slots and hand-overs: which task gets a slot, and when a
hand-over into one still stands.

A slot is a placement group the manager creates for an admitted task with identical tasks
queued behind it; its owner runs them in it one after another, each handing the quota to
the next (``client/slots.py``, ``Engine.try_hand_over``). These are the questions the
manager asks of the engine about that protocol: read-only predicates, no Ray, no manager
state beyond what is passed in.
"""

from __future__ import annotations

from ray_queue.engine.engine import Engine
from ray_queue.engine.model import WorkloadKind, WorkloadState, WorkloadStatus
from ray_queue.store.base import Payload
from ray_queue.wire import HandOver, slot_eligible


def wants_slot(engine: Engine, status: WorkloadStatus, payload: Payload) -> bool:
    """An admitted task gets a slot (a placement group of its shape that the identical
    tasks queued behind it then run in, one after another; ``client/slots.py``) when
    it has such a backlog and nothing else waits for its quota. ``payload`` is the
    task's."""
    if status.spec.kind is not WorkloadKind.TASK:
        return False
    if not slot_eligible(status.spec.bundle_groups, payload):
        return False
    return engine.has_backlog(status.spec.id)


def admitted_meanwhile(engine: Engine, handover: HandOver, done_slot: str | None) -> bool:
    """Whether a hand-over into ``done``'s slot came too late only because the
    successor was admitted on its own meanwhile, to the same flavors: then it can
    simply stay where it runs. ``done_slot``: the slot the manager holds for ``done``."""
    if handover.slot is None or handover.slot != done_slot:
        return False
    if not (engine.knows(handover.done) and engine.knows(handover.successor)):
        return False
    done = engine.workload(handover.done)
    successor = engine.workload(handover.successor)
    if done.state is not WorkloadState.ADMITTED:
        return False
    if successor.state is not WorkloadState.ADMITTED:
        return False
    if done.spec.lease_key() != successor.spec.lease_key():
        return False
    assert done.admission is not None and successor.admission is not None
    return done.admission.groups == successor.admission.groups


def was_evicted(status: WorkloadStatus) -> bool:
    """Whether ``status`` was ever preempted or evicted. A hand-over to such a task may
    have crossed that preemption: its owner started it in a finished task's place
    before the preemption of an admission of its own reached it, and then stopped it.
    Its owner is told of the hand-over's admission then, so that it starts it again
    (it changes nothing if the task still runs)."""
    return any(t.to_state is WorkloadState.EVICTED for t in status.history)
