"""Config validation: every problem in a config is found and reported at once, each with
its document, its field path and what to do about it. Every apiVersion is read strictly;
fields dropped on purpose with the ray-queue.io/ignore-fields annotation load as if
absent."""

from __future__ import annotations

import copy

import pytest

from ray_queue.engine.config_documents import UNSUPPORTED_FIELDS
from ray_queue.engine.config_fields import IGNORE_ANNOTATION, path_pattern
from ray_queue.engine.config_loader import (
    load_config,
)
from ray_queue.engine.errors import ConfigError
from tests.engine.config_docs import (
    BASE,
    cq,
    doc,
    group,
    ignoring,
    kueue,
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


def assert_problem_found(
    docs: list[dict[str, object]], expected_where: tuple[str, str], fragment: str
) -> None:
    """The config is rejected with a problem at (document, field) that says ``fragment``."""
    problems = problems_of(docs)
    found = {(p.document, p.field): p.message for p in problems}
    assert expected_where in found, problems
    assert fragment in found[expected_where]


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
    assert_problem_found(docs, expected_where, fragment)


# -- strict fields: Kueue's documents too -------------------------------------------------

KUEUE_CONFIG = "config.kueue.x-k8s.io/v1beta1"
IGNORE_AT = f"metadata.annotations.{IGNORE_ANNOTATION}"

#: A valid Kueue document of each kind that has fields ray-queue does not carry over.
MINIMAL: dict[str, dict[str, object]] = {
    "ResourceFlavor": kueue("ResourceFlavor", "f", {}),
    "ClusterQueue": kueue("ClusterQueue", "cq", {"resourceGroups": []}),
    "PriorityClass": kueue("PriorityClass", "p", api_version="scheduling.k8s.io/v1", value=1),
    "ProvisioningRequestConfig": kueue(
        "ProvisioningRequestConfig", "prc", {"provisioningClassName": "x"}
    ),
    "Configuration": kueue("Configuration", None, api_version=KUEUE_CONFIG),
}


def with_field(document: dict[str, object], path: str, value: object) -> dict[str, object]:
    """A copy of ``document`` with ``value`` at a dotted ``path`` (mappings only)."""
    out = copy.deepcopy(document)
    *parents, leaf = path.split(".")
    at = out
    for key in parents:
        child = at.setdefault(key, {})
        assert isinstance(child, dict)
        at = child
    at[leaf] = value
    return out


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        pytest.param(kind, path, id=f"{kind}-{path}")
        for kind, table in UNSUPPORTED_FIELDS.items()
        for path in table
    ],
)
def test_each_kueue_field_not_carried_over_is_a_problem_unless_ignored(
    kind: str, path: str
) -> None:
    document = with_field(MINIMAL[kind], path, {"set": "to something"})
    problems = problems_of([document])
    assert [p.field for p in problems] == [path]
    assert (
        f"not supported by ray-queue ({UNSUPPORTED_FIELDS[kind][path].reason})"
        in problems[0].message
    )
    assert f"list it in the {IGNORE_ANNOTATION} annotation" in problems[0].message
    load_config([ignoring(document, path)])


def kueue_cq(*groups: dict[str, object], **spec: object) -> dict[str, object]:
    return kueue("ClusterQueue", "cq", {"resourceGroups": list(groups), **spec})


@pytest.mark.parametrize(
    ("docs", "expected_where", "fragment"),
    [
        pytest.param(
            [
                rf("a"),
                kueue_cq(
                    group(["cpu"], ("a", {"cpu": {"nominalQuota": 4, "borowingLimit": 0}})),
                    cohort="c",
                ),
            ],
            ("ClusterQueue/cq", "spec.resourceGroups[0].flavors[0].resources[0].borowingLimit"),
            "unknown field; did you mean 'borrowingLimit'?",
            id="borrowing-limit-typo",
        ),
        pytest.param(
            [rf("a"), kueue_cq(group(["cpu", "pods"], ("a", {"cpu": 4, "pods": 5})))],
            ("ClusterQueue/cq", "spec.resourceGroups[0].flavors[0].resources[name=pods]"),
            "Ray has no resource 'pods' (Ray counts no pods; a workload is a set of bundles), so "
            "ray-queue cannot enforce this quota; remove it and its coveredResources entry, or "
            "list spec.resourceGroups[*].flavors[*].resources[name=pods] in the "
            "ray-queue.io/ignore-fields annotation to ignore it",
            id="pods-quota",
        ),
        pytest.param(
            [
                rf("a"),
                kueue(
                    "Cohort",
                    "c",
                    {
                        "resourceGroups": [
                            group(["ephemeral-storage"], ("a", {"ephemeral-storage": "10Gi"}))
                        ]
                    },
                ),
            ],
            ("Cohort/c", "spec.resourceGroups[0].flavors[0].resources[name=ephemeral-storage]"),
            "Ray has no resource 'ephemeral-storage'",
            id="ephemeral-storage-quota-in-a-cohort",
        ),
        pytest.param(
            [rf("a"), kueue_cq(group(["hugepages-2Mi"], ("a", {"hugepages-2Mi": "1Gi"})))],
            ("ClusterQueue/cq", "spec.resourceGroups[0].flavors[0].resources[name=hugepages-2Mi]"),
            "Ray has no resource 'hugepages-2Mi'",
            id="hugepages-quota",
        ),
        pytest.param(
            [kueue_cq(namespaceSelector={"matchLabels": {"team": "a"}})],
            ("ClusterQueue/cq", "spec.namespaceSelector"),
            "Kueue field not supported by ray-queue (Ray has no namespaces; only {}, every "
            "namespace, means what ray-queue does); remove it, or list it in the "
            "ray-queue.io/ignore-fields annotation to ignore it",
            id="namespace-selector",
        ),
        pytest.param(
            [
                kueue(
                    "PriorityClass",
                    "p",
                    api_version="scheduling.k8s.io/v1",
                    value=1,
                    preemptionPolicy="Never",
                )
            ],
            ("PriorityClass/p", "preemptionPolicy"),
            "Kubernetes field not supported by ray-queue",
            id="priority-class-that-never-preempts",
        ),
        pytest.param(
            [
                kueue(
                    "Configuration",
                    None,
                    api_version=KUEUE_CONFIG,
                    waitForPodsReady={"enable": True, "blockAdmission": 0},
                )
            ],
            ("Configuration (document 1)", "waitForPodsReady.blockAdmission"),
            "not supported by ray-queue",
            id="neutral-values-are-typed",
        ),
        pytest.param(
            [
                kueue(
                    "Configuration",
                    None,
                    api_version=KUEUE_CONFIG,
                    waitForPodsReady={"enable": True, "timout": "5m"},
                )
            ],
            ("Configuration (document 1)", "waitForPodsReady.timout"),
            "did you mean 'timeout'?",
            id="configuration-typo",
        ),
        pytest.param(
            [*BASE, kueue("LocalQueue", "q", {"clusterQueue": "cq", "someFutureField": 1})],
            ("LocalQueue/q", "spec.someFutureField"),
            "unknown field; fields allowed here: clusterQueue, fairSharing, stopPolicy; to drop "
            "it on purpose, list it in the ray-queue.io/ignore-fields annotation",
            id="a-field-ray-queue-never-heard-of",
        ),
        pytest.param(
            [kueue("ResourceFlavor", "f", {"nodeTaint": []})],
            ("ResourceFlavor/f", "spec.nodeTaint"),
            "did you mean 'nodeTaints'?",
            id="typo-of-an-unsupported-field",
        ),
        pytest.param(
            [kueue("ResourceFlavor", "f", {"workerGroup": "g"})],
            ("ResourceFlavor/f", "spec.workerGroup"),
            "unknown field; fields allowed here: nodeLabels",
            id="our-own-field-in-a-kueue-document",
        ),
        pytest.param(
            [kueue("ClusterQueue", "cq", {"resourceGroups": []}, spce={})],
            ("ClusterQueue/cq", "spce"),
            "did you mean 'spec'?",
            id="top-level-typo",
        ),
        pytest.param(
            [rf("a", nodeTaints=[{"key": "spot", "effect": "NoSchedule"}])],
            ("ResourceFlavor/a", "spec.nodeTaints"),
            "Kueue field not supported by ray-queue (Ray nodes have no taints",
            id="unsupported-in-our-api-version",
        ),
        pytest.param(
            [doc("Configuration", None, {"waitForPodsReady": {"blockAdmission": True}})],
            ("Configuration (document 1)", "spec.waitForPodsReady.blockAdmission"),
            "not supported by ray-queue",
            id="unsupported-in-our-configuration",
        ),
        pytest.param(
            [
                ignoring(
                    kueue_cq(namespaceSelector={"matchLabels": {"team": "a"}}),
                    "spec.namespaceSelectr",
                )
            ],
            ("ClusterQueue/cq", IGNORE_AT),
            "'spec.namespaceSelectr' matches no field that ray-queue would drop in this document; "
            "did you mean 'spec.namespaceSelector'? fix the path or remove it from the list",
            id="stale-ignore-path",
        ),
        pytest.param(
            [ignoring(rf("a"), "spec.nodeTaints")],
            ("ResourceFlavor/a", IGNORE_AT),
            "'spec.nodeTaints' matches no field",
            id="stale-ignore-path-in-our-api-version",
        ),
        pytest.param(
            [ignoring(kueue_cq(cohort="c"), "spec.cohort")],
            ("ClusterQueue/cq", IGNORE_AT),
            "'spec.cohort' matches no field",
            id="a-field-ray-queue-reads-cannot-be-ignored",
        ),
        pytest.param(
            [ignoring(kueue_cq(namespaceSelector={}), "spec.namespaceSelector")],
            ("ClusterQueue/cq", IGNORE_AT),
            "'spec.namespaceSelector' matches no field",
            id="a-neutral-value-needs-no-ignoring",
        ),
        pytest.param(
            [
                {
                    **kueue_cq(),
                    "metadata": {"name": "cq", "annotations": {IGNORE_ANNOTATION: ["spec.x"]}},
                }
            ],
            ("ClusterQueue/cq", IGNORE_AT),
            "must be a string of comma-separated field paths",
            id="ignore-fields-not-a-string",
        ),
    ],
)
def test_each_strict_field_problem_is_found(
    docs: list[dict[str, object]], expected_where: tuple[str, str], fragment: str
) -> None:
    assert_problem_found(docs, expected_where, fragment)


def test_a_resource_ray_does_not_have_is_named_in_every_flavor() -> None:
    problems = problems_of(
        [
            rf("a"),
            rf("b"),
            kueue_cq(
                group(["cpu", "pods"], ("a", {"cpu": 4, "pods": 5}), ("b", {"cpu": 2, "pods": 5})),
            ),
        ]
    )
    assert [p.field for p in problems] == [
        "spec.resourceGroups[0].flavors[0].resources[name=pods]",
        "spec.resourceGroups[0].flavors[1].resources[name=pods]",
    ]


# -- strict fields: the ignore-fields opt-out -------------------------------------------


@pytest.mark.parametrize(
    ("document", "paths", "without"),
    [
        pytest.param(
            kueue("ResourceFlavor", "c", {"nodeLabels": {"k": "v"}, "someFutureField": 1}),
            "spec.someFutureField",
            kueue("ResourceFlavor", "c", {"nodeLabels": {"k": "v"}}),
            id="a-kueue-field-ray-queue-never-heard-of",
        ),
        pytest.param(
            kueue(
                "ClusterQueue",
                "cq",
                {
                    "namespaceSelector": {"matchLabels": {"team": "a"}},
                    "flavorFungibility": {"preference": "PreemptionOverBorrowing"},
                    "resourceGroups": [group(["cpu"], ("a", {"cpu": 4}))],
                },
            ),
            "spec.namespaceSelector , spec.flavorFungibility.preference,",
            kueue("ClusterQueue", "cq", {"resourceGroups": [group(["cpu"], ("a", {"cpu": 4}))]}),
            id="several-paths",
        ),
        pytest.param(
            kueue(
                "ClusterQueue",
                "cq",
                {
                    "resourceGroups": [
                        group(
                            ["cpu", "pods"],
                            ("a", {"cpu": 4, "pods": 5}),
                            ("b", {"cpu": 2, "pods": 5}),
                        )
                    ]
                },
            ),
            "spec.resourceGroups[*].flavors[*].resources[name=pods]",
            kueue(
                "ClusterQueue",
                "cq",
                {"resourceGroups": [group(["cpu"], ("a", {"cpu": 4}), ("b", {"cpu": 2}))]},
            ),
            id="pods-quota-in-every-flavor",
        ),
        pytest.param(
            kueue(
                "ClusterQueue",
                "cq",
                {
                    "resourceGroups": [
                        group(["cpu"], ("a", {"cpu": 4})),
                        group(["pods"], ("b", {"pods": 5})),
                    ]
                },
            ),
            "spec.resourceGroups[1].flavors[0].resources[name=pods]",
            kueue("ClusterQueue", "cq", {"resourceGroups": [group(["cpu"], ("a", {"cpu": 4}))]}),
            id="a-group-of-pods-alone-goes",
        ),
        pytest.param(
            cq("cq", group(["CPU"], ("a", {"CPU": {"nominalQuota": 4, "note": "x"}}))),
            "spec.resourceGroups[*].flavors[*].resources[*].note",
            cq("cq", group(["CPU"], ("a", {"CPU": 4}))),
            id="our-api-version-too",
        ),
    ],
)
def test_ignore_fields_drops_the_listed_fields_as_if_absent(
    document: dict[str, object], paths: str, without: dict[str, object]
) -> None:
    flavors = [rf("a"), rf("b")]
    # Without the annotation each of those fields is a problem, and nothing else is.
    patterns = [path_pattern(path.strip()) for path in paths.split(",") if path.strip()]
    for problem in problems_of([*flavors, document]):
        assert any(p.fullmatch(problem.field) for p in patterns), problem
    assert load_config([*flavors, ignoring(document, paths)]) == load_config([*flavors, without])
