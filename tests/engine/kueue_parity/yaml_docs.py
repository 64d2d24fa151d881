"""Kueue YAML for the ported tables, written compactly.

Each helper returns Kueue-format YAML text (``kueue.x-k8s.io/v1beta1``) that goes through
our strict loader unchanged, so a case's config is what a Kueue user would apply. A
resource is ``{"cpu": ("50", "10")}``: nominal quota, then optionally borrowingLimit and
lendingLimit (``""`` for unset), as in Kueue's ``Resource(name, nominal, borrowing,
lending)`` wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping

#: One flavor of a resource group: (flavor, {resource: (nominal, borrowing, lending)}).
FlavorQuota = tuple[str, Mapping[str, tuple[str, ...]]]


def resource_groups(groups: tuple[tuple[FlavorQuota, ...], ...]) -> str:
    lines = ["  resourceGroups:"]
    for group in groups:
        covered: list[str] = []
        for _, resources in group:
            covered += [r for r in resources if r not in covered]
        lines.append(f"  - coveredResources: [{', '.join(covered)}]")
        lines.append("    flavors:")
        for flavor, resources in group:
            lines.append(f"    - name: {flavor}")
            lines.append("      resources:")
            for name, limits in resources.items():
                fields = [f"name: {name}", f'nominalQuota: "{limits[0]}"']
                if len(limits) > 1 and limits[1] != "":
                    fields.append(f'borrowingLimit: "{limits[1]}"')
                if len(limits) > 2 and limits[2] != "":
                    fields.append(f'lendingLimit: "{limits[2]}"')
                lines.append(f"      - {{{', '.join(fields)}}}")
    return "\n".join(lines) + "\n"


def cluster_queue(
    name: str,
    *groups: tuple[FlavorQuota, ...],
    cohort: str | None = None,
    strict_fifo: bool = False,
    preemption: str | None = None,
    fungibility: str | None = None,
    weight: str | None = None,
) -> str:
    """A ClusterQueue; ``preemption`` and ``fungibility`` are YAML flow mappings."""
    text = f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
"""
    if cohort is not None:
        text += f"  cohort: {cohort}\n"
    if strict_fifo:
        text += "  queueingStrategy: StrictFIFO\n"
    if preemption is not None:
        text += f"  preemption: {preemption}\n"
    if fungibility is not None:
        text += f"  flavorFungibility: {fungibility}\n"
    if weight is not None:
        text += f'  fairSharing: {{weight: "{weight}"}}\n'
    return text + resource_groups(groups)


def cohort(
    name: str,
    *groups: tuple[FlavorQuota, ...],
    parent: str | None = None,
    weight: str | None = None,
) -> str:
    text = f"""---
apiVersion: kueue.x-k8s.io/v1beta1
kind: Cohort
metadata: {{name: {name}}}
spec:
"""
    body = ""
    if parent is not None:
        body += f"  parent: {parent}\n"
    if weight is not None:
        body += f'  fairSharing: {{weight: "{weight}"}}\n'
    if groups:
        body += resource_groups(groups)
    return text + (body or "  {}\n")
