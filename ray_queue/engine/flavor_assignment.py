"""Choosing a flavor for each bundle group: flavors in order, with flavorFungibility.

Pure function of (workload, ClusterQueue config, quota tree, and an optional preemption
*oracle*). It never changes usage; it only reports whether the workload *fits*, *could
fit by preempting*, or *cannot fit*, and on which flavors, so the cycle and the
preemption search agree on one assignment.

As in Kueue's flavor assigner, a flavor that needs preemption is asked of the oracle
(a victim search for that flavor-resource alone): no possible victims ranks it below any
flavor that can be used and never stops the search; victims only in other ClusterQueues
(*reclaim*) rank above victims in its own (*preempt*). Flavors that fit or preempt equally
well are ranked by *borrowing level*: 0 when the ClusterQueue's own quota suffices, else
the height of the lowest cohort subtree that has room (``QuotaTree.borrowing_level``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum

from ray_queue.engine.config import (
    BorrowWithinCohortPolicy,
    ClusterQueue,
    ReclaimWithinCohort,
    ResourceGroup,
    WhenCanBorrow,
    WhenCanPreempt,
)
from ray_queue.engine.model import (
    FlavorName,
    FlavorResource,
    GroupAdmission,
    Milli,
    ResourceName,
    WorkloadSpec,
)
from ray_queue.engine.quantity import format_quantity
from ray_queue.engine.quota import QuotaNode, QuotaTree


class Mode(IntEnum):
    NO_FIT = 0
    PREEMPT = 1
    FIT = 2


class Preemption(IntEnum):
    """How one flavor could be had, worst first (Kueue's ``preemptionMode``): the ranking
    between flavors."""

    NO_FIT = 0
    #: Preemption would be needed, but the victim search finds no victims.
    NO_CANDIDATES = 1
    #: Some victims are in the preemptor's own ClusterQueue.
    PREEMPT = 2
    #: All victims are borrowed quota of other ClusterQueues.
    RECLAIM = 3
    FIT = 4


#: The victim search for one flavor-resource: given it and the amount wanted there, how
#: preemption could make room, and the borrowing level once the victims are gone.
Oracle = Callable[[FlavorResource, Milli], tuple[Preemption, int]]


@dataclass(frozen=True, slots=True)
class Assignment:
    mode: Mode
    groups: tuple[GroupAdmission, ...]
    usage: dict[FlavorResource, Milli]
    borrows: bool
    #: Flavor-resources where the request exceeds what is available now.
    needs_preemption: frozenset[FlavorResource]
    #: Why it does not fit, for a person; empty when it fits.
    reason: str
    #: How far up the cohort tree its quota comes from (0: its own ClusterQueue); heads
    #: that borrow less go first.
    borrow_level: int = 0
    #: PREEMPT, but the oracle found no victims on some chosen flavor: searching the
    #: whole workload's victims would find none either.
    no_candidates: bool = False


@dataclass(frozen=True, slots=True)
class _FlavorOption:
    mode: Preemption
    level: int
    borrows: bool
    flavor: FlavorName
    short: frozenset[FlavorResource]
    reason: str
    #: Whether it cannot fit only because the flavor has no quota at all for a resource
    #: asked for (a GPU request on a CPU flavor): named after the flavors that have some.
    lacks_quota: bool = False

    def rank(self) -> tuple[int, int]:
        """Better is larger: the mode first, then the lower borrowing level (Kueue's
        default ``BorrowingOverPreemption`` preference)."""
        return (int(self.mode), -self.level)


#: What the cycle does with a flavor's mode: admit, preempt (or find nobody to), or wait.
_MODE_OF = {
    Preemption.NO_FIT: Mode.NO_FIT,
    Preemption.NO_CANDIDATES: Mode.PREEMPT,
    Preemption.PREEMPT: Mode.PREEMPT,
    Preemption.RECLAIM: Mode.PREEMPT,
    Preemption.FIT: Mode.FIT,
}


def preempts_while_borrowing(cq: ClusterQueue, *, fair_sharing: bool) -> bool:
    """Kueue's ``canPreemptWhileBorrowing``: whether ``cq`` may preempt where it would
    borrow (``borrowWithinCohort``, or fair sharing with ``reclaimWithinCohort``)."""
    preemption = cq.preemption
    if preemption.borrow_within_cohort.policy is not BorrowWithinCohortPolicy.NEVER:
        return True
    return fair_sharing and preemption.reclaim_within_cohort is not ReclaimWithinCohort.NEVER


def assign_flavors(
    spec: WorkloadSpec,
    cq: ClusterQueue,
    node: QuotaNode,
    tree: QuotaTree,
    *,
    first_group_count: int | None = None,
    oracle: Oracle | None = None,
    preempt_while_borrowing: bool = False,
) -> Assignment:
    """Assign a flavor per (bundle group, resource group); report the worst mode over all.

    Without ``oracle`` every flavor that could fit by preempting counts as PREEMPT (the
    question "could this ever be admitted?"). ``preempt_while_borrowing``: the
    ClusterQueue may preempt even where it would borrow (borrowWithinCohort, or fair
    sharing with reclaim), so such flavors are put to the oracle too.
    """
    usage: dict[FlavorResource, Milli] = {}
    groups: list[GroupAdmission] = []
    mode = Mode.FIT
    borrows = False
    level = 0
    no_candidates = False
    short: set[FlavorResource] = set()
    reasons: list[str] = []
    for index, group in enumerate(spec.bundle_groups):
        count = first_group_count if (index == 0 and first_group_count is not None) else group.count
        request = {r: a for r, a in group.total(count).items() if a > 0}
        flavors: dict[ResourceName, FlavorName] = {}
        for rg, resources in _by_resource_group(cq, request):
            if rg is None:
                names = ", ".join(sorted(resources))
                return _no_fit(f"ClusterQueue {cq.name} has no quota for {names}")
            option = _choose_flavor(
                cq, rg, resources, usage, node, tree, oracle, preempt_while_borrowing
            )
            mode = min(mode, _MODE_OF[option.mode])
            borrows = borrows or option.borrows
            level = max(level, option.level)
            no_candidates = no_candidates or option.mode is Preemption.NO_CANDIDATES
            short |= option.short
            if option.reason:
                reasons.append(option.reason)
            for resource, amount in resources.items():
                flavors[resource] = option.flavor
                fr = (option.flavor, resource)
                usage[fr] = usage.get(fr, 0) + amount
        groups.append(GroupAdmission(flavors=flavors, count=count))
    return Assignment(
        mode=mode,
        groups=tuple(groups),
        usage=usage,
        borrows=borrows,
        needs_preemption=frozenset(short),
        reason="; ".join(reasons) if mode is not Mode.FIT else "",
        borrow_level=level,
        no_candidates=no_candidates,
    )


def assign_largest(
    spec: WorkloadSpec,
    cq: ClusterQueue,
    node: QuotaNode,
    tree: QuotaTree,
    *,
    oracle: Oracle | None = None,
    preempt_while_borrowing: bool = False,
    usable: Callable[[Assignment], bool] | None = None,
) -> Assignment:
    """``assign_flavors`` for the whole workload or, when that is not ``usable`` (default:
    it fits) and it allows partial admission, for the largest count of its first group
    that is. With a ``usable`` that accepts an assignment preemption makes room for, a
    workload preempts for its full count rather than shrink (Kueue's
    ``getInitialAssignments``), and shrinks only as far as preemption cannot take it."""

    def ok(a: Assignment) -> bool:
        return a.mode is Mode.FIT if usable is None else usable(a)

    def attempt(count: int | None) -> Assignment:
        return assign_flavors(
            spec,
            cq,
            node,
            tree,
            first_group_count=count,
            oracle=oracle,
            preempt_while_borrowing=preempt_while_borrowing,
        )

    full = attempt(None)
    if spec.min_count is None or ok(full):
        return full
    # Partial admission: the largest count of the first group that is usable (Kueue
    # searches the same way, taking fitting as monotone in the count).
    low, high = spec.min_count, spec.bundle_groups[0].count - 1
    best: Assignment | None = None
    while low <= high:
        mid = (low + high) // 2
        candidate = attempt(mid)
        if ok(candidate):
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best or full


def _no_fit(reason: str) -> Assignment:
    return Assignment(Mode.NO_FIT, (), {}, False, frozenset(), reason)


def _by_resource_group(
    cq: ClusterQueue, request: dict[ResourceName, Milli]
) -> list[tuple[ResourceGroup | None, dict[ResourceName, Milli]]]:
    out: list[tuple[ResourceGroup | None, dict[ResourceName, Milli]]] = []
    remaining = dict(request)
    for rg in cq.resource_groups:
        part = {r: remaining.pop(r) for r in rg.covered_resources if r in remaining}
        if part:
            out.append((rg, part))
    if remaining:
        out.append((None, remaining))
    return out


def _choose_flavor(
    cq: ClusterQueue,
    rg: ResourceGroup,
    resources: dict[ResourceName, Milli],
    pending_usage: dict[FlavorResource, Milli],
    node: QuotaNode,
    tree: QuotaTree,
    oracle: Oracle | None,
    preempt_while_borrowing: bool,
) -> _FlavorOption:
    """Kueue's ``findFlavorForPodSets``: the first flavor that ``flavorFungibility`` lets
    stop the search, else the best one seen (ties: the earlier)."""
    fungibility = cq.flavor_fungibility
    best: _FlavorOption | None = None
    never: list[_FlavorOption] = []
    for flavor_quotas in rg.flavors:
        option = _try_flavor(
            flavor_quotas.flavor,
            resources,
            pending_usage,
            node,
            tree,
            oracle,
            preempt_while_borrowing,
        )
        if option.mode is Preemption.FIT and option.level == 0:
            return option  # fits without borrowing: always taken
        if not _try_next(option, fungibility.when_can_borrow, fungibility.when_can_preempt):
            return option
        if best is None or option.rank() > best.rank():
            best = option
        never.append(option)
    assert best is not None, "a resource group always has at least one flavor (validated)"
    if best.mode is Preemption.NO_FIT:
        # No flavor could ever hold it: say why for each, not only for the first tried,
        # the flavors that carry the resource (with their limits) before those that have
        # none of it (asking 100 GPUs once named only the CPU flavor's 0).
        never.sort(key=lambda o: o.lacks_quota)
        return replace(best, reason="; ".join(o.reason for o in never))
    return best


def _try_next(option: _FlavorOption, borrow: WhenCanBorrow, preempt: WhenCanPreempt) -> bool:
    """Kueue's ``shouldTryNextFlavor``. A flavor with no possible victims never stops the
    search: preemption there would evict nothing, so a later flavor may still fit."""
    if option.mode in (Preemption.NO_FIT, Preemption.NO_CANDIDATES):
        return True
    preempts = option.mode in (Preemption.PREEMPT, Preemption.RECLAIM)
    if preempts and preempt is WhenCanPreempt.TRY_NEXT_FLAVOR:
        return True
    return option.level > 0 and borrow is WhenCanBorrow.TRY_NEXT_FLAVOR


def _try_flavor(
    flavor: FlavorName,
    resources: dict[ResourceName, Milli],
    pending_usage: dict[FlavorResource, Milli],
    node: QuotaNode,
    tree: QuotaTree,
    oracle: Oracle | None,
    preempt_while_borrowing: bool,
) -> _FlavorOption:
    """One flavor for every resource of a resource group: its worst resource decides
    (lowest mode, then highest borrowing level)."""
    worst_mode = Preemption.FIT
    worst_level = 0
    borrows = False
    short: set[FlavorResource] = set()
    reasons: list[str] = []
    absent: list[ResourceName] = []
    for resource, amount in resources.items():
        fr = (flavor, resource)
        wanted = pending_usage.get(fr, 0) + amount
        available = tree.available(node, fr)
        if wanted <= available:
            # Fits now (the common case, kept cheap): only the borrowing level is asked.
            if node.usage.get(fr, 0) + wanted <= node.nominal.get(fr, 0):
                continue
            borrows = True
            # Without an oracle only "could this ever fit?" is asked: any level will do.
            level = tree.borrowing_level(node, fr, wanted)[0] if oracle is not None else 1
            mode = Preemption.FIT
        else:
            mode, level, reason = _short_resource(
                fr, wanted, available, node, tree, oracle, preempt_while_borrowing
            )
            short.add(fr)
            if mode is Preemption.NO_FIT and tree.potential_available(node, fr) <= 0:
                absent.append(resource)
            else:
                reasons.append(reason)
        if mode < worst_mode or (mode == worst_mode and level > worst_level):
            worst_mode, worst_level = mode, level
    if absent:
        reasons.append(f"flavor {flavor} has no {' or '.join(sorted(absent))} quota")
    return _FlavorOption(
        worst_mode,
        worst_level,
        borrows or worst_level > 0,
        flavor,
        frozenset(short),
        "; ".join(reasons),
        lacks_quota=bool(absent) and len(reasons) == 1,
    )


def _short_resource(
    fr: FlavorResource,
    wanted: Milli,
    available: Milli,
    node: QuotaNode,
    tree: QuotaTree,
    oracle: Oracle | None,
    preempt_while_borrowing: bool,
) -> tuple[Preemption, int, str]:
    """Kueue's ``fitsResourceQuota`` for ``wanted`` of ``fr`` when it does not fit in
    what is ``available`` now: the mode, the borrowing level, and why."""
    flavor, resource = fr
    most = tree.potential_available(node, fr)
    if wanted > most:
        return (
            Preemption.NO_FIT,
            0,
            f"{resource} in flavor {flavor}: request {_fmt(resource, wanted)} exceeds the "
            f"most the ClusterQueue can ever get there ({_fmt(resource, most)}, "
            "borrowing included)",
        )
    reason = (
        f"insufficient unused quota for {resource} in flavor {flavor}: "
        f"request {_fmt(resource, wanted)}, available {_fmt(resource, max(0, available))}"
    )
    if oracle is None:
        return Preemption.PREEMPT, 0, reason
    level, below_root = tree.borrowing_level(node, fr, wanted)
    # Preempting can only help within nominal quota, where a subtree below the root
    # would hold it (reclaim in the hierarchy), or where borrowing while preempting is
    # allowed; elsewhere the flavor does not fit now.
    if node.nominal.get(fr, 0) >= wanted or below_root or preempt_while_borrowing:
        mode, after = oracle(fr, wanted)
        return mode, after, reason
    return Preemption.NO_FIT, level, reason


def _fmt(resource: ResourceName, amount: Milli) -> str:
    """An amount in the user's units: memory with binary suffixes (``16Gi``)."""
    if resource == "memory" or resource.endswith("memory"):
        return str(format_quantity(amount, binary=True))
    whole, frac = divmod(amount, 1000)
    return str(whole) if frac == 0 else f"{amount / 1000:g}"
