"""The ``Store`` seam: what the manager persists so that a restart loses nothing.

The manager writes *ahead*: a batch of changed workloads is durable before any Ray action
for it is taken, so after a crash the store is never behind what Ray did, only possibly
ahead of it, and recovery reconciles Ray to the store (create what is missing, remove
what is not owned) rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import WorkloadId, WorkloadStatus

#: Per-workload data the engine does not model but the adapter needs to act on it
#: (a job's entrypoint and runtime_env, a user's bundle label selectors). JSON-compatible.
Payload = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredState:
    config: QueueConfig | None
    workloads: tuple[WorkloadStatus, ...] = ()
    payloads: Mapping[WorkloadId, Payload] = field(default_factory=dict)


class Store(Protocol):
    """Durable manager state.

    Contract: ``write`` is atomic (all of a batch or none of it) and durable when it
    returns (survives kill -9 of the process). Writing a workload again replaces it.
    Not thread-safe: the manager calls it under its lock.
    """

    def load(self) -> StoredState: ...

    def write(
        self,
        *,
        config: QueueConfig | None = None,
        workloads: Iterable[WorkloadStatus] = (),
        payloads: Mapping[WorkloadId, Payload] | None = None,
        forget: Iterable[WorkloadId] = (),
    ) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """A ``Store`` that keeps everything in memory: unit tests and throwaway managers."""

    def __init__(self) -> None:
        self.config: QueueConfig | None = None
        self.workloads: dict[WorkloadId, WorkloadStatus] = {}
        self.payloads: dict[WorkloadId, Payload] = {}
        self.writes = 0

    def load(self) -> StoredState:
        return StoredState(self.config, tuple(self.workloads.values()), dict(self.payloads))

    def write(
        self,
        *,
        config: QueueConfig | None = None,
        workloads: Iterable[WorkloadStatus] = (),
        payloads: Mapping[WorkloadId, Payload] | None = None,
        forget: Iterable[WorkloadId] = (),
    ) -> None:
        self.writes += 1
        if config is not None:
            self.config = config
        for status in workloads:
            self.workloads[status.spec.id] = status
        self.payloads.update(payloads or {})
        for workload in forget:
            self.workloads.pop(workload, None)
            self.payloads.pop(workload, None)

    def close(self) -> None:
        pass
