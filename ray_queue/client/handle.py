"""What queued task and actor handles share: the options split, the handle type's name
with the fix in it, and the manager's last word on the workload.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ray_queue.client.runtime import ClientRuntime
from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState
from ray_queue.errors import QueueTimeoutError, WorkloadCancelled, WorkloadFailed, WorkloadRejected
from ray_queue.wire import ClientEvent, SubmitResult

#: Our options; everything else is passed to Ray untouched.
QUEUE_OPTIONS = ("queue", "priority", "name")


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = {k: options[k] for k in QUEUE_OPTIONS if k in options}
    theirs = {k: v for k, v in options.items() if k not in QUEUE_OPTIONS}
    return ours, theirs


def request_resources(ray_options: dict[str, Any], *, default_cpus: float) -> dict[str, float]:
    num_cpus = ray_options.get("num_cpus")
    resources: dict[str, float] = {"CPU": default_cpus if num_cpus is None else num_cpus}
    if ray_options.get("num_gpus"):
        resources["GPU"] = ray_options["num_gpus"]
    if ray_options.get("memory"):
        resources["memory"] = ray_options["memory"]
    resources.update(ray_options.get("resources") or {})
    return resources


#: Said wherever Ray is handed one of our handles by mistake.
USE_RAY_QUEUE = "a ray_queue handle: use ray_queue.get() / ray_queue.wait(), not ray.get()"


class HandleType(type):
    """The type of queued handles, named with the fix.

    ``ray.get(handle)`` on a queued task is the first mistake a Ray user makes here, and
    Ray answers "Invalid type of object refs, <type>, is given" with the type's repr:
    that repr now says to call ``ray_queue.get`` instead (no patching of Ray needed).
    """

    def __repr__(cls) -> str:
        return f"<class '{cls.__module__}.{cls.__qualname__}' ({USE_RAY_QUEUE})>"


class QueuedHandle(metaclass=HandleType):
    """State shared by queued task and actor handles: the manager's last word on the
    workload (``_state``, ``_message``) and the error the handle raises, if any. Each
    subclass keeps its own phase (``lifecycle.py``)."""

    kind = WorkloadKind.TASK

    def __init__(self, runtime: ClientRuntime, workload: WorkloadId, what: str) -> None:
        self._runtime = runtime
        self.workload = workload
        self._what = what
        self._cv = threading.Condition()
        self._state = WorkloadState.PENDING
        self._message = ""
        self._error: Exception | None = None
        self._attempt = 0
        self._preemptions = 0

    def _on_submitted(self, result: SubmitResult) -> None:
        if result.error is not None:
            with self._cv:
                self._error = result.error
                self._refused()
                self._cv.notify_all()

    def _refused(self) -> None:
        """(Holding ``_cv``.) The submission was refused: the phase says so."""
        raise NotImplementedError

    def _terminal_error(self, event: ClientEvent) -> Exception:
        text = f"{self._what} ({self.workload}) is {event.state.value}: {event.message}"
        if event.state is WorkloadState.REJECTED:
            return WorkloadRejected(text)
        if event.state is WorkloadState.FAILED:
            return WorkloadFailed(text)
        return WorkloadCancelled(text)

    @property
    def preemptions(self) -> int:
        return self._preemptions

    def status(self) -> Any:
        """The manager's view of this workload (state, reason, history)."""
        return self._runtime.status(self.workload)

    def _why_waiting(self) -> str:
        """The manager's reason, when no event has told this driver one yet."""
        try:
            return str(self.status().message)
        except Exception as e:
            return f"the queue manager did not say why ({e})"

    def cancel(self) -> None:
        self._runtime.cancel([self.workload])

    def _wait_for(self, predicate: Any, deadline: float | None) -> None:
        """Wait (holding ``_cv``) until ``predicate()`` or an error; raise on timeout."""
        while not predicate():
            if self._error is not None:
                raise self._error
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueTimeoutError(
                    f"{self._what} ({self.workload}) not ready in time; state "
                    f"{self._state.value}: {self._message or self._why_waiting()}"
                )
            self._cv.wait(1.0 if remaining is None else min(remaining, 1.0))
