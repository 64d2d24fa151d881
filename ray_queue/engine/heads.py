"""The heads of one scheduling round: their plans and the order they are handled in.

A head's *plan* is its flavor assignment plus, when it must preempt, the victims that make
room for it (Kueue's ``getInitialAssignments`` with its preemption oracle). The round
handles heads in Kueue's order: classical (borrowing level, priority, age) or, with fair
sharing, the winner of Kueue's tournament, recomputed after each head. Pure functions of
the records, the quota tree and the holders; what-ifs on the tree are undone before they
return.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ray_queue.engine.config import ClusterQueue, FairSharing
from ray_queue.engine.fair_share import Share, share_of, tournament
from ray_queue.engine.flavor_assignment import (
    Assignment,
    Mode,
    Preemption,
    assign_flavors,
    assign_largest,
)
from ray_queue.engine.model import FlavorResource, Milli, WorkloadId
from ray_queue.engine.preemption import Candidate, Holders, Preemptor, find_victims
from ray_queue.engine.quota import QuotaNode, QuotaTree
from ray_queue.engine.record import Record


@dataclass(slots=True)
class Entry:
    """A head being considered in one scheduling round."""

    record: Record
    cq: ClusterQueue
    node: QuotaNode
    assignment: Assignment
    #: When ``assignment`` is PREEMPT: the victims that make room for it, if any.
    victims: list[Candidate] | None


# -- plans -------------------------------------------------------------------------------


# long: the oracle, the search and victims_of are closures over one cache of simulated
# victims (Kueue's oracle runs per flavor-resource, the final search once); as separate
# functions they would pass that cache and six arguments around without being clearer.
def plan(
    record: Record,
    cq: ClusterQueue,
    node: QuotaNode,
    tree: QuotaTree,
    holders: Holders,
    fair_sharing: FairSharing,
    *,
    may_preempt: bool,
    while_borrowing: bool,
) -> tuple[Assignment, list[Candidate] | None]:
    """The head's flavor assignment and, when it must preempt, its victims (Kueue's
    ``getInitialAssignments``): the full count if it fits or preemption makes room for
    it; else, with partial admission, the largest count that does. ``may_preempt`` is
    false for a workload preempted earlier in the call (it may not preempt: no cycles)."""
    #: The oracle's victims per (flavor-resource, amount): for a workload that asks for
    #: one flavor-resource they are the whole workload's, so not searched twice.
    simulated: dict[tuple[FlavorResource, Milli], list[Candidate] | None] = {}

    def search(
        usage: dict[FlavorResource, Milli], needs: frozenset[FlavorResource]
    ) -> list[Candidate] | None:
        preemptor = Preemptor(
            priority=record.priority,
            created_at=record.spec.created_at,
            cq=cq,
            node=node,
            usage=usage,
            needs=needs,
        )
        return find_victims(preemptor, holders, tree, fair_sharing)

    def oracle(fr: FlavorResource, amount: Milli) -> tuple[Preemption, int]:
        if not may_preempt:
            return Preemption.NO_CANDIDATES, tree.borrowing_level(node, fr, amount)[0]
        victims = search({fr: amount}, frozenset((fr,)))
        simulated[(fr, amount)] = victims
        return preemption_mode(cq, node, tree, fr, amount, victims)

    def victims_of(assignment: Assignment) -> list[Candidate] | None:
        if assignment.mode is not Mode.PREEMPT or assignment.no_candidates or not may_preempt:
            return None
        if len(assignment.usage) == 1:
            ((fr, amount),) = assignment.usage.items()
            if (fr, amount) in simulated:
                return simulated[(fr, amount)]
        return search(assignment.usage, assignment.needs_preemption)

    if record.spec.min_count is None:
        assignment = assign_flavors(
            record.spec, cq, node, tree, oracle=oracle, preempt_while_borrowing=while_borrowing
        )
        return assignment, victims_of(assignment)
    found: dict[int, list[Candidate]] = {}

    def usable(assignment: Assignment) -> bool:
        if assignment.mode is Mode.FIT:
            return True
        victims = victims_of(assignment)
        if victims:
            found[id(assignment)] = victims
        return bool(victims)

    assignment = assign_largest(
        record.spec,
        cq,
        node,
        tree,
        oracle=oracle,
        preempt_while_borrowing=while_borrowing,
        usable=usable,
    )
    if assignment.mode is Mode.PREEMPT and id(assignment) not in found:
        usable(assignment)
    return assignment, found.get(id(assignment))


def preemption_mode(
    cq: ClusterQueue,
    node: QuotaNode,
    tree: QuotaTree,
    fr: FlavorResource,
    amount: Milli,
    victims: list[Candidate] | None,
) -> tuple[Preemption, int]:
    """Kueue's preemption oracle's answer for ``amount`` of ``fr`` alone, given the
    victims the search found for it: none (NO_CANDIDATES), some in its own queue
    (PREEMPT) or only in others (RECLAIM), and the borrowing level once they are gone."""
    if not victims:
        return Preemption.NO_CANDIDATES, tree.borrowing_level(node, fr, amount)[0]
    own = any(v.cluster_queue == cq.name for v in victims)
    removed = [(tree.cluster_queues[v.cluster_queue], v.usage) for v in victims]
    level = tree.borrowing_level_after(node, fr, amount, removed)
    return (Preemption.PREEMPT if own else Preemption.RECLAIM), level


def plan_is_stale(
    entry: Entry, freed: bool, preempted_this_call: set[WorkloadId], tree: QuotaTree
) -> bool:
    """Whether a head's plan must be made again now that its tree changed this round
    (``freed``: a preemption gave quota back, not only admissions took more).

    A head that fits nowhere stays so while the tree only takes more: ``NO_FIT`` depends
    on limits and on how much is free, never on who holds it (partial admission aside,
    whose smaller counts may preempt). A head with victims keeps them while they all
    still hold quota and it fits once they are gone: Kueue keeps a head's targets from
    the start of the cycle and only checks that, rather than searching again.
    """
    assignment = entry.assignment
    if assignment.mode is Mode.NO_FIT:
        return freed or entry.record.spec.min_count is not None
    victims = entry.victims
    if assignment.mode is not Mode.PREEMPT or not victims:
        return True
    if any(v.workload in preempted_this_call for v in victims):
        return True
    removed = [(tree.cluster_queues[v.cluster_queue], v.usage) for v in victims]
    for node, usage in removed:
        tree.remove_usage(node, usage)
    try:
        return not tree.fits(entry.node, assignment.usage)
    finally:
        for node, usage in removed:
            tree.add_usage(node, usage)


# -- order -------------------------------------------------------------------------------


def classical_order(entry: Entry) -> tuple[object, ...]:
    """Kueue's classical order: borrowing level, then priority, creation time, id."""
    spec = entry.record.spec
    return (entry.assignment.borrow_level, -entry.record.priority, spec.created_at, spec.id)


def fair_order(heads: list[Entry], tree: QuotaTree) -> Iterator[Entry]:
    """Fair-sharing order (Kueue's ``fairSharingIterator``): the next head is the winner
    of a tournament in its tree, recomputed after each head is handled, since that
    changes the shares. Trees are independent; they are visited in the order of their
    first head (classical order), for determinism."""
    remaining = {entry.node: entry for entry in heads}
    while remaining:
        first = min(remaining.values(), key=classical_order)
        pick = first if first.node.parent is None else _winner(first, remaining, tree)
        del remaining[pick.node]
        yield pick


def _winner(first: Entry, remaining: dict[QuotaNode, Entry], tree: QuotaTree) -> Entry:
    """The tournament winner of ``first``'s tree among the ``remaining`` heads."""
    root = first.node.tree_root
    shares = {
        entry.node: _path_shares(entry, tree)
        for entry in remaining.values()
        if entry.node.tree_root is root
    }

    def better(a: Entry, b: Entry, cohort: QuotaNode) -> bool:
        return _fairer(a, shares[a.node][cohort], b, shares[b.node][cohort])

    return tournament(root, remaining, better) or first


def _path_shares(entry: Entry, tree: QuotaTree) -> dict[QuotaNode, Share]:
    """For each cohort above the head's ClusterQueue, the share of its child on the way
    down to it, with the head counted in (what the tournament compares there)."""
    added = dict(tree.added_along_path(entry.node, entry.assignment.usage))
    shares: dict[QuotaNode, Share] = {}
    below = share_of(entry.node, added.get(entry.node))
    for cohort in entry.node.ancestors():
        shares[cohort] = below
        below = share_of(cohort, added.get(cohort))
    return shares


def _fairer(a: Entry, a_share: Share, b: Entry, b_share: Share) -> bool:
    """Kueue's fair-sharing ``entryComparer.less`` at one level of the tournament: a head
    whose subtree would not borrow on what it asks for goes first; then the lower share;
    then higher priority; then the older; then the id."""
    a_borrows = a_share.borrows_on(a.assignment.usage)
    if a_borrows != b_share.borrows_on(b.assignment.usage):
        return not a_borrows
    if a_share.key() != b_share.key():
        return a_share.key() < b_share.key()
    a_spec, b_spec = a.record.spec, b.record.spec
    a_key = (-a.record.priority, a_spec.created_at, a_spec.id)
    return a_key < (-b.record.priority, b_spec.created_at, b_spec.id)
