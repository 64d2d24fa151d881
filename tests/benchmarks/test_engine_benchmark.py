"""The engine benchmark's simulator and report, on a shape small enough for a unit test.

These check that the benchmark measures what it claims (every workload runs, the
bookkeeping agrees with the engine, the report has every field with sane values), never
how fast anything is: speed belongs in the benchmark's own output.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import engine as bench
from benchmarks.scenarios import KUEUE_BASELINE, KUEUE_LARGE, TINY, Scenario, workload_spec
from ray_queue.engine.config import ReclaimWithinCohort, WithinClusterQueue

REQUIRED_FIELDS = {
    "workloads",
    "makespan_s",
    "ideal_makespan_s",
    "mean_time_to_admission_s",
    "utilization",
    "engine_cpu_s",
    "decisions_per_s",
    "peak_rss_mb",
    "command",
    "machine",
    "git_commit",
}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    out = tmp_path_factory.mktemp("bench") / "engine-tiny.json"
    bench.run(TINY, out, command="python -m benchmarks.engine --scenario tiny --out x.json")
    return json.loads(out.read_text()), out


@pytest.mark.timeout(60)
def test_report_has_every_field(tiny_report: tuple[dict[str, object], Path]) -> None:
    doc, _ = tiny_report
    missing = REQUIRED_FIELDS - doc.keys()
    assert not missing
    assert set(doc["mean_time_to_admission_s"]) == {"small", "medium", "large"}  # type: ignore[arg-type]
    machine = doc["machine"]
    assert isinstance(machine, dict)
    assert {"cores", "python", "platform"} <= machine.keys()
    assert doc["command"] == "python -m benchmarks.engine --scenario tiny --out x.json"
    by_call = doc["engine_cpu_s_by_call"]
    assert isinstance(by_call, dict)
    assert set(by_call) == {"finish", "submit", "schedule"}
    assert sum(by_call.values()) == pytest.approx(doc["engine_cpu_s"])


@pytest.mark.timeout(60)
def test_every_workload_finishes_no_sooner_than_ideal(
    tiny_report: tuple[dict[str, object], Path],
) -> None:
    doc, _ = tiny_report
    assert doc["workloads"] == TINY.workload_count == 30
    assert doc["finished"] == 30
    assert doc["unfinished"] == 0
    # 1 cohort x 2 ClusterQueues of 4 CPU: 26 CPU·s of work on 8 CPUs is 3.25 s, later
    # than the last arrival could finish (1.8 s).
    assert doc["ideal_makespan_s"] == pytest.approx(3.25)
    assert doc["makespan_s"] >= doc["ideal_makespan_s"]  # type: ignore[operator]
    assert 0 < doc["utilization"] <= 1  # type: ignore[operator]
    for value in doc["mean_time_to_admission_s"].values():  # type: ignore[attr-defined]
        assert value >= 0
    assert doc["engine_cpu_s"] >= 0  # type: ignore[operator]
    assert doc["peak_rss_mb"] > 0  # type: ignore[operator]


@pytest.mark.timeout(60)
def test_decisions_account_for_every_run(tiny_report: tuple[dict[str, object], Path]) -> None:
    doc, _ = tiny_report
    kinds = doc["decisions_by_kind"]
    assert isinstance(kinds, dict)
    # The shape is busy enough that large workloads preempt smaller ones...
    assert kinds.get("preempt", 0) > 0
    # ...and every preempted run is admitted again, nothing else happens.
    assert kinds["admit"] == doc["workloads"] + kinds["preempt"]
    assert set(kinds) <= {"admit", "preempt"}
    assert doc["decisions"] == sum(kinds.values())
    classes = doc["classes"]
    assert isinstance(classes, dict)
    assert sum(c["evictions"] for c in classes.values()) == kinds["preempt"]
    # Preempted runs lost work, so useful work is less than all work done.
    assert doc["wasted_cpu_s"] > 0  # type: ignore[operator]
    assert doc["utilization"] < doc["busy_utilization"]  # type: ignore[operator]


@pytest.mark.timeout(60)
def test_plot_is_written_beside_the_json(tiny_report: tuple[dict[str, object], Path]) -> None:
    _, out = tiny_report
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(60)
def test_bookkeeping_matches_the_engine_at_every_step() -> None:
    sim = bench.simulate(TINY, verify=True)
    assert all(t.finished_ms is not None for t in sim.tracks.values())
    capacity = TINY.cluster_queues_per_cohort * TINY.nominal_cpu_milli / 1000
    for sample in sim.samples:
        assert all(0 <= used <= capacity for used in sample.usage_cpu.values())
        assert all(n >= 0 for n in sample.pending.values())
    assert sim.samples[-1].pending == {"cohort-0": 0}


@pytest.mark.timeout(60)
def test_without_preemption_nothing_is_lost_and_runs_are_deterministic() -> None:
    calm = replace(
        TINY,
        reclaim_within_cohort=ReclaimWithinCohort.NEVER,
        within_cluster_queue=WithinClusterQueue.NEVER,
    )
    first = bench.report(bench.simulate(calm), command="x", plot_path=None)
    second = bench.report(bench.simulate(calm), command="x", plot_path=None)
    assert first["decisions_by_kind"] == {"admit": 30}
    assert first["wasted_cpu_s"] == 0
    assert first["utilization"] == pytest.approx(first["busy_utilization"])
    for key in ("makespan_s", "mean_time_to_admission_s", "decisions_by_kind"):
        assert first[key] == second[key]


@pytest.mark.timeout(60)
def test_cli_writes_report_and_returns_success(tmp_path: Path) -> None:
    out = tmp_path / "cli.json"
    assert bench.main(["--scenario", "tiny", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["scenario"] == "tiny"
    assert doc["command"].endswith(f"--scenario tiny --out {out}")
    assert out.with_suffix(".png").exists()


@pytest.mark.parametrize(
    ("scenario", "workloads", "cluster_queues", "capacity_cpu", "ideal_s"),
    [
        # 39,600 CPU·s of work on 600 CPUs.
        pytest.param(KUEUE_BASELINE, 15_000, 30, 600, 66.0, id="baseline"),
        # 80.5 CPU·s of work per 20-CPU ClusterQueue.
        pytest.param(KUEUE_LARGE, 50_000, 1_000, 20_000, 4.025, id="large"),
    ],
)
def test_kueue_shapes(
    scenario: Scenario, workloads: int, cluster_queues: int, capacity_cpu: int, ideal_s: float
) -> None:
    assert scenario.workload_count == workloads
    assert scenario.cluster_queue_count == cluster_queues
    assert scenario.capacity_cpu_milli == capacity_cpu * 1000
    assert scenario.ideal_makespan_s() == pytest.approx(ideal_s)
    config = scenario.to_queue_config()
    assert len(config.cluster_queues) == cluster_queues
    assert len(config.cohorts) == scenario.cohorts
    cq = next(iter(config.cluster_queues.values()))
    assert cq.cohort in config.cohorts
    quota = cq.quotas()[("rf", "CPU")]
    assert (quota.nominal, quota.borrowing_limit) == (20_000, 100_000)


def test_arrivals_follow_kueues_generator_timing() -> None:
    arrivals = list(TINY.arrivals())
    assert len(arrivals) == TINY.workload_count
    assert [a.at_ms for a in arrivals] == sorted(a.at_ms for a in arrivals)
    assert len({a.workload for a in arrivals}) == len(arrivals)
    # The i-th workload of a set is created after i + 1 intervals.
    large = [
        a for a in arrivals if a.workload_class.name == "large" and a.cluster_queue.endswith("cq-0")
    ]
    assert [a.at_ms for a in large] == [400, 800]
    spec = workload_spec(large[0])
    assert spec.created_at == 0.4
    assert spec.total_request() == {"CPU": 4000}
    assert spec.priority_class in TINY.to_queue_config().priority_classes


@pytest.mark.timeout(60)
def test_a_serial_placer_delays_every_run_and_loses_nothing() -> None:
    instant = bench.report(bench.simulate(TINY), command="x", plot_path=None)
    sim = bench.simulate(TINY, placement_rate_per_s=10.0, verify=True)
    placed = bench.report(sim, command="x", plot_path=None)
    assert placed["finished"] == TINY.workload_count
    assert placed["placement_rate_per_s"] == 10.0
    # One group every 100 ms: the last of all admissions (re-admissions included) is
    # placed no sooner than that many turns, and then still has to run.
    admissions = placed["decisions_by_kind"]["admit"]
    assert placed["makespan_s"] >= admissions * 0.1
    assert placed["makespan_s"] > instant["makespan_s"]
    # The engine's own targets do not apply to a model of Ray's placement.
    assert placed["targets"] == {}
    assert instant["placement_rate_per_s"] is None


def test_a_placement_rate_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        bench.simulate(TINY, placement_rate_per_s=0.0)
    with pytest.raises(SystemExit) as exited:
        bench.main(["--scenario", "tiny", "--out", "x.json", "--placement-rate", "-5"])
    assert exited.value.code == 2
    assert "--placement-rate must be > 0" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_kueue_pace_runs_every_workload_and_reports_evictions_per_class() -> None:
    sim = bench.simulate(TINY, kueue_cycle_ms=50, verify=True)
    paced = bench.report(sim, command="x", plot_path=None)
    ours = bench.report(bench.simulate(TINY), command="x", plot_path=None)
    assert paced["finished"] == TINY.workload_count
    assert (paced["pace"], paced["kueue_cycle_ms"]) == ("kueue", 50)
    assert (ours["pace"], ours["kueue_cycle_ms"]) == ("rounds", None)
    # One round per call: the cycles between events are calls of their own.
    assert paced["schedule_calls"] > ours["schedule_calls"]
    for doc in (paced, ours):
        evictions = doc["evictions_by_class"]
        assert {n: c["ours"] for n, c in evictions.items()} == {
            n: c["evictions"] for n, c in doc["classes"].items()
        }
        assert sum(c["ours"] for c in evictions.values()) == doc["decisions_by_kind"].get(
            "preempt", 0
        )
    # An experiment, not the engine's own run: no targets.
    assert paced["targets"] == {}


def test_kueues_own_evictions_stand_beside_ours() -> None:
    doc = bench.report(bench.simulate(TINY), command="x", plot_path=None)
    assert all(c["kueue"] is None for c in doc["evictions_by_class"].values())
    assert KUEUE_BASELINE.kueue is not None
    assert dict(KUEUE_BASELINE.kueue.evictions) == {"small": 65, "medium": 56, "large": 8}


def test_a_kueue_cycle_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="must take > 0 ms"):
        bench.simulate(TINY, kueue_cycle_ms=0)
    with pytest.raises(SystemExit) as exited:
        bench.main(
            ["--scenario", "tiny", "--out", "x.json", "--pace", "kueue", "--kueue-cycle-ms", "0"]
        )
    assert exited.value.code == 2
    assert "--kueue-cycle-ms must be > 0" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_waiting_as_long_as_lower_priority_work_runs_loses_nothing(tmp_path: Path) -> None:
    """TINY's lower-priority work runs at most 0.5 s: a large that waits that long finds
    its quota freed, held for it, and evicts nothing (at once, it evicts mediums)."""
    out = tmp_path / "wait.json"
    argv = ["--scenario", "tiny", "--out", str(out), "--wait-before-preempting-s", "0.5"]
    assert bench.main(argv) == 0
    waited = json.loads(out.read_text())
    at_once = bench.report(bench.simulate(TINY), command="x", plot_path=None)
    assert waited["shape"]["wait_before_preempting_s"] == 0.5
    assert at_once["shape"]["wait_before_preempting_s"] == 0.0
    assert waited["finished"] == TINY.workload_count
    assert at_once["wasted_cpu_s"] > 0
    assert waited["wasted_cpu_s"] == 0
    assert "preempt" not in waited["decisions_by_kind"]
    with pytest.raises(SystemExit):
        bench.main(["--scenario", "tiny", "--out", str(out), "--wait-before-preempting-s", "-1"])
