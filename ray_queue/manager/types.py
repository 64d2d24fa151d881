"""Old home of the manager's values, now ``ray_queue.wire``: re-exported only while
``client/api.py`` (being rewritten) still imports them from here; delete with that import."""

from ray_queue.wire import (
    Catalog,
    ClientEvent,
    EventBatch,
    HandOver,
    JobRun,
    ManagerStatus,
    NodeShape,
    RayActions,
    SubmitRequest,
    SubmitResult,
    slot_eligible,
)

__all__ = [
    "Catalog",
    "ClientEvent",
    "EventBatch",
    "HandOver",
    "JobRun",
    "ManagerStatus",
    "NodeShape",
    "RayActions",
    "SubmitRequest",
    "SubmitResult",
    "slot_eligible",
]
