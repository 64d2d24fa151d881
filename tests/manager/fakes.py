"""A recording fake of ``RayActions``: what the manager asked Ray to do, in order.

The placement-group bookkeeping is ``NoRayActions``'s (the development server's Ray-free
actions); this adds the record of calls, the specs, and jobs that run and can be made to
fail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray_queue.engine.model import PlacementStrategy, WorkloadId
from ray_queue.grpc.local_manager import NoRayActions
from ray_queue.wire import JobRun


class RecordingActions(NoRayActions):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.pg_specs: dict[WorkloadId, tuple[list[dict[str, float]], list[dict[str, str]]]] = {}
        self.job_state: dict[str, str] = {}
        self.job_payloads: dict[str, Mapping[str, Any]] = {}
        #: The ids each ``removed_placement_groups`` call looked up.
        self.audited: list[list[str]] = []
        #: How many upcoming ``submit_job`` calls fail (like Ray's "no available agent").
        self.failing_job_submits = 0

    def create_placement_group(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> str:
        self.calls.append(("create_pg", workload))
        self.pg_specs[workload] = ([dict(b) for b in bundles], [dict(s) for s in label_selectors])
        return super().create_placement_group(workload, bundles, strategy, label_selectors)

    def remove_placement_group(self, workload: WorkloadId) -> None:
        self.calls.append(("remove_pg", workload))
        super().remove_placement_group(workload)

    def move_placement_group(self, workload: WorkloadId, to: WorkloadId) -> None:
        self.calls.append(("move_pg", f"{workload}->{to}"))
        super().move_placement_group(workload, to)

    def removed_placement_groups(self, pg_ids: Sequence[str]) -> set[str]:
        self.audited.append(list(pg_ids))
        return super().removed_placement_groups(pg_ids)

    def submit_job(
        self, run: JobRun, payload: Mapping[str, Any], label_selector: Mapping[str, str]
    ) -> None:
        self.calls.append(("submit_job", run.submission_id))
        if self.failing_job_submits > 0:
            self.failing_job_submits -= 1
            raise RuntimeError("No available agent to submit job, please try again later.")
        self.job_state.setdefault(run.submission_id, "PENDING")
        self.job_payloads[run.submission_id] = payload

    def stop_job(self, submission_id: str) -> None:
        self.calls.append(("stop_job", submission_id))
        if self.job_state.get(submission_id) in ("PENDING", "RUNNING"):
            self.job_state[submission_id] = "STOPPED"

    def jobs(self) -> Mapping[str, str]:
        return dict(self.job_state)
