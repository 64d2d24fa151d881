"""What each workload owner is told: an ordered event log per owner, under one epoch.

Owners (drivers, jobs) long-poll the manager for what they must react to: launch what was
admitted, stop what was preempted, give up what failed, hand a finished task's quota to
the next one while its lease is open. Every event gets the next sequence number of the
manager's life (its epoch); each owner's log keeps the latest ``_EVENTS_PER_OWNER``, and
drops events a poll has gone past once they are ``_KEEP_POLLED_S`` old. An owner that asks
with another epoch (the manager restarted), or from a seq the log no longer holds, gets a
snapshot of where its workloads stand instead of a delta. Kept apart
from ``ManagerCore`` so the pipeline reads as schedule → persist → act → tell; the
manager state an event carries (placement group ids, bundles) is looked up through the
callables it is built with.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ray_queue.engine.model import (
    Decision,
    DecisionKind,
    LeaseKey,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.wire import ClientEvent, EventBatch, EventKind

#: Events kept per owner; a client that falls further behind gets a resync snapshot.
_EVENTS_PER_OWNER = 50_000
#: How long an event is kept after a poll went past it. Every process of an owner (a
#: driver, its captured workers) long-polls without pause, so one still behind after this
#: is lost anyway; without it a driver that runs for days keeps its whole log (~0.7 KB an
#: event, up to the cap: 35 MB).
_KEEP_POLLED_S = 60.0


@dataclass
class _Log:
    """One owner's events, oldest first, each with when it was emitted."""

    events: deque[tuple[float, ClientEvent]] = field(
        default_factory=lambda: deque(maxlen=_EVENTS_PER_OWNER)
    )
    #: The highest seq dropped from it: a poll from before it missed something.
    floor: int = 0

    def append(self, at: float, event: ClientEvent) -> None:
        if len(self.events) == self.events.maxlen:
            self.floor = self.events[0][1].seq
        self.events.append((at, event))

    def after(self, seq: int) -> tuple[ClientEvent, ...]:
        """The events after ``seq``, oldest first. Read from the newest end: a poll asks
        for the few events since its last, and the log keeps a minute of polled ones."""
        newer: list[ClientEvent] = []
        for _, event in reversed(self.events):
            if event.seq <= seq:
                break
            newer.append(event)
        newer.reverse()
        return tuple(newer)

    def drop_polled(self, after_seq: int, before: float) -> None:
        """Drop the events up to ``after_seq`` emitted before ``before``."""
        events = self.events
        while events and events[0][1].seq <= after_seq and events[0][0] < before:
            self.floor = events.popleft()[1].seq


#: What an admitted workload's owner is told of where it runs: the admitted flavors'
#: node labels, and the admitted bundles in Ray units.
AdmittedShape = tuple[Mapping[str, str], tuple[Mapping[str, float], ...]]


class OwnerEvents:
    """Each owner's event log, its sequence numbers, and the lease states owners were told."""

    def __init__(
        self,
        *,
        statuses_of: Callable[[str], Iterable[WorkloadStatus]],
        placement_group_of: Callable[[WorkloadId], str | None],
        admitted_shape: Callable[[WorkloadStatus], AdmittedShape],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``statuses_of(owner)``: the owner's workloads, for a snapshot.
        ``placement_group_of(workload)``: the hex id of the group the manager holds for it.
        ``admitted_shape(status)``: labels and bundles of an admitted status.
        ``clock``: seconds, for how long polled events are kept."""
        self._statuses_of = statuses_of
        self._placement_group_of = placement_group_of
        self._admitted_shape = admitted_shape
        self._clock = clock
        #: Changes whenever the manager restarts; a client seeing a new epoch resyncs.
        self.epoch = uuid.uuid4().hex[:12]
        self._seq = 0
        self._logs: dict[str, _Log] = {}
        #: Lease states last told to owners (``publish_leases``).
        self._leases: dict[LeaseKey, bool] = {}

    def decided(self, status: WorkloadStatus, decision: Decision) -> None:
        """Tell ``status``'s owner of ``decision``; ``status`` is the workload as the
        decision saw it (``ManagerCore._as_decided``)."""
        label_selector: Mapping[str, str] = {}
        bundles: tuple[Mapping[str, float], ...] = ()
        if decision.kind is DecisionKind.ADMIT:
            label_selector, bundles = self._admitted_shape(status)
        self.emit(
            status,
            decision=EventKind.of(decision.kind),
            reason=decision.reason,
            message=decision.message,
            label_selector=label_selector,
            bundles=bundles,
        )

    def state(self, status: WorkloadStatus) -> None:
        """Tell ``status``'s owner where it stands now (a change no decision made)."""
        self.emit(status, decision=EventKind.STATE, reason=status.reason, message=status.message)

    def emit(
        self,
        status: WorkloadStatus,
        *,
        decision: EventKind,
        reason: str,
        message: str,
        label_selector: Mapping[str, str] | None = None,
        bundles: tuple[Mapping[str, float], ...] = (),
    ) -> None:
        owner = status.spec.owner
        self._seq += 1
        event = ClientEvent(
            seq=self._seq,
            workload=status.spec.id,
            kind=status.spec.kind,
            state=status.state,
            decision=decision,
            reason=reason,
            message=message,
            label_selector=dict(label_selector or {}),
            placement_group_id=self._placement_group_of(status.spec.id),
            bundles=bundles,
        )
        self._logs.setdefault(owner, _Log()).append(self._clock(), event)

    def owners(self) -> set[str]:
        """Owners with an event log: each may still poll, until it is known dead."""
        return set(self._logs)

    def forget(self, owner: str) -> None:
        """Drop a dead owner's log: nobody polls it again, and a manager serving drivers
        for weeks would otherwise keep every one it ever served (up to
        ``_EVENTS_PER_OWNER`` events each)."""
        self._logs.pop(owner, None)

    def publish_leases(self, states: dict[LeaseKey, bool]) -> bool:
        """Tell owners whose tasks may now hand over, or no longer may; whether any did.
        ``states``: the engine's ``lease_states()``."""
        changed = False
        for key, open_ in states.items():
            if self._leases.get(key) != open_:
                self._emit_lease(key, open_)
                changed = True
        self._leases = states
        return changed

    def _emit_lease(self, key: LeaseKey, open_: bool) -> None:
        self._seq += 1
        self._logs.setdefault(key[0], _Log()).append(
            self._clock(), _lease_event(self._seq, key, open_)
        )

    def batch(self, owner: str, *, after_seq: int, epoch: str | None) -> EventBatch:
        """Events for ``owner`` after ``after_seq``; a snapshot if the client is lost."""
        log = self._logs.get(owner)
        missed = log is not None and 0 < after_seq < log.floor
        if epoch != self.epoch or missed or after_seq > self._seq:
            return EventBatch(self.epoch, self._seq, self._snapshot(owner), resync=True)
        if log is None:
            return EventBatch(self.epoch, self._seq, ())
        events = log.after(after_seq)
        log.drop_polled(after_seq, self._clock() - _KEEP_POLLED_S)
        return EventBatch(self.epoch, self._seq, events)

    def _snapshot(self, owner: str) -> tuple[ClientEvent, ...]:
        out = []
        for status in self._statuses_of(owner):
            admitted = status.state is WorkloadState.ADMITTED
            label_selector, bundles = self._admitted_shape(status) if admitted else ({}, ())
            out.append(
                ClientEvent(
                    seq=self._seq,
                    workload=status.spec.id,
                    kind=status.spec.kind,
                    state=status.state,
                    decision=EventKind.ADMIT if admitted else EventKind.STATE,
                    reason=status.reason,
                    message=status.message,
                    label_selector=label_selector,
                    placement_group_id=self._placement_group_of(status.spec.id),
                    bundles=bundles,
                )
            )
        out.extend(
            _lease_event(self._seq, key, open_)
            for key, open_ in self._leases.items()
            if key[0] == owner
        )
        return tuple(out)


def _lease_event(seq: int, key: LeaseKey, open_: bool) -> ClientEvent:
    return ClientEvent(
        seq=seq,
        workload=WorkloadId(""),
        kind=WorkloadKind.TASK,
        state=WorkloadState.ADMITTED,
        decision=EventKind.LEASE,
        reason="LeaseOpen" if open_ else "LeaseClosed",
        message="finished tasks may hand their quota to the next identical task"
        if open_
        else "other work waits for this quota: finished tasks give it back",
        lease_key=key,
        lease_open=open_,
    )
