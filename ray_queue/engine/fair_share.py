"""Fair-share math: Kueue's weighted dominant-resource share (DRS), and Queue usage decay.

Short pure functions, kept beside the cycle as Kueue keeps them, because ordering and
victim choice must agree on exactly one definition of "who has more than its share".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ray_queue.engine.config import FairSharingStrategy
from ray_queue.engine.model import FlavorResource, Milli, ResourceName
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
