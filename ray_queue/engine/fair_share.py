"""Fair-share math: Kueue's weighted dominant-resource share (DRS), and Queue usage decay.

Short pure functions, kept beside the cycle as Kueue keeps them, because ordering and
victim choice must agree on exactly one definition of "who has more than its share".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ray_queue.engine.config import FairSharingStrategy
from ray_queue.engine.model import Admission, FlavorResource, Milli, ResourceName, WorkloadStatus
from ray_queue.engine.quota import QuotaNode

INFINITE_SHARE = math.inf

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Share:
    """Kueue's dominant resource share (DRS) of a node: the largest fraction, over
    resources, of what its parent could lend that it borrows, and per fair-sharing weight.

    Ordering (``key``) follows Kueue's ``CompareDRS``: a node of weight 0 that borrows
    has an infinite share, above every other; two such nodes compare by their
    unweighted share, so the one borrowing less still goes first.
    """

    ratio: float
    weight: float
    #: The flavor-resources it borrows on (possibly with a ratio of 0: see ``share_of``).
    borrowed: frozenset[FlavorResource]

    @property
    def weighted(self) -> float:
        if self.ratio == 0:
            return 0.0
        # Weight 0 means "never entitled to borrow": any borrowing is an infinite share.
        return INFINITE_SHARE if self.weight <= 0 else self.ratio / self.weight

    def key(self) -> tuple[int, float]:
        """Lower is fairer."""
        if self.weight <= 0 and self.ratio > 0:
            return (1, self.ratio)
        return (0, self.weighted)

    def borrows_on(self, usage: Mapping[FlavorResource, Milli]) -> bool:
        """Whether it borrows on any flavor-resource ``usage`` asks for."""
        return any(usage.get(fr, 0) > 0 for fr in self.borrowed)


#: Below every real share: where a search for the highest share starts.
NEGATIVE_SHARE = Share(-1.0, 1.0, frozenset())


def share_of(node: QuotaNode, extra: Mapping[FlavorResource, Milli] | None = None) -> Share:
    """``node``'s DRS; ``extra`` is usage to count as if already admitted in ``node``.

    A resource its parent could lend none of gives no ratio (Kueue skips it): the node
    then borrows with a share of 0.
    """
    if node.parent is None:
        return Share(0.0, node.weight, frozenset())
    borrowed: dict[ResourceName, Milli] = {}
    borrowed_frs: list[FlavorResource] = []
    keys = node.usage.keys() | (extra.keys() if extra else set())
    for fr in keys:
        used = node.usage.get(fr, 0) + (extra.get(fr, 0) if extra else 0)
        over = used - node.subtree_quota.get(fr, 0)
        if over > 0:
            borrowed[fr[1]] = borrowed.get(fr[1], 0) + over
            borrowed_frs.append(fr)
    if not borrowed:
        return Share(0.0, node.weight, frozenset())
    pool = node.parent.lendable()
    ratio = 0.0
    for resource, amount in borrowed.items():
        available = pool.get(resource, 0)
        if available > 0:
            ratio = max(ratio, amount / available)
    return Share(ratio, node.weight, frozenset(borrowed_frs))


def dominant_resource_share(
    node: QuotaNode, extra: Mapping[FlavorResource, Milli] | None = None
) -> float:
    """Weighted DRS of ``node`` (``share_of(...).weighted``), as reported and as the
    preemption strategies compare it."""
    return share_of(node, extra).weighted


def tournament(
    cohort: QuotaNode,
    heads: Mapping[QuotaNode, E],
    better: Callable[[E, E, QuotaNode], bool],
) -> E | None:
    """Kueue's fair-sharing tournament: the head to consider next among ``heads`` (per
    ClusterQueue node) in ``cohort``'s subtree. Each child cohort sends up its own winner;
    at each level the candidates (child cohorts' winners, then its ClusterQueues' heads)
    are compared by ``better(a, b, cohort)``, which looks at the shares of the children
    of ``cohort`` they come through; the first of equals wins."""
    candidates: list[E] = []
    for child in cohort.children:
        if not child.is_cluster_queue:
            winner = tournament(child, heads, better)
            if winner is not None:
                candidates.append(winner)
    for child in cohort.children:
        head = heads.get(child) if child.is_cluster_queue else None
        if head is not None:
            candidates.append(head)
    best: E | None = None
    for candidate in candidates:
        if best is None or better(candidate, best, cohort):
            best = candidate
    return best


def strategy_allows(
    strategy: FairSharingStrategy, preemptor: Share, before: Share, after: Share
) -> bool:
    """Whether a victim may be taken from a target (Kueue's two strategies, on its share
    order): ``preemptor`` is the preemptor's side with the head counted in, ``before``
    and ``after`` the target's side with and without the victim."""
    if strategy is FairSharingStrategy.LESS_THAN_OR_EQUAL_TO_FINAL_SHARE:
        return preemptor.key() <= after.key()
    return preemptor.key() < before.key()


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
