"""The gRPC servicers: requests in, backend calls, responses out.

Each method is the same four steps: check the message (``convert``), check the caller's
queues (``auth``), call the ``Backend``, convert the answer. A ``RayQueueError`` becomes
its status code through ``status``'s table; anything else is a bug, logged with its
traceback and returned as INTERNAL without the server's internals.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import yaml
from google.protobuf import json_format

from ray_queue.access import namespaces, scope
from ray_queue.access.parents import attach_refusal
from ray_queue.access.principals import Principal
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import dump_yaml, parse_documents
from ray_queue.engine.errors import ConfigError, ConfigProblem, RayQueueError, UnknownWorkloadError
from ray_queue.engine.model import Transition, WorkloadId, WorkloadState, WorkloadStatus
from ray_queue.errors import PermissionDeniedError
from ray_queue.grpc import convert
from ray_queue.grpc.auth import Authenticator
from ray_queue.grpc.backend import Backend, WorkloadEvent
from ray_queue.grpc.gen import autoscaler_pb2 as apb
from ray_queue.grpc.gen import autoscaler_pb2_grpc, queue_pb2_grpc
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.status import InvalidRequestError, code_for, trailing_metadata

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    #: Workloads per SubmitWorkloads call.
    max_batch: int = 10_000
    #: How often an idle stream checks that its client is still there.
    poll_s: float = 0.5
    #: WatchDemand resends an unchanged snapshot this often.
    demand_heartbeat_s: float = 10.0


def _fail(context: grpc.ServicerContext, error: BaseException) -> None:
    """Abort the RPC with the status ``error`` maps to (raises)."""
    if isinstance(error, RayQueueError):
        context.set_trailing_metadata(trailing_metadata(error))
        context.abort(code_for(error), str(error))
    if isinstance(error, TimeoutError | futures.TimeoutError):
        # The manager's loop did not get to the call in time (ManagerBackend).
        context.abort(grpc.StatusCode.UNAVAILABLE, "the manager is busy; retry with back-off")
    logger.exception("gRPC handler failed", exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the manager's log")


def _rpc(method: F) -> F:
    """Map errors of a unary method to status codes."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as e:
            if isinstance(e, RayQueueError) or not _is_abort(e):
                _fail(context, e)
            raise

    # The wrapper takes and returns what `method` does; F cannot say so without naming
    # every servicer method's request type.
    return wrapper  # type: ignore[return-value]


def _stream(method: F) -> F:
    """Map errors of a server-streaming method to status codes."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as e:
            if isinstance(e, RayQueueError) or not _is_abort(e):
                _fail(context, e)
            raise

    # As in `_rpc`: same signature as `method`.
    return wrapper  # type: ignore[return-value]


def _is_abort(error: BaseException) -> bool:
    # grpc's sync server signals context.abort() by raising a bare ``Exception()``; it
    # must propagate untouched or the status set by abort would be overwritten.
    return type(error) is Exception and not error.args


class _Scoped:
    """Shared queue-scoping helpers."""

    def __init__(self, backend: Backend, auth: Authenticator, limits: ServiceLimits) -> None:
        self._backend = backend
        self._auth = auth
        self._limits = limits

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        return self._auth.principal(context)

    def _require_queue(self, principal: Principal, queue: str, field: str) -> None:
        if not principal.may_use_queue(queue):
            raise PermissionDeniedError(
                f"{field}: token {principal.name!r} may not use Queue {queue!r}"
            )

    def _visible(self, principal: Principal, status: WorkloadStatus) -> bool:
        return principal.may_use_queue(status.spec.queue)

    def _get_visible(self, principal: Principal, workload: str, field: str) -> WorkloadStatus:
        # A tenant's bare name is in its namespace first (``access/namespaces.py``).
        for whole in namespaces.candidates(principal.namespace, convert.name(workload, field)):
            try:
                status = self._backend.workload(whole)
            except UnknownWorkloadError:
                continue
            if self._visible(principal, status):
                return status
        # The same answer as for an id nobody used: a tenant learns nothing of other
        # tenants' workloads, not even that one exists or which Queue it is in.
        raise UnknownWorkloadError(f"no workload with id {workload!r}")

    def _tenant_cluster_queues(self, principal: Principal) -> set[str] | None:
        return scope.cluster_queues_of(principal, self._backend.config())


class QueueServicer(_Scoped, queue_pb2_grpc.QueueServiceServicer):
    @_rpc
    def SubmitWorkloads(
        self, request: pb.SubmitWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitWorkloadsResponse:
        principal = self._principal(context)
        if len(request.workloads) > self._limits.max_batch:
            raise InvalidRequestError(
                "workloads", f"has {len(request.workloads)} items; at most {self._limits.max_batch}"
            )
        requests = []
        for i, spec in enumerate(request.workloads):
            field = f"workloads[{i}]"
            if spec.owner and not principal.sees_all_queues:
                # The owner decides whose death cancels a workload: a tenant may not name
                # someone else (a driver of another team) as the owner of its work.
                raise PermissionDeniedError(
                    f"{field}.owner: set by the server for token {principal.name!r}; leave it empty"
                )
            submit = convert.submit_request(spec, field, owner=f"grpc:{principal.name}")
            self._require_queue(principal, submit.queue, f"{field}.queue")
            # A tenant's ids are in its namespace, so no tenant can take another's.
            whole = namespaces.for_submission(principal.namespace, submit.id, field=f"{field}.id")
            if submit.parent is not None and (why := attach_refusal(principal, submit.parent)):
                raise PermissionDeniedError(f"{field}.parent: {why}")
            requests.append(dataclasses.replace(submit, id=whole))
        results = self._backend.submit_many(requests)
        return pb.SubmitWorkloadsResponse(results=[convert.submit_result_to_pb(r) for r in results])

    @_rpc
    def GetWorkload(
        self, request: pb.GetWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Workload:
        status = self._get_visible(self._principal(context), request.id, "id")
        return convert.workload_to_pb(status)

    @_rpc
    def CancelWorkload(
        self, request: pb.CancelWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.CancelWorkloadResponse:
        principal = self._principal(context)
        status = self._get_visible(principal, request.id, "id")
        message = convert.text(request.message, "message") or f"cancelled by {principal.name}"
        live = self._backend.cancel(status.spec.id, message=message)
        after = self._backend.workload(status.spec.id)
        return pb.CancelWorkloadResponse(was_live=live, workload=convert.workload_to_pb(after))

    def _filter(
        self,
        principal: Principal,
        *,
        queue: str,
        cluster_queue: str,
        owner: str,
        states: set[WorkloadState] | None = None,
        ids: set[str] | None = None,
    ) -> Callable[[str, str, str, str, WorkloadState | None], bool]:
        """A predicate over (id, queue, cluster_queue, owner, state)."""
        convert.name(queue, "queue", required=False)
        convert.name(cluster_queue, "cluster_queue", required=False)
        convert.name(owner, "owner", required=False)
        if queue:
            self._require_queue(principal, queue, "queue")

        def keep(w: str, q: str, cq: str, o: str, state: WorkloadState | None) -> bool:
            return (
                principal.may_use_queue(q)
                and (not queue or q == queue)
                and (not cluster_queue or cq == cluster_queue)
                and (not owner or o == owner)
                and (states is None or state is None or state in states)
                and (ids is None or w in ids)
            )

        return keep

    @_rpc
    def ListWorkloads(
        self, request: pb.ListWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkloadsResponse:
        principal = self._principal(context)
        states = {
            convert.workload_state(s, f"states[{i}]") for i, s in enumerate(request.states)
        } or None
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidRequestError(
                "page_size", f"is {request.page_size}; use 0..{MAX_PAGE_SIZE}"
            )
        size = request.page_size or DEFAULT_PAGE_SIZE
        offset = 0
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 12:
                raise InvalidRequestError("page_token", "is not a token from a previous response")
            offset = int(request.page_token)
        keep = self._filter(
            principal,
            queue=request.queue,
            cluster_queue=request.cluster_queue,
            owner=request.owner,
            states=states,
        )
        matching = [
            s
            for s in self._backend.workloads()
            if keep(s.spec.id, s.spec.queue, s.cluster_queue, s.spec.owner, s.state)
        ]
        page = matching[offset : offset + size]
        next_token = str(offset + size) if offset + size < len(matching) else ""
        return pb.ListWorkloadsResponse(
            workloads=[convert.workload_to_pb(s, history=request.include_history) for s in page],
            next_page_token=next_token,
            total_size=len(matching),
        )

    @_stream
    def WatchWorkloads(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WorkloadEvent]:
        principal = self._principal(context)
        ids: set[str] | None = {
            whole
            for i, w in enumerate(request.ids)
            for whole in namespaces.candidates(principal.namespace, convert.name(w, f"ids[{i}]"))
        } or None
        keep = self._filter(
            principal,
            queue=request.queue,
            cluster_queue=request.cluster_queue,
            owner=request.owner,
            ids=ids,
        )
        cursor = self._backend.journal_head()
        seq = 0
        if request.send_initial:
            now = time.time()
            for s in self._backend.workloads():
                if s.state.is_terminal or not keep(
                    s.spec.id, s.spec.queue, s.cluster_queue, s.spec.owner, None
                ):
                    continue
                seq += 1
                yield convert.event_to_pb(_snapshot_event(s, now), seq)
        while context.is_active():
            page = self._backend.events(after=cursor, timeout_s=self._limits.poll_s)
            if page.lost:
                context.abort(
                    grpc.StatusCode.ABORTED,
                    "this watcher fell too far behind and missed events; reconnect "
                    "(with send_initial to resync)",
                )
            cursor = page.seq
            for event in page.events:
                if keep(event.workload, event.queue, event.cluster_queue, event.owner, None):
                    seq += 1
                    yield convert.event_to_pb(event, seq)

    @_rpc
    def ListPending(
        self, request: pb.ListPendingRequest, context: grpc.ServicerContext
    ) -> pb.ListPendingResponse:
        principal = self._principal(context)
        keep = self._filter(
            principal, queue=request.queue, cluster_queue=request.cluster_queue, owner=""
        )
        if request.limit < 0:
            raise InvalidRequestError("limit", "must be >= 0")
        positions = self._backend.pending(
            queue=request.queue or None, cluster_queue=request.cluster_queue or None
        )
        visible = [p for p in positions if keep(p.workload, p.queue, p.cluster_queue, "", None)]
        if request.limit:
            visible = visible[: request.limit]
        return pb.ListPendingResponse(pending=[convert.pending_to_pb(p) for p in visible])

    @_rpc
    def GetClusterQueues(
        self, request: pb.GetClusterQueuesRequest, context: grpc.ServicerContext
    ) -> pb.GetClusterQueuesResponse:
        allowed = self._tenant_cluster_queues(self._principal(context))
        names = {convert.name(n, f"names[{i}]") for i, n in enumerate(request.names)}
        statuses = [
            s
            for s in self._backend.cluster_queues()
            if (allowed is None or s.name in allowed) and (not names or s.name in names)
        ]
        return pb.GetClusterQueuesResponse(
            cluster_queues=[convert.cluster_queue_to_pb(s) for s in statuses]
        )

    @_rpc
    def GetCohorts(
        self, request: pb.GetCohortsRequest, context: grpc.ServicerContext
    ) -> pb.GetCohortsResponse:
        principal = self._principal(context)
        names = {convert.name(n, f"names[{i}]") for i, n in enumerate(request.names)}
        allowed = self._tenant_cohorts(principal)
        statuses = [
            s
            for s in self._backend.cohorts()
            if (allowed is None or s.name in allowed) and (not names or s.name in names)
        ]
        return pb.GetCohortsResponse(cohorts=[convert.cohort_to_pb(s) for s in statuses])

    @_rpc
    def GetUnmanagedUsage(
        self, request: pb.GetUnmanagedUsageRequest, context: grpc.ServicerContext
    ) -> pb.GetUnmanagedUsageResponse:
        return pb.GetUnmanagedUsageResponse(
            usage=[
                pb.UnmanagedUsage(
                    flavor=u.flavor,
                    resource=u.resource,
                    amount=u.amount,
                    by_job=[pb.RayJobAmount(ray_job_id=j, amount=a) for j, a in u.by_job],
                )
                for u in self._backend.unmanaged_usage()
            ]
        )

    def _tenant_cohorts(self, principal: Principal) -> set[str] | None:
        return scope.cohorts_of(principal, self._backend.config())

    @_rpc
    def GetConfig(
        self, request: pb.GetConfigRequest, context: grpc.ServicerContext
    ) -> pb.GetConfigResponse:
        return pb.GetConfigResponse(text=dump_yaml(self._backend.config()), format="yaml")

    @_rpc
    def ApplyConfig(
        self, request: pb.ApplyConfigRequest, context: grpc.ServicerContext
    ) -> pb.ApplyConfigResponse:
        # Problems travel in the body, each bounded, however many there are: trailing
        # metadata is limited to a few KB and a big config can have hundreds.
        try:
            config = config_from_request(request)
            outcome = self._backend.apply_config(config, validate_only=request.validate_only)
        except ConfigError as e:
            return pb.ApplyConfigResponse(
                applied=False,
                problems=[
                    pb.ConfigProblem(
                        document=bounded(p.document),
                        field=bounded(p.field),
                        message=bounded(p.message),
                    )
                    for p in e.problems
                ],
            )
        return pb.ApplyConfigResponse(
            applied=outcome.applied, summary=summary(config), evicted=list(outcome.evicted)
        )


#: Longest text of a config problem on the wire; a message may quote whole values.
PROBLEM_TEXT_MAX = 500


def bounded(text: str, limit: int = PROBLEM_TEXT_MAX) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOO_DEEP = "is nested too deeply"


def config_from_request(request: pb.ApplyConfigRequest) -> QueueConfig:
    """Parse the request's documents. YAML text is parsed here, never handed to
    ``load_config``: that would read a server-side file if the text looks like a path."""
    source = request.WhichOneof("source")
    if source == "yaml":
        text = request.yaml
        try:
            # libyaml's parser where PyYAML has it, as the config loader uses: the pure
            # Python one took seconds of the server's CPU to refuse "[" * 3000.
            docs = list(yaml.load_all(text, Loader=_YAML_LOADER))
        except yaml.YAMLError as e:
            if "nesting depth" in str(getattr(e, "problem", "")):
                raise ConfigError([ConfigProblem("yaml", "", _TOO_DEEP)]) from None
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError([ConfigProblem("yaml", "", f"is not valid YAML{where}")]) from None
        except RecursionError:
            # The pure-Python parser composes nested collections recursively: "[" * 3000
            # went INTERNAL.
            raise ConfigError([ConfigProblem("yaml", "", _TOO_DEEP)]) from None
        if len(docs) == 1 and isinstance(docs[0], list):
            docs = docs[0]
    elif source == "documents":
        docs = [_integral(json_format.MessageToDict(item)) for item in request.documents.items]
    else:
        raise InvalidRequestError("source", "give yaml or documents")
    if not any(d is not None for d in docs):
        raise InvalidRequestError(source, "holds no documents")
    return parse_documents(docs)


def _integral(value: Any) -> Any:
    """Struct has only doubles: give whole numbers back their int type (``value: 10``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def summary(config: QueueConfig) -> str:
    parts = [
        (len(config.flavors), "ResourceFlavor"),
        (len(config.cluster_queues), "ClusterQueue"),
        (len(config.cohorts), "Cohort"),
        (len(config.queues), "Queue"),
        (len(config.priority_classes), "PriorityClass"),
        (len(config.admission_checks), "AdmissionCheck"),
    ]
    return ", ".join(
        f"{n} {kind if n == 1 else kind + ('es' if kind.endswith('s') else 's')}"
        for n, kind in parts
    )


def _snapshot_event(status: WorkloadStatus, now: float) -> WorkloadEvent:
    return WorkloadEvent(
        0,
        status.spec.id,
        status.spec.queue,
        status.cluster_queue,
        status.spec.owner,
        Transition(now, status.state, status.state, "Snapshot", status.message),
    )


class AutoscalerServicer(_Scoped, autoscaler_pb2_grpc.AutoscalerServiceServicer):
    @_stream
    def WatchDemand(
        self, request: apb.WatchDemandRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.DemandSnapshot]:
        flavors = {convert.name(f, f"flavors[{i}]") for i, f in enumerate(request.flavors)}
        generation = 0
        last: bytes | None = None
        sent_at = 0.0
        changes = self._backend.wait_changed(after=-1, timeout_s=0)
        while context.is_active():
            demand = [g for g in self._backend.demand() if not flavors or g.flavor in flavors]
            per_flavor = convert.demand_to_pb(demand)
            body = apb.DemandSnapshot(flavors=per_flavor).SerializeToString(deterministic=True)
            now = time.monotonic()
            if body != last or now - sent_at >= self._limits.demand_heartbeat_s:
                generation += 1
                last, sent_at = body, now
                yield apb.DemandSnapshot(generation=generation, at=time.time(), flavors=per_flavor)
            wait = min(
                self._limits.poll_s, max(0.0, sent_at + self._limits.demand_heartbeat_s - now)
            )
            changes = self._backend.wait_changed(after=changes, timeout_s=wait)

    @_rpc
    def ReportAdmissionCheck(
        self, request: apb.ReportAdmissionCheckRequest, context: grpc.ServicerContext
    ) -> apb.ReportAdmissionCheckResponse:
        workload = WorkloadId(convert.name(request.workload, "workload"))
        check = convert.name(request.check, "check")
        state = convert.check_state(request.state, "state")
        message = convert.text(request.message, "message")
        status = self._backend.set_check_state(workload, check, state, message)
        return apb.ReportAdmissionCheckResponse(workload=convert.workload_to_pb(status))

    @_rpc
    def EvictWorkload(
        self, request: apb.EvictWorkloadRequest, context: grpc.ServicerContext
    ) -> apb.EvictWorkloadResponse:
        workload = WorkloadId(convert.name(request.workload, "workload"))
        reason = convert.name(request.reason, "reason")
        message = convert.text(request.message, "message")
        status = self._backend.evict(workload, reason=reason, message=message)
        return apb.EvictWorkloadResponse(workload=convert.workload_to_pb(status))

    @_rpc
    def ReportWorkerGroups(
        self, request: apb.ReportWorkerGroupsRequest, context: grpc.ServicerContext
    ) -> apb.ReportWorkerGroupsResponse:
        groups = [
            convert.worker_group_from_pb(g, f"groups[{i}]") for i, g in enumerate(request.groups)
        ]
        self._backend.set_worker_groups(groups)
        return apb.ReportWorkerGroupsResponse()
