"""Placement groups created after a removal wait for it to reach Ray's view (ManagerCore)."""

from __future__ import annotations

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.model import WorkloadId, WorkloadState
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from tests.manager.configs import teams_config
from tests.manager.fakes import RecordingActions
from tests.manager.test_core import req

W = WorkloadId
LAG = 0.1


def paced_core(
    store: MemoryStore | None = None,
) -> tuple[ManagerCore, RecordingActions, ManualClock, list[int]]:
    actions, clock, wakes = RecordingActions(), ManualClock(100.0), [0]

    def woken() -> None:
        wakes[0] += 1

    core = ManagerCore.recover(
        store or MemoryStore(),
        actions,
        clock,
        default_config=teams_config,
        on_events=woken,
        release_lag_s=LAG,
    )
    return core, actions, clock, wakes


def admitted(core: ManagerCore, wid: str) -> list[str | None]:
    """The placement group ids of ``wid``'s admission events so far."""
    events = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    return [e.placement_group_id for e in events if e.workload == wid and e.decision == "admit"]


def test_a_group_is_created_at_once_when_nothing_was_removed_lately() -> None:
    core, actions, _, _ = paced_core()
    core.submit_many([req("a", gpu=4)])
    assert W("a") in actions.pgs
    assert admitted(core, "a") == [actions.pgs[W("a")]]
    assert core.next_placement_at() is None


def test_an_admission_into_just_freed_capacity_waits_for_the_lag_then_is_told() -> None:
    core, actions, clock, wakes = paced_core()
    core.submit_many([req("a", gpu=4), req("b", gpu=4)])
    core.report(finished=[(W("a"), False, "done")])
    # b has a's quota at once (the engine's state, persisted), but no group yet.
    assert core.workload(W("b")).state is WorkloadState.ADMITTED
    assert W("b") not in actions.pgs and admitted(core, "b") == []
    assert core.next_placement_at() == clock.now() + LAG

    clock.advance(LAG / 2)
    core.place_due()
    assert W("b") not in actions.pgs

    clock.advance(LAG / 2)
    before = wakes[0]
    core.place_due()
    assert admitted(core, "b") == [actions.pgs[W("b")]]
    assert wakes[0] > before and core.next_placement_at() is None


def test_a_held_admission_cancelled_before_its_time_never_gets_a_group() -> None:
    core, actions, clock, _ = paced_core()
    core.submit_many([req("a", gpu=4), req("b", gpu=4)])
    core.report(finished=[(W("a"), False, "done")])
    assert core.cancel([W("b")]) == [True]
    clock.advance(LAG)
    core.tick()  # the periodic tick places due groups too
    assert ("create_pg", "b") not in actions.calls
    assert admitted(core, "b") == []
    assert core.next_placement_at() is None


def test_a_restart_while_held_creates_the_group_from_the_store() -> None:
    store = MemoryStore()
    core, _, _, _ = paced_core(store)
    core.submit_many([req("a", gpu=4), req("b", gpu=4)])
    core.report(finished=[(W("a"), False, "done")])
    restarted, actions, _, _ = paced_core(store)
    assert restarted.workload(W("b")).state is WorkloadState.ADMITTED
    assert W("b") in actions.pgs
