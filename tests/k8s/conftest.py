"""Pytest fixtures for the real-Kubernetes-API harness.

Why this exists: one place decides how a test gets a control plane, a namespace, the KubeRay
operator and simulated nodes, and guarantees teardown (every process is stopped by pid, in
its process group, even when the test failed).

Fixtures (scopes chosen so a module pays at most one start of each):
- ``k8s_tools`` (session): paths of the built binaries.
- ``k8s_api`` (session): etcd + kube-apiserver with the CRDs installed; a ``K8sApi``.
- ``k8s_namespace`` (module): a fresh namespace with its ``default`` ServiceAccount.
- ``kuberay_operator`` (session): the KubeRay operator watching all namespaces.
- ``ray_head`` (module): a local Ray head (0 CPUs) for simulated workers to join.
- ``node_simulator`` (module): Pods of ``k8s_namespace`` -> Running + real Ray worker nodes.

Missing tools: with ``CI=true`` the run fails loudly; locally, without Go, every k8s test is
skipped with a message that says how to get it. With Go present, missing tools are built
once before the first k8s test runs (outside any test timeout).
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.availability import require_k8s_tools, unavailable
from tests.k8s import toolchain
from tests.k8s.apiserver import ApiServer, create_namespace, delete_namespace, start_apiserver
from tests.k8s.crds import install_crds
from tests.k8s.kuberay import KubeRayOperator, start_operator
from tests.k8s.node_simulator import NodeSimulator
from tests.k8s.process import wait_for
from tests.k8s.ray_nodes import RayHead, driver_auth, head_ready, start_head

_K8S_DIR = Path(__file__).parent
_NEEDS_TOOLS = {"k8s_tools", "k8s_api", "k8s_namespace", "kuberay_operator", "node_simulator"}
"""Fixtures that need the built binaries; tests without them (pure parsing) always run."""


def _ours(item: pytest.Item) -> bool:
    return _K8S_DIR in Path(str(item.fspath)).parents


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test in this directory is a ``k8s`` test (before ``-m`` selection runs)."""
    if _ours(item):
        item.add_marker(pytest.mark.k8s)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make sure the tools exist before any selected k8s test runs (after ``-m``/``-k``)."""
    require_k8s_tools(
        [item for item in items if _ours(item)],
        needs_tools=lambda item: bool(_NEEDS_TOOLS & set(getattr(item, "fixturenames", ()))),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class K8sApi:
    """A started API server: its kubeconfig path and an admin ``ApiClient``."""

    server: ApiServer
    kubeconfig: Path
    api_client: Any
    crds: tuple[str, ...]

    def tenant_client(self) -> Any:
        """An ApiClient authenticated as user ``tenant`` (no RBAC grants)."""
        return self.server.new_api_client(tenant=True)


@pytest.fixture(scope="session")
def k8s_tools(pytestconfig: pytest.Config) -> toolchain.Tools:
    try:
        return toolchain.ensure_tools()
    except toolchain.ToolchainUnavailable as exc:
        unavailable(f"the k8s harness is unavailable: {exc}")


@pytest.fixture(scope="session")
def k8s_api(k8s_tools: toolchain.Tools) -> Iterator[K8sApi]:
    workdir = Path(tempfile.mkdtemp(prefix="rq-k8s-"))
    server = start_apiserver(k8s_tools, workdir=workdir)
    api_client = None
    try:
        api_client = server.new_api_client()
        crds = install_crds(api_client)
        yield K8sApi(
            server=server, kubeconfig=server.kubeconfig, api_client=api_client, crds=tuple(crds)
        )
    finally:
        if api_client is not None:
            api_client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def k8s_namespace(k8s_api: K8sApi, request: pytest.FixtureRequest) -> Iterator[str]:
    stem = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    create_namespace(k8s_api.api_client, name)
    try:
        yield name
    finally:
        delete_namespace(k8s_api.api_client, name)


@pytest.fixture(scope="session")
def kuberay_operator(k8s_api: K8sApi, k8s_tools: toolchain.Tools) -> Iterator[KubeRayOperator]:
    operator = start_operator(
        k8s_tools.kuberay_operator, k8s_api.kubeconfig, k8s_api.server.workdir
    )
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    # Short path: Ray's Unix sockets live under the temp dir and must stay < 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="rqk8s-", dir="/tmp"))
    head = start_head(base / "ray")
    try:
        # A driver in this process (``ray.init(address=ray_head.address)``) needs the token.
        with driver_auth(head):
            wait_for(lambda: head_ready(head), 90, what="local Ray head")
            yield head
            _shutdown_ray_driver()
    finally:
        _shutdown_ray_driver()
        head.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def node_simulator(
    k8s_api: K8sApi, k8s_namespace: str, ray_head: RayHead
) -> Iterator[NodeSimulator]:
    log_dir = ray_head.temp_dir.parent / "nodes"
    log_dir.mkdir(parents=True, exist_ok=True)
    simulator = NodeSimulator(k8s_api.api_client, k8s_namespace, ray_head, log_dir)
    simulator.start()
    try:
        yield simulator
    finally:
        _shutdown_ray_driver()  # before its nodes go, so the driver is not left hanging
        simulator.stop()


def _shutdown_ray_driver() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
