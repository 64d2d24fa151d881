"""Kueue's fair-sharing preemption table, replayed against our engine.

Source: ``TestFairPreemptions`` in Kueue's ``pkg/scheduler/preemption/preemption_fair_test.go``
(kubernetes-sigs/kueue, read at commit 054bf63476ae9203a912522cf9daea8960811ad1; the
other tables were read at ff69552). All 31 cases of that table are ported here, in its
order, as data; the test ids are Kueue's case names. Fair sharing is on (a Kueue
``Configuration`` document), with Kueue's default strategies unless a case names them.

A case runs as ``test_preemption_table``'s do (``victims_of``): the admitted workloads
are admitted one by one, each without preempting, then the incoming workload is
submitted and ``schedule()`` called once; the workloads it preempted are compared with
Kueue's. Kueue reserves every admitted workload at the same instant and breaks the tie
between equal priorities by UID (the name, in that test), lowest first; our candidates
are ordered newest admission first, so the admitted workloads are admitted in reverse
table order, the first of the table last. Kueue hands the preemptor a fixed flavor; ours
chooses (the one case with two flavors checks it chose Kueue's).
"""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from tests.engine.kueue_parity.test_preemption_table import (
    FLAVORS,
    Case,
    PodSet,
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
    "kubernetes-sigs/kueue pkg/scheduler/preemption/preemption_fair_test.go TestFairPreemptions"
)

#: Every priority the table uses, as WorkloadPriorityClasses (no class: priority 0).
PRIORITIES = (-3, -1, 0, 1, 2, 3, 4, 5, 100, 1000)
PRIORITY_CLASSES = "".join(
    f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {{name: {priority_class(v)}}}
value: {v}
"""
    for v in PRIORITIES
)


#: The flavors of the one case with two (besides ``default``, ``alpha``, ``beta``).
TWO_FLAVORS = """---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: premium}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: cheap}
"""


def fair_sharing(*strategies: str) -> str:
    listed = f", preemptionStrategies: [{', '.join(strategies)}]" if strategies else ""
    return f"""---
apiVersion: config.kueue.x-k8s.io/v1beta1
kind: Configuration
fairSharing: {{enable: true{listed}}}
"""


def cpu(nominal: str) -> tuple[tuple[str, dict[str, tuple[str, ...]]], ...]:
    """One resource group: ``nominal`` CPU on flavor ``default``."""
    return (("default", {"cpu": (nominal,)}),)


BASE_PREEMPTION = (
    "{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any, borrowWithinCohort: "
    "{policy: LowerPriority, maxPriorityThreshold: -3}}"
)
WITHOUT_BORROWING = "{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}"
RECLAIM_ANY = "{reclaimWithinCohort: Any}"


def config(*documents: str, strategies: tuple[str, ...] = ()) -> str:
    """The ClusterQueues and cohorts, a LocalQueue per ClusterQueue, priorities, flavors."""
    names = [
        line.split("name: ")[1].rstrip("}")
        for document in documents
        if "kind: ClusterQueue" in document
        for line in document.splitlines()
        if line.startswith("metadata:")
    ]
    return (
        FLAVORS
        + TWO_FLAVORS
        + "".join(documents)
        + local_queues(*names)
        + PRIORITY_CLASSES
        + fair_sharing(*strategies)
    )


#: Kueue's ``baseCQs``: a, b and c own 3 CPU each; ``preemptible`` owns none.
BASE_CQS = (
    cluster_queue("a", cpu("3"), cohort="all", preemption=BASE_PREEMPTION),
    cluster_queue("b", cpu("3"), cohort="all", preemption=BASE_PREEMPTION),
    cluster_queue("c", cpu("3"), cohort="all", preemption=BASE_PREEMPTION),
    cluster_queue("preemptible", cpu("0"), cohort="all"),
)
BASE = config(*BASE_CQS)


def units(cq: str, *names: str, priority: int | None = None) -> list[Wl]:
    """Kueue's ``unitWl`` (1 CPU) under each name, admitted to ``cq``."""
    return [wl(name, cq, priority, cpu="1") for name in names]


def case(
    name: str,
    admitted: list[Wl],
    incoming: Wl,
    victims: set[str],
    *,
    config: str = BASE,
    mark: str | None = None,
    in_table_order: bool = False,
    unreachable: str | None = None,
) -> Case:
    """Admitted in reverse table order (module docstring) unless ``in_table_order`` (a
    case whose starting point needs that order and has no tie to break)."""
    order = tuple(admitted) if in_table_order else tuple(reversed(admitted))
    return Case(name, config, order, incoming, frozenset(victims), mark, unreachable)


def weighted(weights: dict[str, str | None]) -> str:
    """ClusterQueues of 3 CPU each in cohort ``all`` with these fair-sharing weights."""
    return config(
        *(
            cluster_queue(n, cpu("3"), cohort="all", preemption=WITHOUT_BORROWING, weight=w)
            for n, w in weights.items()
        )
    )


def on(flavor: str, name: str, cq: str) -> Wl:
    """A 1-CPU workload on ``flavor``."""
    return Wl(name, cq, (PodSet({"cpu": "1"}, other_flavor=flavor),))


A3, B3, C3 = (
    units("a", "a1", "a2", "a3"),
    units("b", "b1", "b2", "b3"),
    units("c", "c1", "c2", "c3"),
)
B5 = units("b", "b1", "b2", "b3", "b4", "b5")
B6 = units("b", "b1", "b2", "b3", "b4", "b5", "b6")

CASES: tuple[Case, ...] = (
    case(
        "reclaim nominal from user using the most",
        A3 + B5 + units("c", "c1"),
        wl("c_incoming", "c", cpu="1"),
        {"b1"},
    ),
    case(
        "can reclaim from queue using less, if taking the latest workload from user using "
        "the most isn't enough",
        [
            wl("a1", "a", cpu="3"),
            wl("a2", "a", cpu="1"),
            wl("b1", "b", cpu="2"),
            wl("b2", "b", cpu="3"),
        ],
        wl("c_incoming", "c", cpu="3"),
        {"a1"},
    ),
    case(
        "reclaim borrowable quota from user using the most",
        A3 + B5 + units("c", "c1"),
        wl("a_incoming", "a", cpu="1"),
        {"b1"},
    ),
    case(
        "preempt one from each CQ borrowing",
        [
            wl("a1", "a", cpu="0.5"),
            wl("a2", "a", cpu="0.5"),
            wl("a3", "a", cpu="3"),
            wl("b1", "b", cpu="0.5"),
            wl("b2", "b", cpu="0.5"),
            wl("b3", "b", cpu="3"),
        ],
        wl("c_incoming", "c", cpu="2"),
        {"a1", "b1"},
    ),
    case(
        "can't preempt when everyone under nominal",
        A3 + B3 + C3,
        wl("c_incoming", "c", cpu="1"),
        set(),
    ),
    case(
        "can't preempt when it would switch the imbalance",
        A3 + B5,
        wl("a_incoming", "a", cpu="2"),
        set(),
    ),
    case(
        "can preempt lower priority workloads from same CQ",
        units("a", "a1_low", "a2_low", priority=-1) + units("a", "a3", "a4") + B5,
        wl("a_incoming", "a", cpu="2"),
        {"a1_low", "a2_low"},
    ),
    case(
        "can preempt a combination of same CQ and highest user",
        units("a", "a_low", priority=-1) + units("a", "a2", "a3") + B6,
        wl("a_incoming", "a", cpu="2"),
        {"a_low", "b1"},
    ),
    case(
        "preempt huge workload if there is no other option, as long as the target CQ gets a "
        "lower share",
        [wl("b1", "b", cpu="9")],
        wl("a_incoming", "a", cpu="2"),
        {"b1"},
    ),
    case(
        "can't preempt huge workload if the incoming is also huge",
        [wl("a1", "a", cpu="2"), wl("b1", "b", cpu="7")],
        wl("a_incoming", "a", cpu="5"),
        set(),
    ),
    case(
        "can't preempt 2 smaller workloads if the incoming is huge",
        [wl("b1", "b", cpu="2"), wl("b2", "b", cpu="2"), wl("b3", "b", cpu="3")],
        wl("a_incoming", "a", cpu="6"),
        set(),
    ),
    case(
        "preempt from target and others even if over nominal",
        [
            wl("a1_low", "a", -1, cpu="2"),
            wl("a2_low", "a", -1, cpu="1"),
            wl("b1", "b", cpu="3"),
            wl("b2", "b", cpu="3"),
        ],
        wl("a_incoming", "a", cpu="4"),
        {"a1_low", "b1"},
    ),
    case(
        "prefer to preempt workloads that don't make the target CQ have the biggest share",
        [
            wl("b1", "b", cpu="2"),
            wl("b2", "b", cpu="1"),
            wl("b3", "b", cpu="2"),
            wl("c1", "c", cpu="1"),
        ],
        wl("a_incoming", "a", cpu="3.5"),
        {"b2"},
    ),
    case(
        "preempt from different cluster queues if the end result has a smaller max share",
        [
            wl("b1", "b", cpu="2"),
            wl("b2", "b", cpu="2.5"),
            wl("c1", "c", cpu="2"),
            wl("c2", "c", cpu="2.5"),
        ],
        wl("a_incoming", "a", cpu="3.5"),
        {"b1", "c1"},
    ),
    case(
        "scenario above does not flap",
        [wl("a1", "a", cpu="3.5"), wl("b2", "b", cpu="2.5"), wl("c2", "c", cpu="2.5")],
        wl("b_incoming", "b", cpu="2"),
        set(),
    ),
    case(
        "cannot preempt if it would make the candidate CQ go under nominal after preempting "
        "one element",
        [wl("b1", "b", cpu="3"), wl("b2", "b", cpu="3"), wl("c1", "c", cpu="3")],
        wl("a_incoming", "a", cpu="4"),
        set(),
    ),
    case(
        "workloads under priority threshold not capriciously preempted",
        A3 + B3 + units("preemptible", "preemptible1", "preemptible2", "preemptible3", priority=-3),
        wl("a_incoming", "a", cpu="2"),
        set(),
    ),
    case(
        "preempt lower priority first, even if big",
        [wl("a1", "a", cpu="3"), wl("b_low", "b", 0, cpu="5"), wl("b_high", "b", 1, cpu="1")],
        wl("a_incoming", "a", cpu="1"),
        {"b_low"},
        config=config(*BASE_CQS, strategies=("LessThanInitialShare",)),
    ),
    case(
        "preempt workload that doesn't transfer the imbalance, even if high priority",
        [wl("a1", "a", cpu="3"), wl("b_low", "b", 0, cpu="5"), wl("b_high", "b", 1, cpu="1")],
        wl("a_incoming", "a", cpu="1"),
        {"b_high"},
        config=config(*BASE_CQS, strategies=("LessThanOrEqualToFinalShare",)),
    ),
    case(
        "CQ with higher weight can preempt more",
        A3 + B6,
        wl("a_incoming", "a", cpu="2"),
        {"b1", "b2"},
        config=weighted({"a": "2", "b": None, "c": None}),
    ),
    case(
        "can preempt anything borrowing from CQ with 0 weight",
        A3 + B6,
        wl("a_incoming", "a", cpu="3"),
        {"b1", "b2", "b3"},
        config=weighted({"a": None, "b": "0", "c": None}),
    ),
    case(
        "can't preempt nominal from CQ with 0 weight",
        A3 + B3,
        wl("a_incoming", "a", cpu="1"),
        set(),
        config=weighted({"a": None, "b": "0"}),
    ),
    case(
        "can't preempt nominal from Cohort with 0 weight",
        units("right-cq", "right-1"),
        wl("left-1", "left-cq", cpu="1"),
        set(),
        config=config(
            cluster_queue("left-cq", cpu("0"), cohort="root", preemption=RECLAIM_ANY),
            cluster_queue(
                "right-cq", cpu("0"), cohort="right-cohort", preemption=RECLAIM_ANY, weight="0"
            ),
            cohort("right-cohort", cpu("1"), parent="root", weight="0"),
        ),
    ),
    case(
        "can preempt within cluster queue when no cohort",
        units("a", "a1"),
        wl("a_incoming", "a", 1000, cpu="1"),
        {"a1"},
        config=config(
            cluster_queue("a", cpu("1"), preemption="{withinClusterQueue: LowerPriority}")
        ),
    ),
    # Kueue's tree, (usage, quota, subtree quota): ROOT(20,5,20) over LEFT(5,5,7),
    # c(5,1,1) and RIGHT(10,5,7); LEFT over a(0,1,1) and b(5,1,1); RIGHT over d and e
    # (5,1,1 each). a and LEFT weigh 2, e 0.99 (so that e goes before d).
    case(
        "hierarchical preemption",
        [wl(f"{q}{i}", q, i, cpu="1") for q in ("b", "c", "d", "e") for i in range(1, 6)],
        wl("unit", "a", cpu="5"),
        {"b1", "b2", "c1", "c2", "e1"},
        config=config(
            cluster_queue("a", cpu("1"), cohort="LEFT", preemption=RECLAIM_ANY, weight="2"),
            cluster_queue("b", cpu("1"), cohort="LEFT"),
            cluster_queue("c", cpu("1"), cohort="ROOT"),
            cluster_queue("d", cpu("1"), cohort="RIGHT"),
            cluster_queue("e", cpu("1"), cohort="RIGHT", weight="0.99"),
            cohort("ROOT", cpu("5")),
            cohort("LEFT", cpu("5"), parent="ROOT", weight="2"),
            cohort("RIGHT", cpu("5"), parent="ROOT"),
        ),
    ),
    # b borrows, but its cohort RIGHT does not: b is protected, and a (weight 10) must
    # preempt its own work.
    case(
        "borrowing cq in non-borrowing cohort is protected",
        units("a", "a1", "a2", "a3", priority=-1) + units("b", "b1", priority=-1),
        wl("unit", "a", cpu="5"),
        {"a1", "a2", "a3"},
        config=config(
            cluster_queue("a", cpu("5"), cohort="ROOT", preemption=WITHOUT_BORROWING, weight="10"),
            cluster_queue("b", cpu("0"), cohort="RIGHT", weight="0.1"),
            cohort("ROOT"),
            cohort("RIGHT", cpu("1"), parent="ROOT", weight="0.1"),
        ),
    ),
    case(
        "forced to preempt within clusterqueue because borrowing workload too important",
        [*units("a", "a1", "a2", "a3", priority=-1), wl("b1", "b", 100, cpu="4")],
        wl("unit", "a", cpu="4"),
        {"a1", "a2", "a3"},
        config=config(
            cluster_queue(
                "a",
                cpu("5"),
                cohort="ROOT",
                preemption="{reclaimWithinCohort: LowerPriority, withinClusterQueue: "
                "LowerPriority}",
                weight="10",
            ),
            cluster_queue("b", cpu("0"), cohort="RIGHT", weight="0.1"),
            cohort("ROOT"),
            cohort("RIGHT", cpu("3"), parent="ROOT", weight="0.1"),
        ),
    ),
    # ROOT over A, B, C; each a chain of cohorts: A-AA-AAA-a, B-BB-BBB-b, C-CC-CCC-CCCC,
    # and only CCCC holds quota (1 CPU). A weighs 1.01 and B 0.99, so a may take b's.
    case(
        "deep preemption",
        units("b", "b1"),
        wl("a1", "a", cpu="1"),
        {"b1"},
        config=config(
            cluster_queue("a", cpu("0"), cohort="AAA", preemption=RECLAIM_ANY),
            cluster_queue("b", cpu("0"), cohort="BBB"),
            cohort("ROOT"),
            cohort("A", parent="ROOT", weight="1.01"),
            cohort("AA", parent="A"),
            cohort("AAA", parent="AA"),
            cohort("B", parent="ROOT", weight="0.99"),
            cohort("BB", parent="B"),
            cohort("BBB", parent="BB"),
            cohort("C", parent="ROOT"),
            cohort("CC", parent="C"),
            cohort("CCC", parent="CC"),
            cohort("CCCC", cpu("1"), parent="CCC"),
        ),
    ),
    case(
        "cq with zero weight can reclaim nominal quota",
        units("b", "b1"),
        wl("a1", "a", cpu="1"),
        {"b1"},
        config=config(
            cluster_queue("a", cpu("1"), cohort="ROOT", preemption=RECLAIM_ANY, weight="0"),
            cluster_queue("b", cpu("0"), cohort="ROOT", weight="1"),
        ),
    ),
    case(
        "cohort with zero weight can reclaim nominal quota",
        units("b", "b1"),
        wl("a1", "a", cpu="1"),
        {"b1"},
        config=config(
            cluster_queue("a", cpu("0"), cohort="A", preemption=RECLAIM_ANY, weight="0"),
            cluster_queue("b", cpu("0"), cohort="ROOT", weight="1"),
            cohort("A", cpu("1"), parent="ROOT", weight="0"),
        ),
    ),
    # a: 3 premium, 0 cheap; b: 0 premium, 6 cheap. a holds 2 premium (within nominal)
    # and 5 cheap (borrowed): a high share overall, but within nominal on premium.
    case(
        "nominal first: workload fitting within nominal can preempt despite high aggregate DRS",
        # b's premium admitted before a's cheap, which would go to premium otherwise.
        [
            on("premium", "a_prem1", "a"),
            on("premium", "a_prem2", "a"),
            on("premium", "b_prem1", "b"),
            *(on("cheap", f"a_cheap{i}", "a") for i in range(1, 6)),
        ],
        on("premium", "a_incoming", "a"),
        {"b_prem1"},
        in_table_order=True,
        unreachable="Kueue's fixture puts a's cheap work on cheap while premium holds b's "
        "borrowed CPU; submitted, it reclaims premium from b_prem1 instead (a is within "
        "nominal there and whenCanPreempt is MayStopSearch), so this runner, which only "
        "submits, cannot set the case up",
        config=config(
            cluster_queue(
                "a",
                (("premium", {"cpu": ("3",)}), ("cheap", {"cpu": ("0",)})),
                cohort="all",
                preemption=RECLAIM_ANY,
                fungibility="{whenCanBorrow: MayStopSearch, whenCanPreempt: MayStopSearch}",
            ),
            cluster_queue(
                "b", (("premium", {"cpu": ("0",)}), ("cheap", {"cpu": ("6",)})), cohort="all"
            ),
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
def test_kueue_fair_preemption_case(c: Case) -> None:
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
