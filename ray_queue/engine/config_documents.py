"""One config document at a time: Kubernetes-style YAML objects → engine config values.

Each supported (apiVersion, kind) has one small parser that turns the document into the
engine's frozen config value, reading fields through ``config_fields.Fields`` so that
every problem is collected rather than raised. Every apiVersion, ours and Kueue's, is
read strictly, as kubectl's strict field validation would: a field no parser reads is
a problem, because dropping it silently changes what the config means (a misspelt
``borowingLimit: 0`` left borrowing unlimited). Real Kueue fields that ray-queue does
not carry over are listed in ``UNSUPPORTED_FIELDS``, so their message says why; any
other unread field is unknown, with the closest known name. A Kueue quota on a resource
Ray has not (``pods``) is a problem too. Kubernetes object plumbing is not: ``metadata``
other than ``name`` (labels, uid, managedFields …) and a top-level ``status``, as
``kubectl get -o yaml`` prints them. A document drops fields on purpose by listing them
in its ``ray-queue.io/ignore-fields`` annotation. Where Kueue renamed a field between
versions (``cohort`` → ``cohortName``, ``Borrow`` → ``MayStopSearch``) both spellings
are read everywhere.

Cross-document checks (undefined flavors, duplicates, cohort cycles …) live in
``config_validation``; this module only knows about the document in front of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionCheckRef,
    BorrowWithinCohort,
    BorrowWithinCohortPolicy,
    ClusterQueue,
    Cohort,
    FlavorFungibility,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    ProvisioningMode,
    Queue,
    QueueingStrategy,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    StopPolicy,
    WhenCanBorrow,
    WhenCanPreempt,
    WithinClusterQueue,
)
from ray_queue.engine.config_fields import (
    IGNORE_ANNOTATION,
    DocumentContext,
    Fields,
    Problems,
    UnreadField,
    wildcard,
)

#: Our own apiVersion: Kueue's field names, plus what only a Ray cluster needs.
API_VERSION = "ray-queue.io/v1alpha1"

KUEUE_V1BETA1 = "kueue.x-k8s.io/v1beta1"
KUEUE_V1BETA2 = "kueue.x-k8s.io/v1beta2"
KUEUE_V1ALPHA1 = "kueue.x-k8s.io/v1alpha1"
KUEUE_CONFIG_V1BETA1 = "config.kueue.x-k8s.io/v1beta1"
KUEUE_CONFIG_V1BETA2 = "config.kueue.x-k8s.io/v1beta2"
K8S_SCHEDULING_V1 = "scheduling.k8s.io/v1"

_KUEUE_OBJECT_KINDS = (
    "ResourceFlavor",
    "ClusterQueue",
    "Cohort",
    "LocalQueue",
    "WorkloadPriorityClass",
    "AdmissionCheck",
    "ProvisioningRequestConfig",
)

#: apiVersion → kinds we read. Anything else is an error that lists these.
SUPPORTED_KINDS: dict[str, tuple[str, ...]] = {
    API_VERSION: (
        "ResourceFlavor",
        "ClusterQueue",
        "Cohort",
        "Queue",
        "PriorityClass",
        "AdmissionCheck",
        "Configuration",
    ),
    KUEUE_V1BETA1: _KUEUE_OBJECT_KINDS,
    KUEUE_V1BETA2: _KUEUE_OBJECT_KINDS,
    KUEUE_V1ALPHA1: ("Cohort",),
    KUEUE_CONFIG_V1BETA1: ("Configuration",),
    KUEUE_CONFIG_V1BETA2: ("Configuration",),
    K8S_SCHEDULING_V1: ("PriorityClass",),
}


class Kind(str, Enum):
    """What a document defines, whichever apiVersion spelled it."""

    FLAVOR = "ResourceFlavor"
    CLUSTER_QUEUE = "ClusterQueue"
    COHORT = "Cohort"
    QUEUE = "Queue"
    PRIORITY_CLASS = "PriorityClass"
    ADMISSION_CHECK = "AdmissionCheck"
    PROVISIONING_CONFIG = "ProvisioningRequestConfig"
    CONFIGURATION = "Configuration"


KIND_BY_NAME: dict[str, Kind] = {
    "ResourceFlavor": Kind.FLAVOR,
    "ClusterQueue": Kind.CLUSTER_QUEUE,
    "Cohort": Kind.COHORT,
    "Queue": Kind.QUEUE,
    "LocalQueue": Kind.QUEUE,
    "PriorityClass": Kind.PRIORITY_CLASS,
    "WorkloadPriorityClass": Kind.PRIORITY_CLASS,
    "AdmissionCheck": Kind.ADMISSION_CHECK,
    "ProvisioningRequestConfig": Kind.PROVISIONING_CONFIG,
    "Configuration": Kind.CONFIGURATION,
}

#: Kubernetes resource names → Ray's. Anything else is a custom Ray resource, kept as is,
#: except, in Kueue's documents, the names in ``NO_RAY_RESOURCE``.
RAY_RESOURCE_NAMES: dict[str, str] = {
    "cpu": "CPU",
    "nvidia.com/gpu": "GPU",
    "amd.com/gpu": "GPU",
    "google.com/tpu": "TPU",
    "memory": "memory",
}

#: Resources Kubernetes defines that Ray has no counterpart for: no Ray node offers them
#: and no Ray task asks for them, so a quota on one would never bind (a ``pods`` quota of
#: 5 once let 7 groups in). Keyed by name, or by prefix when the name ends with ``-``.
#: Only Kueue's documents name Kubernetes resources; in our own apiVersion names are
#: Ray's, and a custom Ray resource may be called anything.
NO_RAY_RESOURCE: dict[str, str] = {
    "pods": "Ray counts no pods; a workload is a set of bundles",
    "ephemeral-storage": "Ray does not account for local disk",
    "hugepages-": "Ray does not account for huge pages",
}

#: Kubernetes counts memory in bytes and Ray does too, so both read "16Gi" the same way;
#: the serialiser uses binary suffixes for it.
MEMORY = "memory"


def ray_resource_name(name: str) -> str:
    return RAY_RESOURCE_NAMES.get(name, name)


def no_ray_resource(ctx: DocumentContext, name: str) -> str | None:
    """Why Ray has no resource ``name`` (a Kubernetes-only one, in a Kueue document)."""
    if ctx.ours:
        return None
    for key, reason in NO_RAY_RESOURCE.items():
        if name == key or (key.endswith("-") and name.startswith(key)):
            return reason
    return None


# -- Kueue fields ray-queue does not carry over ----------------------------------------

_CONTROLLER = "a setting of Kueue's own controller, and ray-queue runs none"

#: Real Kueue (and Kubernetes) fields that no parser reads, per kind as written (so
#: ``preemptionPolicy`` is Kubernetes' PriorityClass's, not Kueue's WorkloadPriorityClass's)
#: and by field path in Kueue's layout (our own Configuration nests them under ``spec``).
#: Present, each is a problem whose message says why; a ``neutral`` value means what
#: ray-queue does anyway and is accepted. Taken from Kueue's API types
#: (apis/kueue/v1beta1|v1beta2/*_types.go, apis/config/v1beta1|v1beta2/
#: configuration_types.go) and Kubernetes' scheduling.k8s.io/v1 PriorityClass: every
#: other field those types have is read by the parsers below.
UNSUPPORTED_FIELDS: dict[str, dict[str, UnreadField]] = {
    "ResourceFlavor": {
        "spec.nodeTaints": UnreadField(
            "Ray nodes have no taints; a flavor's nodes are those its nodeLabels match"
        ),
        "spec.tolerations": UnreadField("Ray nodes have no taints to tolerate"),
        "spec.topologyName": UnreadField("ray-queue has no topology-aware scheduling"),
    },
    "ClusterQueue": {
        "spec.namespaceSelector": UnreadField(
            "Ray has no namespaces; only {}, every namespace, means what ray-queue does",
            neutral=({},),
        ),
        "spec.flavorFungibility.preference": UnreadField(
            "ray-queue tries flavors in order as whenCanBorrow and whenCanPreempt say"
        ),
        "spec.concurrentAdmissionPolicy": UnreadField(
            "ray-queue admits a workload on one flavor and never migrates it"
        ),
    },
    "PriorityClass": {
        "preemptionPolicy": UnreadField(
            "every class may preempt lower ones as the ClusterQueue allows; only "
            "PreemptLowerPriority means that",
            neutral=("PreemptLowerPriority",),
            owner="Kubernetes",
        ),
    },
    "ProvisioningRequestConfig": {
        "spec.podSetUpdates": UnreadField(
            "ray-queue updates no pod sets; placement follows the flavor's nodeLabels"
        ),
    },
    "Configuration": {
        **{
            key: UnreadField(_CONTROLLER)
            for key in (
                "namespace",
                "webhook",
                "leaderElection",
                "metrics",
                "health",
                "pprofBindAddress",
                "controller",
                "tls",
                "clientConnection",
                "internalCertManagement",
                "queueVisibility",
                "visibilityServer",
            )
        },
        "manageJobsWithoutQueueName": UnreadField(
            "ray-queue manages only work submitted to one of its Queues; only false means that",
            neutral=(False,),
        ),
        "managedJobsNamespaceSelector": UnreadField("Ray has no namespaces"),
        "integrations": UnreadField("ray-queue queues Ray work itself, not Kubernetes jobs"),
        "multiKueue": UnreadField("ray-queue schedules one Ray cluster"),
        "resources": UnreadField(
            "ray-queue maps resource names itself and excludes or transforms none"
        ),
        "featureGates": UnreadField("ray-queue has no Kueue feature gates"),
        "objectRetentionPolicies": UnreadField("ray-queue keeps no Workload objects"),
        "admissionFairSharing.usageSamplingInterval": UnreadField(
            "ray-queue charges usage at admission rather than sampling it"
        ),
        "admissionFairSharing.resourceWeights": UnreadField(
            "ray-queue charges a workload's dominant share of nominal quota, unweighted"
        ),
        "waitForPodsReady.blockAdmission": UnreadField(
            "ray-queue never holds admissions back while admitted work waits for "
            "placement; only false means that",
            neutral=(False,),
        ),
        "waitForPodsReady.recoveryTimeout": UnreadField(
            "ray-queue times out a workload's first placement only"
        ),
        "waitForPodsReady.requeuingStrategy.timestamp": UnreadField(
            "ray-queue orders requeued work by creation time; only Creation means that",
            neutral=("Creation",),
        ),
    },
}


def _unsupported(kind_name: str, api_version: str) -> dict[str, UnreadField]:
    table = UNSUPPORTED_FIELDS.get(kind_name, {})
    if kind_name == "Configuration" and api_version == API_VERSION:
        return {f"spec.{path}": entry for path, entry in table.items()}
    return table


# -- parsed documents ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParametersRef:
    """Kueue's AdmissionCheck ``spec.parameters``: a reference to another object."""

    api_group: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    """A Kueue ProvisioningRequestConfig, flattened to the strings an AdmissionCheck keeps."""

    name: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SettingsParts:
    """What a Configuration document set; ``None`` fields keep the engine's defaults."""

    fair_sharing_enable: bool | None = None
    preemption_strategies: tuple[str, ...] | None = None
    usage_half_life_s: float | None = None
    wait_enable: bool | None = None
    wait_timeout_s: float | None = None
    backoff_limit_count: int | None = None
    backoff_base_s: float | None = None
    backoff_max_s: float | None = None


Value = (
    ResourceFlavor
    | ClusterQueue
    | Cohort
    | Queue
    | PriorityClass
    | AdmissionCheck
    | ProvisioningConfig
    | SettingsParts
)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    index: int
    kind: Kind
    label: str
    name: str
    value: Value
    #: LocalQueue namespace (names must still be unique across namespaces).
    namespace: str | None = None
    #: An AdmissionCheck's reference to its parameters object (Kueue documents).
    parameters_ref: ParametersRef | None = None
    #: Field path of ``parameters_ref``, for messages.
    parameters_path: str = ""
    #: Where a value came from when the config value cannot tell: for a ClusterQueue,
    #: "admissionChecks[i]" → the field path that named its i-th admission check; for a
    #: Cohort, "parent" → the field that named its parent.
    paths: Mapping[str, str] = field(default_factory=dict)


# -- enums, with Kueue's spellings ----------------------------------------------------

E = TypeVar("E", bound=Enum)


def _values(enum: type[E]) -> dict[str, E]:
    return {str(member.value): member for member in enum}


_QUEUEING = _values(QueueingStrategy)
_WITHIN_CQ = _values(WithinClusterQueue)
_RECLAIM = _values(ReclaimWithinCohort)
_BORROW_POLICY = _values(BorrowWithinCohortPolicy)
_STOP = _values(StopPolicy)
_PROVISIONING = _values(ProvisioningMode)
#: v1beta2 renamed Borrow/Preempt to MayStopSearch; both mean "stop at this flavor".
_WHEN_CAN_BORROW = {**_values(WhenCanBorrow), "MayStopSearch": WhenCanBorrow.BORROW}
_WHEN_CAN_PREEMPT = {**_values(WhenCanPreempt), "MayStopSearch": WhenCanPreempt.PREEMPT}
_ADMISSION_MODES = {"UsageBasedAdmissionFairSharing": True, "NoAdmissionFairSharing": False}
FAIR_SHARING_STRATEGIES = ("LessThanOrEqualToFinalShare", "LessThanInitialShare")


# -- per-kind parsers -----------------------------------------------------------------


def parse_document(index: int, doc: object, problems: Problems) -> ParsedDocument | None:
    """Parse one document, recording its problems. ``None`` when nothing usable is left."""
    if not isinstance(doc, Mapping):
        shown = repr(doc)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        problems.add(
            f"document {index}",
            "",
            f"must be a mapping with apiVersion, kind, metadata; got {shown}",
        )
        return None
    api_version, kind_name = doc.get("apiVersion"), doc.get("kind")
    name = _document_name(doc)
    if isinstance(kind_name, str) and kind_name:
        label = f"{kind_name}/{name}" if name else f"{kind_name} (document {index})"
    else:
        label = f"document {index}"
    if not isinstance(api_version, str) or not api_version:
        problems.add(label, "apiVersion", f"is required; use {API_VERSION}")
        return None
    if not isinstance(kind_name, str) or not kind_name:
        problems.add(
            label, "kind", f"is required; one of {', '.join(SUPPORTED_KINDS[API_VERSION])}"
        )
        return None
    if api_version not in SUPPORTED_KINDS:
        problems.add(
            label,
            "apiVersion",
            f"unknown apiVersion {api_version!r}; supported: {', '.join(SUPPORTED_KINDS)}",
        )
        return None
    if kind_name not in SUPPORTED_KINDS[api_version]:
        problems.add(
            label,
            "kind",
            f"unknown kind {kind_name!r} for {api_version}; supported: "
            f"{', '.join(SUPPORTED_KINDS[api_version])}",
        )
        return None
    kind = KIND_BY_NAME[kind_name]
    ctx = DocumentContext(
        label=label,
        problems=problems,
        ours=api_version == API_VERSION,
        unsupported=_unsupported(kind_name, api_version),
    )
    top = Fields(ctx, "", doc)
    top.allow("apiVersion", "kind", "status")
    parsed = _parse_kind(kind, api_version, top, index)
    ctx.finish()
    return parsed


def _ignore_fields(meta: Fields) -> None:
    """The fields ``metadata.annotations["ray-queue.io/ignore-fields"]`` drops on purpose."""
    annotations = meta.raw("annotations")
    if not isinstance(annotations, Mapping) or annotations.get(IGNORE_ANNOTATION) is None:
        return
    where = f"{meta.at('annotations')}.{IGNORE_ANNOTATION}"
    value = annotations[IGNORE_ANNOTATION]
    if not isinstance(value, str):
        meta.ctx.report(
            where,
            f"must be a string of comma-separated field paths, got {value!r}; e.g. "
            '"spec.namespaceSelector, spec.nodeTaints"',
        )
        return
    meta.ctx.ignore(where, [path.strip() for path in value.split(",") if path.strip()])


def _document_name(doc: Mapping[object, object]) -> str | None:
    meta = doc.get("metadata")
    if isinstance(meta, Mapping):
        name = meta.get("name")
        if isinstance(name, str) and name:
            return name
    return None


def _parse_kind(kind: Kind, api_version: str, top: Fields, index: int) -> ParsedDocument | None:
    is_kueue_config = api_version in (KUEUE_CONFIG_V1BETA1, KUEUE_CONFIG_V1BETA2)
    meta = top.child("metadata", required=not is_kueue_config and kind is not Kind.CONFIGURATION)
    name: str | None = None
    namespace: str | None = None
    if meta is not None:
        name = meta.string("name", required=kind is not Kind.CONFIGURATION)
        namespace = meta.string("namespace")
        _ignore_fields(meta)
        # Kubernetes object plumbing (labels, uid, resourceVersion, managedFields …), as
        # `kubectl get -o yaml` prints it: it says nothing about queueing.
        meta.allow(*(key for key in meta.data if isinstance(key, str)))
    if kind is Kind.CONFIGURATION:
        # Kueue's own Configuration file keeps its settings at the top level.
        spec = top if is_kueue_config else top.child("spec")
        settings = _settings(spec) if spec is not None else SettingsParts()
        return ParsedDocument(index, kind, top.ctx.label, name or "", settings)
    # Without a name the document cannot join the config, but its body is still read so
    # that its other mistakes are reported in the same pass.
    parsed = _parse_object(kind, top, name or "", namespace, index)
    return parsed if name is not None else None


def _parse_object(
    kind: Kind, top: Fields, name: str, namespace: str | None, index: int
) -> ParsedDocument | None:
    if kind is Kind.PRIORITY_CLASS:
        return ParsedDocument(index, kind, top.ctx.label, name, _priority_class(top, name))
    spec_required = kind in (Kind.CLUSTER_QUEUE, Kind.QUEUE, Kind.ADMISSION_CHECK)
    spec = top.child("spec", required=spec_required)
    if spec is None:
        if spec_required:
            return None
        spec = Fields(top.ctx, "spec", {})
    if kind is Kind.FLAVOR:
        return ParsedDocument(index, kind, top.ctx.label, name, _flavor(spec, name))
    if kind is Kind.CLUSTER_QUEUE:
        cq, paths = _cluster_queue(spec, name)
        return ParsedDocument(index, kind, top.ctx.label, name, cq, paths=paths)
    if kind is Kind.COHORT:
        cohort, paths = _cohort(spec, name)
        return ParsedDocument(index, kind, top.ctx.label, name, cohort, paths=paths)
    if kind is Kind.QUEUE:
        return ParsedDocument(index, kind, top.ctx.label, name, _queue(spec, name), namespace)
    if kind is Kind.PROVISIONING_CONFIG:
        return ParsedDocument(index, kind, top.ctx.label, name, _provisioning(spec, name))
    check, ref = _admission_check(spec, name)
    return ParsedDocument(
        index,
        kind,
        top.ctx.label,
        name,
        check,
        parameters_ref=ref,
        parameters_path=spec.at("parameters"),
    )


def _flavor(spec: Fields, name: str) -> ResourceFlavor:
    labels = spec.string_map("nodeLabels")
    if spec.ctx.ours:
        worker_group = spec.string("workerGroup")
        provisioning = spec.choice("provisioning", _PROVISIONING)
    else:
        worker_group, provisioning = None, None
    return ResourceFlavor(
        name=name,
        node_labels=labels,
        worker_group=worker_group,
        provisioning=provisioning or ProvisioningMode.INCREMENTAL,
    )


def _one_of(spec: Fields, *keys: str) -> tuple[str | None, str]:
    """A reference Kueue renamed between versions (``cohort``/``cohortName``): read either.

    Returns the value and the key it was read from (the first key when neither is set).
    """
    values = {key: spec.string(key) for key in keys}
    given = {key: value for key, value in values.items() if value is not None}
    if len(given) > 1 and len(set(given.values())) > 1:
        spec.problem(keys[0], f"{' and '.join(given)} disagree; set only one of them")
    for key, value in given.items():
        return value, key
    return None, keys[0]


def _cluster_queue(spec: Fields, name: str) -> tuple[ClusterQueue, dict[str, str]]:
    cohort, _ = _one_of(spec, "cohortName", "cohort")
    groups = _resource_groups(spec, cluster_queue=True, has_parent=cohort is not None)
    preemption = _preemption(spec.child("preemption"))
    fungibility = FlavorFungibility()
    ff = spec.child("flavorFungibility")
    if ff is not None:
        fungibility = FlavorFungibility(
            when_can_borrow=ff.choice("whenCanBorrow", _WHEN_CAN_BORROW) or WhenCanBorrow.BORROW,
            when_can_preempt=ff.choice("whenCanPreempt", _WHEN_CAN_PREEMPT)
            or WhenCanPreempt.TRY_NEXT_FLAVOR,
        )
    usage_based = False
    scope = spec.child("admissionScope")
    if scope is not None:
        mode = scope.raw("admissionMode", required=True)
        if mode is not None:
            usage_based = bool(scope.choice("admissionMode", _ADMISSION_MODES))
    checks, check_paths = _admission_check_refs(spec)
    paths = {f"admissionChecks[{i}]": path for i, path in enumerate(check_paths)}
    cq = ClusterQueue(
        name=name,
        resource_groups=groups,
        cohort=cohort,
        queueing_strategy=spec.choice("queueingStrategy", _QUEUEING)
        or QueueingStrategy.BEST_EFFORT_FIFO,
        preemption=preemption,
        flavor_fungibility=fungibility,
        fair_sharing_weight=_fair_sharing_weight(spec),
        admission_checks=checks,
        stop_policy=spec.choice("stopPolicy", _STOP) or StopPolicy.NONE,
        usage_based_fair_sharing=usage_based,
    )
    return cq, paths


def _fair_sharing_weight(spec: Fields) -> float:
    fs = spec.child("fairSharing")
    if fs is None:
        return 1.0
    weight = fs.weight("weight")
    return 1.0 if weight is None else weight


def _preemption(p: Fields | None) -> Preemption:
    if p is None:
        return Preemption()
    within = p.choice("withinClusterQueue", _WITHIN_CQ) or WithinClusterQueue.NEVER
    reclaim = p.choice("reclaimWithinCohort", _RECLAIM) or ReclaimWithinCohort.NEVER
    borrow = BorrowWithinCohort()
    b = p.child("borrowWithinCohort")
    if b is not None:
        policy = b.choice("policy", _BORROW_POLICY) or BorrowWithinCohortPolicy.NEVER
        threshold = b.integer("maxPriorityThreshold")
        if threshold is not None and policy is not BorrowWithinCohortPolicy.LOWER_PRIORITY:
            b.problem(
                "maxPriorityThreshold",
                "only applies with policy LowerPriority; set borrowWithinCohort.policy: "
                "LowerPriority or remove maxPriorityThreshold",
            )
        if (
            policy is BorrowWithinCohortPolicy.LOWER_PRIORITY
            and reclaim is ReclaimWithinCohort.NEVER
        ):
            b.problem(
                "policy",
                "LowerPriority needs reclaimWithinCohort LowerPriority or Any (as in Kueue); "
                "set reclaimWithinCohort or use policy Never",
            )
        borrow = BorrowWithinCohort(policy=policy, max_priority_threshold=threshold)
    # Ours, not Kueue's: docs/design.md "Waiting before preempting".
    wait_s = p.duration("waitBeforePreemptingSeconds") or 0.0
    return Preemption(
        within_cluster_queue=within,
        reclaim_within_cohort=reclaim,
        borrow_within_cohort=borrow,
        wait_before_preempting_s=wait_s,
    )


def _admission_check_refs(spec: Fields) -> tuple[tuple[AdmissionCheckRef, ...], list[str]]:
    """Checks from ``admissionChecks`` (names) or ``admissionChecksStrategy`` (with flavors).

    Also returns, for each check, the field path that named it (for later messages).
    """
    plain = spec.strings("admissionChecks")
    refs = [AdmissionCheckRef(name=n) for n in plain]
    paths = [f"{spec.at('admissionChecks')}[{i}]" for i in range(len(plain))]
    strategy = spec.child("admissionChecksStrategy")
    if strategy is not None:
        if plain:
            spec.problem(
                "admissionChecksStrategy",
                "cannot be used together with admissionChecks; move the checks into "
                "admissionChecksStrategy.admissionChecks",
            )
        for rule in strategy.children("admissionChecks", required=True):
            check = rule.string("name", required=True)
            if check is not None:
                refs.append(AdmissionCheckRef(check, tuple(rule.strings("onFlavors"))))
                paths.append(rule.path)
    seen: set[str] = set()
    for ref, path in zip(refs, paths, strict=True):
        if ref.name in seen:
            spec.ctx.report(path, f"admission check {ref.name!r} is listed twice; keep one")
        seen.add(ref.name)
    return tuple(refs), paths


def _cohort(spec: Fields, name: str) -> tuple[Cohort, dict[str, str]]:
    parent, key = _one_of(spec, "parentName", "parent")
    if parent == name:
        spec.problem(key, f"a Cohort cannot be its own parent ({name!r}); remove {key}")
        parent = None
    cohort = Cohort(
        name=name,
        parent=parent,
        resource_groups=_resource_groups(spec, cluster_queue=False, has_parent=parent is not None),
        fair_sharing_weight=_fair_sharing_weight(spec),
    )
    return cohort, {"parent": spec.at(key)}


def _queue(spec: Fields, name: str) -> Queue:
    cluster_queue = spec.string("clusterQueue", required=True)
    return Queue(
        name=name,
        cluster_queue=cluster_queue or "",
        fair_sharing_weight=_fair_sharing_weight(spec),
        stop_policy=spec.choice("stopPolicy", _STOP) or StopPolicy.NONE,
    )


def _priority_class(top: Fields, name: str) -> PriorityClass:
    value = top.integer("value", required=True)
    if value is not None and not -(2**31) <= value < 2**31:
        top.problem("value", f"must fit in 32 bits (as in Kubernetes), got {value}")
    return PriorityClass(
        name=name,
        value=value or 0,
        global_default=bool(top.boolean("globalDefault")),
        description=_description(top),
    )


def _description(top: Fields) -> str:
    value = top.raw("description")
    if value is None:
        return ""
    if not isinstance(value, str):
        top.problem("description", f"must be a string, got {value!r}")
        return ""
    return value


def _admission_check(spec: Fields, name: str) -> tuple[AdmissionCheck, ParametersRef | None]:
    controller = spec.string("controllerName", required=True) or ""
    if spec.ctx.ours:
        return AdmissionCheck(name, controller, spec.string_map("parameters", scalars=True)), None
    # Kueue v1beta1 only: deprecated since Kueue v0.8 and no longer acted on by Kueue
    # itself, yet its CRD still defaults it to 15, so every `kubectl get` prints it.
    # Dropping it changes nothing.
    spec.integer("retryDelayMinutes", minimum=0)
    ref = None
    params = spec.child("parameters")
    if params is not None:
        api_group = params.raw("apiGroup")
        kind = params.string("kind", required=True)
        target = params.string("name", required=True)
        if kind is not None and target is not None:
            ref = ParametersRef(api_group if isinstance(api_group, str) else "", kind, target)
    return AdmissionCheck(name, controller), ref


def _provisioning(spec: Fields, name: str) -> ProvisioningConfig:
    values: dict[str, str] = {}
    class_name = spec.string("provisioningClassName", required=True)
    if class_name is not None:
        values["provisioningClassName"] = class_name
    for key, value in spec.string_map("parameters", scalars=True).items():
        if key in values:
            spec.problem(f"parameters.{key}", f"{key!r} is reserved; rename the parameter")
        else:
            values[key] = value
    managed = [ray_resource_name(r) for r in spec.strings("managedResources")]
    if managed:
        values["managedResources"] = ",".join(managed)
    merge = spec.string("podSetMergePolicy")
    if merge is not None:
        values["podSetMergePolicy"] = merge
    retry = spec.child("retryStrategy")
    if retry is not None:
        for key in ("backoffLimitCount", "backoffBaseSeconds", "backoffMaxSeconds"):
            number = retry.integer(key, minimum=0)
            if number is not None:
                values[f"retryStrategy.{key}"] = str(number)
    return ProvisioningConfig(name, values)


def _settings(spec: Fields) -> SettingsParts:
    fair_enable = strategies = half_life = None
    wait_enable = timeout = limit = base = maximum = None
    fs = spec.child("fairSharing")
    if fs is not None:
        fair_enable = fs.boolean("enable")
        if fs.raw("preemptionStrategies") is not None:
            strategies = _strategies(fs)
    afs = spec.child("admissionFairSharing")
    if afs is not None:
        half_life = afs.duration("usageHalfLifeTime")
    wait = spec.child("waitForPodsReady")
    if wait is not None:
        wait_enable = wait.boolean("enable")
        timeout = wait.duration("timeout")
        requeue = wait.child("requeuingStrategy")
        if requeue is not None:
            limit = requeue.integer("backoffLimitCount", minimum=0)
            base = requeue.duration("backoffBaseSeconds")
            maximum = requeue.duration("backoffMaxSeconds")
            # Kueue's defaults: 60 s base, 3600 s cap.
            if (maximum if maximum is not None else 3600.0) < (base if base is not None else 60.0):
                requeue.problem(
                    "backoffMaxSeconds",
                    f"must be >= backoffBaseSeconds ({base if base is not None else 60.0:g} s), "
                    f"got {maximum if maximum is not None else 3600.0:g} s; raise "
                    "backoffMaxSeconds or lower backoffBaseSeconds",
                )
    return SettingsParts(
        fair_sharing_enable=fair_enable,
        preemption_strategies=strategies,
        usage_half_life_s=half_life,
        wait_enable=wait_enable,
        wait_timeout_s=timeout,
        backoff_limit_count=limit,
        backoff_base_s=base,
        backoff_max_s=maximum,
    )


def _strategies(fs: Fields) -> tuple[str, ...] | None:
    names = fs.strings("preemptionStrategies")
    where = "preemptionStrategies"
    if not names:
        fs.problem(where, f"must list at least one of {', '.join(FAIR_SHARING_STRATEGIES)}")
        return None
    for i, n in enumerate(names):
        if n not in FAIR_SHARING_STRATEGIES:
            fs.problem(
                f"{where}[{i}]", f"must be one of {', '.join(FAIR_SHARING_STRATEGIES)}; got {n!r}"
            )
            return None
    if len(set(names)) != len(names):
        fs.problem(where, "lists a strategy twice; keep each once")
        return None
    return tuple(names)


# -- resource groups (ClusterQueue and Cohort) ----------------------------------------


def _resource_groups(
    spec: Fields, *, cluster_queue: bool, has_parent: bool
) -> tuple[ResourceGroup, ...]:
    groups: list[ResourceGroup] = []
    covered_by: dict[str, int] = {}
    flavor_at: dict[str, str] = {}
    for gi, group in enumerate(spec.children("resourceGroups")):
        covered = _covered_resources(group)
        for resource in covered:
            if resource in covered_by:
                group.problem(
                    "coveredResources",
                    f"resource {resource!r} is already covered by resourceGroups"
                    f"[{covered_by[resource]}]; each resource belongs to one group — "
                    "remove it from one of them",
                )
            covered_by.setdefault(resource, gi)
        flavors: list[FlavorQuotas] = []
        enforced = tuple(r for r in covered if no_ray_resource(spec.ctx, r) is None)
        for flavor in group.children("flavors", required=True):
            quotas = _flavor_quotas(
                flavor, covered, cluster_queue=cluster_queue, has_parent=has_parent
            )
            if quotas is None:
                continue
            if quotas.flavor in flavor_at:
                flavor.problem(
                    "name",
                    f"flavor {quotas.flavor!r} is already listed at {flavor_at[quotas.flavor]}; "
                    "a flavor may appear once per "
                    f"{'ClusterQueue' if cluster_queue else 'Cohort'} — merge the two entries",
                )
            flavor_at.setdefault(quotas.flavor, flavor.path)
            flavors.append(quotas)
        # A group whose every resource was dropped (reported, or ignored on purpose) has
        # nothing left to enforce.
        if enforced or not covered:
            groups.append(ResourceGroup(covered_resources=enforced, flavors=tuple(flavors)))
    return tuple(groups)


def _covered_resources(group: Fields) -> list[str]:
    covered: list[str] = []
    spelled: dict[str, str] = {}
    for raw_name in group.strings("coveredResources", required=True):
        resource = ray_resource_name(raw_name)
        if resource in spelled:
            group.problem(
                "coveredResources",
                f"{raw_name!r} and {spelled[resource]!r} are both Ray resource {resource!r}; "
                "list it once",
            )
            continue
        spelled[resource] = raw_name
        covered.append(resource)
    return covered


def _flavor_quotas(
    flavor: Fields, covered: Sequence[str], *, cluster_queue: bool, has_parent: bool
) -> FlavorQuotas | None:
    name = flavor.string("name", required=True)
    resources: list[ResourceQuota] = []
    for resource in flavor.children("resources", required=True):
        quota = _resource_quota(resource, cluster_queue=cluster_queue, has_parent=has_parent)
        if quota is None:
            continue
        if any(q.name == quota.name for q in resources):
            resource.problem("name", f"resource {quota.name!r} is listed twice; keep one")
            continue
        resources.append(quota)
    names = [q.name for q in resources]
    missing = [r for r in covered if r not in names]
    extra = [r for r in names if r not in covered]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"not in coveredResources: {', '.join(extra)}")
        flavor.problem(
            "resources",
            f"must list exactly the group's coveredResources ({', '.join(covered)}); "
            f"{'; '.join(parts)}",
        )
    if name is None:
        return None
    return FlavorQuotas(flavor=name, resources=_enforceable(flavor, resources))


def _enforceable(flavor: Fields, resources: Sequence[ResourceQuota]) -> tuple[ResourceQuota, ...]:
    """The quotas Ray can enforce; the others are problems (or ignored on purpose).

    Named by resource rather than position, so one ignore-fields path can cover the
    resource in every flavor: ``spec.resourceGroups[*].flavors[*].resources[name=pods]``.
    """
    kept = []
    for quota in resources:
        reason = no_ray_resource(flavor.ctx, quota.name)
        if reason is None:
            kept.append(quota)
            continue
        path = f"{flavor.at('resources')}[name={quota.name}]"
        flavor.ctx.reject(
            path,
            f"Ray has no resource {quota.name!r} ({reason}), so ray-queue cannot enforce "
            f"this quota; remove it and its coveredResources entry, or list "
            f"{wildcard(path)} in the {IGNORE_ANNOTATION} annotation to ignore it",
        )
    return tuple(kept)


def _resource_quota(r: Fields, *, cluster_queue: bool, has_parent: bool) -> ResourceQuota | None:
    raw_name = r.string("name", required=True)
    nominal = r.quantity("nominalQuota", required=True)
    borrowing = r.quantity("borrowingLimit")
    lending = r.quantity("lendingLimit")
    owner = "ClusterQueue" if cluster_queue else "Cohort"
    link = "spec.cohortName" if cluster_queue else "spec.parentName"
    for key, limit in (("borrowingLimit", borrowing), ("lendingLimit", lending)):
        if limit is not None and not has_parent:
            r.problem(
                key,
                f"a {owner} without a {'cohort' if cluster_queue else 'parent'} cannot "
                f"{'borrow' if key == 'borrowingLimit' else 'lend'}; set {link} or remove {key}",
            )
    if cluster_queue and lending is not None and nominal is not None and lending > nominal:
        r.problem(
            "lendingLimit",
            f"must be <= nominalQuota ({r.data.get('nominalQuota')}), got "
            f"{r.data.get('lendingLimit')}; a ClusterQueue can only lend its own quota",
        )
    if raw_name is None:
        return None
    return ResourceQuota(
        name=ray_resource_name(raw_name),
        nominal=nominal or 0,
        borrowing_limit=borrowing,
        lending_limit=lending,
    )
