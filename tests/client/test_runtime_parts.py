"""The client runtime's parts without Ray: the outbox's batching, the handle registry,
and the pipeline's choice between handing a finished task's quota over and giving it
back. The manager is a fake that records what it is sent (and can be unreachable); the
handles are small recording stand-ins. Slots, the poller and the watcher need Ray: they
are covered by tests/ray/test_queueing.py.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from ray_queue.client.handles import HandleRegistry
from ray_queue.client.outbox import Outbox
from ray_queue.client.pipeline import SlotPipeline, Unstaged
from ray_queue.engine.errors import UnknownQueueError
from ray_queue.engine.model import BundleGroup, LeaseKey, WorkloadId, WorkloadState, lease_key
from ray_queue.errors import ManagerUnavailableError
from ray_queue.wire import ClientEvent, HandOver, SubmitRequest, SubmitResult

pytestmark = pytest.mark.timeout(30)


class _Method:
    def __init__(self, manager: FakeManager, name: str) -> None:
        self._manager, self._name = manager, name

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._manager.called(self._name, args, kwargs)


class FakeManager:
    """Records each call (``submit_many``, ``report``) and answers it; ``down`` makes it
    unreachable; ``refuse`` names workloads whose submission it refuses."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.down = False
        self.refuse: set[str] = set()
        self.sent = threading.Event()
        self.submit_many = _Method(self, "submit_many")
        self.report = _Method(self, "report")

    def called(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.down:
            raise ManagerUnavailableError("the queue manager did not answer: down")
        self.calls.append((name, args))
        self.sent.set()
        if name == "submit_many":
            return [
                SubmitResult(r.id, error=UnknownQueueError("no such queue"))
                if r.id in self.refuse
                else SubmitResult(r.id, state=WorkloadState.PENDING)
                for r in args[0]
            ]
        return None


@dataclass
class Handle:
    """Records what the outbox tells it."""

    workload: WorkloadId
    results: list[SubmitResult] = field(default_factory=list)

    def _on_event(self, event: ClientEvent) -> None:
        raise AssertionError("the outbox sends no events")

    def _on_submitted(self, result: SubmitResult) -> None:
        self.results.append(result)


def request(workload: str) -> SubmitRequest:
    return SubmitRequest(WorkloadId(workload), "q", (BundleGroup({"CPU": 1000}),), owner="o")


def outbox(manager: FakeManager) -> tuple[Outbox, HandleRegistry]:
    handles = HandleRegistry()
    return Outbox(manager, lambda result: result, handles), handles


def submitted_ids(manager: FakeManager) -> list[list[str]]:
    return [[r.id for r in args[0]] for name, args in manager.calls if name == "submit_many"]


def test_what_is_buffered_goes_as_one_call_of_each_kind_in_order() -> None:
    manager = FakeManager()
    box, handles = outbox(manager)
    a, b = Handle(WorkloadId("a")), Handle(WorkloadId("b"))
    for h in (a, b):
        handles.add(h.workload, h)
        box.submit_later(request(h.workload), h)
    box.started(WorkloadId("x"))
    box.finished(WorkloadId("y"), failed=False, message="task returned")
    box.handed_over(HandOver(WorkloadId("y"), WorkloadId("z")))
    box.flush()
    assert submitted_ids(manager) == [["a", "b"]]
    assert [c for c in manager.calls if c[0] == "report"] == [
        (
            "report",
            (
                [WorkloadId("x")],
                [(WorkloadId("y"), False, "task returned")],
                [HandOver(WorkloadId("y"), WorkloadId("z"))],
            ),
        )
    ]
    assert [r.workload for r in a.results + b.results] == ["a", "b"]
    box.flush()  # nothing left: no call
    assert len(manager.calls) == 2


def test_a_refused_submission_reaches_its_handle_and_leaves_the_registry() -> None:
    manager = FakeManager()
    manager.refuse = {"bad"}
    box, handles = outbox(manager)
    good, bad = Handle(WorkloadId("good")), Handle(WorkloadId("bad"))
    for h in (good, bad):
        handles.add(h.workload, h)
    box.submit_later(request("good"), good)
    result = box.submit_now(request("bad"), bad)
    # Behind what was buffered: the manager sees submissions in order.
    assert submitted_ids(manager) == [["good", "bad"]]
    assert isinstance(result.error, UnknownQueueError)
    assert isinstance(bad.results[0].error, UnknownQueueError)
    assert handles.workloads() == {"good"}
    assert not handles.forgotten(WorkloadId("bad"))


def test_nothing_is_dropped_while_the_manager_is_unreachable() -> None:
    manager = FakeManager()
    box, _ = outbox(manager)
    box.submit_later(request("first"), Handle(WorkloadId("first")))
    box.finished(WorkloadId("f1"), failed=True, message="boom")
    manager.down = True
    with pytest.raises(ManagerUnavailableError):
        box.flush()
    box.submit_later(request("second"), Handle(WorkloadId("second")))
    box.finished(WorkloadId("f2"), failed=False, message="")
    manager.down = False
    box.flush()
    assert submitted_ids(manager) == [["first", "second"]]
    [(_, (_, finished, _))] = [c for c in manager.calls if c[0] == "report"]
    assert [w for w, _, _ in finished] == ["f1", "f2"]


def test_the_sender_thread_sends_without_a_flush_and_stops() -> None:
    manager = FakeManager()
    box, _ = outbox(manager)
    box.start()
    try:
        box.submit_later(request("a"), Handle(WorkloadId("a")))
        assert manager.sent.wait(10)
        assert submitted_ids(manager) == [["a"]]
    finally:
        box.stop()
        box.join(10)
    assert not box._thread.is_alive()


def test_the_registry_remembers_what_ended_here_but_not_what_the_manager_ended() -> None:
    handles = HandleRegistry()
    for name in ("returned", "cancelled"):
        handles.add(WorkloadId(name), Handle(WorkloadId(name)))
    handles.forget(WorkloadId("returned"))
    assert handles.take(WorkloadId("cancelled"), last=True) is not None
    assert handles.workloads() == set()
    assert handles.forgotten(WorkloadId("returned"))
    assert not handles.forgotten(WorkloadId("cancelled"))
    assert handles.take(WorkloadId("returned"), last=False) is None
    handles.forget(WorkloadId("never-ours"))
    assert not handles.forgotten(WorkloadId("never-ours"))


KEY: LeaseKey = lease_key("o", "q", None, (BundleGroup({"CPU": 1000}),))


@dataclass
class Task:
    """A queued task as the pipeline sees it; ``took_over`` records its start."""

    workload: WorkloadId
    slot_eligible: bool = False
    is_waiting: bool = True
    lease_key: LeaseKey = KEY
    took_over: Mapping[str, str] | None = None

    @property
    def waiting(self) -> bool:
        return self.is_waiting

    @property
    def returned(self) -> bool:
        return False

    def _take_over(self, label_selector: Mapping[str, str]) -> bool:
        if not self.is_waiting:
            return False
        self.is_waiting, self.took_over = False, label_selector
        return True

    def _stage(self, slot: Any) -> bool:
        return False

    def _promote(self, slot: Any) -> bool:
        return False

    def _unstage(self, slot: Any) -> Unstaged:
        return Unstaged(left=False)

    def in_slot(self, slot: Any) -> bool:
        return False


@dataclass
class Recorded:
    handovers: list[HandOver] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def pipeline(self) -> SlotPipeline:
        return SlotPipeline(
            handed_over=self.handovers.append,
            ended=lambda w, m: self.ended.append((w, m)),
            forget=self.forgotten.append,
        )


def test_an_open_lease_hands_the_quota_to_the_oldest_still_waiting_task() -> None:
    seen = Recorded()
    pipeline = seen.pipeline()
    gone, nxt, last = Task(WorkloadId("gone")), Task(WorkloadId("next")), Task(WorkloadId("last"))
    for t in (gone, nxt, last):
        pipeline.add_successor(t)
    gone.is_waiting = False  # admitted on its own meanwhile: skipped
    pipeline.set_lease(KEY, True)
    pipeline.task_finished(Task(WorkloadId("done")), {"zone": "a"}, "task returned")
    assert seen.handovers == [HandOver(WorkloadId("done"), WorkloadId("next"))]
    assert nxt.took_over == {"zone": "a"} and last.took_over is None
    assert seen.ended == []


@pytest.mark.parametrize(
    ("lease_open", "slot_eligible"),
    [(False, False), (True, True)],
    ids=["lease-closed", "slot-eligible-without-a-slot"],
)
def test_otherwise_the_quota_goes_back(lease_open: bool, slot_eligible: bool) -> None:
    # A closed lease: someone else waits for the quota. A task that could have a slot
    # but ran without one: the next admission comes with a slot instead.
    seen = Recorded()
    pipeline = seen.pipeline()
    waiting = Task(WorkloadId("next"))
    pipeline.add_successor(waiting)
    pipeline.set_lease(KEY, lease_open)
    done = Task(WorkloadId("done"), slot_eligible=slot_eligible)
    pipeline.task_finished(done, {}, "task returned")
    assert seen.handovers == [] and waiting.took_over is None
    assert seen.ended == [("done", "task returned")]


def test_a_settled_task_finishes_if_admitted_and_is_only_forgotten_if_pending() -> None:
    seen = Recorded()
    pipeline = seen.pipeline()
    pipeline.settled(Task(WorkloadId("admitted")), WorkloadState.ADMITTED)
    pipeline.settled(Task(WorkloadId("pending")), WorkloadState.PENDING)
    assert seen.ended == [("admitted", "task returned")]
    assert seen.forgotten == ["pending"]
