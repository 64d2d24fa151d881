"""Fixtures for the Helm chart tests: the real ``helm`` binary and the harness's API server.

Why this exists: the chart is only worth something if the real ``helm`` renders it and the
real API server accepts every object it renders, with the real CRD schemas (RayCluster,
ProvisioningRequest, ServiceMonitor). The control plane comes from ``tests/k8s`` (its
fixtures are imported here, so one API server per session serves both directories); the
Prometheus Operator's ServiceMonitor CRD is read from its published Go module, the way the
harness reads KubeRay's.

Every test here is marked ``k8s``. Without the harness tools they skip locally, and fail
with ``CI=true``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.availability import require_k8s_tools, unavailable
from tests.k8s import toolchain
from tests.k8s.conftest import (  # noqa: F401  (fixtures, re-exported for this directory)
    K8sApi,
    k8s_api,
    k8s_namespace,
    k8s_tools,
)
from tests.k8s.process import wait_for

HELM_DIR = Path(__file__).parent
REPO = HELM_DIR.parents[1]
CHART = REPO / "helm" / "ray-queue"
VALUES = HELM_DIR / "values"
DOCS = REPO / "docs"
#: The chart's example values and queue config, used by docs/helm.md and the README.
EXAMPLES = REPO / "examples" / "helm"
#: helm built from source reports Kubernetes v1.20 unless told; the harness runs 1.33.
KUBE_VERSION = toolchain.KUBERNETES_VERSION

PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.80.1"
SERVICEMONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this directory's tests ``k8s``; skip them (fail under CI) without the tools."""
    ours = [item for item in items if HELM_DIR in Path(str(item.fspath)).parents]
    for item in ours:
        item.add_marker(pytest.mark.k8s)
    require_k8s_tools(ours, needs_tools=lambda item: True)


@dataclasses.dataclass(frozen=True)
class Helm:
    """The real helm binary, with its caches in a temp dir and the harness's kubeconfig."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def run(
        self, *args: str, check: bool = True, timeout_s: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        proc = subprocess.run(
            [str(self.binary), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=cwd,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def template(
        self,
        *values_files: Path,
        namespace: str = "ray",
        sets: Sequence[str] = (),
        set_files: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Render the chart; the objects, in helm's order."""
        args = ["template", "rq", str(CHART), "--namespace", namespace]
        args += ["--kube-version", KUBE_VERSION]
        for path in values_files:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        for item in set_files:
            args += ["--set-file", item]
        out = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def template_error(self, *values_files: Path, sets: Sequence[str] = ()) -> str:
        """Render expecting failure; helm's error message."""
        args = ["template", "rq", str(CHART), "--kube-version", KUBE_VERSION]
        for path in values_files:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        proc = self.run(*args, check=False)
        assert proc.returncode != 0, f"helm template accepted bad values:\n{proc.stdout[:2000]}"
        return proc.stderr


@pytest.fixture(scope="session")
def helm(k8s_tools: toolchain.Tools) -> Iterator[Helm]:  # noqa: F811
    with tempfile.TemporaryDirectory(prefix="rq-helm-") as home:
        yield Helm(k8s_tools.helm, Path(home))


@pytest.fixture(scope="session")
def helm_k8s(helm: Helm, k8s_api: K8sApi) -> Helm:  # noqa: F811
    """helm talking to the harness's API server as admin."""
    return dataclasses.replace(helm, kubeconfig=k8s_api.kubeconfig)


def _crd_established(api_client: Any, name: str) -> bool:
    from kubernetes import client

    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
        name, _preload_content=False
    )
    conditions = json.loads(crd.data).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


@pytest.fixture(scope="session")
def servicemonitor_crd(k8s_api: K8sApi) -> str:  # noqa: F811
    """Install the Prometheus Operator's real ServiceMonitor CRD. Returns its name.

    Skips (fails under CI) when the Go module cannot be fetched.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        root = toolchain.module_dir(PROMETHEUS_OPERATOR_MODULE, PROMETHEUS_OPERATOR_VERSION)
    except toolchain.ToolchainUnavailable as exc:
        unavailable(f"the ServiceMonitor CRD is unavailable (needs the Go module proxy): {exc}")
    doc = yaml.safe_load((root / SERVICEMONITOR_CRD).read_text())
    name = doc["metadata"]["name"]
    try:
        client.ApiextensionsV1Api(k8s_api.api_client).create_custom_resource_definition(
            doc, _preload_content=False
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(lambda: _crd_established(k8s_api.api_client, name), 60, what=f"CRD {name}")
    return name


@pytest.fixture(scope="session")
def kuberay(k8s_api: K8sApi, k8s_tools: toolchain.Tools) -> Iterator[Any]:  # noqa: F811
    """The real KubeRay operator, for checking how it builds the chart's pods."""
    from tests.k8s.kuberay import start_operator

    operator = start_operator(
        k8s_tools.kuberay_operator, k8s_api.kubeconfig, k8s_api.server.workdir
    )
    try:
        yield operator
    finally:
        operator.stop()
