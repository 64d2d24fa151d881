"""ManagerCore against a recording fake of Ray: the pipeline, recovery, owner death."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.errors import (
    InvalidWorkloadError,
    UnknownPriorityClassError,
    UnknownQueueError,
    WorkloadRejected,
)
from ray_queue.engine.model import (
    BundleGroup,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    to_milli,
)
from ray_queue.manager.core import ManagerCore
from ray_queue.manager.defaults import default_config
from ray_queue.manager.types import NodeShape, SubmitRequest
from ray_queue.store.base import MemoryStore
from ray_queue.store.sqlite import SQLiteStore
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


def test_tasks_need_no_placement_group_and_finish_by_report() -> None:
    core, actions = new_core()
    core.submit_many([req("t1", gpu=2, kind=WorkloadKind.TASK)])
    assert state(core, "t1") is WorkloadState.ADMITTED
    assert actions.calls == []
    [event] = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    assert event.decision == "admit" and dict(event.label_selector) == A100
    core.report(started=[W("t1")], finished=[(W("t1"), False, "")])
    assert state(core, "t1") is WorkloadState.FINISHED
    # A late duplicate report is harmless.
    core.report(finished=[(W("t1"), False, "")])


def test_jobs_are_submitted_stopped_on_preemption_and_finish_when_ray_says() -> None:
    core, actions = new_core()
    payload = {"entrypoint": "python x.py"}
    core.submit_many([req("j1", gpu=4, kind=WorkloadKind.JOB, payload=payload)])
    assert ("submit_job", "rq-j1-1") in actions.calls
    assert actions.job_payloads["rq-j1-1"] == payload
    core.submit_many([req("h", gpu=2, priority="high")])
    assert ("stop_job", "rq-j1-1") in actions.calls
    core.cancel([W("h")])
    # Re-admitted: a fresh submission id, so Ray does not refuse a duplicate.
    assert ("submit_job", "rq-j1-2") in actions.calls
    core.job_states({"rq-j1-2": "SUCCEEDED"})
    assert state(core, "j1") is WorkloadState.FINISHED


def test_events_resync_on_a_new_epoch() -> None:
    core, _ = new_core()
    core.submit_many([req("w1")])
    batch = core.events("driver-1", after_seq=0, epoch="stale")
    assert batch.resync and [e.workload for e in batch.events] == ["w1"]
    assert batch.events[0].decision == "admit"
    assert core.events("driver-1", after_seq=batch.seq, epoch=core.epoch).events == ()


def test_recovery_from_sqlite_readopts_and_cleans_placement_groups(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    core, actions = new_core(store)
    core.submit_many([req("a", gpu=2), req("b", gpu=2), req("c", gpu=2), req("p", gpu=2)])
    admitted = {w for w in "abcp" if state(core, w) is WorkloadState.ADMITTED}
    assert len(admitted) == 2
    # A placement group for a workload that is not admitted (crash between act and persist
    # of a later eviction is impossible, but a stray one must still be cleaned up).
    actions.pgs[W("stray")] = "dead"
    # One admitted PG vanished (crash right after persisting a re-admission).
    lost = sorted(admitted)[0]
    del actions.pgs[W(lost)]
    store.close()

    store2 = SQLiteStore(tmp_path)
    actions.calls.clear()
    core2 = ManagerCore.recover(
        store2, actions, ManualClock(200.0), default_config=lambda: teams_config(cpu=99)
    )
    assert {w for w in "abcp" if core2.workload(W(w)).state is WorkloadState.ADMITTED} == admitted
    assert ("remove_pg", "stray") in actions.calls
    assert ("create_pg", lost) in actions.calls
    assert [c for c in actions.calls if c[0] == "create_pg"] == [("create_pg", lost)]
    # The stored config won over the default.
    assert core2.config == teams_config()
    # Nothing is admitted twice: finishing frees exactly what was held.
    for w in sorted(admitted):
        core2.report(finished=[(W(w), False, "")])
    assert {w for w in "abcp" if core2.workload(W(w)).state is WorkloadState.ADMITTED} == (
        set("abcp") - admitted
    )


def test_default_config_is_sized_to_the_nodes() -> None:
    nodes = [
        NodeShape("h", {}, {"CPU": 2000, "memory": 10, "node:1.2.3.4": 1000}, is_head=True),
        NodeShape("g", A100, {"CPU": 4000, "GPU": 2000}),
    ]
    config = default_config(nodes)
    [cq] = config.cluster_queues.values()
    quotas = {r.name: r.nominal for fq in cq.resource_groups[0].flavors for r in fq.resources}
    assert quotas == {"CPU": 6000, "GPU": 2000, "memory": 10}
    assert list(config.queues) == ["default"]


@pytest.mark.parametrize("bad", ["", None])
def test_cancel_of_unknown_workloads_is_harmless(bad: str | None) -> None:
    core, _ = new_core()
    assert core.cancel([W(bad or "missing")]) == [False]


def test_job_submission_is_retried_while_ray_refuses_it() -> None:
    core, actions = new_core()
    actions.failing_job_submits = 2
    payload = {"entrypoint": "python x.py"}
    core.submit_many([req("j", gpu=1, kind=WorkloadKind.JOB, payload=payload)])
    assert state(core, "j") is WorkloadState.ADMITTED
    assert "rq-j-1" not in actions.job_state
    core.job_states(actions.jobs())  # second attempt fails too
    core.job_states(actions.jobs())  # third succeeds
    assert actions.job_state["rq-j-1"] == "PENDING"
    assert [c for c in actions.calls if c[0] == "submit_job"] == [("submit_job", "rq-j-1")] * 3
    actions.job_state["rq-j-1"] = "SUCCEEDED"
    core.job_states(actions.jobs())
    assert state(core, "j") is WorkloadState.FINISHED
