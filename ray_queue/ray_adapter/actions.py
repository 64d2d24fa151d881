"""``RayAdapter``: the manager's ``RayActions`` on a real Ray cluster.

Placement groups are *detached* and named ``ray-queue:<workload id>``: detached so they
outlive a restart of the manager actor that created them (a non-detached group dies with
its creator), named so a restarted manager finds them in the GCS and re-adopts them
instead of leaking them. Jobs go through Ray's job submission API with a submission id
derived from the admission, which makes submitting idempotent across restarts too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.util.placement_group import (
    PlacementGroup,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

from ray_queue.engine.model import PlacementStrategy, WorkloadId
from ray_queue.manager.types import JobRun

logger = logging.getLogger(__name__)

PG_PREFIX = "ray-queue:"
JOB_PREFIX = "rq-"


def pg_name(workload: WorkloadId) -> str:
    return f"{PG_PREFIX}{workload}"


def _live_placement_groups() -> dict[WorkloadId, str]:
    """The manager's groups Ray has not removed, by the workload each was created for."""
    found: dict[WorkloadId, str] = {}
    for info in placement_group_table().values():
        name = info.get("name") or ""
        if name.startswith(PG_PREFIX) and info.get("state") != "REMOVED":
            found[WorkloadId(name[len(PG_PREFIX) :])] = info["placement_group_id"]
    return found


def pg_from_hex(pg_id: str) -> PlacementGroup:
    """A handle to an existing placement group from its hex id (names are namespaced,
    ids are not, so clients in other namespaces use ids)."""
    return PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id)))


class RayAdapter:
    """``RayActions`` over the Ray API. Must run inside a connected Ray worker."""

    def __init__(self, *, dashboard_url: str | None = None) -> None:
        self._dashboard_url = dashboard_url
        self._job_client: Any = None
        self._handles: dict[WorkloadId, PlacementGroup] = {}

    # -- placement groups ---------------------------------------------------------------

    def create_placement_group(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> str:
        existing = self._handles.get(workload)
        if existing is not None:
            return str(existing.id.hex())
        selectors = [dict(s) for s in label_selectors]
        pg = placement_group(
            [dict(b) for b in bundles],
            strategy=strategy.value,
            name=pg_name(workload),
            lifetime="detached",
            bundle_label_selector=selectors if any(selectors) else None,
        )
        self._handles[workload] = pg
        return str(pg.id.hex())

    def remove_placement_group(self, workload: WorkloadId) -> None:
        pg = self._handles.pop(workload, None)
        if pg is None:
            return
        try:
            remove_placement_group(pg)
        except Exception as e:  # already gone (removed by an operator, or by a restart race)
            logger.warning("removing placement group of %s: %s", workload, e)

    def move_placement_group(self, workload: WorkloadId, to: WorkloadId) -> None:
        pg = self._handles.pop(workload, None)
        if pg is not None:
            self._handles[to] = pg

    def placement_groups(self) -> Mapping[WorkloadId, str]:
        found = _live_placement_groups()
        for workload, pg_id in found.items():
            self._handles[workload] = pg_from_hex(pg_id)
        return found

    def removed_placement_groups(self, pg_ids: Sequence[str]) -> set[str]:
        # One lookup per group: Ray's table keeps every group ever removed, so reading it
        # whole costs more the longer the cluster lives (0.7 s at 16,000 here).
        return {
            pg_id
            for pg_id in pg_ids
            if (placement_group_table(pg_from_hex(pg_id)) or {}).get("state") in (None, "REMOVED")
        }

    def handle(self, workload: WorkloadId) -> PlacementGroup | None:
        return self._handles.get(workload)

    # -- jobs -------------------------------------------------------------------------------

    def _jobs_client(self) -> Any:
        if self._job_client is None:
            from ray.job_submission import JobSubmissionClient

            url = self._dashboard_url or _published_dashboard_address()
            if not url:
                raise RuntimeError("the Ray dashboard (job server) is not running")
            if not url.startswith("http"):
                url = f"http://{url}"
            self._job_client = JobSubmissionClient(url)
        return self._job_client

    def submit_job(
        self, run: JobRun, payload: Mapping[str, Any], label_selector: Mapping[str, str]
    ) -> None:
        client = self._jobs_client()
        try:
            client.submit_job(
                entrypoint=payload["entrypoint"],
                submission_id=run.submission_id,
                runtime_env=payload.get("runtime_env"),
                metadata={**(payload.get("metadata") or {}), "ray_queue_workload": run.workload},
                entrypoint_num_cpus=payload.get("entrypoint_num_cpus"),
                entrypoint_num_gpus=payload.get("entrypoint_num_gpus"),
                entrypoint_memory=payload.get("entrypoint_memory"),
                entrypoint_resources=payload.get("entrypoint_resources") or None,
                entrypoint_label_selector=dict(label_selector) or None,
            )
        except RuntimeError as e:
            if "already exists" not in str(e):
                raise
        logger.info("submitted Ray job %s for %s", run.submission_id, run.workload)

    def stop_job(self, submission_id: str) -> None:
        try:
            self._jobs_client().stop_job(submission_id)
        except Exception as e:  # not found or already finished
            logger.info("stopping job %s: %s", submission_id, e)

    def jobs(self) -> Mapping[str, str]:
        if self._job_client is None and self._dashboard_url is None:
            node = ray._private.worker._global_node
            if node is None or not node.webui_url:
                return {}
        out = {}
        try:
            listed = self._jobs_client().list_jobs()
        except Exception as e:  # the job server may be starting or absent
            logger.warning("listing Ray jobs failed: %s", e)
            return {}
        for job in listed:
            sid = job.submission_id
            if sid and sid.startswith(JOB_PREFIX):
                out[sid] = str(job.status.value if hasattr(job.status, "value") else job.status)
        return out


def _published_dashboard_address() -> str | None:
    """Where the dashboard (Ray's job server) really listens.

    The dashboard writes its address into the GCS; a worker's own node object reports
    the default port (8265) whatever port the dashboard was started on, which would send
    job submissions to another cluster's dashboard on a shared machine.
    """
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    published = internal_kv._internal_kv_get(
        ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
    )
    if published:
        return bytes(published).decode()
    node = ray._private.worker._global_node
    return node.webui_url if node is not None else None
