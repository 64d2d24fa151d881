"""The engine's mutable bookkeeping for one workload; ``WorkloadStatus`` is its frozen view."""

from __future__ import annotations

from dataclasses import dataclass, field

from ray_queue.engine.model import (
    Admission,
    CheckState,
    LeaseKey,
    Transition,
    WorkloadSpec,
    WorkloadState,
)


@dataclass(slots=True)
class Record:
    """The engine's mutable bookkeeping for one workload (``WorkloadStatus`` is its view)."""

    spec: WorkloadSpec
    priority: int
    cluster_queue: str
    state: WorkloadState = WorkloadState.PENDING
    admission: Admission | None = None
    checks: dict[str, CheckState] = field(default_factory=dict)
    reason: str = "Created"
    message: str = ""
    requeue_count: int = 0
    requeue_at: float | None = None
    placed: bool = False
    admitted_seq: int = 0
    ended_at: float | None = None
    history: list[Transition] = field(default_factory=list)
    #: ``spec.lease_key()``, computed once: hand-overs compare it several times each.
    lease_key: LeaseKey = field(init=False)

    def __post_init__(self) -> None:
        self.lease_key = self.spec.lease_key()
