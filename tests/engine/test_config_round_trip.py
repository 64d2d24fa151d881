"""Round trips on generated configs: writing a valid config out (as documents or YAML)
and reading it back gives the same config."""

from __future__ import annotations

import pytest
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
    dump_yaml,
    load_config,
    parse_documents,
    to_documents,
)

pytestmark = pytest.mark.timeout(120)


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
