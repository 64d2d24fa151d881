"""The per-driver client runtime: one process's connection to the queue manager.

One ``ClientRuntime`` per process (``ray_queue.init`` creates it). It keeps the manager
off the data path and off the per-task round trip, with one part per job:

- ``outbox.Outbox``: submissions and reports, batched, sent by a sender thread;
- ``poller.EventPoller``: the manager's events for this owner (admitted, preempted,
  cancelled…), long-polled by a poller thread and handed to the handles, which launch or
  cancel the real Ray work;
- ``watcher.TaskWatcher``: a watcher thread that notices launched tasks returning;
- ``pipeline.SlotPipeline``: what a returned task's quota does next — handed to the next
  identical queued task while its lease is open (in a slot, ``slots.py``, queued in Ray
  behind it ahead of time), or given back;
- ``handles.HandleRegistry``: the handles by workload, and the ones whose work ended.

This class wires them together and is what the handles (and capture) call.

What a caller must see at once (unknown queue or priority class, negative resources, a
bundle that can never fit) is checked synchronously: the catalogue of queues and priority
classes is cached, and the first submission of each new shape goes through immediately.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import ray

from ray_queue.client.handles import HandleRegistry, Tracked
from ray_queue.client.outbox import Outbox
from ray_queue.client.pipeline import SlotPipeline, Successor
from ray_queue.client.pipeline import Unstaged as Unstaged
from ray_queue.client.poller import POLL_TIMEOUT_S, EventPoller
from ray_queue.client.slots import Slot
from ray_queue.client.watcher import TaskWatcher, Watched
from ray_queue.engine.model import (
    BundleGroup,
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
from ray_queue.wire import Catalog, ClientEvent, HandOver, SubmitRequest


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
    """This process's queue client: the parts in the module's docstring, and the calls
    the handles make into them."""

    def __init__(self, manager: Any, *, queue: str, priority: str | None) -> None:
        self.manager = manager
        self.owner = ray.get_runtime_context().get_job_id()
        self.queue = queue
        self.priority = priority
        self.handles = HandleRegistry()
        self._accepted_shapes: set[Hashable] = set()
        self._catalog = Catalog(frozenset(), frozenset())
        self._closed = threading.Event()
        self.outbox = Outbox(manager, self.call, self.handles)
        # Reports of work that ended go through ``self.report_finished`` as looked up at
        # call time, so a wrapper installed on this runtime (capture's) sees them all.
        self.pipeline = SlotPipeline(
            handed_over=self._handed_over,
            ended=self._ended,
            forget=self.handles.forget,
        )
        self.poller = EventPoller(
            manager,
            self.owner,
            self.handles,
            on_lease=self.pipeline.set_lease,
            had_ended=lambda workload: self.report_finished(
                workload, failed=False, message="had already ended"
            ),
        )
        self.watcher = TaskWatcher()
        self.refresh_catalog()
        self.outbox.start()
        self.poller.start()
        self.watcher.start()
        atexit.register(self.close)

    # -- what capture/core.py's ``_share_owner`` reads ------------------------------------

    @property
    def _lock(self) -> Any:
        return self.handles._lock

    @property
    def _handles(self) -> Mapping[WorkloadId, Tracked]:
        return self.handles._handles

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
        self.handles.add(request.id, handle)
        if not sync and shape in self._accepted_shapes:
            self.outbox.submit_later(request, handle)
            return
        result = self.outbox.submit_now(request, handle)
        if result.error is not None:
            raise result.error
        self._accepted_shapes.add(shape)

    def report_started(self, workload: WorkloadId) -> None:
        self.outbox.started(workload)

    def report_finished(self, workload: WorkloadId, *, failed: bool, message: str = "") -> None:
        self.outbox.finished(workload, failed=failed, message=message)

    def _ended(self, workload: WorkloadId, message: str) -> None:
        """Work of this process returned: its quota goes back, its handle is dropped."""
        self.report_finished(workload, failed=False, message=message)
        self.handles.forget(workload)

    def _handed_over(self, handover: HandOver) -> None:
        # Reported before the handle is dropped: an admission the poller then answers
        # "had already ended" goes in the same report as the hand-over or a later one.
        self.outbox.handed_over(handover)
        self.handles.forget(handover.done)

    def cancel(self, workloads: Sequence[WorkloadId]) -> list[bool]:
        self.flush()
        result: list[bool] = self.call(self.manager.cancel.remote(list(workloads)))
        return result

    def flush(self) -> None:
        """Send everything buffered now (submissions and reports) and wait until the
        manager has it, including a batch the sender thread already has in flight: after
        ``flush`` this driver reads its own writes."""
        self.outbox.flush()

    def forget(self, workload: WorkloadId) -> None:
        """Drop the handle of work that ended here, remembering that it was ours."""
        self.handles.forget(workload)

    # -- the slot pipeline (pipeline.py), as the handles call it ----------------------------

    def add_successor(self, handle: Successor) -> None:
        self.pipeline.add_successor(handle)

    def task_finished(
        self, handle: Successor, label_selector: Mapping[str, str], message: str
    ) -> None:
        self.pipeline.task_finished(handle, label_selector, message)

    def open_slot(self, pg_id: str, holder: Successor) -> Slot:
        return self.pipeline.open_slot(pg_id, holder)

    def note_run(self, key: Any, seconds: float) -> None:
        self.pipeline.note_run(key, seconds)

    def slot_task_returned(self, slot: Slot, *, ran_in_it: bool = True) -> None:
        self.pipeline.slot_task_returned(slot, ran_in_it=ran_in_it)

    def pass_admission_on(self, handle: Successor, event: ClientEvent) -> None:
        self.pipeline.pass_admission_on(handle, event)

    def abandon(self, slot: Slot) -> None:
        self.pipeline.abandon(slot)

    def settled(self, handle: Successor, state: WorkloadState) -> None:
        self.pipeline.settled(handle, state)

    # -- running tasks --------------------------------------------------------------------

    def watch(self, ref: Any, handle: Watched, attempt: int, *, in_slot: bool = False) -> None:
        self.watcher.watch(ref, handle, attempt, in_slot=in_slot)

    # -- helpers --------------------------------------------------------------------------------

    def call(self, ref: Any, timeout_s: float = 120.0) -> Any:
        return call_manager(ref, timeout_s)

    def status(self, workload: WorkloadId) -> WorkloadStatus:
        self.flush()
        result: WorkloadStatus = self.call(self.manager.workload.remote(workload))
        return result

    def close(self) -> None:
        if self._closed.is_set():
            return
        with contextlib.suppress(Exception):
            if ray.is_initialized():
                self.flush()
        self._closed.set()
        self.outbox.stop()
        self.watcher.stop()
        self.poller.stop()
        # A thread still inside a Ray call when the driver disconnects can take the whole
        # process down with it (Ray's core worker exits), so wait for every thread.
        for part in (self.outbox, self.poller, self.watcher):
            part.join(POLL_TIMEOUT_S + 5)


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
