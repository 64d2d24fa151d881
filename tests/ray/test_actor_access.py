"""The manager actor is authorised like the gRPC API, on a real Ray cluster.

The attack this closes: a tenant's job gets the manager actor by name and calls it
directly — cancelling another tenant's workload, changing quotas — as nothing checked
who called. With tokens configured every call now carries a credential: a tenant's own
token, or the credential the manager puts in the runtime_env of a job it submitted,
scoped to that job's Queue while it runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.job_submission import JobSubmissionClient

import ray_queue
from ray_queue.engine.model import BundleGroup, WorkloadId
from ray_queue.engine.model import WorkloadState as S
from ray_queue.manager.handle import ManagerHandle
from ray_queue.wire import SubmitRequest
from tests.manager.configs import teams_config
from tests.ray.harness import live_pgs, token_manager_session, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ADMIN = "admin-secret-5d1c"
TEAM_A = "team-a-secret-88e2"
TEAM_B = "team-b-secret-0f37"
TOKENS = f"""
tokens:
  - {{token: {ADMIN}, role: admin}}
  - {{token: {TEAM_A}, role: tenant, queues: [team-a], name: team-a}}
  - {{token: {TEAM_B}, role: tenant, queues: [team-b], name: team-b}}
"""

#: A team-a job turned against team-b: every way in it tries, and what happened.
ATTACK = """\
import json, os, sys
import ray, ray_queue
from ray_queue.engine.config import QueueConfig
from ray_queue.manager.actor import find_manager

victim = sys.argv[1]
seen = {"job_credential_given": os.environ.get("RAY_QUEUE_TOKEN", "").startswith("rqjob:")}
ray.init(address="auto")
actor = find_manager()
for name, call in [
    ("raw_cancel", lambda: actor.cancel.remote([victim], "attack")),
    ("raw_config", lambda: actor.get_config.remote()),
]:
    try:
        ray.get(call())
        seen[name] = "allowed"
    except ray_queue.UnauthenticatedError:
        seen[name] = "UnauthenticatedError"
ray_queue.init(queue="team-a")
seen["credential"] = os.environ.get("RAY_QUEUE_TOKEN", "")
seen["cancel_victim"] = ray_queue.cancel(victim)
try:
    ray_queue.status(victim)
    seen["read_victim"] = "allowed"
except ray_queue.RayQueueError as e:
    seen["read_victim"] = type(e).__name__
try:
    ray_queue.apply_config(QueueConfig())  # would drop every quota
    seen["apply_config"] = "allowed"
except ray_queue.RayQueueError as e:
    seen["apply_config"] = type(e).__name__
own = ray_queue.placement_group([{"CPU": 0.1}], queue="team-a")
seen["own_work"] = own.wait(timeout_seconds=60)
own.remove()
print("SEEN " + json.dumps(seen))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from token_manager_session(tmp_path_factory.mktemp("actor-access"), TOKENS)


def _as(token: str | None) -> Any:
    from ray_queue.manager.actor import find_manager

    return ManagerHandle(find_manager(), token)


def test_no_token_or_a_wrong_one_is_refused(cluster: Cluster) -> None:
    for token in (None, "not-a-token-at-all"):
        with pytest.raises(ray_queue.UnauthenticatedError, match="RAY_QUEUE_TOKEN"):
            ray.get(_as(token).status.remote())
    with pytest.raises(ray_queue.UnauthenticatedError):
        ray_queue.init(queue="team-a")


def test_a_tenant_uses_its_own_queue_and_cannot_touch_others(cluster: Cluster) -> None:
    team_b = _as(TEAM_B)
    ray_queue.init(queue="team-b", token=TEAM_B)
    victim = ray_queue.placement_group([{"CPU": 0.5}], queue="team-b", name="b-work")
    assert victim.wait(timeout_seconds=60)

    ray_queue.init(queue="team-a", token=TEAM_A)
    mine = ray_queue.placement_group([{"CPU": 0.5}], queue="team-a")
    assert mine.wait(timeout_seconds=60)
    with pytest.raises(ray_queue.UnknownQueueError, match="this token may not use it"):
        ray_queue.placement_group([{"CPU": 0.1}], queue="team-b")
    # Past the driver's own check, the manager refuses it too.
    refused = ray.get(_as(TEAM_A).submit_many.remote([_request("team-b")]))
    assert isinstance(refused[0].error, ray_queue.PermissionDeniedError)
    assert ray_queue.cancel(victim.workload) == [False]
    with pytest.raises(ray_queue.UnknownWorkloadError):
        ray_queue.status(victim.workload)
    with pytest.raises(ray_queue.PermissionDeniedError, match="admin"):
        ray_queue.apply_config(teams_config(cpu=100, gpu=100))
    team_a = _as(TEAM_A)
    ray.get(team_a.report.remote(finished=[(victim.workload, False, "forged")]))
    assert [c.name for c in ray_queue.status().cluster_queues] == ["cq-a"]
    assert all(p.queue == "team-a" for p in ray_queue.pending())

    after = ray.get(team_b.workload.remote(victim.workload))
    assert after.state is S.ADMITTED, after
    config = ray.get(_as(ADMIN).get_config.remote())
    assert config == teams_config(cpu=2, gpu=2)
    mine.remove()
    ray.get(team_b.cancel.remote([victim.workload]))
    wait_for(lambda: not live_pgs(), 30)


def test_a_queued_job_gets_a_credential_for_its_own_queue_only(
    cluster: Cluster, tmp_path: Path
) -> None:
    ray_queue.init(queue="team-b", token=TEAM_B)
    victim = ray_queue.placement_group([{"CPU": 0.5}], queue="team-b")
    assert victim.wait(timeout_seconds=60)
    script = tmp_path / "attack.py"
    script.write_text(ATTACK)

    ray_queue.init(queue="team-a", token=TEAM_A)
    job = ray_queue.submit_job(
        f"{sys.executable} {script} {victim.workload}", queue="team-a", entrypoint_num_cpus=0.5
    )
    status = job.wait(timeout_s=180)
    logs = JobSubmissionClient(_dashboard()).get_job_logs(job.submission_id())
    assert status.state is S.FINISHED, (status, logs)
    seen = json.loads(next(line for line in logs.splitlines() if line.startswith("SEEN "))[5:])

    assert seen["job_credential_given"]
    assert seen["raw_cancel"] == seen["raw_config"] == "UnauthenticatedError"
    assert seen["cancel_victim"] == [False]
    assert seen["read_victim"] == "UnknownWorkloadError"
    assert seen["apply_config"] == "PermissionDeniedError"
    assert seen["own_work"] is True
    # Neither the submitter's token nor the admin's went into the job.
    assert seen["credential"] and seen["credential"] not in (TEAM_A, ADMIN)
    assert TEAM_A not in logs and ADMIN not in logs
    # The credential died with its job.
    with pytest.raises(ray_queue.UnauthenticatedError, match="no longer running"):
        ray.get(_as(seen["credential"]).status.remote())
    assert victim.status().state is S.ADMITTED
    victim.remove()


def _request(queue: str) -> SubmitRequest:
    return SubmitRequest(
        id=WorkloadId(f"forged-{queue}"),
        queue=queue,
        bundle_groups=(BundleGroup({"CPU": 100}, 1),),
    )


def _dashboard() -> str:
    from ray_queue.ray_adapter.actions import _published_dashboard_address

    address = _published_dashboard_address()
    assert address
    return address if address.startswith("http") else f"http://{address}"
