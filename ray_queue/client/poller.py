"""Event polling: the manager's news for this owner, handed to the handles.

One thread long-polls the manager for this owner's events (admitted, preempted,
cancelled…, and lease changes) and hands each to its handle, which launches or cancels
the real Ray work. A new manager epoch (it restarted) or events dropped for falling
behind bring a snapshot instead of a delta; handles take a repeated event as a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from ray_queue.client.handles import HandleRegistry
from ray_queue.engine.model import LeaseKey, WorkloadId, WorkloadKind
from ray_queue.wire import ClientEvent, EventBatch, EventKind

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 5.0


class EventPoller:
    """The long poll, its place in the owner's event log, and the thread that runs it."""

    def __init__(
        self,
        manager: Any,
        owner: str,
        handles: HandleRegistry,
        *,
        on_lease: Callable[[LeaseKey, bool], None],
        had_ended: Callable[[WorkloadId], None],
    ) -> None:
        """``on_lease(key, open)``: the manager's word on a lease key.
        ``had_ended(workload)``: give back a readmission of work this process forgot."""
        self._manager = manager
        self._owner = owner
        self._handles = handles
        self._on_lease = on_lease
        self._had_ended = had_ended
        self._epoch: str | None = None
        self._seq = 0
        #: The long poll in flight, so ``stop`` can cancel it instead of waiting it out.
        self._poll_ref: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-queue-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_ref = self._manager.wait_events.remote(
                    self._owner, self._seq, self._epoch, POLL_TIMEOUT_S
                )
                batch: EventBatch = ray.get(self._poll_ref, timeout=POLL_TIMEOUT_S + 30)
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
                self._dispatch(event)

    def _dispatch(self, event: ClientEvent) -> None:
        if event.lease_key is not None:
            self._on_lease(event.lease_key, event.lease_open)
            return
        # A terminal state is the manager's last word on it: no event for it will follow.
        handle = self._handles.take(event.workload, last=event.state.is_terminal)
        if handle is None:
            if (
                event.decision is EventKind.ADMIT
                and event.kind is not WorkloadKind.JOB
                and self._handles.forgotten(event.workload)
            ):
                # Handles are forgotten only once their work ended, so this is work that
                # ended while the manager preempted and readmitted it: give the quota
                # back instead of holding it forever. Work this process never knew is
                # another process's of the same Ray job (they share an owner): not ours
                # to end.
                self._had_ended(event.workload)
            return
        try:
            handle._on_event(event)
        except Exception:
            logger.exception("ray_queue: handling %s failed", event)

    def stop(self) -> None:
        """End the poll: a thread still inside a Ray call when the driver disconnects can
        take the whole process down with it (Ray's core worker exits)."""
        self._stop.set()
        if self._poll_ref is not None and ray.is_initialized():
            try:
                ray.cancel(self._poll_ref)
            except Exception as e:  # already done, or Ray going away: nothing to end
                logger.debug("ray_queue: cancelling the long poll: %s", e)

    def join(self, timeout_s: float) -> None:
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
