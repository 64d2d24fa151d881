"""The image the chart runs (the top-level Dockerfile), checked without building it.

No Docker engine runs on the development machine or in CI (docs/helm.md, "Build the
image"), so the Dockerfile is checked for its content: its base image's Ray and Python, the
chart's ``rayVersion``, the lock and the Ray the tests run are one version; it installs
from the hashed lock, and runs as a non-root user. (In ``tests/`` rather than
``tests/helm/``, whose tests all need the Kubernetes toolchain.)
"""

from __future__ import annotations

import re
from pathlib import Path

import ray
import yaml
from packaging.version import Version

from tests.test_lock import DEV_LOCK, RUNTIME_LOCK, direct, read_lock

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
#: ``FROM rayproject/ray:2.60.0-py311`` (a suffix such as ``-gpu`` may follow).
BASE = re.compile(r"^FROM rayproject/ray:(?P<ray>[\d.]+)-py3(?P<minor>\d+)\S*\s*$", re.M)


def base() -> re.Match[str]:
    froms = BASE.findall(DOCKERFILE)
    assert len(froms) == 1, "the Dockerfile must start FROM rayproject/ray:<ray>-py3<minor>"
    match = BASE.search(DOCKERFILE)
    assert match is not None
    return match


def instructions(keyword: str) -> list[str]:
    """Each ``keyword`` instruction's arguments, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m[1] for m in re.finditer(rf"^{keyword}\s+(.*)$", joined, re.M)]


def test_ray_version_is_the_same_everywhere() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "ray-queue" / "values.yaml").read_text())
    versions = {
        "Dockerfile FROM": base()["ray"],
        "helm values.yaml rayVersion": str(chart["rayVersion"]),
        "requirements/runtime.txt": str(read_lock(RUNTIME_LOCK)["ray"].version),
        "requirements/dev.txt": str(read_lock(DEV_LOCK)["ray"].version),
        "the Ray the tests run": ray.__version__,
    }
    assert len(set(versions.values())) == 1, (
        f"Ray versions differ: {versions}; move them together (docs/helm.md, 'Build the image')"
    )
    assert direct()["ray"].specifier.contains(Version(ray.__version__))


def test_the_base_image_has_the_python_the_lock_is_for() -> None:
    header = re.search(r"pip-compile with Python 3\.(\d+)", RUNTIME_LOCK.read_text())
    assert header is not None
    assert base()["minor"] == header[1], "the image's Python is not the one the lock is for"


def test_everything_installs_from_the_hashed_lock() -> None:
    runs = [r for r in instructions("RUN") if "pip install" in r]
    assert any("--require-hashes" in r and "requirements/runtime.txt" in r for r in runs)
    # Anything else pip installs brings no dependencies of its own: the lock has them all.
    assert all("--require-hashes" in r or "--no-deps" in r for r in runs), runs


def test_the_image_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
