"""The soak's cluster and queue config (``benchmarks.soak``): shapes as data.

Two worker nodes of two logical GPUs each, one labelled as A100 and one as T4, and a
head with one CPU for the manager; three tenants in one cohort, with quotas in three
variants that the admin re-applies during the run. Nominal quotas add up to the nodes
in every variant, so borrowing, reclaim and preemption within a queue all happen.

A third flavor, L4, has no node until the autoscaler (``benchmarks.soak_autoscaler``)
starts one for work admitted to it, and removes it once idle. L4 is team-c's first
flavor (its nominal quota is there); the others may borrow it, after their A100 and T4.
"""

from __future__ import annotations

from typing import Any

TENANTS = ("team-a", "team-b", "team-c")
A100 = {"ray.io/accelerator-type": "A100"}
T4 = {"ray.io/accelerator-type": "T4"}
L4 = {"ray.io/accelerator-type": "L4"}
#: The autoscaled worker group: at most one node of this shape.
AUTOSCALED: dict[str, Any] = {
    "group": "l4-workers",
    "flavor": "l4",
    "num_cpus": 2,
    "num_gpus": 2,
    "max_replicas": 1,
    "labels": L4,
}
#: L4 quotas per team, the same in every variant: (CPU, GPU, GPU borrowing limit or None).
L4_QUOTAS: dict[str, tuple[float, float, float | None]] = {
    "team-a": (0, 0, 1),
    "team-b": (0, 0, 1),
    "team-c": (2, 2, None),
}
#: The order each team's flavors are tried in.
FLAVOR_ORDER = {
    "team-a": ("a100", "t4", "l4"),
    "team-b": ("a100", "t4", "l4"),
    "team-c": ("l4", "a100", "t4"),
}
WORKER_ARGS: list[dict[str, Any]] = [
    {"num_cpus": 3, "num_gpus": 2, "labels": A100},
    {"num_cpus": 3, "num_gpus": 2, "labels": T4},
]

#: Quotas per variant: (team, flavor) -> (CPU, GPU, GPU borrowing limit or None).
#: Nominal quotas add up to the nodes (3 CPU, 2 GPU per flavor) in every variant.
VARIANTS: list[dict[tuple[str, str], tuple[float, float, float | None]]] = [
    {
        ("team-a", "a100"): (1.5, 1, None),
        ("team-a", "t4"): (1, 0, 1),
        ("team-b", "a100"): (1, 1, 1),
        ("team-b", "t4"): (1, 1, None),
        ("team-c", "a100"): (0.5, 0, 1),
        ("team-c", "t4"): (1, 1, None),
    },
    {
        ("team-a", "a100"): (1, 2, None),
        ("team-a", "t4"): (1, 0, 0),
        ("team-b", "a100"): (1, 0, 2),
        ("team-b", "t4"): (1, 1, None),
        ("team-c", "a100"): (1, 0, 1),
        ("team-c", "t4"): (1, 1, 1),
    },
    {
        ("team-a", "a100"): (1, 1, 1),
        ("team-a", "t4"): (1, 1, None),
        ("team-b", "a100"): (1, 1, None),
        ("team-b", "t4"): (1, 0, 1),
        ("team-c", "a100"): (1, 0, None),
        ("team-c", "t4"): (1, 1, 1),
    },
]


def config_yaml(variant: int) -> str:
    quotas = VARIANTS[variant % len(VARIANTS)]
    docs = [
        "apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: a100}\n"
        "spec: {nodeLabels: {ray.io/accelerator-type: A100}}",
        "apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: t4}\n"
        "spec: {nodeLabels: {ray.io/accelerator-type: T4}}",
        "apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: l4}\n"
        "spec: {nodeLabels: {ray.io/accelerator-type: L4}, "
        f"workerGroup: {AUTOSCALED['group']}}}",
        "apiVersion: ray-queue.io/v1alpha1\nkind: PriorityClass\nmetadata: {name: low}\n"
        "value: 10\nglobalDefault: true",
        "apiVersion: ray-queue.io/v1alpha1\nkind: PriorityClass\nmetadata: {name: high}\n"
        "value: 100",
    ]
    for team in TENANTS:
        flavors = []
        for flavor in FLAVOR_ORDER[team]:
            cpu, gpu, borrow = L4_QUOTAS[team] if flavor == "l4" else quotas[(team, flavor)]
            limit = "" if borrow is None else f", borrowingLimit: {borrow}"
            flavors.append(
                f"    - name: {flavor}\n      resources:\n"
                f"      - {{name: CPU, nominalQuota: {cpu}}}\n"
                f"      - {{name: GPU, nominalQuota: {gpu}{limit}}}"
            )
        docs.append(
            "apiVersion: ray-queue.io/v1alpha1\nkind: ClusterQueue\n"
            f"metadata: {{name: cq-{team}}}\nspec:\n  cohortName: soak\n"
            "  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}\n"
            "  resourceGroups:\n  - coveredResources: [CPU, GPU]\n    flavors:\n"
            + "\n".join(flavors)
        )
        docs.append(
            "apiVersion: ray-queue.io/v1alpha1\nkind: Queue\n"
            f"metadata: {{name: {team}}}\nspec: {{clusterQueue: cq-{team}}}"
        )
    return "---\n".join(d + "\n" for d in docs)
