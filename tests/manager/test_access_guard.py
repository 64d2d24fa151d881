"""The manager actor's door: who a credential stands for, and jobs' credentials (pure parts).

The same checks on a real cluster, through the actor, are in tests/ray/test_actor_access.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ray_queue.access.job_credentials import JobCredentials
from ray_queue.access.principals import AuthConfigError, TokenTable, parse_tokens
from ray_queue.engine.model import WorkloadId
from ray_queue.errors import PermissionDeniedError, UnauthenticatedError
from ray_queue.manager.access_guard import AccessGuard
from ray_queue.manager.handle import TOKEN_ENV

pytestmark = pytest.mark.timeout(30)

TOKENS = """
tokens:
  - {token: admin-secret-1, role: admin}
  - {token: team-a-secret, role: tenant, queues: [team-a], name: team-a}
  - {token: scaler-secret, role: autoscaler}
"""


def _guard(tmp_path: Path, live: dict[str, tuple[str, WorkloadId]]) -> AccessGuard:
    table = TokenTable(parse_tokens(TOKENS, origin="test"))
    return AccessGuard(table, JobCredentials.in_directory(tmp_path), live.get)


def test_tokens_name_their_principal_and_nothing_else_passes(tmp_path: Path) -> None:
    guard = _guard(tmp_path, {})
    assert guard.caller("team-a-secret").queues == frozenset({"team-a"})
    for bad in (None, "", "wrong-secret-9"):
        with pytest.raises(UnauthenticatedError, match="RAY_QUEUE_TOKEN"):
            guard.caller(bad)


def test_roles_gate_admin_and_autoscaler_operations(tmp_path: Path) -> None:
    guard = _guard(tmp_path, {})
    tenant, scaler = guard.caller("team-a-secret"), guard.caller("scaler-secret")
    with pytest.raises(PermissionDeniedError, match="applying a config needs the admin role"):
        guard.require(tenant, "applying a config")
    with pytest.raises(PermissionDeniedError, match="admin or autoscaler"):
        guard.require(tenant, "reading demand", scaler.role)
    guard.require(scaler, "reading demand", scaler.role)
    guard.require(guard.caller("admin-secret-1"), "applying a config")


def test_a_jobs_credential_is_in_its_env_and_scoped_to_its_live_run(tmp_path: Path) -> None:
    live = {"rq-team-a~train.1-1": ("team-a", WorkloadId("team-a/train.1"))}
    guard = _guard(tmp_path, live)
    credential = guard.job_env("rq-team-a~train.1-1")[TOKEN_ENV]
    job = guard.caller(credential)
    assert job.queues == frozenset({"team-a"}) and not job.sees_all_queues
    # The job's own work is in its submitter's namespace.
    assert job.namespace == "team-a"
    # Its driver and each of its Ray workers use it, as often as they need.
    assert guard.caller(credential).queues == frozenset({"team-a"})
    # A restarted manager (same state directory) knows its key.
    again = _guard(tmp_path, live)
    assert again.caller(credential).queues == frozenset({"team-a"})
    # The run ends: its credential is worth nothing from then on.
    del live["rq-team-a~train.1-1"]
    with pytest.raises(UnauthenticatedError, match="no longer running"):
        guard.caller(credential)


def test_forged_credentials_are_refused(tmp_path: Path) -> None:
    guard = _guard(tmp_path, {"rq-x-1": ("team-a", WorkloadId("x"))})
    credential = guard.job_env("rq-x-1")[TOKEN_ENV]
    other = AccessGuard(
        TokenTable(parse_tokens(TOKENS, origin="test")),
        JobCredentials.in_directory(tmp_path / "other-manager"),
        {"rq-x-1": ("team-a", WorkloadId("x"))}.get,
    )
    with pytest.raises(UnauthenticatedError):
        other.caller(credential)  # another manager's key
    # The last character changed for sure (a random "0" made the old "+ '0'" a no-op).
    flipped = credential[:-1] + ("1" if credential.endswith("0") else "0")
    for forged in (flipped, credential.replace("rq-x-1", "rq-y-1")):
        with pytest.raises(UnauthenticatedError):
            guard.caller(forged)
    assert os.stat(tmp_path / "job-credentials.key").st_mode & 0o077 == 0


def test_no_tokens_is_open_and_a_broken_token_config_is_closed(tmp_path: Path) -> None:
    open_guard = AccessGuard(TokenTable({}), None, {}.get)
    assert open_guard.caller(None).sees_all_queues
    assert open_guard.job_env("rq-x-1") == {}
    closed = AccessGuard(TokenTable({}), None, {}.get, problem="tokens[0].role: must be one of")
    with pytest.raises(UnauthenticatedError, match="does not load"):
        closed.caller("admin-secret-1")


def test_a_job_an_admin_submitted_gets_a_namespace_no_tenant_can_name(tmp_path: Path) -> None:
    guard = _guard(tmp_path, {"rq-nightly-1": ("team-a", WorkloadId("nightly"))})
    job = guard.caller(guard.job_env("rq-nightly-1")[TOKEN_ENV])
    assert job.namespace is not None and job.namespace.startswith("job.")
    with pytest.raises(AuthConfigError, match="names the tenant's workload ids"):
        parse_tokens(
            f"tokens: [{{token: x-secret-1, role: tenant, queues: [q], name: {job.namespace}}}]",
            origin="t",
        )
