"""Everything that touches Ray on the manager's side: placement groups, jobs, nodes, owners.

The manager core speaks only ``RayActions`` and ``NodeShape``; this package is the one
place those become Ray calls, so Ray API churn stays here.
"""

from ray_queue.ray_adapter.actions import RayAdapter
from ray_queue.ray_adapter.cluster import dead_owners, node_shapes, on_the_head

__all__ = ["RayAdapter", "dead_owners", "node_shapes", "on_the_head"]
