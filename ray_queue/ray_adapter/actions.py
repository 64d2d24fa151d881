"""``RayAdapter``: the manager's ``RayActions`` on a real Ray cluster.

Placement groups are *detached* and named ``ray-queue:<workload id>``: detached so they
outlive a restart of the manager actor that created them (a non-detached group dies with
its creator), named so a restarted manager finds them in the GCS and re-adopts them
instead of leaking them. Jobs go through Ray's job submission API with a submission id
derived from the admission, which makes submitting idempotent across restarts too.
"""

from __future__ import annotations

import logging
import threading
import time
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
from ray_queue.ray_adapter.job_desk import JobDesk
from ray_queue.wire import JobRun

logger = logging.getLogger(__name__)

PG_PREFIX = "ray-queue:"
JOB_PREFIX = "rq-"
#: How long one ``removed_placement_groups`` call may spend looking groups up.
AUDIT_BUDGET_S = 0.02


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
    """``RayActions`` over the Ray API. Must run inside a connected Ray worker.

    Its group handles are shared with ``PlacementDesk``'s threads, which make the
    creations and removals for the manager's loop: they are kept under a lock."""

    def __init__(self, *, dashboard_url: str | None = None) -> None:
        self._dashboard_url = dashboard_url
        self._job_desk: JobDesk | None = None
        self._handles: dict[WorkloadId, PlacementGroup] = {}
        self._handles_lock = threading.Lock()

    # -- placement groups ---------------------------------------------------------------

    def create_placement_group(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> str:
        return str(self.create(workload, bundles, strategy, label_selectors).id.hex())

    def create(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> PlacementGroup:
        """The workload's group, created unless it exists: a synchronous GCS call."""
        with self._handles_lock:
            existing = self._handles.get(workload)
        if existing is not None:
            return existing
        selectors = [dict(s) for s in label_selectors]
        pg: PlacementGroup = placement_group(
            [dict(b) for b in bundles],
            strategy=strategy.value,
            name=pg_name(workload),
            lifetime="detached",
            bundle_label_selector=selectors if any(selectors) else None,
        )
        with self._handles_lock:
            self._handles[workload] = pg
        return pg

    def remove_placement_group(self, workload: WorkloadId) -> None:
        with self._handles_lock:
            pg = self._handles.pop(workload, None)
        if pg is None:
            return
        try:
            remove_placement_group(pg)
        except Exception as e:  # already gone (removed by an operator, or by a restart race)
            logger.warning(
                "removing a placement group failed", extra={"workload": workload, "error": str(e)}
            )

    def move_placement_group(self, workload: WorkloadId, to: WorkloadId) -> None:
        with self._handles_lock:
            pg = self._handles.pop(workload, None)
            if pg is not None:
                self._handles[to] = pg

    def placement_groups(self) -> Mapping[WorkloadId, str]:
        found = _live_placement_groups()
        with self._handles_lock:
            for workload, pg_id in found.items():
                self._handles[workload] = pg_from_hex(pg_id)
        return found

    def removed_placement_groups(self, pg_ids: Sequence[str]) -> set[str]:
        """Those of ``pg_ids`` Ray no longer has, of the ones looked up within
        ``AUDIT_BUDGET_S`` (at least one): the rest are not reported, and the manager's
        audit looks them up on its next round.

        One lookup per group: Ray's table keeps every group ever removed, so reading it
        whole costs more the longer the cluster lives (0.7 s at 16,000 here). Each lookup
        is a blocking GCS call on the manager's loop: ~0.4 ms on a quiet machine, but ~5
        ms against a GCS busy placing groups, where 50 a second took a tenth of the loop
        (py-spy, ``benchmarks.ray_e2e`` at load average 35) from the admissions waiting
        on it. Noticing a group removed behind the manager's back can wait longer.
        """
        removed: set[str] = set()
        deadline = time.perf_counter() + AUDIT_BUDGET_S
        for pg_id in pg_ids:
            info = placement_group_table(pg_from_hex(pg_id)) or {}
            if info.get("state") in (None, "REMOVED"):
                removed.add(pg_id)
            if time.perf_counter() >= deadline:
                break
        return removed

    def handle(self, workload: WorkloadId) -> PlacementGroup | None:
        with self._handles_lock:
            return self._handles.get(workload)

    # -- jobs (through ``JobDesk``: never on the manager's loop) ----------------------------

    def _desk(self) -> JobDesk | None:
        if self._job_desk is None:
            if self._dashboard_url is None:
                node = ray._private.worker._global_node
                if node is None or not node.webui_url:
                    return None  # no dashboard, no job server
            self._job_desk = JobDesk(self._connect_jobs)
        return self._job_desk

    def _connect_jobs(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        url = self._dashboard_url or _published_dashboard_address()
        if not url:
            raise RuntimeError("the Ray dashboard (job server) is not running")
        if not url.startswith("http"):
            url = f"http://{url}"
        return JobSubmissionClient(url)

    def submit_job(
        self, run: JobRun, payload: Mapping[str, Any], label_selector: Mapping[str, str]
    ) -> None:
        desk = self._desk()
        if desk is None:
            raise RuntimeError("the Ray dashboard (job server) is not running")
        desk.submit(
            run.submission_id,
            {
                "entrypoint": payload["entrypoint"],
                "runtime_env": payload.get("runtime_env"),
                "metadata": {**(payload.get("metadata") or {}), "ray_queue_workload": run.workload},
                "entrypoint_num_cpus": payload.get("entrypoint_num_cpus"),
                "entrypoint_num_gpus": payload.get("entrypoint_num_gpus"),
                "entrypoint_memory": payload.get("entrypoint_memory"),
                "entrypoint_resources": payload.get("entrypoint_resources") or None,
                "entrypoint_label_selector": dict(label_selector) or None,
            },
        )

    def stop_job(self, submission_id: str) -> None:
        desk = self._desk()
        if desk is not None:
            desk.stop(submission_id)

    def jobs(self) -> Mapping[str, str]:
        desk = self._desk()
        if desk is None:
            return {}
        return {sid: s for sid, s in desk.listing().items() if sid.startswith(JOB_PREFIX)}

    def job_submission_failures(self) -> Mapping[str, str]:
        return self._job_desk.failures() if self._job_desk is not None else {}

    def job_messages(self) -> Mapping[str, str]:
        return self._job_desk.messages() if self._job_desk is not None else {}


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
