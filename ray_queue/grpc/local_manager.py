"""The manager without Ray, in one process: what ``python -m ray_queue.grpc.server`` serves.

It is the real ``ManagerCore`` (the same submission, spec building, scheduling, config
checks and owner bookkeeping as the manager in its Ray actor) over a ``MemoryStore`` and
``NoRayActions``, a ``RayActions`` that keeps placement groups as names and runs nothing.
So the development server, the CLI's tests, demos and benchmarks exercise the one
implementation of the manager's logic, not a copy of it. What Ray would report (a group
is ready, a workload ended) comes from the caller through ``mark_placed`` and ``finish``.
Jobs are refused at submission: nothing here can run them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray_queue.engine.clock import Clock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import PlacementStrategy, WorkloadId
from ray_queue.grpc.backend import JobsUnsupportedError
from ray_queue.grpc.manager_backend import ManagerBackend, locked
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from ray_queue.wire import JobRun


class NoRayActions:
    """``RayActions`` with no Ray behind it: placement groups are names with made-up ids
    (never placed by anyone but ``LocalManager.mark_placed``); jobs cannot be run."""

    def __init__(self) -> None:
        #: Live groups by the workload each was created for (its name in Ray).
        self.pgs: dict[WorkloadId, str] = {}
        #: Workloads holding a group created for another (a task that took a slot over).
        self.moved: dict[WorkloadId, WorkloadId] = {}
        self._created = 0

    def create_placement_group(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> str:
        if workload not in self.pgs:
            self._created += 1
            self.pgs[workload] = f"{self._created:016x}"
        return self.pgs[workload]

    def remove_placement_group(self, workload: WorkloadId) -> None:
        self.pgs.pop(self.moved.pop(workload, workload), None)

    def move_placement_group(self, workload: WorkloadId, to: WorkloadId) -> None:
        self.moved[to] = self.moved.pop(workload, workload)

    def placement_groups(self) -> Mapping[WorkloadId, str]:
        return dict(self.pgs)

    def removed_placement_groups(self, pg_ids: Sequence[str]) -> set[str]:
        return set(pg_ids) - set(self.pgs.values())

    def submit_job(
        self, run: JobRun, payload: Mapping[str, Any], label_selector: Mapping[str, str]
    ) -> None:
        # Unreachable through ``LocalManager``, which refuses jobs before they are queued.
        raise JobsUnsupportedError(f"cannot run job {run.submission_id}: there is no Ray here")

    def stop_job(self, submission_id: str) -> None:
        return None

    def jobs(self) -> Mapping[str, str]:
        return {}

    def job_submission_failures(self) -> Mapping[str, str]:
        return {}


class LocalManager(ManagerBackend):
    """``ManagerBackend`` over a ``ManagerCore`` of its own, serialised by a lock.

    Every transition a call causes (the workload's own, and those of the workloads its
    scheduling cycle admitted or preempted) reaches watchers before the call returns.
    """

    def __init__(self, config: QueueConfig, clock: Clock, *, poll_s: float = 0.5) -> None:
        run = locked()
        core = ManagerCore.recover(
            MemoryStore(),
            NoRayActions(),
            clock,
            default_config=lambda: config,
        )
        super().__init__(core, run, poll_s=poll_s, supports_jobs=False)

    @property
    def core(self) -> ManagerCore:
        """The wrapped core (call it only through this backend's methods from threads)."""
        return self._core

    def mark_placed(self, workload: WorkloadId) -> None:
        """Ray placed the workload's group (what the actor's ready-watch would report)."""
        self._call(lambda: self._core.mark_placed(workload))
        self._journal.touch()  # placement changes demand without a transition

    def finish(self, workload: WorkloadId, *, failed: bool = False, message: str = "") -> None:
        """The admitted workload ended (what its owner or Ray would report)."""

        self._call(lambda: self._core.report(finished=[(workload, failed, message)]))

    def tick(self) -> None:
        """Let time-driven events happen: back-offs end, placement timeouts evict."""
        self._call(self._core.tick)


__all__ = ["LocalManager", "NoRayActions"]
