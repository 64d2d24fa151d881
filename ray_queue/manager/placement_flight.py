"""Placement groups whose creation is in flight: asked of Ray, their id not known yet.

Ray's create and remove calls are synchronous GCS round trips; on the manager's loop they
were most of its busy time (issue 24). With ``DeferredPlacements`` (the actor's
``PlacementDesk``) the manager asks and goes on (for placement groups and actors; a
task's slot is still made at once, ``ManagerCore._is_task`` says why); a group is then in
one of three places in ``ManagerCore``, never two:

* held by ``ReleasePacer`` (not asked yet: a removal is too recent for Ray to re-use),
* in flight (``Flight``, by workload: asked, waiting for Ray's answer),
* created (``ManagerCore._pgs``: its id known, its owner told, its ``ready()`` watched).

A workload that leaves its admission while its group is in flight has the group removed
after it is created (or its creation dropped, if Ray was not asked yet) and its
``Flight`` dropped, so Ray's late answer, whose ticket no longer matches, is ignored.
The owner of an admission is told once Ray has the group, since it needs the group's id
to use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ray_queue.engine.model import Decision, PlacementStrategy, WorkloadId


class DeferredPlacements(Protocol):
    """Placement group calls that return at once; outcomes come back through
    ``ManagerCore.placements_settled``. A workload's calls take effect in the order they
    are made; removals may go ahead of other workloads' creations."""

    def create(
        self,
        workload: WorkloadId,
        ticket: int,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
        *,
        watch: bool,
    ) -> None:
        """Create the workload's group (idempotent); ``watch``: report it once placed."""
        ...

    def remove(self, workload: WorkloadId) -> None:
        """Remove the workload's group, after any creation of it asked before, or instead
        of one not made yet (idempotent)."""
        ...

    def watch(self, workload: WorkloadId, pg_id: str) -> None:
        """Report an existing group placed once it is (groups re-adopted at recovery)."""
        ...


@dataclass(frozen=True, slots=True)
class Flight:
    """One creation in flight: its ticket (Ray's answer must carry the same) and the
    admission to tell the owner of once Ray has the group (``None``: nobody to tell, a
    group recreated at recovery)."""

    ticket: int
    decision: Decision | None
