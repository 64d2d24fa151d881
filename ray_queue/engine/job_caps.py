"""A job's cap on what it holds at once (``WorkloadSpec.max_resources``, ray#59651).

A job owns the work its captured driver and workers create: each such workload names
the job as its ``parent``. The cap bounds, per resource name, the job's own admitted
entrypoint plus every child holding quota; a child whose admission would cross it waits
(set aside, with the resource and the cap in its reason) until a sibling gives quota
back. Kueue has nothing like it: it queues a RayJob as one whole, never what runs inside.

Pure functions over the engine's records, so ``Engine`` stays the one place that
changes state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ray_queue.engine.model import MILLI, Milli, ResourceName, Usage
from ray_queue.engine.record import Record


def by_resource(usage: Usage) -> dict[ResourceName, Milli]:
    """``usage`` summed over flavors: a cap is per resource, whatever the flavor."""
    out: dict[ResourceName, Milli] = {}
    for (_, resource), amount in usage.items():
        out[resource] = out.get(resource, 0) + amount
    return out


def held(parent: Record, children: Iterable[Record]) -> dict[ResourceName, Milli]:
    """What the job and its children hold now, per resource (quota, not Ray's view)."""
    total: dict[ResourceName, Milli] = {}
    for record in (parent, *children):
        if record.state.holds_quota and record.admission is not None:
            for resource, amount in by_resource(record.admission.usage).items():
                total[resource] = total.get(resource, 0) + amount
    return total


def refusal(
    cap: Mapping[ResourceName, Milli],
    holding: Mapping[ResourceName, Milli],
    asked: Mapping[ResourceName, Milli],
    job: str,
) -> str | None:
    """Why admitting ``asked`` would cross the job's ``cap``, or ``None`` if it fits."""
    for resource in sorted(cap):
        want = asked.get(resource, 0)
        if want and holding.get(resource, 0) + want > cap[resource]:
            return (
                f"job {job}'s max_resources caps {resource} at {cap[resource] / MILLI:g}; "
                f"it holds {holding.get(resource, 0) / MILLI:g} and this asks "
                f"{want / MILLI:g} more (waits until the job's other work gives some back)"
            )
    return None


def largest_count(
    cap: Mapping[ResourceName, Milli],
    holding: Mapping[ResourceName, Milli],
    per_bundle: Mapping[ResourceName, Milli],
    rest: Mapping[ResourceName, Milli],
    count: int,
) -> int:
    """How many of a partially admissible first group's ``count`` bundles (each
    ``per_bundle``, beside ``rest`` for the other groups) fit under the cap; 0 if none."""
    best = count
    for resource, limit in cap.items():
        room = limit - holding.get(resource, 0) - rest.get(resource, 0)
        each = per_bundle.get(resource, 0)
        if room < 0:
            return 0
        if each > 0:
            best = min(best, room // each)
    return max(best, 0)


def never_fits(
    cap: Mapping[ResourceName, Milli],
    parent_asks: Mapping[ResourceName, Milli],
    child_least: Mapping[ResourceName, Milli],
    job: str,
) -> str | None:
    """Why a child asking at least ``child_least`` can never fit beside its job's own
    entrypoint (``parent_asks``) under ``cap``, or ``None``."""
    for resource in sorted(cap):
        want = child_least.get(resource, 0)
        entrypoint = parent_asks.get(resource, 0)
        if want > cap[resource] - entrypoint:
            return (
                f"it asks {resource} = {want / MILLI:g}, but job {job}'s max_resources caps "
                f"{resource} at {cap[resource] / MILLI:g} with {entrypoint / MILLI:g} of that "
                "for the entrypoint; ask for less, or submit the job with a higher cap"
            )
    return None
