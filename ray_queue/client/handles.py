"""The runtime's handles by workload id, and the workloads it dropped once they ended.

The event poller routes the manager's events through this registry; the slot pipeline
and the handles drop a handle here once its work ended. A dropped workload is still
known as this process's own, so a readmission the manager makes after it ended (it
preempted and readmitted work that was returning) is answered with the end instead of
holding the quota forever.
"""

from __future__ import annotations

import threading
from typing import Protocol

from ray_queue.engine.model import WorkloadId
from ray_queue.wire import ClientEvent, SubmitResult

#: Forgotten workloads remembered (``forget``): enough for any readmission in flight.
_FORGOTTEN_MAX = 100_000


class Tracked(Protocol):
    """A client handle the runtime routes events to."""

    workload: WorkloadId

    def _on_event(self, event: ClientEvent) -> None: ...

    def _on_submitted(self, result: SubmitResult) -> None: ...


class HandleRegistry:
    """Thread-safe: the submitting thread, the poller and the watcher all use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[WorkloadId, Tracked] = {}
        #: Workloads whose handles this process dropped once their work ended, oldest
        #: first (an insertion-ordered dict as a bounded set).
        self._forgotten: dict[WorkloadId, None] = {}

    def add(self, workload: WorkloadId, handle: Tracked) -> None:
        with self._lock:
            self._handles[workload] = handle

    def workloads(self) -> set[WorkloadId]:
        """Every workload with a live handle here."""
        with self._lock:
            return set(self._handles)

    def take(self, workload: WorkloadId, *, last: bool) -> Tracked | None:
        """The handle of ``workload`` (``None``: not ours, or dropped); with ``last`` the
        manager is done with it, so it is dropped too (without remembering it: no event
        for it will follow)."""
        with self._lock:
            if last:
                return self._handles.pop(workload, None)
            return self._handles.get(workload)

    def refused(self, workload: WorkloadId) -> None:
        """The manager refused the submission: nothing was queued for it."""
        with self._lock:
            self._handles.pop(workload, None)

    def forget(self, workload: WorkloadId) -> None:
        """Drop the handle of work that ended here (returned, or handed its quota over),
        remembering that it was ours."""
        with self._lock:
            if self._handles.pop(workload, None) is not None:
                self._forgotten[workload] = None
                if len(self._forgotten) > _FORGOTTEN_MAX:
                    del self._forgotten[next(iter(self._forgotten))]

    def forgotten(self, workload: WorkloadId) -> bool:
        """Whether ``workload`` was this process's and its work ended (``forget``)."""
        with self._lock:
            return workload in self._forgotten
