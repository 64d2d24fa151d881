"""Pending workloads of one ClusterQueue, in the order they are tried.

Workloads are kept in *buckets* of identical shape: same Queue, same priority, same
bundles. Within a bucket the heap orders by creation time, so the bucket's top is its
oldest member. That grouping is what makes BestEffortFIFO cheap at scale: when a
bucket's top cannot be admitted, no younger member of the same shape can be either (it
asks for the same quota and may preempt no more), so the whole bucket is set aside with
one operation until quota is released — instead of retrying thousands of identical
workloads one by one, as a plain list of inadmissible workloads would.

The ClusterQueue's head is the best unblocked bucket top by (Queue score, priority desc,
creation time, id); the Queue score is the decayed usage under usage-based fair sharing
and 0 otherwise. Heaps use lazy deletion so cancelling is O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterator

from ray_queue.engine.model import LeaseKey, WorkloadId, WorkloadSpec, shape_of

#: (-priority, created_at, workload id): smaller sorts first.
OrderKey = tuple[int, float, str]
#: (queue, priority, shape)
BucketKey = tuple[str, int, Hashable]


def order_key(priority: int, created_at: float, workload: WorkloadId) -> OrderKey:
    return (-priority, created_at, workload)


def bucket_key(spec: WorkloadSpec, priority: int, lease_key: LeaseKey | None = None) -> BucketKey:
    """Workloads with equal shapes (and priority and Queue) succeed or fail together.

    ``lease_key``, the spec's own if the caller has it, holds the same shape when the
    spec has no ``min_count``: not sorting its resources again saves a tenth of a
    restart's queue building."""
    if lease_key is not None and spec.min_count is None:
        return (spec.queue, priority, lease_key[3])
    return (spec.queue, priority, shape_of(spec.bundle_groups, spec.min_count))


class _Bucket:
    __slots__ = ("blocked_reason", "heap", "owners", "queue")

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.heap: list[OrderKey] = []
        #: Why the bucket's top could not be admitted; ``None`` while eligible.
        self.blocked_reason: str | None = None
        #: Live members per owner (the heap holds dead entries too).
        self.owners: dict[str, int] = {}


class ClusterQueuePending:
    """The pending set of one ClusterQueue."""

    __slots__ = ("_blocked_by", "_buckets", "_live", "_owner", "blocked_reason")

    def __init__(self) -> None:
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._live: dict[WorkloadId, tuple[BucketKey, OrderKey]] = {}
        self._owner: dict[WorkloadId, str] = {}
        #: StrictFIFO: the head could not be admitted, so the whole queue waits.
        self.blocked_reason: str | None = None
        #: The head that blocks the whole queue (StrictFIFO).
        self._blocked_by: WorkloadId | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, workload: WorkloadId) -> bool:
        return workload in self._live

    def push(self, workload: WorkloadId, bucket: BucketKey, key: OrderKey, owner: str) -> None:
        if workload in self._live:
            self.remove(workload)
        # StrictFIFO: a newcomer may be the new head (a higher priority, or a Queue with a
        # better score), so the queue's head is tried again rather than waiting for quota
        # to be released.
        self._unblock_queue()
        self._live[workload] = (bucket, key)
        self._owner[workload] = owner
        entry = self._buckets.get(bucket)
        if entry is None:
            entry = self._buckets[bucket] = _Bucket(bucket[0])
        heapq.heappush(entry.heap, key)
        entry.owners[owner] = entry.owners.get(owner, 0) + 1

    def remove(self, workload: WorkloadId) -> None:
        # The heap entry stays behind and is dropped when it surfaces.
        live = self._live.pop(workload, None)
        if live is None:
            return
        if workload == self._blocked_by:
            # The head that held the queue back left (cancelled, say): the next one may fit.
            self._unblock_queue()
        owner = self._owner.pop(workload)
        owners = self._buckets[live[0]].owners
        owners[owner] -= 1
        if not owners[owner]:
            del owners[owner]

    def counts(self) -> tuple[dict[str, int], int]:
        """Pending workloads per Queue, and how many of them are set aside."""
        per_queue: dict[str, int] = {}
        set_aside = 0
        for bucket in self._buckets.values():
            live = sum(bucket.owners.values())
            if live:
                per_queue[bucket.queue] = per_queue.get(bucket.queue, 0) + live
                if self.blocked_reason is not None or bucket.blocked_reason is not None:
                    set_aside += live
        return per_queue, set_aside

    def has(self, bucket: BucketKey, owner: str) -> bool:
        """Whether ``owner`` has a pending workload in ``bucket``."""
        entry = self._buckets.get(bucket)
        return entry is not None and entry.owners.get(owner, 0) > 0

    def groups(self, limit: int) -> set[tuple[BucketKey, str]]:
        """Up to ``limit`` distinct (bucket, owner) pairs among the pending workloads."""
        found: set[tuple[BucketKey, str]] = set()
        for bucket_key, bucket in self._buckets.items():
            for owner in bucket.owners:
                found.add((bucket_key, owner))
                if len(found) >= limit:
                    return found
        return found

    def _top(self, bucket_key: BucketKey, bucket: _Bucket) -> OrderKey | None:
        heap = bucket.heap
        while heap:
            key = heap[0]
            live = self._live.get(WorkloadId(key[2]))
            if live is not None and live == (bucket_key, key):
                return key
            heapq.heappop(heap)
        return None

    def head(
        self,
        *,
        skip_queue: Callable[[str], bool],
        queue_score: Callable[[str], float] | None,
    ) -> WorkloadId | None:
        """The next workload to try, or ``None`` if nothing eligible is left."""
        if self.blocked_reason is not None:
            return None
        best: tuple[float, OrderKey] | None = None
        empty: list[BucketKey] = []
        for bucket_key, bucket in self._buckets.items():
            top = self._top(bucket_key, bucket)
            if top is None:
                empty.append(bucket_key)
                continue
            if bucket.blocked_reason is not None or skip_queue(bucket.queue):
                continue
            candidate = (queue_score(bucket.queue) if queue_score else 0.0, top)
            if best is None or candidate < best:
                best = candidate
        for bucket_key in empty:
            del self._buckets[bucket_key]
        return None if best is None else WorkloadId(best[1][2])

    def block(self, workload: WorkloadId, reason: str, *, whole_queue: bool) -> None:
        """Set aside the workload's bucket (or, for StrictFIFO, the whole queue)."""
        if whole_queue:
            self.blocked_reason, self._blocked_by = reason, workload
            return
        live = self._live.get(workload)
        if live is not None:
            self._buckets[live[0]].blocked_reason = reason

    def _unblock_queue(self) -> None:
        self.blocked_reason, self._blocked_by = None, None

    def unblock_all(self) -> bool:
        """Make every workload eligible again; whether anything was blocked."""
        changed = self.blocked_reason is not None
        self._unblock_queue()
        for bucket in self._buckets.values():
            if bucket.blocked_reason is not None:
                bucket.blocked_reason = None
                changed = True
        return changed

    def blocked_reason_for(self, workload: WorkloadId) -> str | None:
        if self.blocked_reason is not None:
            return self.blocked_reason
        live = self._live.get(workload)
        return None if live is None else self._buckets[live[0]].blocked_reason

    def ordered(
        self, queue_score: Callable[[str], float] | None
    ) -> Iterator[tuple[WorkloadId, str]]:
        """All pending workloads as (id, queue) in the order they would be tried.

        Set-aside buckets come last, as Kueue lists its inadmissible workloads. With
        usage-based fair sharing the order past each Queue's head is approximate, since
        scores move as workloads are admitted.
        """

        def sort_key(
            item: tuple[WorkloadId, tuple[BucketKey, OrderKey]],
        ) -> tuple[bool, float, OrderKey]:
            bucket_key, key = item[1]
            bucket = self._buckets[bucket_key]
            score = queue_score(bucket_key[0]) if queue_score else 0.0
            return (bucket.blocked_reason is not None, score, key)

        for workload, (bucket_key, _) in sorted(self._live.items(), key=sort_key):
            yield workload, bucket_key[0]
