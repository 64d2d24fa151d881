"""Workload ids per tenant at the gRPC door: no tenant can take an id another one wants."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ray_queue.access.principals import parse_tokens
from ray_queue.engine.errors import UnknownWorkloadError
from ray_queue.errors import PermissionDeniedError
from tests.grpc.conftest import ADMIN_TOKEN, Harness, request

pytestmark = pytest.mark.timeout(60)

TOKENS = f"""
tokens:
  - {{token: {ADMIN_TOKEN}, role: admin, name: ops}}
  - {{token: team-a-secret-1, role: tenant, name: team-a, queues: [team-a]}}
  - {{token: team-b-secret-1, role: tenant, name: team-b, queues: [team-b]}}
  - {{token: unnamed-secret-1, role: tenant, queues: [team-b]}}
"""


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(principals=parse_tokens(TOKENS, origin="test"))


def test_two_tenants_use_the_same_name_without_meeting(harness: Harness) -> None:
    team_a, team_b = (
        harness.client(token="team-a-secret-1"),
        harness.client(token="team-b-secret-1"),
    )
    a = team_a.submit(request("nightly", "team-a"))
    b = team_b.submit(request("nightly", "team-b"))
    assert (a.spec.id, b.spec.id) == ("team-a/nightly", "team-b/nightly")
    # A bare name means the caller's own; the whole id works too.
    assert team_a.workload("nightly").spec.id == "team-a/nightly"
    assert team_a.workload("team-a/nightly").spec.queue == "team-a"
    assert team_b.cancel("nightly") is True
    assert team_a.workload("nightly").state is a.state  # untouched by team-b's cancel
    # Resubmitting one's own name is still a duplicate, in one's own namespace.
    assert {w.spec.id for w in team_a.workloads()} == {"team-a/nightly"}


def test_an_id_in_another_namespace_is_refused_and_says_nothing_of_it(harness: Harness) -> None:
    team_a, team_b = (
        harness.client(token="team-a-secret-1"),
        harness.client(token="team-b-secret-1"),
    )
    team_b.submit(request("secret-run", "team-b"))
    for wid in ("team-b/secret-run", "team-b/never-used"):
        with pytest.raises(PermissionDeniedError, match="not in this token's namespace"):
            team_a.submit(request(wid, "team-a"))
        # Reads of another tenant's whole id answer as for an id nobody used.
        with pytest.raises(UnknownWorkloadError, match=f"^no workload with id '{wid}'$"):
            team_a.workload(wid)
    assert [w.spec.id for w in harness.client().workloads()] == ["team-b/secret-run"]


def test_admin_ids_are_as_given_and_a_tenant_reaches_them_by_name(harness: Harness) -> None:
    admin, team_a = harness.client(), harness.client(token="team-a-secret-1")
    assert admin.submit(request("for-team-a", "team-a")).spec.id == "for-team-a"
    assert admin.submit(request("team-b/placed-by-ops", "team-b")).spec.id == "team-b/placed-by-ops"
    assert team_a.workload("for-team-a").spec.id == "for-team-a"
    assert team_a.cancel("for-team-a") is True


def test_unnamed_tenant_tokens_get_namespaces_of_their_own(harness: Harness) -> None:
    unnamed = harness.client(token="unnamed-secret-1")
    status = unnamed.submit(request("x", "team-b"))
    namespace, _, name = status.spec.id.partition("/")
    assert name == "x" and namespace.startswith("tenant-") and namespace != "team-b"
