"""Every error ray-queue raises on purpose, under one root: ``RayQueueError``.

The engine's errors (bad config, unknown queue, rejected workload, …) are re-exported so
users import them from one place; the ones defined here are about what happens to work
after submission, as its owner sees it.
"""

from __future__ import annotations

from ray_queue.engine.errors import (
    ConfigError,
    ConfigProblem,
    DuplicateWorkloadError,
    InvalidTransitionError,
    InvalidWorkloadError,
    RayQueueError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)


class Preempted(RayQueueError):
    """The work was preempted and cannot be re-run transparently (a task with
    ``max_retries=0``, an actor with ``max_restarts=0``, or a placement group that is back
    in the queue). Resubmit it, give it a higher priority, or allow retries."""


class WorkloadCancelled(RayQueueError):
    """The workload was cancelled (by its owner, an operator, or because its owner died)."""


class WorkloadFailed(RayQueueError):
    """The manager could not run the admitted workload (Ray refused it); see the message."""


class QueueTimeoutError(RayQueueError, TimeoutError):
    """Waiting for admission or a result took longer than the timeout given."""


class ManagerUnavailableError(RayQueueError):
    """The queue manager could not be reached; it may be restarting. Retry shortly."""


class UnauthenticatedError(RayQueueError, PermissionError):
    """The manager needs a token and got none, or one it does not know (or a job
    credential whose job has ended). Give one with ``ray_queue.init(token=...)``,
    ``RAY_QUEUE_TOKEN`` or ``RAY_QUEUE_TOKEN_FILE``."""


class PermissionDeniedError(RayQueueError, PermissionError):
    """The caller's token does not allow this: another tenant's Queue, or an operation
    that needs the admin (or autoscaler) role."""


class NotInitializedError(RayQueueError):
    """``ray_queue.init()`` has not been called in this process."""


__all__ = [
    "ConfigError",
    "ConfigProblem",
    "DuplicateWorkloadError",
    "InvalidTransitionError",
    "InvalidWorkloadError",
    "ManagerUnavailableError",
    "NotInitializedError",
    "PermissionDeniedError",
    "Preempted",
    "QueueTimeoutError",
    "RayQueueError",
    "UnauthenticatedError",
    "UnknownPriorityClassError",
    "UnknownQueueError",
    "UnknownWorkloadError",
    "WorkloadCancelled",
    "WorkloadFailed",
    "WorkloadRejected",
]
