"""``@ray_queue.remote`` on a function: queued tasks with Ray's calling conventions.

A call submits a workload (batched) and returns a handle at once. When the manager admits
it, the handle launches the real Ray task from this driver, with the assigned flavor's
node labels as ``label_selector`` (queued actors: ``actors.py``). The manager is never
on the data path: arguments and results go through Ray as usual.

Preemption: a preempted task is cancelled and re-run when re-admitted (unless it has
``max_retries=0``, in which case ``get`` raises ``Preempted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import ray

from ray_queue.client.handle import USE_RAY_QUEUE, QueuedHandle, request_resources, split_options
from ray_queue.client.lifecycle import TASK, TaskEvent, TaskPhase
from ray_queue.client.runtime import ClientRuntime, Unstaged, current, to_bundle
from ray_queue.client.slots import Slot, lost_with_its_placement_group
from ray_queue.engine.model import BundleGroup, WorkloadKind, WorkloadState
from ray_queue.errors import Preempted, QueueTimeoutError
from ray_queue.wire import ClientEvent, EventKind, SubmitRequest, slot_eligible

#: Phases in which a task's real run may be in Ray unseen by the watcher.
_LAUNCHED = frozenset({TaskPhase.RUNNING, TaskPhase.STAGED, TaskPhase.GUEST})


def _nothing() -> None:
    pass


@dataclass(slots=True)
class _After:
    """What an event handler does once it has released the handle's lock: calls into the
    runtime take its locks and the slots', which are taken before a handle's."""

    cancel: Any = None
    requeue: bool = False
    abandon: Slot | None = None
    pass_on: ClientEvent | None = None
    settled: WorkloadState | None = None

    def run(self, runtime: ClientRuntime, handle: QueuedObjectRef) -> None:
        if self.cancel is not None:
            with contextlib.suppress(Exception):
                ray.cancel(self.cancel, force=True)
        if self.requeue:
            runtime.add_successor(handle)
        if self.abandon is not None:
            runtime.abandon(self.abandon)
        if self.pass_on is not None:
            runtime.pass_admission_on(handle, self.pass_on)
        if self.settled is not None:
            runtime.settled(handle, self.settled)


class QueuedObjectRef(QueuedHandle):
    """The future result of a queued task; ``ray_queue.get``/``wait``/``await`` accept it.

    Its phase (``lifecycle.TASK``) says what this driver has done with it; ``_ref`` is
    the current real ObjectRef, ``_slot`` the slot it was launched in (as holder or
    queued behind), ``_own_admission`` the admission a ``GUEST`` runs on if its slot is
    lost first.
    """

    def __init__(
        self,
        runtime: ClientRuntime,
        request: SubmitRequest,
        remote_fn: Any,
        ray_options: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(runtime, request.id, getattr(remote_fn, "_function_name", "task"))
        self.lease_key = request.lease_key()
        self.slot_eligible = slot_eligible(request.bundle_groups, request.payload)
        self._phase = TASK.initial
        self._remote_fn = remote_fn
        self._ray_options = ray_options
        self._args = args
        self._kwargs = kwargs
        self._ref: Any = None
        self._retriable = ray_options.get("max_retries", 3) != 0
        #: Node labels of the admitted flavor, passed on to a task that takes over.
        self._label_selector: Mapping[str, str] = {}
        #: The slot its real task was launched in (as holder or queued behind), if any.
        self._slot: Slot | None = None
        #: The admission a ``GUEST`` runs on should its slot be lost first.
        self._own_admission: ClientEvent | None = None
        #: When its current run started, as far as this driver can tell (``_on_done``).
        self._run_started = 0.0

    @property
    def phase(self) -> TaskPhase:
        """What this driver has done with the task (``lifecycle.TaskPhase``)."""
        return self._phase

    def _move(self, event: TaskEvent) -> None:
        """(Holding ``_cv``.) Take ``event``; raises ``HandleTransitionError`` if the
        phase has no edge for it."""
        self._phase = TASK.step(self._phase, event)

    def _refused(self) -> None:
        self._move(TaskEvent.REFUSE)

    @property
    def waiting(self) -> bool:
        # Only while the manager has it pending too: one it reserved quota for, or
        # evicted and not yet requeued, must not start in another task's place.
        return self._phase is TaskPhase.WAITING and self._state is WorkloadState.PENDING

    @property
    def returned(self) -> bool:
        return self._phase in (TaskPhase.RETURNED, TaskPhase.RAN_STAGED)

    def in_slot(self, slot: Slot) -> bool:
        return self._slot is slot

    def _take_over(self, label_selector: Mapping[str, str]) -> bool:
        with self._cv:
            if not self.waiting:
                return False
            self._move(TaskEvent.TAKE_OVER)
            self._state, self._message = WorkloadState.ADMITTED, "took over a finished task's quota"
            self._launch(label_selector, report=False)
            self._cv.notify_all()
            return True

    def _stage(self, slot: Slot) -> bool:
        with self._cv:
            if not self.waiting:
                return False
            self._move(TaskEvent.STAGE)
            self._message = "queued in Ray behind an identical task, to take its quota over"
            self._launch({}, report=False, slot=slot)
            self._cv.notify_all()
            return True

    def _promote(self, slot: Slot) -> bool:
        with self._cv:
            if self._slot is not slot:
                return False
            if self._phase is TaskPhase.GUEST:
                # Admitted on its own while queued here: the hand-over still goes to it,
                # and the manager keeps it in this slot and drops the group made for it.
                self._move(TaskEvent.PROMOTE)
                self._own_admission = None
                return True
            staged = self._phase in (TaskPhase.STAGED, TaskPhase.RAN_STAGED)
            if not staged or self._state is not WorkloadState.PENDING:
                return False
            self._move(TaskEvent.PROMOTE)
            # Nobody waits for this change (only for ``_ref``): no notify.
            self._state, self._message = WorkloadState.ADMITTED, "took over a finished task's quota"
            self._run_started = time.monotonic()
            return True

    def _unstage(self, slot: Slot) -> Unstaged:
        with self._cv:
            staged = self._phase in (TaskPhase.STAGED, TaskPhase.RAN_STAGED)
            if self._slot is not slot or not staged or self._state is not WorkloadState.PENDING:
                return Unstaged(left=False)
            self._slot = None
            if self._phase is TaskPhase.RAN_STAGED:
                # It ran there: done, and an admission of its own passes on.
                return Unstaged(left=True)
            if self._result_in_ray():
                self._settle()
                return Unstaged(left=True)
            self._move(TaskEvent.REQUEUE)
            ref, self._ref = self._ref, None
            self._cv.notify_all()
            return Unstaged(left=True, cancel=ref)

    # -- the manager's events ---------------------------------------------------------------

    def _on_event(self, event: ClientEvent) -> None:
        after = _After()
        with self._cv:
            # Queued in another task's slot without an admission: a slot it loses is not
            # its own to give up.
            was_staged = self._phase in (TaskPhase.STAGED, TaskPhase.RAN_STAGED)
            self._state, self._message = event.state, event.message
            if event.decision is EventKind.ADMIT:
                self._admitted(event, after)
            elif event.decision is EventKind.HANDOVER_REFUSED:
                self._handover_refused(event, after)
            elif event.decision in (EventKind.PREEMPT, EventKind.EVICT) or event.state.is_terminal:
                self._stopped(event, after)
            if was_staged and after.abandon is not None:
                after.abandon = None
            self._cv.notify_all()
        after.run(self._runtime, self)

    def _admitted(self, event: ClientEvent, after: _After) -> None:
        """(Holding ``_cv``.) Admitted in its own right."""
        phase = self._phase
        self._move(TaskEvent.ADMIT)
        if phase is TaskPhase.STAGED:
            # Admitted while queued behind another task (the manager lags behind a fast
            # driver, or restarted). It stays where it is and takes the slot over in turn
            # (or runs on this admission if the slot is lost first): it may be running
            # already, since Ray starts it as soon as the task ahead returns, before that
            # task's result is visible here, and cancelling it to run it elsewhere would
            # run it twice (or, if it is just returning, crash this driver on a race in
            # Ray's cancellation). Tasks are queued in slots only behind short ones, so
            # the wait is brief.
            self._own_admission = event
            self._runtime.report_started(self.workload)
        elif phase is TaskPhase.RAN_STAGED:
            # It has run there already: its admission passes straight to the next
            # waiting identical task, and no hand-over goes to it there.
            self._slot = None
            after.pass_on = event
        elif phase is TaskPhase.WAITING:
            if self._has_queued_args():
                # Its arguments may not be launched yet; never block the event thread.
                threading.Thread(target=self._launch_locked, args=(event,), daemon=True).start()
            else:
                self._launch_admitted(event)

    def _handover_refused(self, event: ClientEvent, after: _After) -> None:
        """(Holding ``_cv``.) It started in a finished task's place, but by then someone
        else was waiting for that quota: it stops and runs when admitted like any other
        task (unless the manager admitted it in the meantime anyway). In a slot, the
        refusal removed the slot's placement group, so even then it starts afresh."""
        after.abandon, self._slot = self._slot, None
        if self._phase is TaskPhase.WAITING and event.state is WorkloadState.PENDING:
            after.requeue = True
        if self._phase is not TaskPhase.RUNNING:
            return
        if after.abandon is None and event.state is WorkloadState.ADMITTED:
            self._runtime.report_started(self.workload)
        elif self._result_in_ray():
            self._settle()
            after.settled = event.state
        else:
            after.cancel, self._ref = self._ref, None
            if event.state is WorkloadState.ADMITTED:
                self._launch_admitted(event)
            else:
                self._move(TaskEvent.REQUEUE)
                after.requeue = event.state is WorkloadState.PENDING

    def _stopped(self, event: ClientEvent, after: _After) -> None:
        """(Holding ``_cv``.) Preempted, evicted, or ended by the manager."""
        if event.decision is EventKind.PREEMPT:
            self._preemptions += 1
        after.abandon, self._slot = self._slot, None
        if self._phase is TaskPhase.GUEST:
            # Queued in another task's slot on an admission of its own: that slot is not
            # this task's to give up.
            after.abandon, self._own_admission = None, None
        terminal = event.state.is_terminal
        if self._phase in (TaskPhase.RETURNED, TaskPhase.RAN_STAGED, TaskPhase.FAILED):
            self._move(TaskEvent.STOP if terminal else TaskEvent.REQUEUE)
            return
        if not terminal and self._result_in_ray():
            self._settle()
            after.settled = event.state
            return
        after.cancel, self._ref = self._ref, None
        if terminal:
            # A task that cancelled itself as not retriable stays Preempted.
            self._error = self._error or self._terminal_error(event)
            self._move(TaskEvent.STOP)
        elif not self._retriable:
            self._error = Preempted(
                f"{self._what} ({self.workload}) was preempted ({event.message}) "
                "and has max_retries=0, so it is not re-run"
            )
            self._move(TaskEvent.STOP)
            self._runtime.manager.cancel.remote([self.workload], "not retriable")
        else:
            self._move(TaskEvent.REQUEUE)

    def _result_in_ray(self) -> bool:
        """(Holding ``_cv``.) Whether its current run has returned a result in Ray that
        the watcher has not seen yet. A preemption or refusal that reaches a task which
        has already returned must not run it again (a busy driver sees returns late; Ray
        runs what is queued in a slot without it)."""
        ref = self._ref
        if ref is None or self._phase not in _LAUNCHED:
            return False
        done, _ = ray.wait([ref], timeout=0, fetch_local=False)
        return bool(done) and not lost_with_its_placement_group(ref)

    def _settle(self) -> None:
        """(Holding ``_cv``.) Keep the result it returned: it is done, and the watcher's
        sighting of it changes nothing (a new attempt number)."""
        self._move(TaskEvent.SETTLE)
        self._attempt += 1

    def _has_queued_args(self) -> bool:
        values = [*self._args, *self._kwargs.values()]
        return any(isinstance(v, QueuedObjectRef) for v in values)

    def _launch_locked(self, event: ClientEvent) -> None:
        args = tuple(_resolve(a) for a in self._args)
        kwargs = {k: _resolve(v) for k, v in self._kwargs.items()}
        with self._cv:
            if self._phase is TaskPhase.LAUNCHING:
                self._args, self._kwargs = args, kwargs
                self._launch_admitted(event)
            self._cv.notify_all()

    def _launch_admitted(self, event: ClientEvent, *, report: bool = True) -> None:
        """Start the real task as ``event`` admitted it (holding ``_cv``): in the slot the
        manager made for it, if any."""
        self._move(TaskEvent.LAUNCH)
        slot = None
        if event.placement_group_id is not None:
            slot = self._runtime.open_slot(event.placement_group_id, self)
        self._launch(event.label_selector, report=report, slot=slot)

    def _launch(
        self, label_selector: Mapping[str, str], *, report: bool = True, slot: Slot | None = None
    ) -> None:
        """Start the real task (holding ``_cv``), in ``slot`` if given; ``report`` tells the
        manager it started (a hand-over says so itself)."""
        self._label_selector = label_selector
        self._slot = slot
        if slot is not None:
            launcher = slot.launcher(self._remote_fn, self._ray_options)
        else:
            options = dict(self._ray_options)
            selector = dict(self._ray_options.get("label_selector") or {})
            selector.update(label_selector)
            if selector:
                options["label_selector"] = selector
            launcher = self._remote_fn.options(**options)
        args = tuple(_resolve(a) for a in self._args)
        kwargs = {k: _resolve(v) for k, v in self._kwargs.items()}
        self._attempt += 1
        self._run_started = time.monotonic()
        self._ref = launcher.remote(*args, **kwargs)
        self._runtime.watch(self._ref, self, self._attempt, in_slot=slot is not None)
        if report:
            self._runtime.report_started(self.workload)

    # -- the watcher's sightings ------------------------------------------------------------

    def _on_done(self, ref: Any, attempt: int) -> None:
        with self._cv:
            if ref is not self._ref or attempt != self._attempt:
                return  # a cancelled (preempted) attempt, or one settled already
            slot = self._slot
            if slot is not None and lost_with_its_placement_group(ref):
                # Not a result: the slot was lost (a refused hand-over, a preemption).
                follow_up = self._slot_lost(slot)
            else:
                follow_up = self._ran(slot)
            self._cv.notify_all()
        follow_up()

    def _slot_lost(self, slot: Slot) -> Callable[[], None]:
        """(Holding ``_cv``.) Its run ended because ``slot`` was removed: a guest runs on
        its own admission, a staged task waits for one; what happens to a holder, the
        manager's event for it says."""
        if self._phase is TaskPhase.GUEST:
            own, self._own_admission = self._own_admission, None
            assert own is not None
            self._launch_admitted(own, report=False)
            return _nothing
        if self._phase is not TaskPhase.STAGED or self._state is not WorkloadState.PENDING:
            return _nothing
        self._move(TaskEvent.REQUEUE)
        self._ref, self._slot = None, None

        def requeue() -> None:
            self._runtime.abandon(slot)
            self._runtime.add_successor(self)

        return requeue

    def _ran(self, slot: Slot | None) -> Callable[[], None]:
        """(Holding ``_cv``.) Its run returned a result."""
        phase = self._phase
        self._move(TaskEvent.RESULT)
        self._runtime.note_run(self.lease_key, time.monotonic() - self._run_started)
        if phase is TaskPhase.GUEST:
            # Returned while queued on an admission of its own, before the task ahead of
            # it handed over: it leaves the slot (the next one there is handed that quota
            # instead) and its own admission passes on.
            own, self._own_admission, self._slot = self._own_admission, None, None
            assert own is not None
            return lambda: self._runtime.pass_admission_on(self, own)
        if slot is not None:
            return lambda: self._runtime.slot_task_returned(slot)
        return lambda: self._runtime.task_finished(self, self._label_selector, "task returned")

    def object_ref(self, timeout: float | None = None) -> Any:
        """The current real ObjectRef, waiting for admission and launch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._wait_for(lambda: self._ref is not None, deadline)
            return self._ref

    def get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ref = self.object_ref(None if deadline is None else deadline - time.monotonic())
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return ray.get(ref, timeout=remaining)
            except ray.exceptions.GetTimeoutError as e:
                raise QueueTimeoutError(f"{self._what} ({self.workload}) timed out") from e
            except ray.exceptions.TaskPlacementGroupRemoved:
                # Queued in a slot that was lost: it goes back to waiting for its own
                # admission as soon as the watcher sees this too; then wait for that run.
                with self._cv:
                    self._wait_for(lambda lost=ref: self._ref is not lost, deadline)
            except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError):
                with self._cv:
                    if self._ref is ref and self._error is None:
                        raise
                # Preempted while running: wait for the re-run (or its error).

    def is_ready(self) -> bool:
        with self._cv:
            if self._error is not None:
                return True
            ref = self._ref
        if ref is None:
            return False
        done, _ = ray.wait([ref], timeout=0, fetch_local=False)
        return bool(done)

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.get_event_loop().run_in_executor(None, self.get).__await__()

    def __repr__(self) -> str:
        return f"QueuedObjectRef({self.workload}, {self._state.value})"

    def __str__(self) -> str:
        # What Ray prints when a list holding handles reaches ray.get.
        return f"{self!r} ({USE_RAY_QUEUE})"


class QueuedRemoteFunction:
    """What ``@ray_queue.remote`` makes of a function."""

    def __init__(self, function: Any, options: dict[str, Any]) -> None:
        self._function = function
        self._options = options
        # Split once: every call shares Ray's options (a slot keeps them as its key).
        self._ours, self._theirs = split_options(options)
        self._remote_fn: Any = None
        self.__name__ = getattr(function, "__name__", "task")

    def options(self, **options: Any) -> QueuedRemoteFunction:
        clone = QueuedRemoteFunction(self._function, {**self._options, **options})
        clone._remote_fn = self._remote_fn
        return clone

    def remote(self, *args: Any, **kwargs: Any) -> QueuedObjectRef:
        runtime = current()
        ours, theirs = self._ours, self._theirs
        if self._remote_fn is None:
            self._remote_fn = ray.remote(self._function)
        bundle = to_bundle(request_resources(theirs, default_cpus=1), f"task {self.__name__}")
        request = runtime.request(
            WorkloadKind.TASK,
            [BundleGroup(bundle)],
            queue=ours.get("queue"),
            priority=ours.get("priority"),
            name=ours.get("name") or self.__name__,
            payload=_task_payload(theirs),
        )
        handle = QueuedObjectRef(runtime, request, self._remote_fn, theirs, args, kwargs)
        runtime.submit(request, handle)
        if not handle._has_queued_args():
            # A successor from now on, not only once the manager has answered: a backlog
            # submitted in several batches keeps its slots busy meanwhile. Any hand-over
            # to it is reported after its submission, so the manager always knows it.
            runtime.add_successor(handle)
        return handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"queued function {self.__name__} cannot be called directly; use .remote()")


def _task_payload(ray_options: Mapping[str, Any]) -> dict[str, Any]:
    """What the manager needs to know to launch the task in a slot (``slots.py``): its own
    node labels go on the slot's bundle; a task that picks its own scheduling strategy
    cannot run in a placement group, and one that must not be retried must not be killed
    with a slot it was only queued in, so neither gets a slot."""
    if ray_options.get("scheduling_strategy") is not None or ray_options.get("max_retries") == 0:
        return {"slot": False}
    if ray_options.get("label_selector"):
        return {"bundle_label_selector": [dict(ray_options["label_selector"])]}
    return {}


def _resolve(value: Any) -> Any:
    """A queued result passed as an argument becomes its real ObjectRef (waiting for it
    to be launched, which only happens once it is admitted)."""
    if isinstance(value, QueuedObjectRef):
        return value.object_ref()
    return value
