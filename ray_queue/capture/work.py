"""Captured plain ``@ray.remote`` tasks and actors: queued workloads whose Ray work is
submitted at once, behind a gate (``gate.py``).

A captured ``f.remote(...)`` submits a task workload to the driver's queue, then submits
the real Ray task with one more argument, the gate's ``ObjectRef``, and returns Ray's
own ``ObjectRef``; an actor class's ``.remote(...)`` does the same and returns Ray's own
``ActorHandle``. When the manager admits the workload the gate opens and Ray schedules
the work as it would have without the queue. The client runtime routes the manager's
events to these handles, as to ``ray_queue.remote``'s, and gives them the same fast
path: a captured task that returns hands its quota straight to this process's next
identical waiting task while nothing else waits for that quota (the runtime's
hand-over), opening its gate without a manager round trip. Slots are not used: the Ray
task already exists, with its own resource request, and Ray reuses a leased worker
between tasks of one shape by itself.

Each handle is a small state machine (``Phase``, ``_TRANSITIONS``).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import ray

from ray_queue.capture.gate import Opener
from ray_queue.client.runtime import ClientRuntime, Unstaged, to_bundle
from ray_queue.engine.model import BundleGroup, WorkloadKind
from ray_queue.wire import ClientEvent, SubmitRequest, SubmitResult

logger = logging.getLogger(__name__)

#: Set on the gated copies capture makes of functions and classes: never captured again.
GATED = "_ray_queue_gated"


class Phase(enum.StrEnum):
    #: Submitted to the queue and to Ray; Ray holds it behind its closed gate.
    QUEUED = "queued"
    #: Admitted (or handed a finished task's quota): the gate is open, Ray runs it.
    RUNNING = "running"
    #: Its Ray work ended, or it was cancelled, rejected or preempted: nothing holds
    #: quota for it any more.
    ENDED = "ended"


#: One comment per edge.
_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # admitted, or took over a finished identical task's quota; or the queue refused or
    # cancelled it before it ran (the Ray work is cancelled behind its closed gate)
    Phase.QUEUED: frozenset({Phase.RUNNING, Phase.ENDED}),
    # returned (or failed, or was cancelled by the user) in Ray; or was preempted
    Phase.RUNNING: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


class _Captured:
    """State shared by a captured task and a captured actor."""

    kind = WorkloadKind.TASK

    def __init__(self, runtime: ClientRuntime, request: SubmitRequest, opener: Opener) -> None:
        self.workload = request.id
        self._runtime = runtime
        self._opener = opener
        self._lock = threading.Lock()
        self.phase = Phase.QUEUED

    def _move(self, to: Phase) -> bool:
        """(Holding ``_lock``.) Go to ``to`` if the table allows it; whether it did."""
        if to not in _TRANSITIONS[self.phase]:
            return False
        self.phase = to
        return True

    def _on_submitted(self, result: SubmitResult) -> None:
        if result.error is not None:
            logger.warning(
                "captured work refused by the queue",
                extra={"workload": self.workload, "error": str(result.error)},
            )
            self._end_queued()

    def _end_queued(self) -> None:
        """The queue will never run it: cancel the Ray work waiting behind its gate, so
        the caller's ``ray.get`` raises instead of waiting forever."""
        with self._lock:
            if not self._move(Phase.ENDED):
                return
        self._cancel_ray_work()

    def _cancel_ray_work(self) -> None:
        raise NotImplementedError


class CapturedTask(_Captured):
    """A captured task: the runtime's ``Tracked`` and ``Successor``, without slots."""

    slot_eligible = False

    def __init__(
        self,
        runtime: ClientRuntime,
        request: SubmitRequest,
        opener: Opener,
        on_leave_gate: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(runtime, request, opener)
        self.lease_key = request.lease_key()
        self._ref: Any = None
        #: Called once, when it stops waiting at its gate (started or ended).
        self._on_leave_gate = on_leave_gate

    def _move(self, to: Phase) -> bool:
        left_gate = self.phase is Phase.QUEUED
        moved = super()._move(to)
        if moved and left_gate and self._on_leave_gate is not None:
            self._on_leave_gate()
        return moved

    def attach(self, ref: Any) -> None:
        """The real Ray ``ObjectRef`` (or generator) to watch, once Ray has it."""
        with self._lock:
            self._ref = ref
            phase = self.phase
        if phase is Phase.RUNNING:
            self._runtime.watch(ref, self, 1)
        elif phase is Phase.ENDED:
            self._cancel_ray_work()

    # -- Successor ---------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return self.phase is Phase.QUEUED

    @property
    def returned(self) -> bool:
        return self.phase is Phase.ENDED

    def in_slot(self, slot: Any) -> bool:
        return False

    def _take_over(self, label_selector: Mapping[str, str]) -> bool:
        return self._start(report=False)

    def _stage(self, slot: Any) -> bool:
        return False

    def _promote(self, slot: Any) -> bool:
        return False

    def _unstage(self, slot: Any) -> Unstaged:
        return Unstaged(left=False)

    # -- events --------------------------------------------------------------------------

    def _start(self, *, report: bool) -> bool:
        with self._lock:
            if not self._move(Phase.RUNNING):
                return False
            ref = self._ref
        self._opener.open(self.workload)
        if ref is not None:
            self._runtime.watch(ref, self, 1)
        if report:
            self._runtime.report_started(self.workload)
        return True

    def _on_event(self, event: ClientEvent) -> None:
        if event.decision == "admit":
            self._start(report=True)
        elif event.state.is_terminal:
            # Cancelled, rejected or failed by the queue: if it runs, stop it.
            with self._lock:
                ended = self._move(Phase.ENDED)
            if ended:
                self._cancel_ray_work()
        elif event.decision in ("preempt", "evict"):
            # Ray has no way to take a running task's resources and give them back later,
            # so a preempted task is cancelled, as a task on a lost node fails, and its
            # workload with it (ray.get raises TaskCancelledError).
            with self._lock:
                ended = self._move(Phase.ENDED)
            if ended:
                self._cancel_ray_work()
                self._runtime.manager.cancel.remote([self.workload], "captured task preempted")
                self._runtime.forget(self.workload)
        # "handover_refused": it took a finished task's quota over while someone else
        # came to wait for it. It is running in Ray (its gate opened) and cannot be put
        # back; it runs to the end, and its own admission, when it comes, is answered
        # with its end (``_on_done`` reports it finished either way).

    def _on_done(self, ref: Any, attempt: int) -> None:
        with self._lock:
            ended = self._move(Phase.ENDED)
        if ended:  # not already ended by the queue (preempted, cancelled)
            self._runtime.task_finished(self, {}, "task returned")

    def _cancel_ray_work(self) -> None:
        with self._lock:
            ref = self._ref
        if ref is not None:
            self._opener.open(self.workload)  # a gate nobody opens would park forever
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


class CapturedActor(_Captured):
    """A captured actor. It holds its quota until Ray says it is dead (``ActorWatch``)."""

    kind = WorkloadKind.ACTOR

    def __init__(self, runtime: ClientRuntime, request: SubmitRequest, opener: Opener) -> None:
        super().__init__(runtime, request, opener)
        self.actor: Any = None

    def attach(self, actor: Any) -> None:
        with self._lock:
            self.actor = actor
            phase = self.phase
        if phase is Phase.RUNNING:  # admitted before Ray even had it
            _watch().add(self)
        elif phase is Phase.ENDED:
            self._cancel_ray_work()

    def _on_event(self, event: ClientEvent) -> None:
        if event.decision == "admit":
            with self._lock:
                started = self._move(Phase.RUNNING)
            if started:
                self._opener.open(self.workload)
                self._runtime.report_started(self.workload)
                _watch().add(self)
        elif event.state.is_terminal or event.decision in ("preempt", "evict"):
            with self._lock:
                ended = self._move(Phase.ENDED)
            if ended:
                # Preempted: killed for good, as on a lost node without restarts (a
                # restart would run again outside the quota).
                self._cancel_ray_work()
                if not event.state.is_terminal:
                    self._runtime.manager.cancel.remote([self.workload], "captured actor preempted")
                self._runtime.forget(self.workload)

    def died(self) -> None:
        """Ray says the actor is dead: its quota goes back."""
        with self._lock:
            ended = self._move(Phase.ENDED)
        if ended:
            self._runtime.report_finished(self.workload, failed=False, message="actor died")
            self._runtime.forget(self.workload)

    def _cancel_ray_work(self) -> None:
        with self._lock:
            actor = self.actor
        if actor is not None:
            self._opener.open(self.workload)
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


class ActorWatch:
    """Notices captured actors dying (killed, out of scope, exited, node lost), with one
    call to Ray's GCS a second while any is alive: Ray tells an owner of its actors'
    deaths only through their method calls."""

    INTERVAL_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._alive: dict[str, CapturedActor] = {}
        self._thread: threading.Thread | None = None

    def add(self, actor: CapturedActor) -> None:
        if actor.actor is None:
            return
        with self._lock:
            self._alive[actor.actor._actor_id.hex()] = actor
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="ray-queue-actor-watch", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def _loop(self) -> None:
        from ray._private.state import state

        while ray.is_initialized():
            with self._lock:
                if not self._alive:
                    self._lock.wait(self.INTERVAL_S)
                    continue
                watched = dict(self._alive)
            try:
                job_id = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
                dead = state.actor_table(None, job_id=job_id, actor_state_name="DEAD")
            except Exception:
                if not ray.is_initialized():
                    return
                logger.exception("ray_queue: reading actor states failed")
                dead = {}
            for actor_id in watched.keys() & set(dead):
                with self._lock:
                    handle = self._alive.pop(actor_id, None)
                if handle is not None:
                    handle.died()
            threading.Event().wait(self.INTERVAL_S)


_actor_watch: ActorWatch | None = None
_actor_watch_lock = threading.Lock()


def _watch() -> ActorWatch:
    global _actor_watch
    with _actor_watch_lock:
        if _actor_watch is None:
            _actor_watch = ActorWatch()
        return _actor_watch


# -- gated copies of the user's functions and classes ------------------------------------


def gated_function(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` taking the gate as a first argument it ignores; of the same kind
    (Ray treats generators and coroutines differently) and under the same name."""
    run: Callable[..., Any]
    if inspect.isasyncgenfunction(function):

        async def run_async_gen(_gate: Any, *args: Any, **kwargs: Any) -> Any:
            async for item in function(*args, **kwargs):
                yield item

        run = run_async_gen
    elif inspect.isgeneratorfunction(function):

        def run_gen(_gate: Any, *args: Any, **kwargs: Any) -> Any:
            return (yield from function(*args, **kwargs))

        run = run_gen
    elif inspect.iscoroutinefunction(function):

        async def run_coroutine(_gate: Any, *args: Any, **kwargs: Any) -> Any:
            return await function(*args, **kwargs)

        run = run_coroutine
    else:

        def run_plain(_gate: Any, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        run = run_plain
    # The user's name in Ray's dashboard, state API and errors. Not ``__wrapped__``:
    # Ray reads the signature through it and would refuse the gate argument.
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(run, attribute, getattr(function, attribute))
    return run


def gated_class(modified_class: type) -> type:
    """Ray's modified actor class, its constructor taking the gate first."""

    class Gated(modified_class):  # type: ignore[misc]
        def __init__(self, _gate: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(Gated, attribute, getattr(modified_class, attribute))
    return Gated


class GatedCopies:
    """One gated Ray function (or actor class) per user one, made on first use and kept
    as long as the user's is alive."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self._make = make
        self._copies: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, original: Any) -> Any:
        copy = self._copies.get(original)
        if copy is None:
            with self._lock:
                copy = self._copies.get(original)
                if copy is None:
                    copy = self._make(original)
                    setattr(copy, GATED, True)
                    self._copies[original] = copy
        return copy


def to_request_bundle(resources: Mapping[str, float], what: str) -> list[BundleGroup]:
    return [BundleGroup(to_bundle(dict(resources), what))]


__all__ = [
    "GATED",
    "ActorWatch",
    "CapturedActor",
    "CapturedTask",
    "GatedCopies",
    "Phase",
    "gated_class",
    "gated_function",
]
