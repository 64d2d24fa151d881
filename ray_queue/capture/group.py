"""``CapturedPlacementGroup``: what a captured ``ray.util.placement_group`` returns.

It *is* a Ray ``PlacementGroup`` (a subclass), so Ray's own code takes it: Tune's and
AIR's resource managers key dicts by it and wait on ``ready()``, Train's worker group
calls ``wait(timeout)``, and ``PlacementGroupSchedulingStrategy`` reads its ``id`` when
a task or actor is submitted. Behind it is a ``QueuedPlacementGroup``: the real group
exists only once the manager admits the workload, so

- ``id`` is the real group's id; read before admission it waits for admission (Ray
  would queue a task submitted into a group not yet created; here the submitting call
  waits instead), and after a preemption it waits for re-admission;
- ``ready()`` resolves once admitted *and* placed (to ``True``, not to the group as
  Ray's does); ``wait(timeout_seconds)`` covers admission too;
- ``bundle_specs`` / ``bundle_count`` are the requested bundles, known at once;
- equality and hashing are by object, never waiting (Tune hashes groups before they
  are ready, in the one thread that would also see other trials finish);
- pickled (sent to a task or actor), it becomes a plain ``PlacementGroup`` of the real
  id, so a worker holds exactly what Ray would have given it.
"""

from __future__ import annotations

import threading
from typing import Any

from ray.util.placement_group import PlacementGroup

from ray_queue.client.placement_group import QueuedPlacementGroup
from ray_queue.errors import Preempted, WorkloadCancelled


class CapturedPlacementGroup(PlacementGroup):
    """A Ray ``PlacementGroup`` admitted through the queue (see the module docstring)."""

    def __init__(self, queued: QueuedPlacementGroup, bundles: list[dict[str, float]]) -> None:
        # PlacementGroup.__init__ would assign ``id``, which is a property here.
        self.queued = queued
        self.bundle_cache = bundles
        self._last_id: Any = None
        self._id_lock = threading.Lock()

    @property
    def id(self) -> Any:
        """The real group's ``PlacementGroupID``, waiting for admission if need be."""
        while True:
            try:
                pg_id = self.queued.placement_group.id
            except (RuntimeError, Preempted):
                # Not admitted yet, or preempted and queued again: wait for the group.
                self.queued.wait(timeout_seconds=None)
                continue
            except WorkloadCancelled:
                # Removed (or cancelled): Ray code may still read the id of a group it
                # removed, e.g. to log it; the last real one, or nil if there never was.
                if self._last_id is not None:
                    return self._last_id
                from ray import PlacementGroupID

                return PlacementGroupID.nil()
            with self._id_lock:
                self._last_id = pg_id
            return pg_id

    @id.setter
    def id(self, value: Any) -> None:
        raise AttributeError("a captured placement group's id is set by its admission")

    @property
    def workload(self) -> str:
        return str(self.queued.workload)

    @property
    def is_empty(self) -> bool:
        return False

    def ready(self) -> Any:
        # Submissions of a shape already accepted are batched; the manager must know the
        # workload before it is asked to wait for it, or the wait fails at once with
        # UnknownWorkloadError and Ray's code (Tune's ``ray.wait``) takes that as ready.
        self.queued._runtime.flush()
        return self.queued.ready()

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        return self.queued.wait(timeout_seconds=timeout_seconds)

    def remove(self) -> None:
        """Give the quota back (what ``ray.util.remove_placement_group`` does to it)."""
        self.queued.remove()

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementGroup, (self.id, self.bundle_cache))

    def __repr__(self) -> str:
        return f"CapturedPlacementGroup({self.queued.name or self.queued.workload})"
