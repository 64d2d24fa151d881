"""Config validation: every problem in a config is found and reported at once, each with
its document, its field path and what to do about it."""

from __future__ import annotations

import pytest

from ray_queue.engine.config_loader import (
    load_config,
)
from ray_queue.engine.errors import ConfigError
from tests.engine.config_docs import (
    BASE,
    cq,
    doc,
    group,
    problems_of,
    rf,
)

pytestmark = pytest.mark.timeout(120)


# -- every problem, at once ----------------------------------------------------------

MANY_MISTAKES = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: a100}
spec:
  provisioning: eventually
  workerGroop: gpu
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: a100}
---
just a string
---
kind: ClusterQueue
metadata: {name: no-api-version}
---
apiVersion: ray-queue.io/v1alpha1
kind: Workload
metadata: {name: w}
---
apiVersion: example.com/v1
kind: ClusterQueue
metadata: {name: elsewhere}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {}
spec: {}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: team-a}
spec:
  cohortName: ml
  queueingStrategy: FIFO
  resourceGroups:
  - coveredResources: [CPU, GPU]
    flavors:
    - name: a100
      resources:
      - {name: CPU, nominalQuota: 4}
      - {name: GPU, nominalQuota: -2}
    - name: a100
      resources:
      - {name: CPU, nominalQuota: lots}
      - {name: GPU, nominalQuota: 1, lendingLimit: 2}
  - coveredResources: [GPU, memory]
    flavors:
    - name: h100
      resources:
      - {name: memory, nominalQuota: 1Gi}
  preemption:
    borrowWithinCohort:
      policy: Never
      maxPriorityThreshold: 10
  admissionChecksStrategy:
    admissionChecks:
    - name: prov
    - name: audit
      onFlavors: [spot]
  fairSharing: {weight: -1}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: solo}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: a100
      resources:
      - {name: CPU, nominalQuota: 1, borrowingLimit: 1}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team-a}
spec: {clusterQueue: team-z}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {name: ml}
spec: {parentName: org}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {name: org}
spec: {parentName: ml}
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: prod}
value: 1000
globalDefault: true
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: batch}
value: many
globalDefault: true
---
apiVersion: ray-queue.io/v1alpha1
kind: Configuration
spec:
  waitForPodsReady: {timeout: 5 minutes}
---
apiVersion: ray-queue.io/v1alpha1
kind: Configuration
metadata: {name: second}
spec:
  fairSharing: {preemptionStrategies: [Greedy]}
"""

CQ_GROUP0 = "spec.resourceGroups[0]"
EXPECTED_MISTAKES = {
    ("ResourceFlavor/a100", "spec.provisioning"): "must be one of incremental, all-at-once",
    ("ResourceFlavor/a100", "spec.workerGroop"): "did you mean 'workerGroup'",
    ("ResourceFlavor/a100", "metadata.name"): "defined twice (documents 1 and 2)",
    ("document 3", ""): "must be a mapping",
    ("ClusterQueue/no-api-version", "apiVersion"): "is required",
    ("Workload/w", "kind"): "unknown kind 'Workload'",
    ("ClusterQueue/elsewhere", "apiVersion"): "unknown apiVersion 'example.com/v1'",
    ("ClusterQueue (document 7)", "metadata.name"): "is required",
    ("ClusterQueue/team-a", "spec.queueingStrategy"): "must be one of StrictFIFO, BestEffortFIFO",
    (
        "ClusterQueue/team-a",
        f"{CQ_GROUP0}.flavors[0].resources[1].nominalQuota",
    ): "must be >= 0, got -2",
    (
        "ClusterQueue/team-a",
        f"{CQ_GROUP0}.flavors[1].resources[0].nominalQuota",
    ): "'lots' is not a quantity",
    (
        "ClusterQueue/team-a",
        f"{CQ_GROUP0}.flavors[1].resources[1].lendingLimit",
    ): "must be <= nominalQuota",
    ("ClusterQueue/team-a", f"{CQ_GROUP0}.flavors[1].name"): "already listed",
    ("ClusterQueue/team-a", "spec.resourceGroups[1].coveredResources"): "already covered",
    ("ClusterQueue/team-a", "spec.resourceGroups[1].flavors[0].resources"): "missing GPU",
    ("ClusterQueue/team-a", "spec.resourceGroups[1].flavors[0].name"): (
        "ResourceFlavor 'h100' is not defined; add a ResourceFlavor named 'h100' or remove it "
        "from the ClusterQueue"
    ),
    ("ClusterQueue/team-a", "spec.preemption.borrowWithinCohort.maxPriorityThreshold"): (
        "only applies with policy LowerPriority"
    ),
    ("ClusterQueue/team-a", "spec.admissionChecksStrategy.admissionChecks[0]"): (
        "AdmissionCheck 'prov' is not defined"
    ),
    ("ClusterQueue/team-a", "spec.admissionChecksStrategy.admissionChecks[1]"): (
        "AdmissionCheck 'audit' is not defined"
    ),
    ("ClusterQueue/team-a", "spec.admissionChecksStrategy.admissionChecks[1].onFlavors"): (
        "flavor 'spot' is not used by this ClusterQueue"
    ),
    ("ClusterQueue/team-a", "spec.fairSharing.weight"): "must be >= 0",
    ("ClusterQueue/solo", f"{CQ_GROUP0}.flavors[0].resources[0].borrowingLimit"): (
        "without a cohort cannot borrow; set spec.cohortName or remove borrowingLimit"
    ),
    ("Queue/team-a", "spec.clusterQueue"): "ClusterQueue 'team-z' is not defined",
    ("Cohort/ml", "spec.parentName"): "cycle: ml -> org -> ml",
    ("PriorityClass/batch", "value"): "must be an integer",
    ("PriorityClass/batch", "globalDefault"): "'prod' already is",
    (
        "Configuration (document 15)",
        "spec.waitForPodsReady.timeout",
    ): "'5 minutes' is not a duration",
    ("Configuration/second", ""): "only one Configuration document is allowed",
    ("Configuration/second", "spec.fairSharing.preemptionStrategies[0]"): (
        "must be one of LessThanOrEqualToFinalShare, LessThanInitialShare"
    ),
}


def test_a_config_with_many_mistakes_reports_every_one() -> None:
    problems = problems_of(MANY_MISTAKES)
    found = {(p.document, p.field): p.message for p in problems}
    assert set(found) == set(EXPECTED_MISTAKES), "\n".join(map(str, problems))
    for key, fragment in EXPECTED_MISTAKES.items():
        assert fragment in found[key], (key, found[key])
    assert len(problems) == len(EXPECTED_MISTAKES)


def test_config_error_text_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MANY_MISTAKES)
    text = str(info.value)
    assert f"{len(EXPECTED_MISTAKES)} problem(s)" in text
    assert "ClusterQueue/team-a: spec.queueingStrategy:" in text


@pytest.mark.parametrize(
    ("docs", "expected_where", "fragment"),
    [
        pytest.param(
            [*BASE, cq("cq", group(["CPU"], ("a", {"CPU": 1})))],
            ("ClusterQueue/cq", "metadata.name"),
            "defined twice",
            id="duplicate-cluster-queue",
        ),
        pytest.param(
            [rf("a"), cq("cq", group(["CPU"], ("a", {"CPU": 1})), cohort="cq")],
            ("ClusterQueue/cq", "metadata.name"),
            "a Cohort is also named 'cq'",
            id="cluster-queue-and-cohort-share-a-name",
        ),
        pytest.param(
            [rf("a"), doc("Cohort", "c", {"resourceGroups": [group(["CPU"], ("b", {"CPU": 1}))]})],
            ("Cohort/c", "spec.resourceGroups[0].flavors[0].name"),
            "or remove it from the Cohort",
            id="cohort-flavor-undefined",
        ),
        pytest.param(
            [
                rf("a"),
                doc(
                    "Cohort",
                    "c",
                    {
                        "resourceGroups": [
                            group(["CPU"], ("a", {"CPU": {"nominalQuota": 1, "lendingLimit": 1}}))
                        ]
                    },
                ),
            ],
            ("Cohort/c", "spec.resourceGroups[0].flavors[0].resources[0].lendingLimit"),
            "a Cohort without a parent cannot lend",
            id="cohort-limit-without-parent",
        ),
        pytest.param(
            [
                doc("Cohort", "x", {"parent": "y"}),
                doc("Cohort", "y", {"parent": "z"}),
                doc("Cohort", "z", {"parent": "x"}),
            ],
            ("Cohort/x", "spec.parent"),
            "cycle: x -> y -> z -> x",
            id="cohort-cycle-named-where-written",
        ),
        pytest.param(
            [
                *BASE,
                doc("AdmissionCheck", "g", {"controllerName": "c"}),
                cq("cq2", group(["CPU"], ("a", {"CPU": 1})), admissionChecks=["g", "g"]),
            ],
            ("ClusterQueue/cq2", "spec.admissionChecks[1]"),
            "listed twice",
            id="admission-check-twice",
        ),
        pytest.param(
            [
                rf("a"),
                cq(
                    "cq",
                    {
                        "coveredResources": ["CPU"],
                        "flavors": [
                            {
                                "name": "a",
                                "resources": [
                                    {"name": "CPU", "nominalQuota": 1},
                                    {"name": "cpu", "nominalQuota": 2},
                                ],
                            }
                        ],
                    },
                ),
            ],
            ("ClusterQueue/cq", "spec.resourceGroups[0].flavors[0].resources[1].name"),
            "resource 'CPU' is listed twice",
            id="resource-twice-in-a-flavor",
        ),
        pytest.param(
            [doc("Cohort", "c", {"parentName": "c"})],
            ("Cohort/c", "spec.parentName"),
            "cannot be its own parent",
            id="cohort-own-parent",
        ),
        pytest.param(
            [rf("a"), cq("cq", group(["CPU"], ("a", {"CPU": 1})), cohort="x", cohortName="y")],
            ("ClusterQueue/cq", "spec.cohortName"),
            "cohortName and cohort disagree",
            id="both-cohort-spellings",
        ),
        pytest.param(
            [
                *BASE[:1],
                cq(
                    "cq",
                    group(["CPU"], ("a", {"CPU": 1})),
                    preemption={"borrowWithinCohort": {"policy": "LowerPriority"}},
                ),
            ],
            ("ClusterQueue/cq", "spec.preemption.borrowWithinCohort.policy"),
            "needs reclaimWithinCohort",
            id="borrow-within-cohort-without-reclaim",
        ),
        pytest.param(
            [
                *BASE,
                doc("AdmissionCheck", "g", {"controllerName": "c"}),
                cq(
                    "cq2",
                    group(["CPU"], ("a", {"CPU": 1})),
                    admissionChecks=["g"],
                    admissionChecksStrategy={"admissionChecks": [{"name": "g"}]},
                ),
            ],
            ("ClusterQueue/cq2", "spec.admissionChecksStrategy"),
            "cannot be used together with admissionChecks",
            id="both-admission-check-forms",
        ),
        pytest.param(
            [
                *BASE,
                doc(
                    "Configuration",
                    None,
                    {"waitForPodsReady": {"requeuingStrategy": {"backoffBaseSeconds": 7200}}},
                ),
            ],
            (
                "Configuration (document 3)",
                "spec.waitForPodsReady.requeuingStrategy.backoffMaxSeconds",
            ),
            "must be >= backoffBaseSeconds",
            id="backoff-max-below-base",
        ),
        pytest.param(
            [*BASE, doc("Configuration", None, {"fairSharing": {"preemptionStrategies": []}})],
            ("Configuration (document 3)", "spec.fairSharing.preemptionStrategies"),
            "must list at least one",
            id="no-preemption-strategies",
        ),
        pytest.param(
            [rf("a", nodeLabels={"gpu": True})],
            ("ResourceFlavor/a", "spec.nodeLabels.gpu"),
            "quote it",
            id="unquoted-label-value",
        ),
        pytest.param(
            [doc("PriorityClass", "p", value=2**31)],
            ("PriorityClass/p", "value"),
            "32 bits",
            id="priority-out-of-range",
        ),
        pytest.param(
            [doc("Queue", "q", None)],
            ("Queue/q", "spec"),
            "is required",
            id="queue-without-spec",
        ),
        pytest.param(
            [
                doc("ResourceFlavor", "a", None),
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta1",
                    "kind": "Queue",
                    "metadata": {"name": "q"},
                },
            ],
            ("Queue/q", "kind"),
            "supported: ResourceFlavor, ClusterQueue, Cohort, LocalQueue",
            id="kueue-has-no-queue-kind",
        ),
    ],
)
def test_each_problem_is_found(
    docs: list[dict[str, object]], expected_where: tuple[str, str], fragment: str
) -> None:
    problems = problems_of(docs)
    found = {(p.document, p.field): p.message for p in problems}
    assert expected_where in found, problems
    assert fragment in found[expected_where]
