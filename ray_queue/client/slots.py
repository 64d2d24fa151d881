"""Slots: Ray-enforced room for a backlog of identical queued tasks.

Plain Ray is fast at many small tasks because an owner keeps a leased worker and feeds it
the next task of the same shape without asking the raylet again. Admitting tasks one at a
time gives that up: each admitted task is launched alone and its worker handed back when
it returns. Slots win it back without letting work run outside its quota.

When the manager admits a task whose owner has identical tasks queued behind it and
nothing else waits for that quota (its lease is open), it creates a one-bundle placement
group of the task's shape: a *slot*. The client launches the task in it and, once a task
has run to the end there (``Slot.warm``) and while the lease stays open and such tasks
are short (``PIPELINE_MAX_RUN_S``), queues up to ``SLOT_DEPTH - 1`` of the waiting
identical tasks behind the one holding it, in the same bundle. The bundle
holds one at a time, so Ray enforces the quota, and runs them back to back on one leased
worker. Each one that returns hands the quota to the next (``report(handovers=…)``) and
the manager moves the placement group along with it.

The tasks queued behind are not admitted. When the manager refuses a hand-over or preempts
the holder it removes the placement group; Ray fails what was queued in it with
``TaskPlacementGroupRemoved`` and the client puts those tasks back to wait for an
admission of their own, as if they had never been queued in Ray.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray

# Ray's generated protobuf modules define their names at run time and ship no .pyi.
from ray.core.generated.common_pb2 import ErrorType  # type: ignore[attr-defined]
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ray_queue.engine.model import LeaseKey
from ray_queue.ray_adapter.actions import pg_from_hex

#: Tasks per slot: the one holding the quota plus those queued in Ray behind it. Deep
#: enough that the leased worker never waits for the driver between tasks (4 measured
#: 0.6 of plain Ray's batch speed here, 8 measured 0.7), shallow enough that little work
#: is thrown away when the slot is lost.
SLOT_DEPTH = 8
#: Tasks are queued behind a holder only while their kind (lease key) last ran at most
#: this long. Pipelining saves a driver round trip per task, which only short tasks
#: notice; and a task queued in a slot that is then admitted on its own waits there for
#: the tasks ahead of it (Ray may have started it, so it cannot be moved), which only
#: short tasks make brief.
PIPELINE_MAX_RUN_S = 0.5
#: How Ray marks a task that failed because its placement group was removed.
_PLACEMENT_GROUP_REMOVED = str(ErrorType.Value("TASK_PLACEMENT_GROUP_REMOVED")).encode()


@dataclass(eq=False)
class Slot:
    """One slot's placement group and the tasks in it, in the order Ray runs them."""

    pg_id: str
    lease_key: LeaseKey
    strategy: PlacementGroupSchedulingStrategy
    #: ``tasks[0]`` holds the admission; the others are queued behind it in Ray.
    tasks: deque[Any] = field(default_factory=deque)
    #: False once its placement group is gone (or going): nothing more is queued in it.
    alive: bool = True
    #: True once a task ran to the end in it: its bundle is placed and a worker started
    #: there, so what is queued behind the holder starts as soon as the holder returns.
    #: Until then only the holder is in it (``SlotPipeline._fill``): a bundle Ray has not
    #: placed yet (a node still starting, workers still spawning) must not keep a
    #: backlog's tasks waiting while other slots run dry, nor hold the quota of those the
    #: manager admits meanwhile.
    warm: bool = False
    #: Orders queueing into and handing over within the slot (taken before a handle's).
    lock: threading.Lock = field(default_factory=threading.Lock)
    _launcher: tuple[Any, Any, Any] | None = None

    def launcher(self, remote_fn: Any, ray_options: Mapping[str, Any]) -> Any:
        """``remote_fn`` with ``ray_options``, scheduled into this slot. Ray's
        ``.options()`` costs more than submitting a task, and a slot runs one function
        over and over, so the last one is kept."""
        cached = self._launcher
        if cached is not None and cached[0] is remote_fn and cached[1] is ray_options:
            return cached[2]
        # The slot's bundle carries the node labels (the user's and the flavor's).
        options = {k: v for k, v in ray_options.items() if k != "label_selector"}
        options["scheduling_strategy"] = self.strategy
        launcher = remote_fn.options(**options)
        self._launcher = (remote_fn, ray_options, launcher)
        return launcher


def new_slot(pg_id: str, lease_key: LeaseKey) -> Slot:
    strategy = PlacementGroupSchedulingStrategy(pg_from_hex(pg_id), placement_group_bundle_index=0)
    return Slot(pg_id, lease_key, strategy)


def lost_with_its_placement_group(ref: Any) -> bool:
    """Whether a finished task ended because its slot's placement group was removed,
    rather than by running.

    Called for every task that ends in a slot, so it reads the result's metadata (Ray's
    error type) from this process's memory store without deserializing anything: errors
    always live there, and a result in the object store is a real return, so nothing is
    ever fetched. (Ray's public ``ray.get`` costs several times as much per task.)
    """
    # Set when the worker connects; Ray never declares it on the class.
    core_worker = ray._private.worker.global_worker.core_worker  # type: ignore[attr-defined]
    if not core_worker.object_exists(ref, memory_store_only=True):
        return False
    (stored,) = core_worker.get_objects([ref], 0)
    metadata = stored.metadata
    return metadata is not None and bytes(metadata) == _PLACEMENT_GROUP_REMOVED
