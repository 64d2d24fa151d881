"""The quota tree: ClusterQueues as leaves, cohorts as inner nodes, usage flowing upward.

This is Kueue's hierarchical resource-node model. Each node keeps, per
(flavor, resource), its nominal quota, optional borrowing and lending limits, the
``subtree_quota`` it contributes upward and its current ``usage``. The part of a node's
quota it does not lend (its *guaranteed* quota) is used first; anything above it is
stored in the parent. That single rule makes cohort borrowing, lending limits and
nested cohorts all fall out of two recursive formulas (``available`` and
``potential_available``), which is why the rest of the engine only ever asks the tree
"how much could this ClusterQueue take of (flavor, resource) right now?".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ray_queue.engine.config import QueueConfig, ResourceQuota
from ray_queue.engine.model import FlavorResource, Milli, ResourceName


class QuotaNode:
    """One ClusterQueue or cohort. Mutable: the engine keeps exactly one tree."""

    __slots__ = (
        "_guaranteed",
        "_lendable",
        "borrowing_limit",
        "children",
        "is_cluster_queue",
        "lending_limit",
        "name",
        "nominal",
        "parent",
        "subtree_quota",
        "tree_root",
        "usage",
        "weight",
    )

    def __init__(
        self,
        name: str,
        *,
        is_cluster_queue: bool,
        quotas: Mapping[FlavorResource, ResourceQuota],
        weight: float,
    ) -> None:
        self.name = name
        self.is_cluster_queue = is_cluster_queue
        self.parent: QuotaNode | None = None
        self.children: list[QuotaNode] = []
        self.weight = weight
        self.nominal: dict[FlavorResource, Milli] = {fr: q.nominal for fr, q in quotas.items()}
        self.borrowing_limit: dict[FlavorResource, Milli] = {
            fr: q.borrowing_limit for fr, q in quotas.items() if q.borrowing_limit is not None
        }
        self.lending_limit: dict[FlavorResource, Milli] = {
            fr: q.lending_limit for fr, q in quotas.items() if q.lending_limit is not None
        }
        self.subtree_quota: dict[FlavorResource, Milli] = dict(self.nominal)
        #: ``guaranteed`` per flavor-resource, fixed once the subtree quotas are known.
        self._guaranteed: dict[FlavorResource, Milli] = {}
        self._lendable: dict[ResourceName, Milli] | None = None
        self.usage: dict[FlavorResource, Milli] = {}
        #: The root of this node's tree; set once the tree is linked.
        self.tree_root: QuotaNode = self

    def __repr__(self) -> str:
        kind = "ClusterQueue" if self.is_cluster_queue else "Cohort"
        return f"<{kind} {self.name}>"

    def guaranteed(self, fr: FlavorResource) -> Milli:
        """Quota this node keeps for itself: everything it may not lend."""
        return self._guaranteed.get(fr, 0)

    def fix_guaranteed(self) -> None:
        """Compute ``guaranteed`` once ``subtree_quota`` is final (the tree is built)."""
        self._guaranteed = {
            fr: max(0, self.subtree_quota.get(fr, 0) - limit)
            for fr, limit in self.lending_limit.items()
        }

    def lendable(self) -> dict[ResourceName, Milli]:
        """Per resource, what this node could give its children at most: its potential
        available quota over every flavor of its tree (Kueue's ``calculateLendable``;
        quotas only, so computed once). A cohort with no quota of its own still lends
        what its own parent would lend it."""
        if self._lendable is None:
            totals: dict[ResourceName, Milli] = {}
            for fr in self.tree_root.subtree_quota:
                totals[fr[1]] = totals.get(fr[1], 0) + potential_available(self, fr)
            self._lendable = totals
        return self._lendable

    def ancestors(self) -> Iterator[QuotaNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def borrowed(self, fr: FlavorResource) -> Milli:
        return max(0, self.usage.get(fr, 0) - self.subtree_quota.get(fr, 0))


class QuotaTree:
    """All ClusterQueues and cohorts of one config, with live usage."""

    def __init__(self, config: QueueConfig) -> None:
        self.cluster_queues: dict[str, QuotaNode] = {}
        #: Bumped on every usage change, so callers can cache what-ifs per state.
        self.version = 0
        self.cohorts: dict[str, QuotaNode] = {}
        for cohort in config.cohorts.values():
            self.cohorts[cohort.name] = QuotaNode(
                cohort.name,
                is_cluster_queue=False,
                quotas=cohort.quotas(),
                weight=cohort.fair_sharing_weight,
            )
        for cq in config.cluster_queues.values():
            self.cluster_queues[cq.name] = QuotaNode(
                cq.name, is_cluster_queue=True, quotas=cq.quotas(), weight=cq.fair_sharing_weight
            )
        # Kueue creates cohorts implicitly when something names them.
        for cohort in config.cohorts.values():
            if cohort.parent is not None:
                self._link(self.cohorts[cohort.name], self._cohort(cohort.parent))
        for cq in config.cluster_queues.values():
            if cq.cohort is not None:
                self._link(self.cluster_queues[cq.name], self._cohort(cq.cohort))
        #: Every ClusterQueue sharing a root, by root node: the scope of borrowing.
        self._members: dict[QuotaNode, list[QuotaNode]] = {}
        #: Each cohort's height: 1 above ClusterQueues only, one more per cohort level.
        self._height: dict[QuotaNode, int] = {}
        for root in self.roots():
            _compute_heights(root, self._height)
            _compute_subtree_quota(root)
            self._members[root] = list(_leaves(root))
            for member in self._members[root]:
                member.tree_root = root
                for ancestor in member.ancestors():
                    ancestor.tree_root = root

    def _cohort(self, name: str) -> QuotaNode:
        node = self.cohorts.get(name)
        if node is None:
            node = QuotaNode(name, is_cluster_queue=False, quotas={}, weight=1.0)
            self.cohorts[name] = node
        return node

    @staticmethod
    def _link(child: QuotaNode, parent: QuotaNode) -> None:
        child.parent = parent
        parent.children.append(child)

    def roots(self) -> list[QuotaNode]:
        nodes = [*self.cohorts.values(), *self.cluster_queues.values()]
        return [n for n in nodes if n.parent is None]

    def same_tree(self, node: QuotaNode) -> list[QuotaNode]:
        """Every ClusterQueue that can borrow from or lend to ``node`` (its whole tree)."""
        return self._members[node.tree_root]

    # -- usage --------------------------------------------------------------------------

    def add_usage(self, node: QuotaNode, usage: Mapping[FlavorResource, Milli]) -> None:
        self.version += 1
        for fr, amount in usage.items():
            _add(node, fr, amount)

    def remove_usage(self, node: QuotaNode, usage: Mapping[FlavorResource, Milli]) -> None:
        self.version += 1
        for fr, amount in usage.items():
            _remove(node, fr, amount)

    # -- capacity questions ---------------------------------------------------------------

    def available(self, node: QuotaNode, fr: FlavorResource) -> Milli:
        """What ``node`` could take of ``fr`` right now without preempting anything."""
        guaranteed = node.guaranteed(fr)
        usage = node.usage.get(fr, 0)
        if node.parent is None:
            return node.subtree_quota.get(fr, 0) - usage
        local = max(0, guaranteed - usage)
        from_parent = self.available(node.parent, fr)
        limit = node.borrowing_limit.get(fr)
        if limit is not None:
            stored_in_parent = node.subtree_quota.get(fr, 0) - guaranteed
            used_in_parent = max(0, usage - guaranteed)
            from_parent = min(from_parent, stored_in_parent - used_in_parent + limit)
        return local + from_parent

    def potential_available(self, node: QuotaNode, fr: FlavorResource) -> Milli:
        """The most ``node`` could ever hold of ``fr``, if everything else were preempted."""
        return potential_available(node, fr)

    def fits(
        self,
        node: QuotaNode,
        usage: Mapping[FlavorResource, Milli],
        *,
        cap: Mapping[FlavorResource, Milli] | None = None,
    ) -> bool:
        """Whether ``usage`` fits now; with ``cap``, ``node``'s usage must also stay at or
        below ``cap`` (its nominal quota, say, when it may not borrow)."""
        for fr, amount in usage.items():
            if amount > self.available(node, fr):
                return False
            if cap is not None and node.usage.get(fr, 0) + amount > cap.get(fr, 0):
                return False
        return True

    def borrowing_level(
        self, node: QuotaNode, fr: FlavorResource, amount: Milli
    ) -> tuple[int, bool]:
        """How far up the tree ``amount`` of ``fr`` (on top of ``node``'s usage) would
        come from, and whether that is below the root (Kueue's
        ``FindHeightOfLowestSubtreeThatFits``): 0 within ``node``'s nominal quota, else
        the height of the lowest cohort whose subtree quota still holds what ``node``'s
        own quota does not. The height (not the depth) is what makes workloads that
        borrow less far up the tree go first, however deep their ClusterQueues sit."""
        if node.parent is None or node.usage.get(fr, 0) + amount <= node.nominal.get(fr, 0):
            return 0, node.parent is not None
        remaining = amount - max(0, node.guaranteed(fr) - node.usage.get(fr, 0))
        cohort: QuotaNode | None = node.parent
        while cohort is not None:  # a plain loop: this runs for every borrowing head
            if cohort.usage.get(fr, 0) + remaining <= cohort.subtree_quota.get(fr, 0):
                return self._height[cohort], cohort.parent is not None
            remaining -= max(0, cohort.guaranteed(fr) - cohort.usage.get(fr, 0))
            cohort = cohort.parent
        return self._height[node.tree_root], False

    def added_along_path(
        self, node: QuotaNode, usage: Mapping[FlavorResource, Milli]
    ) -> list[tuple[QuotaNode, dict[FlavorResource, Milli]]]:
        """What ``add_usage(node, usage)`` would add to ``node`` and to each ancestor, as
        (node, added usage) from ``node`` up, without changing anything: usage fills a
        node's guaranteed quota first, and only the rest reaches its parent."""
        out: list[tuple[QuotaNode, dict[FlavorResource, Milli]]] = []
        current: QuotaNode | None = node
        added = dict(usage)
        while current is not None and added:
            out.append((current, added))
            up: dict[FlavorResource, Milli] = {}
            for fr, amount in added.items():
                local = max(0, current.guaranteed(fr) - current.usage.get(fr, 0))
                if amount > local:
                    up[fr] = amount - local
            added = up
            current = current.parent
        return out

    def borrowing_level_after(
        self,
        node: QuotaNode,
        fr: FlavorResource,
        amount: Milli,
        removed: list[tuple[QuotaNode, Mapping[FlavorResource, Milli]]],
    ) -> int:
        """``borrowing_level`` once the ``removed`` (ClusterQueue, usage) pairs are gone.

        Without lending limits on ``fr`` along the way, removed usage leaves every
        ancestor too, so the usage each node would have is a sum; with them (usage kept
        in a node's guaranteed quota stays there) it is a what-if on the tree itself.
        """
        freed: dict[QuotaNode, Milli] = {}
        for cq_node, usage in removed:
            amount_freed = usage.get(fr, 0)
            if not amount_freed:
                continue
            current: QuotaNode | None = cq_node
            while current is not None:
                if fr in current.lending_limit:
                    return self._borrowing_level_what_if(node, fr, amount, removed)
                freed[current] = freed.get(current, 0) + amount_freed
                current = current.parent
        if not freed:
            return self.borrowing_level(node, fr, amount)[0]
        usage_now = node.usage.get(fr, 0) - freed.get(node, 0)
        if node.parent is None or usage_now + amount <= node.nominal.get(fr, 0):
            return 0
        remaining = amount - max(0, node.guaranteed(fr) - usage_now)
        for cohort in node.ancestors():
            used = cohort.usage.get(fr, 0) - freed.get(cohort, 0)
            if used + remaining <= cohort.subtree_quota.get(fr, 0):
                return self._height[cohort]
            remaining -= max(0, cohort.guaranteed(fr) - used)
        return self._height[node.tree_root]

    def _borrowing_level_what_if(
        self,
        node: QuotaNode,
        fr: FlavorResource,
        amount: Milli,
        removed: list[tuple[QuotaNode, Mapping[FlavorResource, Milli]]],
    ) -> int:
        for cq_node, usage in removed:
            self.remove_usage(cq_node, usage)
        try:
            return self.borrowing_level(node, fr, amount)[0]
        finally:
            for cq_node, usage in removed:
                self.add_usage(cq_node, usage)

    def is_borrowing(self, node: QuotaNode, frs: Iterator[FlavorResource] | None = None) -> bool:
        keys = node.usage.keys() if frs is None else frs
        return any(node.usage.get(fr, 0) > node.subtree_quota.get(fr, 0) for fr in keys)


def potential_available(node: QuotaNode, fr: FlavorResource) -> Milli:
    """The most ``node`` could ever hold of ``fr``, if everything else were preempted
    (depends on quotas only, not on usage)."""
    guaranteed = node.guaranteed(fr)
    if node.parent is None:
        return node.subtree_quota.get(fr, 0)
    from_parent = potential_available(node.parent, fr)
    limit = node.borrowing_limit.get(fr)
    if limit is not None:
        from_parent = min(from_parent, node.subtree_quota.get(fr, 0) - guaranteed + limit)
    return guaranteed + from_parent


def _leaves(node: QuotaNode) -> Iterator[QuotaNode]:
    if node.is_cluster_queue:
        yield node
        return
    for child in node.children:
        yield from _leaves(child)


def _compute_heights(node: QuotaNode, heights: dict[QuotaNode, int]) -> int:
    if node.is_cluster_queue:
        return 0
    height = min(len(node.children), 1)
    for child in node.children:
        if not child.is_cluster_queue:
            height = max(height, _compute_heights(child, heights) + 1)
    heights[node] = height
    return height


def _compute_subtree_quota(node: QuotaNode) -> None:
    for child in node.children:
        _compute_subtree_quota(child)
        for fr, quota in child.subtree_quota.items():
            lendable = quota - child.guaranteed(fr)
            node.subtree_quota[fr] = node.subtree_quota.get(fr, 0) + lendable
    node.fix_guaranteed()


def _add(node: QuotaNode, fr: FlavorResource, amount: Milli) -> None:
    # Usage fills the node's guaranteed quota first; only the rest lands in the parent.
    local_available = max(0, node.guaranteed(fr) - node.usage.get(fr, 0))
    node.usage[fr] = node.usage.get(fr, 0) + amount
    if node.parent is not None and amount > local_available:
        _add(node.parent, fr, amount - local_available)


def _remove(node: QuotaNode, fr: FlavorResource, amount: Milli) -> None:
    stored_in_parent = node.usage.get(fr, 0) - node.guaranteed(fr)
    remaining = node.usage.get(fr, 0) - amount
    if remaining:
        node.usage[fr] = remaining
    else:
        node.usage.pop(fr, None)
    if node.parent is not None and stored_in_parent > 0:
        _remove(node.parent, fr, min(amount, stored_in_parent))
