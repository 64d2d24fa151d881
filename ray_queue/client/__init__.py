"""The client API users write against (docs/contract.md §3); re-exported by ``ray_queue``."""

from ray_queue.client.actors import QueuedActor
from ray_queue.client.api import (
    apply_config,
    cancel,
    get,
    init,
    load_config,
    pending,
    placement_group,
    remote,
    shutdown,
    status,
    wait,
)
from ray_queue.client.jobs import QueuedJob, submit_job
from ray_queue.client.placement_group import QueuedPlacementGroup
from ray_queue.client.remote import QueuedObjectRef

__all__ = [
    "QueuedActor",
    "QueuedJob",
    "QueuedObjectRef",
    "QueuedPlacementGroup",
    "apply_config",
    "cancel",
    "get",
    "init",
    "load_config",
    "pending",
    "placement_group",
    "remote",
    "shutdown",
    "status",
    "submit_job",
    "wait",
]
