"""A typed Python client for the manager's gRPC API.

Hands back engine values (``WorkloadStatus``, ``PendingPosition`` …) and raises the same
``ray_queue`` errors the manager raises (``UnknownQueueError``, ``ConfigError`` with its
problems …), so scripts and services outside Ray handle errors exactly like code inside
it. The CLI is built on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from ray_queue.engine.errors import ConfigError, ConfigProblem, RayQueueError
from ray_queue.engine.model import (
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    PendingPosition,
    WorkloadId,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.grpc import convert
from ray_queue.grpc.backend import WorkloadEvent
from ray_queue.grpc.gen import autoscaler_pb2 as apb
from ray_queue.grpc.gen import autoscaler_pb2_grpc, queue_pb2_grpc
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.status import ERROR_TYPE_KEY, from_rpc_error, from_status
from ray_queue.wire import SubmitRequest, UnmanagedUsage, WorkerGroupShape

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool
    summary: str
    #: Problems found by a validate-only call (an apply that fails raises ConfigError).
    problems: tuple[ConfigProblem, ...] = ()
    evicted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DemandSnapshot:
    generation: int
    at: float
    gangs: tuple[GangDemand, ...]


#: The longest wait between attempts to reach a manager that is away (a restart).
RECONNECT_BACKOFF_MS = 1000


class QueueClient:
    """One channel to one manager. Thread-safe (gRPC channels are)."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls_ca_path: str | None = None,
        tls: bool = False,
        timeout_s: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # gRPC waits 1 s, then 1.6 times longer each time, up to 120 s, between
            # attempts to reconnect: a client that outlived a manager restart of a few
            # seconds found it back up to ~4 s late (more, the longer it was away).
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS // 4),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ]
        if tls or tls_ca_path:
            root = Path(tls_ca_path).read_bytes() if tls_ca_path else None
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self.address = address
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._timeout_s = timeout_s
        self._queue = queue_pb2_grpc.QueueServiceStub(self._channel)
        self._autoscaler = autoscaler_pb2_grpc.AutoscalerServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def wait_until_connected(self, timeout_s: float) -> bool:
        """Block until the channel is connected to the manager, trying to (re)connect
        meanwhile; False if it is not within ``timeout_s`` (a manager away, restarting)."""
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            ready.cancel()
            return False
        return True

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, *, timeout_s: float | None = None) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=timeout_s or self._timeout_s)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _stream(self, method: Any, request: Any, timeout_s: float | None) -> Iterator[Any]:
        call = method(request, metadata=self._metadata, timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as e:
            # A hang-up, or the deadline the caller chose for the stream: a normal end.
            if e.code() is grpc.StatusCode.CANCELLED or (
                timeout_s is not None and e.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            ):
                return
            raise from_rpc_error(e) from None
        finally:
            call.cancel()

    # -- workloads ---------------------------------------------------------------------------

    def submit_many(
        self, requests: Sequence[SubmitRequest]
    ) -> list[WorkloadStatus | RayQueueError]:
        """Submit a batch; each item is its status or the error that refused it."""
        response = self._call(
            self._queue.SubmitWorkloads,
            pb.SubmitWorkloadsRequest(workloads=[convert.request_to_pb(r) for r in requests]),
        )
        out: list[WorkloadStatus | RayQueueError] = []
        for result in response.results:
            if result.HasField("error"):
                code = _code(result.error.code)
                out.append(
                    from_status(code, result.error.message, [(ERROR_TYPE_KEY, result.error.type)])
                )
            else:
                out.append(convert.workload_from_pb(result.workload))
        return out

    def submit(self, request: SubmitRequest) -> WorkloadStatus:
        """Submit one workload; raises its error if refused."""
        (outcome,) = self.submit_many([request])
        if isinstance(outcome, RayQueueError):
            raise outcome
        return outcome

    def workload(self, workload: str) -> WorkloadStatus:
        return convert.workload_from_pb(
            self._call(self._queue.GetWorkload, pb.GetWorkloadRequest(id=workload))
        )

    def cancel(self, workload: str, *, message: str = "") -> bool:
        """Returns whether it was live (False: already finished or cancelled)."""
        response = self._call(
            self._queue.CancelWorkload, pb.CancelWorkloadRequest(id=workload, message=message)
        )
        return bool(response.was_live)

    def workloads(
        self,
        *,
        queue: str = "",
        cluster_queue: str = "",
        states: Iterable[WorkloadState] = (),
        owner: str = "",
        include_history: bool = False,
        page_size: int = 0,
    ) -> list[WorkloadStatus]:
        """Every matching workload, fetching all pages."""
        out: list[WorkloadStatus] = []
        token = ""
        wire_states = [convert.workload_state_to_pb(s) for s in states]
        while True:
            response = self._call(
                self._queue.ListWorkloads,
                pb.ListWorkloadsRequest(
                    queue=queue,
                    cluster_queue=cluster_queue,
                    states=wire_states,
                    owner=owner,
                    page_size=page_size,
                    page_token=token,
                    include_history=include_history,
                ),
            )
            out.extend(convert.workload_from_pb(w) for w in response.workloads)
            token = response.next_page_token
            if not token:
                return out

    def watch(
        self,
        *,
        queue: str = "",
        cluster_queue: str = "",
        owner: str = "",
        ids: Iterable[str] = (),
        send_initial: bool = False,
        timeout_s: float | None = None,
    ) -> Iterator[WorkloadEvent]:
        """Transitions as they happen; stop iterating (or ``close``) to hang up."""
        request = pb.WatchWorkloadsRequest(
            queue=queue,
            cluster_queue=cluster_queue,
            owner=owner,
            ids=list(ids),
            send_initial=send_initial,
        )
        for event in self._stream(self._queue.WatchWorkloads, request, timeout_s):
            yield WorkloadEvent(
                event.seq,
                WorkloadId(event.workload),
                event.queue,
                event.cluster_queue,
                event.owner,
                convert.transition_from_pb(event.transition),
            )

    def pending(
        self, *, queue: str = "", cluster_queue: str = "", limit: int = 0
    ) -> list[PendingPosition]:
        response = self._call(
            self._queue.ListPending,
            pb.ListPendingRequest(queue=queue, cluster_queue=cluster_queue, limit=limit),
        )
        return [convert.pending_from_pb(p) for p in response.pending]

    # -- status and config ------------------------------------------------------------------

    def cluster_queues(self, names: Iterable[str] = ()) -> list[ClusterQueueStatus]:
        response = self._call(
            self._queue.GetClusterQueues, pb.GetClusterQueuesRequest(names=list(names))
        )
        return [convert.cluster_queue_from_pb(s) for s in response.cluster_queues]

    def cohorts(self, names: Iterable[str] = ()) -> list[CohortStatus]:
        response = self._call(self._queue.GetCohorts, pb.GetCohortsRequest(names=list(names)))
        return [convert.cohort_from_pb(s) for s in response.cohorts]

    def unmanaged_usage(self) -> list[UnmanagedUsage]:
        """Resources in use in Ray beyond what admissions hold, per flavor."""
        response = self._call(self._queue.GetUnmanagedUsage, pb.GetUnmanagedUsageRequest())
        return [
            UnmanagedUsage(
                u.flavor,
                u.resource,
                u.amount,
                tuple((j.ray_job_id, j.amount) for j in u.by_job),
            )
            for u in response.usage
        ]

    def config_yaml(self) -> str:
        return str(self._call(self._queue.GetConfig, pb.GetConfigRequest()).text)

    def apply_config(self, yaml_text: str, *, validate_only: bool = False) -> ApplyResult:
        """Apply (or only validate) YAML documents. A refused apply raises ``ConfigError``."""
        response = self._call(
            self._queue.ApplyConfig,
            pb.ApplyConfigRequest(yaml=yaml_text, validate_only=validate_only),
        )
        problems = [ConfigProblem(p.document, p.field, p.message) for p in response.problems]
        if problems and not validate_only:
            raise ConfigError(problems)
        return ApplyResult(
            applied=response.applied,
            summary=response.summary,
            problems=tuple(problems),
            evicted=tuple(response.evicted),
        )

    # -- autoscaler -------------------------------------------------------------------------

    def watch_demand(
        self, *, flavors: Iterable[str] = (), timeout_s: float | None = None
    ) -> Iterator[DemandSnapshot]:
        request = apb.WatchDemandRequest(flavors=list(flavors))
        for snapshot in self._stream(self._autoscaler.WatchDemand, request, timeout_s):
            yield DemandSnapshot(
                snapshot.generation, snapshot.at, tuple(convert.demand_from_pb(snapshot.flavors))
            )

    def report_check(
        self, workload: str, check: str, state: CheckState, message: str = ""
    ) -> WorkloadStatus:
        response = self._call(
            self._autoscaler.ReportAdmissionCheck,
            apb.ReportAdmissionCheckRequest(
                workload=workload,
                check=check,
                state=convert.check_state_to_pb(state),
                message=message,
            ),
        )
        return convert.workload_from_pb(response.workload)

    def evict(self, workload: str, *, reason: str, message: str = "") -> WorkloadStatus:
        """Evict a workload whose capacity went away (requeued with back-off)."""
        response = self._call(
            self._autoscaler.EvictWorkload,
            apb.EvictWorkloadRequest(workload=workload, reason=reason, message=message),
        )
        return convert.workload_from_pb(response.workload)

    def report_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        """Tell the manager what one node of each autoscaled worker group offers."""
        self._call(
            self._autoscaler.ReportWorkerGroups,
            apb.ReportWorkerGroupsRequest(groups=[convert.worker_group_to_pb(g) for g in groups]),
        )

    def health(self, service: str = "") -> str:
        """The standard health service's answer ("SERVING", "NOT_SERVING" …)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        # types-grpcio-health-checking's HealthStub lacks the methods grpc sets in __init__.
        check = stub.Check  # type: ignore[attr-defined]
        response = self._call(check, health_pb2.HealthCheckRequest(service=service))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
