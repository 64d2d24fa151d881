"""Ray's placement-group calls, made from threads of their own so that they never block
the manager's loop.

``placement_group()`` and ``remove_placement_group()`` return no future: each is a
synchronous round trip to the GCS, ~0.5 ms on a quiet machine and ~5 ms against a GCS
busy placing groups. Made on the manager's loop they were 53 % of its samples in
``benchmarks.ray_e2e`` (py-spy, benchmarks/README.md, issue 24), and every request and
admission queued behind them. Here two worker threads make them (Ray releases the GIL
for the round trip), never two calls of one workload at once, removals before creations:
when the cluster is full and the calls queue, a removal that waits behind creations
keeps its group alive in Ray for nothing, every group alive makes each of Ray's calls
dearer, and the creations it would make room for cannot be placed until it is done
(benchmarks/README.md, "Removals first"). A removal asked while the workload's creation
is still queued drops it; one asked after the creation started runs after it, so a group
whose workload left while its creation was in flight is removed, never leaked.

What happened comes back as ``Answers`` for the manager to apply on its loop in batches
(``take``); ``wake`` is called from a desk thread when there is something to take.
"Placed" is learnt from each created group's ``ready()`` reference resolving, through a
callback: nothing waits on it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import ray

from ray_queue.engine.model import PlacementStrategy, WorkloadId
from ray_queue.ray_adapter.actions import RayAdapter, pg_from_hex

logger = logging.getLogger(__name__)

#: Threads making calls at once. Each call is a round trip that mostly waits (for the
#: GCS, then for the GIL back from the manager's loop): two overlap those waits
#: (benchmarks/README.md, "Removals first").
CALLERS = 2


@dataclass(slots=True)
class Answers:
    """What Ray answered since the last ``take``, each list in the order it happened
    (``ManagerCore.placements_settled`` takes them as they are)."""

    #: Groups created: (workload, ticket, hex id).
    created: list[tuple[WorkloadId, int, str]] = field(default_factory=list)
    #: Creations Ray refused (bad label selector…): (workload, ticket, error).
    refused: list[tuple[WorkloadId, int, Exception]] = field(default_factory=list)
    #: Groups Ray placed every bundle of: (workload, hex id).
    placed: list[tuple[WorkloadId, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.created or self.refused or self.placed)


@dataclass(frozen=True, slots=True)
class _Create:
    workload: WorkloadId
    ticket: int
    bundles: tuple[dict[str, float], ...]
    strategy: PlacementStrategy
    label_selectors: tuple[dict[str, str], ...]
    watch: bool


@dataclass(frozen=True, slots=True)
class _Remove:
    workload: WorkloadId


@dataclass(frozen=True, slots=True)
class _Watch:
    workload: WorkloadId
    pg_id: str


_Op = _Create | _Remove | _Watch


class PlacementDesk:
    """The manager's ``DeferredPlacements`` on Ray (``manager/placement_flight.py``):
    removals, then watches, then creations in the order asked, on ``callers`` threads,
    one call per workload at a time; outcomes collected. Thread-safe."""

    def __init__(
        self, adapter: RayAdapter, *, wake: Callable[[], None], callers: int = CALLERS
    ) -> None:
        """``wake``: called from the desk's threads (or Ray's) when outcomes are waiting;
        at most once until the next ``take``. ``callers``: threads making calls."""
        self._adapter = adapter
        self._wake = wake
        #: Guards the three queues of calls not made yet; notified when one grows.
        self._queued = threading.Condition()
        self._removals: deque[WorkloadId] = deque()
        self._watches: deque[_Watch] = deque()
        #: By workload: a second creation asked for a workload replaces the first
        #: (creating is idempotent, and only the latest ticket is waited for).
        self._creations: OrderedDict[WorkloadId, _Create] = OrderedDict()
        self._lock = threading.Lock()
        self._answers = Answers()
        self._woken = False
        #: ``ready()`` references being watched, kept alive until they resolve.
        self._watching: dict[str, ray.ObjectRef[Any]] = {}
        #: Workloads with a call being made: a workload's calls are made one at a time.
        self._busy: set[WorkloadId] = set()
        for i in range(callers):
            name = f"ray-queue-placement-groups-{i}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    # -- the manager's side -------------------------------------------------------------

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
        """Create the workload's group in the background; ``watch``: report it placed."""
        op = _Create(
            workload,
            ticket,
            tuple(dict(b) for b in bundles),
            strategy,
            tuple(dict(s) for s in label_selectors),
            watch,
        )
        with self._queued:
            self._creations[workload] = op
            self._queued.notify()

    def remove(self, workload: WorkloadId) -> None:
        """Remove the workload's group, after its creation if that has started; a
        creation still queued is dropped (the removal then finds no group, or the one
        the workload held before, and costs Ray nothing more)."""
        with self._queued:
            self._creations.pop(workload, None)
            self._removals.append(workload)
            self._queued.notify()

    def watch(self, workload: WorkloadId, pg_id: str) -> None:
        """Report an existing group (re-adopted after a restart) placed once it is."""
        with self._queued:
            self._watches.append(_Watch(workload, pg_id))
            self._queued.notify()

    def take(self) -> Answers:
        """What Ray answered since the last call."""
        with self._lock:
            taken, self._answers = self._answers, Answers()
            self._woken = False
        return taken

    # -- the worker threads -------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            op = self._next()
            try:
                self._run(op)
            except Exception:
                logger.exception("a placement group call to Ray failed", extra={"call": repr(op)})
            finally:
                with self._queued:
                    self._busy.discard(op.workload)
                    self._queued.notify_all()  # a call of the same workload may be next

    def _next(self) -> _Op:
        """The next call to make, waiting for one: removals first, then watches, then
        creations in the order asked; never one of a workload with a call being made."""
        with self._queued:
            while (op := self._first_free()) is None:
                self._queued.wait()
            self._busy.add(op.workload)
            return op

    def _first_free(self) -> _Op | None:
        # Only calls of the few busy workloads (one per caller) are passed over.
        for i, workload in enumerate(self._removals):
            if workload not in self._busy:
                del self._removals[i]
                return _Remove(workload)
        for i, watch in enumerate(self._watches):
            if watch.workload not in self._busy:
                del self._watches[i]
                return watch
        for workload in self._creations:
            if workload not in self._busy:
                return self._creations.pop(workload)
        return None

    def _run(self, op: _Op) -> None:
        if isinstance(op, _Remove):
            self._adapter.remove_placement_group(op.workload)
        elif isinstance(op, _Watch):
            self._watch(op.workload, pg_from_hex(op.pg_id), op.pg_id)
        else:
            try:
                handle = self._adapter.create(
                    op.workload, op.bundles, op.strategy, op.label_selectors
                )
            except Exception as e:  # Ray refused it; the manager fails the workload
                refusal = (op.workload, op.ticket, e)
                self._report(lambda a: a.refused.append(refusal))
                return
            pg_id = str(handle.id.hex())
            self._report(lambda a: a.created.append((op.workload, op.ticket, pg_id)))
            if op.watch:
                self._watch(op.workload, handle, pg_id)

    def _watch(self, workload: WorkloadId, handle: Any, pg_id: str) -> None:
        ref = handle.ready()
        with self._lock:
            self._watching[pg_id] = ref
        future: Future[Any] = ref.future()
        future.add_done_callback(functools.partial(self._resolved, workload, pg_id))

    def _resolved(self, workload: WorkloadId, pg_id: str, future: Future[Any]) -> None:
        # On Ray's callback thread. An error means the group was removed before it was
        # placed: nothing to report.
        with self._lock:
            self._watching.pop(pg_id, None)
        if future.cancelled() or future.exception() is not None:
            return
        self._report(lambda a: a.placed.append((workload, pg_id)))

    def _report(self, record: Callable[[Answers], None]) -> None:
        with self._lock:
            record(self._answers)
            wake = not self._woken
            self._woken = True
        if wake:
            try:
                self._wake()
            except Exception:  # the loop is closing; the next take() collects it
                logger.debug("waking the manager failed", exc_info=True)
