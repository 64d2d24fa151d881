"""Hand-over rules: when a finished task's quota may go straight to its owner's next one.

A hand-over skips the scheduling cycle, so it is accepted only when it is exactly what
the next cycle would do anyway. Deciding that is read-only policy, kept here as pure
functions over the state the engine passes in (records, config, quota tree, pending
queues); carrying a hand-over out (release, transitions, grant) stays in the engine,
which owns that state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from ray_queue.engine.config import QueueConfig, StopPolicy
from ray_queue.engine.model import LeaseKey, WorkloadId, WorkloadKind, WorkloadState
from ray_queue.engine.queues import BucketKey, ClusterQueuePending, bucket_key
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record

#: Per quota-tree root, the (bucket, owner) pairs pending in that tree: at most two, as
#: one besides the asker's own is enough to refuse. Shared by the checks of one query.
WaitingMemo = dict[QuotaNode, set[tuple[BucketKey, str]]]


class Leases:
    """Admitted tasks by lease key (insertion-ordered, so a replay picks the same one)."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[LeaseKey, dict[WorkloadId, None]] = {}

    def add(self, record: Record) -> None:
        self._by_key.setdefault(record.lease_key, {})[record.spec.id] = None

    def drop(self, record: Record) -> None:
        key = record.lease_key
        holders = self._by_key.get(key)
        if holders is not None:
            holders.pop(record.spec.id, None)
            if not holders:
                del self._by_key[key]

    def firsts(self) -> Iterator[tuple[LeaseKey, WorkloadId]]:
        """Each lease key with its longest-held admitted task."""
        return ((key, next(iter(holders))) for key, holders in self._by_key.items())


def pair_refusal(
    finished: WorkloadId, successor: WorkloadId, done: Record | None, nxt: Record | None
) -> str | None:
    """Why ``finished``'s quota may not go to ``successor``, judged on the two records
    alone (``done`` and ``nxt``; ``None`` if unknown), or ``None``. ``lease_refusal``
    judges the rest."""
    if done is None or nxt is None:
        return f"{finished if done is None else successor} is not a known workload"
    if done.state is not WorkloadState.ADMITTED:
        return f"{finished} is {done.state.value}, not admitted"
    if nxt.state is not WorkloadState.PENDING:
        return f"{successor} is {nxt.state.value}, not pending"
    if done.spec.kind is not WorkloadKind.TASK or nxt.spec.kind is not WorkloadKind.TASK:
        return "only tasks hand their quota over"
    if done.lease_key != nxt.lease_key or nxt.spec.min_count is not None:
        return "they differ in owner, queue, priority class or resources"
    if done.spec.parent != nxt.spec.parent:
        return "they belong to different jobs (each job's cap counts its own work)"
    assert done.admission is not None
    if nxt.cluster_queue != done.admission.cluster_queue:
        return f"{successor} waits in another ClusterQueue ({nxt.cluster_queue})"
    return None


def sibling_waiting(record: Record, pending: Mapping[str, ClusterQueuePending]) -> bool:
    """Whether ``record`` is an admitted task whose owner has identical tasks pending in
    its ClusterQueue, ready to take its quota."""
    if record.state is not WorkloadState.ADMITTED:
        return False
    if record.spec.kind is not WorkloadKind.TASK:
        return False
    assert record.admission is not None
    own = bucket_key(record.spec, record.priority)
    cq_pending = pending.get(record.admission.cluster_queue)
    return cq_pending is not None and cq_pending.has(own, record.spec.owner)


def lease_refusal(
    record: Record,
    config: QueueConfig,
    tree: QuotaTree,
    pending: Mapping[str, ClusterQueuePending],
    queue_held: Callable[[str], bool],
    memo: WaitingMemo,
) -> str | None:
    """Why an admitted task's quota may not go straight to a sibling: the hand-over
    must be exactly what the next cycle would do. That holds when every workload
    pending anywhere in the quota tree is the owner's identical task (the freed quota
    then fits the bucket's top and nobody else could take it), the ClusterQueue is
    running, and no admission check would have to run first."""
    assert record.admission is not None
    cq = config.cluster_queues.get(record.admission.cluster_queue)
    if cq is None:
        return f"ClusterQueue {record.admission.cluster_queue} no longer exists"
    if cq.stop_policy is not StopPolicy.NONE or queue_held(record.spec.queue):
        return f"queue {record.spec.queue} or ClusterQueue {cq.name} is stopped"
    if cq.checks_for(record.admission):
        return f"ClusterQueue {cq.name} runs admission checks before admitting"
    node = tree.cluster_queues[cq.name]
    waiting = memo.get(node.tree_root)
    if waiting is None:
        waiting = set()
        for member in tree.same_tree(node):
            waiting |= pending[member.name].groups(limit=2)
            if len(waiting) >= 2:
                break
        memo[node.tree_root] = waiting
    own = (bucket_key(record.spec, record.priority), record.spec.owner)
    if waiting - {own}:
        return f"other workloads are waiting for quota in ClusterQueue {cq.name}'s cohort"
    return None
