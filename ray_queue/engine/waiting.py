"""Heads that wait for quota to free on its own before they preempt (a departure).

Kueue preempts the moment a head fits only by preempting. On a busy cluster that throws
work away that would have ended on its own a moment later: on Kueue's baseline shape,
replayed at Kueue's own pace (``benchmarks.engine --pace kueue``), nearly every large
arrival finds its ClusterQueue full of medium work admitted a fraction of a second
earlier and evicts it. With ``preemption.waitBeforePreemptingSeconds`` a ClusterQueue's
head that would preempt waits that long first (docs/design.md, "Waiting before
preempting"); meanwhile its queue's free nominal quota, up to what the head asks for, is
*held* for it, so neither lower-priority work of its own queue nor borrowers from the
cohort take what is freed piece by piece, and the head is admitted the moment its victims
would have ended anyway. When the wait is over it preempts as Kueue would, so every
eviction is still one Kueue's rules call for; there are only fewer of them.

A hold exists only while a round runs: ``Waits.hold`` adds it to the quota tree before
the round's heads are planned and ``release`` takes it out after, so status views and
every what-if outside a round see real usage only. Holds are computed afresh each round
from the queue's usage, so they grow as quota frees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ray_queue.engine.model import FlavorResource, Milli, WorkloadId
from ray_queue.engine.quota import QuotaNode, QuotaTree


@dataclass(slots=True)
class Wait:
    """One head waiting before it preempts."""

    #: When it may preempt (clock time).
    until: float
    node: QuotaNode
    #: What it asks for, by flavor-resource (its last plan's assignment).
    usage: Mapping[FlavorResource, Milli]
    #: What is held for it while a round runs (added to ``node``'s usage).
    held: dict[FlavorResource, Milli]
    #: Its wait ended and the next call was told to try it again.
    woken: bool = False


class Waits:
    """The heads waiting before they preempt, and the quota held for them."""

    __slots__ = ("_waits",)

    def __init__(self) -> None:
        self._waits: dict[WorkloadId, Wait] = {}

    def __contains__(self, workload: WorkloadId) -> bool:
        return workload in self._waits

    def start(
        self,
        workload: WorkloadId,
        node: QuotaNode,
        usage: Mapping[FlavorResource, Milli],
        *,
        now: float,
        wait_s: float,
    ) -> bool:
        """``workload`` would preempt now: returns whether it must still wait (starting
        its wait if it has none), recording what it asks for."""
        wait = self._waits.get(workload)
        if wait is None:
            wait = self._waits[workload] = Wait(now + wait_s, node, usage, {})
        wait.node, wait.usage = node, usage
        return now < wait.until

    def end(self, workload: WorkloadId, tree: QuotaTree) -> None:
        """``workload`` no longer waits (admitted, preempting, or gone)."""
        wait = self._waits.pop(workload, None)
        if wait is not None and wait.held:
            tree.remove_usage(wait.node, wait.held)

    def lift(self, workload: WorkloadId, tree: QuotaTree) -> None:
        """Take ``workload``'s own hold out of the tree while it is planned itself: what
        is held for it is quota it may use. ``put_back`` undoes it."""
        wait = self._waits.get(workload)
        if wait is not None and wait.held:
            tree.remove_usage(wait.node, wait.held)

    def put_back(self, workload: WorkloadId, tree: QuotaTree) -> None:
        wait = self._waits.get(workload)
        if wait is not None and wait.held:
            tree.add_usage(wait.node, wait.held)

    def hold(self, tree: QuotaTree) -> None:
        """Before a round: hold each waiting head's queue's free nominal quota, up to
        what the head asks for (a queue with several waiting heads may hold its free
        quota more than once: it only makes the others wait longer)."""
        for wait in self._waits.values():
            node = wait.node
            held = {
                fr: min(amount, node.nominal.get(fr, 0) - node.usage.get(fr, 0))
                for fr, amount in wait.usage.items()
            }
            wait.held = {fr: amount for fr, amount in held.items() if amount > 0}
            if wait.held:
                tree.add_usage(node, wait.held)

    def release(self, tree: QuotaTree) -> None:
        """After a round: take every hold out of the tree."""
        for wait in self._waits.values():
            if wait.held:
                tree.remove_usage(wait.node, wait.held)
                wait.held = {}

    def wake(self, now: float) -> list[QuotaNode]:
        """The queues of heads whose wait ended since the last call: to try again, since
        they may preempt now (each is reported once)."""
        woken = []
        for wait in self._waits.values():
            if not wait.woken and wait.until <= now:
                wait.woken = True
                woken.append(wait.node)
        return woken

    def next_at(self) -> float | None:
        """When the next wait ends, if any."""
        return min((w.until for w in self._waits.values() if not w.woken), default=None)

    def __bool__(self) -> bool:
        return bool(self._waits)

    def forget(self, still_pending: Callable[[WorkloadId], bool]) -> list[QuotaNode]:
        """Drop the waits of workloads no longer pending (cancelled, or gone); returns
        their queues, whose held quota is free again. None is held between rounds."""
        gone = [w for w in self._waits if not still_pending(w)]
        return [self._waits.pop(w).node for w in gone]
