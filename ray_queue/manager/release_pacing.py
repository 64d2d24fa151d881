"""When to create a placement group after the manager has removed one.

Ray's placement group scheduler (in the GCS) sees the capacity a removed group gave back
only once the node reports it, about 100 ms later. A group created before then into that
capacity fails its first try and waits for the GCS's next retry, a fixed one-second tick.
A queue keeps its cluster full, so most of its admissions are exactly that case: each one
would wait a second for Ray. Holding the creation back until the release has been reported
costs a tenth of that (measured: benchmarks/README.md, "Ray re-uses freed capacity").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ray_queue.engine.model import Decision, WorkloadId

#: How long after a removal Ray's placement group scheduler has seen the freed capacity:
#: a group created 100 ms after a removal into a full cluster was placed in 5 ms (median
#: of 8), one created 50 ms after it waited 430 ms, one created at once 1,000 ms.
RELEASE_LAG_S = 0.1


@dataclass
class ReleasePacer:
    """Admissions whose placement group waits for a recent removal to reach Ray's view.

    ``lag_s`` 0 turns pacing off (every group is created at once).
    """

    lag_s: float
    _released_at: float = float("-inf")
    #: Held admissions in decision order, each with the time its group may be created.
    _held: dict[WorkloadId, tuple[float, Decision]] = field(default_factory=dict)

    def released(self, now: float) -> None:
        """The manager has just removed a placement group."""
        self._released_at = now

    def hold(self, decision: Decision, now: float) -> bool:
        """Whether the admission's group must wait; if so it is kept until ``due``."""
        at = self._released_at + self.lag_s
        if self.lag_s <= 0 or now >= at:
            return False
        self._held[decision.workload] = (at, decision)
        return True

    def holds(self, workload: WorkloadId) -> bool:
        return workload in self._held

    def drop(self, workload: WorkloadId) -> None:
        """The workload left its admission before its group was created."""
        self._held.pop(workload, None)

    def due(self, now: float) -> list[Decision]:
        """The held admissions whose time has come, in decision order (removed from hold)."""
        ready = [w for w, (at, _) in self._held.items() if at <= now]
        return [self._held.pop(w)[1] for w in ready]

    def next_at(self) -> float | None:
        """When the next held admission is due, or ``None`` if none is held."""
        return min((at for at, _ in self._held.values()), default=None)
