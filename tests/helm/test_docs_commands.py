"""The Helm commands of the docs, run as written.

Why this exists: a newcomer copies the commands from README.md ("Helm install") and
docs/helm.md; when one of them fails (a chart that refuses helm's default Kubernetes
version, a queue file the install cannot use), the docs are wrong even if every other test
passes. Every ``helm`` command in those code blocks runs here, in order, with the harness's
helm and API server, from the repository root, exactly as printed; each block's other
commands (``docker build``) are named in OTHER_PROGRAMS and left to the reader.
"""

from __future__ import annotations

import base64
import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_queue.engine.config_loader import load_config
from tests.helm.conftest import DOCS, REPO, Helm
from tests.k8s.apiserver import delete_namespace
from tests.k8s.conftest import K8sApi

pytestmark = pytest.mark.timeout(300)

#: Where the docs install: release and namespace `ml`.
RELEASE = NAMESPACE = "ml"
#: Programs in the same code blocks that are not run here: Docker (no engine on this
#: machine) and the command that runs these tests.
OTHER_PROGRAMS = {"docker", ".venv/bin/python"}
_FENCE = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_commands(path: Path, section: str | None = None) -> list[list[str]]:
    """The shell commands of ``path``'s top-level sh/bash blocks (of ``section`` only, if
    given), continuation lines joined, each split as the shell would."""
    text = path.read_text()
    if section is not None:
        start = text.index(f"\n{section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else len(text)]
    commands = []
    for block in _FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line))
    return commands


def helm_commands(path: Path, section: str | None = None) -> list[list[str]]:
    commands = doc_commands(path, section)
    others = {argv[0] for argv in commands if argv[0] != "helm"}
    assert others <= OTHER_PROGRAMS, f"{path.name}: commands this test does not know: {others}"
    return [argv for argv in commands if argv[0] == "helm"]


def readme_commands() -> list[list[str]]:
    return helm_commands(REPO / "README.md", "## Helm install")


def helm_md_commands() -> list[list[str]]:
    return helm_commands(DOCS / "helm.md")


def test_the_docs_hold_the_commands_this_test_runs() -> None:
    """Guards the extraction: the commands are found, and they are the ones expected."""
    assert [argv[1] for argv in readme_commands()] == ["install"]
    assert [argv[1] for argv in helm_md_commands()] == [
        "lint",
        "template",
        "install",
        "upgrade",
        "uninstall",
    ]
    for argv in readme_commands() + helm_md_commands():
        for flag, value in itertools.pairwise(argv):
            if flag in ("-f", "--values"):
                assert (REPO / value).is_file(), value
            if flag == "--set-file":
                assert (REPO / value.split("=", 1)[1]).is_file(), value


@pytest.fixture
def ml_namespace(helm_k8s: Helm, k8s_api: K8sApi) -> Iterator[str]:
    """Namespace `ml`, as the docs' commands create it; emptied and deleted afterwards."""
    try:
        yield NAMESPACE
    finally:
        helm_k8s.run("uninstall", RELEASE, "--namespace", NAMESPACE, check=False)
        delete_namespace(k8s_api.api_client, NAMESPACE)


def _run(helm: Helm, argv: list[str]) -> str:
    assert argv[0] == "helm"
    return helm.run(*argv[1:], cwd=REPO, timeout_s=180).stdout


def _tokens(api: K8sApi) -> dict[str, str]:
    from kubernetes import client

    secret = client.CoreV1Api(api.api_client).read_namespaced_secret(
        f"{RELEASE}-ray-queue-tokens", NAMESPACE
    )
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def _installed_queue_config(api: K8sApi) -> object:
    from kubernetes import client

    config_map = client.CoreV1Api(api.api_client).read_namespaced_config_map(
        f"{RELEASE}-ray-queue-queues", NAMESPACE
    )
    return load_config(config_map.data["queues.yaml"])


def test_readme_and_helm_md_commands_run_as_written(
    helm_k8s: Helm, k8s_api: K8sApi, ml_namespace: str
) -> None:
    # The README: install, then the queue config the manager would load is valid.
    (install,) = readme_commands()
    notes = _run(helm_k8s, install)
    assert f"RayCluster {NAMESPACE}/{RELEASE}-ray-queue" in notes
    assert set(_installed_queue_config(k8s_api).flavors) == {"cpu", "a100"}  # type: ignore[attr-defined]
    first_tokens = _tokens(k8s_api)
    helm_k8s.run("uninstall", RELEASE, "--namespace", NAMESPACE)

    # docs/helm.md, in order: lint and template without a cluster (no --kube-version),
    # then install, upgrade and uninstall against the API server.
    lint, template, install, upgrade, uninstall = helm_md_commands()
    assert "0 chart(s) failed" in _run(helm_k8s, lint)
    rendered = _run(helm_k8s, template)
    assert "kind: RayCluster" in rendered and "RAY_AUTH_MODE" in rendered
    _run(helm_k8s, install)
    # The kept Secret (helm.sh/resource-policy: keep) is adopted: the same tokens.
    assert _tokens(k8s_api) == first_tokens
    _run(helm_k8s, upgrade)
    status = helm_k8s.run("status", RELEASE, "--namespace", NAMESPACE).stdout
    assert "REVISION: 2" in status and "STATUS: deployed" in status
    assert set(_installed_queue_config(k8s_api).cluster_queues) == {  # type: ignore[attr-defined]
        "training",
        "research",
        "analytics",
    }
    _run(helm_k8s, uninstall)
    listed = helm_k8s.run("list", "--namespace", NAMESPACE, "--short").stdout
    assert RELEASE not in listed.split()
