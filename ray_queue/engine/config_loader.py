"""Config in, config out: YAML files, strings and dicts ⇄ a validated ``QueueConfig``.

Config reaches ray-queue from many places — a file, ``ray_queue.init(config=...)``, the
CLI, gRPC, a ConfigMap — and all of them come through ``load_config`` (or ``parse_yaml``
for text from the network) so that one set of rules decides what is valid. A config is
checked as a whole and rejected with every problem listed (``ConfigError``); nothing is
half-applied. ``to_documents`` and ``dump_yaml`` write a config back in our own
apiVersion, so a config shown to a person is something they can edit and apply again:
``parse_documents(to_documents(c)) == c`` for every valid config.

The work is split: ``config_fields`` reads a mapping while collecting problems,
``config_documents`` turns one document into a config value, ``config_validation``
checks the documents against each other, and this module handles sources and output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ray_queue.engine.config import (
    AdmissionCheck,
    AdmissionCheckRef,
    ClusterQueue,
    Cohort,
    FlavorFungibility,
    Preemption,
    PriorityClass,
    ProvisioningMode,
    Queue,
    QueueConfig,
    QueueingStrategy,
    ResourceFlavor,
    ResourceGroup,
    Settings,
    StopPolicy,
)
from ray_queue.engine.config_documents import API_VERSION, MEMORY, parse_document
from ray_queue.engine.config_fields import Problems
from ray_queue.engine.config_validation import assemble
from ray_queue.engine.errors import ConfigError, ConfigProblem
from ray_queue.engine.quantity import format_duration, format_quantity

__all__ = [
    "API_VERSION",
    "dump_yaml",
    "load_config",
    "parse_documents",
    "parse_yaml",
    "to_documents",
]

ConfigSource = (
    QueueConfig
    | str
    | bytes
    | os.PathLike[str]
    | Mapping[str, object]
    | Sequence[Mapping[str, object]]
)

Document = dict[str, object]

# libyaml's C parser and emitter when PyYAML was built with it: a 1,000-ClusterQueue
# config loads in a fraction of the pure-Python time. Same safe subset of YAML either way.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_config(source: ConfigSource) -> QueueConfig:
    """Load and validate a config from any of the forms ray-queue accepts.

    - a ``QueueConfig``: returned as is;
    - a ``pathlib.Path`` (or other path-like), or a one-line ``str`` naming an existing
      file: a YAML file, possibly with several ``---``-separated documents;
    - any other ``str`` (or UTF-8 ``bytes``): YAML text, possibly multi-document;
    - a mapping (one document) or a list of mappings.

    Raises ``ConfigError`` listing every problem found.
    """
    if isinstance(source, QueueConfig):
        return source
    if isinstance(source, os.PathLike):
        return parse_documents(_read_yaml_file(Path(os.fspath(source))))
    if isinstance(source, str):
        if "\n" not in source and source.strip() and Path(source).is_file():
            return parse_documents(_read_yaml_file(Path(source)))
        return parse_documents(_read_yaml_text(source, origin="YAML text"))
    if isinstance(source, bytes | bytearray):
        return parse_yaml(bytes(source).decode("utf-8", errors="replace"))
    if isinstance(source, Mapping):
        return parse_documents([source])
    if isinstance(source, Sequence):
        return parse_documents(list(source))
    raise ConfigError(
        [
            ConfigProblem(
                "config",
                "",
                f"cannot load a config from {type(source).__name__}; pass a file path, YAML "
                "text, a dict, a list of dicts or a QueueConfig",
            )
        ]
    )


def parse_yaml(text: str) -> QueueConfig:
    """Validate YAML text (possibly multi-document); never reads a file.

    For text that arrives over the network, where ``load_config``'s "a one-line string
    naming an existing file is a path" rule would let a caller read server-side files.
    """
    return parse_documents(yaml_documents(text))


def yaml_documents(text: str) -> list[object]:
    """The documents of YAML text, not yet validated (``ConfigError`` if not YAML)."""
    return _read_yaml_text(text, origin="YAML text", may_be_path=False)


def parse_documents(docs: Sequence[object]) -> QueueConfig:
    """Validate Kubernetes-style documents as a whole and build the config.

    ``None`` entries (empty YAML documents) are skipped, and a ``kind: List`` document
    (what ``kubectl get -o yaml`` prints) contributes its ``items``. Documents are
    numbered from 1 in messages.
    """
    problems = Problems()
    parsed = []
    for index, doc in enumerate(flatten_documents(docs), start=1):
        result = parse_document(index, doc, problems)
        if result is not None:
            parsed.append(result)
    config = assemble(parsed, problems)
    if problems.items:
        raise ConfigError(problems.items)
    return config


def flatten_documents(docs: Sequence[object]) -> list[object]:
    """Documents without empty ones, ``kind: List`` documents replaced by their items."""
    out: list[object] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and "items" in doc:
            items = doc.get("items")
            out.extend(items if isinstance(items, list) else [items])
        else:
            out.append(doc)
    return out


def _read_yaml_file(path: Path) -> list[object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            [ConfigProblem(str(path), "", f"cannot read the config file: {err.strerror or err}")]
        ) from err
    return _read_yaml_text(text, origin=str(path), may_be_path=False)


def _read_yaml_text(text: str, *, origin: str, may_be_path: bool = True) -> list[object]:
    try:
        docs: list[object] = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(
            [ConfigProblem(origin, "", f"is not valid YAML{where}: {_yaml_reason(err)}")]
        ) from err
    if may_be_path and len(docs) == 1 and isinstance(docs[0], str) and "\n" not in text.strip():
        # A lone word is far more likely a mistyped path than a config.
        raise ConfigError(
            [
                ConfigProblem(
                    origin,
                    "",
                    f"no such file: {text.strip()!r}; pass the path of an existing YAML file, "
                    "or YAML text",
                )
            ]
        )
    if len(docs) == 1 and isinstance(docs[0], list):
        return list(docs[0])
    return docs


def _yaml_reason(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None)
    return str(problem) if problem else str(err)


# -- writing a config back ---------------------------------------------------------------


def dump_yaml(config: QueueConfig) -> str:
    """The config as multi-document YAML in our own apiVersion; ``load_config`` reads it."""
    return yaml.dump_all(
        to_documents(config),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def to_documents(config: QueueConfig) -> list[Document]:
    """The config as documents in our own apiVersion, defaults left out for readability."""
    docs: list[Document] = []
    if config.settings != Settings():
        docs.append(_document("Configuration", "default", _settings_spec(config.settings)))
    docs.extend(
        _document("ResourceFlavor", f.name, _flavor_spec(f)) for f in config.flavors.values()
    )
    docs.extend(_document("Cohort", c.name, _cohort_spec(c)) for c in config.cohorts.values())
    docs.extend(
        _document("ClusterQueue", cq.name, _cluster_queue_spec(cq))
        for cq in config.cluster_queues.values()
    )
    docs.extend(_document("Queue", q.name, _queue_spec(q)) for q in config.queues.values())
    docs.extend(_priority_class_document(pc) for pc in config.priority_classes.values())
    docs.extend(
        _document("AdmissionCheck", ac.name, _admission_check_spec(ac))
        for ac in config.admission_checks.values()
    )
    return docs


def _document(kind: str, name: str, spec: Document) -> Document:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _flavor_spec(flavor: ResourceFlavor) -> Document:
    spec: Document = {}
    if flavor.node_labels:
        spec["nodeLabels"] = dict(flavor.node_labels)
    if flavor.worker_group is not None:
        spec["workerGroup"] = flavor.worker_group
    if flavor.provisioning is not ProvisioningMode.INCREMENTAL:
        spec["provisioning"] = flavor.provisioning.value
    return spec


def _resource_groups(groups: Sequence[ResourceGroup]) -> list[Document]:
    out: list[Document] = []
    for group in groups:
        flavors: list[Document] = []
        for fq in group.flavors:
            resources: list[Document] = []
            for rq in fq.resources:
                binary = rq.name == MEMORY
                resource: Document = {
                    "name": rq.name,
                    "nominalQuota": format_quantity(rq.nominal, binary=binary),
                }
                if rq.borrowing_limit is not None:
                    resource["borrowingLimit"] = format_quantity(rq.borrowing_limit, binary=binary)
                if rq.lending_limit is not None:
                    resource["lendingLimit"] = format_quantity(rq.lending_limit, binary=binary)
                resources.append(resource)
            flavors.append({"name": fq.flavor, "resources": resources})
        out.append({"coveredResources": list(group.covered_resources), "flavors": flavors})
    return out


def _weight(spec: Document, weight: float) -> None:
    if weight != 1.0:
        spec["fairSharing"] = {"weight": int(weight) if weight.is_integer() else weight}


def _cohort_spec(cohort: Cohort) -> Document:
    spec: Document = {}
    if cohort.parent is not None:
        spec["parentName"] = cohort.parent
    if cohort.resource_groups:
        spec["resourceGroups"] = _resource_groups(cohort.resource_groups)
    _weight(spec, cohort.fair_sharing_weight)
    return spec


def _cluster_queue_spec(cq: ClusterQueue) -> Document:
    spec: Document = {}
    if cq.cohort is not None:
        spec["cohortName"] = cq.cohort
    spec["resourceGroups"] = _resource_groups(cq.resource_groups)
    if cq.queueing_strategy is not QueueingStrategy.BEST_EFFORT_FIFO:
        spec["queueingStrategy"] = cq.queueing_strategy.value
    if cq.preemption != Preemption():
        spec["preemption"] = _preemption(cq.preemption)
    if cq.flavor_fungibility != FlavorFungibility():
        spec["flavorFungibility"] = {
            "whenCanBorrow": cq.flavor_fungibility.when_can_borrow.value,
            "whenCanPreempt": cq.flavor_fungibility.when_can_preempt.value,
        }
    _weight(spec, cq.fair_sharing_weight)
    if cq.admission_checks:
        spec.update(_admission_check_refs(cq.admission_checks))
    if cq.stop_policy is not StopPolicy.NONE:
        spec["stopPolicy"] = cq.stop_policy.value
    if cq.usage_based_fair_sharing:
        spec["admissionScope"] = {"admissionMode": "UsageBasedAdmissionFairSharing"}
    return spec


def _preemption(p: Preemption) -> Document:
    out: Document = {
        "withinClusterQueue": p.within_cluster_queue.value,
        "reclaimWithinCohort": p.reclaim_within_cohort.value,
    }
    borrow: Document = {"policy": p.borrow_within_cohort.policy.value}
    if p.borrow_within_cohort.max_priority_threshold is not None:
        borrow["maxPriorityThreshold"] = p.borrow_within_cohort.max_priority_threshold
    out["borrowWithinCohort"] = borrow
    if p.wait_before_preempting_s:
        out["waitBeforePreemptingSeconds"] = p.wait_before_preempting_s
    return out


def _admission_check_refs(refs: Sequence[AdmissionCheckRef]) -> Document:
    if not any(ref.on_flavors for ref in refs):
        return {"admissionChecks": [ref.name for ref in refs]}
    rules: list[Document] = []
    for ref in refs:
        rule: Document = {"name": ref.name}
        if ref.on_flavors:
            rule["onFlavors"] = list(ref.on_flavors)
        rules.append(rule)
    return {"admissionChecksStrategy": {"admissionChecks": rules}}


def _queue_spec(queue: Queue) -> Document:
    spec: Document = {"clusterQueue": queue.cluster_queue}
    if queue.stop_policy is not StopPolicy.NONE:
        spec["stopPolicy"] = queue.stop_policy.value
    _weight(spec, queue.fair_sharing_weight)
    return spec


def _priority_class_document(pc: PriorityClass) -> Document:
    doc: Document = {
        "apiVersion": API_VERSION,
        "kind": "PriorityClass",
        "metadata": {"name": pc.name},
        "value": pc.value,
    }
    if pc.global_default:
        doc["globalDefault"] = True
    if pc.description:
        doc["description"] = pc.description
    return doc


def _admission_check_spec(check: AdmissionCheck) -> Document:
    spec: Document = {"controllerName": check.controller_name}
    if check.parameters:
        spec["parameters"] = dict(check.parameters)
    return spec


def _seconds(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _settings_spec(settings: Settings) -> Document:
    fair = settings.fair_sharing
    wait = settings.wait_for_placement
    requeue = settings.requeuing
    requeuing: Document = {}
    if requeue.backoff_limit_count is not None:
        requeuing["backoffLimitCount"] = requeue.backoff_limit_count
    requeuing["backoffBaseSeconds"] = _seconds(requeue.backoff_base_s)
    requeuing["backoffMaxSeconds"] = _seconds(requeue.backoff_max_s)
    return {
        "fairSharing": {
            "enable": fair.enable,
            "preemptionStrategies": [s.value for s in fair.preemption_strategies],
        },
        "admissionFairSharing": {
            "usageHalfLifeTime": format_duration(settings.admission_fair_sharing.usage_half_life_s)
        },
        "waitForPodsReady": {
            "enable": wait.enable,
            "timeout": format_duration(wait.timeout_s),
            "requeuingStrategy": requeuing,
        },
    }
