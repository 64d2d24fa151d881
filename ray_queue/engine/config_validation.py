"""Cross-document checks, and assembling the documents into one ``QueueConfig``.

A document can be fine on its own and still wrong in the set: a ClusterQueue naming a
flavor nobody defined, two Queues with one name, cohorts that are each other's parent.
Kueue finds these at run time and marks the ClusterQueue inactive; we find them before
a config is applied, because the running config must only ever be replaced by a
consistent one. Every check here reports and carries on, so the user sees all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionFairSharing,
    ClusterQueue,
    Cohort,
    FairSharing,
    FairSharingStrategy,
    PriorityClass,
    Queue,
    QueueConfig,
    RequeuingStrategy,
    ResourceFlavor,
    ResourceGroup,
    Settings,
    WaitForPlacement,
)
from ray_queue.engine.config_documents import (
    Kind,
    ParsedDocument,
    ProvisioningConfig,
    SettingsParts,
)
from ray_queue.engine.config_fields import Problems

V = TypeVar("V")

_PROVISIONING_KIND = "ProvisioningRequestConfig"


def assemble(docs: Sequence[ParsedDocument], problems: Problems) -> QueueConfig:
    """Check the documents against each other and build the config (problems permitting)."""
    flavors = _unique(docs, Kind.FLAVOR, ResourceFlavor, problems)
    cluster_queues = _unique(docs, Kind.CLUSTER_QUEUE, ClusterQueue, problems)
    cohorts = _unique(docs, Kind.COHORT, Cohort, problems)
    queues = _unique(docs, Kind.QUEUE, Queue, problems)
    priority_classes = _unique(docs, Kind.PRIORITY_CLASS, PriorityClass, problems)
    provisioning = _unique(docs, Kind.PROVISIONING_CONFIG, ProvisioningConfig, problems)
    checks = _admission_checks(docs, provisioning, problems)
    settings = _settings(docs, problems)

    _check_queue_namespaces(docs, problems)
    for doc, cq in _values(docs, Kind.CLUSTER_QUEUE, ClusterQueue):
        _check_flavors_defined(doc, cq.resource_groups, flavors, "ClusterQueue", problems)
        _check_admission_checks(doc, cq, checks, problems)
    for doc, cohort in _values(docs, Kind.COHORT, Cohort):
        _check_flavors_defined(doc, cohort.resource_groups, flavors, "Cohort", problems)
    for doc, queue in _values(docs, Kind.QUEUE, Queue):
        if queue.cluster_queue and queue.cluster_queue not in cluster_queues:
            problems.add(
                doc.label,
                "spec.clusterQueue",
                f"ClusterQueue {queue.cluster_queue!r} is not defined; add a ClusterQueue named "
                f"{queue.cluster_queue!r} or point the Queue at one of: "
                f"{_names(cluster_queues)}",
            )
    _check_global_default(docs, problems)
    all_cohorts = _with_implicit_cohorts(cohorts, cluster_queues.values())
    for doc, cq in _values(docs, Kind.CLUSTER_QUEUE, ClusterQueue):
        if cq.name in all_cohorts:
            problems.add(
                doc.label,
                "metadata.name",
                f"a Cohort is also named {cq.name!r}; ClusterQueues and Cohorts share one "
                "quota tree, so rename one of them",
            )
    _check_cohort_cycles(docs, all_cohorts, problems)
    return QueueConfig(
        flavors=flavors,
        cluster_queues=cluster_queues,
        cohorts=all_cohorts,
        queues=queues,
        priority_classes=priority_classes,
        admission_checks=checks,
        settings=settings,
    )


def _values(
    docs: Iterable[ParsedDocument], kind: Kind, cls: type[V]
) -> Iterable[tuple[ParsedDocument, V]]:
    for doc in docs:
        if doc.kind is kind and isinstance(doc.value, cls):
            yield doc, doc.value


def _unique(
    docs: Sequence[ParsedDocument], kind: Kind, cls: type[V], problems: Problems
) -> dict[str, V]:
    """The documents of one kind by name; a second one with the same name is a problem."""
    out: dict[str, V] = {}
    first: dict[str, ParsedDocument] = {}
    for doc, value in _values(docs, kind, cls):
        if doc.name in first:
            earlier = first[doc.name]
            if kind is Kind.QUEUE and earlier.namespace != doc.namespace:
                continue  # reported once, naming both namespaces, by _check_queue_namespaces
            problems.add(
                doc.label,
                "metadata.name",
                f"{kind.value} {doc.name!r} is defined twice (documents {earlier.index} and "
                f"{doc.index}); names must be unique per kind — rename or remove one",
            )
            continue
        first[doc.name] = doc
        out[doc.name] = value
    return out


def _names(named: Mapping[str, object]) -> str:
    return ", ".join(repr(n) for n in named) if named else "(none defined)"


def _check_queue_namespaces(docs: Sequence[ParsedDocument], problems: Problems) -> None:
    """Kueue's LocalQueues are namespaced; ours are not, so a name must be unique overall."""
    seen: dict[str, ParsedDocument] = {}
    for doc in docs:
        if doc.kind is not Kind.QUEUE:
            continue
        earlier = seen.setdefault(doc.name, doc)
        if earlier is not doc and earlier.namespace != doc.namespace:
            problems.add(
                doc.label,
                "metadata.namespace",
                f"Queue {doc.name!r} is defined in namespace {earlier.namespace or '(none)'!r} "
                f"(document {earlier.index}) and in namespace {doc.namespace or '(none)'!r} "
                f"(document {doc.index}); ray-queue addresses Queues by name alone, so rename "
                "one of them",
            )


def _check_flavors_defined(
    doc: ParsedDocument,
    groups: Sequence[ResourceGroup],
    flavors: Mapping[str, ResourceFlavor],
    owner: str,
    problems: Problems,
) -> None:
    for gi, group in enumerate(groups):
        for fi, fq in enumerate(group.flavors):
            if fq.flavor not in flavors:
                problems.add(
                    doc.label,
                    f"spec.resourceGroups[{gi}].flavors[{fi}].name",
                    f"ResourceFlavor {fq.flavor!r} is not defined; add a ResourceFlavor named "
                    f"{fq.flavor!r} or remove it from the {owner}",
                )


def _check_admission_checks(
    doc: ParsedDocument,
    cq: ClusterQueue,
    checks: Mapping[str, AdmissionCheck],
    problems: Problems,
) -> None:
    used = {fq.flavor for g in cq.resource_groups for fq in g.flavors}
    for i, ref in enumerate(cq.admission_checks):
        where = doc.paths.get(f"admissionChecks[{i}]", f"spec.admissionChecks[{i}]")
        if ref.name not in checks:
            problems.add(
                doc.label,
                where,
                f"AdmissionCheck {ref.name!r} is not defined; add an AdmissionCheck named "
                f"{ref.name!r} or remove it from the ClusterQueue",
            )
        for flavor in ref.on_flavors:
            if flavor not in used:
                problems.add(
                    doc.label,
                    f"{where}.onFlavors",
                    f"flavor {flavor!r} is not used by this ClusterQueue (it uses "
                    f"{', '.join(sorted(used)) or 'none'}); remove it from onFlavors",
                )


def _check_global_default(docs: Sequence[ParsedDocument], problems: Problems) -> None:
    defaults = [
        d for d, pc in _values(docs, Kind.PRIORITY_CLASS, PriorityClass) if pc.global_default
    ]
    for doc in defaults[1:]:
        problems.add(
            doc.label,
            "globalDefault",
            f"only one PriorityClass may be the global default, and {defaults[0].name!r} "
            "already is; set globalDefault: false on one of them",
        )


def _with_implicit_cohorts(
    cohorts: Mapping[str, Cohort], cluster_queues: Iterable[ClusterQueue]
) -> dict[str, Cohort]:
    """Cohorts named by a ClusterQueue or a parent link exist even if not defined (Kueue)."""
    out = dict(cohorts)
    named = [cq.cohort for cq in cluster_queues] + [c.parent for c in cohorts.values()]
    for name in named:
        if name is not None and name not in out:
            out[name] = Cohort(name=name)
    return out


def _check_cohort_cycles(
    docs: Sequence[ParsedDocument], cohorts: Mapping[str, Cohort], problems: Problems
) -> None:
    defined = {doc.name: doc for doc in docs if doc.kind is Kind.COHORT}
    reported: set[str] = set()
    for start in cohorts:
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in path and node not in reported:
            path.append(node)
            node = cohorts[node].parent if node in cohorts else None
        if node is None or node in reported or node not in path:
            reported.update(path)
            continue
        cycle = [*path[path.index(node) :], node]
        reported.update(path)
        doc = defined[node]  # a cycle only runs through defined cohorts: they have parents
        problems.add(
            doc.label,
            doc.paths.get("parent", "spec.parentName"),
            f"Cohort parents form a cycle: {' -> '.join(cycle)}; remove one of these parent "
            "links so the cohorts form a tree",
        )


def _admission_checks(
    docs: Sequence[ParsedDocument],
    provisioning: Mapping[str, ProvisioningConfig],
    problems: Problems,
) -> dict[str, AdmissionCheck]:
    """AdmissionChecks, with a referenced ProvisioningRequestConfig folded into parameters."""
    checks = _unique(docs, Kind.ADMISSION_CHECK, AdmissionCheck, problems)
    for doc in docs:
        ref = doc.parameters_ref
        if ref is None or checks.get(doc.name) is not doc.value:
            continue
        if ref.kind == _PROVISIONING_KIND:
            config = provisioning.get(ref.name)
            if config is None:
                problems.add(
                    doc.label,
                    f"{doc.parameters_path}.name",
                    f"ProvisioningRequestConfig {ref.name!r} is not defined; add it to the "
                    "config or remove spec.parameters",
                )
                continue
            params = dict(config.parameters)
        else:
            params = {"apiGroup": ref.api_group, "kind": ref.kind, "name": ref.name}
        checks[doc.name] = replace(checks[doc.name], parameters=params)
    return checks


def _settings(docs: Sequence[ParsedDocument], problems: Problems) -> Settings:
    configs = list(_values(docs, Kind.CONFIGURATION, SettingsParts))
    for doc, _ in configs[1:]:
        problems.add(
            doc.label,
            "",
            f"only one Configuration document is allowed (the first is document "
            f"{configs[0][0].index}); merge them into one",
        )
    if not configs:
        return Settings()
    parts = configs[0][1]
    defaults = Settings()
    strategies = defaults.fair_sharing.preemption_strategies
    if parts.preemption_strategies is not None:
        strategies = tuple(FairSharingStrategy(s) for s in parts.preemption_strategies)
    requeuing = RequeuingStrategy(
        backoff_limit_count=parts.backoff_limit_count,
        backoff_base_s=_or(parts.backoff_base_s, defaults.requeuing.backoff_base_s),
        backoff_max_s=_or(parts.backoff_max_s, defaults.requeuing.backoff_max_s),
    )
    return Settings(
        fair_sharing=FairSharing(
            enable=_or(parts.fair_sharing_enable, False), preemption_strategies=strategies
        ),
        admission_fair_sharing=AdmissionFairSharing(
            usage_half_life_s=_or(
                parts.usage_half_life_s, defaults.admission_fair_sharing.usage_half_life_s
            )
        ),
        wait_for_placement=WaitForPlacement(
            enable=_or(parts.wait_enable, False),
            timeout_s=_or(parts.wait_timeout_s, defaults.wait_for_placement.timeout_s),
        ),
        requeuing=requeuing,
    )


def _or(value: V | None, default: V) -> V:
    return default if value is None else value
