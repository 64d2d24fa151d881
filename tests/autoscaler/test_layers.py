"""The autoscaler's import rules, checked on the source (kopf-style layer contract):
only ``providers/kuberay.py`` and ``provisioning.py`` import ``kubernetes``; nothing imports
the manager's internals; the pure modules import neither Ray nor Kubernetes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "autoscaler"
KUBERNETES_ALLOWED = {"providers/kuberay.py", "provisioning.py"}
PURE = {"demand.py", "binpacking.py", "planner.py", "requests.py", "providers/base.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


MODULES = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_import_rules(module: str) -> None:
    names = imports(ROOT / module)
    roots = {n.split(".")[0] for n in names}
    if module not in KUBERNETES_ALLOWED:
        assert "kubernetes" not in roots, f"{module} imports kubernetes"
    assert not any(n.startswith("ray_queue.manager") for n in names), module
    if module in PURE:
        assert not roots & {"ray", "kubernetes", "grpc", "prometheus_client"}, module
        assert not any(
            n.startswith("ray_queue.") and not n.startswith("ray_queue.engine.model")
            for n in names
        ), f"{module} may use only the engine's model types"


def test_every_pure_module_exists() -> None:
    assert set(MODULES) >= PURE
