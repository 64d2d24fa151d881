"""The queue manager: ``ManagerCore`` (pure) and the Ray actor that hosts it (``actor``)."""

from ray_queue.manager.core import ManagerCore
from ray_queue.wire import (
    ClientEvent,
    EventBatch,
    ManagerStatus,
    NodeShape,
    RayActions,
    SubmitRequest,
    SubmitResult,
)

__all__ = [
    "ClientEvent",
    "EventBatch",
    "ManagerCore",
    "ManagerStatus",
    "NodeShape",
    "RayActions",
    "SubmitRequest",
    "SubmitResult",
]
