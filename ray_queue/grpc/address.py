"""Where the manager's gRPC API is: flag, environment, the local Ray cluster, or default.

The manager publishes its address in Ray's internal key-value store (namespace
``ray_queue``, key ``grpc_address``: ``manager_backend.publish_address``) when it starts its
server, so on a Ray node ``ray-queue status`` needs no flags. Asking Ray costs a driver
connection (a second or two), so it is only tried when a local Ray cluster exists and
nothing was given.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ADDRESS_ENV = "RAY_QUEUE_ADDRESS"
DEFAULT_ADDRESS = "localhost:50051"
KV_NAMESPACE = "ray_queue"
KV_KEY = "grpc_address"
#: Ray writes the address of the cluster started on this machine here.
_RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")


def resolve(flag: str | None) -> tuple[str, str]:
    """The address to dial and where it came from (for error messages)."""
    if flag:
        return flag, "--address"
    if os.environ.get(ADDRESS_ENV):
        return os.environ[ADDRESS_ENV], f"${ADDRESS_ENV}"
    published = from_ray()
    if published:
        return published, "the local Ray cluster"
    return DEFAULT_ADDRESS, "the default"


def from_ray() -> str | None:
    """The address the manager published in the local Ray cluster, if any."""
    if not _RAY_CURRENT_CLUSTER.exists() and not os.environ.get("RAY_ADDRESS"):
        return None
    try:
        import ray
        from ray.experimental import internal_kv

        if not ray.is_initialized():
            ray.init(
                address="auto",
                namespace=KV_NAMESPACE,
                logging_level=logging.ERROR,
                log_to_driver=False,
                configure_logging=False,
            )
        value = internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    except Exception:  # no reachable cluster: fall back to the default
        return None
    return value.decode() if value else None
