"""Fair-share math: Kueue's weighted dominant-resource share (DRS), and Queue usage decay.

Short pure functions, kept beside the cycle as Kueue keeps them, because ordering and
victim choice must agree on exactly one definition of "who has more than its share".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ray_queue.engine.config import FairSharingStrategy
from ray_queue.engine.model import Admission, FlavorResource, Milli, ResourceName, WorkloadStatus
from ray_queue.engine.quota import QuotaNode

INFINITE_SHARE = math.inf


def lendable(node: QuotaNode) -> dict[ResourceName, Milli]:
    """Per resource, all the quota a cohort pools for its members (over every flavor)."""
    totals: dict[ResourceName, Milli] = {}
    for (_, resource), quota in node.subtree_quota.items():
        totals[resource] = totals.get(resource, 0) + quota
    return totals


def dominant_resource_share(
    node: QuotaNode, extra: Mapping[FlavorResource, Milli] | None = None
) -> float:
    """Weighted DRS of ``node``: how much of its parent's pool it borrows, per weight.

    ``extra`` is usage to count as if already admitted (the "share with this workload"
    that ordering and the preemption strategies compare).
    """
    if node.parent is None:
        return 0.0
    borrowed: dict[ResourceName, Milli] = {}
    keys = set(node.usage) | set(extra or ())
    for fr in keys:
        used = node.usage.get(fr, 0) + (extra.get(fr, 0) if extra else 0)
        over = used - node.subtree_quota.get(fr, 0)
        if over > 0:
            borrowed[fr[1]] = borrowed.get(fr[1], 0) + over
    if not borrowed:
        return 0.0
    # Weight 0 means "never entitled to borrow": any borrowing is an infinite share, so
    # such a queue is always ordered last and preempted first.
    if node.weight <= 0:
        return INFINITE_SHARE
    pool = lendable(node.parent)
    share = 0.0
    for resource, amount in borrowed.items():
        available = pool.get(resource, 0)
        # Borrowing something the parent does not pool can only happen through a
        # grandparent; treat it as infinitely unfair rather than dividing by zero.
        ratio = INFINITE_SHARE if available <= 0 else amount / available
        share = max(share, ratio)
    return share / node.weight


def fair_rank(node: QuotaNode, usage: Mapping[FlavorResource, Milli]) -> tuple[float, ...]:
    """How a head admitting ``usage`` into ``node``'s ClusterQueue ranks under fair
    sharing (lower goes first)."""
    # Compare cohorts top-down, then the ClusterQueue as if the head were admitted.
    ancestors = [a for a in node.ancestors() if a.parent is not None]
    shares = tuple(dominant_resource_share(a) for a in reversed(ancestors))
    own = dominant_resource_share(node, usage)
    return (*shares, own)


def strategy_allows(
    strategy: FairSharingStrategy,
    *,
    preemptor_share_with_workload: float,
    target_share_before: float,
    target_share_after: float,
) -> bool:
    """Whether a victim from the target queue may be taken (Kueue's two strategies)."""
    if strategy is FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE:
        return preemptor_share_with_workload <= target_share_after
    return preemptor_share_with_workload < target_share_before


def decay(score: float, elapsed_s: float, half_life_s: float) -> float:
    """Exponential decay of a Queue's recent-usage score."""
    if half_life_s <= 0 or elapsed_s <= 0:
        return score
    factor: float = 0.5 ** (elapsed_s / half_life_s)
    return score * factor


def admission_penalty(
    request: Mapping[FlavorResource, Milli], nominal: Mapping[FlavorResource, Milli]
) -> float:
    """A workload's dominant fraction of its ClusterQueue's nominal quota.

    Resources the ClusterQueue has no nominal quota for (pure borrowing) count as one
    whole share, so borrowing is not free for usage-based fair sharing.
    """
    penalty = 0.0
    for fr, amount in request.items():
        quota = nominal.get(fr, 0)
        penalty = max(penalty, amount / quota if quota > 0 else 1.0)
    return penalty


class QueueUsage:
    """Per Queue, the decayed recent-usage score that orders the Queues of a ClusterQueue
    under usage-based admission fair sharing (lower goes first)."""

    __slots__ = ("_scores",)

    def __init__(self) -> None:
        #: Queue → (decayed usage score, when it was last updated).
        self._scores: dict[str, tuple[float, float]] = {}

    def score(self, queue: str, now: float, half_life_s: float, weight: float) -> float:
        """``queue``'s usage decayed to ``now``, per unit of its fair-sharing weight."""
        score, at = self._scores.get(queue, (0.0, 0.0))
        decayed = decay(score, now - at, half_life_s)
        # A zero-weight Queue goes after every other Queue that has any usage.
        return decayed / weight if weight > 0 else (float("inf") if decayed > 0 else 0.0)

    def charge(
        self,
        queue: str,
        request: Mapping[FlavorResource, Milli],
        nominal: Mapping[FlavorResource, Milli],
        at: float,
        half_life_s: float,
    ) -> None:
        """``queue`` was given ``request`` at ``at``, in a ClusterQueue with ``nominal``."""
        score, since = self._scores.get(queue, (0.0, at))
        penalty = admission_penalty(request, nominal)
        self._scores[queue] = (decay(score, at - since, half_life_s) + penalty, at)


def recorded_charges(
    statuses: Iterable[WorkloadStatus], fair_shared: set[str]
) -> list[tuple[float, str, Admission]]:
    """Every recorded admission into the ``fair_shared`` ClusterQueues, as (when, Queue,
    admission), oldest first: replaying them rebuilds ``QueueUsage`` after a restart."""
    return sorted(
        (
            (t.at, status.spec.queue, t.admission)
            for status in statuses
            for t in status.history
            if t.admission is not None and t.admission.cluster_queue in fair_shared
        ),
        key=lambda charge: (charge[0], charge[1]),
    )
