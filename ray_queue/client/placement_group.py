"""``QueuedPlacementGroup``: a placement group that waits its turn in a queue.

The manager creates the real placement group when the workload is admitted (with the
assigned flavor's node labels as ``bundle_label_selector``) and removes it on preemption;
this handle follows those events. It mirrors Ray's ``PlacementGroup`` where it can:
``wait(timeout_seconds)`` and ``ready()`` behave the same, but cover admission too.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup

from ray_queue.client.lifecycle import GROUP, GroupEvent, GroupPhase
from ray_queue.client.runtime import ClientRuntime
from ray_queue.engine.model import WorkloadId, WorkloadState, WorkloadStatus
from ray_queue.errors import Preempted, WorkloadCancelled, WorkloadRejected
from ray_queue.ray_adapter.actions import pg_from_hex
from ray_queue.wire import ClientEvent, EventKind, SubmitResult


class _Unset:
    def __repr__(self) -> str:
        return "<not given>"


#: A timeout argument that was not given (``None`` means "no limit").
UNSET: Any = _Unset()


def one_timeout(timeout_seconds: Any, timeout_s: Any, *, default: float | None) -> float | None:
    """The one timeout of a ``wait``: handles take Ray's ``timeout_seconds`` and this
    project's ``timeout_s`` alike, so neither name is a wrong guess."""
    given = [t for t in (timeout_seconds, timeout_s) if t is not UNSET]
    if len(given) > 1:
        raise TypeError("give timeout_seconds or timeout_s, not both")
    timeout = given[0] if given else default
    if timeout is not None and not isinstance(timeout, int | float):
        raise TypeError(f"a timeout is a number of seconds or None, not {timeout!r}")
    return None if timeout is None else float(timeout)


class QueuedPlacementGroup:
    """Returned by ``ray_queue.placement_group``; usable as a context manager."""

    def __init__(self, runtime: ClientRuntime, workload: WorkloadId, name: str) -> None:
        self._runtime = runtime
        self.workload = workload
        self.name = name
        self._cv = threading.Condition()
        self._pg: PlacementGroup | None = None
        self._ready_ref: Any = None
        #: What this driver knows of it (``lifecycle.GROUP``); ``_state`` is the
        #: manager's last word, which the messages quote.
        self._phase = GROUP.initial
        self._state = WorkloadState.PENDING
        self._message = ""
        self._preemptions = 0

    # -- events from the runtime ---------------------------------------------------------

    @property
    def phase(self) -> GroupPhase:
        """What this driver knows of the group (``lifecycle.GroupPhase``)."""
        return self._phase

    def _move(self, event: GroupEvent) -> GroupPhase:
        """(Holding ``_cv``.) Take ``event``; the phase it was in."""
        phase, self._phase = self._phase, GROUP.step(self._phase, event)
        return phase

    def _on_submitted(self, result: SubmitResult) -> None:
        if result.error is not None:
            with self._cv:
                self._state, self._message = WorkloadState.REJECTED, str(result.error)
                self._move(GroupEvent.REFUSE)
                self._cv.notify_all()

    def _on_event(self, event: ClientEvent) -> None:
        with self._cv:
            self._state, self._message = event.state, event.message
            if event.decision is EventKind.ADMIT and event.placement_group_id:
                self._move(GroupEvent.ADMIT)
                self._pg = pg_from_hex(event.placement_group_id)
                self._ready_ref = self._pg.ready()
            elif event.decision in (EventKind.PREEMPT, EventKind.EVICT) or event.state.is_terminal:
                if event.decision is EventKind.PREEMPT:
                    self._preemptions += 1
                self._move(GroupEvent.END if event.state.is_terminal else GroupEvent.REQUEUE)
                self._pg = None
            # An admission without a group (its creation is paced) changes nothing yet:
            # the group's own admission event follows once it exists.
            self._cv.notify_all()

    # -- the API -----------------------------------------------------------------------------

    @property
    def placement_group(self) -> PlacementGroup:
        """The real Ray placement group. Raises ``Preempted`` if it was taken away and the
        workload is waiting again, and ``RuntimeError`` if it was never admitted yet."""
        with self._cv:
            if self._pg is not None:
                return self._pg
            self._raise_if_ended()
            if self._preemptions:
                raise Preempted(
                    f"placement group {self.name or self.workload} was preempted "
                    f"({self._message}); it is queued again: wait() for re-admission"
                )
            raise RuntimeError(
                f"placement group {self.name or self.workload} is not admitted yet; "
                "call wait() or ready() first"
            )

    @property
    def preemptions(self) -> int:
        """How many times this placement group was preempted (and requeued)."""
        return self._preemptions

    def wait(self, timeout_seconds: Any = UNSET, *, timeout_s: Any = UNSET) -> bool:
        """Wait until admitted *and* placed on nodes; ``False`` on timeout.

        ``timeout_seconds`` (Ray's name) or ``timeout_s``: seconds, ``None`` for no limit;
        30 if neither is given, as Ray's ``PlacementGroup.wait``. Raises
        ``WorkloadRejected`` / ``WorkloadCancelled`` if it will never be admitted.
        """
        timeout = one_timeout(timeout_seconds, timeout_s, default=30.0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                while self._pg is None:
                    self._raise_if_ended()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cv.wait(remaining if remaining is not None else 1.0)
                pg, ready = self._pg, self._ready_ref
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            # Ray's own PlacementGroup.wait rounds its timeout to whole seconds; waiting on
            # the ready() ObjectRef takes fractions (and 0 for a non-blocking check).
            chunk = 1.0 if remaining is None else min(remaining, 1.0)
            done, _ = ray.wait([ready], timeout=chunk)
            with self._cv:
                if done and self._pg is pg:
                    return True
            if remaining is not None and remaining <= 0:
                return False

    def is_placed(self) -> bool:
        """Non-blocking: admitted and placed right now."""
        return self.wait(timeout_seconds=0)

    def ready(self) -> Any:
        """An ObjectRef that resolves (to True) once admitted and placed, or to False if the
        workload ends without being placed."""
        # A batched submission may still be in this driver's buffer: the manager must know
        # the workload before it is asked about it.
        self._runtime.flush()
        return self._runtime.manager.wait_placed.remote(self.workload)

    def status(self) -> WorkloadStatus:
        """The manager's full view: ``.state``, ``.message`` (why it waits, in words),
        ``.reason``, ``.admission``, ``.history``."""
        return self._runtime.status(self.workload)

    def position(self) -> int | None:
        """0-based place in line within its Queue; ``None`` if it is not pending."""
        self._runtime.flush()
        pending = self._runtime.call(self._runtime.manager.pending.remote())
        for entry in pending:
            if entry.workload == self.workload:
                return int(entry.position_in_queue)
        return None

    def remove(self) -> None:
        """Give the placement group back: finished if admitted, cancelled if still queued."""
        with self._cv:
            if self._phase is GroupPhase.REMOVED:
                return
            self._move(GroupEvent.REMOVE)
            admitted = self._state is WorkloadState.ADMITTED
        if admitted:
            # Batched like task reports: the sender thread delivers it within milliseconds.
            self._runtime.report_finished(self.workload, failed=False, message="removed")
        else:
            self._runtime.cancel([self.workload])
        self._runtime.forget(self.workload)

    def __enter__(self) -> QueuedPlacementGroup:
        self.wait(timeout_seconds=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"QueuedPlacementGroup({self.name or self.workload}, {self._state.value})"

    def _raise_if_ended(self) -> None:
        if self._state is WorkloadState.REJECTED:
            raise WorkloadRejected(f"{self.name or self.workload}: {self._message}")
        if self._state in (WorkloadState.CANCELLED, WorkloadState.FAILED):
            raise WorkloadCancelled(
                f"{self.name or self.workload} is {self._state.value}: {self._message}"
            )
        if self._state is WorkloadState.FINISHED:
            raise WorkloadCancelled(f"{self.name or self.workload} was already removed")
