"""Kueue's hierarchical (classical) preemption table, replayed against our engine.

Source: ``TestHierarchicalPreemptions`` in Kueue's
``pkg/scheduler/preemption/preemption_hierarchical_test.go`` (kubernetes-sigs/kueue, read
at commit 054bf63476ae9203a912522cf9daea8960811ad1). All 15 cases are ported, in its
order, as data; the test ids are Kueue's case names. Fair sharing is off, as there.

A case runs as ``test_preemption_table``'s do (``victims_of``). Kueue expects each
evicted workload to carry an ``Evicted`` condition; here the victims are the workloads
the incoming one preempted. Kueue's ClusterQueues without quota (a resource group with
no resources, or none at all) are written with a nominal quota of 0, which holds the
same: nothing of their own. The admitted workloads are admitted in reverse table order,
as in ``test_fair_preemption_table`` (Kueue reserves them all at one instant).
"""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from tests.engine.kueue_parity.test_fair_preemption_table import TWO_FLAVORS, cpu
from tests.engine.kueue_parity.test_preemption_table import (
    FLAVORS,
    Case,
    Wl,
    _id,
    local_queues,
    priority_class,
    victims_of,
    wl,
)
from tests.engine.kueue_parity.yaml_docs import cluster_queue, cohort

pytestmark = pytest.mark.timeout(30)

KUEUE_FILE = (
    "kubernetes-sigs/kueue pkg/scheduler/preemption/preemption_hierarchical_test.go "
    "TestHierarchicalPreemptions"
)

PRIORITIES = (-10, -9, -6, -5, -4, -3, -2, -1, 0, 1, 2, 4, 8, 9, 10)
PRIORITY_CLASSES = "".join(
    f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {{name: {priority_class(v)}}}
value: {v}
"""
    for v in PRIORITIES
)

LP_ANY = "{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}"
BORROWING_THRESHOLD_0 = (
    "{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any, borrowWithinCohort: "
    "{policy: LowerPriority, maxPriorityThreshold: 0}}"
)
RECLAIM_LP_BORROWING_THRESHOLD_0 = (
    "{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority, "
    "borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 0}}"
)
#: Kueue's cohort ``r`` without quota, and ``c`` under it with 2 CPU: most cases' tree.
R_C2 = (cohort("r"), cohort("c", cpu("2"), parent="r"))


def config(*documents: str) -> str:
    names = [
        line.split("name: ")[1].rstrip("}")
        for document in documents
        if "kind: ClusterQueue" in document
        for line in document.splitlines()
        if line.startswith("metadata:")
    ]
    return FLAVORS + TWO_FLAVORS + "".join(documents) + local_queues(*names) + PRIORITY_CLASSES


def cq(name: str, parent: str, nominal: str = "0", preemption: str = LP_ANY) -> str:
    return cluster_queue(name, cpu(nominal), cohort=parent, preemption=preemption)


def case(
    name: str,
    admitted: list[Wl],
    incoming: Wl,
    victims: set[str],
    config: str,
    *,
    mark: str | None = None,
    unreachable: str | None = None,
) -> Case:
    return Case(
        name,
        config,
        tuple(reversed(admitted)),
        incoming,
        frozenset(victims),
        mark,
        unreachable,
    )


def incoming(cq_name: str, priority: int, amount: str, **more: str) -> Wl:
    return wl("in", cq_name, priority, cpu=amount, **more)


CPU_AND_MEMORY_0 = (("default", {"cpu": ("0",), "memory": ("0",)}),)

CASES: tuple[Case, ...] = (
    case(
        "preempt with hierarchical advantage",
        [wl("admitted2", "q_borrowing", 0, cpu="2")],
        incoming("q", 0, "2"),
        {"admitted2"},
        config(*R_C2, cq("q", "c"), cq("q_borrowing", "r")),
    ),
    case(
        "avoid queues within nominal quota",
        [wl("admitted1", "q_nominal", -10, cpu="2"), wl("admitted2", "q_borrowing", 0, cpu="2")],
        incoming("q", 0, "2"),
        {"admitted2"},
        config(*R_C2, cq("q_nominal", "r", "2"), cq("q", "c"), cq("q_borrowing", "r")),
    ),
    case(
        "preempt multiple with hierarchical advantage",
        [wl("admitted1", "q_borrowing", 1, cpu="1"), wl("admitted2", "q_borrowing", 2, cpu="1")],
        incoming("q", 0, "2"),
        {"admitted1", "admitted2"},
        config(*R_C2, cq("q", "c"), cq("q_borrowing", "r")),
    ),
    # Kueue's admitted_preemptible requests 1 CPU but its admission assigns 2, which
    # would put c (3 CPU) over its quota: no admission reaches that, so it holds its 1.
    case(
        "preempt in cohort and own CQ",
        [
            wl("admitted_not_preemptible", "q_same_cohort", 1, cpu="1"),
            wl("admitted_preemptible", "q_same_cohort", 0, cpu="1"),
            wl("admitted_own_queue", "q", -1, cpu="1"),
        ],
        incoming("q", 1, "2"),
        {"admitted_own_queue", "admitted_preemptible"},
        config(
            cohort("r"),
            cohort("c", cpu("3"), parent="r"),
            cq("q", "c", preemption=BORROWING_THRESHOLD_0),
            cq("q_same_cohort", "c"),
        ),
    ),
    case(
        "prefer to preempt hierarchical candidate",
        [
            wl("admitted_borrowing", "q_borrowing", 1, cpu="1"),
            wl("admitted_same_queue", "q", -2, cpu="1"),
        ],
        incoming("q", 0, "1"),
        {"admitted_borrowing"},
        config(*R_C2, cq("q", "c"), cq("q_borrowing", "r")),
    ),
    case(
        "forced to preempt priority candidate",
        [
            wl("admitted_nominal", "q_nominal", -10, cpu="2"),
            wl("admitted_same_cohort", "q_same_cohort", -1, cpu="2"),
        ],
        incoming("q", 0, "2"),
        {"admitted_same_cohort"},
        config(
            *R_C2,
            cq("q", "c", preemption=BORROWING_THRESHOLD_0),
            cq("q_nominal", "r", "2"),
            cq("q_same_cohort", "c"),
        ),
    ),
    case(
        "incoming workload fits in CQ nominal quota",
        [
            wl("admitted_borrowing", "q_borrowing", 10, cpu="3"),
            wl("admitted_same_cohort", "q_same_cohort", 10, cpu="3"),
        ],
        incoming("q", 0, "4"),
        {"admitted_borrowing", "admitted_same_cohort"},
        config(*R_C2, cq("q", "c", "4"), cq("q_borrowing", "r"), cq("q_same_cohort", "c")),
    ),
    case(
        "preempt hierarchical and priority candidates",
        [
            wl("admitted_borrowing", "q_borrowing", -1, cpu="2"),
            wl("admitted_same_cohort_preemptible", "q_same_cohort", -1, cpu="1"),
            wl("admitted_borrowing_not_preemptible", "q_borrowing", 1, cpu="2"),
        ],
        incoming("q", 0, "3"),
        {"admitted_borrowing", "admitted_same_cohort_preemptible"},
        config(
            cohort("r", cpu("1")),
            cohort("c", cpu("4"), parent="r"),
            cq("q", "c", preemption=RECLAIM_LP_BORROWING_THRESHOLD_0),
            cq("q_borrowing", "r"),
            cq("q_same_cohort", "c"),
        ),
    ),
    case(
        "preempt hierarchical candidates and inside CQ",
        [
            wl("admitted_borrowing", "q_borrowing", -1, cpu="2"),
            wl("admitted_same_queue_preemptible", "q", -1, cpu="1"),
            wl("admitted_borrowing_not_preemptible", "q_borrowing", 1, cpu="2"),
        ],
        incoming("q", 0, "3"),
        {"admitted_borrowing", "admitted_same_queue_preemptible"},
        config(
            cohort("r", cpu("1")),
            cohort("c", cpu("4"), parent="r"),
            cq("q", "c", preemption=RECLAIM_LP_BORROWING_THRESHOLD_0),
            cq("q_borrowing", "r"),
            cq("q_same_cohort", "c"),
        ),
    ),
    case(
        "reclaim nominal quota from lowest priority workload, excluding non-borrowing",
        [
            wl("admitted_borrowing_prio_8", "q_borrowing", 8, cpu="1"),
            wl("admitted_borrowing_prio_9", "q_borrowing", 9, cpu="1"),
            wl("admitted_borrowing_prio_10", "q_borrowing", 9, cpu="1"),
            wl("admitted_nominal", "q_nominal", -2, cpu="2"),
        ],
        incoming("q", 0, "1"),
        {"admitted_borrowing_prio_8"},
        config(
            cohort("r"),
            cohort("c", cpu("3"), parent="r"),
            cq("q", "c"),
            cq("q_borrowing", "r"),
            cq("q_nominal", "r", "2"),
        ),
    ),
    case(
        "infeasible preemption all available workloads in pruned subtrees",
        [
            wl("admitted_other_1", "q_other", -10, cpu="1"),
            wl("admitted_other_2", "q_other", -10, cpu="1"),
            wl("admitted_same_cohort", "q_same_cohort", 0, cpu="2"),
        ],
        incoming("q", 0, "2"),
        set(),
        config(
            *R_C2,
            cohort("c_other", cpu("2"), parent="r"),
            cq("q_other", "c_other"),
            cq("q", "c"),
            cq("q_same_cohort", "c"),
        ),
    ),
    case(
        "hiearchical preemption with multiple resources",
        [
            wl("admitted_borrowing", "q_borrowing", 0, cpu="3", memory="1Gi"),
            wl("admitted_same_cohort", "q_same_cohort", -2, cpu="1", memory="3Gi"),
        ],
        incoming("q", -2, "2", memory="1Gi"),
        {"admitted_borrowing"},
        config(
            cohort("r", cpu("3")),
            cohort("c", (("default", {"cpu": ("4",), "memory": ("4Gi",)}),), parent="r"),
            *(
                cluster_queue(name, CPU_AND_MEMORY_0, cohort=parent, preemption=LP_ANY)
                for name, parent in (("q", "c"), ("q_borrowing", "r"), ("q_same_cohort", "c"))
            ),
        ),
    ),
    case(
        "prefer to preempt evicted workloads",
        [
            wl("admitted_borrowing", "q_borrowing", -10, cpu="1"),
            wl("evicted_same_cohort", "q_same_cohort", -1, cpu="1"),
        ],
        incoming("q", 0, "1"),
        set(),
        config(
            *R_C2,
            cq("q", "c", preemption=BORROWING_THRESHOLD_0),
            cq("q_borrowing", "r"),
            cq("q_same_cohort", "c"),
        ),
        unreachable="Kueue's evicted_same_cohort is already being evicted (an Evicted "
        "condition) but still holds quota, and Kueue issues no new preemption while it "
        "goes; our evictions release quota at once, so that state does not exist here",
    ),
    case(
        "respect lending limits",
        [wl("admitted_borrowing", "q_borrowing", 0, cpu="4")],
        incoming("q", -2, "5"),
        {"admitted_borrowing"},
        config(
            *R_C2,
            cluster_queue(
                "q", (("default", {"cpu": ("3", "", "2")}),), cohort="c", preemption=LP_ANY
            ),
            cq("q_borrowing", "r"),
        ),
    ),
    # r over c11 and c12; c11 over c21, c22 and c23; c21 over c31 and c32. Every cohort
    # but r owns 4 CPU; q1 is in c12, q2 in c23, q3 in c22, q4 in c32, q5 in c31.
    case(
        "reclaim in complex hierarchy",
        [
            wl("admitted_borrowing_1", "q1", -6, cpu="4"),
            wl("admitted_borrowing_2", "q1", -5, cpu="4"),
            wl("admitted_borrowing_3", "q2", -9, cpu="4"),
            wl("admitted_borrowing_4", "q2", -10, cpu="4"),
            wl("admitted_borrowing_5", "q3", -4, cpu="4"),
            wl("admitted_borrowing_6", "q3", -3, cpu="3"),
            wl("admitted_borrowing_7", "q4", 4, cpu="2"),
            wl("admitted_borrowing_8", "q4", 2, cpu="3"),
        ],
        incoming("q5", -2, "7"),
        {"admitted_borrowing_1", "admitted_borrowing_4"},
        config(
            cohort("r"),
            cohort("c11", cpu("4"), parent="r"),
            cohort("c12", cpu("4"), parent="r"),
            cohort("c21", cpu("4"), parent="c11"),
            cohort("c22", cpu("4"), parent="c11"),
            cohort("c23", cpu("4"), parent="c11"),
            cohort("c31", cpu("4"), parent="c21"),
            cohort("c32", cpu("4"), parent="c21"),
            cq("q1", "c12"),
            cq("q2", "c23"),
            cq("q3", "c22"),
            cq("q4", "c32"),
            cq("q5", "c31"),
        ),
    ),
)


def _params() -> list[ParameterSet]:
    params: list[ParameterSet] = []
    for c in CASES:
        marks: list[pytest.MarkDecorator] = []
        if c.unreachable is not None:
            marks.append(pytest.mark.skip(reason=f"unreachable: {c.unreachable}"))
        elif c.mark is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=c.mark))
        params.append(pytest.param(c, marks=marks, id=_id(c.name)))
    return params


@pytest.mark.parametrize("c", _params())
def test_kueue_hierarchical_preemption_case(c: Case) -> None:
    assert victims_of(c) == set(c.victims)


def parity_counts() -> dict[str, int]:
    """How the port stands (as ``test_preemption_table.parity_counts``)."""
    reachable = [c for c in CASES if c.unreachable is None]

    def marked(prefix: str) -> int:
        return sum(1 for c in reachable if c.mark is not None and c.mark.startswith(prefix))

    return {
        "ported": len(CASES),
        "passing": sum(1 for c in reachable if c.mark is None),
        "departures": marked("departure:"),
        "differs": marked("differs:"),
        "out_of_scope": 0,
        "unreachable": len(CASES) - len(reachable),
    }
