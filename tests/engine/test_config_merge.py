"""``kubectl apply``-style merging of a file into the running config, and its diff."""

from __future__ import annotations

import pytest

from ray_queue.engine.config_loader import parse_yaml, yaml_documents
from ray_queue.engine.config_merge import Change, diff, merge_documents
from ray_queue.engine.errors import ConfigError

RUNNING = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: cpu}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: main}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources: [{name: CPU, nominalQuota: 4}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team-a}
spec: {clusterQueue: main}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: team-b}
spec: {clusterQueue: main}
"""

#: One Kueue LocalQueue: replaces our Queue of the same name, adds nothing else.
NEW_QUEUE = """
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {name: team-c, namespace: ml}
spec: {clusterQueue: main}
"""


def test_a_file_with_one_object_adds_it_and_keeps_the_rest() -> None:
    running = parse_yaml(RUNNING)
    merged = merge_documents(running, yaml_documents(NEW_QUEUE))
    assert set(merged.queues) == {"team-a", "team-b", "team-c"}
    assert [str(c) for c in diff(running, merged)] == ["+ Queue/team-c"]


def test_an_object_of_the_same_name_is_replaced_whatever_its_apiversion() -> None:
    running = parse_yaml(RUNNING)
    bigger = RUNNING.split("---")[1].replace("nominalQuota: 4", "nominalQuota: 8")
    merged = merge_documents(running, yaml_documents(bigger))
    assert (
        merged.cluster_queues["main"].resource_groups
        != running.cluster_queues["main"].resource_groups
    )
    assert [(c.change, c.kind, c.name) for c in diff(running, merged)] == [
        (Change.CHANGED, "ClusterQueue", "main")
    ]


def test_prune_makes_the_file_the_whole_config() -> None:
    running = parse_yaml(RUNNING)
    only_a = "---".join(RUNNING.split("---")[:3])
    merged = merge_documents(running, yaml_documents(only_a), prune=True)
    assert [str(c) for c in diff(running, merged)] == ["- Queue/team-b"]
    assert merge_documents(running, yaml_documents(only_a)) == running


def test_a_merged_config_is_validated_as_a_whole() -> None:
    running = parse_yaml(RUNNING)
    broken = NEW_QUEUE.replace("clusterQueue: main", "clusterQueue: missing")
    with pytest.raises(ConfigError) as info:
        merge_documents(running, yaml_documents(broken))
    assert [(p.document, p.field) for p in info.value.problems] == [
        ("LocalQueue/team-c", "spec.clusterQueue")
    ]
