"""A captured job's Ray workers call the manager with a credential of their own when the
manager has tokens: derived from the driver's token, for the captured Queue only, valid
while the job runs (access/worker_credentials.py, docs/security.md).

The pure checks run without Ray; the last test runs an unmodified driver (``.pth`` start-up
line, ``RAY_QUEUE_CAPTURE=1`` and a team-a token) whose task makes a placement group and a
GPU task inside a Ray worker, against a manager that checks tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from ray_queue.access import worker_credentials
from ray_queue.access.job_credentials import JobCredentials
from ray_queue.access.principals import Role, TokenTable, parse_tokens
from ray_queue.capture import __main__ as capture_cli
from ray_queue.errors import UnauthenticatedError
from ray_queue.manager.access_guard import AccessGuard
from ray_queue.manager.actor import find_manager
from ray_queue.manager.handle import ManagerHandle
from tests.ray.harness import token_manager_session, wait_for

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret-77c1"
TEAM_A = "team-a-secret-4b9e"
TOKENS = f"""
tokens:
  - {{token: {ADMIN}, role: admin}}
  - {{token: {TEAM_A}, role: tenant, queues: [team-a], name: team-a}}
"""


def guard(tmp_path: Path, carried: set[str], tokens: str = TOKENS) -> AccessGuard:
    table = TokenTable(parse_tokens(tokens, origin="test"))
    return AccessGuard(
        table, JobCredentials.in_directory(tmp_path), {}.get, carried=carried.__contains__
    )


def test_a_worker_credential_is_the_drivers_tenant_in_one_queue_while_carried(
    tmp_path: Path,
) -> None:
    credential = worker_credentials.mint(TEAM_A, "team-a")
    assert TEAM_A not in credential
    carried = {credential}
    principal = guard(tmp_path, carried).caller(credential)
    assert (principal.role, principal.queues) == (Role.TENANT, frozenset({"team-a"}))
    assert principal.namespace == "team-a"  # the driver's, so both see the same ids
    carried.clear()  # the job ended
    with pytest.raises(UnauthenticatedError, match="no running Ray job"):
        guard(tmp_path, carried).caller(credential)


def test_an_admin_drivers_workers_are_a_tenant_of_the_captured_queue(tmp_path: Path) -> None:
    credential = worker_credentials.mint(ADMIN, "team-b")
    principal = guard(tmp_path, {credential}).caller(credential)
    assert (principal.role, principal.queues) == (Role.TENANT, frozenset({"team-b"}))
    # A tenant credential always has a namespace, so it cannot name ids in team-b's.
    assert principal.namespace is not None and principal.namespace.startswith("job.")


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(worker_credentials.mint(TEAM_A, "team-b"), id="queue-the-driver-may-not-use"),
        pytest.param(worker_credentials.mint("not-a-token", "team-a"), id="unknown-token"),
        pytest.param(worker_credentials.mint(TEAM_A, "team-a")[:-4] + "0000", id="forged-mac"),
        pytest.param(
            worker_credentials.mint(TEAM_A, "team-a").replace(":team-a:", ":team-b:"),
            id="queue-changed",
        ),
        pytest.param("rqworker:too:few", id="malformed"),
    ],
)
def test_forged_or_widened_worker_credentials_are_refused(tmp_path: Path, credential: str) -> None:
    with pytest.raises(UnauthenticatedError, match="not valid"):
        guard(tmp_path, {credential}).caller(credential)


def test_revoking_the_drivers_token_revokes_its_workers(tmp_path: Path) -> None:
    credential = worker_credentials.mint(TEAM_A, "team-a")
    without_team_a = f"tokens:\n  - {{token: {ADMIN}, role: admin}}\n"
    with pytest.raises(UnauthenticatedError, match="not valid"):
        guard(tmp_path, {credential}, without_team_a).caller(credential)


def test_the_job_runtime_env_carries_a_derived_credential_never_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ray_queue.capture import Settings, core

    monkeypatch.delenv("RAY_QUEUE_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TEAM_A + "\n")
    monkeypatch.setenv("RAY_QUEUE_TOKEN_FILE", str(token_file))
    env = core.job_runtime_env(None, Settings("team-a"))
    credential = env["env_vars"]["RAY_QUEUE_TOKEN"]
    assert TEAM_A not in json.dumps(env)
    assert guard(tmp_path, {credential}).caller(credential).queues == frozenset({"team-a"})
    # A token the job put there itself is left alone; no token, no credential.
    mine = {"env_vars": {"RAY_QUEUE_TOKEN": "chosen"}}
    assert core.job_runtime_env(mine, Settings("team-a"))["env_vars"]["RAY_QUEUE_TOKEN"] == "chosen"
    monkeypatch.delenv("RAY_QUEUE_TOKEN_FILE")
    assert "RAY_QUEUE_TOKEN" not in core.job_runtime_env(None, Settings("team-a"))["env_vars"]
    # A token given only to init(token=...) derives the workers' credential too.
    given = core.job_runtime_env(None, Settings("team-a"), token=TEAM_A)
    assert TEAM_A not in json.dumps(given)
    derived = given["env_vars"]["RAY_QUEUE_TOKEN"]
    assert guard(tmp_path, {derived}).caller(derived).queues == frozenset({"team-a"})


# -- on a real cluster --------------------------------------------------------------------

DRIVER = """
    import json, os
    import ray

    ray.init()

    @ray.remote(num_cpus=0)
    def inside() -> dict:
        # Captured work made in a Ray worker of the captured job.
        group = ray.util.placement_group([{"GPU": 1}])
        ray.get(group.ready(), timeout=120)
        ray.util.remove_placement_group(group)

        @ray.remote(num_gpus=1)
        def on_gpu() -> str:
            return "ran"

        return {
            "task": ray.get(on_gpu.remote(), timeout=120),
            "credential": os.environ.get("RAY_QUEUE_TOKEN", ""),
            "environment": json.dumps(dict(os.environ)),
        }

    print(json.dumps(ray.get(inside.remote(), timeout=240)), flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from token_manager_session(tmp_path_factory.mktemp("worker-credentials"), TOKENS)


def as_(credential: str) -> Any:
    return ManagerHandle(find_manager(), credential)


@pytest.mark.ray
def test_work_inside_a_captured_jobs_tasks_is_queued_under_tokens(cluster: Cluster) -> None:
    capture_cli.install()
    env = dict(
        os.environ,
        RAY_ADDRESS=cluster.address,
        PYTHONPATH=str(ROOT),
        RAY_QUEUE_CAPTURE="1",
        RAY_QUEUE_QUEUE="team-a",
        RAY_QUEUE_TOKEN=TEAM_A,
    )
    env.pop("RAY_QUEUE_TOKEN_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["task"] == "ran"
    credential = seen["credential"]
    assert worker_credentials.is_worker_credential(credential)
    # The driver's token itself reached no worker.
    assert TEAM_A not in seen["environment"]
    # Its group and task were charged to team-a.
    statuses = ray.get(as_(ADMIN).workloads.remote())
    names = {s.spec.name for s in statuses if s.spec.queue == "team-a"}
    assert "lease:on_gpu" in names or "on_gpu" in names

    # The job has ended: its workers' credential with it.
    def refused() -> bool:
        try:
            ray.get(as_(credential).catalog.remote(), timeout=30)
        except ray.exceptions.RayTaskError as e:
            return isinstance(e.cause, UnauthenticatedError)
        return False

    wait_for(refused, 30)
