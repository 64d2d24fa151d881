"""Slots on the manager's side: which admitted tasks get a placement group of their shape,
how it moves along a chain of hand-overs, and how it survives a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from ray_queue.store.sqlite import SQLiteStore
from ray_queue.wire import HandOver, SubmitRequest
from tests.manager.configs import A100, teams_config
from tests.manager.fakes import RecordingActions
from tests.manager.test_core import new_core, req, slot_of, state

pytestmark = pytest.mark.timeout(60)
W = WorkloadId


def tasks(n: int, **kwargs: Any) -> list[SubmitRequest]:
    return [req(f"t{i}", kind=WorkloadKind.TASK, **kwargs) for i in range(1, n + 1)]


def test_tasks_with_a_backlog_get_a_slot_of_their_shape() -> None:
    core, actions = new_core()
    # Quota for 4 one-GPU tasks (2 own, 2 borrowed); t5 and t6 wait behind them.
    core.submit_many(tasks(6))
    admitted = [f"t{i}" for i in range(1, 5)]
    assert [state(core, w) for w in admitted] == [WorkloadState.ADMITTED] * 4
    assert [c for c in actions.calls if c[0] == "create_pg"] == [("create_pg", w) for w in admitted]
    assert actions.pg_specs[W("t1")] == ([{"GPU": 1.0}], [A100])
    events = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    assert slot_of(events, "t1") == actions.pgs[W("t1")]
    # Its owner launches it straight away: the manager does not wait for the group.
    assert not core.unplaced_placement_groups()


@pytest.mark.parametrize(
    ("submitted", "why"),
    [
        (tasks(1), "nothing queued behind it"),
        (tasks(6, payload={"slot": False}), "its owner asked for none"),
        ([*tasks(6), req("pg", owner="driver-2")], "someone else waits for the quota"),
    ],
    ids=["alone", "opted-out", "lease-closed"],
)
def test_other_tasks_run_without_a_slot(submitted: list[SubmitRequest], why: str) -> None:
    core, actions = new_core()
    core.submit_many(submitted)
    assert state(core, "t1") is WorkloadState.ADMITTED
    assert ("create_pg", W("t1")) not in actions.calls, why


def test_the_slot_moves_along_the_hand_overs_and_goes_with_the_last() -> None:
    core, actions = new_core()
    core.submit_many(tasks(6))
    slot = slot_of(core.events("driver-1", after_seq=0, epoch=core.epoch).events, "t1")
    core.report(handovers=[HandOver(W("t1"), W("t5"), slot), HandOver(W("t5"), W("t6"), slot)])
    assert (state(core, "t1"), state(core, "t5"), state(core, "t6")) == (
        WorkloadState.FINISHED,
        WorkloadState.FINISHED,
        WorkloadState.ADMITTED,
    )
    assert ("move_pg", "t1->t5") in actions.calls and ("move_pg", "t5->t6") in actions.calls
    assert W("t1") in actions.pgs, "still the group Ray knows by t1's name"
    assert core.unplaced_placement_groups() == {}
    core.report(finished=[(W("t6"), False, "task returned")])
    assert actions.calls[-1] == ("remove_pg", W("t6"))
    assert W("t1") not in actions.pgs


def test_a_hand_over_outside_the_slot_is_refused_and_the_slot_removed() -> None:
    core, actions = new_core()
    core.submit_many(tasks(6))
    core.report(handovers=[HandOver(W("t1"), W("t5"), "not-its-slot")])
    assert state(core, "t1") is WorkloadState.FINISHED
    assert ("remove_pg", W("t1")) in actions.calls
    refused = [
        e
        for e in core.events("driver-1", after_seq=0, epoch=core.epoch).events
        if e.decision == "handover_refused"
    ]
    assert [e.workload for e in refused] == ["t5"]
    assert "placement group" in refused[0].message
    # Nothing else waited, so the freed quota went to t5 anyway, with a slot of its own.
    assert refused[0].state is WorkloadState.ADMITTED
    assert refused[0].placement_group_id == actions.pgs[W("t5")]
    assert dict(refused[0].label_selector) == A100


def test_a_restarted_manager_re_adopts_a_moved_slot(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    core, actions = new_core(store)
    core.submit_many(tasks(6))
    slot = slot_of(core.events("driver-1", after_seq=0, epoch=core.epoch).events, "t1")
    core.report(handovers=[HandOver(W("t1"), W("t5"), slot)])

    # The manager dies; Ray keeps the groups. A new one starts from the store.
    survivors = RecordingActions()
    survivors.pgs = dict(actions.pgs)
    restarted = ManagerCore.recover(
        SQLiteStore(tmp_path), survivors, ManualClock(200.0), default_config=teams_config
    )
    assert not [c for c in survivors.calls if c[0] in ("create_pg", "remove_pg")]
    assert ("move_pg", "t1->t5") in survivors.calls
    restarted.report(finished=[(W("t5"), False, "task returned")])
    assert ("remove_pg", W("t5")) in survivors.calls and W("t1") not in survivors.pgs


def test_memory_store_keeps_the_slot_payload() -> None:
    store = MemoryStore()
    core, _ = new_core(store)
    core.submit_many(tasks(6))
    slot = slot_of(core.events("driver-1", after_seq=0, epoch=core.epoch).events, "t1")
    core.report(handovers=[HandOver(W("t1"), W("t5"), slot)])
    assert store.load().payloads[W("t5")]["placement_group_of"] == "t1"


def test_a_successor_admitted_meanwhile_stays_in_the_slot_it_runs_in() -> None:
    core, actions = new_core()
    core.submit_many(tasks(6))
    slot = slot_of(core.events("driver-1", after_seq=0, epoch=core.epoch).events, "t1")
    seq = core.events("driver-1", after_seq=0, epoch=core.epoch).seq
    # t2 ends with nothing behind it: the cycle admits t5 on its own, in a new slot...
    core.report(finished=[(W("t2"), False, "task returned")])
    assert state(core, "t5") is WorkloadState.ADMITTED and W("t5") in actions.pgs
    # ...but its owner had already started t5 in t1's slot as t1 returned.
    core.report(handovers=[HandOver(W("t1"), W("t5"), slot)])
    assert (state(core, "t1"), state(core, "t5")) == (
        WorkloadState.FINISHED,
        WorkloadState.ADMITTED,
    )
    assert ("remove_pg", W("t5")) in actions.calls, "the slot it never used"
    assert ("move_pg", "t1->t5") in actions.calls and W("t1") in actions.pgs
    # t1's quota went to the next in line, and the owner is not told to stop t5.
    assert state(core, "t6") is WorkloadState.ADMITTED
    later = core.events("driver-1", after_seq=seq, epoch=core.epoch).events
    assert not [e for e in later if e.decision == "handover_refused"]
