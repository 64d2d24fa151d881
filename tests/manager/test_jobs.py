"""The manager's side of Ray jobs: the credential in a job's env, background submission
failures counted and retried, and the job server kept off the manager's loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState
from ray_queue.manager.core import ManagerCore
from ray_queue.ray_adapter.job_desk import JobDesk, brief
from ray_queue.store.base import MemoryStore
from tests.manager.configs import teams_config
from tests.manager.fakes import RecordingActions
from tests.manager.test_core import req
from tests.ray.harness import wait_for

pytestmark = pytest.mark.timeout(60)

PAYLOAD = {"entrypoint": "python train.py", "runtime_env": {"env_vars": {"MINE": "1"}}}


def _core(actions: RecordingActions) -> ManagerCore:
    return ManagerCore(
        Engine(teams_config(cpu=4, gpu=2), ManualClock()),
        MemoryStore(),
        actions,
        ManualClock(),
        job_env=lambda submission_id: {"RAY_QUEUE_TOKEN": f"credential-of-{submission_id}"},
    )


def _submit_job(core: ManagerCore, wid: str = "j1") -> str:
    core.submit_many([req(wid, cpu=1, gpu=0, kind=WorkloadKind.JOB, payload=PAYLOAD)])
    assert core.workload(WorkloadId(wid)).state is WorkloadState.ADMITTED
    return f"rq-{wid}-1"


def test_a_job_gets_its_credential_beside_its_own_env_and_its_queue_while_live() -> None:
    actions = RecordingActions()
    core = _core(actions)
    sid = _submit_job(core)
    env = actions.job_payloads[sid]["runtime_env"]["env_vars"]
    assert env == {"MINE": "1", "RAY_QUEUE_TOKEN": f"credential-of-{sid}"}
    assert core.live_job(sid) == ("team-a", "j1")
    assert core.live_job("rq-j1-2") is None and core.live_job("nonsense") is None
    core.job_states({sid: "SUCCEEDED"})
    assert core.live_job(sid) is None


def test_a_namespaced_jobs_submission_id_is_one_path_segment_that_reads_back() -> None:
    # The id names Ray's log file and a URL path segment: no '/' may reach it.
    actions = RecordingActions()
    core = _core(actions)
    core.submit_many([req("team-a/j2", cpu=1, gpu=0, kind=WorkloadKind.JOB, payload=PAYLOAD)])
    (sid,) = actions.job_payloads
    assert sid == "rq-team-a~j2-1" and "/" not in sid
    assert core.live_job(sid) == ("team-a", "team-a/j2")


def test_background_submission_failures_are_retried_then_fail_the_job() -> None:
    actions = RecordingActions()
    core = _core(actions)
    sid = _submit_job(core)
    del actions.job_state[sid]  # as if the background submission never got through
    core.job_states({}, {sid: "No available agent to submit job"})
    core.job_states({})  # not listed, one failure so far: submitted again
    assert actions.calls.count(("submit_job", sid)) == 2
    assert core.workload(WorkloadId("j1")).state is WorkloadState.ADMITTED
    for _ in range(40):
        core.job_states({}, {sid: "No available agent to submit job"})
    status = core.workload(WorkloadId("j1"))
    assert status.state is WorkloadState.FAILED
    assert "Ray refused the job" in status.message and "No available agent" in status.message


def test_a_run_that_appears_after_its_stop_is_stopped_again() -> None:
    """Found by the soak at load ~56: the workload was cancelled while its submission was
    still in flight, Ray answered the stop with "does not exist", then started the run;
    it ran with no workload holding its quota (the observer's job_outlives_workload)."""
    actions = RecordingActions()
    clock = ManualClock()
    core = ManagerCore(Engine(teams_config(cpu=4, gpu=2), clock), MemoryStore(), actions, clock)
    sid = _submit_job(core)
    del actions.job_state[sid]  # the submission has not reached Ray yet
    core.cancel([WorkloadId("j1")], message="done with it")
    assert actions.calls.count(("stop_job", sid)) == 1  # a stop of nothing: lost
    actions.job_state[sid] = "RUNNING"  # the submission lands after all
    core.job_states(actions.jobs())
    assert actions.job_state[sid] == "RUNNING"  # asked a moment ago: not yet again
    clock.advance(11)
    assert core.has_jobs()  # the slow tick keeps reading Ray's jobs for it
    core.job_states(actions.jobs())
    assert actions.job_state[sid] == "STOPPED"
    core.job_states(actions.jobs())
    assert not core.has_jobs() and actions.calls.count(("stop_job", sid)) == 2


def test_a_listed_job_is_not_submitted_again() -> None:
    actions = RecordingActions()
    core = _core(actions)
    sid = _submit_job(core)
    core.job_states({}, {sid: "timed out"})
    core.job_states({sid: "PENDING"})
    core.job_states({})
    assert actions.calls.count(("submit_job", sid)) == 1


@pytest.fixture
def black_hole() -> Iterator[tuple[str, threading.Event]]:
    """A real TCP server that accepts connections and never answers: Ray's job server
    when its agent hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            connected.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", connected
    server.close()
    for conn in held:
        conn.close()


def test_a_hung_job_server_does_not_hold_up_the_caller(
    black_hole: tuple[str, threading.Event],
) -> None:
    url, connected = black_hole

    def connect() -> object:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(url)

    desk = JobDesk(connect)
    desk.submit("rq-j1-1", {"entrypoint": "true"})
    desk.stop("rq-j0-1")
    # Both returned although the server has not answered (and never will).
    assert connected.wait(30)
    assert desk.failures() == {}


def test_the_desk_reports_failed_submissions_once() -> None:
    class Refusing:
        """A fake job server that refuses every submission, as Ray's does while its job
        agent is down ("No available agent")."""

        def submit_job(self, **_: object) -> None:
            raise RuntimeError("No available agent to submit job, please try again later.")

        def list_jobs(self) -> list[object]:
            return []

    desk = JobDesk(Refusing)
    desk.submit("rq-j1-1", {"entrypoint": "true"})
    assert desk.listing() == {}  # the first listing runs in the caller, after the submit
    seen: dict[str, str] = {}
    wait_for(lambda: seen.update(desk.failures()) or seen, 30)
    assert "No available agent" in seen["rq-j1-1"]
    assert desk.failures() == {}


def test_a_failed_job_ends_with_rays_own_message() -> None:
    actions = RecordingActions()
    core = _core(actions)
    sid = _submit_job(core)
    core.job_states({sid: "RUNNING"})
    said = "Job entrypoint command failed with exit code 1, last available logs: ValueError: lr"
    core.job_states({sid: "FAILED"}, messages={sid: said})
    status = core.workload(WorkloadId("j1"))
    assert status.state is WorkloadState.FAILED
    assert status.message.endswith(f"Ray job {sid} FAILED: {said}")


def test_rays_long_job_messages_keep_their_first_line_and_the_end_of_the_logs() -> None:
    logs = "\n".join(f"line {i}" for i in range(5_000)) + "\nValueError: the real error"
    message = "Job entrypoint command failed with exit code 1, last available logs:\n" + logs
    short = brief(message)
    assert len(short) <= 1_010
    assert short.startswith("Job entrypoint command failed with exit code 1")
    assert short.endswith("ValueError: the real error")
    assert brief("short") == "short"


def test_the_desk_keeps_rays_message_of_each_listed_job() -> None:
    class Listing:
        """A fake job server listing one failed job (Ray's JobDetails fields used)."""

        def list_jobs(self) -> list[object]:
            job = type("JobDetails", (), {})()
            job.submission_id, job.status, job.message = "rq-j1-1", "FAILED", "exit code 1"
            return [job]

    desk = JobDesk(Listing)
    assert desk.listing() == {"rq-j1-1": "FAILED"}
    assert desk.messages() == {"rq-j1-1": "exit code 1"}
