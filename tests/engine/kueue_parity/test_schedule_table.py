"""Kueue's ``TestSchedule`` table, replayed against our engine (see ``cycle.py``).

Source: ``TestSchedule`` in Kueue's ``pkg/scheduler/scheduler_test.go``
(kubernetes-sigs/kueue, read at commit ff69552e79ad21652c36caa97038382e55625cf7,
v0.20.0-devel). All 65 cases are here, in Kueue's order: 48 ported as data, 17 listed
in ``OUT_OF_SCOPE`` with the reason. Test ids are Kueue's case names.

Fixture differences that change no decision: Kueue's ClusterQueues ``sales`` and
``other-alpha``/``preempt-attempts-cq`` have a ``borrowingLimit`` without a cohort,
which our loader refuses as meaningless, so it is left out; the two tainted flavors and
the ClusterQueue naming a missing flavor are left out of the shared fixture (their cases
are out of scope); ``namespaceSelector`` is left out (Ray has no namespaces). Admission
checks that Kueue's fixture names on a workload alone (not on its ClusterQueue) are not
modelled: those cases are compared on quota, which Kueue reserves either way.
"""

from __future__ import annotations

import pytest

from tests.engine.kueue_parity.cycle import (
    PRIORITY_CLASSES,
    Case,
    Flavors,
    PodSet,
    Running,
    Waiting,
    check,
    counts,
    flavors,
    local_queues,
    params,
    running,
    waiting,
)
from tests.engine.kueue_parity.yaml_docs import cluster_queue, cohort

pytestmark = pytest.mark.timeout(30)

KUEUE_FILE = "kubernetes-sigs/kueue pkg/scheduler/scheduler_test.go TestSchedule"

BASE = (
    flavors("default", "on-demand", "spot", "model-a")
    + cluster_queue("sales", (("default", {"cpu": ("50",)}),), strict_fifo=True)
    + cluster_queue(
        "eng-alpha",
        (("on-demand", {"cpu": ("50", "50")}), ("spot", {"cpu": ("100", "0")})),
        cohort="eng",
        strict_fifo=True,
    )
    + cluster_queue(
        "eng-beta",
        (("on-demand", {"cpu": ("50", "10")}), ("spot", {"cpu": ("0", "100")})),
        (("model-a", {"example.com/gpu": ("20", "0")}),),
        cohort="eng",
        strict_fifo=True,
        preemption="{reclaimWithinCohort: Any, withinClusterQueue: LowerPriority}",
    )
    + cluster_queue("lend-a", (("default", {"cpu": ("3", "", "2")}),), cohort="lend")
    + cluster_queue("lend-b", (("default", {"cpu": ("2", "", "2")}),), cohort="lend")
    + local_queues(
        {
            "sales.main": "sales",
            "eng-alpha.main": "eng-alpha",
            "eng-beta.main": "eng-beta",
            "lend.lend-a-queue": "lend-a",
            "lend.lend-b-queue": "lend-b",
        }
    )
    + PRIORITY_CLASSES
)

WITHIN_LP = "{withinClusterQueue: LowerPriority}"
RECLAIM_ANY_WITHIN_LP = "{reclaimWithinCohort: Any, withinClusterQueue: LowerPriority}"
BOTH_LP = "{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}"

DEPARTURE_OWN_QUEUE_BORROWING = (
    "departure: within-ClusterQueue preemption never makes the queue borrow more than it "
    "already does (docs/design.md): "
)

#: Consequence of our first departure: quota freed by a preemption is free at once, so
#: a head the same round reaches after the preemptor may take what remains.
FREED_AT_ONCE = "preemption takes effect in the same call: the victims' quota is free at once"
#: Consequence of the second: a later round does what Kueue's next cycle would.
NEXT_ROUND = "rounds within one schedule() call: Kueue's next cycle does this"


def case(
    name: str,
    *,
    extra: str = "",
    run: list[Running] | None = None,
    wait: list[Waiting] | None = None,
    admits: dict[str, tuple[Flavors, ...]] | None = None,
    preemptors: dict[str, tuple[Flavors, ...]] | None = None,
    preempts: set[str] | None = None,
    later: dict[str, tuple[tuple[Flavors, ...], str]] | None = None,
    mark: str | None = None,
    unreachable: str | None = None,
) -> Case:
    return Case(
        name,
        BASE + extra,
        tuple(run or ()),
        tuple(wait or ()),
        admits or {},
        preemptors or {},
        frozenset(preempts or ()),
        later or {},
        mark,
        unreachable,
    )


def other_cohort(
    alpha: str,
    beta: str,
    *,
    alpha_quota: str,
    beta_quota: str,
    flavor: str = "on-demand",
    resource: str = "cpu",
) -> str:
    """The pair of ClusterQueues many cases add: other-alpha and other-beta in cohort
    ``other``, with Queues ``eng-alpha.other`` and ``eng-beta.other``."""
    return (
        cluster_queue(
            "other-alpha",
            ((flavor, {resource: (alpha_quota,)}),),
            cohort="other",
            preemption=alpha or None,
        )
        + cluster_queue(
            "other-beta",
            ((flavor, {resource: (beta_quota,)}),),
            cohort="other",
            preemption=beta or None,
        )
        + local_queues({"eng-alpha.other": "other-alpha", "eng-beta.other": "other-beta"})
    )


def two_flavor_gpu_cohort(beta_preemption: str | None) -> str:
    """other-alpha (on-demand 10, spot 10 GPUs) and other-beta (none) in cohort other."""
    return (
        cluster_queue(
            "other-alpha",
            (("on-demand", {"gpu": ("10",)}), ("spot", {"gpu": ("10",)})),
            cohort="other",
            preemption=BOTH_LP,
        )
        + cluster_queue(
            "other-beta",
            (("on-demand", {"gpu": ("0",)}), ("spot", {"gpu": ("0",)})),
            cohort="other",
            preemption=beta_preemption,
        )
        + local_queues({"eng-alpha.other": "other-alpha", "eng-beta.other": "other-beta"})
    )


R_QUOTA = (("default", {"r1": ("10", "10"), "r2": ("10", "10")}),)
THREE_CQS = "".join(
    cluster_queue(f"cq{i}", R_QUOTA, cohort="co", preemption=RECLAIM_ANY_WITHIN_LP)
    for i in (1, 2, 3)
) + local_queues({"sales.lq1": "cq1", "sales.lq2": "cq2", "sales.lq3": "cq3"})


def lender_cohort(reclaim: str) -> str:
    """ClusterQueueA (2 GPUs, reclaimWithinCohort ``reclaim``) lends to ClusterQueueB (0)."""
    return (
        cluster_queue(
            "ClusterQueueA",
            (("on-demand", {"gpu": ("2",)}),),
            cohort="root",
            preemption=f"{{reclaimWithinCohort: {reclaim}}}",
        )
        + cluster_queue("ClusterQueueB", (("on-demand", {"gpu": ("0",)}),), cohort="root")
        + local_queues({"eng-alpha.lq": "ClusterQueueA", "eng-beta.lq": "ClusterQueueB"})
    )


LENDER_RUN = [running("eng-alpha.a1-admitted", "ClusterQueueA", "on-demand", gpu="1")]
LENDER_WAIT = [
    waiting("eng-alpha.a2-pending", "eng-alpha.lq", gpu="2"),
    waiting("eng-beta.b1-pending", "eng-beta.lq", created=100.0, gpu="1"),
]


def hierarchical_lending(lending: str) -> str:
    """ROOT ⊃ CHILD ⊃ {cq-lender (10, lendingLimit ``lending``), cq-borrower (5,
    borrowingLimit 10)}."""
    return (
        cohort("root")
        + cohort("child", parent="root")
        + cluster_queue("cq-lender", (("on-demand", {"cpu": ("10", "", lending)}),), cohort="child")
        + cluster_queue("cq-borrower", (("on-demand", {"cpu": ("5", "10")}),), cohort="child")
        + local_queues({"eng-alpha.lq-lender": "cq-lender", "eng-alpha.lq-borrower": "cq-borrower"})
    )


OUT_OF_SCOPE: dict[str, str] = {
    "skip workload with missing or deleted ClusterQueue (NoFit)": (
        "our config refuses a Queue whose ClusterQueue does not exist, and submit refuses a "
        "workload for an unknown Queue"
    ),
    "flavors with mixed misconfiguration and insufficient quota": "taints on flavors",
    "flavors with mixed taint mismatch and exceeding limits": "taints on flavors",
    "flavors are structurally incompatible": "taints on flavors",
    "error during admission": "an API write that fails: the engine writes to no API",
    "failed to match clusterQueue selector": "namespaceSelector (Ray has no namespaces)",
    "workload should not fit in nonexistent clusterQueue": (
        "our config refuses a Queue whose ClusterQueue does not exist"
    ),
    "workload should not fit in clusterQueue with nonexistent flavor": (
        "our config refuses a ClusterQueue naming a flavor that does not exist"
    ),
    "container does not satisfy limitRange constraints": "Kubernetes LimitRanges",
    "container resource requests exceed limits": "container limits (Ray has requests only)",
    "workload-slice fits in single clusterQueue": "elastic jobs via workload slices",
    "PreemptionOverBorrowing preference: preempt in first flavor instead of borrowing in "
    "second": "flavorFungibility.preference (our loader does not read it)",
    "PreemptionOverBorrowing preference: select fitting second flavor over first flavor "
    "with no preemption candidates": "flavorFungibility.preference (our loader does not read it)",
    "BorrowingOverPreemption preference: borrow in second flavor instead of preempting in "
    "first": "flavorFungibility.preference (our loader does not read it)",
    "block preemptions and signal `BlockedOnPreemptionGates` when a preemption gate is "
    "present": "preemption gates (MultiKueue orchestrated preemption)",
    "do not signal `BlockedOnPreemptionGates` when a preemption gate is present, but the "
    "workload fits without preemption": "preemption gates (MultiKueue orchestrated preemption)",
    "do not signal `BlockedOnPreemptionGates` when a preemption gate is present, but the "
    "workload had nothing to preempt": "preemption gates (MultiKueue orchestrated preemption)",
}

CASES: list[Case] = [
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 1 of 65.
    case(
        "use second flavor when the first has no preemption candidates; WhenCanPreempt: "
        "MayStopSearch",
        extra=cluster_queue(
            "other-alpha",
            (("on-demand", {"cpu": ("50",)}), ("spot", {"cpu": ("100",)})),
            preemption=WITHIN_LP,
            fungibility="{whenCanPreempt: MayStopSearch}",
        )
        + local_queues({"eng-alpha.other": "other-alpha"}),
        run=[running("eng-alpha.admitted", "other-alpha", "on-demand", cpu="50")],
        wait=[waiting("eng-alpha.new", "eng-alpha.other", cpu="20")],
        admits={"eng-alpha.new": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 2 of 65.
    case(
        "workload fits in single clusterQueue, with check state ready",
        wait=[waiting("sales.foo", "sales.main", count=10, cpu="1")],
        admits={"sales.foo": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 7 of 65 (3-6: out of scope).
    case(
        "workload fits in single clusterQueue, with check state pending",
        wait=[waiting("sales.foo", "sales.main", count=10, cpu="1")],
        admits={"sales.foo": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 9 of 65 (8: out of scope).
    case(
        "single clusterQueue full",
        run=[running("sales.assigned", "sales", "default", count=40, cpu="1")],
        wait=[waiting("sales.new", "sales.main", count=11, cpu="1")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 11 of 65 (10: out of scope).
    case(
        "admit in different cohorts",
        wait=[
            waiting("sales.new", "sales.main", cpu="1"),
            waiting("eng-alpha.new", "eng-alpha.main", count=51, cpu="1"),
        ],
        admits={"sales.new": ("default",), "eng-alpha.new": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 12 of 65.
    case(
        "admit in same cohort with no borrowing",
        wait=[
            waiting("eng-alpha.new", "eng-alpha.main", count=40, cpu="1"),
            waiting("eng-beta.new", "eng-beta.main", count=40, cpu="1"),
        ],
        admits={"eng-alpha.new": ("on-demand",), "eng-beta.new": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 13 of 65.
    case(
        "assign multiple resources and flavors",
        wait=[
            Waiting(
                "eng-beta.new",
                "eng-beta.main",
                (
                    PodSet({"cpu": "6", "example.com/gpu": "1"}, 10),
                    PodSet({"cpu": "1"}, 40),
                ),
            )
        ],
        admits={"eng-beta.new": ({"cpu": "on-demand", "example.com/gpu": "model-a"}, "spot")},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 14 of 65.
    case(
        "cannot borrow if cohort was assigned and would result in overadmission",
        wait=[
            waiting("eng-alpha.new", "eng-alpha.main", count=45, cpu="1"),
            waiting("eng-beta.new", "eng-beta.main", count=56, cpu="1"),
        ],
        admits={"eng-alpha.new": ("on-demand",)},
        # Kueue's next cycle: on-demand needs preemption with no victims, spot fits.
        later={"eng-beta.new": (("spot",), NEXT_ROUND)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 15 of 65.
    case(
        "can borrow if cohort was assigned and will not result in overadmission",
        wait=[
            waiting("eng-alpha.new", "eng-alpha.main", count=45, cpu="1"),
            waiting("eng-beta.new", "eng-beta.main", count=55, cpu="1"),
        ],
        admits={"eng-alpha.new": ("on-demand",), "eng-beta.new": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 16 of 65.
    case(
        "can borrow if needs reclaim from cohort in different flavor",
        run=[
            running("eng-beta.user-on-demand", "eng-beta", "on-demand", cpu="50"),
            running("eng-beta.user-spot", "eng-beta", "spot", cpu="1"),
        ],
        wait=[
            waiting("eng-alpha.can-reclaim", "eng-alpha.main", cpu="100"),
            waiting("eng-beta.needs-to-borrow", "eng-beta.main", cpu="1"),
        ],
        admits={"eng-beta.needs-to-borrow": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 17 of 65.
    case(
        "workload exceeds lending limit when borrow in cohort",
        run=[running("lend.a", "lend-b", "default", cpu="2")],
        wait=[waiting("lend.b", "lend.lend-b-queue", cpu="3")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 18 of 65.
    case(
        "hierarchical cohort respects lending limit when borrowing",
        extra=hierarchical_lending("3"),
        run=[running("eng-alpha.wl-existing", "cq-borrower", "on-demand", cpu="5")],
        wait=[waiting("eng-alpha.wl-pending", "eng-alpha.lq-borrower", cpu="4")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 19 of 65.
    case(
        "hierarchical cohort allows borrowing up to lending limit",
        extra=hierarchical_lending("5"),
        run=[running("eng-alpha.wl-existing", "cq-borrower", "on-demand", cpu="5")],
        wait=[waiting("eng-alpha.wl-borrowing", "eng-alpha.lq-borrower", cpu="5")],
        admits={"eng-alpha.wl-borrowing": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 20 of 65.
    case(
        "preempt workloads in ClusterQueue and cohort",
        run=[
            running("eng-alpha.use-all-spot", "eng-alpha", "spot", cpu="100"),
            running("eng-beta.low-1", "eng-beta", "on-demand", -1, cpu="30"),
            running("eng-beta.low-2", "eng-beta", "on-demand", -2, cpu="10"),
            running("eng-alpha.borrower", "eng-alpha", "on-demand", cpu="60"),
        ],
        wait=[waiting("eng-beta.preemptor", "eng-beta.main", cpu="20")],
        preemptors={"eng-beta.preemptor": ("on-demand",)},
        preempts={"eng-alpha.borrower", "eng-beta.low-2"},
        # eng-beta then runs 50 on-demand of its 50 + 10: low-2 (10) fits again.
        later={"eng-beta.low-2": (("on-demand",), FREED_AT_ONCE)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 21 of 65.
    case(
        "multiple CQs need preemption",
        extra=cluster_queue("other-alpha", (("on-demand", {"cpu": ("50", "50")}),), cohort="other")
        + cluster_queue(
            "other-beta",
            (("on-demand", {"cpu": ("50", "10")}),),
            cohort="other",
            preemption=RECLAIM_ANY_WITHIN_LP,
        )
        + local_queues({"eng-alpha.other": "other-alpha", "eng-beta.other": "other-beta"}),
        run=[running("eng-alpha.use-all", "other-alpha", "on-demand", cpu="100")],
        wait=[
            waiting("eng-beta.preemptor", "eng-beta.other", -1, cpu="1"),
            waiting("eng-alpha.pending", "eng-alpha.other", 1, cpu="1"),
        ],
        preemptors={"eng-beta.preemptor": ("on-demand",)},
        preempts={"eng-alpha.use-all"},
        later={"eng-alpha.pending": (("on-demand",), FREED_AT_ONCE)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 22 of 65.
    case(
        "cannot borrow resource not listed in clusterQueue",
        wait=[waiting("eng-alpha.new", "eng-alpha.main", example_com_gpu="1")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 23 of 65.
    case(
        "not enough resources to borrow, fallback to next flavor; WhenCanPreempt: TryNextFlavor",
        run=[running("eng-beta.existing", "eng-beta", "on-demand", count=45, cpu="1")],
        wait=[waiting("eng-alpha.new", "eng-alpha.main", count=60, cpu="1")],
        admits={"eng-alpha.new": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 26 of 65 (24, 25: out of
    # scope).
    case(
        "no overadmission while borrowing",
        extra=cluster_queue(
            "eng-gamma",
            (("on-demand", {"cpu": ("50", "10")}), ("spot", {"cpu": ("0", "100")})),
            cohort="eng",
            preemption=RECLAIM_ANY_WITHIN_LP,
        )
        + local_queues({"eng-gamma.main": "eng-gamma"}),
        run=[
            Running(
                "eng-gamma.existing",
                "eng-gamma",
                (PodSet({"cpu": "1"}, 51), PodSet({"cpu": "1"}, 100)),
                ("on-demand", "spot"),
            )
        ],
        wait=[
            waiting("eng-beta.new", "eng-beta.main", created=98.0, count=50, cpu="1"),
            waiting("eng-alpha.new-alpha", "eng-alpha.main", created=99.0, cpu="1"),
            waiting("eng-gamma.new-gamma", "eng-gamma.main", created=100.0, count=50, cpu="1"),
        ],
        admits={"eng-alpha.new-alpha": ("on-demand",), "eng-beta.new": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 27 of 65.
    case(
        "partial admission single variable pod set",
        wait=[waiting("sales.new", "sales.main", count=50, min_count=20, cpu="2")],
        admits={"sales.new": (("default", 25),)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 28 of 65.
    case(
        "partial admission single variable pod set, preempt first",
        run=[running("eng-beta.old", "eng-beta", "model-a", -4, count=10, example_com_gpu="1")],
        wait=[
            waiting("eng-beta.new", "eng-beta.main", 4, count=20, min_count=10, example_com_gpu="1")
        ],
        preemptors={"eng-beta.new": ("model-a",)},
        preempts={"eng-beta.old"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 29 of 65.
    case(
        "partial admission single variable pod set, preempt with partial admission",
        run=[running("eng-beta.old", "eng-beta", "model-a", -4, count=10, example_com_gpu="1")],
        wait=[
            waiting("eng-beta.new", "eng-beta.main", 4, count=30, min_count=10, example_com_gpu="1")
        ],
        preemptors={"eng-beta.new": (("model-a", 20),)},
        preempts={"eng-beta.old"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 30 of 65.
    case(
        "partial admission multiple variable pod sets",
        unreachable="minimum counts on two PodSets: our workloads may shrink their first "
        "bundle group only",
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 31 of 65. With the
    # PartialAdmission gate off, Kueue ignores the minimum counts: ours has none.
    case(
        "partial admission disabled, multiple variable pod sets",
        wait=[
            Waiting(
                "sales.new",
                "sales.main",
                (PodSet({"cpu": "1"}, 20), PodSet({"cpu": "1"}, 30), PodSet({"cpu": "1"}, 15)),
            )
        ],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 32 of 65.
    case(
        "two workloads can borrow different resources from the same flavor in the same cycle",
        extra=THREE_CQS,
        wait=[
            waiting("sales.wl1", "sales.lq1", -1, r1="16"),
            waiting("sales.wl2", "sales.lq2", -2, r2="16"),
        ],
        admits={"sales.wl1": ("default",), "sales.wl2": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 33 of 65.
    case(
        "two workloads can borrow the same resources from the same flavor in the same cycle "
        "if fits in the cohort quota",
        extra=THREE_CQS,
        wait=[
            waiting("sales.wl1", "sales.lq1", -1, r1="16"),
            waiting("sales.wl2", "sales.lq2", -2, r1="14"),
        ],
        admits={"sales.wl1": ("default",), "sales.wl2": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 34 of 65.
    case(
        "only one workload can borrow one resources from the same flavor in the same cycle "
        "if cohort quota cannot fit",
        extra=THREE_CQS,
        wait=[
            waiting("sales.wl1", "sales.lq1", -1, r1="16"),
            waiting("sales.wl2", "sales.lq2", -2, r1="16"),
        ],
        admits={"sales.wl1": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 35 of 65.
    case(
        "preemption while borrowing, workload waiting for preemption should not block a "
        "borrowing workload in another CQ",
        extra=cluster_queue(
            "cq_shared", (("default", {"cpu": ("4", "0")}),), cohort="preemption-while-borrowing"
        )
        + cluster_queue(
            "cq_a",
            (("default", {"cpu": ("0", "3")}),),
            cohort="preemption-while-borrowing",
            preemption="{reclaimWithinCohort: LowerPriority, "
            "borrowWithinCohort: {policy: LowerPriority}}",
        )
        + cluster_queue(
            "cq_b",
            (("default", {"cpu": ("0",)}),),
            cohort="preemption-while-borrowing",
            preemption="{reclaimWithinCohort: LowerPriority, "
            "borrowWithinCohort: {policy: LowerPriority}}",
        )
        + local_queues({"eng-alpha.lq_a": "cq_a", "eng-beta.lq_b": "cq_b"}),
        run=[running("eng-alpha.admitted_a", "cq_a", "default", queue="eng-alpha.lq_a", cpu="2")],
        wait=[
            waiting("eng-alpha.a", "eng-alpha.lq_a", created=101.0, cpu="3"),
            waiting("eng-beta.b", "eng-beta.lq_b", created=102.0, cpu="1"),
        ],
        admits={"eng-beta.b": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 36 of 65.
    case(
        "minimal preemptions when target queue is exhausted",
        extra=other_cohort(RECLAIM_ANY_WITHIN_LP, "", alpha_quota="2", beta_quota="2")
        + cluster_queue("other-gamma", (("on-demand", {"cpu": ("2",)}),), cohort="other")
        + local_queues({"eng-gamma.other": "other-gamma"}),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", -2, cpu="1"),
            running("eng-alpha.a2", "other-alpha", "on-demand", -2, cpu="1"),
            running("eng-alpha.a3", "other-alpha", "on-demand", -1, cpu="1"),
            running("eng-beta.b1", "other-beta", "on-demand", 0, cpu="1"),
            running("eng-beta.b2", "other-beta", "on-demand", 0, cpu="1"),
            running("eng-beta.b3", "other-beta", "on-demand", 0, cpu="1"),
        ],
        wait=[waiting("eng-alpha.incoming", "eng-alpha.other", 0, cpu="2")],
        preemptors={"eng-alpha.incoming": ("on-demand",)},
        preempts={"eng-alpha.a1", "eng-alpha.a2"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 37 of 65.
    case(
        "A workload is only eligible to do preemptions if it fits fully within nominal quota",
        extra=other_cohort(RECLAIM_ANY_WITHIN_LP, "", alpha_quota="2", beta_quota="2"),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", -1, cpu="1"),
            running("eng-beta.b1", "other-beta", "on-demand", -1, cpu="1"),
        ],
        wait=[waiting("eng-alpha.incoming", "eng-alpha.other", 1, cpu="3")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 38 of 65.
    case(
        "multiple preemptions without borrowing",
        extra=other_cohort(WITHIN_LP, WITHIN_LP, alpha_quota="2", beta_quota="2", flavor="default"),
        run=[
            running("eng-alpha.a1", "other-alpha", "default", 0, cpu="2"),
            running("eng-beta.b1", "other-beta", "default", 0, cpu="2"),
        ],
        wait=[
            waiting("eng-alpha.preemptor", "eng-alpha.other", 100, cpu="2"),
            waiting("eng-beta.preemptor", "eng-beta.other", 100, cpu="2"),
        ],
        preemptors={"eng-alpha.preemptor": ("default",), "eng-beta.preemptor": ("default",)},
        preempts={"eng-alpha.a1", "eng-beta.b1"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 39 of 65.
    case(
        "multiple preemptions preemption possible after earlier workload fits",
        extra=other_cohort(WITHIN_LP, WITHIN_LP, alpha_quota="1", beta_quota="2", flavor="default"),
        run=[running("eng-beta.b1", "other-beta", "default", 0, cpu="2")],
        wait=[
            waiting("eng-alpha.fit", "eng-alpha.other", 100, cpu="1"),
            waiting("eng-beta.preemptor", "eng-beta.other", 99, cpu="2"),
        ],
        admits={"eng-alpha.fit": ("default",)},
        preemptors={"eng-beta.preemptor": ("default",)},
        preempts={"eng-beta.b1"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 40 of 65.
    case(
        "multiple preemptions skip preemption when shared limited resource",
        # Kueue's fixture sets borrowWithinCohort without reclaimWithinCohort, which our
        # loader (like Kueue's webhook) refuses; reclaimWithinCohort: LowerPriority adds no
        # candidate here (no other ClusterQueue borrows), so the decisions are the same.
        extra=other_cohort(
            "{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority, "
            "borrowWithinCohort: {policy: LowerPriority}}",
            "{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority, "
            "borrowWithinCohort: {policy: LowerPriority}}",
            alpha_quota="2",
            beta_quota="2",
            flavor="default",
        )
        + cluster_queue("resource-bank", (("default", {"cpu": ("1",)}),), cohort="other"),
        run=[
            running("eng-alpha.a1", "other-alpha", "default", 0, cpu="2"),
            running("eng-beta.b1", "other-beta", "default", 0, cpu="2"),
        ],
        wait=[
            waiting("eng-alpha.preemptor", "eng-alpha.other", 100, cpu="3"),
            waiting("eng-beta.pretending-preemptor", "eng-beta.other", 99, cpu="3"),
        ],
        preemptors={"eng-alpha.preemptor": ("default",)},
        preempts={"eng-alpha.a1"},
        mark=DEPARTURE_OWN_QUEUE_BORROWING + "the preemptor (3) would borrow 1 after "
        "evicting a1 (2) of its own queue (nominal 2), so it preempts nothing and waits; "
        "Kueue evicts a1 and lets it borrow the resource bank's CPU",
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 41 of 65.
    case(
        "not enough resources",
        wait=[waiting("sales.new", "sales.main", cpu="100")],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 44 of 65 (42, 43: out of
    # scope).
    case(
        "prefer reclamation over cq priority based preemption",
        extra=two_flavor_gpu_cohort(BOTH_LP),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", 50, gpu="5"),
            running("eng-beta.b1", "other-beta", "spot", 50, gpu="5"),
        ],
        wait=[waiting("eng-alpha.preemptor", "eng-alpha.other", 100, gpu="6")],
        preemptors={"eng-alpha.preemptor": ("spot",)},
        preempts={"eng-beta.b1"},
        # Requeued, b1 borrows the 5 GPUs other-alpha has left on on-demand.
        later={"eng-beta.b1": (("on-demand",), FREED_AT_ONCE)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 45 of 65.
    case(
        "prefer first preemption flavor when second flavor requires both reclaim and cq "
        "priority preemption",
        extra=two_flavor_gpu_cohort(None),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", 50, gpu="5"),
            running("eng-alpha.a2", "other-alpha", "spot", 50, gpu="5"),
            running("eng-beta.b1", "other-beta", "spot", 50, gpu="5"),
        ],
        wait=[waiting("eng-alpha.preemptor", "eng-alpha.other", 100, gpu="6")],
        preemptors={"eng-alpha.preemptor": ("on-demand",)},
        preempts={"eng-alpha.a1"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 46 of 65.
    case(
        "prefer first preemption flavor when second flavor also requires cq preemption",
        extra=two_flavor_gpu_cohort(None),
        run=[
            running("eng-alpha.a1", "other-alpha", "on-demand", 50, gpu="6"),
            running("eng-alpha.a2", "other-alpha", "spot", 50, gpu="5"),
            running("eng-beta.b1", "other-beta", "spot", 9001, gpu="5"),
        ],
        wait=[waiting("eng-alpha.preemptor", "eng-alpha.other", 100, gpu="5")],
        preemptors={"eng-alpha.preemptor": ("on-demand",)},
        preempts={"eng-alpha.a1"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 47 of 65.
    case(
        "workload requiring reclaimation prioritized over wl in another full cq",
        extra=cluster_queue("CQ1", (("on-demand", {"gpu": ("10",)}),), cohort="other")
        + cluster_queue(
            "CQ2",
            (("on-demand", {"gpu": ("10",)}),),
            cohort="other",
            preemption="{reclaimWithinCohort: Any}",
        )
        + cluster_queue("CQ3", (("on-demand", {"gpu": ("0",)}),), cohort="other")
        + local_queues({"eng-alpha.lq": "CQ1", "eng-beta.lq": "CQ2", "eng-gamma.lq": "CQ3"}),
        run=[
            running("eng-alpha.Admitted-Workload-1", "CQ1", "on-demand", gpu="5"),
            running("eng-gamma.Admitted-Workload-2", "CQ3", "on-demand", 0, gpu="5"),
            running("eng-gamma.Admitted-Workload-3", "CQ3", "on-demand", 1, gpu="5"),
        ],
        wait=[
            waiting("eng-alpha.WL1", "eng-alpha.lq", created=100.0, gpu="10"),
            waiting("eng-beta.WL2", "eng-beta.lq", created=101.0, gpu="10"),
        ],
        preemptors={"eng-beta.WL2": ("on-demand",)},
        preempts={"eng-gamma.Admitted-Workload-2"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 48 of 65.
    case(
        "capacity not blocked when lending clusterqueue can reclaim (ReclaimWithinCohort=Any)",
        extra=lender_cohort("Any"),
        run=LENDER_RUN,
        wait=LENDER_WAIT,
        admits={"eng-beta.b1-pending": ("on-demand",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 49 of 65.
    case(
        "capacity blocked when lending clusterqueue not guaranteed to reclaim "
        "(ReclaimWithinCohort=LowerPriority)",
        extra=lender_cohort("LowerPriority"),
        run=LENDER_RUN,
        wait=LENDER_WAIT,
        # Kueue holds ClusterQueueA's free GPU back from b1-pending for this cycle only:
        # a2-pending, with no victims, is then parked as inadmissible, and the next cycle
        # admits b1-pending, borrowing it.
        later={"eng-beta.b1-pending": (("on-demand",), NEXT_ROUND)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 50 of 65.
    case(
        "capacity blocked when lending clusterqueue not guaranteed to reclaim "
        "(ReclaimWithinCohort=Never)",
        extra=lender_cohort("Never"),
        run=LENDER_RUN,
        wait=LENDER_WAIT,
        # Kueue holds ClusterQueueA's free GPU back from b1-pending for this cycle only:
        # a2-pending, with no victims, is then parked as inadmissible, and the next cycle
        # admits b1-pending, borrowing it.
        later={"eng-beta.b1-pending": (("on-demand",), NEXT_ROUND)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 51 of 65.
    case(
        "in a hierarchical cohort, workload borrowing less is scheduled first",
        # Kueue names the cohort and its ClusterQueue both "guaranteed"; ours share one
        # namespace, so the cohort is "guaranteed-cohort".
        extra=cohort("root")
        + cohort("guaranteed-cohort", (("default", {"cpu": ("4",)}),), parent="root")
        + cluster_queue("guaranteed", (("default", {"cpu": ("0",)}),), cohort="guaranteed-cohort")
        + cluster_queue("best-effort", (("default", {"cpu": ("0",)}),), cohort="root")
        + local_queues(
            {"eng-alpha.lq-guaranteed": "guaranteed", "eng-alpha.lq-best-effort": "best-effort"}
        ),
        wait=[
            waiting("eng-alpha.guaranteed", "eng-alpha.lq-guaranteed", 0, cpu="4"),
            waiting("eng-alpha.best-effort", "eng-alpha.lq-best-effort", 3, cpu="4"),
        ],
        admits={"eng-alpha.guaranteed": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 52 of 65.
    case(
        "don't assign flavor if there are no candidates for preemption",
        extra=cluster_queue(
            "cq1",
            (("on-demand", {"cpu": ("0", "1")}), ("spot", {"cpu": ("0", "1")})),
            cohort="cohort",
            preemption="{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any, "
            "borrowWithinCohort: {policy: LowerPriority}}",
            fungibility="{whenCanPreempt: MayStopSearch, whenCanBorrow: MayStopSearch}",
        )
        + cluster_queue(
            "cq2", (("on-demand", {"cpu": ("1",)}), ("spot", {"cpu": ("1",)})), cohort="cohort"
        )
        + local_queues({"eng-alpha.lq1": "cq1", "eng-alpha.lq2": "cq2"}),
        run=[running("eng-alpha.admitted", "cq2", "on-demand", 0, cpu="1")],
        wait=[waiting("eng-alpha.new", "eng-alpha.lq1", 100, cpu="1")],
        admits={"eng-alpha.new": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 54 of 65 (53: out of scope).
    case(
        "pending admission check with nofit and fit flavors",
        wait=[waiting("eng-beta.pending-check", "eng-beta.main", cpu="80")],
        admits={"eng-beta.pending-check": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 55 of 65.
    case(
        "admit to second flavor when first needs preemption; WhenCanPreempt: TryNextFlavor",
        extra=cluster_queue(
            "preempt-attempts-cq",
            (("on-demand", {"cpu": ("1",)}), ("spot", {"cpu": ("1",)})),
            preemption=WITHIN_LP,
            fungibility="{whenCanPreempt: TryNextFlavor}",
        )
        + local_queues({"eng-alpha.preempt-attempts-lq": "preempt-attempts-cq"}),
        run=[running("eng-alpha.blocker", "preempt-attempts-cq", "on-demand", 50, cpu="1")],
        wait=[waiting("eng-alpha.test-wl", "eng-alpha.preempt-attempts-lq", 100, cpu="1")],
        admits={"eng-alpha.test-wl": ("spot",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 56 of 65.
    case(
        "admit workload with zero-quantity request for resource not in ClusterQueue",
        wait=[waiting("sales.zero-resource-wl", "sales.main", cpu="1", example_com_gpu="0")],
        admits={"sales.zero-resource-wl": ("default",)},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 57 of 65.
    case(
        "preempt when workload requests zero of a resource not defined in ClusterQueue",
        extra=cluster_queue(
            "preempt-zero-gpu-cq", (("default", {"cpu": ("4",)}),), preemption=WITHIN_LP
        )
        + local_queues({"sales.preempt-zero-gpu-lq": "preempt-zero-gpu-cq"}),
        run=[running("sales.low-priority", "preempt-zero-gpu-cq", "default", -1, cpu="4")],
        wait=[
            waiting("sales.preemptor", "sales.preempt-zero-gpu-lq", cpu="2", example_com_gpu="0")
        ],
        preemptors={"sales.preemptor": ("default",)},
        preempts={"sales.low-priority"},
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 64 of 65 (58-63: out of
    # scope).
    case(
        "prevent integer overflow when sum of requests over podsets exceeds MaxInt64",
        extra=cluster_queue("overflow-cq", (("default", {"cpu": ("10000",)}),))
        + local_queues({"default.overflow-queue": "overflow-cq"}),
        wait=[
            Waiting(
                "default.vuln-wl",
                "default.overflow-queue",
                (PodSet({"cpu": "1000000m"}), PodSet({"cpu": "9223372036854775000m"})),
            )
        ],
    ),
    # Kueue pkg/scheduler/scheduler_test.go, TestSchedule, case 65 of 65.
    case(
        "prevent integer overflow in ResourceValue conversion to MilliValue",
        extra=cluster_queue("overflow-cq", (("default", {"cpu": ("10",)}),))
        + local_queues({"default.overflow-queue": "overflow-cq"}),
        wait=[
            Waiting(
                "default.vuln-wl", "default.overflow-queue", (PodSet({"cpu": "9223372036854776"}),)
            )
        ],
    ),
]


@pytest.mark.parametrize("c", params(CASES, OUT_OF_SCOPE))
def test_kueue_schedule_case(c: Case) -> None:
    check(c)


def parity_counts() -> dict[str, int]:
    return counts(CASES, OUT_OF_SCOPE)
