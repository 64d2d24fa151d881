"""``@ray_queue.remote`` on a class: a queued actor.

When the manager admits it, the handle creates the real actor inside the placement group
the manager made for it. A preempted actor dies with its placement group and is created
again on re-admission if ``max_restarts`` allows it, else ``get`` raises ``Preempted``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ray_queue.client.handle import QueuedHandle, request_resources, split_options
from ray_queue.client.lifecycle import ACTOR, ActorEvent, ActorPhase, HandleTransitionError
from ray_queue.client.runtime import ClientRuntime, current, to_bundle
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind, WorkloadState
from ray_queue.errors import Preempted, WorkloadCancelled
from ray_queue.ray_adapter.actions import pg_from_hex
from ray_queue.wire import ClientEvent, EventKind


class QueuedActor(QueuedHandle):
    """A queued actor; ``ray_queue.get(handle)`` gives the real ``ActorHandle``.

    ``handle.method.remote(...)`` also works: it waits for admission, then calls. Its
    phase is ``lifecycle.ACTOR``'s.
    """

    kind = WorkloadKind.ACTOR

    def __init__(
        self,
        runtime: ClientRuntime,
        workload: WorkloadId,
        actor_cls: Any,
        ray_options: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(runtime, workload, "actor")
        self._phase = ACTOR.initial
        self._actor_cls = actor_cls
        self._ray_options = ray_options
        self._args = args
        self._kwargs = kwargs
        self._actor: Any = None
        self._restartable = ray_options.get("max_restarts", 0) != 0

    @property
    def phase(self) -> ActorPhase:
        """What this driver has done with the actor (``lifecycle.ActorPhase``)."""
        return self._phase

    def _move(self, event: ActorEvent) -> ActorPhase:
        """(Holding ``_cv``.) Take ``event``; the phase it was in."""
        phase, self._phase = self._phase, ACTOR.step(self._phase, event)
        return phase

    def _refused(self) -> None:
        self._move(ActorEvent.REFUSE)

    def _on_event(self, event: ClientEvent) -> None:
        with self._cv:
            self._state, self._message = event.state, event.message
            if event.decision is EventKind.ADMIT:
                if self._move(ActorEvent.ADMIT) is ActorPhase.WAITING:
                    self._create(event)
            elif event.decision in (EventKind.PREEMPT, EventKind.EVICT) or event.state.is_terminal:
                if event.decision is EventKind.PREEMPT:
                    self._preemptions += 1
                # The actor died with its placement group.
                self._actor = None
                if event.state.is_terminal:
                    # An actor that cancelled itself as not restartable stays Preempted.
                    self._error = self._error or self._terminal_error(event)
                    self._move(ActorEvent.STOP)
                elif self._phase is ActorPhase.FAILED or self._restartable:
                    self._move(ActorEvent.REQUEUE)
                else:
                    self._error = Preempted(
                        f"actor {self.workload} was preempted ({event.message}) and has "
                        "max_restarts=0, so it is not recreated"
                    )
                    self._move(ActorEvent.STOP)
                    self._runtime.manager.cancel.remote([self.workload], "not restartable")
            self._cv.notify_all()

    def _create(self, event: ClientEvent) -> None:
        """(Holding ``_cv``.) Create the real actor in the group the manager made for it."""
        if event.placement_group_id is None:
            raise HandleTransitionError(
                f"actor {self.workload} was admitted without a placement group"
            )
        strategy = PlacementGroupSchedulingStrategy(
            pg_from_hex(event.placement_group_id),
            placement_group_bundle_index=0,
            placement_group_capture_child_tasks=True,
        )
        options = {k: v for k, v in self._ray_options.items() if k != "label_selector"}
        options["scheduling_strategy"] = strategy
        self._attempt += 1
        self._actor = self._actor_cls.options(**options).remote(*self._args, **self._kwargs)
        self._runtime.report_started(self.workload)

    def get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._wait_for(lambda: self._actor is not None, deadline)
            return self._actor

    def is_ready(self) -> bool:
        with self._cv:
            return self._actor is not None or self._error is not None

    def kill(self) -> None:
        """Kill the actor and give its quota back."""
        with self._cv:
            actor, self._actor = self._actor, None
            admitted = self._state is WorkloadState.ADMITTED
            self._error = WorkloadCancelled(f"actor {self.workload} was killed")
            self._move(ActorEvent.STOP)
        if actor is not None:
            ray.kill(actor)
        if admitted:
            self._runtime.report_finished(self.workload, failed=False, message="killed")
            self._runtime.forget(self.workload)
            self._runtime.flush()
        else:
            self._runtime.cancel([self.workload])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _MethodProxy(self, name)

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.get_event_loop().run_in_executor(None, self.get).__await__()

    def __repr__(self) -> str:
        return f"QueuedActor({self.workload}, {self._state.value})"


class _MethodProxy:
    def __init__(self, actor: QueuedActor, name: str, options: dict[str, Any] | None = None):
        self._actor = actor
        self._name = name
        self._options = options or {}

    def options(self, **options: Any) -> _MethodProxy:
        return _MethodProxy(self._actor, self._name, {**self._options, **options})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._actor.get(), self._name)
        if self._options:
            method = method.options(**self._options)
        return method.remote(*args, **kwargs)


class QueuedActorClass:
    """What ``@ray_queue.remote`` makes of a class."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = options
        self._actor_cls: Any = None
        self.__name__ = cls.__name__

    def options(self, **options: Any) -> QueuedActorClass:
        clone = QueuedActorClass(self._cls, {**self._options, **options})
        clone._actor_cls = self._actor_cls
        return clone

    def remote(self, *args: Any, **kwargs: Any) -> QueuedActor:
        runtime = current()
        ours, theirs = split_options(self._options)
        if self._actor_cls is None:
            self._actor_cls = ray.remote(self._cls)
        bundle = to_bundle(request_resources(theirs, default_cpus=1), f"actor {self.__name__}")
        request = runtime.request(
            WorkloadKind.ACTOR,
            [BundleGroup(bundle)],
            queue=ours.get("queue"),
            priority=ours.get("priority"),
            name=ours.get("name") or self.__name__,
        )
        theirs.setdefault("num_cpus", bundle.get("CPU", 0) / 1000)
        handle = QueuedActor(runtime, request.id, self._actor_cls, theirs, args, kwargs)
        runtime.submit(request, handle)
        return handle
