"""``ray_queue.submit_job``: a Ray job that waits in a queue.

The manager submits it through Ray's job submission API when it is admitted (with the
flavor's node labels as the entrypoint's label selector), stops it when it is preempted
and submits it again when it is re-admitted, and releases its quota when Ray says it
ended. A job is not owned by the driver that queued it: it keeps its place after that
driver exits, like a job submitted with ``ray job submit``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ray_queue.client.runtime import ClientRuntime, current, to_bundle
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind, WorkloadStatus
from ray_queue.errors import QueueTimeoutError
from ray_queue.manager.types import ClientEvent, SubmitResult


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
        return self._runtime.status(self.workload)

    def submission_id(self) -> str | None:
        """The Ray job submission id of its current (or last) run; ``None`` before admission.

        Each admission is a new run (``rq-<workload>-<n>``), since a stopped Ray job cannot
        be restarted under the same id.
        """
        status = self.status()
        runs = sum(1 for t in status.history if t.to_state.value == "ADMITTED")
        return f"rq-{self.workload}-{runs}" if runs else None

    def wait(self, timeout_s: float | None = None, *, poll_s: float = 0.5) -> WorkloadStatus:
        """Wait until the job ends (FINISHED, FAILED, CANCELLED, REJECTED)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status()
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
) -> QueuedJob:
    """Queue a Ray job; its quota is its entrypoint's resources (at least 1 CPU when none
    are given, so every queued job counts against its queue)."""
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
    )
    # Not owned by this driver: the job outlives it.
    request = dataclasses.replace(request, owner="")
    handle = QueuedJob(runtime, request.id, entrypoint)
    runtime.submit(request, handle, sync=True)
    return handle
