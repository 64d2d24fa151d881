"""Kueue's scheduler tables (one scheduling cycle per case), replayed against our engine.

Kueue's ``TestSchedule`` and ``TestScheduleForFairSharing`` (``pkg/scheduler/``) each
start from a cache of admitted workloads and a set of pending ones, run one scheduling
cycle, and check who got quota, on which flavors, and who was preempted. A case here
holds the same facts as data: the ClusterQueues, cohorts and Queues as Kueue YAML (read
by our strict loader), the admitted workloads (``running``), the pending ones
(``waiting``), and what Kueue's cycle decided (``admits``, ``preempts``, and for each
workload that issued preemptions, the flavors it waits for: ``preemptors``).

How a case runs: the admitted workloads are restored into an engine exactly as Kueue's
fixture has them (``Engine.restore``, so flavors are Kueue's even where our assigner
would choose others); the pending ones are submitted; ``schedule()`` is called once. We
compare the workloads that got quota in that call (ADMIT or RESERVE, still holding it at
the end) with their flavors and counts, and the set preempted.

Our two documented departures change the expectation in a fixed way
(docs/design.md, "Preemption takes effect at once" and "Many admissions per call, in
rounds"):

- a workload that issues preemptions in Kueue's cycle (and then waits for its victims to
  go) is admitted in the same call here, on the flavors it preempted for;
- ``schedule()`` runs rounds until nothing more is admitted, so a case may admit, after
  Kueue's cycle, what Kueue's next cycles would: those are listed in ``later`` (and the
  preemptions they make in ``later_preempts``), each with why. Victims may be among
  them: their quota is free at once, and a victim that fits elsewhere is admitted again.

Equal victims: Kueue breaks ties by UID, we by admission order (newest first); restored
admissions are a millisecond apart, the smallest name newest, so that both agree.

A pending workload our engine refuses at submit (no flavor could ever hold it) simply
gets no quota, as in Kueue, where it stays pending. Names: a Kueue workload ``ns/name``
is ``ns.name`` here, and a LocalQueue ``name`` in namespace ``ns`` is ``ns.name`` (ours
are not namespaced). A case still failing is an ``xfail(strict)`` whose reason starts
``departure:`` (another documented departure) or ``differs:`` (a likely bug); a case
whose starting point cannot be expressed is skipped as ``unreachable``; features not
carried over are listed once, as ``out of scope``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from _pytest.mark import ParameterSet

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_documents import RAY_RESOURCE_NAMES
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import WorkloadRejected
from ray_queue.engine.model import (
    Admission,
    BundleGroup,
    DecisionKind,
    GroupAdmission,
    Transition,
    WorkloadId,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)
from ray_queue.engine.quantity import parse_quantity

#: Kueue's fixtures reserve quota for admitted workloads at ``now``.
NOW = 100.0

#: The priorities Kueue's scheduler tables use, as WorkloadPriorityClasses.
PRIORITY_VALUES = (-4, -2, -1, 0, 1, 2, 3, 4, 50, 99, 100, 101, 9001)


def priority_class(value: int) -> str:
    return f"prio-minus-{-value}" if value < 0 else f"prio-{value}"


PRIORITY_CLASSES = "".join(
    f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {{name: {priority_class(v)}}}
value: {v}
"""
    for v in PRIORITY_VALUES
)


def flavors(*names: str) -> str:
    return "".join(
        f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {{name: {name}}}
"""
        for name in names
    )


def local_queues(pairs: Mapping[str, str]) -> str:
    """LocalQueues ``{"ns.name": cluster_queue}``."""
    return "".join(
        f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {{name: {name}, namespace: {name.split(".")[0]}}}
spec: {{clusterQueue: {cq}}}
"""
        for name, cq in pairs.items()
    )


# -- case data ------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSet:
    """``count`` pods of ``requests`` (Kubernetes names and quantities); ``min_count``
    for partial admission (ours: first PodSet only)."""

    requests: Mapping[str, str]
    count: int = 1
    min_count: int | None = None


#: The flavors of one admitted PodSet: one flavor for all its resources, or per resource,
#: and optionally the admitted count (partial admission): ``"spot"``,
#: ``{"cpu": "on-demand", "example.com/gpu": "model-a"}``, ``("default", 25)``.
Flavors = str | Mapping[str, str] | tuple[str, int]


@dataclass(frozen=True)
class Running:
    """An admitted workload of Kueue's fixture, restored as it is there."""

    name: str
    cq: str
    pod_sets: tuple[PodSet, ...]
    flavors: tuple[Flavors, ...]
    priority: int | None = None
    queue: str = ""


@dataclass(frozen=True)
class Waiting:
    """A pending workload."""

    name: str
    queue: str
    pod_sets: tuple[PodSet, ...]
    priority: int | None = None
    created: float = 0.0


def running(
    name: str,
    cq: str,
    flavor: Flavors,
    priority: int | None = None,
    *,
    count: int = 1,
    queue: str = "",
    **requests: str,
) -> Running:
    """A one-PodSet admitted workload: ``running("eng-beta.low-1", "eng-beta",
    "on-demand", -1, cpu="30")``."""
    return Running(name, cq, (PodSet(_kube(requests), count),), (flavor,), priority, queue)


def waiting(
    name: str,
    queue: str,
    priority: int | None = None,
    *,
    created: float = 0.0,
    count: int = 1,
    min_count: int | None = None,
    **requests: str,
) -> Waiting:
    """A one-PodSet pending workload: ``waiting("sales.new", "sales.main", cpu="1")``."""
    return Waiting(name, queue, (PodSet(_kube(requests), count, min_count),), priority, created)


def _kube(requests: Mapping[str, str]) -> dict[str, str]:
    """Keyword arguments spell ``example.com/gpu`` as ``example_com_gpu``."""
    return {k.replace("example_com_", "example.com/"): v for k, v in requests.items()}


@dataclass(frozen=True)
class Case:
    """One entry of a Kueue scheduler table.

    ``admits``: who Kueue's cycle gave quota, with flavors per PodSet. ``preemptors``: who
    issued preemptions in it, with the flavors they preempted for (admitted in the same
    call here). ``preempts``: the victims. ``later``: admissions our later rounds add,
    each with its reason. ``mark``/``unreachable`` as in the module docstring.
    """

    name: str
    config: str
    running: tuple[Running, ...]
    waiting: tuple[Waiting, ...]
    admits: Mapping[str, tuple[Flavors, ...]]
    preemptors: Mapping[str, tuple[Flavors, ...]]
    preempts: frozenset[str]
    later: Mapping[str, tuple[tuple[Flavors, ...], str]] = field(default_factory=dict)
    mark: str | None = None
    unreachable: str | None = None
    #: Preemptions our later rounds add (Kueue's next cycle), each with its reason.
    later_preempts: Mapping[str, str] = field(default_factory=dict)


def expected_quota(c: Case) -> dict[str, tuple[tuple[tuple[str, str], ...], ...]]:
    """Who ends the call holding quota it got in it, and how (normalised)."""
    # ``later`` may name a victim that is admitted again: running or waiting.
    by_name: dict[str, Running | Waiting] = {w.name: w for w in (*c.running, *c.waiting)}
    out = {}
    for source in (c.admits, c.preemptors, {k: v for k, (v, _) in c.later.items()}):
        for name, fl in source.items():
            out[name] = _normalise(by_name[name].pod_sets, fl)
    return out


def _normalise(
    pod_sets: tuple[PodSet, ...], fl: tuple[Flavors, ...]
) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Per PodSet: sorted (resource, flavor) of its non-zero requests, and its count."""
    if len(fl) != len(pod_sets):
        raise ValueError(f"{len(fl)} flavor entries for {len(pod_sets)} PodSets")
    groups = []
    for ps, f in zip(pod_sets, fl, strict=True):
        count = ps.count
        if isinstance(f, tuple):
            f, count = f
        items = []
        for kube_name, amount in ps.requests.items():
            if parse_quantity(amount) <= 0:
                continue
            flavor = f if isinstance(f, str) else f[kube_name]
            items.append((_ray_name(kube_name), flavor))
        items.append(("#count", str(count)))
        groups.append(tuple(sorted(items)))
    return tuple(groups)


def _ray_name(kube_name: str) -> str:
    return RAY_RESOURCE_NAMES.get(kube_name, kube_name)


# -- running a case -------------------------------------------------------------------


def _bundle_groups(pod_sets: tuple[PodSet, ...]) -> tuple[BundleGroup, ...]:
    return tuple(
        BundleGroup(
            {
                _ray_name(name): parse_quantity(amount)
                for name, amount in ps.requests.items()
                # Our bundles carry no zero requests: a zero takes no quota anywhere.
                if parse_quantity(amount) > 0
            },
            ps.count,
        )
        for ps in pod_sets
    )


def _spec(
    name: str, queue: str, pod_sets: tuple[PodSet, ...], priority: int | None, created: float
) -> WorkloadSpec:
    return WorkloadSpec(
        id=WorkloadId(name),
        queue=queue,
        bundle_groups=_bundle_groups(pod_sets),
        created_at=created,
        priority_class=None if priority is None else priority_class(priority),
        min_count=pod_sets[0].min_count,
    )


def _restored(w: Running, queue: str, priority_value: int, at: float) -> WorkloadStatus:
    """``w`` as a persisted record holding quota on Kueue's flavors."""
    groups = []
    usage: dict[tuple[str, str], int] = {}
    normal = _normalise(w.pod_sets, w.flavors)
    for ps, group in zip(w.pod_sets, normal, strict=True):
        flavor_of = {r: f for r, f in group if r != "#count"}
        count = int(dict(group)["#count"])
        groups.append(GroupAdmission(flavor_of, count))
        for kube_name, amount in ps.requests.items():
            milli = parse_quantity(amount) * count
            if milli > 0:
                fr = (flavor_of[_ray_name(kube_name)], _ray_name(kube_name))
                usage[fr] = usage.get(fr, 0) + milli
    admission = Admission(w.cq, tuple(groups), usage)
    spec = _spec(w.name, queue, w.pod_sets, w.priority, 0.0)
    return WorkloadStatus(
        spec=spec,
        state=WorkloadState.ADMITTED,
        priority=priority_value,
        cluster_queue=w.cq,
        admission=admission,
        checks={},
        reason="Admitted",
        message="admitted by Kueue's fixture",
        requeue_count=0,
        requeue_at=None,
        placed=True,
        history=(
            Transition(
                at, WorkloadState.PENDING, WorkloadState.ADMITTED, "Admitted", "", admission
            ),
        ),
    )


@dataclass(frozen=True)
class Outcome:
    quota: dict[str, tuple[tuple[tuple[str, str], ...], ...]]
    preempted: frozenset[str]


def outcome_of(c: Case) -> Outcome:
    config = load_config(c.config)
    queue_of = {q.cluster_queue: name for name, q in sorted(config.queues.items())}
    statuses = []
    # Kueue admitted them all at ``now`` and breaks ties between equal victims by UID
    # (here, the name); ours break them by admission order, newest first. Spreading the
    # restored admissions a millisecond apart, the smallest name newest, makes the two
    # tie-breaks agree.
    newest_first = sorted(w.name for w in c.running)
    for w in c.running:
        # A workload Kueue admitted without naming its LocalQueue: any Queue of its CQ.
        queue = w.queue or queue_of[w.cq]
        pc = None if w.priority is None else priority_class(w.priority)
        at = NOW - 0.001 * newest_first.index(w.name)
        statuses.append(_restored(w, queue, config.priority_value(pc), at))
    clock = ManualClock(NOW)
    engine = Engine.restore(config, clock, statuses)
    for p in c.waiting:
        try:
            engine.submit(_spec(p.name, p.queue, p.pod_sets, p.priority, p.created))
        except WorkloadRejected:
            continue  # no flavor could ever hold it: it gets no quota, as in Kueue
    decisions = engine.schedule()
    gained = {d.workload for d in decisions if d.kind in (DecisionKind.ADMIT, DecisionKind.RESERVE)}
    quota = {}
    for name in sorted(gained):
        status = engine.workload(name)
        if status.admission is None or not status.state.holds_quota:
            continue
        quota[name] = tuple(
            tuple(sorted([*g.flavors.items(), ("#count", str(g.count))]))
            for g in status.admission.groups
        )
    preempted = frozenset(d.workload for d in decisions if d.kind is DecisionKind.PREEMPT)
    return Outcome(quota, preempted)


def check(c: Case) -> None:
    got = outcome_of(c)
    want = expected_quota(c)
    assert got.preempted == c.preempts | set(c.later_preempts), f"preempted {sorted(got.preempted)}"
    assert got.quota == want, f"got quota in the call: {got.quota}, expected {want}"


# -- the table as pytest parameters and as counts ------------------------------------


def test_id(name: str) -> str:
    """Kueue's case name as a test id: runs of anything but letters, digits and ``-``
    become one ``_``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_")


def params(cases: list[Case], out_of_scope: Mapping[str, str]) -> list[ParameterSet]:
    out: list[ParameterSet] = []
    for c in cases:
        marks: list[pytest.MarkDecorator] = []
        if c.unreachable is not None:
            marks.append(pytest.mark.skip(reason=f"unreachable: {c.unreachable}"))
        elif c.mark is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=c.mark))
        out.append(pytest.param(c, marks=marks, id=test_id(c.name)))
    for name, reason in out_of_scope.items():
        out.append(
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"out of scope: {reason}"), id=test_id(name)
            )
        )
    return out


def counts(cases: list[Case], out_of_scope: Mapping[str, str]) -> dict[str, int]:
    """Ported, agreeing, explained by a departure, differing, out of scope, unreachable."""
    live = [c for c in cases if c.unreachable is None]
    return {
        "ported": len(cases),
        "passing": sum(1 for c in live if c.mark is None),
        "departures": sum(1 for c in live if c.mark and c.mark.startswith("departure:")),
        "differs": sum(1 for c in live if c.mark and c.mark.startswith("differs:")),
        "out_of_scope": len(out_of_scope),
        "unreachable": len(cases) - len(live),
    }
