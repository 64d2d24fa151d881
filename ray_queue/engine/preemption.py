"""Choosing victims: Kueue's classical and fair-sharing preemption, as pure searches.

Both searches take a preemptor whose flavor assignment came back ``PREEMPT`` and the
admitted candidates it may legally take, and return the smallest set of victims that
makes the preemptor fit, or ``None``. They mutate the quota tree only as a what-if and
always restore it before returning; carrying out the evictions is the caller's job.

``Holders`` and ``find_victims`` gather those legal candidates from the workloads
holding quota, so the whole victim search lives here and the engine only asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ray_queue.engine.config import (
    BorrowWithinCohortPolicy,
    ClusterQueue,
    FairSharing,
    FairSharingStrategy,
    ReclaimWithinCohort,
    WithinClusterQueue,
)
from ray_queue.engine.fair_share import NEGATIVE_SHARE, Share, share_of, strategy_allows
from ray_queue.engine.model import FlavorResource, Milli, WorkloadId
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record


@dataclass(frozen=True, slots=True)
class Candidate:
    """An admitted workload that might be evicted."""

    workload: WorkloadId
    cluster_queue: str
    priority: int
    created_at: float
    #: Admission order; higher means admitted more recently.
    admitted_seq: int
    usage: Mapping[FlavorResource, Milli]


@dataclass(frozen=True, slots=True)
class Preemptor:
    priority: int
    created_at: float
    cq: ClusterQueue
    node: QuotaNode
    usage: Mapping[FlavorResource, Milli]
    needs: frozenset[FlavorResource]


# -- the workloads holding quota, and which of them may be victims --------------------


def candidate_of(record: Record) -> Candidate:
    """``record`` (which holds quota) as a victim candidate."""
    assert record.admission is not None
    return Candidate(
        workload=record.spec.id,
        cluster_queue=record.admission.cluster_queue,
        priority=record.priority,
        created_at=record.spec.created_at,
        admitted_seq=record.admitted_seq,
        usage=record.admission.usage,
    )


class Holders:
    """Per ClusterQueue, the workloads holding its quota, as ready-made victim candidates."""

    __slots__ = ("_borrowed_memo", "_by_cq")

    def __init__(self, cluster_queues: Iterable[str]) -> None:
        self._by_cq: dict[str, dict[WorkloadId, Candidate]] = {n: {} for n in cluster_queues}
        self._borrowed_memo: dict[
            tuple[QuotaNode, frozenset[FlavorResource]], tuple[int, list[Candidate]]
        ] = {}

    def add(self, record: Record) -> None:
        """``record`` now holds quota in its admission's ClusterQueue."""
        candidate = candidate_of(record)
        self._by_cq[candidate.cluster_queue][candidate.workload] = candidate

    def discard(self, cluster_queue: str, workload: WorkloadId) -> None:
        self._by_cq[cluster_queue].pop(workload, None)

    def workloads(self) -> Iterator[WorkloadId]:
        """Every holder, ClusterQueue by ClusterQueue, each in the order it got quota."""
        return (w for held in self._by_cq.values() for w in held)

    def by_cluster_queue(self) -> Iterator[tuple[str, list[WorkloadId]]]:
        """Each ClusterQueue with a snapshot of its holders, taken when it is reached, so
        the caller may evict them as it goes."""
        for name, held in self._by_cq.items():
            yield name, list(held)

    def candidates(self, cq_name: str, needs: frozenset[FlavorResource]) -> Iterator[Candidate]:
        return (c for c in self._by_cq[cq_name].values() if not needs.isdisjoint(c.usage))

    def borrowed_candidates(
        self, tree: QuotaTree, node: QuotaNode, needs: frozenset[FlavorResource]
    ) -> list[Candidate]:
        """Workloads of queues in ``node``'s tree that borrow what ``needs`` names.

        Cached per quota-tree state: after a release, every blocked head of a cohort is
        retried against the same state, and rescanning hundreds of queues each time
        would dominate the cycle.
        """
        key = (node.tree_root, needs)
        cached = self._borrowed_memo.get(key)
        if cached is not None and cached[0] == tree.version:
            return cached[1]
        found = [
            c
            for other in tree.same_tree(node)
            if tree.is_borrowing(other, iter(needs))
            for c in self.candidates(other.name, needs)
        ]
        self._borrowed_memo[key] = (tree.version, found)
        return found


def find_victims(
    preemptor: Preemptor, holders: Holders, tree: QuotaTree, fair_sharing: FairSharing
) -> list[Candidate] | None:
    """The victims that would let ``preemptor`` fit, among the holders it may legally
    take (its own queue's per ``withinClusterQueue``, the cohort's per
    ``reclaimWithinCohort``), or ``None``."""
    own = preemptor.cq.name
    candidates = [
        c
        for c in holders.candidates(own, preemptor.needs)
        if within_cluster_queue_allows(preemptor, c)
    ]
    if _may_take_from_cohort(preemptor, fair_sharing):
        candidates.extend(
            c
            for c in holders.borrowed_candidates(tree, preemptor.node, preemptor.needs)
            if c.cluster_queue != own and reclaim_allows(preemptor, c)
        )
    if not fair_sharing.enable:
        hierarchical = hierarchical_victims(preemptor, holders, tree, candidates)
        if hierarchical:
            return hierarchical
    if not candidates:
        return None
    if fair_sharing.enable:
        return fair_victims(preemptor, tree, candidates, fair_sharing.preemption_strategies)
    return classical_victims(preemptor, tree, candidates)


# -- hierarchical reclaim (classical) ---------------------------------------------------


def hierarchical_victims(
    preemptor: Preemptor, holders: Holders, tree: QuotaTree, own_candidates: Sequence[Candidate]
) -> list[Candidate] | None:
    """Kueue's hierarchical reclaim: the preemptor's ClusterQueue cannot hold the request
    in its own quota, but a cohort on its path can (its subtree's usage plus what is still
    missing fits its subtree quota): that cohort's quota is the preemptor's before anyone
    outside it. Workloads of queues outside that cohort that borrow (in subtrees that
    exceed their quota) are then reclaimed first, whatever ``borrowWithinCohort`` says,
    then candidates of queues below that cohort, then the preemptor's own queue's.
    ``None`` when no cohort below the root gives it that advantage (flat cohorts never
    do: there the usual rules apply), or when that is not enough to make room."""
    if preemptor.cq.preemption.reclaim_within_cohort is ReclaimWithinCohort.NEVER:
        return None
    node = preemptor.node
    needs = preemptor.needs
    advantage = _advantage_cohort(node, {fr: preemptor.usage.get(fr, 0) for fr in needs})
    if advantage is None or advantage.parent is None:
        # Nothing above the cohort that makes room: no one to reclaim from this way.
        return None
    lower, advantaged, levels = _reclaimable_by_level(preemptor, holders, tree, advantage)
    if not advantaged:
        return None
    own = preemptor.cq.name
    ordered = [
        *sorted(advantaged, key=lambda c: candidate_order(c, own)),
        *sorted(lower, key=lambda c: candidate_order(c, own)),
        *sorted(
            (c for c in own_candidates if c.cluster_queue == own),
            key=lambda c: candidate_order(c, own),
        ),
    ]

    def still_borrowing(c: Candidate) -> bool:
        if c.cluster_queue == own:
            return True
        cq_node = tree.cluster_queues[c.cluster_queue]
        if not tree.is_borrowing(cq_node, iter(needs)):
            return False
        for ancestor in cq_node.ancestors():
            if ancestor is levels[c.workload]:
                return True
            if not tree.is_borrowing(ancestor, iter(needs)):
                return False
        return True

    def fits() -> bool:
        return tree.fits(node, preemptor.usage)

    if not could_make_room(preemptor, tree, ordered, cap=None):
        return None
    return _take_until_fits(tree, ordered, still_borrowing, fits)


def _reclaimable_by_level(
    preemptor: Preemptor, holders: Holders, tree: QuotaTree, advantage: QuotaNode
) -> tuple[list[Candidate], list[Candidate], dict[str, QuotaNode]]:
    """Candidates of over-quota queues met walking up from the preemptor: those found
    below the ``advantage`` cohort, those found at or above it, and for each the cohort
    under which it was found (Kueue's lowest common ancestor)."""
    below: list[Candidate] = []
    above: list[Candidate] = []
    levels: dict[str, QuotaNode] = {}
    found = below
    previous = preemptor.node
    for cohort in preemptor.node.ancestors():
        for cq_node in _over_quota_queues(tree, cohort, previous, preemptor.needs):
            for c in holders.candidates(cq_node.name, preemptor.needs):
                if reclaim_allows(preemptor, c):
                    found.append(c)
                    levels[c.workload] = cohort
        if cohort is advantage:
            found = above
        previous = cohort
    return below, above, levels


def _advantage_cohort(node: QuotaNode, request: Mapping[FlavorResource, Milli]) -> QuotaNode | None:
    """The lowest cohort on ``node``'s path whose own quota holds what ``node`` and the
    cohorts below it cannot (Kueue's ``QuantitiesFitInQuota`` walk), or ``None`` if the
    ClusterQueue holds it itself or no cohort does."""

    def fits(n: QuotaNode, amounts: Mapping[FlavorResource, Milli]) -> bool:
        return all(
            n.usage.get(fr, 0) + v <= n.subtree_quota.get(fr, 0) for fr, v in amounts.items()
        )

    def still_missing(
        n: QuotaNode, amounts: Mapping[FlavorResource, Milli]
    ) -> dict[FlavorResource, Milli]:
        return {
            fr: max(0, v - max(0, n.subtree_quota.get(fr, 0) - n.usage.get(fr, 0)))
            for fr, v in amounts.items()
        }

    if fits(node, request):
        return None  # within its own quota: the usual reclaim applies
    remaining = still_missing(node, request)
    for cohort in node.ancestors():
        if fits(cohort, remaining):
            return cohort
        remaining = still_missing(cohort, remaining)
    return None


def _over_quota_queues(
    tree: QuotaTree, cohort: QuotaNode, skip: QuotaNode, needs: frozenset[FlavorResource]
) -> Iterator[QuotaNode]:
    """ClusterQueues under ``cohort`` but not under ``skip`` that use more than their
    quota on ``needs``, looking only into subtrees that do too."""
    for child in cohort.children:
        if child is skip or not tree.is_borrowing(child, iter(needs)):
            continue
        if child.is_cluster_queue:
            yield child
        else:
            yield from _over_quota_queues(tree, child, skip, needs)


def _may_take_from_cohort(preemptor: Preemptor, fair_sharing: FairSharing) -> bool:
    """Whether other ClusterQueues' workloads can be victims at all.

    Classical preemption only reclaims while the preemptor's queue is under nominal
    quota, unless borrowWithinCohort allows it; skipping the cohort scan otherwise
    keeps a blocked head cheap in cohorts with hundreds of queues.
    """
    preemption = preemptor.cq.preemption
    if (
        preemption.reclaim_within_cohort is ReclaimWithinCohort.NEVER
        or preemptor.node.parent is None
    ):
        return False
    if fair_sharing.enable:
        return True
    if preemption.borrow_within_cohort.policy is BorrowWithinCohortPolicy.LOWER_PRIORITY:
        return True
    return under_nominal(preemptor)


# -- who may be a candidate ------------------------------------------------------------


def within_cluster_queue_allows(preemptor: Preemptor, victim: Candidate) -> bool:
    policy = preemptor.cq.preemption.within_cluster_queue
    if policy is WithinClusterQueue.LOWER_PRIORITY:
        return victim.priority < preemptor.priority
    if policy is WithinClusterQueue.LOWER_OR_NEWER_EQUAL_PRIORITY:
        return victim.priority < preemptor.priority or (
            victim.priority == preemptor.priority and victim.created_at > preemptor.created_at
        )
    return False


def reclaim_allows(preemptor: Preemptor, victim: Candidate) -> bool:
    reclaim = preemptor.cq.preemption.reclaim_within_cohort
    if reclaim is ReclaimWithinCohort.ANY:
        return True
    if reclaim is ReclaimWithinCohort.LOWER_PRIORITY:
        return victim.priority < preemptor.priority
    return False


def borrowing_allowed_below(preemptor: Preemptor) -> int:
    """Under ``borrowWithinCohort: LowerPriority``, the priority from which a victim in
    another ClusterQueue forbids the preemptor to borrow: its own priority, or one above
    ``maxPriorityThreshold`` if that is lower (Kueue's ``canBorrowWithinCohort``)."""
    threshold = preemptor.cq.preemption.borrow_within_cohort.max_priority_threshold
    if threshold is not None and threshold < preemptor.priority:
        return threshold + 1
    return preemptor.priority


def candidate_order(candidate: Candidate, own_cq: str) -> tuple[int, int, int, str]:
    """Other queues' borrowed work first, then lowest priority, then newest admission."""
    return (
        0 if candidate.cluster_queue != own_cq else 1,
        candidate.priority,
        -candidate.admitted_seq,
        candidate.workload,
    )


# -- classical preemption -------------------------------------------------------------


def classical_victims(
    preemptor: Preemptor, tree: QuotaTree, candidates: Sequence[Candidate]
) -> list[Candidate] | None:
    """Kueue's ``getTargets``: a minimal victim set, trying the least disruptive rule first."""
    own = preemptor.cq.name
    ordered = sorted(candidates, key=lambda c: candidate_order(c, own))
    same_queue = [c for c in ordered if c.cluster_queue == own]
    no_more_borrowing = _no_more_borrowing(preemptor)
    if len(same_queue) == len(ordered):
        return _minimal(preemptor, tree, ordered, cap=no_more_borrowing)
    if (
        preemptor.cq.preemption.borrow_within_cohort.policy
        is BorrowWithinCohortPolicy.LOWER_PRIORITY
    ):
        below = borrowing_allowed_below(preemptor)
        if not under_nominal(preemptor):
            ordered = [c for c in ordered if c.cluster_queue == own or c.priority < below]
        return _minimal_borrowing_below(preemptor, tree, ordered, below)
    # Reclaiming from the cohort is only allowed while not borrowing ourselves; that
    # is what keeps two queues from taking the same quota back and forth.
    if under_nominal(preemptor):
        nominal = {fr: preemptor.node.nominal.get(fr, 0) for fr in preemptor.usage}
        victims = _minimal(preemptor, tree, ordered, cap=nominal)
        if victims:
            return victims
    return _minimal(preemptor, tree, same_queue, cap=no_more_borrowing)


def _minimal_borrowing_below(
    preemptor: Preemptor, tree: QuotaTree, ordered: Sequence[Candidate], below: int
) -> list[Candidate] | None:
    """Kueue's ``minimalPreemptions`` with ``allowBorrowingBelowPriority``: victims are
    taken in order, and once one from another ClusterQueue has a priority of ``below`` or
    more, the preemptor must fit without borrowing. Otherwise two queues that may both
    borrow while preempting and reclaim from each other (``reclaimWithinCohort: Any``)
    would take the same quota back and forth: one of equal priority reclaims what the
    other borrowed, to borrow it itself."""
    own = preemptor.cq.name
    if not could_make_room(preemptor, tree, ordered, cap=None):
        return None
    nominal = {fr: preemptor.node.nominal.get(fr, 0) for fr in preemptor.usage}
    cap: dict[FlavorResource, Milli] | None = None

    def fits() -> bool:
        return tree.fits(preemptor.node, preemptor.usage, cap=cap)

    taken: list[Candidate] = []
    for candidate in ordered:
        node = tree.cluster_queues[candidate.cluster_queue]
        reclaim = candidate.cluster_queue != own
        if reclaim and not tree.is_borrowing(node, iter(preemptor.needs)):
            continue
        if reclaim and candidate.priority >= below:
            # Ordered by priority, so no later victim of another queue is lower: from
            # here on the preemptor may not borrow.
            cap = nominal
        tree.remove_usage(node, candidate.usage)
        taken.append(candidate)
        if fits():
            return _fill_back_and_restore(tree, taken, fits)
    _restore(tree, taken)
    return None


def _no_more_borrowing(preemptor: Preemptor) -> dict[FlavorResource, Milli]:
    """The cap on the preemptor's queue when its victims are its own work: preempting
    inside its own queue may replace lower-priority work but never makes the queue
    borrow more than it already does of what it had to preempt for. Otherwise the newly
    borrowed quota is reclaimable by the cohort, whose reclaimed work then preempts back,
    forever."""
    node = preemptor.node
    # Only what needs preemption is capped: the rest fits already, and borrowing it is
    # what any admission may do (Kueue lets such a preemptor borrow it too).
    return {
        fr: max(node.nominal.get(fr, 0), node.usage.get(fr, 0))
        if fr in preemptor.needs
        else node.usage.get(fr, 0) + amount
        for fr, amount in preemptor.usage.items()
    }


def under_nominal(preemptor: Preemptor) -> bool:
    """Whether the preemptor's queue is below nominal on every resource it is short of."""
    node = preemptor.node
    return all(node.usage.get(fr, 0) < node.nominal.get(fr, 0) for fr in preemptor.needs)


def _minimal(
    preemptor: Preemptor,
    tree: QuotaTree,
    ordered: Sequence[Candidate],
    *,
    cap: Mapping[FlavorResource, Milli] | None,
) -> list[Candidate] | None:
    own = preemptor.cq.name

    def still_borrowing(c: Candidate) -> bool:
        node = tree.cluster_queues[c.cluster_queue]
        return c.cluster_queue == own or tree.is_borrowing(node, iter(preemptor.needs))

    def fits() -> bool:
        return tree.fits(preemptor.node, preemptor.usage, cap=cap)

    if not could_make_room(preemptor, tree, ordered, cap=cap):
        return None
    return _take_until_fits(tree, ordered, still_borrowing, fits)


def could_make_room(
    preemptor: Preemptor,
    tree: QuotaTree,
    candidates: Sequence[Candidate],
    *,
    cap: Mapping[FlavorResource, Milli] | None,
) -> bool:
    """A cheap upper bound checked before any what-if: evicting every candidate frees at
    most their usage, and only the preemptor's own queue's victims lower its own usage
    (which is what matters under a ``cap``). Most blocked heads stop here."""
    node = preemptor.node
    own = preemptor.cq.name
    for fr, amount in preemptor.usage.items():
        freed = own_freed = 0
        for candidate in candidates:
            used = candidate.usage.get(fr, 0)
            freed += used
            if candidate.cluster_queue == own:
                own_freed += used
        if tree.available(node, fr) + freed < amount:
            return False
        if cap is not None and node.usage.get(fr, 0) - own_freed + amount > cap.get(fr, 0):
            return False
    return bool(candidates)


def _take_until_fits(
    tree: QuotaTree,
    ordered: Sequence[Candidate],
    eligible: Callable[[Candidate], bool],
    fits: Callable[[], bool],
) -> list[Candidate] | None:
    """Remove candidates in order until ``fits``; then give back the unneeded ones."""
    taken: list[Candidate] = []
    for candidate in ordered:
        if not eligible(candidate):
            continue
        tree.remove_usage(tree.cluster_queues[candidate.cluster_queue], candidate.usage)
        taken.append(candidate)
        if fits():
            return _fill_back_and_restore(tree, taken, fits)
    _restore(tree, taken)
    return None


def _fits_with(
    preemptor: Preemptor,
    tree: QuotaTree,
    victims: Sequence[Candidate],
    cap: Mapping[FlavorResource, Milli],
) -> bool:
    """Whether the preemptor fits under ``cap`` once ``victims`` are gone (a what-if)."""
    for victim in victims:
        tree.remove_usage(tree.cluster_queues[victim.cluster_queue], victim.usage)
    try:
        return tree.fits(preemptor.node, preemptor.usage, cap=cap)
    finally:
        _restore(tree, victims)


def _fill_back_and_restore(
    tree: QuotaTree, taken: list[Candidate], fits: Callable[[], bool]
) -> list[Candidate]:
    # The last one taken made it fit, so it is needed; earlier ones may not be.
    victims = [taken[-1]]
    for candidate in reversed(taken[:-1]):
        node = tree.cluster_queues[candidate.cluster_queue]
        tree.add_usage(node, candidate.usage)
        if fits():
            continue
        tree.remove_usage(node, candidate.usage)
        victims.append(candidate)
    _restore(tree, victims)
    victims.reverse()
    return victims


def _restore(tree: QuotaTree, removed: Sequence[Candidate]) -> None:
    for candidate in removed:
        tree.add_usage(tree.cluster_queues[candidate.cluster_queue], candidate.usage)


# -- fair-sharing preemption ----------------------------------------------------------


def fair_victims(
    preemptor: Preemptor,
    tree: QuotaTree,
    candidates: Sequence[Candidate],
    strategies: Sequence[FairSharingStrategy],
) -> list[Candidate] | None:
    """Kueue's ``fairPreemptions``: take victims queue by queue, the queue with the
    highest share first, while the first strategy allows it (rule S2-a); candidates it
    refuses are kept, and if that is not enough the second strategy
    (``LessThanInitialShare``) may take one of them per queue (rule S2-b). Then the set
    is made minimal, as in the classical search.

    Shares are computed with the preemptor counted in its ClusterQueue, as Kueue does;
    between ClusterQueues of different cohorts, the shares compared are those of the
    two subtrees just below the cohort they share (their least common ancestor).
    """
    if not could_make_room(preemptor, tree, candidates, cap=None):
        return None
    own = preemptor.cq.name
    ordered = sorted(candidates, key=lambda c: candidate_order(c, own))
    search = _FairSearch(preemptor, tree, ordered)
    tree.add_usage(preemptor.node, preemptor.usage)
    try:
        fits = search.first_strategy(strategies[0])
        if not fits and len(strategies) > 1:
            fits = search.second_strategy()
    finally:
        tree.remove_usage(preemptor.node, preemptor.usage)
    taken = search.taken
    if not fits:
        _restore(tree, taken)
        return None

    def fits_now() -> bool:
        return tree.fits(preemptor.node, preemptor.usage)

    victims = _fill_back_and_restore(tree, taken, fits_now)
    if any(v.cluster_queue != own for v in victims):
        # Taken from other queues by the fair-share rule, which is what lets this queue
        # borrow more.
        return victims
    # Only its own work: the classical rule (``_no_more_borrowing``) holds here too.
    cap = _no_more_borrowing(preemptor)
    return victims if _fits_with(preemptor, tree, victims, cap) else None


class _FairSearch:
    """One fair-sharing victim search: the candidates left per ClusterQueue, the
    queues and cohorts ruled out, and the victims taken so far (removed from the tree,
    in which the preemptor's usage is counted while the search runs)."""

    def __init__(self, preemptor: Preemptor, tree: QuotaTree, ordered: list[Candidate]) -> None:
        self.preemptor = preemptor
        self.tree = tree
        self.own = preemptor.cq.name
        self.pools: dict[str, list[Candidate]] = {}
        for candidate in ordered:
            self.pools.setdefault(candidate.cluster_queue, []).append(candidate)
        self.pruned: set[QuotaNode] = set()
        self.path = set(preemptor.node.ancestors())
        self.taken: list[Candidate] = []
        self.retry: list[Candidate] = []

    def fits(self) -> bool:
        """Whether the preemptor fits now (its counted usage set aside)."""
        node, usage = self.preemptor.node, self.preemptor.usage
        self.tree.remove_usage(node, usage)
        try:
            return self.tree.fits(node, usage)
        finally:
            self.tree.add_usage(node, usage)

    def take(self, candidate: Candidate) -> bool:
        self.tree.remove_usage(self.tree.cluster_queues[candidate.cluster_queue], candidate.usage)
        self.taken.append(candidate)
        return self.fits()

    def first_strategy(self, strategy: FairSharingStrategy) -> bool:
        within_nominal = self._within_nominal()
        while True:
            target = self._next_target()
            if target is None:
                return False
            pool = self.pools[target.name]
            if target.name == self.own:
                if self.take(pool.pop(0)):
                    return True
                continue
            if within_nominal:
                # Within its nominal quota on what it needs, the preemptor may take back
                # what is lent whatever the shares (Kueue's FairSharingPreemptWithinNominal).
                if self.take(pool.pop(0)):
                    return True
                continue
            preemptor_share, target_before = self._shares(target)
            while pool:
                candidate = pool.pop(0)
                after = self._target_share_without(target, candidate)
                if strategy_allows(strategy, preemptor_share, target_before, after):
                    if self.take(candidate):
                        return True
                    break  # shares changed: pick the queue again
                self.retry.append(candidate)

    def second_strategy(self) -> bool:
        """Rule S2-b: per queue, its first refused candidate, if the preemptor's share
        is below the queue's share now."""
        self.pools = {}
        for candidate in self.retry:
            self.pools.setdefault(candidate.cluster_queue, []).append(candidate)
        self.pruned = set()
        while True:
            target = self._next_target()
            if target is None:
                return False
            preemptor_share, target_before = self._shares(target)
            candidate = self.pools[target.name].pop(0)
            if preemptor_share.key() < target_before.key() and self.take(candidate):
                return True
            self.pruned.add(target)

    def _within_nominal(self) -> bool:
        node = self.preemptor.node
        return all(node.usage.get(fr, 0) <= node.nominal.get(fr, 0) for fr in self.preemptor.needs)

    def _next_target(self) -> QuotaNode | None:
        """Kueue's ``TargetClusterQueueOrdering``: from the root down, the child (queue
        or cohort) with the highest share, skipping those that do not borrow (except the
        preemptor's own queue and cohorts) or have no candidates left."""
        node = self.preemptor.node
        if node.parent is None:
            if node in self.pruned or not self.pools.get(node.name):
                return None
            return node
        root = node.tree_root
        while root not in self.pruned:
            target = self._next_in(root)
            if target is not None:
                return target
        return None

    def _next_in(self, cohort: QuotaNode) -> QuotaNode | None:
        best_cq: QuotaNode | None = None
        best_cq_share = NEGATIVE_SHARE
        best_cohort: QuotaNode | None = None
        best_cohort_share = NEGATIVE_SHARE
        for child in cohort.children:
            if child in self.pruned:
                continue
            share = share_of(child)
            if child.is_cluster_queue:
                if (not share.borrowed and child.name != self.own) or not self.pools.get(
                    child.name
                ):
                    self.pruned.add(child)
                elif best_cq is None or share.key() > best_cq_share.key():
                    best_cq, best_cq_share = child, share
                elif share.key() == best_cq_share.key() and self._first_goes_first(child, best_cq):
                    best_cq = child
            elif not share.borrowed and child not in self.path:
                self.pruned.add(child)
            elif share.key() >= best_cohort_share.key():
                best_cohort, best_cohort_share = child, share
        if best_cq is None and best_cohort is None:
            self.pruned.add(cohort)
            return None
        if best_cohort is not None and best_cohort_share.key() >= best_cq_share.key():
            return self._next_in(best_cohort)
        return best_cq

    def _first_goes_first(self, a: QuotaNode, b: QuotaNode) -> bool:
        first_a, first_b = self.pools[a.name][0], self.pools[b.name][0]
        return candidate_order(first_a, self.own) < candidate_order(first_b, self.own)

    def _almost_lcas(self, target: QuotaNode) -> tuple[QuotaNode, QuotaNode]:
        """The children of the preemptor's and the target's lowest common cohort on
        their two paths (each queue itself when that cohort is its parent)."""
        below = target
        for cohort in target.ancestors():
            if cohort in self.path:
                mine = self.preemptor.node
                while mine.parent is not cohort:
                    assert mine.parent is not None
                    mine = mine.parent
                return mine, below
            below = cohort
        raise AssertionError("a target shares no cohort with the preemptor")

    def _shares(self, target: QuotaNode) -> tuple[Share, Share]:
        mine, theirs = self._almost_lcas(target)
        return share_of(mine), share_of(theirs)

    def _target_share_without(self, target: QuotaNode, candidate: Candidate) -> Share:
        self.tree.remove_usage(target, candidate.usage)
        try:
            return share_of(self._almost_lcas(target)[1])
        finally:
            self.tree.add_usage(target, candidate.usage)
