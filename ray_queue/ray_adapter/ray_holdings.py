"""What each Ray job holds outside ray-queue's own placement groups, as Ray's GCS says.

Unmanaged usage (``manager/unmanaged.py``) is measured per flavor; to say *whose* it is,
the manager reads two GCS tables: placement groups (their bundles are reserved on a node
from the moment Ray places them, and the table names the job that created each) and
alive actors outside any group (they hold what they asked for on their node). Tasks are
not attributed: Ray's GCS keeps no table of running tasks with their resources (only the
dashboard's state API lists them, and at a cost per task that the manager would pay every
few seconds), so work from plain tasks shows in the per-flavor figure with no job named.

The tables are read through ``GlobalStateAccessor`` as ``ray.util.placement_group_table``
and ``ray._private.state.actors`` read them, but parsed here from Ray's protobuf messages,
because Ray's own parsing drops the creating job (groups) and the node (actors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray

from ray_queue.engine.model import to_milli
from ray_queue.ray_adapter.actions import PG_PREFIX
from ray_queue.wire import RayJobHolding


def ray_job_holdings() -> list[RayJobHolding]:
    """What each Ray job holds on each node, outside ray-queue's groups."""
    # Ray generates its protobuf modules at run time and ships no .pyi for them.
    from ray.core.generated import gcs_pb2

    created = gcs_pb2.PlacementGroupTableData.CREATED  # type: ignore[attr-defined]
    accessor = ray._private.state.state._connect_and_get_accessor()
    held: list[RayJobHolding] = []
    for raw in accessor.get_placement_group_table():
        group = gcs_pb2.PlacementGroupTableData.FromString(raw)  # type: ignore[attr-defined]
        if group.name.startswith(PG_PREFIX) or group.state != created:
            continue  # the manager's own (admitted: not unmanaged), or not placed yet
        job = group.creator_job_id.hex()
        for bundle in group.bundles:
            held.append(RayJobHolding(job, bundle.node_id.hex(), _milli(bundle.unit_resources)))
    for raw in accessor.get_actor_table(None, "ALIVE"):
        actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
        if actor.placement_group_id or not actor.required_resources:
            continue  # its group holds its resources, counted above (or ray-queue's)
        held.append(
            RayJobHolding(actor.job_id.hex(), actor.node_id.hex(), _milli(actor.required_resources))
        )
    return held


def _milli(resources: Mapping[str, Any]) -> dict[str, int]:
    return {name: to_milli(float(amount)) for name, amount in resources.items() if amount > 0}
