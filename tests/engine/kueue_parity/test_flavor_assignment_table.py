"""Kueue's flavor-assignment table, replayed against our flavor assigner.

Source: ``TestAssignFlavors`` in Kueue's ``pkg/scheduler/flavorassigner/flavorassigner_test.go``
(kubernetes-sigs/kueue, read at commit ff69552e79ad21652c36caa97038382e55625cf7,
v0.20.0-devel). All 60 cases are here, in Kueue's order: 38 ported as data, 22 listed in
``OUT_OF_SCOPE`` with the reason. Test ids are Kueue's case names. The same file's
``TestReclaimBeforePriorityPreemption`` (6 cases, all ported) and ``TestHierarchical`` (3:
2 ported, 1 out of scope) are here too, run the same way.

Like Kueue's test, each case is one call of the assigner (``assign_flavors``) on a quota
tree holding the ClusterQueue ``test-clusterqueue`` (and maybe
``test-secondary-clusterqueue`` in the same cohort), Kueue YAML through our loader, with
usage added to each as Kueue's fixture adds it, and a fake preemption oracle that answers
what the case's ``simulationResult`` says (Kueue's default otherwise: preemption possible,
borrowing level 0). Compared: the representative mode (Fit, Preempt, NoFit); when not
NoFit, each PodSet's flavor per resource and whether that resource needs preemption
(``*``); and the borrowing level.

Fixture differences that change no decision: Kueue's fungibility cases also give their
flavors a ``pods`` quota of 10 that one pod never reaches; our loader refuses a ``pods``
quota (Ray counts no pods), so it is left out there, and the cases about pod counts are
out of scope. A zero request takes no quota and our bundles carry none, so it gets no
flavor (Kueue names one for it when the ClusterQueue covers the resource); resources are
compared for non-zero requests only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from _pytest.mark import ParameterSet

from ray_queue.engine.config_documents import RAY_RESOURCE_NAMES
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.flavor_assignment import (
    Mode,
    Preemption,
    assign_flavors,
    preempts_while_borrowing,
)
from ray_queue.engine.model import BundleGroup, FlavorResource, Milli, WorkloadId, WorkloadSpec
from ray_queue.engine.quantity import parse_quantity
from ray_queue.engine.quota import QuotaTree
from tests.engine.kueue_parity.cycle import flavors
from tests.engine.kueue_parity.cycle import test_id as case_id
from tests.engine.kueue_parity.yaml_docs import cluster_queue, cohort

pytestmark = pytest.mark.timeout(30)

KUEUE_FILE = (
    "kubernetes-sigs/kueue pkg/scheduler/flavorassigner/flavorassigner_test.go TestAssignFlavors"
)

FLAVORS = flavors("default", "one", "two", "b_one", "b_two")
FAIR_SHARING = """---
apiVersion: config.kueue.x-k8s.io/v1beta1
kind: Configuration
fairSharing: {enable: true}
"""
CQ = "test-clusterqueue"
SECONDARY = "test-secondary-clusterqueue"
COHORT = "test-cohort"

#: Kueue's PreemptionPossibility, as the oracle answers it.
NO_CANDIDATES, PREEMPT = Preemption.NO_CANDIDATES, Preemption.PREEMPT


@dataclass(frozen=True)
class Case:
    """One entry of Kueue's table. ``pod_sets``: (count, requests) per PodSet.
    ``usage``/``secondary_usage``: quantities per (flavor, Kubernetes resource).
    ``want``: the representative mode; ``flavors``: per PodSet, resource → flavor (a
    trailing ``*``: the resource needs preemption there); ``borrowing``: the level."""

    name: str
    config: str
    pod_sets: tuple[tuple[int, Mapping[str, str]], ...]
    want: Mode
    flavors: tuple[Mapping[str, str], ...] = ()
    borrowing: int = 0
    usage: Mapping[tuple[str, str], str] = field(default_factory=dict)
    secondary_usage: Mapping[tuple[str, str], str] = field(default_factory=dict)
    simulation: Mapping[tuple[str, str], tuple[Preemption, int]] = field(default_factory=dict)
    fair_sharing: bool = False


def case(
    name: str,
    cq: str,
    pod_sets: list[tuple[int, dict[str, str]]],
    want: Mode,
    flavors: list[dict[str, str]] | None = None,
    *,
    secondary: str = "",
    borrowing: int = 0,
    usage: dict[tuple[str, str], str] | None = None,
    secondary_usage: dict[tuple[str, str], str] | None = None,
    simulation: dict[tuple[str, str], tuple[Preemption, int]] | None = None,
    fair_sharing: bool = False,
) -> Case:
    config = FLAVORS + cq + secondary + (FAIR_SHARING if fair_sharing else "")
    return Case(
        name,
        config,
        tuple((count, requests) for count, requests in pod_sets),
        want,
        tuple(flavors or ()),
        borrowing,
        usage or {},
        secondary_usage or {},
        simulation or {},
        fair_sharing,
    )


def cq(*groups: tuple[tuple[str, Mapping[str, tuple[str, ...]]], ...], **options: str) -> str:
    """``test-clusterqueue`` with ``groups``; ``cohort=True`` is spelled ``cohort=COHORT``."""
    return cluster_queue(CQ, *groups, **options)


def secondary(*groups: tuple[tuple[str, Mapping[str, tuple[str, ...]]], ...]) -> str:
    return cluster_queue(SECONDARY, *groups, cohort=COHORT)


BWC = "{reclaimWithinCohort: LowerPriority, borrowWithinCohort: {policy: LowerPriority}}"
STOP = "{whenCanBorrow: MayStopSearch, whenCanPreempt: MayStopSearch}"
TRY_NEXT = "{whenCanBorrow: TryNextFlavor, whenCanPreempt: TryNextFlavor}"
BORROW_NEXT = "{whenCanBorrow: TryNextFlavor, whenCanPreempt: MayStopSearch}"
TEN_CPU = {"cpu": ("10",)}

OUT_OF_SCOPE: dict[str, str] = {
    "single flavor, fits tainted flavor": "taints and tolerations",
    "single flavor, fits tainted flavor with toleration": "taints and tolerations",
    "multiple flavors, leader worker set, leader and workers request the same resources "
    "fits": "PodSet groups (leader/worker sets placed together)",
    "multiple flavors, leader worker set, workers request GPU, leader does not request "
    "GPU, fits": "PodSet groups (leader/worker sets placed together)",
    "multiple flavors, leader worker set, workers request GPU, leader does not request "
    "GPU, does not fit, without group it would fit": "PodSet groups (leader/worker sets "
    "placed together)",
    "multiple flavors, fits while skipping tainted flavor": "taints and tolerations",
    "multiple flavors, fits a node selector": "node selectors and affinity",
    "multiple flavors, fits with node affinity": "node selectors and affinity",
    "multiple flavors, node affinity fits any flavor": "node selectors and affinity",
    "multiple flavors with different label keys, selector only uses flavor's own keys": (
        "node selectors and affinity"
    ),
    "labelless flavor in group with labeled flavor, workload uses labeled selector": (
        "node selectors and affinity"
    ),
    "multiple flavors, doesn't fit node affinity": "node selectors and affinity",
    "can only preempt flavors that match affinity": "node selectors and affinity",
    "each podset requires preemption on a different flavor": "taints and tolerations (the "
    "launcher may not use the tainted flavor)",
    "num pods fit": "a quota on the number of pods (Ray counts no pods)",
    "num pods don't fit": "a quota on the number of pods (Ray counts no pods)",
    "with reclaimable pods; reclaimablePods on": "reclaimable pods (pods of a PodSet that "
    "finished and give their quota back), and a quota on the number of pods",
    "with reclaimable pods; reclaimablePods off": "a quota on the number of pods (Ray "
    "counts no pods)",
    "workload slice preemption fits in the original workload resource flavor": (
        "elastic jobs via workload slices"
    ),
    "workload slice preemption does not fit in the original workload resource flavor": (
        "elastic jobs via workload slices"
    ),
    "multiple TAS flavors assigned to different resources in the same PodSet leads to "
    "NoFit": "topology-aware scheduling",
    "multi-podset, one fits and another fails, fitting podset attempts skipped in "
    "resolveNoFitReason": "node selectors and affinity (and NoFit reasons, not decisions)",
}

CASES: list[Case] = [
    # Kueue flavorassigner_test.go, TestAssignFlavors, case 1 of 60.
    case(
        "single flavor, fits",
        cq((("default", {"cpu": ("1",), "memory": ("2Mi",)}),)),
        [(1, {"cpu": "1", "memory": "1Mi"})],
        Mode.FIT,
        [{"cpu": "default", "memory": "default"}],
    ),
    # Case 4 of 60 (2, 3: out of scope).
    case(
        "single flavor, used resources, doesn't fit",
        cq((("default", {"cpu": ("4",)}),)),
        [(1, {"cpu": "2"})],
        Mode.PREEMPT,
        [{"cpu": "default*"}],
        usage={("default", "cpu"): "3"},
    ),
    # Case 5 of 60.
    case(
        "multiple resource groups, fits",
        cq(
            (("one", {"cpu": ("2",)}), ("two", {"cpu": ("4",)})),
            (("b_one", {"memory": ("1Gi",)}), ("b_two", {"memory": ("5Gi",)})),
        ),
        [(1, {"cpu": "3", "memory": "10Mi"})],
        Mode.FIT,
        [{"cpu": "two", "memory": "b_one"}],
    ),
    # Case 9 of 60 (6-8: out of scope).
    case(
        "multiple resource groups, one could fit with preemption, other doesn't fit",
        cq((("one", {"cpu": ("3",)}),), (("b_one", {"memory": ("1Mi",)}),)),
        [(1, {"cpu": "3", "memory": "10Mi"})],
        Mode.NO_FIT,
        usage={("one", "cpu"): "1"},
    ),
    # Case 10 of 60.
    case(
        "multiple resource groups with multiple resources, fits",
        cq(
            (
                ("one", {"cpu": ("2",), "memory": ("1Gi",)}),
                ("two", {"cpu": ("4",), "memory": ("15Mi",)}),
            ),
            (("b_one", {"example.com/gpu": ("4",)}), ("b_two", {"example.com/gpu": ("2",)})),
        ),
        [(1, {"cpu": "3", "memory": "10Mi", "example.com/gpu": "3"})],
        Mode.FIT,
        [{"cpu": "two", "memory": "two", "example.com/gpu": "b_one"}],
    ),
    # Case 11 of 60.
    case(
        "multiple resource groups with multiple resources, fits with different modes",
        cq(
            (
                ("one", {"cpu": ("2",), "memory": ("1Gi",)}),
                ("two", {"cpu": ("4",), "memory": ("15Mi",)}),
            ),
            (("b_one", {"example.com/gpu": ("4",)}),),
            cohort=COHORT,
        ),
        [(1, {"cpu": "3", "memory": "10Mi", "example.com/gpu": "3"})],
        Mode.PREEMPT,
        [{"cpu": "two", "memory": "two*", "example.com/gpu": "b_one*"}],
        secondary=secondary((("b_one", {"example.com/gpu": ("0",)}),)),
        borrowing=1,
        usage={("two", "memory"): "10Mi"},
        secondary_usage={("b_one", "example.com/gpu"): "2"},
        simulation={("two", "memory"): (PREEMPT, 1)},
    ),
    # Case 12 of 60.
    case(
        "multiple resources in a group, doesn't fit",
        cq(
            (
                ("one", {"cpu": ("2",), "memory": ("1Gi",)}),
                ("two", {"cpu": ("4",), "memory": ("5Mi",)}),
            )
        ),
        [(1, {"cpu": "3", "memory": "10Mi"})],
        Mode.NO_FIT,
    ),
    # Case 20 of 60 (13-19: out of scope).
    case(
        "multiple specs, fit different flavors",
        cq((("one", {"cpu": ("4",)}), ("two", {"cpu": ("10",)}))),
        [(1, {"cpu": "5"}), (1, {"cpu": "3"})],
        Mode.FIT,
        [{"cpu": "two"}, {"cpu": "one"}],
    ),
    # Case 21 of 60.
    case(
        "multiple specs, fits borrowing",
        cq((("default", {"cpu": ("2", "98"), "memory": ("2Gi",)}),), cohort=COHORT),
        [(1, {"cpu": "4", "memory": "1Gi"}), (1, {"cpu": "6", "memory": "4Gi"})],
        Mode.FIT,
        [{"cpu": "default", "memory": "default"}, {"cpu": "default", "memory": "default"}],
        secondary=secondary((("default", {"cpu": ("198",), "memory": ("198Gi",)}),)),
        borrowing=1,
    ),
    # Case 22 of 60.
    case(
        "not enough space to borrow",
        cq((("one", {"cpu": ("1",)}),), cohort=COHORT),
        [(1, {"cpu": "2"})],
        Mode.NO_FIT,
        secondary=secondary((("one", {"cpu": ("10", "", "0")}),)),
        secondary_usage={("one", "cpu"): "9"},
    ),
    # Case 23 of 60.
    case(
        "past max, but can preempt in ClusterQueue",
        cq((("one", {"cpu": ("2", "8")}),), cohort=COHORT),
        [(1, {"cpu": "2"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        secondary=secondary((("one", {"cpu": ("98",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "9"},
        secondary_usage={("one", "cpu"): "9"},
        simulation={("one", "cpu"): (PREEMPT, 1)},
    ),
    # Case 24 of 60.
    case(
        "past min, but can preempt in ClusterQueue",
        cq((("one", {"cpu": ("2",)}),)),
        [(1, {"cpu": "2"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        usage={("one", "cpu"): "1"},
    ),
    # Case 25 of 60.
    case(
        "past min, but can preempt in cohort and ClusterQueue",
        cq((("one", {"cpu": ("3",)}),), cohort=COHORT),
        [(1, {"cpu": "2"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        secondary=secondary((("one", {"cpu": ("7",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "2"},
        secondary_usage={("one", "cpu"): "8"},
        simulation={("one", "cpu"): (PREEMPT, 1)},
    ),
    # Case 28 of 60 (26, 27: out of scope).
    case(
        "resource not listed in clusterQueue",
        cq((("one", {"cpu": ("4",)}),)),
        [(1, {"example.com/gpu": "2"})],
        Mode.NO_FIT,
    ),
    # Case 29 of 60.
    case(
        "zero resource request not in clusterQueue should succeed",
        cq((("default", {"cpu": ("4",)}),)),
        [(1, {"cpu": "1", "example.com/gpu": "0"})],
        Mode.FIT,
        [{"cpu": "default"}],
    ),
    # Case 30 of 60.
    case(
        "zero resource request defined in clusterQueue should get flavor assigned",
        cq((("default", {"cpu": ("4",), "example.com/gpu": ("4",)}),)),
        [(1, {"cpu": "1", "example.com/gpu": "0"})],
        Mode.FIT,
        [{"cpu": "default"}],
    ),
    # Case 34 of 60 (33: out of scope). The ReclaimablePods gate is off here: Kueue
    # Case 35 of 60.
    case(
        "preempt before try next flavor",
        cq((("one", TEN_CPU), ("two", TEN_CPU)), fungibility=STOP),
        [(1, {"cpu": "9"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        usage={("one", "cpu"): "2"},
    ),
    # Case 36 of 60.
    case(
        "preempt before try next flavor; using WhenCanBorrow=MayStopSearch,"
        "WhenCanPreempt=MayStopSearch",
        cq((("one", TEN_CPU), ("two", TEN_CPU)), fungibility=STOP),
        [(1, {"cpu": "9"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        usage={("one", "cpu"): "2"},
    ),
    # Case 37 of 60.
    case(
        "preempt try next flavor",
        cq((("one", TEN_CPU), ("two", TEN_CPU))),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "two"}],
        usage={("one", "cpu"): "2"},
    ),
    # Case 38 of 60.
    case(
        "borrow try next flavor, found the first flavor",
        cq(
            (
                ("one", {"cpu": ("10", "1")}),
                ("two", {"cpu": ("1",)}),
            ),
            cohort=COHORT,
            fungibility=TRY_NEXT,
        ),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "one"}],
        secondary=secondary((("one", {"cpu": ("1",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "2"},
    ),
    # Case 39 of 60.
    case(
        "borrow try next flavor, found the second flavor",
        cq(
            (
                ("one", {"cpu": ("10", "1")}),
                ("two", {"cpu": ("10",)}),
            ),
            cohort=COHORT,
            fungibility=TRY_NEXT,
        ),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "two"}],
        secondary=secondary((("one", {"cpu": ("1",)}),)),
        usage={("one", "cpu"): "2"},
    ),
    # Case 40 of 60.
    case(
        "borrow before try next flavor",
        cq(
            (
                ("one", {"cpu": ("10", "1")}),
                ("two", {"cpu": ("10",)}),
            ),
            cohort=COHORT,
        ),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "one"}],
        secondary=secondary((("one", {"cpu": ("1",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "2"},
    ),
    *(
        # Cases 41-44 of 60: the same decision with and without a borrowingLimit, under
        # both spellings of the fungibility policy.
        case(
            f"when borrowing while preemption is needed for flavor one{limit}; {policies}",
            cq(
                (("one", {"cpu": ("0", *limit_value)}), ("two", {"cpu": ("12",)})),
                cohort=COHORT,
                preemption=BWC,
                fungibility=STOP,
            ),
            [(1, {"cpu": "12"})],
            Mode.PREEMPT,
            [{"cpu": "one*"}],
            secondary=secondary((("one", {"cpu": ("12",)}),)),
            borrowing=1,
            secondary_usage={("one", "cpu"): "10"},
            simulation={("one", "cpu"): (PREEMPT, 1)},
        )
        for limit, limit_value in (("", ("12",)), (", no borrowingLimit", ()))
        for policies in (
            "WhenCanBorrow=MayStopSearch",
            "WhenCanBorrow=MayStopSearch,WhenCanPreempt=MayStopSearch",
        )
    ),
    *(
        # Cases 45, 46 of 60.
        case(
            f"when borrowing while preemption is needed for flavor one; {policies}",
            cq(
                (("one", {"cpu": ("0", "12")}), ("two", {"cpu": ("12",)})),
                cohort=COHORT,
                preemption=BWC,
                fungibility=BORROW_NEXT,
            ),
            [(1, {"cpu": "12"})],
            Mode.FIT,
            [{"cpu": "two"}],
            secondary=secondary((("one", {"cpu": ("12",)}),)),
        )
        for policies in (
            "WhenCanBorrow=TryNextFlavor",
            "WhenCanBorrow=TryNextFlavor,WhenCanPreempt=MayStopSearch",
        )
    ),
    # Case 47 of 60.
    case(
        "when borrowing while preemption is needed, but borrowingLimit exceeds the quota "
        "available in the cohort",
        cq((("one", {"cpu": ("0", "12")}),), cohort=COHORT, preemption=BWC),
        [(1, {"cpu": "12"})],
        Mode.NO_FIT,
        secondary=secondary((("one", {"cpu": ("11",)}),)),
        secondary_usage={("one", "cpu"): "10"},
    ),
    # Case 48 of 60.
    case(
        "lend try next flavor, found the second flavor",
        cq(
            (
                ("one", {"cpu": ("10", "", "1")}),
                ("two", {"cpu": ("10", "", "0")}),
            ),
            cohort=COHORT,
            fungibility=TRY_NEXT,
        ),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "two"}],
        secondary=secondary((("one", {"cpu": ("1",)}),)),
        usage={("one", "cpu"): "2"},
    ),
    # Case 49 of 60.
    case(
        "lend try next flavor, found the first flavor",
        cq(
            (
                ("one", {"cpu": ("10", "", "1")}),
                ("two", {"cpu": ("1", "", "0")}),
            ),
            cohort=COHORT,
            fungibility=TRY_NEXT,
        ),
        [(1, {"cpu": "9"})],
        Mode.FIT,
        [{"cpu": "one"}],
        secondary=secondary((("one", {"cpu": ("1",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "2"},
    ),
    *(
        # Cases 50, 51 of 60.
        case(
            "cannot preempt in cohort (oracle returns None) for the first flavor, tries the "
            f"second flavor (which fits){suffix}",
            cq(
                (("one", {"cpu": ("0", "2")}), ("two", {"cpu": ("0", "2")})),
                cohort=COHORT,
                preemption=BWC,
                fungibility=STOP,
            ),
            [(1, {"cpu": "2"})],
            Mode.FIT,
            [{"cpu": "two"}],
            secondary=secondary((("one", {"cpu": ("2",)}), ("two", {"cpu": ("2",)}))),
            borrowing=1,
            secondary_usage={("one", "cpu"): "2"},
            simulation={("one", "cpu"): (NO_CANDIDATES, 0)},
        )
        for suffix in (
            "",
            "; using deprecated WhenCanBorrow=MayStopSearch,WhenCanPreempt=MayStopSearch",
        )
    ),
    # Case 52 of 60.
    case(
        "quota exhausted, but can preempt in cohort and ClusterQueue",
        cq((("one", {"cpu": ("10", "", "0")}),), cohort=COHORT),
        [(1, {"cpu": "9"})],
        Mode.PREEMPT,
        [{"cpu": "one*"}],
        secondary=secondary((("one", {"cpu": ("0",)}),)),
        borrowing=1,
        usage={("one", "cpu"): "2"},
        simulation={("one", "cpu"): (PREEMPT, 1)},
    ),
    *(
        # Cases 53-56 of 60.
        case(
            "when borrowing while preemption is needed for flavor one, fair sharing enabled, "
            f"reclaimWithinCohort={reclaim}{suffix}",
            cq(
                (("one", {"cpu": ("0",)}), ("two", {"cpu": ("12",)})),
                cohort=COHORT,
                preemption=f"{{reclaimWithinCohort: {reclaim}}}",
                fungibility=STOP,
            ),
            [(1, {"cpu": "12"})],
            want,
            [{"cpu": flavor}],
            secondary=secondary((("one", {"cpu": ("12",)}),)),
            borrowing=borrowing,
            secondary_usage={("one", "cpu"): "10"},
            simulation={("one", "cpu"): simulated},
            fair_sharing=True,
        )
        for reclaim, want, flavor, borrowing, simulated in (
            ("Any", Mode.PREEMPT, "one*", 1, (PREEMPT, 1)),
            ("Never", Mode.FIT, "two", 0, (NO_CANDIDATES, 0)),
        )
        for suffix in (
            "",
            "; using deprecated WhenCanBorrow=MayStopSearch,WhenCanPreempt=MayStopSearch",
        )
    ),
]


# -- TestReclaimBeforePriorityPreemption and TestHierarchical (same file) ------------

#: TestReclaimBeforePriorityPreemption's ClusterQueues (Kueue's "other-clusterqueue" is
#: our secondary one; names decide nothing here).
RECLAIM_CONFIG = cq(
    tuple((f, {"compute": ("10",), "gpu": ("10",)}) for f in ("uno", "due", "tre")),
    cohort=COHORT,
    preemption="{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}",
) + secondary(tuple((f, {"compute": ("0",), "gpu": ("0",)}) for f in ("uno", "due", "tre")))


def reclaim_case(
    name: str,
    requests: dict[str, str],
    want: Mode,
    chosen: dict[str, str],
    *,
    usage: dict[tuple[str, str], str],
    other: dict[tuple[str, str], str] | None = None,
    simulation: dict[tuple[str, str], tuple[Preemption, int]] | None = None,
    fungibility: str = "{whenCanPreempt: TryNextFlavor}",
) -> Case:
    config = RECLAIM_CONFIG.replace(
        "  preemption:", f"  flavorFungibility: {fungibility}\n  preemption:", 1
    )
    return Case(
        name,
        flavors("uno", "due", "tre") + config,
        ((1, requests),),
        want,
        (chosen,),
        0,
        usage,
        other or {},
        simulation or {},
    )


RECLAIM = Preemption.RECLAIM
RECLAIM_CASES: list[Case] = [
    # Kueue flavorassigner_test.go, TestReclaimBeforePriorityPreemption, case 1 of 6.
    reclaim_case(
        "Select first flavor which fits",
        {"gpu": "10"},
        Mode.FIT,
        {"gpu": "tre"},
        usage={("uno", "gpu"): "1"},
        other={("due", "gpu"): "1"},
    ),
    # Case 2 of 6.
    reclaim_case(
        "Select first flavor where gpu reclamation is possible",
        {"gpu": "10"},
        Mode.PREEMPT,
        {"gpu": "due*"},
        usage={("uno", "gpu"): "1"},
        other={("due", "gpu"): "1", ("tre", "gpu"): "1"},
        simulation={("uno", "gpu"): (PREEMPT, 0), ("due", "gpu"): (RECLAIM, 0)},
    ),
    *(
        # Cases 3, 4 of 6.
        reclaim_case(
            f"Select first flavor when flavor fungibility is disabled{suffix}",
            {"gpu": "10"},
            Mode.PREEMPT,
            {"gpu": "uno*"},
            usage={("uno", "gpu"): "1"},
            other={("due", "gpu"): "1", ("tre", "gpu"): "1"},
            fungibility="{whenCanPreempt: MayStopSearch}",
        )
        for suffix in ("", "; using deprecated WhenCanPreempt=MayStopSearch")
    ),
    # Case 5 of 6.
    reclaim_case(
        "Select first flavor where priority based preemption is possible",
        {"gpu": "10"},
        Mode.PREEMPT,
        {"gpu": "uno*"},
        usage={("uno", "gpu"): "1", ("due", "gpu"): "1", ("tre", "gpu"): "1"},
    ),
    # Case 6 of 6.
    reclaim_case(
        "Select second flavor where gpu reclamation is possible, as compute Fits",
        {"gpu": "10", "compute": "10"},
        Mode.PREEMPT,
        {"gpu": "tre*", "compute": "tre"},
        usage={("uno", "gpu"): "1", ("uno", "compute"): "1", ("due", "compute"): "1"},
        other={("due", "gpu"): "1", ("tre", "gpu"): "1"},
        simulation={
            ("uno", "gpu"): (PREEMPT, 0),
            ("due", "gpu"): (RECLAIM, 0),
            ("tre", "gpu"): (RECLAIM, 0),
        },
    ),
]

#: TestHierarchical: cohorts three ⊃ two ⊃ one, each with 4 CPUs of its own flavor;
#: test-clusterqueue (nothing of its own) in one, the secondary queue in two.
HIERARCHY = (
    flavors("one", "two", "three")
    + cohort("three", (("three", {"cpu": ("4",)}),))
    + cohort("two", (("two", {"cpu": ("4",)}),), parent="three")
    + cohort("one", (("one", {"cpu": ("4",)}),), parent="two")
    + cluster_queue(
        CQ,
        tuple((f, {"cpu": ("0",)}) for f in ("one", "two", "three")),
        cohort="one",
        preemption="{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}",
        fungibility="{whenCanPreempt: TryNextFlavor}",
    )
    + cluster_queue(
        SECONDARY, tuple((f, {"cpu": ("0",)}) for f in ("one", "two", "three")), cohort="two"
    )
)
HIERARCHICAL_CASES: list[Case] = [
    # Kueue flavorassigner_test.go, TestHierarchical, case 1 of 3.
    Case(
        "Select the top flavor",
        HIERARCHY,
        ((1, {"cpu": "4"}),),
        Mode.FIT,
        ({"cpu": "three"},),
        3,
        {("one", "cpu"): "4"},
        {("two", "cpu"): "4"},
    ),
    # Case 2 of 3.
    Case(
        "Select the first flavor which fits",
        HIERARCHY,
        ((1, {"cpu": "4"}),),
        Mode.FIT,
        ({"cpu": "two"},),
        2,
        {("one", "cpu"): "4"},
    ),
]
HIERARCHICAL_OUT_OF_SCOPE = {
    "Select deeper-borrowing flavor that fits when shallower-borrowing flavor has no "
    "preemption candidates": "flavorFungibility.preference (our loader does not read it)",
}


# -- running a case -------------------------------------------------------------------


def _ray(name: str) -> str:
    return RAY_RESOURCE_NAMES.get(name, name)


def _usage(usage: Mapping[tuple[str, str], str]) -> dict[FlavorResource, Milli]:
    return {
        (flavor, _ray(name)): parse_quantity(amount) for (flavor, name), amount in usage.items()
    }


def assigned(c: Case) -> tuple[Mode, tuple[dict[str, str], ...], int]:
    config = load_config(c.config)
    tree = QuotaTree(config)
    node = tree.cluster_queues[CQ]
    tree.add_usage(node, _usage(c.usage))
    if c.secondary_usage:
        tree.add_usage(tree.cluster_queues[SECONDARY], _usage(c.secondary_usage))
    cluster_queue_config = config.cluster_queues[CQ]
    groups = []
    for count, requests in c.pod_sets:
        bundle = {_ray(n): parse_quantity(a) for n, a in requests.items() if parse_quantity(a) > 0}
        groups.append(BundleGroup(bundle, count))
    spec = WorkloadSpec(id=WorkloadId("wl"), queue="q", bundle_groups=tuple(groups), created_at=0.0)
    simulation = {(f, _ray(r)): result for (f, r), result in c.simulation.items()}

    def oracle(fr: FlavorResource, amount: Milli) -> tuple[Preemption, int]:
        return simulation.get(fr, (PREEMPT, 0))

    assignment = assign_flavors(
        spec,
        cluster_queue_config,
        node,
        tree,
        oracle=oracle,
        preempt_while_borrowing=preempts_while_borrowing(
            cluster_queue_config, fair_sharing=c.fair_sharing
        ),
    )
    if assignment.mode is Mode.NO_FIT:
        return assignment.mode, (), 0
    chosen = tuple(
        {
            resource: flavor + ("*" if (flavor, resource) in assignment.needs_preemption else "")
            for resource, flavor in g.flavors.items()
        }
        for g in assignment.groups
    )
    return assignment.mode, chosen, assignment.borrow_level


def expected(c: Case) -> tuple[Mode, tuple[dict[str, str], ...], int]:
    if c.want is Mode.NO_FIT:
        return c.want, (), 0
    return c.want, tuple({_ray(r): f for r, f in g.items()} for g in c.flavors), c.borrowing


def _params(cases: list[Case], out_of_scope: Mapping[str, str]) -> list[ParameterSet]:
    params = [pytest.param(c, id=case_id(c.name)) for c in cases]
    params += [
        pytest.param(None, marks=pytest.mark.skip(reason=f"out of scope: {why}"), id=case_id(n))
        for n, why in out_of_scope.items()
    ]
    return params


@pytest.mark.parametrize("c", _params(CASES, OUT_OF_SCOPE))
def test_kueue_flavor_assignment_case(c: Case) -> None:
    assert assigned(c) == expected(c)


@pytest.mark.parametrize("c", _params(RECLAIM_CASES, {}))
def test_kueue_reclaim_before_priority_preemption_case(c: Case) -> None:
    assert assigned(c) == expected(c)


@pytest.mark.parametrize("c", _params(HIERARCHICAL_CASES, HIERARCHICAL_OUT_OF_SCOPE))
def test_kueue_hierarchical_flavor_case(c: Case) -> None:
    assert assigned(c) == expected(c)


def _counts(cases: list[Case], out_of_scope: Mapping[str, str]) -> dict[str, int]:
    """Every ported case here agrees (none is marked): no departures, none differ."""
    return {
        "ported": len(cases),
        "passing": len(cases),
        "departures": 0,
        "differs": 0,
        "out_of_scope": len(out_of_scope),
        "unreachable": 0,
    }


def parity_counts() -> dict[str, int]:
    return _counts(CASES, OUT_OF_SCOPE)


def reclaim_parity_counts() -> dict[str, int]:
    return _counts(RECLAIM_CASES, {})


def hierarchical_parity_counts() -> dict[str, int]:
    return _counts(HIERARCHICAL_CASES, HIERARCHICAL_OUT_OF_SCOPE)
