"""Document builders shared by the config loader tests.

Each builder returns one document (of our apiVersion unless it says Kueue) as a plain
dict, with only the fields a test is about, so a test's documents read like the YAML
they stand for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_queue.engine.config_fields import IGNORE_ANNOTATION
from ray_queue.engine.config_loader import API_VERSION, load_config
from ray_queue.engine.errors import ConfigError, ConfigProblem

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
THREE_TEAMS = REPO / "examples" / "config" / "three-teams.yaml"
GI = 2**30
KUEUE = "kueue.x-k8s.io/v1beta1"


def doc(
    kind: str, name: str | None, spec: dict[str, object] | None = None, **top: object
) -> dict[str, object]:
    out: dict[str, object] = {"apiVersion": API_VERSION, "kind": kind}
    if name is not None:
        out["metadata"] = {"name": name}
    if spec is not None:
        out["spec"] = spec
    out.update(top)
    return out


def kueue(
    kind: str,
    name: str | None,
    spec: dict[str, object] | None = None,
    *,
    api_version: str = KUEUE,
    **top: object,
) -> dict[str, object]:
    """A Kueue document (``api_version``), otherwise as ``doc``."""
    return {**doc(kind, name, spec, **top), "apiVersion": api_version}


def ignoring(document: dict[str, object], paths: str) -> dict[str, object]:
    """``document`` with its ray-queue.io/ignore-fields annotation set to ``paths``."""
    meta = document.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["annotations"] = {IGNORE_ANNOTATION: paths}
    return {**document, "metadata": meta}


def rf(name: str, **spec: object) -> dict[str, object]:
    return doc("ResourceFlavor", name, dict(spec))


def group(covered: list[str], *flavors: tuple[str, dict[str, object]]) -> dict[str, object]:
    """``group(["CPU"], ("a", {"CPU": 4}))``; a quota value may be a dict of fields."""
    return {
        "coveredResources": covered,
        "flavors": [
            {
                "name": flavor,
                "resources": [
                    {"name": r, **(q if isinstance(q, dict) else {"nominalQuota": q})}
                    for r, q in quotas.items()
                ],
            }
            for flavor, quotas in flavors
        ],
    }


def cq(name: str, *groups: dict[str, object], **spec: object) -> dict[str, object]:
    return doc("ClusterQueue", name, {"resourceGroups": list(groups), **spec})


def queue(name: str, cluster_queue: str, **spec: object) -> dict[str, object]:
    return doc("Queue", name, {"clusterQueue": cluster_queue, **spec})


def problems_of(docs: list[dict[str, object]] | str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(docs)
    return info.value.problems


def where(problems: list[ConfigProblem]) -> set[tuple[str, str]]:
    return {(p.document, p.field) for p in problems}


BASE = [rf("a"), cq("cq", group(["CPU"], ("a", {"CPU": 4})))]
