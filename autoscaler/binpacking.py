"""How many hosts of a worker group's shape a set of gangs needs: first-fit decreasing.

Pure functions over integer milli-units, so the answer is exact and deterministic. Gangs
are all-or-nothing: a gang is packed onto a scratch copy of the pool and committed only if
every bundle found room, so a gang that cannot be placed never opens nodes for its half.
The pool starts with the free room of the group's existing hosts (including hosts that
were asked for but have not joined Ray yet, counted as empty), so a repeated pass over
the same demand asks for nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoscaler.demand import Bundle, Gang
from ray_queue.engine.model import Milli, PlacementStrategy, ResourceName, WorkloadId

Shape = Mapping[ResourceName, Milli]


@dataclass(frozen=True, slots=True)
class Unplaceable:
    """A gang the group cannot take, and why (reported, never silently dropped)."""

    workload: WorkloadId
    reason: str


@dataclass(frozen=True, slots=True)
class PackResult:
    #: Hosts to add (a multiple of ``num_of_hosts``).
    new_hosts: int
    #: Indices (into the ``free`` list given) of existing hosts some gang was packed onto.
    used_existing: frozenset[int]
    placed: tuple[WorkloadId, ...]
    #: Gangs no host of this shape can ever hold.
    infeasible: tuple[Unplaceable, ...]
    #: Gangs that would fit the shape but not under the group's maximum.
    capped: tuple[Unplaceable, ...]


def fits(bundle: Bundle, free: Shape) -> bool:
    return all(free.get(name, 0) >= amount for name, amount in bundle.items() if amount > 0)


def combine(bundles: Sequence[Bundle]) -> dict[ResourceName, Milli]:
    total: dict[ResourceName, Milli] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0) + amount
    return total


def too_big(bundle: Bundle, shape: Shape) -> str | None:
    """Why no host of ``shape`` can hold ``bundle`` (``None`` if one can)."""
    for name, amount in sorted(bundle.items()):
        if amount > shape.get(name, 0):
            have = shape.get(name, 0)
            return f"needs {_fmt(amount)} {name} per node; a node offers {_fmt(have)}"
    return None


def hosts_for(gang: Gang, *, shape: Shape, num_of_hosts: int = 1) -> int | None:
    """Hosts a gang needs on empty nodes of ``shape``; ``None`` if no number of them can
    hold it. All-at-once gangs ask for exactly this many in their ProvisioningRequest."""
    result = pack_gangs([gang], shape=shape, free=[], num_of_hosts=num_of_hosts)
    return None if result.infeasible else result.new_hosts


def pack_gangs(
    gangs: Sequence[Gang],
    *,
    shape: Shape,
    free: Sequence[Shape],
    num_of_hosts: int = 1,
    max_new_hosts: int | None = None,
) -> PackResult:
    """Pack ``gangs`` in the order given onto ``free`` hosts, then onto new hosts.

    New hosts come a whole slice (``num_of_hosts``) at a time. ``max_new_hosts`` bounds
    how many may be added; a gang that would go past it is reported in ``capped`` and the
    packing carries on with the next (a smaller gang may still fit).
    """
    if num_of_hosts < 1:
        raise ValueError("num_of_hosts must be at least 1")
    pool: list[dict[ResourceName, Milli]] = [dict(f) for f in free]
    existing = len(pool)
    placed: list[WorkloadId] = []
    infeasible: list[Unplaceable] = []
    capped: list[Unplaceable] = []
    used: set[int] = set()
    for gang in gangs:
        units = _units(gang)
        reason = next((r for u in units if (r := too_big(u, shape)) is not None), None)
        if reason is not None:
            infeasible.append(Unplaceable(gang.workload, reason))
            continue
        trial = [dict(f) for f in pool]
        touched = _place(units, trial, shape, num_of_hosts, distinct=_distinct(gang))
        added = len(trial) - existing
        if max_new_hosts is not None and added > max_new_hosts:
            capped.append(
                Unplaceable(
                    gang.workload,
                    f"needs {added} more nodes; the group may add {max_new_hosts}",
                )
            )
            continue
        pool = trial
        used |= {i for i in touched if i < existing}
        placed.append(gang.workload)
    return PackResult(
        new_hosts=len(pool) - existing,
        used_existing=frozenset(used),
        placed=tuple(placed),
        infeasible=tuple(infeasible),
        capped=tuple(capped),
    )


def _units(gang: Gang) -> list[Bundle]:
    """What must land on one host each, largest first (the "decreasing" in FFD)."""
    if gang.strategy is PlacementStrategy.STRICT_PACK:
        return [combine(gang.bundles)]
    return sorted(gang.bundles, key=_size, reverse=True)


def _distinct(gang: Gang) -> bool:
    # SPREAD is best effort in Ray, so only STRICT_SPREAD forces one bundle per host.
    return gang.strategy is PlacementStrategy.STRICT_SPREAD


def _size(bundle: Bundle) -> tuple[Milli, ...]:
    # Accelerators first, then CPU, then the rest by name: a total order, so ties break
    # the same way every run.
    order = ("TPU", "GPU", "CPU", "memory")
    ranked = [bundle.get(r, 0) for r in order]
    rest = [amount for name, amount in sorted(bundle.items()) if name not in order]
    return (*ranked, *rest)


def _place(
    units: Sequence[Bundle],
    pool: list[dict[ResourceName, Milli]],
    shape: Shape,
    num_of_hosts: int,
    *,
    distinct: bool,
) -> set[int]:
    """First fit of each unit onto ``pool``, opening slices as needed; returns hosts used."""
    mine: set[int] = set()
    for unit in units:
        host = next(
            (
                i
                for i, room in enumerate(pool)
                if (not distinct or i not in mine) and fits(unit, room)
            ),
            None,
        )
        if host is None:
            host = len(pool)
            pool.extend(dict(shape) for _ in range(num_of_hosts))
        for name, amount in unit.items():
            pool[host][name] = pool[host].get(name, 0) - amount
        mine.add(host)
    return mine


def _fmt(amount: Milli) -> str:
    return f"{amount / 1000:g}"
