"""``ray_queue.submit_job``: a Ray job that waits in a queue.

Its driver runs captured, in the job's queue: what it makes are the job's children
(``max_resources`` caps them; docs/capture.md, "Jobs own their work"). The manager
submits it through Ray's job submission API when it is admitted (with the
flavor's node labels as the entrypoint's label selector), stops it when it is preempted
and submits it again when it is re-admitted, and releases its quota when Ray says it
ended. A job is not owned by the driver that queued it: it keeps its place after that
driver exits, like a job submitted with ``ray job submit``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from ray_queue.client.placement_group import UNSET, one_timeout
from ray_queue.client.runtime import ClientRuntime, current, to_bundle
from ray_queue.engine.model import (
    BundleGroup,
    WorkloadId,
    WorkloadKind,
    WorkloadStatus,
)
from ray_queue.errors import QueueTimeoutError
from ray_queue.wire import ClientEvent, SubmitResult, job_runs, job_submission_id

logger = logging.getLogger(__name__)


class QueuedJob:
    def __init__(self, runtime: ClientRuntime, workload: WorkloadId, entrypoint: str) -> None:
        self._runtime = runtime
        self.workload = workload
        self.entrypoint = entrypoint

    def _on_submitted(self, result: SubmitResult) -> None:
        pass

    def _on_event(self, event: ClientEvent) -> None:
        pass

    def status(self) -> WorkloadStatus:
        """The manager's view (``.state``, ``.message``, ``.history``); once the job has
        FAILED, ``.message`` also carries Ray's own words on why (its exit code and the
        end of its logs), as the manager read them from Ray's job server."""
        return self._runtime.status(self.workload)

    def children(self) -> list[WorkloadStatus]:
        """What the job's run made (its driver and Ray workers, captured): the workloads
        whose parent is this job, oldest first, with their state and resources."""
        self._runtime.flush()
        statuses: list[WorkloadStatus] = self._runtime.call(
            self._runtime.manager.workloads.remote()
        )
        mine = [s for s in statuses if s.spec.parent == self.workload]
        return sorted(mine, key=lambda s: s.spec.created_at)

    def submission_id(self) -> str | None:
        """The Ray job submission id of its current (or last) run; ``None`` before admission.

        Each admission is a new run (``rq-<workload>-<n>``), since a stopped Ray job cannot
        be restarted under the same id.
        """
        return self._submission_id(self._runtime.status(self.workload))

    def _submission_id(self, status: WorkloadStatus) -> str | None:
        runs = job_runs(status)
        return job_submission_id(self.workload, runs) if runs else None

    def wait(
        self, timeout_s: Any = UNSET, *, timeout_seconds: Any = UNSET, poll_s: float = 0.5
    ) -> WorkloadStatus:
        """Wait until the job ends (FINISHED, FAILED, CANCELLED, REJECTED) and return its
        status; raises ``QueueTimeoutError`` after ``timeout_s`` (or ``timeout_seconds``,
        as placement groups take it) seconds, if given."""
        timeout = one_timeout(timeout_seconds, timeout_s, default=None)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self._runtime.status(self.workload)
            if status.state.is_terminal:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueTimeoutError(
                    f"job {self.workload} still {status.state.value}: {status.message}"
                )
            time.sleep(poll_s)

    def cancel(self) -> None:
        self._runtime.cancel([self.workload])

    def __repr__(self) -> str:
        return f"QueuedJob({self.workload}, {self.entrypoint!r})"


def submit_job(
    entrypoint: str,
    *,
    queue: str | None = None,
    priority: str | None = None,
    entrypoint_num_cpus: float | None = None,
    entrypoint_num_gpus: float | None = None,
    entrypoint_memory: int | None = None,
    entrypoint_resources: dict[str, float] | None = None,
    runtime_env: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
    name: str = "",
    max_resources: Mapping[str, float] | None = None,
) -> QueuedJob:
    """Queue a Ray job; its quota is its entrypoint's resources (at least 1 CPU when none
    are given, so every queued job counts against its queue).

    Its driver runs captured in the job's queue: every placement group, task and actor it
    and its Ray workers make is a child workload of the job, charged to the queue, and
    ends when the job ends. ``max_resources`` (Ray units per resource name, e.g.
    ``{"GPU": 2}``) caps what the job holds at once, its entrypoint and its children
    together: a child that would cross it waits. A cap below the entrypoint's own ask, or
    naming a resource the queue does not cover, is an ``InvalidWorkloadError`` here."""
    runtime = current()
    resources: dict[str, float] = dict(entrypoint_resources or {})
    if entrypoint_num_cpus is not None:
        resources["CPU"] = entrypoint_num_cpus
    if entrypoint_num_gpus:
        resources["GPU"] = entrypoint_num_gpus
    if entrypoint_memory:
        resources["memory"] = entrypoint_memory
    if not resources:
        resources["CPU"] = 1
        entrypoint_num_cpus = 1
    bundle = to_bundle(resources, f"job {entrypoint!r}")
    payload = {
        "entrypoint": entrypoint,
        "runtime_env": runtime_env,
        "metadata": metadata or {},
        "entrypoint_num_cpus": entrypoint_num_cpus,
        "entrypoint_num_gpus": entrypoint_num_gpus,
        "entrypoint_memory": entrypoint_memory,
        "entrypoint_resources": entrypoint_resources,
    }
    request = runtime.request(
        WorkloadKind.JOB,
        [BundleGroup(bundle)],
        queue=queue,
        priority=priority,
        name=name or entrypoint[:60],
        payload=payload,
        max_resources=_cap(max_resources, entrypoint),
    )
    # Not owned by this driver: the job outlives it.
    request = dataclasses.replace(request, owner="")
    handle = QueuedJob(runtime, request.id, entrypoint)
    runtime.submit(request, handle, sync=True)
    return handle


def _cap(max_resources: Mapping[str, float] | None, entrypoint: str) -> dict[str, int] | None:
    """``max_resources`` in milli-units, refusing negative amounts here."""
    if max_resources is None:
        return None
    return to_bundle(dict(max_resources), f"job {entrypoint!r} max_resources")
