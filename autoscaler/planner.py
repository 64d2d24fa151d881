"""One reconcile pass's decisions: (demand, groups, requests, now) → a ``Plan``. Pure.

Everything the plan depends on is read fresh from the cluster each pass, so the planner
holds no memory and a restarted autoscaler plans exactly what the old one would have.
Rules, in the order they are applied:

1. Incremental gangs are packed onto their group's free room — live nodes' free resources,
   plus hosts asked for but not yet joined, counted empty — then onto new hosts; the
   group grows by the new hosts (in whole slices), clamped to ``maxReplicas``. Because the
   hosts already asked for count as room, the same demand never scales a group twice.
2. Idle nodes (idle longer than the timeout, holding nothing, not needed by rule 1) are
   removed, never below ``minReplicas``, and never in a pass that also grows the group.
3. All-at-once gangs go through a ProvisioningRequest per workload attempt (table in
   ``_request_step``), and once it is Provisioned get a worker group of their own whose
   pods consume the request. That group and the request are removed when the workload is
   gone from demand and the group's nodes are idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from autoscaler.binpacking import Unplaceable, hosts_for, pack_gangs
from autoscaler.demand import Bundle, Demand, Gang
from autoscaler.providers.base import GangGroup, Shape, WorkerGroup, WorkerNode
from autoscaler.requests import Phase, RequestSpec, RequestView, gang_group_name, request_name
from ray_queue.engine.model import CheckState, WorkloadId, WorkloadState


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    #: Remove a node idle this long (Ray's ``idleTimeoutSeconds``; KubeRay's default 60).
    idle_timeout_s: float = 60.0
    #: Class for requests whose check names none (Kueue's usual GKE default).
    default_provisioning_class: str = "queued-provisioning.gke.io"


@dataclass(frozen=True, slots=True)
class ScaleUp:
    group: str
    from_replicas: int
    to_replicas: int


@dataclass(frozen=True, slots=True)
class Deletion:
    group: str
    workers: tuple[str, ...]
    #: Ray node ids to drain first, one per worker (same order).
    ray_node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckReport:
    workload: WorkloadId
    check: str
    state: CheckState
    message: str


@dataclass(frozen=True, slots=True)
class Eviction:
    workload: WorkloadId
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    scale_ups: tuple[ScaleUp, ...] = ()
    deletions: tuple[Deletion, ...] = ()
    create_requests: tuple[RequestSpec, ...] = ()
    #: Names of requests to delete (with their PodTemplates).
    delete_requests: tuple[str, ...] = ()
    create_groups: tuple[GangGroup, ...] = ()
    remove_groups: tuple[str, ...] = ()
    reports: tuple[CheckReport, ...] = ()
    evictions: tuple[Eviction, ...] = ()
    #: (group, gang) pairs the cluster cannot take now or ever; for logs and metrics.
    unplaceable: tuple[tuple[str, Unplaceable], ...] = ()
    #: Demanded workloads whose flavor names no worker group we know.
    unmanaged: tuple[WorkloadId, ...] = ()
    #: Desired replicas per group after this plan (for metrics).
    desired: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.scale_ups
            or self.deletions
            or self.create_requests
            or self.delete_requests
            or self.create_groups
            or self.remove_groups
            or self.reports
            or self.evictions
        )


def plan(
    demand: Demand,
    groups: Sequence[WorkerGroup],
    requests: Sequence[RequestView],
    *,
    now: float,
    config: PlannerConfig,
    ray_pending: Sequence[Sequence[Bundle]] | None = None,
) -> Plan:
    """``ray_pending``: the placement groups Ray reports as waiting for nodes (their
    bundles), or ``None`` if unknown. When known, an admitted workload counts as demand
    only while its placement group is among them: once Ray placed it, the manager may not
    have marked it placed yet, and packing it again would add a node for nothing. This
    applies to packing only; requests and gang groups follow ``demand`` as given."""
    by_name = {g.name: g for g in groups}
    base_groups = [g for g in groups if g.gang_of is None]
    # Only packing looks past placed groups; requests and gang groups follow the manager's
    # demand, so nothing is cleaned up while the manager still counts the gang unplaced.
    wanted = _still_pending(demand, ray_pending).by_group()
    unmanaged = tuple(
        g.workload
        for g in demand.gangs
        if g.worker_group is None or g.worker_group not in by_name
    )

    scale_ups: list[ScaleUp] = []
    deletions: list[Deletion] = []
    unplaceable: list[tuple[str, Unplaceable]] = []
    desired: dict[str, int] = {}
    for group in sorted(base_groups, key=lambda g: g.name):
        gangs = [g for g in wanted.get(group.name, ()) if not _via_request(g)]
        up, down, bad = _size_group(group, gangs, now=now, config=config)
        desired[group.name] = _desired(group, up, down)
        scale_ups.extend([up] if up is not None else [])
        deletions.extend([down] if down is not None else [])
        unplaceable.extend((group.name, u) for u in bad)

    steps = _requests(demand, by_name, requests, now=now, config=config)
    for name in steps.remove_groups:
        desired.pop(name, None)
    for gang_group in steps.create_groups:
        desired[gang_group.name] = gang_group.replicas
    for group in groups:
        if group.gang_of is not None and group.name not in steps.remove_groups:
            desired[group.name] = group.replicas
    return Plan(
        scale_ups=tuple(scale_ups),
        deletions=tuple(deletions),
        create_requests=steps.create,
        delete_requests=steps.delete,
        create_groups=steps.create_groups,
        remove_groups=steps.remove_groups,
        reports=steps.reports,
        evictions=steps.evictions,
        unplaceable=(*unplaceable, *steps.unplaceable),
        unmanaged=unmanaged,
        desired=desired,
    )


def _desired(group: WorkerGroup, up: ScaleUp | None, down: Deletion | None) -> int:
    """The replicas a base group is meant to have after this pass's own action on it."""
    if up is not None:
        return up.to_replicas
    if down is not None:
        return group.replicas - len(down.workers) // group.num_of_hosts
    return group.replicas


def _still_pending(demand: Demand, ray_pending: Sequence[Sequence[Bundle]] | None) -> Demand:
    if ray_pending is None:
        return demand
    pool = [list(p) for p in ray_pending]
    by_workload: dict[WorkloadId, list[Gang]] = {}
    for gang in demand.gangs:
        by_workload.setdefault(gang.workload, []).append(gang)
    keep: list[Gang] = []
    for workload in sorted(by_workload):
        gangs = by_workload[workload]
        if all(g.state is WorkloadState.QUOTA_RESERVED for g in gangs):
            keep.extend(gangs)  # no placement group exists before admission
            continue
        bundles = [b for g in gangs for b in g.bundles]
        match = next((i for i, p in enumerate(pool) if _covers(p, bundles)), None)
        if match is not None:
            pool.pop(match)
            keep.extend(gangs)
    return Demand.of(keep)


def _covers(pending: Sequence[Bundle], bundles: Sequence[Bundle]) -> bool:
    """Ray's pending group has a bundle for each of ours (it may carry more resources or
    more bundles: other flavors of the same workload)."""
    free = list(pending)
    for bundle in sorted(bundles, key=lambda b: sorted(b.items()), reverse=True):
        hit = next(
            (i for i, p in enumerate(free)
             if all(p.get(r, 0) >= a for r, a in bundle.items() if a > 0)),
            None,
        )
        if hit is None:
            return False
        free.pop(hit)
    return True


def _via_request(gang: Gang) -> bool:
    """All-at-once gangs with a provisioning check get their nodes through a request."""
    return gang.all_at_once and gang.check is not None


# ---------------------------------------------------------------- incremental groups


def _size_group(
    group: WorkerGroup, gangs: Sequence[Gang], *, now: float, config: PlannerConfig
) -> tuple[ScaleUp | None, Deletion | None, list[Unplaceable]]:
    live = [n for n in group.nodes if n.name not in group.deleting]
    free: list[Shape] = [group.shape if n.available is None else n.available for n in live]
    # Hosts asked for that have not appeared yet are coming: count them as empty room.
    free.extend(group.shape for _ in range(max(0, group.desired_hosts - len(live))))
    room = max(0, group.max_replicas - group.replicas) * group.num_of_hosts
    packed = pack_gangs(
        gangs,
        shape=group.shape,
        free=free,
        num_of_hosts=group.num_of_hosts,
        max_new_hosts=room,
    )
    target = max(group.replicas + packed.new_hosts // group.num_of_hosts, group.min_replicas)
    target = min(target, max(group.max_replicas, group.min_replicas))
    bad = [*packed.infeasible, *packed.capped]
    if target > group.replicas:
        return ScaleUp(group.name, group.replicas, target), None, bad
    needed = {live[i].name for i in packed.used_existing if i < len(live)}
    return None, _idle_deletion(group, live, needed, now=now, config=config), bad


def _idle_deletion(
    group: WorkerGroup,
    live: Sequence[WorkerNode],
    needed: set[str],
    *,
    now: float,
    config: PlannerConfig,
) -> Deletion | None:
    # Multi-host slices go as a whole or not at all; KubeRay's per-pod workersToDelete
    # would tear a slice apart, so those groups only shrink by their own gang's removal.
    if group.num_of_hosts != 1:
        return None
    spare = group.replicas - group.min_replicas
    idle = sorted(
        (n for n in live if _idle_long_enough(n, now, config) and n.name not in needed),
        key=lambda n: (n.idle_since, n.name),
    )
    chosen = idle[: max(0, spare)]
    if not chosen:
        return None
    return Deletion(
        group.name,
        tuple(n.name for n in chosen),
        tuple(n.ray_node_id or "" for n in chosen),
    )


def _idle_long_enough(node: WorkerNode, now: float, config: PlannerConfig) -> bool:
    return (
        not node.busy
        and node.ray_node_id is not None
        and node.idle_since is not None
        and now - node.idle_since >= config.idle_timeout_s
    )


# ---------------------------------------------------------------- all-at-once gangs


@dataclass(frozen=True, slots=True)
class _Steps:
    create: tuple[RequestSpec, ...]
    delete: tuple[str, ...]
    create_groups: tuple[GangGroup, ...]
    remove_groups: tuple[str, ...]
    reports: tuple[CheckReport, ...]
    evictions: tuple[Eviction, ...]
    unplaceable: tuple[tuple[str, Unplaceable], ...]


@dataclass(slots=True)
class _StepsSoFar:
    """What ``_requests`` has decided so far (frozen into ``_Steps`` at the end)."""

    create: list[RequestSpec] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    create_groups: list[GangGroup] = field(default_factory=list)
    remove_groups: list[str] = field(default_factory=list)
    reports: list[CheckReport] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    unplaceable: list[tuple[str, Unplaceable]] = field(default_factory=list)

    def frozen(self) -> _Steps:
        return _Steps(
            create=tuple(self.create),
            delete=tuple(dict.fromkeys(self.delete)),
            create_groups=tuple(self.create_groups),
            remove_groups=tuple(self.remove_groups),
            reports=tuple(self.reports),
            evictions=tuple(self.evictions),
            unplaceable=tuple(self.unplaceable),
        )


def _requests(
    demand: Demand,
    groups: Mapping[str, WorkerGroup],
    requests: Sequence[RequestView],
    *,
    now: float,
    config: PlannerConfig,
) -> _Steps:
    steps = _StepsSoFar()
    by_name = {r.name: r for r in requests}
    gangs = {
        request_name(g.workload, g.attempt): g
        for g in demand.gangs
        if _via_request(g) and g.worker_group in groups
    }
    gang_groups = {g.name: g for g in groups.values() if g.gang_of is not None}
    for name, gang in sorted(gangs.items()):
        base = groups[gang.worker_group or ""]
        request = by_name.get(name)
        if request is None:
            _ask(steps, name, gang, base, config)
        else:
            _follow(steps, gang, base, request, gang_groups, config)
    _clean_up(steps, requests, set(gangs), gang_groups, now=now, config=config)
    return steps.frozen()


def _ask(
    steps: _StepsSoFar, name: str, gang: Gang, base: WorkerGroup, config: PlannerConfig
) -> None:
    """A gang in demand without a request: ask for its nodes, or reject it if the group
    can never hold it."""
    if gang.state is not WorkloadState.QUOTA_RESERVED:
        return  # admitted without us (e.g. check set by hand): nothing to ask for
    hosts = hosts_for(gang, shape=base.shape, num_of_hosts=base.num_of_hosts)
    if hosts is None or hosts > base.max_replicas * base.num_of_hosts:
        why = (
            "no node of the group can hold one of its bundles"
            if hosts is None
            else f"needs {hosts} nodes; group {base.name} allows "
            f"{base.max_replicas * base.num_of_hosts}"
        )
        steps.unplaceable.append((base.name, Unplaceable(gang.workload, why)))
        steps.reports.append(CheckReport(gang.workload, gang.check or "", CheckState.REJECTED, why))
        return
    steps.create.append(
        RequestSpec(
            name=name,
            workload=gang.workload,
            attempt=gang.attempt,
            group=base.name,
            count=hosts,
            provisioning_class=gang.provisioning_class or config.default_provisioning_class,
        )
    )


def _follow(
    steps: _StepsSoFar,
    gang: Gang,
    base: WorkerGroup,
    request: RequestView,
    gang_groups: Mapping[str, WorkerGroup],
    config: PlannerConfig,
) -> None:
    """A gang in demand whose request exists: the next step of the request table."""
    check = gang.check or ""
    step = _request_step(gang, request)
    if step is _Step.SCALE_AND_READY:
        group_name = gang_group_name(base.name, gang.workload, gang.attempt)
        if group_name not in gang_groups:
            steps.create_groups.append(
                GangGroup(
                    name=group_name,
                    base=base.name,
                    replicas=-(-request.count // base.num_of_hosts),
                    request=request.name,
                    provisioning_class=gang.provisioning_class
                    or config.default_provisioning_class,
                    workload=gang.workload,
                )
            )
        if gang.waiting_for_capacity:
            steps.reports.append(
                CheckReport(gang.workload, check, CheckState.READY, "capacity provisioned")
            )
    elif step is _Step.RETRY:
        steps.reports.append(
            CheckReport(
                gang.workload,
                check,
                CheckState.RETRY,
                f"ProvisioningRequest {request.name} {request.phase.value}: "
                f"{request.message}".rstrip(": "),
            )
        )
        steps.delete.append(request.name)
    elif step is _Step.EVICT:
        steps.evictions.append(Eviction(gang.workload, _revoked(request)))
        steps.delete.append(request.name)


def _clean_up(
    steps: _StepsSoFar,
    requests: Sequence[RequestView],
    in_demand: set[str],
    gang_groups: Mapping[str, WorkerGroup],
    *,
    now: float,
    config: PlannerConfig,
) -> None:
    """Requests and groups whose gang is no longer in demand (ended, placed or evicted)."""
    for request in sorted(requests, key=lambda r: r.name):
        if request.name in in_demand:
            continue
        group_name = gang_group_name(request.group, request.workload, request.attempt)
        group = gang_groups.get(group_name)
        if request.phase is Phase.CAPACITY_REVOKED:
            # It may be running (placed work is not in demand): tell the manager; an
            # eviction of a workload no longer holding quota is ignored there.
            steps.evictions.append(Eviction(request.workload, _revoked(request)))
        if group is not None and not _all_idle(group, now, config):
            continue  # its gang is running on those nodes
        if group is not None:
            steps.remove_groups.append(group.name)
        steps.delete.append(request.name)
    known = {gang_group_name(r.group, r.workload, r.attempt) for r in requests}
    for name, group in sorted(gang_groups.items()):
        # A gang group whose request is gone (deleted above in an earlier pass, or by
        # hand): remove it once its nodes are idle.
        if name not in known and name not in steps.remove_groups and _all_idle(group, now, config):
            steps.remove_groups.append(name)


class _Step(str, Enum):
    NOTHING = "nothing"
    SCALE_AND_READY = "scale"
    RETRY = "retry"
    EVICT = "evict"


def _request_step(gang: Gang, request: RequestView) -> _Step:
    """The ProvisioningRequest state machine, one row per (phase, workload state):

    Pending          any            → wait
    Provisioned      QUOTA_RESERVED → create the gang's group, report Ready
    Provisioned      ADMITTED       → keep (create) the gang's group
    Failed           QUOTA_RESERVED → report Retry, delete the request
    BookingExpired   QUOTA_RESERVED → report Retry, delete the request
    BookingExpired   ADMITTED       → wait: its pods already consumed the booking
                                      (Kueue ignores it after admission too)
    Failed           ADMITTED       → wait: the capacity was already there
    CapacityRevoked  any            → evict the workload, delete the request
    """
    phase = request.phase
    if phase is Phase.CAPACITY_REVOKED:
        return _Step.EVICT
    if phase is Phase.PROVISIONED:
        return _Step.SCALE_AND_READY
    if phase in (Phase.FAILED, Phase.BOOKING_EXPIRED) and gang.waiting_for_capacity:
        return _Step.RETRY
    return _Step.NOTHING


def _revoked(request: RequestView) -> str:
    return f"capacity of ProvisioningRequest {request.name} was revoked: {request.message}".rstrip(
        ": "
    )


def _all_idle(group: WorkerGroup, now: float, config: PlannerConfig) -> bool:
    """A gang's group may go once its gang left demand and none of its nodes works: each
    is idle past the timeout, or never joined Ray (nothing can run there, and the gang
    it was made for no longer waits for it)."""
    return all(
        _idle_long_enough(n, now, config) or (n.ray_node_id is None and not n.busy)
        for n in group.nodes
    )
