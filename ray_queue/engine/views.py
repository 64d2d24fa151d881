"""Read-only views of engine state: workload status, pending positions, queue status,
autoscaler demand.

Kept apart from the cycle so that what people and the autoscaler see is built in one
place from the same records, and so the engine module stays about decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter

from ray_queue.engine.config import ProvisioningMode, QueueConfig
from ray_queue.engine.fair_share import dominant_resource_share
from ray_queue.engine.model import (
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    PendingPosition,
    ResourceStatus,
    WorkloadId,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.engine.queues import ClusterQueuePending
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record

#: Resources that mark a bundle group's flavor as the one that matters for nodes.
_ACCELERATORS = ("GPU", "TPU")


def status(record: Record, blocked_reason: str | None) -> WorkloadStatus:
    message = blocked_reason or record.message
    return WorkloadStatus(
        spec=record.spec,
        state=record.state,
        priority=record.priority,
        cluster_queue=record.cluster_queue,
        admission=record.admission,
        checks=dict(record.checks),
        reason=record.reason,
        message=message,
        requeue_count=record.requeue_count,
        requeue_at=record.requeue_at,
        placed=record.placed,
        history=tuple(record.history),
        set_aside=blocked_reason is not None,
    )


def admitted_at(status: WorkloadStatus) -> float:
    """When the workload last got quota (for restoring admission order)."""
    for transition in reversed(status.history):
        gained_quota = transition.to_state in (WorkloadState.QUOTA_RESERVED, WorkloadState.ADMITTED)
        if gained_quota and transition.from_state is WorkloadState.PENDING:
            return transition.at
    return 0.0


def restored_records(statuses: Sequence[WorkloadStatus]) -> tuple[list[Record], int]:
    """Records for persisted ``statuses`` (same order), and how many hold quota: those
    get their admission order (``admitted_seq`` 1..n) back from when each got quota."""
    # One pass over the statuses (each read while it is still in the CPU's caches), then
    # the few holding quota get their order.
    records: list[Record] = []
    holding: list[tuple[float, str, Record]] = []
    for status in statuses:
        record = record_from_status(status, 0)
        records.append(record)
        if status.state.holds_quota:
            holding.append((admitted_at(status), status.spec.id, record))
    holding.sort(key=itemgetter(0, 1))
    for seq, (_, _, record) in enumerate(holding, start=1):
        record.admitted_seq = seq
    return records, len(holding)


def record_from_status(status: WorkloadStatus, admitted_seq: int) -> Record:
    ended = status.history[-1].at if status.state.is_terminal and status.history else None
    return Record(
        spec=status.spec,
        priority=status.priority,
        cluster_queue=status.cluster_queue,
        state=status.state,
        admission=status.admission,
        checks=dict(status.checks),
        reason=status.reason,
        # A set-aside workload shows its bucket's reason; its own message is the last
        # transition's, which is what it shows again once quota is released.
        message=status.history[-1].message
        if status.set_aside and status.history
        else status.message,
        requeue_count=status.requeue_count,
        requeue_at=status.requeue_at,
        placed=status.placed,
        admitted_seq=admitted_seq,
        ended_at=ended,
        history=list(status.history),
    )


def pending_positions(
    config: QueueConfig,
    pending: Mapping[str, ClusterQueuePending],
    records: Mapping[WorkloadId, Record],
    cluster_queues: Iterable[str],
    queue: str | None,
    queue_score: Callable[[str], float],
) -> list[PendingPosition]:
    """The pending workloads of ``cluster_queues`` (only ``queue``'s, if given) in the
    order they would be considered, with their positions in their Queue and ClusterQueue.

    ``queue_score`` is used only for ClusterQueues with usage-based fair sharing, as in
    the cycle, so the order shown is the order admitted.
    """
    out: list[PendingPosition] = []
    for name in cluster_queues:
        cq_pending = pending.get(name)
        if cq_pending is None:
            continue
        cq = config.cluster_queues[name]
        score = queue_score if cq.usage_based_fair_sharing else None
        per_queue: dict[str, int] = {}
        for index, (workload, q) in enumerate(cq_pending.ordered(score)):
            position_in_queue = per_queue.get(q, 0)
            per_queue[q] = position_in_queue + 1
            if queue is not None and q != queue:
                continue
            record = records[workload]
            reason = (
                cq_pending.blocked_reason_for(workload) or record.message or "waiting for its turn"
            )
            out.append(
                PendingPosition(
                    workload,
                    q,
                    name,
                    record.priority,
                    position_in_queue,
                    index,
                    reason,
                    record.spec.name,
                    record.spec.parent,
                )
            )
    return out


def _resources(node: QuotaNode) -> tuple[ResourceStatus, ...]:
    keys = sorted(set(node.nominal) | set(node.usage))
    return tuple(
        ResourceStatus(
            flavor=flavor,
            resource=resource,
            nominal=node.nominal.get((flavor, resource), 0),
            borrowing_limit=node.borrowing_limit.get((flavor, resource)),
            lending_limit=node.lending_limit.get((flavor, resource)),
            usage=node.usage.get((flavor, resource), 0),
            borrowed=node.borrowed((flavor, resource)),
        )
        for flavor, resource in keys
    )


def cluster_queue_status(
    config: QueueConfig, tree: QuotaTree, records: Iterable[Record]
) -> list[ClusterQueueStatus]:
    counts: dict[str, dict[WorkloadState, int]] = {name: {} for name in config.cluster_queues}
    for record in records:
        per_state = counts.setdefault(record.cluster_queue, {})
        per_state[record.state] = per_state.get(record.state, 0) + 1
    out = []
    for name, cq in sorted(config.cluster_queues.items()):
        node = tree.cluster_queues[name]
        per_state = counts.get(name, {})
        out.append(
            ClusterQueueStatus(
                name=name,
                cohort=cq.cohort,
                # Evicted work waiting out its back-off is still waiting, as in Kueue.
                pending=per_state.get(WorkloadState.PENDING, 0)
                + per_state.get(WorkloadState.EVICTED, 0),
                reserving=per_state.get(WorkloadState.QUOTA_RESERVED, 0),
                admitted=per_state.get(WorkloadState.ADMITTED, 0),
                resources=_resources(node),
                weighted_share=dominant_resource_share(node),
            )
        )
    return out


def cohort_status(config: QueueConfig, tree: QuotaTree) -> list[CohortStatus]:
    return [
        CohortStatus(
            name=name,
            parent=node.parent.name if node.parent is not None else None,
            resources=_resources(node),
            weighted_share=dominant_resource_share(node),
        )
        for name, node in sorted(tree.cohorts.items())
    ]


def demand(config: QueueConfig, holders: Iterable[Record]) -> list[GangDemand]:
    out = []
    for record in holders:
        admission = record.admission
        if record.placed or admission is None:
            continue
        by_flavor: dict[str, list[dict[str, int]]] = {}
        for group, assigned in zip(record.spec.bundle_groups, admission.groups, strict=True):
            flavor = _node_flavor(assigned.flavors)
            bundle = {r: a for r, a in group.resources.items() if a > 0}
            by_flavor.setdefault(flavor, []).extend(dict(bundle) for _ in range(assigned.count))
        for flavor, bundles in sorted(by_flavor.items()):
            rf = config.flavors.get(flavor)
            out.append(
                GangDemand(
                    workload=record.spec.id,
                    flavor=flavor,
                    bundles=tuple(bundles),
                    strategy=record.spec.strategy,
                    all_at_once=rf is not None and rf.provisioning is ProvisioningMode.ALL_AT_ONCE,
                    state=record.state,
                    attempt=record.requeue_count,
                )
            )
    return out


def _node_flavor(flavors: Mapping[str, str]) -> str:
    """A bundle lands on one node: the accelerator's flavor decides which kind of node."""
    for accelerator in _ACCELERATORS:
        if accelerator in flavors:
            return flavors[accelerator]
    return flavors[min(flavors)] if flavors else ""
