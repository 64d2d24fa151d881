"""Kueue's ``TestScheduleForFairSharing`` table, replayed against our engine (``cycle.py``).

Source: ``TestScheduleForFairSharing`` in Kueue's ``pkg/scheduler/scheduler_fs_test.go``
(kubernetes-sigs/kueue, read at commit ff69552e79ad21652c36caa97038382e55625cf7,
v0.20.0-devel). All 22 cases are here, in Kueue's order: 21 ported as data, 1 listed in
``OUT_OF_SCOPE``. Test ids are Kueue's case names. The shared fixture is
``TestSchedule``'s (``test_schedule_table.BASE``, with the same adjustments); fair
sharing is on (a Kueue ``Configuration`` document) unless a case says otherwise.
"""

from __future__ import annotations

import pytest

from tests.engine.kueue_parity.cycle import (
    Case,
    Flavors,
    PodSet,
    Running,
    Waiting,
    check,
    counts,
    local_queues,
    params,
    running,
    waiting,
)
from tests.engine.kueue_parity.test_schedule_table import BASE, FREED_AT_ONCE, NEXT_ROUND
from tests.engine.kueue_parity.yaml_docs import cluster_queue, cohort

pytestmark = pytest.mark.timeout(30)

KUEUE_FILE = "kubernetes-sigs/kueue pkg/scheduler/scheduler_fs_test.go TestScheduleForFairSharing"

FAIR_SHARING = """---
apiVersion: config.kueue.x-k8s.io/v1beta1
kind: Configuration
fairSharing: {enable: true}
"""

WITHIN_LP = "{withinClusterQueue: LowerPriority}"
RECLAIM_ANY_WITHIN_LP = "{reclaimWithinCohort: Any, withinClusterQueue: LowerPriority}"


def case(
    name: str,
    *,
    extra: str = "",
    fair_sharing: bool = True,
    run: list[Running] | None = None,
    wait: list[Waiting] | None = None,
    admits: dict[str, tuple[Flavors, ...]] | None = None,
    preemptors: dict[str, tuple[Flavors, ...]] | None = None,
    preempts: set[str] | None = None,
    later: dict[str, tuple[tuple[Flavors, ...], str]] | None = None,
    later_preempts: dict[str, str] | None = None,
    mark: str | None = None,
    unreachable: str | None = None,
) -> Case:
    return Case(
        name,
        BASE + extra + (FAIR_SHARING if fair_sharing else ""),
        tuple(run or ()),
        tuple(wait or ()),
        admits or {},
        preemptors or {},
        frozenset(preempts or ()),
        later or {},
        mark,
        unreachable,
        later_preempts or {},
    )


def lqs(*names: str) -> str:
    """Queues ``eng-alpha.lq-<x>`` for ClusterQueues ``<x>``."""
    return local_queues({f"eng-alpha.lq-{n}": n for n in names})


def zero_cpu(name: str, parent: str, **extra: str | None) -> str:
    return cluster_queue(name, (("on-demand", {"cpu": ("0",)}),), cohort=parent, **extra)


TWO_LEVELS = (
    cohort("root")
    + zero_cpu("cq-c", "Cohort-B")
    + cluster_queue("cq-b", (("on-demand", {"cpu": ("5",)}),), cohort="Cohort-B")
    + cohort("Cohort-B", parent="root")
    + lqs("cq-a", "cq-b", "cq-c")
)
NOMINAL_FIRST_RUN = [running("eng-alpha.c0", "cq-c", "on-demand", cpu="10")]
NOMINAL_FIRST_WAIT = [
    waiting("eng-alpha.wl-a", "eng-alpha.lq-cq-a", cpu="5"),
    waiting("eng-alpha.wl-b", "eng-alpha.lq-cq-b", cpu="5"),
]


def cohort_a_pair(cpu: str, *, weight: str | None = None, preemption: str | None = None) -> str:
    """Cohort A with ``cpu`` of its own, over ClusterQueues b and c (no quota)."""
    return (
        cohort("A", (("on-demand", {"cpu": (cpu,)}),))
        + zero_cpu("b", "A", weight=weight, preemption=preemption)
        + zero_cpu("c", "A", weight=weight, preemption=preemption)
        + lqs("b", "c")
    )


def other_three(preemption: str, quotas: tuple[tuple[str, ...], ...], bank: str) -> str:
    """other-alpha, other-beta, other-gamma and a resource-bank in cohort other."""
    text = ""
    for name, resources in zip(("other-alpha", "other-beta", "other-gamma"), quotas, strict=True):
        quota = {r: (q,) for r, q in zip(resources[::2], resources[1::2], strict=True)}
        text += cluster_queue(name, (("default", quota),), cohort="other", preemption=preemption)
    return (
        text
        + cluster_queue("resource-bank", (("default", {"cpu": (bank,)}),), cohort="other")
        + local_queues(
            {
                "eng-alpha.other": "other-alpha",
                "eng-beta.other": "other-beta",
                "eng-gamma.other": "other-gamma",
            }
        )
    )


def local_capacity() -> str:
    """queue1 in child-cohort in root-cohort, two flavors, borrowing on both."""
    return (
        cohort("root-cohort", (("on-demand", {"gpu": ("2",)}), ("spot", {"gpu": ("0",)})))
        + cohort(
            "child-cohort",
            (("on-demand", {"gpu": ("5",)}), ("spot", {"gpu": ("7",)})),
            parent="root-cohort",
        )
        + cluster_queue(
            "queue1",
            (("on-demand", {"gpu": ("3",)}), ("spot", {"gpu": ("3",)})),
            cohort="child-cohort",
            preemption=RECLAIM_ANY_WITHIN_LP,
            fungibility="{whenCanPreempt: TryNextFlavor, whenCanBorrow: TryNextFlavor}",
        )
        + local_queues({"default.queue1": "queue1"})
    )


LOCAL_CAPACITY_RUN = [
    running("default.a1", "queue1", "on-demand", gpu="8"),
    running("default.a2", "queue1", "spot", gpu="3"),
]

OUT_OF_SCOPE: dict[str, str] = {
    "PreemptionOverBorrowing with fair sharing: preempt in first flavor instead of "
    "borrowing in second": "flavorFungibility.preference (our loader does not read it)",
}

CASES: list[Case] = [
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 1 of 22.
    case(
        "with fair sharing: schedule workload with lowest share first",
        extra=cluster_queue("eng-shared", (("on-demand", {"cpu": ("10", "0")}),), cohort="eng"),
        run=[
            running("eng-alpha.all_nominal", "eng-alpha", "on-demand", count=50, cpu="1"),
            running("eng-beta.borrowing", "eng-beta", "on-demand", count=55, cpu="1"),
        ],
        wait=[
            waiting("eng-beta.older_new", "eng-beta.main", created=40.0, cpu="1"),
            waiting("eng-alpha.new", "eng-alpha.main", created=100.0, count=5, cpu="1"),
        ],
        admits={"eng-alpha.new": ("on-demand",)},
        # Kueue's next cycle: on-demand is full (no victim for it), spot has room.
        later={"eng-beta.older_new": (("spot",), NEXT_ROUND)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 2 of 22.
    case(
        "with fair sharing: nominal-first ordering admits workload fitting within nominal "
        "despite higher CQ DRS",
        unreachable="Kueue's fixture covers cpu in two resource groups of one ClusterQueue "
        "(on-demand in one, spot in the other), which our loader, like Kueue's webhook, "
        "refuses; one group with both flavors assigns the borrowing workload differently",
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 3 of 22.
    case(
        "with fair sharing: hierarchical nominal-first prefers non-borrowing subtree",
        extra=TWO_LEVELS
        + cohort("Cohort-A", (("on-demand", {"cpu": ("10",)}),), parent="root")
        + zero_cpu("cq-a", "Cohort-A"),
        run=NOMINAL_FIRST_RUN,
        wait=NOMINAL_FIRST_WAIT,
        admits={"eng-alpha.wl-a": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 4 of 22.
    case(
        "with fair sharing: hierarchical nominal-first with deeper nesting",
        extra=TWO_LEVELS
        + cohort("Cohort-A", parent="root")
        + cohort("SUB-A", (("on-demand", {"cpu": ("10",)}),), parent="Cohort-A")
        + zero_cpu("cq-a", "SUB-A"),
        run=NOMINAL_FIRST_RUN,
        wait=NOMINAL_FIRST_WAIT,
        admits={"eng-alpha.wl-a": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 5 of 22.
    case(
        "with fair sharing: hierarchical nominal-first with mixed CQ and cohort quotas",
        extra=cohort("root")
        + cohort("Cohort-A", (("on-demand", {"cpu": ("10",)}),), parent="root")
        + cohort("Cohort-B", (("on-demand", {"cpu": ("10",)}),), parent="root")
        + cluster_queue("cq-a1", (("on-demand", {"cpu": ("5",)}),), cohort="Cohort-A")
        + cluster_queue("cq-a2", (("on-demand", {"cpu": ("3",)}),), cohort="Cohort-A")
        + cluster_queue("cq-b", (("on-demand", {"cpu": ("5",)}),), cohort="Cohort-B")
        + cluster_queue("cq-c", (("on-demand", {"cpu": ("3",)}),), cohort="Cohort-B")
        + lqs("cq-a1", "cq-a2", "cq-b", "cq-c"),
        run=[
            running("eng-alpha.a2-admitted", "cq-a2", "on-demand", cpu="6"),
            running("eng-alpha.c-admitted", "cq-c", "on-demand", cpu="20"),
        ],
        wait=[
            waiting("eng-alpha.wl-a1", "eng-alpha.lq-cq-a1", cpu="7"),
            waiting("eng-alpha.wl-b", "eng-alpha.lq-cq-b", cpu="4"),
        ],
        admits={"eng-alpha.wl-a1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 6 of 22.
    case(
        "with fair sharing: hierarchical nominal-first per-flavor ignores cross-flavor borrowing",
        extra=cohort("root")
        + cohort("Cohort-A", (("on-demand", {"cpu": ("10",)}),), parent="root")
        + cohort("Cohort-B", (("spot", {"cpu": ("10",)}),), parent="root")
        + cluster_queue(
            "cq-a", (("on-demand", {"cpu": ("0",)}), ("spot", {"cpu": ("0",)})), cohort="Cohort-A"
        )
        + cluster_queue(
            "cq-b", (("on-demand", {"cpu": ("5",)}), ("spot", {"cpu": ("0",)})), cohort="Cohort-B"
        )
        + lqs("cq-a", "cq-b"),
        run=[
            running("eng-alpha.spot-admitted", "cq-a", "spot", cpu="5"),
            running("eng-alpha.od-admitted", "cq-b", "on-demand", cpu="8"),
        ],
        wait=[
            waiting("eng-alpha.wl-a", "eng-alpha.lq-cq-a", cpu="4"),
            waiting("eng-alpha.wl-b", "eng-alpha.lq-cq-b", cpu="4"),
        ],
        admits={"eng-alpha.wl-a": ("on-demand",)},
        # Kueue's next cycle: on-demand is full and cq-b has nobody to preempt; spot fits.
        later={"eng-alpha.wl-b": (("spot",), NEXT_ROUND)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 7 of 22.
    case(
        "hierarchical fair sharing schedule workload which wins tournament",
        extra=cohort("A", (("on-demand", {"cpu": ("200",)}),))
        + cohort("B", parent="A")
        + cohort("C", parent="A")
        + zero_cpu("d", "B")
        + zero_cpu("e", "B")
        + zero_cpu("f", "C")
        + zero_cpu("g", "C")
        + lqs("d", "e", "f", "g"),
        run=[
            running("eng-alpha.d0", "d", "on-demand", cpu="10"),
            running("eng-alpha.e0", "e", "on-demand", cpu="20"),
            running("eng-alpha.g0", "g", "on-demand", cpu="100"),
        ],
        wait=[
            waiting("eng-alpha.d1", "eng-alpha.lq-d", cpu="70"),
            waiting("eng-alpha.e1", "eng-alpha.lq-e", cpu="61"),
            waiting("eng-alpha.f1", "eng-alpha.lq-f", cpu="1"),
            waiting("eng-alpha.g1", "eng-alpha.lq-g", cpu="1"),
        ],
        admits={"eng-alpha.d1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 8 of 22.
    case(
        "fair sharing schedule workload with lowest drf after admission",
        extra=cohort_a_pair("100"),
        run=[running("eng-alpha.b0", "b", "on-demand", cpu="10")],
        wait=[
            waiting("eng-alpha.b1", "eng-alpha.lq-b", cpu="50"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", cpu="75"),
        ],
        admits={"eng-alpha.b1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 9 of 22.
    case(
        "fair sharing two queues with weight 0 schedules workload which borrows less",
        extra=cohort_a_pair(
            "8", weight="0", preemption="{reclaimWithinCohort: Any, withinClusterQueue: Never}"
        ),
        run=[running("eng-alpha.b0", "b", "on-demand", cpu="4")],
        wait=[
            waiting("eng-alpha.b1", "eng-alpha.lq-b", 9001, cpu="4"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", 0, cpu="4"),
        ],
        admits={"eng-alpha.c1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 10 of 22.
    case(
        "fair sharing two queues with high weight schedules workload which borrows less",
        extra=cohort_a_pair(
            "8",
            weight="123456789",
            preemption="{reclaimWithinCohort: Any, withinClusterQueue: Never}",
        ),
        run=[running("eng-alpha.b0", "b", "on-demand", cpu="4")],
        wait=[
            waiting("eng-alpha.b1", "eng-alpha.lq-b", 9001, cpu="4"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", 0, cpu="4"),
        ],
        admits={"eng-alpha.c1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 11 of 22.
    case(
        "fair sharing schedule singleton cqs and cq without cohort",
        extra=cohort("A", (("on-demand", {"cpu": ("10",)}),))
        + cohort("B")
        + zero_cpu("a", "A")
        + cluster_queue("b", (("on-demand", {"cpu": ("10",)}),), cohort="B")
        + cluster_queue("c", (("on-demand", {"cpu": ("10",)}),))
        + lqs("a", "b", "c"),
        wait=[
            waiting("eng-alpha.a1", "eng-alpha.lq-a", cpu="10"),
            waiting("eng-alpha.b1", "eng-alpha.lq-b", cpu="10"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", cpu="10"),
        ],
        admits={
            "eng-alpha.a1": ("on-demand",),
            "eng-alpha.b1": ("on-demand",),
            "eng-alpha.c1": ("on-demand",),
        },
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 12 of 22.
    case(
        "fair sharing schedule highest priority first",
        extra=cohort_a_pair("10") + cohort("B"),
        wait=[
            waiting("eng-alpha.b1", "eng-alpha.lq-b", 99, cpu="10"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", 101, cpu="10"),
        ],
        admits={"eng-alpha.c1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 13 of 22.
    case(
        "fair sharing schedule earliest timestamp first",
        extra=cohort_a_pair("10") + cohort("B"),
        wait=[
            waiting("eng-alpha.b1", "eng-alpha.lq-b", 101, created=101.0, cpu="10"),
            waiting("eng-alpha.c1", "eng-alpha.lq-c", 101, created=100.0, cpu="10"),
        ],
        admits={"eng-alpha.c1": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 14 of 22.
    case(
        "with fair sharing: preempt workload from CQ with the highest share",
        extra=cluster_queue("eng-gamma", (("on-demand", {"cpu": ("50", "0")}),), cohort="eng")
        + local_queues({"eng-gamma.main": "eng-gamma"}),
        run=[
            running("eng-alpha.all_spot", "eng-alpha", "spot", cpu="100"),
            *(
                running(f"eng-alpha.alpha{i}", "eng-alpha", "on-demand", cpu="20")
                for i in (1, 2, 3, 4)
            ),
            running("eng-gamma.gamma1", "eng-gamma", "on-demand", cpu="10"),
            *(
                running(f"eng-gamma.gamma{i}", "eng-gamma", "on-demand", cpu="20")
                for i in (2, 3, 4)
            ),
        ],
        wait=[waiting("eng-beta.preemptor", "eng-beta.main", cpu="30")],
        preemptors={"eng-beta.preemptor": ("on-demand",)},
        preempts={"eng-alpha.alpha1", "eng-gamma.gamma1"},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 15 of 22.
    case(
        "multiple preemptions within cq when fair sharing",
        unreachable="Kueue's fixture leaves reclaimWithinCohort unset (not defaulted to "
        "Never): its flavor assigner then lets these ClusterQueues preempt while borrowing "
        "under fair sharing, while its victim search takes no other queue's workloads; once "
        "defaulted to Never (as Kueue's webhook and our loader do) the preemptors, larger "
        "than their nominal quota in a full cohort, may not preempt at all",
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 16 of 22.
    # c1 asks for gamma-resource too, but Kueue's fixture admits it with CPU only: it is
    # restored with the quota it holds. Kueue's RecomputeAssignmentUponPreemptionTargets
    # Overlap gate is off here; we never recompute for that reason either.
    case(
        "multiple preemptions skip overlapping preemption targets",
        extra=other_three(
            RECLAIM_ANY_WITHIN_LP,
            (
                ("cpu", "0", "alpha-resource", "1"),
                ("cpu", "0", "beta-resource", "1"),
                ("cpu", "0", "gamma-resource", "1"),
            ),
            "9",
        ),
        run=[
            Running(
                "eng-alpha.a1", "other-alpha", (PodSet({"alpha-resource": "1"}),), ("default",), 0
            ),
            Running(
                "eng-beta.b1", "other-beta", (PodSet({"beta-resource": "1"}),), ("default",), 0
            ),
            Running("eng-gamma.c1", "other-gamma", (PodSet({"cpu": "9"}),), ("default",), 0),
        ],
        wait=[
            Waiting(
                "eng-alpha.preemptor",
                "eng-alpha.other",
                (PodSet({"cpu": "3", "alpha-resource": "1"}),),
                100,
            ),
            Waiting(
                "eng-beta.pretending-preemptor",
                "eng-beta.other",
                (PodSet({"cpu": "3", "beta-resource": "1"}),),
                99,
            ),
        ],
        preemptors={"eng-alpha.preemptor": ("default",)},
        preempts={"eng-alpha.a1", "eng-gamma.c1"},
        # Kueue's next cycle: the CPU c1 freed has room for it; beta-resource is b1's.
        later={"eng-beta.pretending-preemptor": (("default",), NEXT_ROUND)},
        later_preempts={"eng-beta.b1": NEXT_ROUND},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 17 of 22.
    case(
        "not enough resources with fair sharing enabled",
        wait=[waiting("sales.new", "sales.main", cpu="100")],
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 18 of 22.
    case(
        "with fair sharing: prefer reclamation over cq priority based preemption; with "
        "preemption while borrowing",
        extra=cluster_queue(
            "other-alpha",
            (("on-demand", {"gpu": ("7",)}), ("spot", {"gpu": ("7",)})),
            cohort="other",
            preemption="{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}",
        )
        + cluster_queue(
            "other-beta",
            (("on-demand", {"gpu": ("3",)}), ("spot", {"gpu": ("3",)})),
            cohort="other",
        )
        + local_queues({"eng-alpha.other": "other-alpha", "eng-beta.other": "other-beta"}),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", 50, gpu="5"),
            running("eng-beta.b1", "other-beta", "spot", 50, gpu="5"),
        ],
        wait=[waiting("eng-alpha.preemptor", "eng-alpha.other", 100, gpu="8")],
        preemptors={"eng-alpha.preemptor": ("spot",)},
        preempts={"eng-beta.b1"},
        # Requeued, b1 borrows 2 of the GPUs other-alpha has left on on-demand.
        later={"eng-beta.b1": (("on-demand",), FREED_AT_ONCE)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 19 of 22.
    case(
        "prefer flavor with most local capacity",
        extra=local_capacity(),
        run=LOCAL_CAPACITY_RUN,
        wait=[waiting("default.a3", "default.queue1", gpu="1")],
        admits={"default.a3": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 20 of 22.
    case(
        "prefer flavor with most local capacity (FS=false)",
        extra=local_capacity(),
        fair_sharing=False,
        run=LOCAL_CAPACITY_RUN,
        wait=[waiting("default.a3", "default.queue1", gpu="1")],
        admits={"default.a3": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_fs_test.go, TestScheduleForFairSharing, case 21 of 22.
    case(
        "fair sharing: in-CQ preemption for CQ without cohort; repro for nil pointer panic",
        extra=cluster_queue("no-cohort-cq", (("default", {"cpu": ("4",)}),), preemption=WITHIN_LP)
        + local_queues({"default.no-cohort-queue": "no-cohort-cq"}),
        run=[running("default.nc-low", "no-cohort-cq", "default", -1, cpu="4")],
        wait=[waiting("default.nc-high", "default.no-cohort-queue", 100, cpu="4")],
        preemptors={"default.nc-high": ("default",)},
        preempts={"default.nc-low"},
    ),
]


@pytest.mark.parametrize("c", params(CASES, OUT_OF_SCOPE))
def test_kueue_fair_sharing_schedule_case(c: Case) -> None:
    check(c)


def parity_counts() -> dict[str, int]:
    return counts(CASES, OUT_OF_SCOPE)
