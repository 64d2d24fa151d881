"""The config loader: sources, our apiVersion, Kueue's documents, every problem, round trips.

Expected configs are written out by hand from the fixture files (Kueue's own format, in
tests/engine/fixtures/), so a mapping mistake shows up as a field-by-field diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
from ray_queue.engine.config_documents import ray_resource_name
from ray_queue.engine.config_loader import (
    API_VERSION,
    dump_yaml,
    load_config,
    parse_documents,
    parse_yaml,
    to_documents,
)
from ray_queue.engine.errors import ConfigError
from ray_queue.engine.model import WorkloadState
from tests.engine.builders import WorkloadBuilder, flavor_of, new_engine, state, used
from tests.engine.config_docs import (
    BASE,
    FIXTURES,
    GI,
    KUEUE,
    REPO,
    THREE_TEAMS,
    cq,
    doc,
    group,
    kueue,
    problems_of,
    queue,
    rf,
    where,
)

pytestmark = pytest.mark.timeout(120)


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
                    # `pods` is dropped on purpose (its ignore-fields annotation).
                    ResourceGroup(("GPU",), (FlavorQuotas("h100", (ResourceQuota("GPU", 8000),)),)),
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
        # Our apiVersion names Ray resources: a custom one may be called anything. (In a
        # Kueue document `pods` means Kubernetes pods, which Ray has not: a problem.)
        pytest.param("pods", "pods", id="pods-custom-in-our-api-version"),
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


#: What `kubectl get -o yaml` adds to an object's metadata: plumbing, not config.
PLUMBING_METADATA: dict[str, object] = {
    "namespace": "team-a",
    "labels": {"team": "a"},
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    "uid": "0b5f9c1e-7d5a-4c8e-9f0a-3c2d1e4b5a69",
    "resourceVersion": "4711",
    "generation": 3,
    "creationTimestamp": "2026-11-30T09:00:00Z",
    "finalizers": ["kueue.x-k8s.io/resource-in-use"],
    "managedFields": [{"manager": "kubectl", "operation": "Update"}],
}


@pytest.mark.parametrize(
    "api_version",
    [
        pytest.param(API_VERSION, id="ours"),
        pytest.param(KUEUE, id="kueue-v1beta1"),
        pytest.param("kueue.x-k8s.io/v1beta2", id="kueue-v1beta2"),
    ],
)
def test_kubernetes_object_plumbing_is_ignored_in_every_api_version(api_version: str) -> None:
    plain = [rf("a"), cq("cq", group(["cpu"], ("a", {"cpu": 1}))), queue("q", "cq")]
    printed = [
        {
            **document,
            "apiVersion": api_version,
            "metadata": {**PLUMBING_METADATA, "name": name},
            "status": {"conditions": [{"type": "Active", "status": "True"}]},
        }
        for document, name in zip(plain, ("a", "cq", "q"), strict=True)
    ]
    if api_version != API_VERSION:
        printed[2]["kind"] = "LocalQueue"
    assert load_config(printed) == load_config(plain)


@pytest.mark.parametrize(
    ("document", "without"),
    [
        pytest.param(
            kueue("ClusterQueue", "cq", {"namespaceSelector": {}, "resourceGroups": []}),
            kueue("ClusterQueue", "cq", {"resourceGroups": []}),
            id="namespace-selector-every-namespace",
        ),
        pytest.param(
            kueue(
                "PriorityClass",
                "p",
                api_version="scheduling.k8s.io/v1",
                value=1,
                preemptionPolicy="PreemptLowerPriority",
            ),
            kueue("PriorityClass", "p", api_version="scheduling.k8s.io/v1", value=1),
            id="preempt-lower-priority",
        ),
        pytest.param(
            kueue(
                "Configuration",
                None,
                api_version="config.kueue.x-k8s.io/v1beta1",
                manageJobsWithoutQueueName=False,
                waitForPodsReady={
                    "enable": True,
                    "blockAdmission": False,
                    "requeuingStrategy": {"timestamp": "Creation"},
                },
            ),
            kueue(
                "Configuration",
                None,
                api_version="config.kueue.x-k8s.io/v1beta1",
                waitForPodsReady={"enable": True},
            ),
            id="configuration-as-ray-queue-behaves",
        ),
        pytest.param(
            kueue("AdmissionCheck", "c", {"controllerName": "x", "retryDelayMinutes": 15}),
            kueue("AdmissionCheck", "c", {"controllerName": "x"}),
            id="retry-delay-minutes-kueue-itself-ignores",
        ),
    ],
)
def test_a_kueue_field_set_to_what_ray_queue_does_anyway_loads(
    document: dict[str, object], without: dict[str, object]
) -> None:
    assert load_config([document]) == load_config([without])


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


def test_the_ignore_fields_example_in_docs_config_md_loads() -> None:
    text = (REPO / "docs" / "config.md").read_text()
    block = text.split("## Strict fields", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config([rf("on-demand"), *yaml.safe_load_all(block)])
    assert config.cluster_queues["team-b"].resource_groups[0].covered_resources == ("CPU",)


@pytest.mark.parametrize(
    ("path", "queue_name", "request_units", "expected_flavor"),
    [
        pytest.param(
            FIXTURES / "kueue-v1beta1.yaml",
            "team-a-queue",
            {"nvidia.com/gpu": 2},
            "h100",
            id="kueue-v1beta1",
        ),
        pytest.param(
            FIXTURES / "kueue-v1beta2.yaml", "ml", {"cpu": 20}, "default-flavor", id="kueue-v1beta2"
        ),
    ],
)
def test_kueue_configs_drive_the_engine(
    path: Path, queue_name: str, request_units: dict[str, float], expected_flavor: str
) -> None:
    """What the loader builds from Kueue files is a config the engine schedules with."""
    config = load_config(path)
    engine, _ = new_engine(config)
    ray_units = {ray_resource_name(k): v for k, v in request_units.items()}
    engine.submit(WorkloadBuilder("w").queue(queue_name).bundles(ray_units).build())
    engine.schedule()
    # Both ClusterQueues have admission checks, so the workload reserves quota first.
    assert state(engine, "w") is WorkloadState.QUOTA_RESERVED
    first_resource = next(iter(ray_units))
    assert flavor_of(engine, "w", first_resource) == expected_flavor
