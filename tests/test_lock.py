"""The hashed lock in requirements/ agrees with pyproject.toml and with what is installed.

pyproject.toml keeps version ranges for people who ``pip install ray-queue``; development,
CI and the image install exactly the versions in the lock (``make lock`` re-resolves it on
purpose). These tests fail when the two drift apart: a dependency added to or removed from
pyproject.toml without re-locking, a pin outside its range, two locks that disagree, or a
virtualenv that was not installed from the lock (the gRPC codegen test compares with the
code the *locked* grpcio-tools generates, so that must be what runs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RELOCK = "run `make lock` and commit requirements/ (see docs/testing.md)"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_OURS = "ray-queue (pyproject.toml)"
_OUR_BUILD = "ray-queue (pyproject.toml::build-system.requires)"


@dataclass
class Pin:
    version: Version
    hashes: int = 0
    wanted_by: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    """Each pinned package with its version, its number of hashes and who wants it (the
    ``# via`` annotations pip-compile writes under it)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            current = pins.setdefault(canonicalize_name(match[1]), Pin(Version(match[2])))
        elif current is not None and "--hash=sha256:" in line:
            current.hashes += 1
        elif current is not None and line.startswith("    #"):
            text = line.strip("# ").removeprefix("via").strip()
            if text:
                current.wanted_by.add(text)
    return pins


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def direct(*, extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def build_requirements() -> dict[str, Requirement]:
    build = pyproject()["build-system"]
    assert isinstance(build, dict)
    return {canonicalize_name(r.name): r for r in map(Requirement, build["requires"])}


LOCKS = [
    pytest.param(RUNTIME_LOCK, (), id="runtime"),
    pytest.param(DEV_LOCK, ("test",), id="dev"),
]


@pytest.mark.parametrize(("lock", "extras"), LOCKS)
def test_every_dependency_is_pinned_within_its_range(lock: Path, extras: tuple[str, ...]) -> None:
    pins = read_lock(lock)
    wanted = direct(extras=extras) | build_requirements()
    missing = sorted(name for name in wanted if name not in pins)
    assert not missing, f"{lock.name} lacks {missing}: {RELOCK}"
    outside = {
        name: f"{pins[name].version} not in {req.specifier}"
        for name, req in wanted.items()
        if not req.specifier.contains(pins[name].version, prereleases=True)
    }
    assert not outside, f"{lock.name} pins outside pyproject.toml's ranges {outside}: {RELOCK}"


@pytest.mark.parametrize(("lock", "extras"), LOCKS)
def test_the_lock_wants_nothing_pyproject_no_longer_asks_for(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = read_lock(lock)
    ours = {name for name, pin in pins.items() if _OURS in pin.wanted_by}
    build = {name for name, pin in pins.items() if _OUR_BUILD in pin.wanted_by}
    assert ours == set(direct(extras=extras)), f"{lock.name} is stale: {RELOCK}"
    assert build == set(build_requirements()), f"{lock.name} is stale: {RELOCK}"


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_has_hashes(lock: Path) -> None:
    unhashed = sorted(name for name, pin in read_lock(lock).items() if pin.hashes == 0)
    assert not unhashed, f"{lock.name}: no hashes for {unhashed}: {RELOCK}"


def test_the_runtime_and_dev_locks_agree() -> None:
    runtime, dev = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)
    assert set(runtime) <= set(dev), f"dev.txt lacks {sorted(set(runtime) - set(dev))}"
    differ = {
        name: (str(pin.version), str(dev[name].version))
        for name, pin in runtime.items()
        if pin.version != dev[name].version
    }
    assert not differ, f"runtime.txt and dev.txt pin different versions {differ}: {RELOCK}"


def test_this_environment_was_installed_from_the_dev_lock() -> None:
    differ = {}
    for name, pin in read_lock(DEV_LOCK).items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pin.version:
            differ[name] = (str(pin.version), str(installed))
    assert not differ, (
        f"installed versions differ from requirements/dev.txt (locked, installed): {differ}; "
        "run `make clean install`"
    )
