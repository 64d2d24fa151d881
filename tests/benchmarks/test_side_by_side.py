"""The side-by-side benchmark reports every system in one shape, and compares like with like.

Checked here: Kueue's generator configs are the shapes our scenarios replay (when Kueue's
module is at hand), the report's ratios and targets, that Kueue is skipped with a reason
when its tools are absent instead of failing, and the JSON of a tiny run of ray-queue and
plain Ray end to end (Kueue has no tiny shape). Never how fast anything is.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import side_by_side
from benchmarks.scenarios import KUEUE_BASELINE, TINY
from tests.k8s import toolchain


def _generator(
    cohorts: int = 5, queues: int = 6, classes: tuple[tuple[str, int, int, int, int, int], ...] = ()
) -> dict[str, Any]:
    """Kueue's generator.yaml schema, built the way its baseline file reads."""
    classes = classes or (
        ("small", 350, 100, 200, 50, 1),
        ("medium", 100, 500, 500, 100, 5),
        ("large", 50, 1200, 1000, 200, 20),
    )
    return {
        "cohorts": [
            {
                "className": "cohort",
                "count": cohorts,
                "queuesSets": [
                    {
                        "className": "cq",
                        "count": queues,
                        "nominalQuota": 20,
                        "borrowingLimit": 100,
                        "reclaimWithinCohort": "Any",
                        "withinClusterQueue": "LowerPriority",
                        "workloadsSets": [
                            {
                                "count": count,
                                "creationIntervalMs": interval,
                                "workloads": [
                                    {
                                        "className": name,
                                        "runtimeMs": runtime,
                                        "priority": priority,
                                        "request": cpu,
                                    }
                                ],
                            }
                            for name, count, interval, runtime, priority, cpu in classes
                        ],
                    }
                ],
            }
        ]
    }


def test_a_generator_config_of_the_same_shape_has_no_differences() -> None:
    assert side_by_side.shape_differences(KUEUE_BASELINE, _generator()) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(lambda g: g["cohorts"][0].update(count=6), "cohorts", id="cohorts"),
        pytest.param(
            lambda g: g["cohorts"][0]["queuesSets"][0].update(borrowingLimit=None),
            "borrowingLimit",
            id="borrowing-limit",
        ),
        pytest.param(
            lambda g: g["cohorts"][0]["queuesSets"][0]["workloadsSets"][0].update(count=35),
            "workload classes",
            id="class-count",
        ),
    ],
)
def test_a_different_generator_config_is_named(change: Any, named: str) -> None:
    generator = copy.deepcopy(_generator())
    change(generator)
    diffs = side_by_side.shape_differences(KUEUE_BASELINE, generator)
    assert len(diffs) == 1 and diffs[0].startswith(named)


@pytest.mark.skipif(
    toolchain.kueue_bench_missing() is not None, reason="Kueue's benchmark tools are not built"
)
@pytest.mark.parametrize("shape", ["baseline", "large"])
def test_kueue_generator_configs_are_our_scenarios(shape: str) -> None:
    import yaml

    spec = side_by_side.SHAPES[shape]
    assert spec.kueue_generator is not None
    project = toolchain.module_dir(toolchain.KUEUE_MODULE, toolchain.KUEUE_VERSION)
    generator = yaml.safe_load((project / spec.kueue_generator).read_text())
    assert side_by_side.shape_differences(spec.scenario, generator) == []


def test_kueue_is_skipped_with_a_reason_when_its_tools_are_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_QUEUE_K8S_CACHE", str(tmp_path / "empty-cache"))
    result = side_by_side.run_kueue(side_by_side.SHAPES["baseline"], tmp_path, build=False)
    assert set(result) == {"skipped"}
    assert "kueue-perf-runner" in result["skipped"] and "--kueue" in result["skipped"]


def test_timestamps_of_kueues_summary_parse_with_nanoseconds() -> None:
    seconds = side_by_side._seconds_between(
        "2026-12-07T09:00:00.123456789Z", "2026-12-07T09:06:16.623456Z"
    )
    assert seconds == pytest.approx(376.5)
    assert side_by_side._seconds_between(None, "2026-12-07T09:00:00Z") is None


def _systems(ray_wall_s: float, ray_large_tta_s: float) -> dict[str, dict[str, Any]]:
    tta = {"small": 214.0, "medium": 96.0, "large": 32.0}
    return {
        "kueue": {"wall_s": 376.0, "mean_time_to_admission_s": tta, "cpu_s": 94.0},
        "ray_queue_engine": {"wall_s": 76.8, "cpu_s": 2.4},
        "ray_queue_ray": {
            "wall_s": ray_wall_s,
            "mean_time_to_admission_s": {"small": 70.0, "medium": 40.0, "large": ray_large_tta_s},
        },
        "plain_ray": {
            "wall_s": 116.8,
            "mean_time_to_admission_s": {"small": 14.0, "medium": 16.6, "large": 24.4},
        },
    }


def test_ratios_and_targets_compare_the_same_run() -> None:
    systems = _systems(ray_wall_s=105.0, ray_large_tta_s=0.2)
    ratios = side_by_side.ratios(systems)
    assert ratios["ray_queue_ray_wall_vs_kueue"] == pytest.approx(105.0 / 376.0)
    assert ratios["ray_queue_engine_wall_vs_kueue"] == pytest.approx(76.8 / 376.0)
    assert ratios["ray_queue_ray_wall_vs_plain_ray"] == pytest.approx(105.0 / 116.8)
    targets = side_by_side.targets(KUEUE_BASELINE, systems)
    assert targets["ray_queue_ray_wall_vs_kueue"]["met"] is False  # 0.28 > 0.25
    assert targets["ray_queue_ray_time_to_admission_vs_kueue.large"]["met"] is True
    assert targets["ray_queue_ray_time_to_admission_vs_kueue.small"]["met"] is True
    assert targets["ray_queue_engine_cpu_vs_kueue"]["value"] == pytest.approx(2.4 / 94.0)
    # The highest-priority class: 24.4 s under plain Ray against 0.2 s queued = 122x.
    assert targets["plain_ray_vs_ray_queue_time_to_admission.large"]["value"] == pytest.approx(122)
    assert targets["plain_ray_vs_ray_queue_time_to_admission.large"]["met"] is True
    assert targets["ray_queue_ray_wall_vs_plain_ray"]["met"] is True


def test_targets_of_a_skipped_system_are_not_judged() -> None:
    systems = _systems(ray_wall_s=105.0, ray_large_tta_s=0.2)
    systems["kueue"] = {"skipped": "absent"}
    targets = side_by_side.targets(KUEUE_BASELINE, systems)
    assert targets["ray_queue_ray_wall_vs_kueue"] == {"max": 0.25, "value": None, "met": None}
    assert targets["ray_queue_ray_wall_vs_plain_ray"]["met"] is True


def test_a_run_cut_short_by_its_budget_has_no_wall_time_to_compare() -> None:
    systems = _systems(ray_wall_s=105.0, ray_large_tta_s=0.2)
    systems["plain_ray"].update(finished=31_000, workloads=50_000)
    ratios = side_by_side.ratios(systems)
    assert ratios["ray_queue_ray_wall_vs_plain_ray"] is None
    assert ratios["ray_queue_ray_wall_vs_kueue"] == pytest.approx(105.0 / 376.0)
    targets = side_by_side.targets(KUEUE_BASELINE, systems)
    assert targets["ray_queue_ray_wall_vs_plain_ray"]["met"] is None


@pytest.mark.ray
@pytest.mark.timeout(150)
def test_tiny_run_reports_every_system(tmp_path: Path) -> None:
    out = tmp_path / "side-by-side-tiny.json"
    argv = ["--shape", "tiny", "--out", str(out), "--no-build", "--no-chart"]
    assert side_by_side.main(argv) == 0
    doc = json.loads(out.read_text())

    assert set(doc["systems"]) == set(side_by_side.SYSTEMS)
    assert doc["systems"]["kueue"] == {"skipped": "Kueue has no generator config for shape 'tiny'"}
    classes = {c.name for c in TINY.classes}
    for name in ("ray_queue_engine", "ray_queue_ray", "plain_ray"):
        system = doc["systems"][name]
        assert system["wall_s"] >= TINY.ideal_makespan_s() * 0.99, name
        assert set(system["mean_time_to_admission_s"]) == classes, name
        assert all(v >= 0 for v in system["mean_time_to_admission_s"].values()), name
        assert set(system["evictions"]) == classes, name
        assert system["finished"] == system["workloads"] == TINY.workload_count, name
        assert system["command"].startswith("python -m benchmarks."), name
        assert doc["commands"][name] == system["command"]
    assert doc["systems"]["plain_ray"]["evictions"] == dict.fromkeys(classes, 0)
    ray_queue = doc["systems"]["ray_queue_ray"]
    assert ray_queue["manager_cpu_s"] > 0
    assert set(ray_queue["admission_breakdown_s"]) == classes
    assert set(doc["ratios"]) == {
        "ray_queue_ray_wall_vs_kueue",
        "ray_queue_engine_wall_vs_kueue",
        "ray_queue_ray_wall_vs_plain_ray",
    }
    assert doc["ratios"]["ray_queue_ray_wall_vs_kueue"] is None
    assert doc["ratios"]["ray_queue_ray_wall_vs_plain_ray"] > 0
    assert doc["machine"]["cores"] >= 1
    assert len(doc["load_average_before"]) == 3 and len(doc["load_average_after"]) == 3
    assert {"ray", "kueue", "etcd", "kube_apiserver"} <= doc["versions"].keys()
    assert doc["command"] == "python -m benchmarks.side_by_side " + " ".join(argv)


@pytest.mark.timeout(120)
def test_a_system_that_fails_is_reported_and_the_others_still_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def runner_timed_out(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise side_by_side.SideBySideError("the runner exited 1 without its summary")

    # The failure stands in for Kueue's runner hitting its own timeout on a loaded machine.
    monkeypatch.setattr(side_by_side, "run_plain_ray", runner_timed_out)
    out = tmp_path / "side-by-side-tiny.json"
    argv = ["--shape", "tiny", "--out", str(out), "--systems", "ray_queue_engine,plain_ray"]
    assert side_by_side.main([*argv, "--no-build", "--no-chart"]) == 1
    doc = json.loads(out.read_text())

    assert doc["systems"]["plain_ray"]["failed"] is True
    assert "without its summary" in doc["systems"]["plain_ray"]["skipped"]
    assert doc["systems"]["ray_queue_engine"]["workloads"] == TINY.workload_count
    assert doc["ratios"]["ray_queue_ray_wall_vs_plain_ray"] is None
