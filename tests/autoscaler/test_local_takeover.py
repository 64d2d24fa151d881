"""LocalProvider after its process was killed: the next one takes over the running nodes;
and a node whose ``ray start`` exited is forgotten.

Found by the soak's autoscaler kill: the provider knew its ``ray start`` nodes only in
memory, so one started after a SIGKILL saw an empty group, started another node beside
the orphan (past the group's maximum) and never removed the orphan. With a state file
the nodes are written down and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.providers.base import ConflictError
from autoscaler.providers.local import LocalGroupSpec, LocalProvider
from tests.k8s.process import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

GROUP = "spare"
SPEC = LocalGroupSpec(name=GROUP, shape={"CPU": 1000}, max_replicas=1, labels={"kind": "spare"})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": 80 * 1024 * 1024,
            "include_dashboard": False,
        },
    )
    try:
        ray.init(address=c.address)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()  # type: ignore[no-untyped-call]  # unannotated in Ray


def _alive(provider: LocalProvider) -> list[str]:
    (group,) = provider.groups()
    return [n.ray_node_id for n in group.nodes if n.ray_node_id]


def test_a_provider_takes_over_the_nodes_of_one_killed_before_it(
    cluster: Any, tmp_path: Path
) -> None:
    state = tmp_path / "nodes.json"
    first = LocalProvider(cluster.address, [SPEC], log_dir=tmp_path, state_file=state)
    first.set_replicas(GROUP, 1, expected=0)
    [(name, entry)] = json.loads(state.read_text()).items()
    try:
        [node_id] = wait_for(lambda: _alive(first), 90, what="the node to join Ray")
        # The first provider is gone without a word (SIGKILL): a second one reads the file.
        second = LocalProvider(cluster.address, [SPEC], log_dir=tmp_path, state_file=state)
        (group,) = second.groups()
        assert (group.replicas, [n.name for n in group.nodes]) == (1, [name])
        assert group.nodes[0].ray_node_id == node_id
        with pytest.raises(ConflictError):  # a plan made from "no nodes" is refused
            second.set_replicas(GROUP, 1, expected=0)
        second.delete_workers(GROUP, [name])
        assert json.loads(state.read_text()) == {}
        wait_for(lambda: not _alive(second) or None, 60, what="the node to leave Ray")
        # The next node gets a name of its own, not the one taken over.
        second.set_replicas(GROUP, 1, expected=0)
        [(new_name, _)] = json.loads(state.read_text()).items()
        assert new_name != name
        second.shutdown()
        assert json.loads(state.read_text()) == {}
    finally:
        for pid in [entry["pid"], *(e["pid"] for e in json.loads(state.read_text()).values())]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_a_node_whose_process_exited_is_forgotten(cluster: Any, tmp_path: Path) -> None:
    """Seen in the soak on an overloaded machine: ``ray start`` timed out joining the GCS
    and exited, and the group (at its maximum of one) counted it as a node for good."""
    state = tmp_path / "nodes.json"
    provider = LocalProvider(cluster.address, [SPEC], log_dir=tmp_path, state_file=state)
    provider.set_replicas(GROUP, 1, expected=0)
    [(name, entry)] = json.loads(state.read_text()).items()
    try:
        os.killpg(entry["pid"], signal.SIGKILL)  # as if it had given up
        wait_for(lambda: provider.groups()[0].replicas == 0 or None, 30, what="the node forgotten")
        assert json.loads(state.read_text()) == {}
        provider.set_replicas(GROUP, 1, expected=0)  # its place is free again
        [(new_name, _)] = json.loads(state.read_text()).items()
        assert new_name != name
    finally:
        provider.shutdown()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(entry["pid"], signal.SIGKILL)
