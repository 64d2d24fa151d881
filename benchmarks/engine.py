"""Replay Kueue's scheduler benchmark shapes through the engine, in simulated time.

Kueue's own benchmark runs its scheduler against a real API server, so its numbers mix
scheduling quality with API latency. This benchmark isolates the engine: a
discrete-event simulator feeds it the same arrivals, runs every admitted workload for
exactly its runtime, and measures two separate things:

* **schedule quality** in simulated time: makespan against the ideal bound, mean time
  to admission per workload class, utilization, work lost to preemption;
* **engine cost** on this machine: process CPU time spent inside Engine calls only
  (not the simulator's own bookkeeping, sampling or plotting), decisions per CPU
  second, and the process's peak RSS.

Each distinct event time is one step: completions are reported (``finish``), arrivals
submitted (``submit``), the ``ManualClock`` moved to that time and ``schedule()``
called once. ADMIT starts a run; PREEMPT stops it, and the work done so far is lost
(the workload re-runs from scratch when re-admitted), as for a killed pod.

    .venv/bin/python -m benchmarks.engine --scenario kueue-baseline \
        --out benchmarks/results/engine-kueue-baseline.json

writes the JSON report, a PNG of usage and pending per cohort beside it (same stem),
and prints a table and the command that reproduces it.

``--placement-rate R`` models what real Ray adds: its GCS places placement groups one at
a time, so an admitted workload starts only when a serial placer working at ``R`` groups
a second reaches it (its quota is held from admission, as the manager's group holds it in
Ray). With ``R`` at the best rate raw Ray reaches on a machine (``benchmarks.ray_ceiling``,
which churns one removal per placement as this does), the makespan is a lower bound for
any scheduler that gives each workload its own Ray placement group there.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import provenance
from benchmarks.scenarios import SCENARIOS, Arrival, Scenario, workload_spec
from ray_queue.engine.clock import ManualClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import Decision, DecisionKind, WorkloadId

REPO_ROOT = Path(__file__).resolve().parent.parent

#: What each shape must achieve (docs/contract.md §8, the benchmark issue). Kept here, not
#: in the scenarios, because a real-Ray run of the same shape has other targets.
TARGETS: dict[str, dict[str, float]] = {
    # Issue 18: work lost to evictions at most 3 % of the useful work, makespan 1.1 x ideal.
    "kueue-baseline": {"makespan_over_ideal_max": 1.1, "wasted_over_useful_max": 0.03},
    "kueue-large": {"engine_cpu_s_max": 30.0, "peak_rss_mb_max": 1024.0},
}


@dataclass(slots=True)
class _Track:
    """What the simulator knows about one workload (mutable: it changes every event)."""

    arrival: Arrival
    #: Bumped on every admission so a completion scheduled for a preempted run is ignored.
    run: int = 0
    running_since_ms: int | None = None
    first_admitted_ms: int | None = None
    last_admitted_ms: int | None = None
    finished_ms: int | None = None
    evictions: int = 0


@dataclass(slots=True)
class Sample:
    """The cluster at one simulated instant, per cohort (CPUs and workload counts)."""

    at_s: float
    usage_cpu: dict[str, float]
    pending: dict[str, int]


@dataclass(slots=True)
class Simulation:
    """Raw measurements of one run; ``report`` turns them into the JSON document."""

    scenario: Scenario
    tracks: dict[WorkloadId, _Track]
    samples: list[Sample] = field(default_factory=list)
    engine_cpu_s: float = 0.0
    engine_wall_s: float = 0.0
    engine_cpu_s_by_call: dict[str, float] = field(default_factory=dict)
    run_wall_s: float = 0.0
    schedule_calls: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    #: milli-CPU x ms of runs cut short by preemption.
    wasted_cpu_ms: int = 0
    peak_rss_mb: float = 0.0
    sample_interval_s: float = 1.0
    placement_rate_per_s: float | None = None
    #: Simulated ms between Kueue-paced cycles (``--pace kueue``); ``None``: our pace.
    kueue_cycle_ms: int | None = None


class _Meter:
    """Accumulates process CPU and wall time spent inside engine calls."""

    __slots__ = ("cpu_s", "wall_s")

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def start(self) -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    def stop(self, started: tuple[float, float]) -> None:
        self.cpu_s += time.process_time() - started[0]
        self.wall_s += time.perf_counter() - started[1]


def default_sample_interval_s(scenario: Scenario) -> float:
    """About 200 plot points over the ideal makespan, never sparser than one a second.

    Sampling reads only cohort usage from the engine (a handful of nodes) and the
    simulator's own pending counts, so a finer grid costs nothing measurable and is
    never charged to the engine.
    """
    return min(1.0, max(0.001, round(scenario.ideal_makespan_s() / 200, 3)))


class SimulationMismatch(RuntimeError):
    """The simulator's bookkeeping disagrees with the engine (a bug in one of them)."""


def simulate(
    scenario: Scenario,
    *,
    sample_interval_s: float | None = None,
    placement_rate_per_s: float | None = None,
    kueue_cycle_ms: int | None = None,
    verify: bool = False,
) -> Simulation:
    """Run ``scenario`` to completion (or until nothing more can happen).

    ``placement_rate_per_s`` delays each admitted run until a serial placer of that rate
    reaches it (module docstring); ``None`` starts runs at admission.
    ``kueue_cycle_ms`` runs the engine at Kueue's pace: one round per call (one
    admission per ClusterQueue), a preemptor admitted a call after its victims go, and
    another call every ``kueue_cycle_ms`` while heads are left; ``None`` runs every
    round an event allows in one call, as the manager does. ``verify``
    cross-checks the simulator's pending counts and running CPU against the engine's own
    status after every step; it is slow and meant for tests.
    """
    if sample_interval_s is None:
        sample_interval_s = default_sample_interval_s(scenario)
    wall_started = time.perf_counter()
    clock = ManualClock(0.0)
    engine = Engine(scenario.to_queue_config(), clock)
    # One meter per call, so a slow run says which engine call to look at.
    meters = {"finish": _Meter(), "submit": _Meter(), "schedule": _Meter()}
    sim = Simulation(
        scenario=scenario,
        tracks={},
        sample_interval_s=sample_interval_s,
        placement_rate_per_s=placement_rate_per_s,
        kueue_cycle_ms=kueue_cycle_ms,
    )
    if kueue_cycle_ms is not None and kueue_cycle_ms <= 0:
        raise ValueError(f"a Kueue cycle must take > 0 ms, got {kueue_cycle_ms}")
    kueue_pace = kueue_cycle_ms is not None
    #: When the next Kueue-paced cycle is due, if heads are left.
    next_cycle_ms: int | None = None
    #: When the engine next has time-driven work (a head's wait before preempting ends).
    wakeup_ms: int | None = None
    tracks = sim.tracks
    placer = _Placer(placement_rate_per_s)

    # Pending counts per cohort, kept from the decisions (the engine's pending() is a
    # full ordered listing: too slow to call every simulated second on 50,000 workloads).
    pending = dict.fromkeys(scenario.cohort_names(), 0)
    # Completions: (time_ms, seq, workload, run); seq keeps equal times in admission order.
    completions: list[tuple[int, int, WorkloadId, int]] = []
    seq = 0
    arrivals: Iterator[Arrival] = scenario.arrivals()
    next_arrival = next(arrivals, None)
    sample_every_ms = max(1, round(sample_interval_s * 1000))
    next_sample_ms = 0
    _take_sample(sim, engine, pending, 0)
    next_sample_ms += sample_every_ms

    while (
        next_arrival is not None
        or completions
        or next_cycle_ms is not None
        or wakeup_ms is not None
    ):
        due = [completions[0][0]] if completions else []
        if next_arrival is not None:
            due.append(next_arrival.at_ms)
        for extra in (next_cycle_ms, wakeup_ms):
            if extra is not None:
                due.append(extra)
        now_ms = min(due)
        finishing: list[WorkloadId] = []
        while completions and completions[0][0] == now_ms:
            _, _, workload, run = heapq.heappop(completions)
            track = tracks[workload]
            if track.run == run and track.running_since_ms is not None:
                finishing.append(workload)
        submitting: list[Arrival] = []
        while next_arrival is not None and next_arrival.at_ms == now_ms:
            submitting.append(next_arrival)
            next_arrival = next(arrivals, None)
        specs = [workload_spec(a) for a in submitting]

        clock.set(now_ms / 1000.0)
        started = meters["finish"].start()
        for workload in finishing:
            engine.finish(workload)
        meters["finish"].stop(started)
        started = meters["submit"].start()
        for spec in specs:
            engine.submit(spec)
        meters["submit"].stop(started)
        started = meters["schedule"].start()
        decisions = engine.schedule(kueue_pace=kueue_pace)
        meters["schedule"].stop(started)
        sim.schedule_calls += 1
        if kueue_cycle_ms is not None:
            next_cycle_ms = now_ms + kueue_cycle_ms if engine.more_rounds_due else None
        wakeup = engine.next_wakeup_at()
        wakeup_ms = None if wakeup is None else max(now_ms + 1, math.ceil(wakeup * 1000 - 1e-6))

        for workload in finishing:
            track = tracks[workload]
            track.finished_ms = now_ms
            track.running_since_ms = None
        for arrival in submitting:
            tracks[arrival.workload] = _Track(arrival)
            pending[arrival.cohort] += 1
        for decision in decisions:
            seq += 1
            _apply(sim, decision, now_ms, seq, completions, pending, placer)

        if verify:
            _verify(sim, engine, pending)
        if now_ms >= next_sample_ms:
            _take_sample(sim, engine, pending, now_ms)
            next_sample_ms = (now_ms // sample_every_ms + 1) * sample_every_ms

    last_ms = max((t.finished_ms or 0) for t in tracks.values()) if tracks else 0
    if not sim.samples or sim.samples[-1].at_s < last_ms / 1000.0:
        _take_sample(sim, engine, pending, last_ms)
    sim.engine_cpu_s = sum(m.cpu_s for m in meters.values())
    sim.engine_wall_s = sum(m.wall_s for m in meters.values())
    sim.engine_cpu_s_by_call = {name: m.cpu_s for name, m in meters.items()}
    # ru_maxrss is in KiB on Linux. Read before any plotting so matplotlib's own memory
    # is not charged to the engine run.
    sim.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    sim.run_wall_s = time.perf_counter() - wall_started
    return sim


def _apply(
    sim: Simulation,
    decision: Decision,
    now_ms: int,
    seq: int,
    completions: list[tuple[int, int, WorkloadId, int]],
    pending: dict[str, int],
    placer: _Placer,
) -> None:
    kind = decision.kind.value
    sim.decisions[kind] = sim.decisions.get(kind, 0) + 1
    track = sim.tracks[decision.workload]
    cohort = track.arrival.cohort
    if decision.kind is DecisionKind.ADMIT:
        track.run += 1
        track.running_since_ms = placer.placed_at(now_ms)
        track.last_admitted_ms = now_ms
        if track.first_admitted_ms is None:
            track.first_admitted_ms = now_ms
        pending[cohort] -= 1
        done_ms = track.running_since_ms + track.arrival.workload_class.runtime_ms
        heapq.heappush(completions, (done_ms, seq, decision.workload, track.run))
    elif decision.kind in (DecisionKind.PREEMPT, DecisionKind.EVICT):
        if track.running_since_ms is not None:
            # Preempted before it was placed, it lost no work (its turn at the placer
            # stays spent: Ray spends a removal on a group it has not placed yet).
            ran_ms = max(0, now_ms - track.running_since_ms)
            sim.wasted_cpu_ms += ran_ms * track.arrival.workload_class.cpu_milli
        track.running_since_ms = None
        track.evictions += 1
        pending[cohort] += 1
    elif decision.kind is DecisionKind.REJECT:
        # Terminal: it will never finish, which the report shows as unfinished work.
        pending[cohort] -= 1
    # RESERVE cannot happen (no admission checks in these shapes); it is only counted.


class _Placer:
    """Ray's placement of admitted groups, one at a time at a fixed rate (or instant)."""

    __slots__ = ("_free_at_ms", "_service_ms")

    def __init__(self, rate_per_s: float | None) -> None:
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError(f"placement rate must be > 0 groups/s, got {rate_per_s}")
        self._service_ms = None if rate_per_s is None else 1000.0 / rate_per_s
        self._free_at_ms = 0.0

    def placed_at(self, admitted_ms: int) -> int:
        """When a group admitted at ``admitted_ms`` is on its node (whole ms, rounded up)."""
        if self._service_ms is None:
            return admitted_ms
        self._free_at_ms = max(float(admitted_ms), self._free_at_ms) + self._service_ms
        return math.ceil(self._free_at_ms)


def _verify(sim: Simulation, engine: Engine, pending: dict[str, int]) -> None:
    engine_pending = dict.fromkeys(pending, 0)
    engine_usage = dict.fromkeys(pending, 0)
    cohort_of: dict[str, str] = {}
    for track in sim.tracks.values():
        cohort_of[track.arrival.cluster_queue] = track.arrival.cohort
    for status in engine.cluster_queue_status():
        cohort = cohort_of.get(status.name)
        if cohort is None:
            continue
        engine_pending[cohort] += status.pending
        engine_usage[cohort] += sum(r.usage for r in status.resources)
    running = dict.fromkeys(pending, 0)
    for track in sim.tracks.values():
        if track.running_since_ms is not None:
            running[track.arrival.cohort] += track.arrival.workload_class.cpu_milli
    if engine_pending != pending or engine_usage != running:
        raise SimulationMismatch(
            f"simulator pending {pending} / running {running} but engine says "
            f"pending {engine_pending} / usage {engine_usage}"
        )


def _take_sample(sim: Simulation, engine: Engine, pending: dict[str, int], at_ms: int) -> None:
    usage = {
        status.name: sum(r.usage for r in status.resources) / 1000.0
        for status in engine.cohort_status()
    }
    sim.samples.append(Sample(at_ms / 1000.0, usage, dict(pending)))


# -- the report ---------------------------------------------------------------------------


def report(sim: Simulation, *, command: str, plot_path: str | None) -> dict[str, Any]:
    """The JSON document: every number the run measured, and how to reproduce it."""
    scenario = sim.scenario
    tracks = list(sim.tracks.values())
    finished = [t for t in tracks if t.finished_ms is not None]
    makespan_s = max((t.finished_ms or 0) for t in finished) / 1000.0 if finished else 0.0
    ideal_s = scenario.ideal_makespan_s()
    capacity_cpu = scenario.capacity_cpu_milli / 1000.0
    useful_cpu_s = (
        sum(
            t.arrival.workload_class.cpu_milli * t.arrival.workload_class.runtime_ms
            for t in finished
        )
        / 1e6
    )
    wasted_cpu_s = sim.wasted_cpu_ms / 1e6
    total_decisions = sum(sim.decisions.values())

    per_class: dict[str, dict[str, float | int]] = {}
    for workload_class in scenario.classes:
        mine = [t for t in tracks if t.arrival.workload_class.name == workload_class.name]
        done = [t for t in mine if t.finished_ms is not None]
        per_class[workload_class.name] = {
            "workloads": len(mine),
            "finished": len(done),
            "evictions": sum(t.evictions for t in mine),
            # Kueue's recorder keeps the time of the *last* admission (a preempted
            # workload's clock keeps running), so this is creation -> last admission.
            "mean_time_to_admission_s": _mean(
                (t.last_admitted_ms or 0) - t.arrival.at_ms for t in done
            ),
            "mean_time_to_first_admission_s": _mean(
                (t.first_admitted_ms or 0) - t.arrival.at_ms for t in done
            ),
            "mean_time_to_finish_s": _mean((t.finished_ms or 0) - t.arrival.at_ms for t in done),
        }

    doc: dict[str, Any] = {
        "benchmark": "engine",
        "scenario": scenario.name,
        "description": scenario.description,
        "source": scenario.source,
        "shape": {
            "cohorts": scenario.cohorts,
            "cluster_queues": scenario.cluster_queue_count,
            "nominal_cpu_per_cluster_queue": scenario.nominal_cpu_milli / 1000.0,
            "borrowing_limit_cpu": (
                None
                if scenario.borrowing_limit_cpu_milli is None
                else scenario.borrowing_limit_cpu_milli / 1000.0
            ),
            "reclaim_within_cohort": scenario.reclaim_within_cohort.value,
            "within_cluster_queue": scenario.within_cluster_queue.value,
            "wait_before_preempting_s": scenario.wait_before_preempting_s,
            "classes": [
                {
                    "name": c.name,
                    "count_per_cluster_queue": c.count,
                    "cpu": c.cpu_milli / 1000.0,
                    "runtime_s": c.runtime_ms / 1000.0,
                    "priority": c.priority,
                    "interval_s": c.interval_ms / 1000.0,
                }
                for c in scenario.classes
            ],
        },
        "workloads": len(tracks),
        "finished": len(finished),
        "unfinished": len(tracks) - len(finished),
        "makespan_s": makespan_s,
        "ideal_makespan_s": ideal_s,
        "makespan_over_ideal": makespan_s / ideal_s if ideal_s else None,
        # None: runs start at admission; else the serial placer's rate (module docstring).
        "placement_rate_per_s": sim.placement_rate_per_s,
        # "rounds": every round an event allows in one call (the manager's pace);
        # "kueue": one round per call, a call every kueue_cycle_ms (``simulate``).
        "pace": "rounds" if sim.kueue_cycle_ms is None else "kueue",
        "kueue_cycle_ms": sim.kueue_cycle_ms,
        "mean_time_to_admission_s": {
            name: stats["mean_time_to_admission_s"] for name, stats in per_class.items()
        },
        "classes": per_class,
        "capacity_cpu": capacity_cpu,
        "useful_cpu_s": useful_cpu_s,
        "wasted_cpu_s": wasted_cpu_s,
        "wasted_over_useful": wasted_cpu_s / useful_cpu_s if useful_cpu_s else None,
        # Kueue's count beside ours: its run was far less busy (see the scenario).
        "evictions_by_class": {
            name: {
                "ours": stats["evictions"],
                "kueue": None if scenario.kueue is None else scenario.kueue.evictions.get(name),
            }
            for name, stats in per_class.items()
        },
        # Useful work over what the cluster could have done in the makespan; work lost
        # to preemption is not useful. busy_utilization counts it too.
        "utilization": useful_cpu_s / (capacity_cpu * makespan_s) if makespan_s else 0.0,
        "busy_utilization": (
            (useful_cpu_s + wasted_cpu_s) / (capacity_cpu * makespan_s) if makespan_s else 0.0
        ),
        "engine_cpu_s": sim.engine_cpu_s,
        "engine_cpu_s_by_call": sim.engine_cpu_s_by_call,
        "engine_wall_s": sim.engine_wall_s,
        "run_wall_s": sim.run_wall_s,
        "schedule_calls": sim.schedule_calls,
        "decisions": total_decisions,
        "decisions_by_kind": dict(sorted(sim.decisions.items())),
        "decisions_per_s": total_decisions / sim.engine_cpu_s if sim.engine_cpu_s else None,
        "peak_rss_mb": sim.peak_rss_mb,
        "kueue": (
            None
            if scenario.kueue is None
            else {
                "makespan_s": scenario.kueue.makespan_s,
                "mean_time_to_admission_s": dict(scenario.kueue.mean_time_to_admission_s),
                "evictions": scenario.kueue.evictions,
                "note": scenario.kueue.note,
            }
        ),
        "command": command,
        "machine": provenance.machine(),
        **provenance.git("ray_queue/engine", "benchmarks/engine.py", "benchmarks/scenarios.py"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plot": plot_path,
        "plot_sample_interval_s": sim.sample_interval_s,
    }
    # The targets are the engine's own; a placement-rate run bounds real Ray instead,
    # and a Kueue-paced one is an experiment.
    ours = sim.placement_rate_per_s is None and sim.kueue_cycle_ms is None
    doc["targets"] = _targets(scenario.name, doc) if ours else {}
    return doc


def _targets(name: str, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, limit in TARGETS.get(name, {}).items():
        metric = key.removesuffix("_max")
        value = doc[metric]
        out[metric] = {"max": limit, "value": value, "met": value is not None and value <= limit}
    return out


def _mean(values: Iterator[int] | Sequence[int]) -> float:
    items = list(values)
    return sum(items) / len(items) / 1000.0 if items else 0.0


# -- output -------------------------------------------------------------------------------


def write_plot(sim: Simulation, path: Path) -> None:
    """Usage and pending workloads per cohort over simulated time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario = sim.scenario
    # State only changes at event times, so each sample holds until the next one.
    times = [s.at_s for s in sim.samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for cohort in scenario.cohort_names():
        top.plot(
            times,
            [s.usage_cpu.get(cohort, 0.0) for s in sim.samples],
            lw=0.9,
            label=cohort,
            drawstyle="steps-post",
        )
        bottom.plot(
            times,
            [s.pending.get(cohort, 0) for s in sim.samples],
            lw=0.9,
            label=cohort,
            drawstyle="steps-post",
        )
    per_cohort_cpu = scenario.cluster_queues_per_cohort * scenario.nominal_cpu_milli / 1000.0
    top.axhline(per_cohort_cpu, color="black", ls="--", lw=0.8, label="cohort quota")
    top.set_ylabel("CPU in use")
    bottom.set_ylabel("pending workloads")
    bottom.set_xlabel("simulated time (s)")
    top.set_title(
        f"{scenario.name}: {scenario.workload_count:,} workloads, "
        f"{scenario.cluster_queue_count:,} ClusterQueues in {scenario.cohorts} cohorts"
    )
    if scenario.cohorts <= 10:
        # The shapes are symmetric, so cohorts' lines mostly overlap.
        top.legend(loc="lower center", fontsize="small", ncol=min(6, scenario.cohorts + 1))
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(doc: dict[str, Any], console: Console) -> None:
    kueue = doc.get("kueue") or {}
    kueue_tta = kueue.get("mean_time_to_admission_s", {})
    table = Table(title=f"engine benchmark: {doc['scenario']} ({doc['workloads']:,} workloads)")
    table.add_column("metric")
    table.add_column("ray-queue engine", justify="right")
    table.add_column("Kueue (published)", justify="right")
    table.add_row("finished", f"{doc['finished']:,} / {doc['workloads']:,}", "")
    table.add_row(
        "makespan (simulated s)",
        f"{doc['makespan_s']:.1f}",
        f"{kueue['makespan_s']:.0f}" if "makespan_s" in kueue else "",
    )
    table.add_row("ideal makespan (s)", f"{doc['ideal_makespan_s']:.1f}", "")
    wait_s = doc["shape"]["wait_before_preempting_s"]
    if wait_s:
        table.add_row("wait before preempting (s, ours)", f"{wait_s:g}", "0")
    if doc["kueue_cycle_ms"] is not None:
        table.add_row("pace: Kueue's, one cycle every (ms)", f"{doc['kueue_cycle_ms']}", "")
    if doc["placement_rate_per_s"] is not None:
        table.add_row("placement rate (groups/s)", f"{doc['placement_rate_per_s']:g}", "")
    table.add_row("makespan / ideal", f"{doc['makespan_over_ideal']:.3f}", "")
    for name, value in doc["mean_time_to_admission_s"].items():
        theirs = kueue_tta.get(name)
        table.add_row(
            f"mean time to admission, {name} (s)",
            f"{value:.2f}",
            f"{theirs:.1f}" if theirs is not None else "",
        )
    table.add_row("utilization (useful work)", f"{doc['utilization']:.1%}", "")
    table.add_row("work lost to preemption (CPU s)", f"{doc['wasted_cpu_s']:.1f}", "")
    table.add_row("preemptions", f"{doc['decisions_by_kind'].get('preempt', 0):,}", "")
    for name, counts in doc["evictions_by_class"].items():
        theirs = counts["kueue"]
        table.add_row(
            f"evictions, {name}", f"{counts['ours']:,}", "" if theirs is None else f"{theirs:,}"
        )
    table.add_row("engine CPU (s)", f"{doc['engine_cpu_s']:.2f}", "")
    rate = doc["decisions_per_s"]
    table.add_row("decisions / engine CPU s", f"{rate:,.0f}" if rate else "-", "")
    table.add_row("peak RSS (MB)", f"{doc['peak_rss_mb']:.0f}", "")
    console.print(table)
    for metric, target in doc["targets"].items():
        verdict = "[green]met[/]" if target["met"] else "[red]MISSED[/]"
        console.print(f"target {metric} <= {target['max']}: {target['value']:.3f} {verdict}")
    console.print(f"reproduce: {doc['command']}")


def run(
    scenario: Scenario,
    out: Path,
    *,
    command: str,
    sample_interval_s: float | None = None,
    placement_rate_per_s: float | None = None,
    kueue_cycle_ms: int | None = None,
) -> dict[str, Any]:
    """Simulate, then write the JSON report and the PNG plot beside it."""
    sim = simulate(
        scenario,
        sample_interval_s=sample_interval_s,
        placement_rate_per_s=placement_rate_per_s,
        kueue_cycle_ms=kueue_cycle_ms,
    )
    plot = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_plot(sim, plot)
    doc = report(sim, command=command, plot_path=_relative(plot))
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description="Replay a Kueue benchmark shape through the engine in simulated time.",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument(
        "--sample-interval-s",
        type=float,
        default=None,
        help="simulated seconds between plot samples (default: ~200 samples over the "
        "ideal makespan, at most 1 s apart); never counted in engine time",
    )
    parser.add_argument(
        "--placement-rate",
        type=float,
        default=None,
        metavar="GROUPS_PER_S",
        help="start each admitted run only when a serial placer of this rate reaches it, "
        "as Ray's GCS places groups one at a time (default: at admission)",
    )
    parser.add_argument(
        "--wait-before-preempting-s",
        type=float,
        default=None,
        metavar="S",
        help="every ClusterQueue's preemption.waitBeforePreemptingSeconds (ours, not "
        "Kueue's; default: the scenario's, 0 for Kueue's shapes)",
    )
    parser.add_argument(
        "--pace",
        choices=("rounds", "kueue"),
        default="rounds",
        help="rounds: every round an event allows in one schedule() call (the manager's "
        "pace); kueue: one round per call, as one Kueue cycle, and a preemptor admitted a "
        "cycle after its victims go",
    )
    parser.add_argument(
        "--kueue-cycle-ms",
        type=int,
        default=10,
        metavar="MS",
        help="with --pace kueue: simulated ms from one cycle to the next (default 10)",
    )
    args = parser.parse_args(argv)
    if args.kueue_cycle_ms <= 0:
        parser.error(f"--kueue-cycle-ms must be > 0, got {args.kueue_cycle_ms}")
    scenario = SCENARIOS[args.scenario]
    if args.wait_before_preempting_s is not None:
        if not args.wait_before_preempting_s >= 0:
            parser.error(
                f"--wait-before-preempting-s must be >= 0, got {args.wait_before_preempting_s:g}"
            )
        scenario = replace(scenario, wait_before_preempting_s=args.wait_before_preempting_s)
    if args.placement_rate is not None and args.placement_rate <= 0:
        parser.error(f"--placement-rate must be > 0 groups/s, got {args.placement_rate:g}")
    command = provenance.command("benchmarks.engine", argv)
    doc = run(
        scenario,
        args.out,
        command=command,
        sample_interval_s=args.sample_interval_s,
        placement_rate_per_s=args.placement_rate,
        kueue_cycle_ms=args.kueue_cycle_ms if args.pace == "kueue" else None,
    )
    print_summary(doc, Console())
    return 0 if doc["unfinished"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
