"""The config loader: sources, our apiVersion, Kueue's documents, every problem, round trips.

Expected configs are written out by hand from the fixture files (Kueue's own format, in
tests/engine/fixtures/), so a mapping mistake shows up as a field-by-field diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionCheckRef,
    AdmissionFairSharing,
    BorrowWithinCohort,
    BorrowWithinCohortPolicy,
    ClusterQueue,
    Cohort,
    FairSharing,
    FairSharingStrategy,
    FlavorFungibility,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    ProvisioningMode,
    Queue,
    QueueConfig,
    QueueingStrategy,
    ReclaimWithinCohort,
    RequeuingStrategy,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    Settings,
    StopPolicy,
    WaitForPlacement,
    WhenCanBorrow,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.config_loader import (
    API_VERSION,
    dump_yaml,
    load_config,
    parse_documents,
    parse_yaml,
    to_documents,
)
from ray_queue.engine.errors import ConfigError, ConfigProblem
from ray_queue.engine.model import WorkloadState
from tests.engine.builders import WorkloadBuilder, flavor_of, new_engine, state, used

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
THREE_TEAMS = REPO / "examples" / "config" / "three-teams.yaml"
GI = 2**30


# -- small document builders ---------------------------------------------------------


def doc(
    kind: str, name: str | None, spec: dict[str, object] | None = None, **top: object
) -> dict[str, object]:
    out: dict[str, object] = {"apiVersion": API_VERSION, "kind": kind}
    if name is not None:
        out["metadata"] = {"name": name}
    if spec is not None:
        out["spec"] = spec
    out.update(top)
    return out


def rf(name: str, **spec: object) -> dict[str, object]:
    return doc("ResourceFlavor", name, dict(spec))


def group(covered: list[str], *flavors: tuple[str, dict[str, object]]) -> dict[str, object]:
    """``group(["CPU"], ("a", {"CPU": 4}))``; a quota value may be a dict of fields."""
    return {
        "coveredResources": covered,
        "flavors": [
            {
                "name": flavor,
                "resources": [
                    {"name": r, **(q if isinstance(q, dict) else {"nominalQuota": q})}
                    for r, q in quotas.items()
                ],
            }
            for flavor, quotas in flavors
        ],
    }


def cq(name: str, *groups: dict[str, object], **spec: object) -> dict[str, object]:
    return doc("ClusterQueue", name, {"resourceGroups": list(groups), **spec})


def queue(name: str, cluster_queue: str, **spec: object) -> dict[str, object]:
    return doc("Queue", name, {"clusterQueue": cluster_queue, **spec})


def problems_of(docs: list[dict[str, object]] | str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(docs)
    return info.value.problems


def where(problems: list[ConfigProblem]) -> set[tuple[str, str]]:
    return {(p.document, p.field) for p in problems}


BASE = [rf("a"), cq("cq", group(["CPU"], ("a", {"CPU": 4})))]


# -- sources -------------------------------------------------------------------------


def test_three_teams_example_loads_from_a_path_string() -> None:
    config = load_config(str(THREE_TEAMS))
    assert set(config.flavors) == {"a100", "cpu"}
    assert set(config.cluster_queues) == {"training", "research", "analytics"}
    assert {cq.cohort for cq in config.cluster_queues.values()} == {"ml-platform"}
    assert {q.name: q.cluster_queue for q in config.queues.values()} == {
        "training": "training",
        "research": "research",
        "analytics": "analytics",
    }
    assert config.flavors["a100"] == ResourceFlavor(
        name="a100",
        node_labels={"ray.io/accelerator-type": "A100"},
        worker_group="gpu-a100",
        provisioning=ProvisioningMode.ALL_AT_ONCE,
    )
    research = config.cluster_queues["research"]
    assert research.quotas()[("a100", "GPU")] == ResourceQuota("GPU", 2000, borrowing_limit=2000)
    assert research.quotas()[("a100", "memory")].nominal == 192 * GI * 1000
    assert research.preemption.borrow_within_cohort == BorrowWithinCohort(
        BorrowWithinCohortPolicy.LOWER_PRIORITY, max_priority_threshold=100
    )
    assert config.cluster_queues["training"].quotas()[("a100", "GPU")].lending_limit == 2000
    assert config.cluster_queues["analytics"].queueing_strategy is QueueingStrategy.STRICT_FIFO
    assert config.priority_classes["prod"].value == 1000
    assert config.default_priority() == 100
    assert config.settings.wait_for_placement == WaitForPlacement(enable=True, timeout_s=600.0)
    assert config.settings.requeuing == RequeuingStrategy(5, 30.0, 1800.0)


def test_three_teams_example_drives_the_engine() -> None:
    """The example's numbers work as its comments say: research borrows idle GPUs."""
    engine, _ = new_engine(load_config(THREE_TEAMS))
    gpu_job = WorkloadBuilder("big").queue("research").bundles({"GPU": 1, "CPU": 4}, count=4)
    engine.submit(gpu_job.build())
    cpu_job = WorkloadBuilder("etl").queue("analytics").bundles({"CPU": 8}).created(1)
    engine.submit(cpu_job.build())
    engine.schedule()
    # 4 GPUs = research's 2 + 2 borrowed (its borrowingLimit), all on a100.
    assert state(engine, "big") is WorkloadState.ADMITTED
    assert flavor_of(engine, "big", "GPU") == "a100"
    assert used(engine, "research", "a100", "GPU") == 4
    # CPU-only work lands on the cpu flavor first.
    assert flavor_of(engine, "etl", "CPU") == "cpu"


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda p: p, id="pathlib-path"),
        pytest.param(str, id="path-string"),
        pytest.param(lambda p: p.read_text(), id="yaml-text"),
        pytest.param(lambda p: list(yaml.safe_load_all(p.read_text())), id="list-of-dicts"),
    ],
)
def test_every_source_form_gives_the_same_config(make_source: object) -> None:
    assert callable(make_source)
    assert load_config(make_source(THREE_TEAMS)) == load_config(THREE_TEAMS)


def test_a_single_dict_is_one_document() -> None:
    config = load_config(rf("a", nodeLabels={"zone": "x"}))
    assert config.flavors == {"a": ResourceFlavor("a", {"zone": "x"})}


def test_a_queue_config_is_returned_as_is() -> None:
    config = QueueConfig()
    assert load_config(config) is config


def test_empty_documents_and_kubectl_lists_are_accepted() -> None:
    text = "---\n" + yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": BASE}) + "---\n"
    config = load_config(text)
    assert set(config.cluster_queues) == {"cq"}


def test_a_yaml_list_of_documents_is_accepted() -> None:
    assert set(load_config(yaml.safe_dump(BASE)).cluster_queues) == {"cq"}


def test_a_missing_file_is_reported_as_such() -> None:
    problems = problems_of("no-such-config.yaml")
    assert "no such file" in problems[0].message


def test_an_unreadable_path_object_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match="line 3"):
        load_config("apiVersion: x\nkind: y\n  bad: [indent\n")


def test_an_unsupported_source_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot load a config from int"):
        load_config(42)  # type: ignore[arg-type]


def test_utf8_bytes_are_yaml_text() -> None:
    assert load_config(THREE_TEAMS.read_bytes()) == load_config(THREE_TEAMS)


def test_parse_yaml_never_reads_a_file() -> None:
    """Text from the network must not be able to name a server-side file."""
    with pytest.raises(ConfigError) as info:
        parse_yaml(str(THREE_TEAMS))
    assert "must be a mapping" in info.value.problems[0].message
    assert parse_yaml(THREE_TEAMS.read_text()) == load_config(THREE_TEAMS)


def test_json_numbers_from_a_protobuf_struct_are_accepted() -> None:
    """gRPC documents arrive through a protobuf Struct, where every number is a double."""
    docs = [
        *BASE,
        doc("PriorityClass", "p", value=1000.0),
        doc(
            "Configuration",
            None,
            {"waitForPodsReady": {"requeuingStrategy": {"backoffLimitCount": 3.0}}},
        ),
    ]
    config = load_config(docs)
    assert config.priority_classes["p"].value == 1000
    assert config.settings.requeuing.backoff_limit_count == 3
    assert "must be an integer" in problems_of([doc("PriorityClass", "p", value=1.5)])[0].message


def test_an_empty_config_is_valid() -> None:
    assert load_config("") == QueueConfig()
    assert load_config([]) == QueueConfig()


# -- Kueue's documents, unchanged ----------------------------------------------------


def test_kueue_v1beta1_documents_load_unchanged() -> None:
    expected = QueueConfig(
        flavors={
            "on-demand": ResourceFlavor(
                "on-demand", {"cloud.google.com/gke-provisioning": "standard"}
            ),
            "spot": ResourceFlavor("spot", {"cloud.google.com/gke-spot": "true"}),
            "h100": ResourceFlavor(
                "h100", {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
            ),
        },
        cluster_queues={
            "team-a": ClusterQueue(
                name="team-a",
                cohort="research",
                queueing_strategy=QueueingStrategy.STRICT_FIFO,
                resource_groups=(
                    ResourceGroup(
                        ("CPU", "memory"),
                        (
                            FlavorQuotas(
                                "on-demand",
                                (
                                    ResourceQuota("CPU", 9000, borrowing_limit=4500),
                                    ResourceQuota(
                                        "memory", 36 * GI * 1000, lending_limit=12 * GI * 1000
                                    ),
                                ),
                            ),
                            FlavorQuotas(
                                "spot",
                                (
                                    ResourceQuota("CPU", 18000),
                                    ResourceQuota("memory", 72 * GI * 1000),
                                ),
                            ),
                        ),
                    ),
                    ResourceGroup(
                        ("GPU", "pods"),
                        (
                            FlavorQuotas(
                                "h100",
                                (ResourceQuota("GPU", 8000), ResourceQuota("pods", 1_000_000)),
                            ),
                        ),
                    ),
                ),
                flavor_fungibility=FlavorFungibility(
                    WhenCanBorrow.TRY_NEXT_FLAVOR, WhenCanPreempt.PREEMPT
                ),
                preemption=Preemption(
                    within_cluster_queue=WithinClusterQueue.LOWER_OR_NEWER_EQUAL_PRIORITY,
                    reclaim_within_cohort=ReclaimWithinCohort.ANY,
                    borrow_within_cohort=BorrowWithinCohort(
                        BorrowWithinCohortPolicy.LOWER_PRIORITY, 100
                    ),
                ),
                fair_sharing_weight=1.5,
                admission_checks=(AdmissionCheckRef("dws-prov"),),
            ),
            "team-b": ClusterQueue(
                name="team-b",
                cohort="research",
                stop_policy=StopPolicy.HOLD,
                resource_groups=(
                    ResourceGroup(
                        ("CPU", "memory"),
                        (
                            FlavorQuotas(
                                "on-demand",
                                (
                                    ResourceQuota("CPU", 500),
                                    ResourceQuota("memory", 3 * GI // 2 * 1000),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        },
        cohorts={
            "research": Cohort("research", parent="company"),
            # Named as a parent but never defined: created implicitly, as Kueue does.
            "company": Cohort("company"),
        },
        queues={
            "team-a-queue": Queue("team-a-queue", "team-a"),
            "team-b-queue": Queue("team-b-queue", "team-b", stop_policy=StopPolicy.HOLD_AND_DRAIN),
        },
        priority_classes={
            "high-priority": PriorityClass(
                "high-priority",
                10000,
                description="value of the priority for the workloads that must run first",
            ),
            "low-priority": PriorityClass("low-priority", 10),
        },
        admission_checks={
            "dws-prov": AdmissionCheck(
                "dws-prov",
                "kueue.x-k8s.io/provisioning-request",
                {
                    "provisioningClassName": "queued-provisioning.gke.io",
                    "maxRunDurationSeconds": "3600",
                    "managedResources": "GPU",
                    "retryStrategy.backoffLimitCount": "2",
                    "retryStrategy.backoffBaseSeconds": "60",
                    "retryStrategy.backoffMaxSeconds": "1800",
                },
            )
        },
    )
    assert load_config(FIXTURES / "kueue-v1beta1.yaml") == expected


def test_kueue_v1beta2_documents_load_unchanged() -> None:
    default_cpu = ResourceGroup(
        ("CPU",), (FlavorQuotas("default-flavor", (ResourceQuota("CPU", 10000),)),)
    )
    expected = QueueConfig(
        flavors={
            "tpu-v5e": ResourceFlavor(
                "tpu-v5e",
                {
                    "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                    "cloud.google.com/gke-tpu-topology": "2x4",
                },
            ),
            "default-flavor": ResourceFlavor("default-flavor"),
        },
        cohorts={
            "org": Cohort("org", resource_groups=(default_cpu,), fair_sharing_weight=2.0),
            "ml": Cohort(
                "ml",
                parent="org",
                resource_groups=(
                    ResourceGroup(
                        ("CPU",),
                        (
                            FlavorQuotas(
                                "default-flavor",
                                (
                                    ResourceQuota(
                                        "CPU", 4000, borrowing_limit=6000, lending_limit=2000
                                    ),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        },
        cluster_queues={
            "tpu-queue": ClusterQueue(
                name="tpu-queue",
                cohort="ml",
                resource_groups=(
                    ResourceGroup(
                        ("CPU", "memory"),
                        (
                            FlavorQuotas(
                                "default-flavor",
                                (
                                    ResourceQuota("CPU", 16000),
                                    ResourceQuota("memory", 64 * GI * 1000),
                                ),
                            ),
                        ),
                    ),
                    ResourceGroup(
                        ("TPU",), (FlavorQuotas("tpu-v5e", (ResourceQuota("TPU", 32000),)),)
                    ),
                ),
                flavor_fungibility=FlavorFungibility(WhenCanBorrow.BORROW, WhenCanPreempt.PREEMPT),
                preemption=Preemption(
                    within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
                    reclaim_within_cohort=ReclaimWithinCohort.LOWER_PRIORITY,
                ),
                fair_sharing_weight=0.5,
                usage_based_fair_sharing=True,
                admission_checks=(
                    AdmissionCheckRef("tpu-prov", ("tpu-v5e",)),
                    AdmissionCheckRef("audit"),
                ),
            )
        },
        queues={
            "ml": Queue("ml", "tpu-queue", fair_sharing_weight=3.0),
            "ml-interactive": Queue("ml-interactive", "tpu-queue"),
        },
        priority_classes={
            "urgent": PriorityClass("urgent", 1_000_000, description="Drop everything."),
            "standard": PriorityClass(
                "standard", 1000, global_default=True, description="The cluster-wide default."
            ),
        },
        admission_checks={
            "tpu-prov": AdmissionCheck(
                "tpu-prov",
                "kueue.x-k8s.io/provisioning-request",
                {
                    "provisioningClassName": "best-effort-atomic-scale-up.autoscaling.x-k8s.io",
                    "podSetMergePolicy": "IdenticalWorkloadSchedulingRequirements",
                },
            ),
            "audit": AdmissionCheck(
                "audit",
                "example.com/audit",
                {"apiGroup": "example.com", "kind": "AuditPolicy", "name": "strict"},
            ),
        },
        settings=Settings(
            fair_sharing=FairSharing(
                enable=True, preemption_strategies=(FairSharingStrategy.LESS_THAN_INITIAL_SHARE,)
            ),
            admission_fair_sharing=AdmissionFairSharing(usage_half_life_s=7 * 24 * 3600.0),
            wait_for_placement=WaitForPlacement(enable=True, timeout_s=450.0),
            requeuing=RequeuingStrategy(
                backoff_limit_count=3, backoff_base_s=10.0, backoff_max_s=600.0
            ),
        ),
    )
    assert load_config(FIXTURES / "kueue-v1beta2.yaml") == expected


@pytest.mark.parametrize(
    ("kubernetes", "ray"),
    [
        pytest.param("cpu", "CPU", id="cpu"),
        pytest.param("nvidia.com/gpu", "GPU", id="nvidia"),
        pytest.param("amd.com/gpu", "GPU", id="amd"),
        pytest.param("google.com/tpu", "TPU", id="tpu"),
        pytest.param("memory", "memory", id="memory"),
        pytest.param("CPU", "CPU", id="ray-spelling-kept"),
        pytest.param("example.com/fpga", "example.com/fpga", id="custom-kept"),
    ],
)
def test_kubernetes_resource_names_map_to_ray(kubernetes: str, ray: str) -> None:
    config = load_config([rf("a"), cq("cq", group([kubernetes], ("a", {kubernetes: 1})))])
    assert config.cluster_queues["cq"].resource_groups[0].covered_resources == (ray,)
    assert config.cluster_queues["cq"].quotas()[("a", ray)].nominal == 1000


def test_two_kubernetes_names_for_one_ray_resource_is_a_problem() -> None:
    problems = problems_of(
        [rf("a"), cq("cq", group(["nvidia.com/gpu", "amd.com/gpu"], ("a", {"nvidia.com/gpu": 1})))]
    )
    assert ("ClusterQueue/cq", "spec.resourceGroups[0].coveredResources") in where(problems)
    assert "both Ray resource 'GPU'" in problems[0].message


def test_kueue_fields_we_do_not_use_are_ignored() -> None:
    kueue_cq = {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "ClusterQueue",
        "metadata": {"name": "cq", "uid": "1234", "resourceVersion": "7"},
        "spec": {"namespaceSelector": {}, "someFutureField": 1, "resourceGroups": []},
        "status": {"pendingWorkloads": 1},
    }
    assert set(load_config([kueue_cq]).cluster_queues) == {"cq"}


def test_kueue_renamed_fields_are_read_in_either_spelling() -> None:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": "cq"},
            "spec": {"cohort": "old-spelling"},
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "Cohort",
            "metadata": {"name": "child"},
            "spec": {"parentName": "new-spelling"},
        },
    ]
    config = load_config(docs)
    assert config.cluster_queues["cq"].cohort == "old-spelling"
    assert config.cohorts["child"].parent == "new-spelling"


def test_local_queues_with_one_name_in_two_namespaces_are_a_problem() -> None:
    def local_queue(namespace: str) -> dict[str, object]:
        return {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "LocalQueue",
            "metadata": {"name": "shared", "namespace": namespace},
            "spec": {"clusterQueue": "cq"},
        }

    problems = problems_of([*BASE, local_queue("team-a"), local_queue("team-b")])
    assert len(problems) == 1
    assert "'team-a'" in problems[0].message and "'team-b'" in problems[0].message
    assert problems[0].field == "metadata.namespace"


def test_an_admission_check_naming_a_missing_provisioning_config_is_a_problem() -> None:
    check: dict[str, object] = {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "AdmissionCheck",
        "metadata": {"name": "prov"},
        "spec": {
            "controllerName": "kueue.x-k8s.io/provisioning-request",
            "parameters": {
                "apiGroup": "kueue.x-k8s.io",
                "kind": "ProvisioningRequestConfig",
                "name": "missing",
            },
        },
    }
    problems = problems_of([check])
    assert where(problems) == {("AdmissionCheck/prov", "spec.parameters.name")}
    assert "ProvisioningRequestConfig 'missing' is not defined" in problems[0].message


# -- our apiVersion ------------------------------------------------------------------


def test_our_own_documents_cover_every_field() -> None:
    docs = [
        doc(
            "Configuration",
            "default",
            {
                "fairSharing": {"enable": True, "preemptionStrategies": ["LessThanInitialShare"]},
                "admissionFairSharing": {"usageHalfLifeTime": "1h30m"},
                "waitForPodsReady": {
                    "enable": True,
                    "timeout": 90,
                    "requeuingStrategy": {
                        "backoffLimitCount": 0,
                        "backoffBaseSeconds": "5s",
                        "backoffMaxSeconds": 20,
                    },
                },
            },
        ),
        rf("a", nodeLabels={"k": "v"}, workerGroup="g", provisioning="all-at-once"),
        doc("Cohort", "root", {"fairSharing": {"weight": 0}}),
        doc(
            "Cohort",
            "mid",
            {
                "parent": "root",
                "resourceGroups": [
                    group(["CPU"], ("a", {"CPU": {"nominalQuota": 2, "lendingLimit": 5}}))
                ],
            },
        ),
        cq(
            "cq",
            group(
                ["CPU"],
                ("a", {"CPU": {"nominalQuota": "1500m", "borrowingLimit": 1, "lendingLimit": "1"}}),
            ),
            cohort="mid",
            queueingStrategy="StrictFIFO",
            stopPolicy="HoldAndDrain",
            flavorFungibility={"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "MayStopSearch"},
            preemption={
                "withinClusterQueue": "LowerPriority",
                "reclaimWithinCohort": "Any",
                "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": -5},
            },
            fairSharing={"weight": "250m"},
            admissionScope={"admissionMode": "UsageBasedAdmissionFairSharing"},
            admissionChecks=["gate"],
        ),
        queue("q", "cq", stopPolicy="Hold", fairSharing={"weight": 2}),
        doc("PriorityClass", "p", value=-3, globalDefault=True, description="d"),
        doc(
            "AdmissionCheck",
            "gate",
            {"controllerName": "c", "parameters": {"n": 3, "b": True, "s": "x"}},
        ),
    ]
    config = load_config(docs)
    assert config.settings == Settings(
        fair_sharing=FairSharing(True, (FairSharingStrategy.LESS_THAN_INITIAL_SHARE,)),
        admission_fair_sharing=AdmissionFairSharing(5400.0),
        wait_for_placement=WaitForPlacement(True, 90.0),
        requeuing=RequeuingStrategy(0, 5.0, 20.0),
    )
    assert config.flavors["a"] == ResourceFlavor("a", {"k": "v"}, "g", ProvisioningMode.ALL_AT_ONCE)
    assert config.cohorts["root"] == Cohort("root", fair_sharing_weight=0.0)
    assert config.cohorts["mid"].quotas()[("a", "CPU")] == ResourceQuota(
        "CPU", 2000, lending_limit=5000
    )
    assert config.cluster_queues["cq"] == ClusterQueue(
        name="cq",
        cohort="mid",
        resource_groups=(
            ResourceGroup(
                ("CPU",), (FlavorQuotas("a", (ResourceQuota("CPU", 1500, 1000, 1000),)),)
            ),
        ),
        queueing_strategy=QueueingStrategy.STRICT_FIFO,
        preemption=Preemption(
            WithinClusterQueue.LOWER_PRIORITY,
            ReclaimWithinCohort.ANY,
            BorrowWithinCohort(BorrowWithinCohortPolicy.LOWER_PRIORITY, -5),
        ),
        flavor_fungibility=FlavorFungibility(WhenCanBorrow.TRY_NEXT_FLAVOR, WhenCanPreempt.PREEMPT),
        fair_sharing_weight=0.25,
        admission_checks=(AdmissionCheckRef("gate"),),
        stop_policy=StopPolicy.HOLD_AND_DRAIN,
        usage_based_fair_sharing=True,
    )
    assert config.queues["q"] == Queue("q", "cq", 2.0, StopPolicy.HOLD)
    assert config.priority_classes["p"] == PriorityClass("p", -3, True, "d")
    assert config.admission_checks["gate"] == AdmissionCheck(
        "gate", "c", {"n": "3", "b": "true", "s": "x"}
    )


@pytest.mark.parametrize(
    ("document", "field", "hint"),
    [
        pytest.param(
            cq("cq", group(["CPU"], ("a", {"CPU": {"nominalQouta": 4}}))),
            "spec.resourceGroups[0].flavors[0].resources[0].nominalQouta",
            "did you mean 'nominalQuota'",
            id="quota-typo",
        ),
        pytest.param(
            cq("cq", group(["CPU"], ("a", {"CPU": 4})), cohrot="x"),
            "spec.cohrot",
            "did you mean 'cohort'",
            id="spec-typo",
        ),
        pytest.param(
            doc("PriorityClass", "p", {"value": 1}, value=1),
            "spec",
            "fields allowed here: apiVersion, description, globalDefault",
            id="priority-class-has-no-spec",
        ),
        pytest.param(
            {**cq("cq", group(["CPU"], ("a", {"CPU": 4}))), "metdata": {}},
            "metdata",
            "did you mean 'metadata'",
            id="top-level-typo",
        ),
    ],
)
def test_an_unknown_field_in_our_api_version_is_named(
    document: dict[str, object], field: str, hint: str
) -> None:
    problems = problems_of([rf("a"), document])
    matching = [p for p in problems if p.field == field]
    assert matching, problems
    assert "unknown field" in matching[0].message and hint in matching[0].message


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


def test_undefined_cohorts_are_created_implicitly() -> None:
    config = load_config(
        [
            rf("a"),
            cq("cq", group(["CPU"], ("a", {"CPU": 1})), cohortName="team"),
            doc("Cohort", "team", {"parentName": "org"}),
        ]
    )
    assert config.cohorts["org"] == Cohort("org")
    assert config.cohorts["team"] == Cohort("team", parent="org")


# -- writing back --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(THREE_TEAMS, id="three-teams"),
        pytest.param(FIXTURES / "kueue-v1beta1.yaml", id="kueue-v1beta1"),
        pytest.param(FIXTURES / "kueue-v1beta2.yaml", id="kueue-v1beta2"),
    ],
)
def test_fixtures_round_trip_through_our_api_version(path: Path) -> None:
    config = load_config(path)
    docs = to_documents(config)
    assert {d["apiVersion"] for d in docs} == {API_VERSION}
    assert parse_documents(docs) == config
    assert load_config(dump_yaml(config)) == config


def test_dump_yaml_is_readable() -> None:
    text = dump_yaml(load_config(THREE_TEAMS))
    assert "nominalQuota: 576Gi" in text
    assert "timeout: 10m" in text
    assert "kind: PriorityClass" in text


# -- round trip on generated configs -------------------------------------------------

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=6)
RESOURCES = ["CPU", "GPU", "TPU", "memory", "pods", "example.com/fpga"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
QUOTA = st.integers(min_value=0, max_value=10**15)
WEIGHT = st.one_of(st.just(1.0), st.floats(min_value=0, max_value=1e6, allow_nan=False))
SECONDS = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(float),
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
)


@st.composite
def resource_groups(
    draw: st.DrawFn, flavors: list[str], *, cluster_queue: bool, has_parent: bool
) -> tuple[ResourceGroup, ...]:
    resources = draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=4))
    used = draw(st.permutations(flavors))
    group_count = draw(st.integers(min_value=0, max_value=min(len(resources), len(used), 3)))
    groups = []
    for i in range(group_count):
        covered = resources[i::group_count]
        group_flavors = used[i::group_count]
        fqs = []
        for flavor in group_flavors:
            quotas = []
            for resource in covered:
                nominal = draw(QUOTA)
                borrowing = draw(st.none() | QUOTA) if has_parent else None
                lending = None
                if has_parent:
                    upper = nominal if cluster_queue else 10**15
                    lending = draw(st.none() | st.integers(min_value=0, max_value=upper))
                quotas.append(ResourceQuota(resource, nominal, borrowing, lending))
            fqs.append(FlavorQuotas(flavor, tuple(quotas)))
        groups.append(ResourceGroup(tuple(covered), tuple(fqs)))
    return tuple(groups)


@st.composite
def preemptions(draw: st.DrawFn) -> Preemption:
    reclaim = draw(st.sampled_from(ReclaimWithinCohort))
    policy = BorrowWithinCohortPolicy.NEVER
    if reclaim is not ReclaimWithinCohort.NEVER:
        policy = draw(st.sampled_from(BorrowWithinCohortPolicy))
    threshold = None
    if policy is BorrowWithinCohortPolicy.LOWER_PRIORITY:
        threshold = draw(st.none() | st.integers(-(2**31), 2**31 - 1))
    return Preemption(
        draw(st.sampled_from(WithinClusterQueue)), reclaim, BorrowWithinCohort(policy, threshold)
    )


@st.composite
def queue_configs(draw: st.DrawFn) -> QueueConfig:
    flavor_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    flavors = {
        n: ResourceFlavor(
            n,
            draw(st.dictionaries(NAMES, TEXT, max_size=2)),
            draw(st.none() | NAMES),
            draw(st.sampled_from(ProvisioningMode)),
        )
        for n in flavor_names
    }
    cohort_names = draw(st.lists(NAMES, max_size=3, unique=True))
    cohorts = {}
    for i, name in enumerate(cohort_names):
        parent = draw(st.none() | st.sampled_from(cohort_names[:i])) if i else None
        cohorts[name] = Cohort(
            name,
            parent,
            draw(resource_groups(flavor_names, cluster_queue=False, has_parent=parent is not None)),
            draw(WEIGHT),
        )
    check_names = draw(st.lists(NAMES, max_size=3, unique=True))
    checks = {
        n: AdmissionCheck(n, draw(NAMES), draw(st.dictionaries(NAMES, TEXT, max_size=2)))
        for n in check_names
    }
    cq_names = draw(
        st.lists(NAMES.filter(lambda n: n not in cohort_names), min_size=1, max_size=3, unique=True)
    )
    cluster_queues = {}
    for name in cq_names:
        cohort = draw(st.none() | st.sampled_from(cohort_names)) if cohort_names else None
        groups = draw(
            resource_groups(flavor_names, cluster_queue=True, has_parent=cohort is not None)
        )
        used = sorted({fq.flavor for g in groups for fq in g.flavors})
        refs: list[AdmissionCheckRef] = []
        for check in (
            draw(st.lists(st.sampled_from(check_names), unique=True)) if check_names else []
        ):
            on = draw(st.lists(st.sampled_from(used), unique=True, max_size=2)) if used else []
            refs.append(AdmissionCheckRef(check, tuple(on)))
        cluster_queues[name] = ClusterQueue(
            name=name,
            resource_groups=groups,
            cohort=cohort,
            queueing_strategy=draw(st.sampled_from(QueueingStrategy)),
            preemption=draw(preemptions()),
            flavor_fungibility=FlavorFungibility(
                draw(st.sampled_from(WhenCanBorrow)), draw(st.sampled_from(WhenCanPreempt))
            ),
            fair_sharing_weight=draw(WEIGHT),
            admission_checks=tuple(refs),
            stop_policy=draw(st.sampled_from(StopPolicy)),
            usage_based_fair_sharing=draw(st.booleans()),
        )
    queues = {
        n: Queue(
            n, draw(st.sampled_from(cq_names)), draw(WEIGHT), draw(st.sampled_from(StopPolicy))
        )
        for n in draw(st.lists(NAMES, max_size=3, unique=True))
    }
    pc_names = draw(st.lists(NAMES, max_size=3, unique=True))
    default = draw(st.none() | st.sampled_from(pc_names)) if pc_names else None
    priority_classes = {
        n: PriorityClass(n, draw(st.integers(-(2**31), 2**31 - 1)), n == default, draw(TEXT))
        for n in pc_names
    }
    base = draw(SECONDS)
    strategies = draw(st.permutations(list(FairSharingStrategy)))
    settings_value = Settings(
        fair_sharing=FairSharing(
            draw(st.booleans()), tuple(strategies[: draw(st.integers(1, len(strategies)))])
        ),
        admission_fair_sharing=AdmissionFairSharing(draw(SECONDS)),
        wait_for_placement=WaitForPlacement(draw(st.booleans()), draw(SECONDS)),
        requeuing=RequeuingStrategy(
            draw(st.none() | st.integers(0, 100)), base, base + draw(SECONDS)
        ),
    )
    return QueueConfig(
        flavors=flavors,
        cluster_queues=cluster_queues,
        cohorts=cohorts,
        queues=queues,
        priority_classes=priority_classes,
        admission_checks=checks,
        settings=draw(st.sampled_from([Settings(), settings_value])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queue_configs())
def test_to_documents_then_parse_documents_is_identity(config: QueueConfig) -> None:
    assert parse_documents(to_documents(config)) == config


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queue_configs())
def test_dump_yaml_then_load_config_is_identity(config: QueueConfig) -> None:
    assert load_config(dump_yaml(config)) == config


def test_the_examples_in_docs_config_md_load_together() -> None:
    """docs/config.md shows one document per kind; together they must form a valid config."""
    text = (REPO / "docs" / "config.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    ours = [b for b in blocks if f"apiVersion: {API_VERSION}" in b]
    config = load_config("---\n".join(ours))
    assert set(config.flavors) == {"a100", "cpu"}
    assert config.cluster_queues["research"].admission_checks == (
        AdmissionCheckRef("provisioning", ("a100",)),
    )
    assert config.cohorts["company"] == Cohort("company")
