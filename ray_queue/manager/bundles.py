"""How an admitted workload becomes Ray bundles and label selectors.

The engine admits in milli-units and flavors; Ray places bundles in its own units on nodes
picked by labels. This is the translation between the two, shared by the placement group
the manager creates, the job it submits and the events its owner is told. Pure functions
of the config, the status and the workload's payload: no Ray, no manager state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import MILLI, WorkloadStatus
from ray_queue.store.base import Payload


def flavor_labels(config: QueueConfig, flavors: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name in sorted(set(flavors)):
        flavor = config.flavors.get(name)
        if flavor is not None:
            labels.update(flavor.node_labels)
    return labels


def label_selector(config: QueueConfig, status: WorkloadStatus) -> dict[str, str]:
    if status.admission is None:
        return {}
    return flavor_labels(config, status.admission.flavors())


def ray_bundles(
    config: QueueConfig, status: WorkloadStatus, payload: Payload
) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
    """The admitted bundles in Ray units, and each bundle's label selector: the user's
    own selector, overridden by the labels of the flavor the quota was charged to.
    ``payload`` is the workload's (its ``bundle_label_selector``)."""
    admission = status.admission
    if admission is None:
        return [], []
    user: list[Mapping[str, str]] = list(payload.get("bundle_label_selector") or [])
    out: list[dict[str, float]] = []
    selectors: list[dict[str, str]] = []
    index = 0
    for group, assigned in zip(status.spec.bundle_groups, admission.groups, strict=True):
        labels = flavor_labels(config, assigned.flavors.values())
        for n in range(group.count):
            if n < assigned.count:
                out.append(to_ray(group.resources))
                selector = dict(user[index]) if index < len(user) else {}
                selector.update(labels)
                selectors.append(selector)
            index += 1
    return out, selectors


def to_ray(resources: Mapping[str, int]) -> dict[str, float]:
    """Milli-units back to Ray's units; zero amounts are dropped (Ray rejects them in PGs)."""
    return {name: amount / MILLI for name, amount in resources.items() if amount > 0}
