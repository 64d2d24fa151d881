"""Submission batching: what this driver tells the manager, sent as few calls as it can.

Submissions go into a buffer that a sender thread flushes as one actor call per batch
(whatever accumulated while the previous call was in flight). Reports of work started,
finished and handed over gather for a moment before they go: a call costs the manager
about a millisecond of CPU, and tasks returning a thousand times a second would otherwise
cost it a call each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ray_queue.client.handles import HandleRegistry, Tracked
from ray_queue.engine.model import WorkloadId
from ray_queue.errors import ManagerUnavailableError
from ray_queue.wire import HandOver, SubmitRequest, SubmitResult

logger = logging.getLogger(__name__)

#: How long reports of started and finished work gather before they are sent...
_REPORT_BATCH_S = 0.005
#: ...and hand-overs, when nothing else is to be sent.
_HANDOVER_BATCH_S = 0.02

#: ``call_manager``: a manager call's result, its typed errors raised as they were.
Call = Callable[[Any], Any]


class Outbox:
    """Buffered submissions and reports, and the thread that sends them."""

    def __init__(self, manager: Any, call: Call, handles: HandleRegistry) -> None:
        self._manager = manager
        self._call = call
        self._handles = handles
        self._lock = threading.Condition()
        #: Held while a batch is being sent: orders batches and lets ``flush`` wait for one
        #: in flight.
        self._send_lock = threading.Lock()
        self._submissions: list[tuple[SubmitRequest, Tracked]] = []
        self._started: list[WorkloadId] = []
        self._finished: list[tuple[WorkloadId, bool, str]] = []
        self._handovers: list[HandOver] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-queue-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- what goes out ---------------------------------------------------------------------

    def submit_later(self, request: SubmitRequest, handle: Tracked) -> None:
        """Queue ``request`` for the next batch."""
        with self._lock:
            self._submissions.append((request, handle))
            self._lock.notify_all()

    def submit_now(self, request: SubmitRequest, handle: Tracked) -> SubmitResult:
        """Send ``request`` now, behind anything buffered or in flight (so the manager sees
        submissions in order), and return its result."""
        with self._send_lock:
            with self._lock:
                batch, self._submissions = self._submissions, []
            batch.append((request, handle))
            return self._send(batch)[-1]

    def started(self, workload: WorkloadId) -> None:
        with self._lock:
            self._started.append(workload)
            self._lock.notify_all()

    def finished(self, workload: WorkloadId, *, failed: bool, message: str) -> None:
        with self._lock:
            self._finished.append((workload, failed, message))
            self._lock.notify_all()

    def handed_over(self, handover: HandOver) -> None:
        with self._lock:
            self._handovers.append(handover)
            self._lock.notify_all()

    def flush(self) -> None:
        """Send everything buffered now (submissions and reports) and wait until the
        manager has it, including a batch the sender thread already has in flight: after
        ``flush`` this driver reads its own writes."""
        with self._send_lock:
            with self._lock:
                batch, self._submissions = self._submissions, []
                started, self._started = self._started, []
                finished, self._finished = self._finished, []
                handovers, self._handovers = self._handovers, []
            try:
                if batch:
                    self._send(batch)
                    batch = []
                if started or finished or handovers:
                    self._call(self._manager.report.remote(started, finished, handovers))
            except ManagerUnavailableError:
                # Put it all back in front: nothing is dropped while the manager restarts.
                with self._lock:
                    self._submissions[:0] = batch
                    self._started[:0] = started
                    self._finished[:0] = finished
                    self._handovers[:0] = handovers
                raise

    def _send(self, batch: list[tuple[SubmitRequest, Tracked]]) -> list[SubmitResult]:
        results: list[SubmitResult] = self._call(
            self._manager.submit_many.remote([r for r, _ in batch], brief=True)
        )
        for (_, handle), result in zip(batch, results, strict=True):
            if result.error is not None:
                self._handles.refused(result.workload)
            handle._on_submitted(result)
        return results

    # -- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._has_work() and not self._stop.is_set():
                    self._lock.wait(0.5)
                delay = self._delay()
            # Submissions go at once: while one batch is in flight the next one
            # accumulates, so a burst becomes a few large calls and a lone submission is
            # not delayed. Reports may wait a moment (the module's docstring says why).
            if delay:
                self._stop.wait(delay)
            try:
                self.flush()
            except Exception:
                if not self._stop.is_set():
                    logger.exception("ray_queue: sending a batch to the manager failed")
                    time.sleep(0.5)

    def _delay(self) -> float:
        """How long what is buffered may wait (holding ``_lock``): nothing for
        submissions; a moment for reports that free or claim quota; longer for hand-overs
        alone, which change nothing anyone else could use (the quota stays taken)."""
        if self._submissions:
            return 0.0
        if self._started or self._finished:
            return _REPORT_BATCH_S
        return _HANDOVER_BATCH_S

    def _has_work(self) -> bool:
        return bool(self._submissions or self._started or self._finished or self._handovers)

    def stop(self) -> None:
        """End the sender thread (what is buffered stays: ``flush`` first to send it)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def join(self, timeout_s: float) -> None:
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
