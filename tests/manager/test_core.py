"""ManagerCore against a recording fake of Ray: the pipeline, recovery, owner death."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.errors import (
    InvalidWorkloadError,
    UnknownPriorityClassError,
    UnknownQueueError,
    WorkloadRejected,
)
from ray_queue.engine.model import (
    BundleGroup,
    Decision,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    to_milli,
)
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from ray_queue.store.sqlite import SQLiteStore
from ray_queue.wire import ClientEvent, HandOver, NodeShape, SubmitRequest
from tests.manager.configs import A100, teams_config
from tests.manager.fakes import RecordingActions

W = WorkloadId


def req(
    wid: str,
    *,
    queue: str = "team-a",
    gpu: float = 1,
    cpu: float = 0,
    count: int = 1,
    priority: str | None = "low",
    owner: str = "driver-1",
    kind: WorkloadKind = WorkloadKind.PLACEMENT_GROUP,
    payload: dict[str, object] | None = None,
) -> SubmitRequest:
    resources = {"GPU": to_milli(gpu)}
    if cpu:
        resources["CPU"] = to_milli(cpu)
    return SubmitRequest(
        id=W(wid),
        queue=queue,
        bundle_groups=(BundleGroup(resources, count),),
        kind=kind,
        priority_class=priority,
        owner=owner,
        payload=payload or {},
    )


def new_core(
    store: MemoryStore | SQLiteStore | None = None,
) -> tuple[ManagerCore, RecordingActions]:
    actions = RecordingActions()
    core = ManagerCore.recover(
        store or MemoryStore(), actions, ManualClock(100.0), default_config=lambda: teams_config()
    )
    return core, actions


def state(core: ManagerCore, wid: str) -> WorkloadState:
    return core.workload(W(wid)).state


def slot_of(events: Sequence[ClientEvent], wid: str) -> str | None:
    """The placement group the admission event of ``wid`` carries."""
    return next(e.placement_group_id for e in events if e.workload == wid)


def test_admission_creates_a_labelled_placement_group() -> None:
    core, actions = new_core()
    [result] = core.submit_many([req("w1", count=2)])
    assert result.error is None and result.status is not None
    assert result.status.state is WorkloadState.ADMITTED
    bundles, selectors = actions.pg_specs[W("w1")]
    assert bundles == [{"GPU": 1.0}, {"GPU": 1.0}]
    assert selectors == [A100, A100]


def test_bad_input_is_refused_item_by_item_and_nothing_is_lost() -> None:
    core, _ = new_core()
    core.submit_many([req("ok1")])
    results = core.submit_many(
        [
            req("bad-queue", queue="nope"),
            req("bad-prio", priority="nope"),
            req("negative", gpu=-1),
            req("ok2"),
        ]
    )
    errors = {r.workload: type(r.error) for r in results}
    assert errors == {
        "bad-queue": UnknownQueueError,
        "bad-prio": UnknownPriorityClassError,
        "negative": InvalidWorkloadError,
        "ok2": type(None),
    }
    assert state(core, "ok1") is WorkloadState.ADMITTED
    assert state(core, "ok2") is WorkloadState.ADMITTED
    # More than the whole cohort's four GPUs could ever lend.
    [huge] = core.submit_many([req("huge", gpu=5)])
    assert isinstance(huge.error, WorkloadRejected)


def test_bundle_larger_than_every_node_is_rejected_at_submission() -> None:
    core, _ = new_core()
    core.set_nodes([NodeShape("n1", A100, {"GPU": to_milli(2), "CPU": to_milli(4)})])
    [result] = core.submit_many([req("wide", gpu=3)])
    assert isinstance(result.error, WorkloadRejected)
    assert "larger than every node" in str(result.error)
    [split] = core.submit_many([req("split", gpu=1.5, count=2)])
    assert split.error is None


def test_priority_preemption_removes_the_victims_placement_group() -> None:
    core, actions = new_core()
    core.submit_many([req("low1", gpu=2), req("low2", gpu=2, queue="team-b")])
    assert state(core, "low1") is WorkloadState.ADMITTED
    core.submit_many([req("high", gpu=2, priority="high")])
    assert state(core, "high") is WorkloadState.ADMITTED
    assert state(core, "low1") is WorkloadState.PENDING
    assert ("remove_pg", "low1") in actions.calls
    assert W("low1") not in actions.pgs
    events = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    assert [(e.workload, e.decision) for e in events if e.decision == "preempt"] == [
        ("low1", "preempt")
    ]


def test_reclaim_across_the_cohort() -> None:
    core, actions = new_core()
    # team-a borrows all four GPUs of the cohort.
    core.submit_many([req(f"a{i}", gpu=1) for i in range(4)])
    assert all(state(core, f"a{i}") is WorkloadState.ADMITTED for i in range(4))
    # team-b reclaims its nominal two.
    core.submit_many([req("b1", gpu=2, queue="team-b", owner="driver-2")])
    assert state(core, "b1") is WorkloadState.ADMITTED
    evicted = [f"a{i}" for i in range(4) if state(core, f"a{i}") is WorkloadState.PENDING]
    assert len(evicted) == 2
    assert all(W(w) not in actions.pgs for w in evicted)


def test_owner_death_frees_quota_and_admits_the_next() -> None:
    core, actions = new_core()
    core.submit_many([req("d1", gpu=2, owner="dead"), req("d2", gpu=2, owner="dead")])
    core.submit_many([req("next", gpu=2, owner="alive")])
    assert state(core, "next") is WorkloadState.PENDING
    assert core.owners() == {"dead", "alive"}
    assert core.cancel_owner("dead") == 2
    assert state(core, "d1") is WorkloadState.CANCELLED
    assert state(core, "next") is WorkloadState.ADMITTED
    assert W("d1") not in actions.pgs and W("d2") not in actions.pgs
    assert core.owners() == {"alive"}
    assert core.events("dead", after_seq=0, epoch=core.epoch).events == ()


def test_a_dead_owner_is_forgotten_even_when_all_its_work_had_ended() -> None:
    core, _ = new_core()
    core.submit_many([req("t1", kind=WorkloadKind.TASK, owner="gone")])
    core.report(finished=[(W("t1"), False, "")])
    assert core.events("gone", after_seq=0, epoch=core.epoch).events
    # Nothing of it is live, but its event log is kept for it: it is still watched.
    assert core.owners() == {"gone"}
    assert core.cancel_owner("gone") == 0
    assert core.owners() == set()
    assert core.events("gone", after_seq=0, epoch=core.epoch).events == ()


def test_events_a_poll_went_past_are_dropped_after_a_minute_and_a_laggard_resyncs() -> None:
    clock = ManualClock(100.0)
    core = ManagerCore.recover(
        MemoryStore(), RecordingActions(), clock, default_config=lambda: teams_config()
    )
    core.submit_many([req("w1", owner="d")])
    first = core.events("d", after_seq=0, epoch=core.epoch)
    assert [e.workload for e in first.events] == ["w1"] and not first.resync
    # A second process of the same owner, one poll behind the first, within the minute:
    # still a delta.
    core.submit_many([req("w2", owner="d")])
    fast = core.events("d", after_seq=first.seq, epoch=core.epoch)
    assert [e.workload for e in fast.events] == ["w2"] and not fast.resync
    slow = core.events("d", after_seq=first.seq - 1, epoch=core.epoch)
    assert not slow.resync
    # A minute on, the next poll drops what polls went past; a process left behind that
    # far gets where its workloads stand instead of a delta with a hole in it.
    clock.advance(61)
    core.submit_many([req("w3", owner="d")])
    assert [e.workload for e in core.events("d", after_seq=fast.seq, epoch=core.epoch).events] == [
        "w3"
    ]
    behind = core.events("d", after_seq=first.seq, epoch=core.epoch)
    assert behind.resync and {e.workload for e in behind.events} == {"w1", "w2", "w3"}


def test_tasks_need_no_placement_group_and_finish_by_report() -> None:
    core, actions = new_core()
    core.submit_many([req("t1", gpu=2, kind=WorkloadKind.TASK)])
    assert state(core, "t1") is WorkloadState.ADMITTED
    assert actions.calls == []
    event, lease = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    assert event.decision == "admit" and dict(event.label_selector) == A100
    assert lease.decision == "lease" and lease.lease_open
    core.report(started=[W("t1")], finished=[(W("t1"), False, "")])
    assert state(core, "t1") is WorkloadState.FINISHED
    # A late duplicate report is harmless.
    core.report(finished=[(W("t1"), False, "")])


def test_a_task_hands_its_quota_over_silently_and_durably() -> None:
    store = MemoryStore()
    core, _ = new_core(store)
    core.submit_many([req(f"t{i}", kind=WorkloadKind.TASK) for i in range(1, 6)])
    batch = core.events("driver-1", after_seq=0, epoch=core.epoch)
    seq, slot = batch.seq, slot_of(batch.events, "t1")
    # The driver already started t5 in t1's place and then saw t5 end, in one report.
    core.report(
        handovers=[HandOver(W("t1"), W("t5"), slot)],
        finished=[(W("t5"), False, "task returned")],
    )
    assert (state(core, "t1"), state(core, "t5")) == (WorkloadState.FINISHED,) * 2
    assert core.workload(W("t5")).history[1].reason == "HandedOver"
    # The owner reported all of it itself: no event comes back for either.
    assert core.events("driver-1", after_seq=seq, epoch=core.epoch).events == ()
    restored, _ = new_core(store)
    assert (state(restored, "t1"), state(restored, "t5")) == (WorkloadState.FINISHED,) * 2


def test_a_hand_over_that_crossed_a_preemption_is_told_to_the_owner() -> None:
    core, _ = new_core()
    core.submit_many([req(f"t{i}", kind=WorkloadKind.TASK) for i in range(1, 7)])
    batch = core.events("driver-1", after_seq=0, epoch=core.epoch)
    slot = slot_of(batch.events, "t2")
    # t1 gives its quota back; the cycle admits t5, the oldest waiting. Then team-b takes
    # its two GPUs back, and the two admitted last, t4 and t5, are preempted.
    core.report(finished=[(W("t1"), False, "task returned")])
    core.submit_many([req("reclaim", queue="team-b", gpu=1, count=2)])
    assert state(core, "reclaim") is WorkloadState.ADMITTED
    assert state(core, "t5") is WorkloadState.PENDING
    seq = core.events("driver-1", after_seq=0, epoch=core.epoch).seq
    # The driver, before it heard of either, started t5 in t2's place when t2 returned,
    # and then stopped it when the preemption reached it. The hand-over stands, so the
    # driver is told t5 is admitted, and starts it again.
    core.report(handovers=[HandOver(W("t2"), W("t5"), slot)])
    assert state(core, "t5") is WorkloadState.ADMITTED
    [told] = core.events("driver-1", after_seq=seq, epoch=core.epoch).events
    assert (told.workload, told.decision, told.reason) == ("t5", "admit", "HandedOver")
    assert told.placement_group_id == slot


@pytest.mark.parametrize(
    ("priority", "gets_the_quota"),
    [("high", "other"), ("low", "t5")],
    ids=["the-waiting-workload-goes-first", "the-successor-was-first-in-line-anyway"],
)
def test_a_refused_hand_over_gives_the_quota_to_whoever_is_next(
    priority: str, gets_the_quota: str
) -> None:
    core = ManagerCore.recover(
        MemoryStore(),
        RecordingActions(),
        ManualClock(100.0),
        default_config=lambda: teams_config(preempt=False),
    )
    core.submit_many([req(f"t{i}", kind=WorkloadKind.TASK) for i in range(1, 6)])
    batch = core.events("driver-1", after_seq=0, epoch=core.epoch)
    seq, slot = batch.seq, slot_of(batch.events, "t1")
    # Another driver's work arrives: the lease closes, and the driver is told.
    core.submit_many([req("other", owner="driver-2", priority=priority)])
    closed = core.events("driver-1", after_seq=seq, epoch=core.epoch).events
    assert [(e.decision, e.lease_open) for e in closed] == [("lease", False)]
    # A driver that had not heard yet hands t1 over anyway: refused, so t1 just
    # finishes and the freed quota goes to the next in line.
    core.report(handovers=[HandOver(W("t1"), W("t5"), slot)])
    assert state(core, "t1") is WorkloadState.FINISHED
    assert state(core, gets_the_quota) is WorkloadState.ADMITTED
    events = core.events("driver-1", after_seq=closed[-1].seq, epoch=core.epoch).events
    refused = next(e for e in events if e.decision == "handover_refused")
    assert refused.workload == "t5" and "other workloads are waiting" in refused.message
    # The event says where t5 stands: admitted in its own right, or waiting again.
    assert refused.state is state(core, "t5")


def test_a_group_removed_behind_the_managers_back_ends_its_workload() -> None:
    core, actions = new_core()
    core.submit_many([req("pg", gpu=4), req("next", gpu=4)])
    actions.pgs.pop(W("pg"))  # what ray.util.remove_placement_group on the handle does
    core.audit_placement_groups(limit=10)
    gone = core.workload(W("pg"))
    assert gone.state is WorkloadState.FINISHED
    assert "removed outside ray_queue" in gone.message
    assert state(core, "next") is WorkloadState.ADMITTED
    core.audit_placement_groups(limit=10)  # nothing else is missing
    assert state(core, "next") is WorkloadState.ADMITTED


def test_the_audit_looks_up_a_bounded_number_of_groups_per_call_taking_turns() -> None:
    core, actions = new_core()
    core.submit_many([req(f"pg{i}", gpu=1) for i in range(4)])
    ids = dict(actions.pgs)
    assert len(ids) == 4
    actions.pgs.pop(W("pg3"))
    for _ in range(3):
        core.audit_placement_groups(limit=3)
    # A round of 3 + 1 covers every group once; the next round starts over (3 left).
    assert [len(batch) for batch in actions.audited] == [3, 1, 3]
    assert sorted(actions.audited[0] + actions.audited[1]) == sorted(ids.values())
    assert state(core, "pg3") is WorkloadState.FINISHED
    assert all(state(core, f"pg{i}") is WorkloadState.ADMITTED for i in range(3))


class LoopingEngine(Engine):
    """A fake bug: every scheduling round says its ClusterQueues changed."""

    def _round(self, cluster_queues: set[str], decisions: list[Decision]) -> set[str]:
        super()._round(cluster_queues, decisions)
        return set(cluster_queues)


def test_a_scheduling_loop_is_cut_short_logged_and_the_manager_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cycles: list[list[Decision]] = []
    clock = ManualClock(100.0)
    core = ManagerCore(
        LoopingEngine(teams_config(), clock),
        MemoryStore(),
        RecordingActions(),
        clock,
        on_cycle=lambda _, decisions: cycles.append(decisions),
    )
    with caplog.at_level(logging.ERROR, logger="ray_queue.manager.core"):
        core.submit_many([req("a")])
    assert core.cut_short
    assert state(core, "a") is WorkloadState.ADMITTED
    (record,) = [r for r in caplog.records if r.getMessage().startswith("schedule() stopped")]
    assert "admit a" in record.last_decisions  # type: ignore[attr-defined]  # logging extra
    # The manager still answers, and the next submission is admitted.
    core.submit_many([req("b")])
    assert state(core, "b") is WorkloadState.ADMITTED
