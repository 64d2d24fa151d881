"""Who may attach work to a job, through the manager actor with tokens on, on a real
cluster: the job's tenant may, another tenant may not (``PermissionDeniedError``), and a
parent that is not an admitted job is a typed error; what was attached ends with the job.

One cluster (a head and one GPU worker) and a manager with three tokens: admin, team-a
and team-b, each team with a Queue of its own (``teams_config``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

import ray_queue
from ray_queue.capture import __main__ as capture_cli
from ray_queue.engine.model import BundleGroup, WorkloadId
from ray_queue.engine.model import WorkloadState as S
from ray_queue.manager.actor import find_manager
from ray_queue.manager.handle import ManagerHandle
from ray_queue.wire import SubmitRequest
from tests.ray.harness import token_manager_session, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

TEAM_A = "team-a-secret-71c4"
TEAM_B = "team-b-secret-9a02"
TOKENS = f"""
tokens:
  - {{token: admin-secret-33e1, role: admin}}
  - {{token: {TEAM_A}, role: tenant, queues: [team-a], name: team-a}}
  - {{token: {TEAM_B}, role: tenant, queues: [team-b], name: team-b}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from token_manager_session(tmp_path_factory.mktemp("job-children-access"), TOKENS)


def _as(token: str) -> Any:
    return ManagerHandle(find_manager(), token)


def _child(workload: str, queue: str, parent: str) -> SubmitRequest:
    return SubmitRequest(
        id=WorkloadId(workload),
        queue=queue,
        bundle_groups=(BundleGroup({"CPU": 100}),),
        parent=WorkloadId(parent),
    )


def test_only_the_jobs_tenant_attaches_work_to_it(cluster: Cluster) -> None:
    ray_queue.init(queue="team-a", token=TEAM_A)
    job = ray_queue.submit_job(
        f"{sys.executable} -c 'import time; time.sleep(300)'",
        queue="team-a",
        entrypoint_num_cpus=0.5,
    )
    wait_for(lambda: job.status().state is S.ADMITTED, 60)

    [stolen] = ray.get(_as(TEAM_B).submit_many.remote([_child("b-1", "team-b", job.workload)]))
    assert isinstance(stolen.error, ray_queue.PermissionDeniedError), stolen
    assert f"may not attach work to job {job.workload}" in str(stolen.error)

    [orphan] = ray.get(_as(TEAM_A).submit_many.remote([_child("a-0", "team-a", "team-a/none")]))
    assert isinstance(orphan.error, ray_queue.InvalidWorkloadError), orphan
    assert "is not a live job" in str(orphan.error)

    [mine] = ray.get(_as(TEAM_A).submit_many.remote([_child("a-1", "team-a", job.workload)]))
    assert mine.error is None and mine.status is not None
    assert mine.status.spec.parent == job.workload
    child = mine.status.spec.id
    # Nothing of team-b's attempt was queued.
    assert [c.spec.id for c in job.children()] == [child]

    job.cancel()
    assert ray.get(_as(TEAM_A).workload.remote(child)).state is S.CANCELLED


#: A plain Ray script whose group is made in a Ray task (a worker of the job's run), as
#: Train's controller or Tune's trial actors make theirs.
IN_A_WORKER = (
    "import ray\n"
    "from ray.util.placement_group import placement_group, remove_placement_group\n"
    "ray.init()\n"
    "@ray.remote(num_cpus=0)\n"
    "def make():\n"
    "    group = placement_group([{'CPU': 0.25}])\n"
    "    placed = group.wait(120)\n"
    "    remove_placement_group(group)\n"
    "    return placed, type(group).__module__\n"
    "print('worker made', *ray.get(make.remote()))\n"
)


def test_a_queued_jobs_workers_queue_their_groups_as_its_children(
    cluster: Cluster, tmp_path: Path
) -> None:
    """With tokens on, the job's workers reach the manager with the job's own credential
    (its runtime_env carries it to them) and what they make is the job's."""
    capture_cli.install()  # the start-up line that captures the job's driver, as a user installs it
    ray_queue.init(queue="team-a", token=TEAM_A)
    script = tmp_path / "in_a_worker.py"
    script.write_text(IN_A_WORKER)
    job = ray_queue.submit_job(f"{sys.executable} {script}", queue="team-a")
    final = job.wait(timeout_s=240)
    assert final.state is S.FINISHED, final.message
    made = [
        s
        for s in ray.get(_as(TEAM_A).workloads.remote())
        if s.spec.parent == job.workload and s.spec.kind.value == "placement_group"
    ]
    assert len(made) == 1, made
    assert any(t.to_state is S.ADMITTED for t in made[0].history), made[0]
