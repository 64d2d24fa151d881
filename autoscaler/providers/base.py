"""The seam between the planner and whatever creates nodes: ``NodeProvider``.

The planner is pure and reasons about worker groups and their nodes; a provider reads
them from the real world (a RayCluster plus Ray's GCS, or local ``ray start`` processes)
and carries out the few actions a plan contains. Keeping the contract here, with no
Kubernetes or Ray import, lets the planner and the loop be tested against a recording fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ray_queue.engine.model import Milli, ResourceName, WorkloadId

Shape = Mapping[ResourceName, Milli]


@dataclass(frozen=True, slots=True)
class WorkerNode:
    """One worker (a Pod, or a local ``ray start`` process) of a group."""

    #: The name the provider deletes it by (the Pod name, the local node name).
    name: str
    #: The Ray node id (hex) once the worker joined Ray; ``None`` while it is starting.
    ray_node_id: str | None = None
    #: Free resources as Ray reports them; ``None`` while unknown (still starting), which
    #: the planner reads as "the whole shape is free" so a starting node is never doubled.
    available: Shape | None = None
    #: When Ray last saw it go idle (seconds, the loop's clock); ``None`` while busy.
    idle_since: float | None = None
    #: It holds a placement group bundle (or any reserved resource): never delete it.
    busy: bool = False


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """A worker group as its spec and its live nodes describe it."""

    name: str
    #: What one host (Pod / Ray node) offers, in milli-units.
    shape: Shape
    min_replicas: int
    max_replicas: int
    #: ``spec.replicas``: desired slices (a slice is ``num_of_hosts`` hosts).
    replicas: int
    #: Hosts per replica: > 1 for multi-host TPU slices, scaled only in whole slices.
    num_of_hosts: int = 1
    #: Ray node labels its nodes carry (flavors select nodes by these).
    labels: Mapping[str, str] = field(default_factory=dict)
    nodes: tuple[WorkerNode, ...] = ()
    #: Workers already being removed (``scaleStrategy.workersToDelete``).
    deleting: tuple[str, ...] = ()
    #: A per-gang group the autoscaler created for one ProvisioningRequest (owner workload
    #: id), or ``None`` for a group of the cluster's own spec.
    gang_of: str | None = None

    @property
    def desired_hosts(self) -> int:
        return self.replicas * self.num_of_hosts


@dataclass(frozen=True, slots=True)
class GangGroup:
    """A worker group for one provisioned gang: ``base``'s template, ``replicas`` slices,
    its pods annotated to consume ``request``."""

    name: str
    base: str
    replicas: int
    request: str
    provisioning_class: str
    workload: WorkloadId


class ProviderError(Exception):
    """Root of provider failures; the loop counts them by ``kind`` and retries next pass."""

    kind = "provider"


class ConflictError(ProviderError):
    """Someone else changed the object between our read and our write; re-read, retry."""

    kind = "conflict"


class TransientError(ProviderError):
    """Server error, timeout or connection loss: retry with back-off."""

    kind = "transient"


class PermanentError(ProviderError):
    """A request the server refuses as such (bad spec, forbidden): retrying will not help."""

    kind = "permanent"


class NodeProvider(Protocol):
    """Reads worker groups and changes their size.

    Contract:
    - ``groups()`` is a fresh read every call (no cache the caller must invalidate), so a
      restarted autoscaler sees exactly what the cluster says. It is *eventually
      consistent*: a node just asked for may not appear yet, but ``replicas`` already
      counts it, and the planner counts the missing hosts as free capacity.
    - ``set_replicas`` is idempotent (setting the current value is a no-op) and uses
      optimistic concurrency: it succeeds only against the group it was planned from, or
      raises ``ConflictError`` (never blindly overwrites a concurrent change).
    - ``delete_workers`` drains each worker in Ray first, then removes exactly those
      workers and lowers ``replicas`` by their count. Deleting a worker already gone or
      already being deleted is a no-op.
    - Errors are ``ProviderError`` subclasses. Not thread-safe: one loop owns a provider.
    - Optionally ``pending_gangs() -> list[list[Shape]] | None``: the bundles of every
      placement group Ray cannot place yet (``None``: unknown). The loop passes it to the
      planner so an admitted gang already placed by Ray is not packed again.
    """

    def groups(self) -> Sequence[WorkerGroup]: ...

    def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
        """Set desired slices of ``group`` to ``replicas`` if it is still ``expected``."""
        ...

    def delete_workers(self, group: str, workers: Sequence[str]) -> None: ...
