"""A JOB workload's Ray job runs (``manager/job_runs.py``): the transition table's
guarantees, the rules built on it (no overlapping runs, stops that take), and the job
desk's stop lane (``ray_adapter/job_desk.py``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ray_queue.engine.model import WorkloadId
from ray_queue.manager.job_runs import (
    SUBMIT_ATTEMPTS,
    TRANSITIONS,
    UNSEEN_AFTER_S,
    JobRuns,
    RunEvent,
    RunState,
    RunTransitionError,
    step,
    stop_again_after,
)
from ray_queue.ray_adapter.job_desk import DROPPED, JobDesk
from tests.ray.harness import wait_for

pytestmark = pytest.mark.timeout(60)

R, E = RunState, RunEvent
W = WorkloadId("w")
#: States in which a run may be going in Ray, or get there, as its workload's own run.
UNSTOPPED = {R.WAITING, R.UNSENT, R.SUBMITTING, R.LISTED}


# -- the table -------------------------------------------------------------------------------


def _reachable(start: RunState) -> set[RunState]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_every_state_is_reachable_from_admission_and_ended_is_final() -> None:
    assert _reachable(R.WAITING) == set(RunState)
    assert _reachable(R.ENDED) == {R.ENDED}


@pytest.mark.parametrize("state", sorted(UNSTOPPED | {R.RECALLING, R.STOPPING}))
def test_a_stop_in_any_state_leaves_no_unstopped_run(state: RunState) -> None:
    # Whatever Ray reports after the stop, the run never becomes its workload's again.
    after = step(state, E.STOP)
    assert after not in UNSTOPPED
    assert _reachable(after) <= {R.RECALLING, R.STOPPING, R.ENDED}


@pytest.mark.parametrize("state", sorted(RunState))
def test_ray_listing_a_run_ended_ends_it_in_every_state(state: RunState) -> None:
    assert step(state, E.DONE) is R.ENDED


def test_an_event_a_state_has_no_edge_for_is_a_loud_error() -> None:
    with pytest.raises(RunTransitionError, match="waiting cannot take sent"):
        step(R.WAITING, E.SENT)


def test_stops_are_asked_again_less_and_less_often_up_to_a_cap() -> None:
    waits = [stop_again_after(n) for n in range(1, 8)]
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert max(waits) == stop_again_after(100)


# -- the rules -------------------------------------------------------------------------------


class Ray:
    """What ``JobRuns`` asked of Ray, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = False

    def submit(self, workload: WorkloadId, submission_id: str) -> None:
        self.calls.append(("submit", submission_id))
        if self.refuse:
            raise RuntimeError("No available agent to submit job")

    def stop(self, submission_id: str) -> None:
        self.calls.append(("stop", submission_id))


@pytest.fixture
def ray() -> Ray:
    return Ray()


@pytest.fixture
def runs(ray: Ray) -> JobRuns:
    return JobRuns(submit=ray.submit, stop=ray.stop)


def test_a_readmitted_jobs_next_run_waits_until_ray_lists_the_last_one_ended(
    ray: Ray, runs: JobRuns
) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    runs.observe({"rq-w-1": "RUNNING"}, {}, 1.0)
    runs.release(W, 2.0)  # preempted
    runs.admit(W, "rq-w-2", 2.0)  # and admitted again at once
    assert ray.calls == [("submit", "rq-w-1"), ("stop", "rq-w-1")]
    assert runs.why_not_running(W) == "waiting for Ray job rq-w-1 to stop"
    runs.observe({"rq-w-1": "RUNNING"}, {}, 3.0)
    assert ("submit", "rq-w-2") not in ray.calls
    assert runs.states() == {"rq-w-1": R.STOPPING, "rq-w-2": R.WAITING}
    runs.observe({"rq-w-1": "STOPPED"}, {}, 4.0)
    assert ray.calls[-1] == ("submit", "rq-w-2")
    assert runs.states() == {"rq-w-2": R.SUBMITTING}
    assert runs.why_not_running(W) == "Ray job rq-w-2 is not running yet"


def test_a_stop_while_the_submission_is_on_its_way_is_carried_to_its_end(
    ray: Ray, runs: JobRuns
) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    runs.release(W, 0.5)  # cancelled: the desk drops the submission or stops it once sent
    assert runs.states() == {"rq-w-1": R.RECALLING}
    assert not runs.live("rq-w-1")
    # Ray lists it going after all: it is stopped again, as its stop may have been lost.
    runs.observe({"rq-w-1": "PENDING"}, {}, 1.0)
    runs.observe({"rq-w-1": "RUNNING"}, {}, 3.0)
    assert ray.calls.count(("stop", "rq-w-1")) == 2
    runs.observe({"rq-w-1": "STOPPED"}, {}, 4.0)
    assert not runs.busy()


def test_a_submission_dropped_after_its_stop_ends_the_run(ray: Ray, runs: JobRuns) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    runs.release(W, 0.5)
    runs.observe({}, {"rq-w-1": DROPPED}, 1.0)
    assert not runs.busy() and ray.calls.count(("submit", "rq-w-1")) == 1


def test_a_recalled_run_never_listed_is_forgotten_after_a_while(ray: Ray, runs: JobRuns) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    runs.release(W, 0.0)
    runs.observe({}, {}, UNSEEN_AFTER_S / 2)
    assert runs.busy()
    runs.observe({}, {}, UNSEEN_AFTER_S + 1)
    assert not runs.busy()


def test_a_run_listed_going_after_its_stop_is_asked_again_at_growing_intervals(
    ray: Ray, runs: JobRuns
) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    runs.observe({"rq-w-1": "PENDING"}, {}, 0.0)
    runs.release(W, 0.0)
    asked: list[float] = []
    for t in range(0, 61):
        before = len(ray.calls)
        runs.observe({"rq-w-1": "PENDING"}, {}, float(t))
        if len(ray.calls) > before:
            asked.append(float(t))
    # The first ask came with the release; each later one after a longer wait.
    gaps = [b - a for a, b in zip([0.0, *asked], asked, strict=False)]
    assert len(asked) >= 3 and gaps == sorted(gaps) and gaps[0] < gaps[-1]


def test_a_run_ray_lists_going_for_no_admission_is_stopped(ray: Ray, runs: JobRuns) -> None:
    runs.observe({"rq-gone-3": "RUNNING", "rq-old-1": "SUCCEEDED"}, {}, 0.0)
    assert ray.calls == [("stop", "rq-gone-3")]
    runs.observe({"rq-gone-3": "STOPPED", "rq-old-1": "SUCCEEDED"}, {}, 1.0)
    assert not runs.busy()


def test_recovery_stops_an_earlier_run_first_and_then_submits_the_current_one(
    ray: Ray, runs: JobRuns
) -> None:
    runs.adopt(
        {"rq-w-1": "RUNNING", "rq-v-1": "RUNNING"}, {W: "rq-w-2", WorkloadId("v"): "rq-v-1"}, 0.0
    )
    assert ray.calls == [("stop", "rq-w-1")]
    assert runs.states()["rq-w-2"] is R.WAITING and runs.states()["rq-v-1"] is R.LISTED
    seen = runs.observe({"rq-w-1": "STOPPED", "rq-v-1": "RUNNING"}, {}, 1.0)
    assert ray.calls[-1] == ("submit", "rq-w-2") and seen.running == (WorkloadId("v"),)


def test_a_refused_submission_is_sent_again_next_pass_then_given_up(
    ray: Ray, runs: JobRuns
) -> None:
    ray.refuse = True
    runs.admit(W, "rq-w-1", 0.0)
    assert runs.states() == {"rq-w-1": R.UNSENT}
    for t in range(1, SUBMIT_ATTEMPTS):
        assert runs.observe({}, {}, float(t)).refused == ()
    seen = runs.observe({}, {}, 100.0)
    assert seen.refused and "refused the job 30 times" in seen.refused[0][1]
    assert ray.calls.count(("submit", "rq-w-1")) == SUBMIT_ATTEMPTS
    runs.release(W, 101.0)
    runs.observe({}, {}, 102.0)
    assert not runs.busy()


def test_a_run_that_ends_by_itself_is_reported_once_and_not_stopped(
    ray: Ray, runs: JobRuns
) -> None:
    runs.admit(W, "rq-w-1", 0.0)
    assert runs.observe({"rq-w-1": "RUNNING"}, {}, 1.0).running == (W,)
    seen = runs.observe({"rq-w-1": "FAILED"}, {}, 2.0)
    assert seen.ended == ((W, "rq-w-1", "FAILED"),)
    runs.release(W, 2.0)
    assert runs.observe({"rq-w-1": "FAILED"}, {}, 3.0).ended == ()
    assert ("stop", "rq-w-1") not in ray.calls and not runs.busy()


# -- the desk --------------------------------------------------------------------------------


class SlowServer:
    """A job server whose submissions hang until released (Ray's job agent when slow)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []

    def submit_job(self, *, submission_id: str, **_: Any) -> None:
        with self.lock:
            self.calls.append(("submit", submission_id))
        self.entered.set()
        assert self.release.wait(30)

    def stop_job(self, submission_id: str) -> bool:
        with self.lock:
            self.calls.append(("stop", submission_id))
        return True

    def list_jobs(self) -> list[object]:
        return []


@pytest.fixture
def slow() -> Iterator[SlowServer]:
    server = SlowServer()
    yield server
    server.release.set()


def test_a_stop_does_not_wait_behind_a_hung_submission(slow: SlowServer) -> None:
    desk = JobDesk(lambda: slow)
    desk.submit("rq-a-1", {"entrypoint": "true"})
    assert slow.entered.wait(30)
    desk.stop("rq-b-1")
    wait_for(lambda: ("stop", "rq-b-1") in slow.calls, 30)
    assert not slow.release.is_set()


def test_a_stop_of_a_queued_submission_drops_it_and_one_in_flight_is_stopped_once_sent(
    slow: SlowServer,
) -> None:
    desk = JobDesk(lambda: slow)
    desk.submit("rq-a-1", {"entrypoint": "true"})  # in flight, hung
    assert slow.entered.wait(30)
    desk.submit("rq-b-1", {"entrypoint": "true"})  # queued behind it
    desk.stop("rq-b-1")
    desk.stop("rq-a-1")
    wait_for(lambda: ("stop", "rq-a-1") in slow.calls, 30)  # at once, maybe too early
    slow.release.set()
    wait_for(lambda: slow.calls.count(("stop", "rq-a-1")) == 2, 30)  # and again once sent
    failures: dict[str, str] = {}
    wait_for(lambda: failures.update(desk.failures()) or failures, 30)
    assert failures == {"rq-b-1": DROPPED}
    assert ("submit", "rq-b-1") not in slow.calls and ("stop", "rq-b-1") not in slow.calls


def test_a_stop_asked_again_of_a_run_ray_has_pending_kills_its_supervisor() -> None:
    class Server:
        """Ray's job server with one job PENDING for good (its supervisor actor waits
        for resources) and one RUNNING; a stop changes neither, as Ray's does not."""

        def stop_job(self, submission_id: str) -> bool:
            return True

        def get_job_status(self, submission_id: str) -> str:
            return {"rq-p-1": "PENDING", "rq-r-1": "RUNNING"}[submission_id]

        def list_jobs(self) -> list[object]:
            return []

    killed: list[str] = []
    desk = JobDesk(Server, kill=lambda sid: killed.append(sid) is None)
    desk.stop("rq-p-1")
    desk.stop("rq-r-1")
    desk.stop("rq-r-1")
    desk.stop("rq-p-1")
    wait_for(lambda: killed, 30)
    desk.stop("rq-p-1")  # a marker behind the stops above on the stop lane
    wait_for(lambda: len(killed) == 2, 30)
    assert killed == ["rq-p-1", "rq-p-1"]  # never the running one, never at the first stop


# -- the manager: readmission and recovery ---------------------------------------------------


def test_a_restarted_manager_stops_the_old_run_before_submitting_the_readmitted_one() -> None:
    from ray_queue.engine.clock import ManualClock
    from ray_queue.engine.model import WorkloadKind, WorkloadState
    from ray_queue.manager.core import ManagerCore
    from ray_queue.store.base import MemoryStore
    from tests.manager.configs import teams_config
    from tests.manager.fakes import RecordingActions
    from tests.manager.test_core import req

    actions, store, clock = RecordingActions(), MemoryStore(), ManualClock()
    config = lambda: teams_config(cpu=4, gpu=2)  # noqa: E731
    core = ManagerCore.recover(store, actions, clock, default_config=config)
    payload = {"entrypoint": "python train.py"}
    # team-b's quota in use, so that team-a's high-priority work preempts instead of borrowing.
    core.submit_many([req("b", queue="team-b", gpu=2, priority="high")])
    core.submit_many([req("j1", gpu=2, kind=WorkloadKind.JOB, payload=payload)])
    core.job_states({"rq-j1-1": "RUNNING"})
    # Preempted, then admitted again once the preemptor is gone; Ray keeps the first run
    # going (its driver ignores SIGTERM for a while).
    core.submit_many([req("hi", gpu=2, priority="high")])
    actions.job_state["rq-j1-1"] = "RUNNING"
    core.cancel([WorkloadId("hi")])
    core.tick()
    assert core.workload(WorkloadId("j1")).state is WorkloadState.ADMITTED
    assert ("submit_job", "rq-j1-2") not in actions.calls
    assert "waiting for Ray job rq-j1-1 to stop" in core.workload(WorkloadId("j1")).message
    # The manager is killed here and recovers from its store and Ray's job list.
    actions.calls.clear()
    again = ManagerCore.recover(store, actions, clock, default_config=config)
    assert actions.calls == [("stop_job", "rq-j1-1")]
    actions.job_state["rq-j1-1"] = "RUNNING"  # still dying
    again.job_states(actions.jobs())
    assert ("submit_job", "rq-j1-2") not in actions.calls
    actions.job_state["rq-j1-1"] = "STOPPED"
    again.job_states(actions.jobs())
    assert actions.calls[-1] == ("submit_job", "rq-j1-2")
    again.job_states(actions.jobs())
    assert again.live_job("rq-j1-2") == ("team-a", "j1")
