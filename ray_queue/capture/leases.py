"""Leases: the fast path for a backlog of identical captured tasks.

Plain Ray is fast at many small tasks because an owner keeps a leased worker and feeds it
the next task of the same shape. A gated task (``work.py``) gives that up: each one waits
for its own admission, and Ray leases a worker for it alone once its gate opens. A
*lease* wins it back the way the client's slots do, without gates: it is a placement
group of the task's shape, queued and admitted like any captured group, with partial
admission (``min_bundles=1``), so the manager admits as many bundles as the queue has
room for, up to the backlog. Captured tasks of that shape are then submitted straight
into it (``PlacementGroupSchedulingStrategy``, any bundle): Ray runs them at its own
speed, as many at once as the lease has bundles, and the quota is exactly the group's.
Each lease takes at most ``DEPTH`` tasks per bundle at a time, so a preemption (which
removes the group, and fails what is queued in it as Ray fails tasks of a removed group)
loses little; tasks beyond that wait at their gates as usual and a new lease is asked
for. A lease no task used for ``IDLE_S`` is given back.

The tasks a lease runs are not workloads of their own: the manager sees the lease (one
placement group workload, named ``lease:<function>``) and its usage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ray_queue.client import api
from ray_queue.client.placement_group import QueuedPlacementGroup
from ray_queue.errors import RayQueueError

logger = logging.getLogger(__name__)

#: Tasks in flight per admitted bundle beyond which another lease is asked for (the
#: queue may have room for more bundles by now). Tasks are never turned away from a
#: live lease: Ray queues them in it, as it queues tasks on a busy cluster.
DEPTH = 8
#: Bundles a lease asks for at first, and at most; the manager admits what fits
#: (partial admission), so asking for more than the queue has room for costs nothing.
FIRST_BUNDLES = 8
MAX_BUNDLES = 64
#: How long a ``.remote()`` waits for a lease asked for moments ago before it gates: a
#: manager round trip and a placement, which take a few hundred milliseconds on a busy
#: node. While the queue has no room this is paid once per lease asked for, not per task.
FRESH_S = 1.0
#: A lease admitted but not placed by Ray within this long is asked for again, half as
#: big (admission counts quota, and a quota may be more than the nodes hold). Longer than
#: Ray takes to free the room of a group just removed, which is not a reason to shrink.
PLACE_S = 2.0
#: A lease with nothing in flight for this long is given back.
IDLE_S = 0.5
#: How often pending leases are checked for admission and idle ones for release.
_TICK_S = 0.005


@dataclass(eq=False)
class Lease:
    queued: QueuedPlacementGroup
    key: Hashable
    strategy: PlacementGroupSchedulingStrategy | None = None
    #: Bundles the manager admitted.
    bundles: int = 0
    in_flight: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    asked_at: float = field(default_factory=time.monotonic)
    #: Rejected or cancelled before it went live.
    ended: bool = False
    #: When the manager admitted it (it goes live once Ray has placed it too).
    admitted_at: float | None = None
    #: What was asked: resources, queue, priority, name, bundles (to ask again smaller).
    request: tuple[dict[str, float], str, str | None, str, int] | None = None


class LeaseTask:
    """What the client runtime's watcher calls back when a task run in a lease ends."""

    __slots__ = ("_lease", "_leases")

    def __init__(self, leases: Leases, lease: Lease) -> None:
        self._leases = leases
        self._lease = lease

    def _on_done(self, ref: Any, attempt: int) -> None:
        self._leases.task_done(self._lease)


class Leases:
    """This process's leases, by task shape (resources, queue, priority)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._live: dict[Hashable, list[Lease]] = {}
        self._pending: dict[Hashable, Lease] = {}
        #: Gated tasks of each shape not yet ended: how many bundles a new lease asks for.
        self.backlog: dict[Hashable, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-queue-leases", daemon=True)
        self._thread.start()

    def route(
        self,
        key: Hashable,
        resources: Mapping[str, float],
        queue: str,
        priority: str | None,
        name: str,
    ) -> Lease | None:
        """A live lease of this shape with room for one more task (counted in), or
        ``None``: then a lease is asked for, if none is pending, and the caller gates."""
        with self._lock:
            best: Lease | None = None
            for lease in self._live.get(key, ()):
                if best is None or lease.in_flight * best.bundles < best.in_flight * lease.bundles:
                    best = lease
            pending = self._pending.get(key)
            if best is not None:
                best.in_flight += 1
                # Busy beyond ``DEPTH`` per bundle: ask for another lease, in case the
                # queue has room for more now; the task goes into this one meanwhile.
                if pending is not None or best.in_flight <= DEPTH * best.bundles:
                    return best
            bundles = max(FIRST_BUNDLES, min(MAX_BUNDLES, self.backlog.get(key, 0) + 1))
        if best is not None and pending is None:
            self._ask(key, resources, queue, priority, name, bundles)
            return best
        if pending is not None:
            return self._wait_fresh(pending)
        asked = self._ask(key, resources, queue, priority, name, bundles)
        return None if asked is None else self._wait_fresh(asked)

    def _ask(
        self,
        key: Hashable,
        resources: Mapping[str, float],
        queue: str,
        priority: str | None,
        name: str,
        bundles: int,
    ) -> Lease | None:
        """Queue a new lease of ``bundles`` bundles (partially admissible)."""
        try:
            queued = api.placement_group(
                [dict(resources)] * bundles,
                "PACK",
                queue=queue,
                priority=priority,
                name=f"lease:{name}",
                min_bundles=1,
            )
        except RayQueueError:
            # The same request as a gated task: its own submission says what is wrong.
            return None
        lease = Lease(queued, key, request=(dict(resources), queue, priority, name, bundles))
        with self._lock:
            self._pending[key] = lease
        return lease

    def _shrink(self, lease: Lease) -> None:
        """``lease`` was admitted but Ray cannot place it (the queue's quota, borrowing
        included, is more than the nodes hold): give it back, nothing having been put
        in it yet, and ask for half as many bundles."""
        request = lease.request
        lease.queued.remove()
        with self._lock:
            if self._pending.get(lease.key) is lease:
                del self._pending[lease.key]
        if request is not None:
            resources, queue, priority, name, bundles = request
            self._ask(lease.key, resources, queue, priority, name, max(1, bundles // 2))
        with self._lock:
            lease.ended = True
            self._changed.notify_all()

    def _wait_fresh(self, lease: Lease) -> Lease | None:
        """Wait for a lease asked for less than ``FRESH_S`` ago to go live, and take a
        place in it. When the queue has room that takes a manager round trip and a
        placement, and the tasks that follow run at Ray's speed; when it has none, the
        caller waits ``FRESH_S`` once per lease, not per task, then gates."""
        deadline = lease.asked_at + FRESH_S
        with self._lock:
            while lease.strategy is None:
                if lease.ended:
                    # Asked for again smaller (``_shrink``): wait for that one instead.
                    replacement = self._pending.get(lease.key)
                    if replacement is None:
                        return None
                    lease = replacement
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
            lease.in_flight += 1
            return lease

    def gated(self, key: Hashable, change: int) -> None:
        """A gated task of shape ``key`` was submitted (+1) or left its gate (-1)."""
        with self._lock:
            self.backlog[key] = self.backlog.get(key, 0) + change

    def task_done(self, lease: Lease) -> None:
        with self._lock:
            lease.in_flight -= 1
            if lease.in_flight == 0:
                lease.idle_since = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            leases = [*self._pending.values(), *(x for xs in self._live.values() for x in xs)]
            self._pending.clear()
            self._live.clear()
        for lease in leases:
            lease.queued.remove()

    def _loop(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                self._tick()
            except Exception:
                logger.exception("ray_queue: tending captured task leases failed")

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            pending = list(self._pending.values())
            live = [lease for leases in self._live.values() for lease in leases]
        for lease in pending:
            try:
                group = lease.queued.placement_group
            except RuntimeError:
                continue  # not admitted yet
            except RayQueueError:
                with self._lock:
                    self._pending.pop(lease.key, None)
                    lease.ended = True
                    self._changed.notify_all()
                continue
            if not _placed(group):
                if lease.admitted_at is None:
                    lease.admitted_at = now
                elif now - lease.admitted_at > PLACE_S:
                    self._shrink(lease)
                continue
            bundles = group.bundle_count
            with self._lock:
                lease.strategy = PlacementGroupSchedulingStrategy(group)
                lease.bundles = bundles
                lease.idle_since = now
                self._pending.pop(lease.key, None)
                self._live.setdefault(lease.key, []).append(lease)
                self._changed.notify_all()
        for lease in live:
            try:
                admitted = lease.queued.placement_group is not None
            except (RuntimeError, RayQueueError):
                admitted = False
            with self._lock:
                idle = lease.in_flight == 0 and now - lease.idle_since > IDLE_S
                # Preempted (its group is gone): nothing more goes into it.
                if idle or not admitted:
                    self._live[lease.key].remove(lease)
            if idle or not admitted:
                lease.queued.remove()


def _placed(group: Any) -> bool:
    """Whether Ray has placed ``group``, from its table in the GCS: unlike ``ready()``,
    which runs a task in the group, this needs no worker process (slow to start on a
    busy node, and the first tasks would wait for it)."""
    from ray.util.placement_group import placement_group_table

    return bool(placement_group_table(group).get("state") == "CREATED")
