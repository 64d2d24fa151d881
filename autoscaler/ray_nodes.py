"""Ray's view of the worker nodes: free resources, idleness, and draining. Talks to GCS.

Both providers need the same two things from Ray: which nodes are idle (and since when)
and a way to drain a node before its Pod or process goes. Ray 2.x exposes both on the GCS
client that its own autoscaler v2 uses: ``GcsClient.get_cluster_resource_state()`` (the
``autoscaler.proto`` ``ClusterResourceState``: per node its instance id, node type,
total/available resources, status and ``idle_duration_ms``) and
``GcsClient.drain_node(node_id, reason, message, deadline_ms)`` (GCS DrainNode: the raylet
stops taking new work and is marked DRAINING; it answers whether it accepted, and refuses
a node that is busy when the reason is idle termination). These are Ray's developer APIs;
they are wrapped here so a change in them touches one file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ray_queue.engine.model import Milli, to_milli

logger = logging.getLogger(__name__)

#: Ray reports memory in bytes; everything else in whole units.
_BYTE_RESOURCES = frozenset({"memory", "object_store_memory"})


@dataclass(frozen=True, slots=True)
class RayNode:
    node_id: str
    #: ``RAY_CLOUD_INSTANCE_ID`` of the node: the Pod name under KubeRay, our node name
    #: under ``LocalProvider``.
    instance_id: str
    #: ``RAY_NODE_TYPE_NAME``: the worker group.
    node_type: str
    #: RUNNING, IDLE, DRAINING or DEAD.
    status: str
    idle_duration_s: float
    total: Mapping[str, Milli] = field(default_factory=dict)
    available: Mapping[str, Milli] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.status != "DEAD"

    @property
    def busy(self) -> bool:
        """Some resource is in use: a placement group bundle, a task or an actor."""
        return any(self.available.get(name, 0) < amount for name, amount in self.total.items())


class RayGcs:
    """A thin, typed wrapper over Ray's ``GcsClient``. Each call is one RPC."""

    def __init__(self, gcs_address: str, *, timeout_s: float = 10.0) -> None:
        # ray._raylet is compiled (Cython) and Ray ships no stub that names GcsClient.
        from ray._raylet import GcsClient  # type: ignore[attr-defined]

        self._client = GcsClient(address=gcs_address)
        self._timeout_s = timeout_s

    def nodes(self) -> list[RayNode]:
        # Ray's generated protobuf modules define their names at run time and ship no .pyi
        # (the attr-defined ignores in this class).
        from ray.core.generated import autoscaler_pb2

        reply = autoscaler_pb2.GetClusterResourceStateReply()  # type: ignore[attr-defined]
        reply.ParseFromString(self._client.get_cluster_resource_state())
        out = []
        for node in reply.cluster_resource_state.node_states:
            status = autoscaler_pb2.NodeStatus.Name(node.status)  # type: ignore[attr-defined]
            out.append(
                RayNode(
                    node_id=node.node_id.hex(),
                    instance_id=node.instance_id,
                    node_type=node.ray_node_type_name,
                    status=status,
                    idle_duration_s=node.idle_duration_ms / 1000.0,
                    total=_milli(node.total_resources),
                    available=_milli(node.available_resources),
                    labels=dict(node.labels),
                )
            )
        return out

    def pending_gangs(self) -> list[list[dict[str, Milli]]]:
        """Bundles of every placement group Ray cannot place yet (autoscaler v2's
        ``pending_gang_resource_requests``)."""
        from ray.core.generated import autoscaler_pb2

        reply = autoscaler_pb2.GetClusterResourceStateReply()  # type: ignore[attr-defined]
        reply.ParseFromString(self._client.get_cluster_resource_state())
        out = []
        for gang in reply.cluster_resource_state.pending_gang_resource_requests:
            requests = (
                gang.bundle_selectors[0].resource_requests if gang.bundle_selectors
                else gang.requests
            )
            out.append([_milli(r.resources_bundle) for r in requests])
        return out

    def drain(self, node_id: str, *, message: str, deadline_s: float = 0.0) -> tuple[bool, str]:
        """Ask GCS to drain an idle node. Returns (accepted, why not).

        Reason IDLE_TERMINATION: Ray refuses it if the node got work meanwhile, which is
        exactly the race a scale-down must lose.
        """
        from ray.core.generated import autoscaler_pb2

        deadline_ms = int((time.time() + deadline_s) * 1000) if deadline_s > 0 else 0
        accepted, why = self._client.drain_node(
            node_id,
            autoscaler_pb2.DrainNodeReason.Value(  # type: ignore[attr-defined]
                "DRAIN_NODE_REASON_IDLE_TERMINATION"
            ),
            message,
            deadline_ms,
        )
        return bool(accepted), str(why or "")


def _milli(resources: Mapping[str, float]) -> dict[str, Milli]:
    out = {}
    for name, amount in resources.items():
        # Bytes stay bytes-as-milli to match the engine (1 byte == 1000), and node-id
        # marker resources ("node:…") are not demand anyone packs against.
        if name.startswith("node:"):
            continue
        out[name] = to_milli(amount) if name not in _BYTE_RESOURCES else int(amount) * 1000
    return out
