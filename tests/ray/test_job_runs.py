"""A JOB workload's Ray job runs on a real cluster, read from Ray's job list as the soak's
observer reads it (issue 23): a run cancelled while its submission is on its way ends, and
a readmitted job's next run is not submitted before Ray lists the last one ended.

One cluster for the module: a head (2 CPUs) and two workers with 2 CPUs and 2 logical
A100 GPUs each, under ``teams_config`` (team-a and team-b 2 GPUs each, in one cohort).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.job_submission import JobSubmissionClient

import ray_queue
from ray_queue.engine.model import WorkloadState
from tests.manager.configs import teams_config
from tests.ray.harness import cancel_everything, cluster_session, state_of, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

S = WorkloadState
GOING = ("PENDING", "RUNNING")
#: A driver that ignores SIGTERM, so Ray stops it only with SIGKILL after
#: ``RAY_JOB_STOP_WAIT_TIME_S``: a run that stays listed RUNNING for seconds after its stop.
STUBBORN = (
    'python -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
    'time.sleep(300)"'
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from cluster_session(str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def teams(cluster: Cluster) -> Iterator[None]:
    ray_queue.apply_config(teams_config(cpu=4, gpu=2))
    yield
    cancel_everything()


@pytest.fixture(scope="module")
def jobs(cluster: Cluster) -> JobSubmissionClient:
    return JobSubmissionClient(f"http://{ray._private.worker._global_node.webui_url}")


def state_of_run(jobs: JobSubmissionClient, submission_id: str) -> str:
    """Ray's state of a run, ``MISSING`` if Ray does not have it."""
    try:
        return str(jobs.get_job_status(submission_id).value)
    except RuntimeError:
        return "MISSING"


def runs_of(jobs: JobSubmissionClient, workload: str) -> dict[str, Any]:
    """Ray's job records of the workload's runs, by submission id."""
    prefix = f"rq-{workload}-"
    return {
        j.submission_id: j
        for j in jobs.list_jobs()
        if j.submission_id and j.submission_id.startswith(prefix)
    }


def test_a_job_cancelled_while_its_submission_is_on_its_way_leaves_no_run_going(
    teams: None, jobs: JobSubmissionClient
) -> None:
    # Cancelled the moment each is admitted: some submissions are still queued in the
    # manager's job desk, some in flight to Ray, some just PENDING there.
    handles = []
    for _ in range(4):
        job = ray_queue.submit_job("sleep 300", queue="team-a", entrypoint_num_cpus=0.5)
        wait_for(job.submission_id, 30, 0.01)
        job.cancel()
        handles.append(job)
    # A later submission through the same desk, listed by Ray: every earlier one has been
    # sent or dropped by then (the desk submits in order).
    sentinel = ray_queue.submit_job("true", queue="team-b", entrypoint_num_cpus=0.5)
    assert sentinel.wait(timeout_s=120).state is S.FINISHED
    for job in handles:
        assert job.status().state is S.CANCELLED
        # Its one run ended in Ray, or never reached it; none is left going.
        wait_for(
            lambda w=job.workload: all(
                str(j.status.value) not in GOING for j in runs_of(jobs, w).values()
            ),
            60,
            0.5,
        )
        assert set(runs_of(jobs, job.workload)) <= {f"rq-{job.workload}-1"}


def test_a_readmitted_jobs_next_run_waits_for_ray_to_list_the_last_one_ended(
    teams: None, jobs: JobSubmissionClient
) -> None:
    blocker = ray_queue.placement_group([{"GPU": 2}], queue="team-b", priority="high")
    assert blocker.wait(timeout_seconds=30)
    job = ray_queue.submit_job(
        STUBBORN,
        queue="team-a",
        priority="low",
        entrypoint_num_gpus=2,
        runtime_env={"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "8"}},
    )
    first, second = f"rq-{job.workload}-1", f"rq-{job.workload}-2"
    wait_for(lambda: state_of_run(jobs, first) == "RUNNING", 90, 0.5)

    # Preempted, then admitted again at once: its first run is still dying (8 s).
    high = ray_queue.placement_group([{"GPU": 2}], queue="team-a", priority="high")
    wait_for(lambda: job.status().state is S.PENDING, 30)
    high.remove()
    wait_for(lambda: job.status().state is S.ADMITTED, 30)
    said = wait_for(lambda: job.status().message if "waiting for" in job.status().message else "")
    assert f"not placed: waiting for Ray job {first} to stop" in said
    assert state_of_run(jobs, first) in GOING and state_of_run(jobs, second) == "MISSING"

    # The second run is submitted once Ray lists the first ended, never before.
    wait_for(lambda: second in runs_of(jobs, job.workload), 90, 0.5)
    runs = runs_of(jobs, job.workload)
    assert str(runs[first].status.value) == "STOPPED"
    assert runs[first].end_time <= runs[second].start_time
    job.cancel()
    blocker.remove()
    wait_for(lambda: state_of_run(jobs, second) not in GOING, 60, 0.5)
    assert state_of(job.workload) is S.CANCELLED


def test_a_job_cancelled_while_ray_has_it_pending_for_resources_ends(
    teams: None, jobs: JobSubmissionClient
) -> None:
    # Every GPU taken outside the queue: the run's supervisor actor waits for them, and
    # Ray runs a stop only once the supervisor is up (for good here: Ray fails a PENDING
    # job only after 15 minutes).
    taken = ray.util.placement_group([{"GPU": 2}, {"GPU": 2}], strategy="SPREAD")
    assert taken.wait(timeout_seconds=60)
    try:
        job = ray_queue.submit_job("true", queue="team-a", entrypoint_num_gpus=2)
        run = f"rq-{job.workload}-1"
        wait_for(lambda: state_of_run(jobs, run) == "PENDING", 60, 0.5)
        job.cancel()
        wait_for(lambda: state_of_run(jobs, run) not in GOING, 60, 0.5)
        assert state_of(job.workload) is S.CANCELLED
    finally:
        ray.util.remove_placement_group(taken)
