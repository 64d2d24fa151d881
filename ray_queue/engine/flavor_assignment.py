"""Choosing a flavor for each bundle group: flavors in order, with flavorFungibility.

Pure function of (workload, ClusterQueue config, quota tree). It never changes usage; it
only reports whether the workload *fits*, *could fit by preempting*, or *cannot fit*, and
on which flavors, so the cycle and the preemption search agree on one assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

from ray_queue.engine.config import ClusterQueue, ResourceGroup, WhenCanBorrow, WhenCanPreempt
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


@dataclass(frozen=True, slots=True)
class _FlavorOption:
    mode: Mode
    borrows: bool
    flavor: FlavorName
    short: frozenset[FlavorResource]
    reason: str
    #: Whether it cannot fit only because the flavor has no quota at all for a resource
    #: asked for (a GPU request on a CPU flavor): named after the flavors that have some.
    lacks_quota: bool = False

    def rank(self) -> tuple[int, int]:
        return (int(self.mode), 0 if self.borrows else 1)


def assign_flavors(
    spec: WorkloadSpec,
    cq: ClusterQueue,
    node: QuotaNode,
    tree: QuotaTree,
    *,
    first_group_count: int | None = None,
) -> Assignment:
    """Assign a flavor per (bundle group, resource group); report the worst mode over all."""
    usage: dict[FlavorResource, Milli] = {}
    groups: list[GroupAdmission] = []
    mode = Mode.FIT
    borrows = False
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
            option = _choose_flavor(cq, rg, resources, usage, node, tree)
            mode = min(mode, option.mode)
            borrows = borrows or option.borrows
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
    )


def assign_largest(
    spec: WorkloadSpec, cq: ClusterQueue, node: QuotaNode, tree: QuotaTree
) -> Assignment:
    """``assign_flavors`` for the whole workload or, when that does not fit and it allows
    partial admission, for the largest count of its first group that fits."""
    full = assign_flavors(spec, cq, node, tree)
    if full.mode is Mode.FIT or spec.min_count is None:
        return full
    # Partial admission: the largest count of the first group that fits (Kueue
    # searches the same way, since fitting is monotone in the count).
    low, high = spec.min_count, spec.bundle_groups[0].count - 1
    best: Assignment | None = None
    while low <= high:
        mid = (low + high) // 2
        attempt = assign_flavors(spec, cq, node, tree, first_group_count=mid)
        if attempt.mode is Mode.FIT:
            best, low = attempt, mid + 1
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
) -> _FlavorOption:
    fungibility = cq.flavor_fungibility
    best: _FlavorOption | None = None
    never: list[_FlavorOption] = []
    for flavor_quotas in rg.flavors:
        option = _try_flavor(flavor_quotas.flavor, resources, pending_usage, node, tree)
        if option.mode is Mode.FIT and (
            not option.borrows or fungibility.when_can_borrow is WhenCanBorrow.BORROW
        ):
            return option
        if option.mode is Mode.PREEMPT and fungibility.when_can_preempt is WhenCanPreempt.PREEMPT:
            return option
        if best is None or option.rank() > best.rank():
            best = option
        never.append(option)
    assert best is not None, "a resource group always has at least one flavor (validated)"
    if best.mode is Mode.NO_FIT:
        # No flavor could ever hold it: say why for each, not only for the first tried,
        # the flavors that carry the resource (with their limits) before those that have
        # none of it (asking 100 GPUs once named only the CPU flavor's 0).
        never.sort(key=lambda o: o.lacks_quota)
        return replace(best, reason="; ".join(o.reason for o in never))
    return best


def _try_flavor(
    flavor: FlavorName,
    resources: dict[ResourceName, Milli],
    pending_usage: dict[FlavorResource, Milli],
    node: QuotaNode,
    tree: QuotaTree,
) -> _FlavorOption:
    mode = Mode.FIT
    borrows = False
    short: set[FlavorResource] = set()
    reasons: list[str] = []
    absent: list[ResourceName] = []
    for resource, amount in resources.items():
        fr = (flavor, resource)
        wanted = pending_usage.get(fr, 0) + amount
        available = tree.available(node, fr)
        if wanted <= available:
            if node.usage.get(fr, 0) + wanted > node.nominal.get(fr, 0):
                borrows = True
            continue
        short.add(fr)
        if wanted <= tree.potential_available(node, fr):
            mode = min(mode, Mode.PREEMPT)
            reasons.append(
                f"insufficient unused quota for {resource} in flavor {flavor}: "
                f"request {_fmt(resource, wanted)}, available "
                f"{_fmt(resource, max(0, available))}"
            )
        else:
            mode = Mode.NO_FIT
            most = tree.potential_available(node, fr)
            if most <= 0:
                absent.append(resource)
                continue
            reasons.append(
                f"{resource} in flavor {flavor}: request {_fmt(resource, wanted)} exceeds the "
                f"most the ClusterQueue can ever get there ({_fmt(resource, most)}, "
                "borrowing included)"
            )
    if absent:
        reasons.append(f"flavor {flavor} has no {' or '.join(sorted(absent))} quota")
    return _FlavorOption(
        mode,
        borrows,
        flavor,
        frozenset(short),
        "; ".join(reasons),
        lacks_quota=bool(absent) and len(reasons) == 1,
    )


def _fmt(resource: ResourceName, amount: Milli) -> str:
    """An amount in the user's units: memory with binary suffixes (``16Gi``)."""
    if resource == "memory" or resource.endswith("memory"):
        return str(format_quantity(amount, binary=True))
    whole, frac = divmod(amount, 1000)
    return str(whole) if frac == 0 else f"{amount / 1000:g}"
