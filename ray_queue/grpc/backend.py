"""The seam between the gRPC service and whatever owns the queue state.

The service is written against ``Backend`` (a Protocol in engine values, never protobuf).
Its one implementation is ``manager_backend.ManagerBackend`` over ``ManagerCore``: inside
the manager's Ray actor, or in process without Ray (``local_manager.LocalManager``, for
the development server, tests, benchmarks and demos). Workload transitions reach watchers
through a ``TransitionJournal``: a bounded, ordered log of transitions that the backend
appends to and streams read from.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import (
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    PendingPosition,
    Transition,
    WorkloadId,
    WorkloadStatus,
)
from ray_queue.wire import SubmitRequest, SubmitResult, UnmanagedUsage, WorkerGroupShape

#: Transitions kept for watchers; one that falls further behind must reconnect.
JOURNAL_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class WorkloadEvent:
    """One transition of one workload, as watchers see it."""

    seq: int
    workload: WorkloadId
    queue: str
    cluster_queue: str
    owner: str
    transition: Transition


@dataclass(frozen=True, slots=True)
class EventPage:
    #: Pass back as ``after`` to continue.
    seq: int
    events: tuple[WorkloadEvent, ...]
    #: Events after the requested position were dropped; the watcher lost some.
    lost: bool = False


@dataclass(frozen=True, slots=True)
class ConfigOutcome:
    applied: bool
    #: Workloads evicted by the change (e.g. a new HoldAndDrain).
    evicted: tuple[WorkloadId, ...] = ()


class JobsUnsupportedError(RayQueueError):
    """This server cannot run Ray jobs (it has no Ray); submit jobs to a real manager."""


class Backend(Protocol):
    """What the gRPC service needs from the queue's owner.

    Contract: every method is thread-safe (the gRPC server calls from a thread pool) and
    applies atomically or raises a ``RayQueueError`` having changed nothing. Mutations
    run a scheduling cycle before returning, so results show immediate admissions.
    """

    @property
    def supports_jobs(self) -> bool:
        """Whether WORKLOAD_KIND_JOB workloads can be run once admitted."""
        ...

    def submit_many(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        """Queue a batch; each refused item carries its typed error (not idempotent:
        resubmitting an id gives ``DuplicateWorkloadError``)."""
        ...

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        """Raises ``UnknownWorkloadError``."""
        ...

    def workloads(self) -> list[WorkloadStatus]:
        """Every workload remembered, in submission order."""
        ...

    def cancel(self, workload: WorkloadId, *, message: str) -> bool:
        """Cancel; returns whether it was live. Idempotent. Raises ``UnknownWorkloadError``."""
        ...

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]: ...

    def cluster_queues(self) -> list[ClusterQueueStatus]: ...

    def cohorts(self) -> list[CohortStatus]: ...

    def unmanaged_usage(self) -> list[UnmanagedUsage]: ...

    def config(self) -> QueueConfig: ...

    def apply_config(self, config: QueueConfig, *, validate_only: bool) -> ConfigOutcome:
        """Switch config (or only check it); raises ``ConfigError`` listing every problem."""
        ...

    def demand(self) -> list[GangDemand]: ...

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> WorkloadStatus:
        """Record an admission check result; stale reports are ignored. Returns the status."""
        ...

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> WorkloadStatus:
        """Evict a workload holding quota (requeued with back-off); raises
        ``InvalidTransitionError`` if it holds none. Returns the status."""
        ...

    def set_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        """The autoscaled worker groups' node shapes, replacing the last ones."""
        ...

    def events(self, *, after: int, timeout_s: float) -> EventPage:
        """Transitions after position ``after`` (0: from now on, see ``journal_head``),
        waiting up to ``timeout_s`` for one to arrive."""
        ...

    def journal_head(self) -> int:
        """The current journal position (start watching from here)."""
        ...

    def wait_changed(self, *, after: int, timeout_s: float) -> int:
        """Block until the change counter passes ``after`` (or the timeout); return it.
        ``after=-1`` returns the current counter at once."""
        ...


class TransitionJournal:
    """A bounded log of transitions with blocking reads. Thread-safe.

    ``record`` takes workload statuses and appends each transition not yet seen (it
    remembers how much of each history it has logged), so backends may pass the same
    status twice or pass every workload: nothing is logged twice.
    """

    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self._cond = threading.Condition()
        self._log: deque[WorkloadEvent] = deque(maxlen=size)
        self._seen: dict[WorkloadId, int] = {}
        self._seq = 0
        #: Bumped by every transition and every ``touch``: what ``wait`` waits on.
        self._changes = 0

    @property
    def head(self) -> int:
        with self._cond:
            return self._seq

    def record(self, statuses: Iterable[WorkloadStatus]) -> None:
        with self._cond:
            added = False
            for status in statuses:
                workload = status.spec.id
                seen = self._seen.get(workload, 0)
                for transition in status.history[seen:]:
                    self._seq += 1
                    self._log.append(
                        WorkloadEvent(
                            self._seq,
                            workload,
                            status.spec.queue,
                            status.cluster_queue,
                            status.spec.owner,
                            transition,
                        )
                    )
                    added = True
                self._seen[workload] = len(status.history)
            if added:
                self._changes += 1
                self._cond.notify_all()

    def touch(self) -> None:
        """Something changed without a transition (e.g. a workload got placed)."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

    def drop(self, workloads: Iterable[WorkloadId]) -> None:
        """Drop bookkeeping for workloads the backend no longer remembers."""
        with self._cond:
            for workload in workloads:
                self._seen.pop(workload, None)

    def read(self, *, after: int, timeout_s: float) -> EventPage:
        with self._cond:
            if self._seq <= after:
                self._cond.wait_for(lambda: self._seq > after, timeout=timeout_s)
            if not self._log or self._seq <= after:
                return EventPage(max(after, self._seq), ())
            first = self._log[0].seq
            lost = after + 1 < first
            start = max(0, after + 1 - first)
            events = tuple(self._log[i] for i in range(start, len(self._log)))
            return EventPage(self._seq, events, lost)

    @property
    def changes(self) -> int:
        with self._cond:
            return self._changes

    def wait(self, *, after: int, timeout_s: float) -> int:
        """Block until the change counter passes ``after``; return it."""
        with self._cond:
            self._cond.wait_for(lambda: self._changes > after, timeout=timeout_s)
            return self._changes
