"""Every role and its refusals, flood limits, token sources, loopback-only mode and TLS."""

from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from ray_queue.engine.errors import RayQueueError, UnknownWorkloadError
from ray_queue.engine.model import CheckState, WorkloadState
from ray_queue.errors import PermissionDeniedError, UnauthenticatedError
from ray_queue.grpc.auth import (
    AuthConfigError,
    Authenticator,
    CallKind,
    Limits,
    Role,
    digest,
    load_tokens,
    parse_tokens,
)
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.status import InvalidRequestError, RateLimitedError
from ray_queue.wire import WorkerGroupShape
from tests.grpc.conftest import (
    ADMIN_TOKEN,
    AUTOSCALER_TOKEN,
    CONFIG_YAML,
    TENANT_A_TOKEN,
    Harness,
    request,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("token", [None, "wrong-token-123"], ids=["missing", "unknown"])
def test_unauthenticated(harness: Harness, token: str | None) -> None:
    client = harness.client(token=token)
    for call in (client.workloads, client.cluster_queues, client.config_yaml):
        with pytest.raises(UnauthenticatedError):
            call()
    with pytest.raises(UnauthenticatedError):
        next(client.watch_demand(timeout_s=5))


def test_malformed_authorization_header(harness: Harness) -> None:
    import grpc

    from ray_queue.grpc.gen import queue_pb2 as pb
    from ray_queue.grpc.gen import queue_pb2_grpc

    channel = grpc.insecure_channel(harness.address)
    stub = queue_pb2_grpc.QueueServiceStub(channel)
    for header in (f"Basic {ADMIN_TOKEN}", "Bearer ", ADMIN_TOKEN):
        with pytest.raises(grpc.RpcError) as info:
            stub.GetCohorts(pb.GetCohortsRequest(), metadata=(("authorization", header),))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_tenant_is_confined_to_its_queues(harness: Harness) -> None:
    admin = harness.client()
    admin.submit_many([request("b1", "team-b"), request("a0", "team-a")])
    tenant = harness.client(token=TENANT_A_TOKEN)
    status = tenant.submit(request("a1", "team-a"))
    assert status.state is WorkloadState.ADMITTED and status.spec.owner == "grpc:team-a"
    with pytest.raises(PermissionDeniedError, match=r"workloads\[0\]\.owner"):
        tenant.submit(replace(request("a9", "team-a"), owner="driver-of-team-b"))
    with pytest.raises(PermissionDeniedError, match=r"workloads\[1\]\.queue"):
        tenant.submit_many([request("a2", "team-a"), request("b2", "team-b")])
    assert {w.spec.id for w in admin.workloads()} == {"b1", "a0", "a1"}  # nothing half-queued
    # Another tenant's workload answers exactly as an id nobody used: nothing leaks.
    for wid in ("b1", "never-used"):
        for call in (tenant.workload, tenant.cancel):
            with pytest.raises(UnknownWorkloadError, match=f"^no workload with id '{wid}'$"):
                call(wid)
    assert admin.workload("b1").state is WorkloadState.ADMITTED
    assert {w.spec.id for w in tenant.workloads()} == {"a0", "a1"}
    with pytest.raises(PermissionDeniedError):
        tenant.workloads(queue="team-b")
    with pytest.raises(PermissionDeniedError):
        tenant.pending(queue="team-b")
    assert all(p.queue == "team-a" for p in tenant.pending())
    assert [c.name for c in tenant.cluster_queues()] == ["cq-a"]
    assert [c.name for c in tenant.cohorts()] == ["shared"]
    assert tenant.cancel("a0") is True


@pytest.mark.parametrize("call", ["config_yaml", "apply_config", "watch_demand", "report_check"])
def test_tenant_may_not_touch_config_or_autoscaler(harness: Harness, call: str) -> None:
    tenant = harness.client(token=TENANT_A_TOKEN)
    calls = {
        "config_yaml": tenant.config_yaml,
        "apply_config": lambda: tenant.apply_config(CONFIG_YAML),
        "watch_demand": lambda: next(tenant.watch_demand(timeout_s=5)),
        "report_check": lambda: tenant.report_check("x", "prov", CheckState.READY),
    }
    with pytest.raises(PermissionDeniedError, match="tenant"):
        calls[call]()


def test_autoscaler_role(harness: Harness) -> None:
    harness.client().submit(request("gang", gpu=1000))
    autoscaler = harness.client(token=AUTOSCALER_TOKEN)
    snapshot = next(autoscaler.watch_demand(timeout_s=10))
    assert [g.workload for g in snapshot.gangs] == ["gang"]
    assert autoscaler.report_check("gang", "prov", CheckState.READY).state is WorkloadState.ADMITTED
    for call in (autoscaler.workloads, autoscaler.cluster_queues, autoscaler.config_yaml):
        with pytest.raises(PermissionDeniedError, match="autoscaler"):
            call()
    with pytest.raises(PermissionDeniedError):
        autoscaler.submit(request("sneaky"))
    gpu_nodes = WorkerGroupShape("gpu-group", {"GPU": 4000, "CPU": 8000})
    autoscaler.report_worker_groups([gpu_nodes])
    with pytest.raises(InvalidRequestError, match=r"groups\[0\]\.resources\['GPU'\]"):
        autoscaler.report_worker_groups([WorkerGroupShape("gpu-group", {"GPU": -1})])
    with pytest.raises(PermissionDeniedError, match=r"may not call .*ReportWorkerGroups"):
        harness.client(token=TENANT_A_TOKEN).report_worker_groups([gpu_nodes])


def test_admin_can_do_everything(harness: Harness) -> None:
    admin = harness.client()
    admin.submit_many([request("a", "team-a"), request("b", "team-b", gpu=0)])
    assert {w.spec.id for w in admin.workloads()} == {"a", "b"}
    assert admin.apply_config(CONFIG_YAML).applied
    assert admin.config_yaml()
    # Admitted but not yet placed: both are demand for the autoscaler.
    assert {g.workload for g in next(admin.watch_demand(timeout_s=5)).gangs} == {"a", "b"}


def test_rate_limit_per_token(make_harness) -> None:  # type: ignore[no-untyped-def]
    harness: Harness = make_harness(limits=Limits(rate_per_s=0.001, burst=3))
    tenant = harness.client(token=TENANT_A_TOKEN)
    for _ in range(3):
        tenant.cohorts()
    with pytest.raises(RateLimitedError, match="rate limit"):
        tenant.cohorts()
    harness.client().cohorts()  # another token has its own budget


def test_max_in_flight_per_token(make_harness) -> None:  # type: ignore[no-untyped-def]
    harness: Harness = make_harness(limits=Limits(max_in_flight=1))
    gate = threading.Event()
    entered = threading.Event()
    real = harness.backend.cohorts

    def slow_cohorts():  # type: ignore[no-untyped-def]
        entered.set()
        gate.wait(10)
        return real()

    harness.backend.cohorts = slow_cohorts  # type: ignore[method-assign]
    tenant = harness.client(token=TENANT_A_TOKEN)
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(tenant.cohorts()))
    t.start()
    assert entered.wait(10)
    with pytest.raises(RateLimitedError, match="concurrent"):
        tenant.workloads()
    harness.client().workloads()  # the admin is not held up
    gate.set()
    t.join(10)
    assert results and tenant.workloads() == []


def test_max_streams_per_token(make_harness) -> None:  # type: ignore[no-untyped-def]
    harness: Harness = make_harness(limits=Limits(max_streams=1))
    tenant = harness.client(token=TENANT_A_TOKEN)
    tenant.submit(request("w"))
    first = tenant.watch(send_initial=True, timeout_s=20)
    assert next(first).workload == "w"
    with pytest.raises(RateLimitedError, match="streams"):
        next(tenant.watch(send_initial=True, timeout_s=5))
    first.close()

    def reopened() -> bool:
        try:
            stream = tenant.watch(send_initial=True, timeout_s=5)
            next(stream)
            stream.close()
            return True
        except RateLimitedError:
            return False

    wait_for(reopened, 10)


def test_without_tokens_serves_loopback_only(make_harness, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="ray_queue.grpc.server")
    harness: Harness = make_harness(auth=False, host="0.0.0.0")
    assert harness.server.host == "127.0.0.1"
    assert "loopback only" in caplog.text and "WITHOUT authentication" in caplog.text
    anonymous = harness.client(token=None)
    anonymous.submit(request("w"))
    assert anonymous.config_yaml()


def test_two_tokens_of_one_name_have_limits_of_their_own() -> None:
    # Both unnamed tenants are called "tenant"; team-y's flood once refused team-x.
    principals = parse_tokens(
        "tokens:\n"
        "  - {token: team-x-secret, role: tenant, queues: [x], limits: {burst: 2}}\n"
        "  - {token: team-y-secret, role: tenant, queues: [y], limits: {burst: 2}}\n",
        origin="test",
    )
    auth = Authenticator(principals)
    x, y = (
        auth.authenticate([("authorization", f"Bearer {t}")])
        for t in ("team-x-secret", "team-y-secret")
    )
    assert x.name == y.name == "tenant"
    assert [auth.admit(y, CallKind.UNARY) for _ in range(2)] == [None, None]
    assert "rate limit" in (auth.admit(y, CallKind.UNARY) or "")
    assert auth.admit(x, CallKind.UNARY) is None


def test_a_token_runs_only_a_few_list_calls_at_once() -> None:
    principals = parse_tokens(
        "tokens: [{token: team-x-secret, role: tenant, queues: [x]}]", origin="test"
    )
    auth = Authenticator(principals)
    x = auth.authenticate([("authorization", "Bearer team-x-secret")])
    limit = x.limits.max_heavy_in_flight
    assert [auth.admit(x, CallKind.HEAVY) for _ in range(limit)] == [None] * limit
    assert "list calls at once" in (auth.admit(x, CallKind.HEAVY) or "")
    assert auth.admit(x, CallKind.UNARY) is None  # other calls still go through
    auth.release(x, CallKind.HEAVY)
    assert auth.admit(x, CallKind.HEAVY) is None


def test_token_file_forms(tmp_path: Path) -> None:
    file = tmp_path / "tokens.yaml"
    file.write_text(
        "tokens:\n"
        "  - {token: admin-secret-1, role: admin, name: ops}\n"
        "  - {token_sha256: " + digest("tenant-secret-1") + ", role: tenant, queues: [q1]}\n"
        "  - token: auto-secret-1\n"
        "    role: autoscaler\n"
        "    limits: {rate_per_s: 5, max_streams: 2}\n"
    )
    principals = load_tokens(file)
    admin = principals[digest("admin-secret-1")]
    assert (admin.name, admin.role) == ("ops", Role.ADMIN)
    tenant = principals[digest("tenant-secret-1")]
    assert tenant.role is Role.TENANT and tenant.queues == frozenset({"q1"})
    auto = principals[digest("auto-secret-1")]
    assert auto.limits.rate_per_s == 5 and auto.limits.max_streams == 2
    as_json = '{"tokens": {"json-secret-1": {"role": "tenant", "queues": ["a", "b"]}}}'
    (p,) = load_tokens(environ={"RAY_QUEUE_TOKENS": as_json}).values()
    assert p.queues == frozenset({"a", "b"})
    assert load_tokens(environ={}) == {}
    env_file = {"RAY_QUEUE_TOKENS_FILE": str(file), "RAY_QUEUE_TOKENS": as_json}
    assert load_tokens(environ=env_file) == principals  # the file wins


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tokens: [{token: short, role: admin}]", "at least 8"),
        ("tokens: [{token: long-enough-1, role: root}]", "role"),
        ("tokens: [{token: long-enough-1, role: tenant}]", "queues"),
        ("tokens: [{role: admin}]", "exactly one"),
        ("tokens: 7", "list or mapping"),
        ("tokens: []", "no tokens defined"),
        ("tokens: {}", "no tokens defined"),
        ("tokens: [{token: long-enough-1, role: admin, limits: {speed: 1}}]", "limits"),
        ("{unclosed", "not YAML"),
    ],
)
def test_bad_token_definitions(text: str, problem: str) -> None:
    with pytest.raises(AuthConfigError, match=problem):
        parse_tokens(text, origin="tokens.yaml")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def test_tls(make_harness, tls_files: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    harness: Harness = make_harness(tls_cert_path=cert, tls_key_path=key)
    assert harness.server.tls
    secure = QueueClient(harness.address, token=ADMIN_TOKEN, tls_ca_path=cert, timeout_s=10)
    try:
        secure.submit(request("w"))
        assert secure.workload("w").state is WorkloadState.ADMITTED
    finally:
        secure.close()
    plaintext = QueueClient(harness.address, token=ADMIN_TOKEN, timeout_s=3)
    try:
        with pytest.raises(RayQueueError):
            plaintext.workloads()
    finally:
        plaintext.close()
