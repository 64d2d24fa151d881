"""ray-queue: Kueue's queueing, quotas, fair sharing and preemption inside a Ray cluster.

    import ray_queue
    ray_queue.init(queue="training", priority="prod")
    pg = ray_queue.placement_group([{"GPU": 1}] * 8)
    pg.wait(timeout_seconds=600)

The client API is imported lazily so that ``import ray_queue.engine`` (pure, no Ray) stays
cheap and importable without a Ray installation.
"""

from __future__ import annotations

from typing import Any

from ray_queue.errors import (
    ConfigError,
    DuplicateWorkloadError,
    InvalidWorkloadError,
    ManagerUnavailableError,
    NotInitializedError,
    PermissionDeniedError,
    Preempted,
    QueueTimeoutError,
    RayQueueError,
    UnauthenticatedError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadCancelled,
    WorkloadFailed,
    WorkloadRejected,
)

_CLIENT_NAMES = (
    "QueuedActor",
    "QueuedJob",
    "QueuedObjectRef",
    "QueuedPlacementGroup",
    "apply_config",
    "cancel",
    "get",
    "init",
    "pending",
    "placement_group",
    "remote",
    "shutdown",
    "status",
    "submit_job",
    "wait",
)


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from ray_queue import client

        return getattr(client, name)
    raise AttributeError(f"module 'ray_queue' has no attribute {name!r}")


__all__ = [
    *_CLIENT_NAMES,
    "ConfigError",
    "DuplicateWorkloadError",
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
