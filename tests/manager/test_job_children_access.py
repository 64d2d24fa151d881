"""Who may attach work to a job (``access/parents.py``), and the variables that make a
job's run capture its work as the job's children (``AccessGuard.job_env``). Pure parts;
the same on a real cluster is in tests/capture/test_job_children.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_queue.access.job_credentials import JobCredentials
from ray_queue.access.principals import TokenTable, parse_tokens
from ray_queue.capture.settings import settings_from_env
from ray_queue.engine.model import WorkloadId
from ray_queue.manager.access_guard import AccessGuard
from ray_queue.manager.handle import TOKEN_ENV

pytestmark = pytest.mark.timeout(30)

TOKENS = """
tokens:
  - {token: admin-secret-1, role: admin}
  - {token: team-a-secret, role: tenant, queues: [team-a], name: team-a}
  - {token: team-b-secret, role: tenant, queues: [team-b], name: team-b}
"""
W = WorkloadId
LIVE = {
    "rq-team-a~train-1": ("team-a", W("team-a/train")),
    "rq-team-b~eval-1": ("team-b", W("team-b/eval")),
}


def _guard(tmp_path: Path) -> AccessGuard:
    table = TokenTable(parse_tokens(TOKENS, origin="test"))
    return AccessGuard(table, JobCredentials.in_directory(tmp_path), LIVE.get)


def test_a_jobs_run_captures_its_work_as_the_jobs_children(tmp_path: Path) -> None:
    env = _guard(tmp_path).job_env("rq-team-a~train-1")
    assert env[TOKEN_ENV].startswith("rqjob:")
    settings = settings_from_env(env)
    assert settings is not None
    assert (settings.queue, settings.parent, settings.priority) == ("team-a", "team-a/train", None)
    # A run that is not live (stopped, or an earlier one) is not told to capture.
    assert settings_from_env(_guard(tmp_path).job_env("rq-team-a~train-0")) is None


def test_only_the_jobs_own_run_its_tenant_or_an_admin_attach_work_to_it(tmp_path: Path) -> None:
    guard = _guard(tmp_path)
    run_a = guard.caller(guard.job_env("rq-team-a~train-1")[TOKEN_ENV])
    team_a, team_b = guard.caller("team-a-secret"), guard.caller("team-b-secret")

    assert guard.attach_refusal(run_a, W("team-a/train")) is None
    assert guard.attach_refusal(team_a, W("team-a/train")) is None
    assert guard.attach_refusal(guard.caller("admin-secret-1"), W("team-b/eval")) is None
    assert guard.attach_refusal(team_b, None) is None

    refused = guard.attach_refusal(team_b, W("team-a/train"))
    assert refused is not None and "may not attach work to job team-a/train" in refused
    other_job = guard.attach_refusal(run_a, W("team-b/eval"))
    assert other_job is not None and "only to its own job (team-a/train)" in other_job
