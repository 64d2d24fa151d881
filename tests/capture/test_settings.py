"""Capture without a cluster: its settings, the runtime_env it gives a job, the chained
worker hook, and the checks that guard the patch. Fast; no Ray is started."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ray_queue.capture import boot, core, patch
from ray_queue.capture.errors import CaptureError, UnsupportedRayVersion
from ray_queue.capture.settings import (
    ENV_CAPTURE,
    ENV_NEXT_HOOK,
    ENV_PRIORITY,
    ENV_QUEUE,
    Settings,
    settings_from_env,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, None, id="unset"),
        pytest.param({ENV_CAPTURE: "0"}, None, id="zero"),
        pytest.param({ENV_CAPTURE: "off"}, None, id="off"),
        pytest.param({ENV_CAPTURE: "1"}, Settings("default", None), id="default-queue"),
        pytest.param(
            {ENV_CAPTURE: "TRUE", ENV_QUEUE: " team-a ", ENV_PRIORITY: "high"},
            Settings("team-a", "high"),
            id="queue-and-priority",
        ),
        pytest.param({ENV_CAPTURE: "yes", ENV_PRIORITY: ""}, Settings(), id="empty-priority"),
    ],
)
def test_settings_from_the_environment(environ: dict[str, str], expected: Settings | None) -> None:
    assert settings_from_env(environ) == expected


def test_an_unclear_capture_flag_is_refused() -> None:
    with pytest.raises(CaptureError, match="RAY_QUEUE_CAPTURE='maybe'"):
        settings_from_env({ENV_CAPTURE: "maybe"})


def test_the_job_runtime_env_carries_the_hook_and_the_settings() -> None:
    mine = {"env_vars": {"A": "1"}, "pip": ["x"]}
    env = core.job_runtime_env(mine, Settings("team-a", "high"))
    assert env["worker_process_setup_hook"] == patch.WORKER_SETUP_HOOK
    assert env["env_vars"] == {
        "A": "1",
        ENV_CAPTURE: "1",
        ENV_QUEUE: "team-a",
        ENV_PRIORITY: "high",
    }
    assert env["pip"] == ["x"]
    assert mine == {"env_vars": {"A": "1"}, "pip": ["x"]}  # the caller's dict is untouched
    # Applying it twice changes nothing (ray_queue.init inside a wrapped ray.init).
    assert core.job_runtime_env(env, Settings("team-a", "high")) == env


def test_a_hook_the_job_had_is_chained_and_a_function_hook_refused() -> None:
    env = core.job_runtime_env({"worker_process_setup_hook": "pkg.mod.setup"}, Settings())
    assert env["env_vars"][ENV_NEXT_HOOK] == "pkg.mod.setup"
    assert ENV_PRIORITY not in env["env_vars"]
    with pytest.raises(CaptureError, match="as a string"):
        core.job_runtime_env({"worker_process_setup_hook": print}, Settings())


calls: list[str] = []


def _chained_hook() -> None:
    calls.append("chained")


def test_the_worker_hook_runs_the_chained_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CAPTURE, raising=False)  # capture off: only the chained hook
    monkeypatch.setenv(ENV_NEXT_HOOK, f"{__name__}._chained_hook")
    calls.clear()
    boot.worker_setup()
    assert calls == ["chained"]


@pytest.mark.parametrize(
    ("version", "known"),
    [("2.60.0", True), ("2.60.3", True), ("2.59.1", False), ("2.61.0", False), ("3.0.0", False)],
)
def test_only_known_ray_versions_are_patched(version: str, known: bool) -> None:
    assert patch.ray_version_known(version) is known


def test_a_function_of_another_shape_is_refused() -> None:
    def not_wrapped() -> None:
        pass

    with pytest.raises(UnsupportedRayVersion, match="not the client_mode_wrap wrapper"):
        patch._cell(not_wrapped, "func")


@pytest.fixture
def uninstalled() -> Iterator[None]:
    patch.uninstall()
    yield
    patch.uninstall()


def test_install_reaches_every_binding_and_uninstall_restores_ray(uninstalled: None) -> None:
    pg_module = importlib.import_module("ray.util.placement_group")
    wrapper = pg_module.placement_group
    original = patch._cell(wrapper, "func").cell_contents
    try:  # Tune binds the function at import, as Train and AIR do
        bound_elsewhere: Any = importlib.import_module("ray.tune.execution.placement_groups")
    except ImportError:  # ray[tune]'s own dependencies missing
        bound_elsewhere = None

    def create(*args: Any) -> str:
        return "captured"

    patch.install(create, lambda pg: False)
    try:
        assert patch.installed()
        replaced = patch._cell(wrapper, "func").cell_contents
        assert replaced is not original
        # The wrapper object is what importers hold: its cell now leads to ``create``.
        assert replaced([{"CPU": 1}]) == "captured"
        if bound_elsewhere is not None:
            assert bound_elsewhere.placement_group is wrapper
    finally:
        patch.uninstall()
    assert patch._cell(wrapper, "func").cell_contents is original
    assert not patch.installed()


def test_the_start_up_line_with_the_variable_unset_installs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_CAPTURE, raising=False)
    before = list(sys.meta_path)
    boot.start()
    assert sys.meta_path == before
