"""The real-Ray benchmarks run end to end on tiny inputs and report every field sanely.

They check that ``benchmarks.ray_e2e``, ``benchmarks.overhead`` and
``benchmarks.ray_ceiling`` measure what they claim — every workload of the tiny shape is
submitted, placed, held and removed; both sides of each comparison complete; churned
groups are counted once placed — never how fast: speed is the benchmarks' own output.
Each benchmark starts (and shuts down) its own small local Ray cluster.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import ray

from benchmarks import overhead, ray_ceiling, ray_e2e
from benchmarks.scenarios import TINY

pytestmark = pytest.mark.ray

E2E_FIELDS = {
    "makespan_s",
    "ideal_makespan_s",
    "mean_time_to_admission_s",
    "admissions_per_s",
    "manager_peak_rss_mb",
    "preemptions",
    "workloads_finished",
    "time_scale",
    "command",
    "machine",
    "load_average",
    "git_commit",
}


@pytest.fixture(autouse=True)
def _no_leftover_ray() -> Any:
    yield
    # Each benchmark owns its cluster; one left running would leak into the next test.
    assert not ray.is_initialized()


@pytest.mark.timeout(120)
def test_ray_e2e_tiny_runs_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "ray-e2e-tiny.json"
    command = "python -m benchmarks.ray_e2e --scenario tiny --out x.json"
    ray_e2e.run(TINY, out, command=command, time_scale=1.0, timeout_s=90)
    doc = json.loads(out.read_text())

    assert not (E2E_FIELDS - doc.keys())
    assert doc["command"] == command
    assert doc["workloads"] == TINY.workload_count
    assert doc["workloads_finished"] == TINY.workload_count
    assert doc["unfinished"] == 0 and not doc["timed_out"]
    assert doc["ideal_makespan_s"] == pytest.approx(TINY.ideal_makespan_s())
    # Every group is held for its whole runtime after its arrival: nothing can beat ideal.
    assert doc["makespan_s"] >= doc["ideal_makespan_s"]
    assert set(doc["mean_time_to_admission_s"]) == {"small", "medium", "large"}
    assert all(v >= 0 for v in doc["mean_time_to_admission_s"].values())
    assert all(c["mean_admitted_to_placed_s"] >= 0 for c in doc["classes"].values())
    # At least one admission per workload, one more per preemption that was re-admitted.
    assert doc["admissions"] >= doc["workloads"]
    assert doc["admissions_per_s"] > 0
    assert doc["preemptions"] >= 0
    assert doc["preemptions"] == sum(c["preemptions"] for c in doc["classes"].values())
    assert doc["manager_peak_rss_mb"] is not None and doc["manager_peak_rss_mb"] > 10
    assert doc["manager_cpu_s"] is not None and doc["manager_cpu_s"] > 0
    for c in doc["classes"].values():
        # The three parts, matched by workload id with the manager's own times, add up
        # to the time to admission the driver saw.
        parts = c["admission_breakdown_s"]
        assert parts is not None and set(parts) == {
            "to_manager",
            "manager_decides",
            "event_to_driver",
        }
        assert sum(parts.values()) == pytest.approx(c["mean_time_to_admission_s"], abs=1e-3)
        assert parts["manager_decides"] >= 0
    assert doc["time_scale"] == 1.0
    assert doc["ray_cluster"]["logical_cpus"] == TINY.capacity_cpu_milli // 1000
    assert set(doc["targets"]) == {"makespan_over_ideal"}


@pytest.mark.timeout(30)
def test_ray_e2e_refuses_a_clock_that_does_not_move(tmp_path: Path) -> None:
    # Checked before any cluster starts.
    with pytest.raises(ValueError):
        ray_e2e.run(TINY, tmp_path / "x.json", command="x", time_scale=0)


@pytest.mark.timeout(120)
def test_overhead_tiny_measures_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    argv = ["--out", str(out), "--pg-count", "10", "--task-count", "20", "--repetitions", "2"]
    assert overhead.main(argv) == 0
    doc = json.loads(out.read_text())

    for name in ("pg_ratio", "task_ratio"):
        assert math.isfinite(doc[name]) and doc[name] > 0
    assert doc["repetitions"] == 2
    for part, count in (("placement_groups", 10), ("tasks", 20)):
        section = doc[part]
        assert section["count"] == count
        for side in ("raw", "queued"):
            assert len(section[side]["seconds"]) == 2
            assert all(s > 0 for s in section[side]["seconds"])
            assert section[side]["median_per_s"] > 0
            assert section[side]["spread"] >= 0
        assert len(section["ratio_per_repetition"]) == 2
    cpu = {side: doc["tasks"][side]["cpu_ms_per_item"] for side in ("raw", "queued")}
    for side in ("raw", "queued"):
        # A process's CPU time moves in clock ticks (10 ms), and 20 tasks can cost a role
        # less than one: only the whole is sure to be above zero.
        assert cpu[side]["total"] > 0 and all(v >= 0 for v in cpu[side].values())
        parts = sum(v for role, v in cpu[side].items() if role != "total")
        assert cpu[side]["total"] >= parts * 0.999
    assert cpu["queued"]["manager"] > 0
    per_slot = doc["tasks"]["raw_per_slot"]
    assert per_slot["slots"] == 4 and len(per_slot["seconds"]) == 2
    assert doc["tasks"]["ratio_to_raw_per_slot"] > 0
    assert doc["command"].startswith("python -m benchmarks.overhead")
    assert {"machine", "load_average", "git_commit", "targets"} <= doc.keys()


@pytest.mark.timeout(120)
def test_ray_ceiling_counts_the_groups_ray_placed() -> None:
    [point] = ray_ceiling.measure(
        [ray_ceiling.Point(live=5, in_flight=2)], seconds=1.0, repetitions=2
    )
    assert point["live_groups"] == 5 and point["in_flight"] == 2
    assert len(point["placed_per_s"]) == 2
    assert all(rate > 0 for rate in point["placed_per_s"])
    assert min(point["placed_per_s"]) <= point["median_placed_per_s"] <= max(point["placed_per_s"])
    doc = ray_ceiling.report([point], command="x", seconds=1.0, repetitions=2)
    assert {"machine", "load_average", "git_commit", "points", "ray_cluster"} <= doc.keys()


@pytest.mark.timeout(30)
def test_ray_ceiling_refuses_a_point_that_fills_the_node() -> None:
    # Checked before any cluster starts.
    with pytest.raises(ValueError, match="free"):
        ray_ceiling.measure(
            [ray_ceiling.Point(live=ray_ceiling.NODE_CPUS, in_flight=1)], seconds=1, repetitions=1
        )
