"""Jobs own their work, on a real Ray cluster: a queued job's driver runs captured in the
job's queue, what it makes are the job's children, ``max_resources`` caps them, and
cancelling the job removes their groups.

One cluster for the module: a head (2 CPUs) and one worker with 4 CPUs and 4 logical A100
GPUs; team-a's ClusterQueue holds 8 CPUs and 4 GPUs. The entrypoints are plain Ray
scripts (no ray_queue import): the manager's capture variables and the ``.pth`` start-up
line (installed by the ``pth_installed`` fixture) put them under the queue.
"""

from __future__ import annotations

import shlex
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util import placement_group_table

import ray_queue
from ray_queue.capture import __main__ as capture_cli
from ray_queue.engine.config import Queue, QueueConfig, ResourceFlavor
from ray_queue.engine.model import WorkloadState, to_milli
from ray_queue.ray_adapter.actions import PG_PREFIX
from tests.manager.configs import A100, cq
from tests.ray.harness import cancel_everything, cluster_session, manager, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

S = WorkloadState

#: Makes the groups given as JSON in argv[1] (one list of bundles each), says when each
#: is ready, removes the first once the file argv[2] exists, and waits for the rest.
ENTRYPOINT = """
    import json, os, sys, time
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    ray.init()
    groups = [placement_group(bundles) for bundles in json.loads(sys.argv[1])]
    ray.get(groups[0].ready())
    print("first ready", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.1)
    remove_placement_group(groups[0])
    for group in groups[1:]:
        ray.get(group.ready())
    print("all ready", flush=True)
    while not os.path.exists(sys.argv[2] + ".end"):
        time.sleep(0.1)
"""


def config() -> QueueConfig:
    return QueueConfig(
        flavors={"a100": ResourceFlavor("a100", A100)},
        cluster_queues={"cq-a": cq("cq-a", cpu=8, gpu=4)},
        queues={"team-a": Queue("team-a", "cq-a")},
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    capture_cli.install()  # the start-up line, as a user installs it
    yield from cluster_session(str(tmp_path_factory.mktemp("state")), gpu_workers=1, gpus=4, cpus=4)


@pytest.fixture
def team(cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    ray_queue.apply_config(config())
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent(ENTRYPOINT), encoding="utf-8")
    yield tmp_path
    for signal in tmp_path.glob("go*"):
        signal.with_name(signal.name + ".end").touch()
    cancel_everything()


def entrypoint(directory: Path, groups: list[list[dict[str, float]]]) -> str:
    import json

    return " ".join(
        shlex.quote(part)
        for part in (
            sys.executable,
            str(directory / "entry.py"),
            json.dumps(groups),
            str(directory / "go"),
        )
    )


def until(job: Any, predicate: Any, timeout_s: float) -> None:
    """``wait_for``, failing with the job's Ray logs (what its driver said)."""
    try:
        wait_for(predicate, timeout_s)
    except AssertionError as e:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(f"http://{ray._private.worker._global_node.webui_url}")
        submission = job.submission_id()
        logs = client.get_job_logs(submission) if submission else "(not submitted)"
        raise AssertionError(f"{e}; {job.status().message}; its logs:\n{logs[-3000:]}") from e


def children(job: str) -> list[Any]:
    statuses = ray.get(manager().workloads.remote())
    return sorted((s for s in statuses if s.spec.parent == job), key=lambda s: s.spec.created_at)


def gpus_held(cluster_queue: str = "cq-a") -> int:
    [entry] = [c for c in ray_queue.status().cluster_queues if c.name == cluster_queue]
    return sum(r.usage for r in entry.resources if r.resource == "GPU")


def group_states(workloads: list[str]) -> dict[str, str]:
    """Ray's state of each workload's group, from Ray's own placement group table."""
    table = placement_group_table().values()
    return {
        info["name"][len(PG_PREFIX) :]: info["state"]
        for info in table
        if info.get("name", "")[len(PG_PREFIX) :] in workloads
    }


def test_a_job_is_charged_for_the_group_its_entrypoint_makes_and_cancelling_it_removes_it(
    team: Path,
) -> None:
    job = ray_queue.submit_job(
        entrypoint(team, [[{"GPU": 1}] * 4]), queue="team-a", entrypoint_num_cpus=1
    )
    until(job, lambda: [c.state for c in children(job.workload)] == [S.ADMITTED], 120)
    [group] = children(job.workload)
    assert [c.spec.id for c in job.children()] == [group.spec.id]
    assert group.spec.queue == "team-a"
    assert group.admission.usage == {("a100", "GPU"): to_milli(4)}
    wait_for(lambda: gpus_held() == to_milli(4), 30)
    [family] = [f for f in ray_queue.status().jobs if f.job == job.workload]
    assert [c.workload for c in family.children] == [group.spec.id]
    assert family.holding == {"CPU": to_milli(1), "GPU": to_milli(4)}
    assert f"Job {job.workload}" in str(ray_queue.status())
    wait_for(lambda: group_states([group.spec.id]) == {group.spec.id: "CREATED"}, 60)

    job.cancel()
    assert ray.get(manager().workload.remote(group.spec.id)).state is S.CANCELLED
    assert "its job" in ray.get(manager().workload.remote(group.spec.id)).message
    wait_for(lambda: group_states([group.spec.id]) == {group.spec.id: "REMOVED"}, 30)
    wait_for(lambda: gpus_held() == 0, 30)


def test_max_resources_holds_a_jobs_children_to_the_cap(team: Path) -> None:
    job = ray_queue.submit_job(
        entrypoint(team, [[{"GPU": 2}], [{"GPU": 2}]]),
        queue="team-a",
        entrypoint_num_cpus=1,
        max_resources={"GPU": 2},
    )
    until(job, lambda: len(children(job.workload)) == 2, 120)
    first, second = children(job.workload)
    wait_for(lambda: ray.get(manager().workload.remote(first.spec.id)).state is S.ADMITTED, 60)
    # The queue has 4 GPUs, so only the cap holds the second group back.
    waiting = ray.get(manager().workload.remote(second.spec.id))
    assert waiting.state is S.PENDING
    assert "max_resources caps GPU at 2" in waiting.message
    assert gpus_held() == to_milli(2)

    (team / "go").touch()  # the entrypoint removes its first group
    wait_for(lambda: ray.get(manager().workload.remote(second.spec.id)).state is S.ADMITTED, 60)
    assert ray.get(manager().workload.remote(first.spec.id)).state is S.FINISHED
    assert gpus_held() <= to_milli(2)
    (team / "go.end").touch()
    assert job.wait(120).state is S.FINISHED


def test_bad_caps_are_refused_at_submission_with_what_to_do(team: Path) -> None:
    with pytest.raises(ray_queue.InvalidWorkloadError, match="below what its entrypoint"):
        ray_queue.submit_job(
            "true", queue="team-a", entrypoint_num_gpus=2, max_resources={"GPU": 1}
        )
    with pytest.raises(ray_queue.InvalidWorkloadError, match="does not cover"):
        ray_queue.submit_job("true", queue="team-a", max_resources={"TPU": 1})
    # Nothing of either was queued.
    assert not [
        s
        for s in ray.get(manager().workloads.remote())
        if s.spec.kind.value == "job" and not s.state.is_terminal
    ]
