"""Protobuf ⇄ engine values, in one place.

Protobuf messages stop here: the service hands the backend engine values
(``SubmitRequest``, ``CheckState`` …) and the client hands its callers the same engine
values (``WorkloadStatus``, ``PendingPosition`` …). Incoming messages are checked field
by field; a bad one raises ``InvalidRequestError`` naming the field
(``workloads[3].bundle_groups[0].count``), which the service returns as INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import (
    MILLI,
    Admission,
    BundleGroup,
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    GroupAdmission,
    PendingPosition,
    PlacementStrategy,
    ResourceStatus,
    Transition,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.grpc.backend import WorkloadEvent
from ray_queue.grpc.gen import autoscaler_pb2 as apb
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.status import InvalidRequestError, code_for
from ray_queue.wire import SubmitRequest, SubmitResult, WorkerGroupShape

#: Longest name accepted (Kubernetes' DNS subdomain limit): ids, queues, resources …
MAX_NAME_LEN = 253
MAX_GROUPS = 64
MAX_RESOURCES_PER_BUNDLE = 64
MAX_COUNT = 100_000
MAX_TEXT_LEN = 64 * 1024
#: 2**53 milli-units: beyond it Ray's float units lose integer precision.
MAX_MILLI = 2**53

E = TypeVar("E")

# Engine enums ⇄ proto enum numbers, by name: WorkloadState.PENDING ⇄ WORKLOAD_STATE_PENDING.
# protoc's stubs type a proto enum as a subclass of int, while `.Value()` is typed (and is, at
# run time) a plain int: the casts say which enum each number belongs to, once, here.
_STATE_TO_PB = {
    s: cast(pb.WorkloadState, pb.WorkloadState.Value(f"WORKLOAD_STATE_{s.name}"))
    for s in WorkloadState
}
_KIND_TO_PB = {
    k: cast(pb.WorkloadKind, pb.WorkloadKind.Value(f"WORKLOAD_KIND_{k.name}")) for k in WorkloadKind
}
_STRATEGY_TO_PB = {
    s: cast(pb.PlacementStrategy, pb.PlacementStrategy.Value(f"PLACEMENT_STRATEGY_{s.name}"))
    for s in PlacementStrategy
}
_CHECK_TO_PB = {
    c: cast(pb.CheckState, pb.CheckState.Value(f"CHECK_STATE_{c.name}")) for c in CheckState
}
_STATE_FROM_PB: dict[int, WorkloadState] = {v: k for k, v in _STATE_TO_PB.items()}
_KIND_FROM_PB: dict[int, WorkloadKind] = {v: k for k, v in _KIND_TO_PB.items()}
_KIND_FROM_PB[0] = WorkloadKind.PLACEMENT_GROUP
_STRATEGY_FROM_PB: dict[int, PlacementStrategy] = {v: k for k, v in _STRATEGY_TO_PB.items()}
_STRATEGY_FROM_PB[0] = PlacementStrategy.PACK
_CHECK_FROM_PB: dict[int, CheckState] = {v: k for k, v in _CHECK_TO_PB.items()}


# -- requests: proto → engine (server side, validating) ----------------------------------


def name(value: str, field: str, *, required: bool = True) -> str:
    """A name-like string field: non-empty when required, bounded, no control characters."""
    if not value:
        if required:
            raise InvalidRequestError(field, "is required")
        return value
    if len(value) > MAX_NAME_LEN:
        raise InvalidRequestError(field, f"is {len(value)} characters long; at most {MAX_NAME_LEN}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidRequestError(field, "contains control characters")
    return value


def text(value: str, field: str) -> str:
    if len(value) > MAX_TEXT_LEN:
        raise InvalidRequestError(field, f"is longer than {MAX_TEXT_LEN} characters")
    return value


def _enum(table: Mapping[int, E], value: int, field: str) -> E:
    try:
        return table[value]
    except KeyError:
        raise InvalidRequestError(field, f"{value} is not a valid value") from None


def workload_state(value: int, field: str) -> WorkloadState:
    return _enum(_STATE_FROM_PB, value, field)


def check_state(value: int, field: str) -> CheckState:
    return _enum(_CHECK_FROM_PB, value, field)


def _resources(resources: Mapping[str, int], field: str) -> dict[str, int]:
    if not resources:
        raise InvalidRequestError(field, "is empty; ask for at least one resource, e.g. CPU")
    if len(resources) > MAX_RESOURCES_PER_BUNDLE:
        raise InvalidRequestError(field, f"has more than {MAX_RESOURCES_PER_BUNDLE} resources")
    out = {}
    for resource, amount in sorted(resources.items()):
        name(resource, f"{field}[{resource!r}]")
        if amount < 0:
            raise InvalidRequestError(f"{field}[{resource!r}]", f"is {amount}; must be >= 0")
        if amount > MAX_MILLI:
            raise InvalidRequestError(f"{field}[{resource!r}]", f"is larger than {MAX_MILLI}")
        out[resource] = amount
    return out


def worker_group_from_pb(group: apb.WorkerGroupShape, field: str) -> WorkerGroupShape:
    return WorkerGroupShape(
        name(group.name, f"{field}.name"), _resources(group.resources, f"{field}.resources")
    )


def worker_group_to_pb(group: WorkerGroupShape) -> apb.WorkerGroupShape:
    return apb.WorkerGroupShape(name=group.name, resources=dict(group.resources))


def submit_request(spec: pb.WorkloadSpec, field: str, *, owner: str) -> SubmitRequest:
    """A validated ``SubmitRequest`` from a wire spec; ``owner`` fills an empty owner."""
    workload = name(spec.id, f"{field}.id")
    queue = name(spec.queue, f"{field}.queue")
    if not spec.bundle_groups:
        raise InvalidRequestError(f"{field}.bundle_groups", "is empty; give at least one group")
    if len(spec.bundle_groups) > MAX_GROUPS:
        raise InvalidRequestError(f"{field}.bundle_groups", f"has more than {MAX_GROUPS} groups")
    groups = []
    total_bundles = 0
    for i, group in enumerate(spec.bundle_groups):
        where = f"{field}.bundle_groups[{i}]"
        if not 1 <= group.count <= MAX_COUNT:
            raise InvalidRequestError(f"{where}.count", f"is {group.count}; use 1..{MAX_COUNT}")
        total_bundles += group.count
        groups.append(
            BundleGroup(_resources(group.resources_milli, f"{where}.resources_milli"), group.count)
        )
    if not 0 <= spec.min_count <= spec.bundle_groups[0].count:
        raise InvalidRequestError(
            f"{field}.min_count",
            f"is {spec.min_count}; use 0 (all or nothing) or 1..bundle_groups[0].count",
        )
    kind = _enum(_KIND_FROM_PB, spec.kind, f"{field}.kind")
    strategy = _enum(_STRATEGY_FROM_PB, spec.strategy, f"{field}.strategy")
    payload: dict[str, Any] = {}
    if len(spec.bundle_label_selectors) > total_bundles:
        raise InvalidRequestError(
            f"{field}.bundle_label_selectors", f"has more entries than bundles ({total_bundles})"
        )
    if spec.bundle_label_selectors:
        selectors = []
        for i, selector in enumerate(spec.bundle_label_selectors):
            for key, value in selector.labels.items():
                name(key, f"{field}.bundle_label_selectors[{i}].labels")
                name(value, f"{field}.bundle_label_selectors[{i}].labels[{key!r}]", required=False)
            selectors.append(dict(selector.labels))
        payload["bundle_label_selector"] = selectors
    if kind is WorkloadKind.JOB:
        payload.update(_job_payload(spec, field, groups[0]))
    return SubmitRequest(
        id=WorkloadId(workload),
        queue=queue,
        bundle_groups=tuple(groups),
        kind=kind,
        strategy=strategy,
        priority_class=name(spec.priority_class, f"{field}.priority_class", required=False) or None,
        owner=name(spec.owner, f"{field}.owner", required=False) or owner,
        name=name(spec.name, f"{field}.name", required=False),
        min_count=spec.min_count or None,
        payload=payload,
        parent=WorkloadId(name(spec.parent, f"{field}.parent")) if spec.parent else None,
        max_resources=_cap(spec, kind, field),
    )


def _cap(spec: pb.WorkloadSpec, kind: WorkloadKind, field: str) -> dict[str, int] | None:
    """A job's ``max_resources`` (the engine checks it against the job and its queue)."""
    if not spec.max_resources_milli:
        return None
    if kind is not WorkloadKind.JOB:
        raise InvalidRequestError(
            f"{field}.max_resources_milli", "caps a job's work; leave it empty for other kinds"
        )
    return _resources(spec.max_resources_milli, f"{field}.max_resources_milli")


def _job_payload(spec: pb.WorkloadSpec, field: str, entry: BundleGroup) -> dict[str, Any]:
    """What Ray's job submission needs: the entrypoint and its resources in Ray units."""
    if not spec.job.entrypoint.strip():
        raise InvalidRequestError(f"{field}.job.entrypoint", "is required for a job")
    runtime_env: Any = None
    if spec.job.runtime_env_json:
        try:
            runtime_env = json.loads(
                text(spec.job.runtime_env_json, f"{field}.job.runtime_env_json")
            )
        except (ValueError, RecursionError) as e:
            # RecursionError: nested too deep for Python's parser ("[" * 50,000).
            raise InvalidRequestError(
                f"{field}.job.runtime_env_json", f"is not JSON: {str(e)[:200]}"
            ) from None
        if not isinstance(runtime_env, dict):
            raise InvalidRequestError(f"{field}.job.runtime_env_json", "must be a JSON object")
    payload: dict[str, Any] = {
        "entrypoint": text(spec.job.entrypoint, f"{field}.job.entrypoint"),
        "runtime_env": runtime_env,
        "metadata": dict(spec.job.metadata),
    }
    custom = {}
    for resource, amount in entry.resources.items():
        if resource == "CPU":
            payload["entrypoint_num_cpus"] = amount / MILLI
        elif resource == "GPU":
            payload["entrypoint_num_gpus"] = amount / MILLI
        elif resource == "memory":
            payload["entrypoint_memory"] = math.ceil(amount / MILLI)
        else:
            custom[resource] = amount / MILLI
    payload["entrypoint_resources"] = custom
    return payload


# -- engine → proto (server side) -----------------------------------------------------------


def _milli_map(resources: Mapping[str, int]) -> dict[str, int]:
    return dict(resources)


def spec_to_pb(spec: WorkloadSpec) -> pb.WorkloadSpec:
    return pb.WorkloadSpec(
        id=spec.id,
        queue=spec.queue,
        bundle_groups=[
            pb.BundleGroup(resources_milli=_milli_map(g.resources), count=g.count)
            for g in spec.bundle_groups
        ],
        kind=_KIND_TO_PB[spec.kind],
        strategy=_STRATEGY_TO_PB[spec.strategy],
        priority_class=spec.priority_class or "",
        owner=spec.owner,
        min_count=spec.min_count or 0,
        name=spec.name,
        created_at=spec.created_at,
        parent=spec.parent or "",
        max_resources_milli=_milli_map(spec.max_resources or {}),
    )


def request_to_pb(request: SubmitRequest) -> pb.WorkloadSpec:
    """Client side: a ``SubmitRequest`` on the wire (payload: job and label selectors)."""
    payload = request.payload
    job = None
    if request.kind is WorkloadKind.JOB:
        env = payload.get("runtime_env")
        job = pb.JobSpec(
            entrypoint=str(payload.get("entrypoint", "")),
            runtime_env_json=json.dumps(env) if env else "",
            metadata={str(k): str(v) for k, v in (payload.get("metadata") or {}).items()},
        )
    return pb.WorkloadSpec(
        id=request.id,
        queue=request.queue,
        bundle_groups=[
            pb.BundleGroup(resources_milli=_milli_map(g.resources), count=g.count)
            for g in request.bundle_groups
        ],
        kind=_KIND_TO_PB[request.kind],
        strategy=_STRATEGY_TO_PB[request.strategy],
        priority_class=request.priority_class or "",
        owner=request.owner,
        min_count=request.min_count or 0,
        name=request.name,
        parent=request.parent or "",
        max_resources_milli=_milli_map(request.max_resources or {}),
        job=job,
        bundle_label_selectors=[
            pb.LabelSelector(labels=dict(s)) for s in payload.get("bundle_label_selector") or ()
        ],
    )


def transition_to_pb(t: Transition) -> pb.Transition:
    out = pb.Transition(
        at=t.at,
        from_state=_STATE_TO_PB[t.from_state],
        to_state=_STATE_TO_PB[t.to_state],
        reason=t.reason,
        message=t.message,
    )
    if t.admission is not None:
        out.admission.CopyFrom(admission_to_pb(t.admission))
    return out


def admission_to_pb(admission: Admission) -> pb.Admission:
    return pb.Admission(
        cluster_queue=admission.cluster_queue,
        groups=[
            pb.GroupAdmission(flavors=dict(g.flavors), count=g.count) for g in admission.groups
        ],
        usage=[
            pb.FlavorResourceAmount(flavor=f, resource=r, milli=v)
            for (f, r), v in sorted(admission.usage.items())
        ],
    )


def workload_to_pb(status: WorkloadStatus, *, history: bool = True) -> pb.Workload:
    out = pb.Workload(
        spec=spec_to_pb(status.spec),
        state=_STATE_TO_PB[status.state],
        priority=status.priority,
        cluster_queue=status.cluster_queue,
        checks={name: _CHECK_TO_PB[state] for name, state in status.checks.items()},
        reason=status.reason,
        message=status.message,
        requeue_count=status.requeue_count,
        placed=status.placed,
        history=[transition_to_pb(t) for t in status.history] if history else [],
        set_aside=status.set_aside,
    )
    if status.admission is not None:
        out.admission.CopyFrom(admission_to_pb(status.admission))
    if status.requeue_at is not None:
        out.requeue_at = status.requeue_at
    return out


def error_to_pb(error: BaseException) -> pb.ErrorDetail:
    return pb.ErrorDetail(
        type=type(error).__name__, message=str(error), code=code_for(error).value[0]
    )


def submit_result_to_pb(result: SubmitResult) -> pb.SubmitResult:
    if result.error is not None or result.status is None:
        error = result.error or RayQueueError("no status")
        return pb.SubmitResult(id=result.workload, error=error_to_pb(error))
    return pb.SubmitResult(id=result.workload, workload=workload_to_pb(result.status))


def event_to_pb(event: WorkloadEvent, seq: int) -> pb.WorkloadEvent:
    return pb.WorkloadEvent(
        seq=seq,
        workload=event.workload,
        queue=event.queue,
        cluster_queue=event.cluster_queue,
        owner=event.owner,
        transition=transition_to_pb(event.transition),
    )


def pending_to_pb(p: PendingPosition) -> pb.PendingWorkload:
    return pb.PendingWorkload(
        workload=p.workload,
        queue=p.queue,
        cluster_queue=p.cluster_queue,
        priority=p.priority,
        position_in_queue=p.position_in_queue,
        position_in_cluster_queue=p.position_in_cluster_queue,
        reason=p.reason,
        name=p.name,
        parent=p.parent or "",
    )


def _resource_to_pb(r: ResourceStatus) -> pb.ResourceUsage:
    out = pb.ResourceUsage(
        flavor=r.flavor,
        resource=r.resource,
        nominal_milli=r.nominal,
        usage_milli=r.usage,
        borrowed_milli=r.borrowed,
    )
    if r.borrowing_limit is not None:
        out.borrowing_limit_milli = r.borrowing_limit
    if r.lending_limit is not None:
        out.lending_limit_milli = r.lending_limit
    return out


def cluster_queue_to_pb(s: ClusterQueueStatus) -> pb.ClusterQueueStatus:
    return pb.ClusterQueueStatus(
        name=s.name,
        cohort=s.cohort or "",
        pending=s.pending,
        reserving=s.reserving,
        admitted=s.admitted,
        resources=[_resource_to_pb(r) for r in s.resources],
        weighted_share=s.weighted_share,
    )


def cohort_to_pb(s: CohortStatus) -> pb.CohortStatus:
    return pb.CohortStatus(
        name=s.name,
        parent=s.parent or "",
        resources=[_resource_to_pb(r) for r in s.resources],
        weighted_share=s.weighted_share,
    )


def demand_to_pb(gangs: Iterable[GangDemand]) -> list[apb.FlavorDemand]:
    """Group gangs per flavor and count bundle shapes (for bin-packing)."""
    by_flavor: dict[str, apb.FlavorDemand] = {}
    shapes: dict[str, dict[tuple[tuple[str, int], ...], int]] = {}
    for gang in gangs:
        flavor = by_flavor.setdefault(gang.flavor, apb.FlavorDemand(flavor=gang.flavor))
        flavor.all_at_once = flavor.all_at_once or gang.all_at_once
        flavor.gangs.append(
            apb.Gang(
                workload=gang.workload,
                bundles=[apb.Bundle(resources_milli=_milli_map(b)) for b in gang.bundles],
                strategy=_STRATEGY_TO_PB[gang.strategy],
                all_at_once=gang.all_at_once,
                state=_STATE_TO_PB[gang.state],
                attempt=gang.attempt,
            )
        )
        counts = shapes.setdefault(gang.flavor, {})
        for bundle in gang.bundles:
            key = tuple(sorted(bundle.items()))
            counts[key] = counts.get(key, 0) + 1
    out = []
    for flavor_name in sorted(by_flavor):
        flavor = by_flavor[flavor_name]
        for shape, count in sorted(shapes[flavor_name].items()):
            flavor.shapes.append(apb.BundleShape(resources_milli=dict(shape), count=count))
        out.append(flavor)
    return out


# -- responses: proto → engine (client side) ----------------------------------------------


def workload_from_pb(w: pb.Workload) -> WorkloadStatus:
    s = w.spec
    spec = WorkloadSpec(
        id=WorkloadId(s.id),
        queue=s.queue,
        bundle_groups=tuple(BundleGroup(dict(g.resources_milli), g.count) for g in s.bundle_groups),
        created_at=s.created_at,
        kind=_KIND_FROM_PB[s.kind],
        strategy=_STRATEGY_FROM_PB[s.strategy],
        priority_class=s.priority_class or None,
        owner=s.owner,
        min_count=s.min_count or None,
        name=s.name,
        parent=WorkloadId(s.parent) if s.parent else None,
        max_resources=dict(s.max_resources_milli) or None,
    )
    admission = admission_from_pb(w.admission) if w.HasField("admission") else None
    return WorkloadStatus(
        spec=spec,
        state=_STATE_FROM_PB[w.state],
        priority=w.priority,
        cluster_queue=w.cluster_queue,
        admission=admission,
        checks={k: _CHECK_FROM_PB[v] for k, v in w.checks.items()},
        reason=w.reason,
        message=w.message,
        requeue_count=w.requeue_count,
        requeue_at=w.requeue_at if w.HasField("requeue_at") else None,
        placed=w.placed,
        history=tuple(transition_from_pb(t) for t in w.history),
        set_aside=w.set_aside,
    )


def admission_from_pb(a: pb.Admission) -> Admission:
    return Admission(
        cluster_queue=a.cluster_queue,
        groups=tuple(GroupAdmission(dict(g.flavors), g.count) for g in a.groups),
        usage={(u.flavor, u.resource): u.milli for u in a.usage},
    )


def transition_from_pb(t: pb.Transition) -> Transition:
    return Transition(
        t.at,
        _STATE_FROM_PB[t.from_state],
        _STATE_FROM_PB[t.to_state],
        t.reason,
        t.message,
        admission_from_pb(t.admission) if t.HasField("admission") else None,
    )


def pending_from_pb(p: pb.PendingWorkload) -> PendingPosition:
    return PendingPosition(
        WorkloadId(p.workload),
        p.queue,
        p.cluster_queue,
        p.priority,
        p.position_in_queue,
        p.position_in_cluster_queue,
        p.reason,
        p.name,
        WorkloadId(p.parent) if p.parent else None,
    )


def _resource_from_pb(r: pb.ResourceUsage) -> ResourceStatus:
    return ResourceStatus(
        flavor=r.flavor,
        resource=r.resource,
        nominal=r.nominal_milli,
        borrowing_limit=r.borrowing_limit_milli if r.HasField("borrowing_limit_milli") else None,
        lending_limit=r.lending_limit_milli if r.HasField("lending_limit_milli") else None,
        usage=r.usage_milli,
        borrowed=r.borrowed_milli,
    )


def cluster_queue_from_pb(s: pb.ClusterQueueStatus) -> ClusterQueueStatus:
    return ClusterQueueStatus(
        name=s.name,
        cohort=s.cohort or None,
        pending=s.pending,
        reserving=s.reserving,
        admitted=s.admitted,
        resources=tuple(_resource_from_pb(r) for r in s.resources),
        weighted_share=s.weighted_share,
    )


def cohort_from_pb(s: pb.CohortStatus) -> CohortStatus:
    return CohortStatus(
        name=s.name,
        parent=s.parent or None,
        resources=tuple(_resource_from_pb(r) for r in s.resources),
        weighted_share=s.weighted_share,
    )


def demand_from_pb(flavors: Iterable[apb.FlavorDemand]) -> list[GangDemand]:
    return [
        GangDemand(
            workload=WorkloadId(g.workload),
            flavor=f.flavor,
            bundles=tuple(dict(b.resources_milli) for b in g.bundles),
            strategy=_STRATEGY_FROM_PB[g.strategy],
            all_at_once=g.all_at_once,
            state=_STATE_FROM_PB[g.state],
            attempt=g.attempt,
        )
        for f in flavors
        for g in f.gangs
    ]


def check_state_to_pb(state: CheckState) -> pb.CheckState:
    return _CHECK_TO_PB[state]


def workload_state_to_pb(state: WorkloadState) -> pb.WorkloadState:
    return _STATE_TO_PB[state]
