"""Kueue's scheduler benchmark shapes in real time, as queued placement groups on real Ray.

``benchmarks.engine`` shows what the engine decides in simulated time; this shows what a
user gets end to end: the client batching submissions, the manager actor (engine, store,
Ray adapter), Ray creating and removing the placement groups, and the event stream back
to the driver. Each arrival of the shape becomes ``ray_queue.placement_group`` with one
bundle of the class's CPUs, submitted at its creation time; once Ray has placed the group
it is held for the class's runtime and then removed. A preempted group loses its hold and
holds again for its full runtime when re-admitted, like a killed pod.

One local Ray node with 600 logical CPUs carries it (nothing runs inside the groups, so no
worker processes are needed). ``--time-scale 0.5`` runs every arrival interval and runtime
twice as slowly, for a machine that cannot keep up at full speed; times in the report are
converted back to the scenario's seconds (wall times are kept beside them).

    .venv/bin/python -m benchmarks.ray_e2e --scenario kueue-baseline \
        --out benchmarks/results/ray-e2e-kueue-baseline.json
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import ray
from rich.console import Console
from rich.table import Table

import ray_queue
from benchmarks import provenance
from benchmarks.scenarios import RESOURCE, SCENARIOS, Arrival, Scenario
from ray_queue.client.placement_group import QueuedPlacementGroup
from ray_queue.engine.model import WorkloadState
from ray_queue.manager.actor import METRICS_PORT_ENV, find_manager
from ray_queue.wire import ClientEvent

REPO_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)

#: docs/contract.md §8: 1.2x of the ideal bound for the engine, 1.3x for real Ray.
MAKESPAN_OVER_IDEAL_MAX = 1.3
#: How often the manager's RSS is sampled.
RSS_SAMPLE_S = 0.5


@dataclass(slots=True)
class _Track:
    """One workload as the driver sees it (mutated by the event, ready and hold threads)."""

    arrival: Arrival
    handle: QueuedPlacementGroup | None = None
    submitted_s: float | None = None
    first_admitted_s: float | None = None
    last_admitted_s: float | None = None
    #: When the driver saw Ray place the group of the last admission.
    placed_s: float | None = None
    finished_s: float | None = None
    #: Bumped on every admission and preemption, so a ready or hold timer that belongs to
    #: an earlier admission is ignored.
    generation: int = 0
    admissions: int = 0
    preemptions: int = 0
    ended: str | None = None


@dataclass(slots=True)
class Run:
    """Raw measurements of one run (wall seconds from the start of the run)."""

    scenario: Scenario
    time_scale: float
    tracks: list[_Track]
    submit_lag_s: list[float] = field(default_factory=list)
    manager_rss_mb: list[float] = field(default_factory=list)
    manager_pid: int | None = None
    #: The manager's CPU seconds (user + system) over the run: on a machine shared with
    #: others, wall time says how loaded it was as much as what the manager cost.
    manager_cpu_s: float | None = None
    load_at_start: float = 0.0
    #: ``time.time()`` at the run's start: the manager stamps its times with the wall clock.
    wall_at_start: float = 0.0
    #: Workload id -> (when the manager received it, when it last admitted it), by the
    #: manager's own clock, read from its statuses after the run.
    manager_times: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    timed_out: bool = False


class Driver:
    """Submits every arrival on time and holds each placed group for its runtime.

    Four threads: the caller's submits; the client's poller delivers events (``_on_event``
    only records and hands on, never blocks); a ready thread waits on the placed groups'
    ``ready()`` refs in one ``ray.wait``; a hold thread removes groups whose hold is over.
    """

    def __init__(self, scenario: Scenario, time_scale: float) -> None:
        self.scenario = scenario
        self.time_scale = time_scale
        self.tracks = [_Track(a) for a in scenario.arrivals()]
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        #: ready ObjectRef -> (track, generation) waiting for Ray to place the group.
        self._placing: dict[Any, tuple[_Track, int]] = {}
        #: (due wall s, seq, track, generation) for groups being held.
        self._holds: list[tuple[float, int, _Track, int]] = []
        self._seq = itertools.count()
        self._remaining = len(self.tracks)
        self._done = threading.Event()
        self._stop = threading.Event()
        self._t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self._t0

    # -- run ---------------------------------------------------------------------------------

    def run(self, timeout_s: float) -> Run:
        result = Run(self.scenario, self.time_scale, self.tracks)
        manager = find_manager()
        result.manager_pid = int(ray.get(manager.pid.remote())) if manager is not None else None
        threads = [
            threading.Thread(target=self._ready_loop, name="bench-ready", daemon=True),
            threading.Thread(target=self._hold_loop, name="bench-hold", daemon=True),
            threading.Thread(target=self._rss_loop, args=(result,), name="bench-rss", daemon=True),
        ]
        cpu_before = _cpu_s(result.manager_pid)
        result.load_at_start = os.getloadavg()[0]
        self._t0 = time.monotonic()
        result.wall_at_start = time.time()
        for thread in threads:
            thread.start()
        try:
            self._submit_all(result)
            result.timed_out = not self._done.wait(max(0.0, timeout_s - self.now()))
        finally:
            result.wall_s = self.now()
            cpu_after = _cpu_s(result.manager_pid)
            if cpu_before is not None and cpu_after is not None:
                result.manager_cpu_s = cpu_after - cpu_before
            self._stop.set()
            with self._wake:
                self._wake.notify_all()
            for thread in threads:
                thread.join(timeout=5)
        return result

    def _submit_all(self, result: Run) -> None:
        for track in self.tracks:
            due = track.arrival.at_ms / 1000.0 / self.time_scale
            delay = due - self.now()
            if delay > 0:
                time.sleep(delay)
            workload_class = track.arrival.workload_class
            track.submitted_s = self.now()
            result.submit_lag_s.append(track.submitted_s - due)
            handle = ray_queue.placement_group(
                [{RESOURCE: workload_class.cpu_milli / 1000.0}],
                queue=track.arrival.queue,
                priority=workload_class.priority_class,
                name=str(track.arrival.workload),
            )
            self._attach(track, handle)

    def _attach(self, track: _Track, handle: QueuedPlacementGroup) -> None:
        """Follow the handle's events. The admission of the first group of each shape can be
        delivered before this runs (its submission is synchronous), so catch up on it."""
        original = handle._on_event

        def on_event(event: ClientEvent) -> None:
            original(event)
            self._on_event(track, event)

        with self._lock:
            track.handle = handle
        # The benchmark taps the handle's event callback to time each event as it arrives.
        handle._on_event = on_event  # type: ignore[method-assign]
        with handle._cv:
            missed_admit = handle._pg is not None
            ready_ref = handle._ready_ref
            state = handle._state
        with self._wake:
            if missed_admit and track.admissions == 0:
                self._admitted(track, ready_ref)
            elif state.is_terminal and track.ended is None:
                self._ended(track, state.value)

    # -- events (client poller thread) -----------------------------------------------------

    def _on_event(self, track: _Track, event: ClientEvent) -> None:
        with self._wake:
            if track.finished_s is not None or track.ended is not None:
                return
            if event.decision == "admit" and event.placement_group_id:
                assert track.handle is not None
                self._admitted(track, track.handle._ready_ref)
            elif event.decision in ("preempt", "evict"):
                track.generation += 1
                track.preemptions += 1
            elif event.state.is_terminal and event.state is not WorkloadState.FINISHED:
                self._ended(track, f"{event.state.value}: {event.message}")

    def _admitted(self, track: _Track, ready_ref: Any) -> None:
        """Called holding the lock."""
        now = self.now()
        track.generation += 1
        track.admissions += 1
        track.last_admitted_s = now
        if track.first_admitted_s is None:
            track.first_admitted_s = now
        self._placing[ready_ref] = (track, track.generation)
        self._wake.notify_all()

    def _ended(self, track: _Track, why: str) -> None:
        """Called holding the lock: the workload will never finish (rejected, cancelled)."""
        track.ended = why
        self._count_down()

    def _count_down(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            self._done.set()

    # -- placed → hold → remove --------------------------------------------------------------

    def _ready_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                # Forget refs of groups preempted before Ray placed them: never resolve.
                for ref, (track, generation) in list(self._placing.items()):
                    if track.generation != generation:
                        del self._placing[ref]
                if not self._placing:
                    self._wake.wait(0.1)
                    continue
                refs = list(self._placing)
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0.01, fetch_local=False)
            if not done:
                continue
            with self._wake:
                now = self.now()
                for ref in done:
                    entry = self._placing.pop(ref, None)
                    if entry is None:
                        continue
                    track, generation = entry
                    if track.generation != generation:
                        continue
                    track.placed_s = now
                    hold_s = track.arrival.workload_class.runtime_ms / 1000.0 / self.time_scale
                    heapq.heappush(self._holds, (now + hold_s, next(self._seq), track, generation))
                self._wake.notify_all()

    def _hold_loop(self) -> None:
        while not self._stop.is_set():
            due: list[_Track] = []
            with self._wake:
                now = self.now()
                while self._holds and self._holds[0][0] <= now:
                    _, _, track, generation = heapq.heappop(self._holds)
                    if track.generation == generation and track.finished_s is None:
                        track.finished_s = now
                        due.append(track)
                        self._count_down()
                wait_s = self._holds[0][0] - now if self._holds else 0.1
            for track in due:
                assert track.handle is not None
                track.handle.remove()
            if not due:
                with self._wake:
                    self._wake.wait(min(max(wait_s, 0.0), 0.1))

    def _rss_loop(self, result: Run) -> None:
        if result.manager_pid is None:
            return
        try:
            process = psutil.Process(result.manager_pid)
        except psutil.Error:
            return
        while not self._stop.wait(RSS_SAMPLE_S):
            try:
                result.manager_rss_mb.append(process.memory_info().rss / 2**20)
            except psutil.Error:
                return


def _cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


# -- the report ---------------------------------------------------------------------------


def report(run: Run, *, command: str, num_cpus: int) -> dict[str, Any]:
    scenario, scale = run.scenario, run.time_scale
    tracks = run.tracks
    finished = [t for t in tracks if t.finished_s is not None]
    makespan_wall_s = max((t.finished_s or 0.0) for t in finished) if finished else 0.0
    # Scenario seconds: a run at time scale s took 1/s as long in wall time.
    makespan_s = makespan_wall_s * scale
    ideal_s = scenario.ideal_makespan_s()
    admissions = sum(t.admissions for t in tracks)
    per_class: dict[str, dict[str, Any]] = {}
    for workload_class in scenario.classes:
        mine = [t for t in tracks if t.arrival.workload_class.name == workload_class.name]
        done = [t for t in mine if t.finished_s is not None]
        per_class[workload_class.name] = {
            "workloads": len(mine),
            "finished": len(done),
            "preemptions": sum(t.preemptions for t in mine),
            # Like Kueue's recorder (and benchmarks.engine): submission -> *last* admission.
            "mean_time_to_admission_s": _mean_scaled(
                [(t.last_admitted_s or 0.0) - (t.submitted_s or 0.0) for t in done], scale
            ),
            "mean_time_to_first_admission_s": _mean_scaled(
                [(t.first_admitted_s or 0.0) - (t.submitted_s or 0.0) for t in done], scale
            ),
            # Admission event -> Ray placed the group: the wait a user sees after admission
            # (release pacing, Ray's placement, the ready notification).
            "mean_admitted_to_placed_s": _mean_scaled(
                [(t.placed_s or 0.0) - (t.last_admitted_s or 0.0) for t in done], scale
            ),
            "mean_time_to_finish_s": _mean_scaled(
                [(t.finished_s or 0.0) - (t.submitted_s or 0.0) for t in done], scale
            ),
            "admission_breakdown_s": _admission_breakdown(run, done),
        }
    lags = sorted(run.submit_lag_s)
    doc: dict[str, Any] = {
        "benchmark": "ray_e2e",
        "scenario": scenario.name,
        "description": scenario.description,
        "source": scenario.source,
        "ray_cluster": {"nodes": 1, "logical_cpus": num_cpus, "ray_version": ray.__version__},
        "time_scale": scale,
        "workloads": len(tracks),
        "finished": len(finished),
        "unfinished": len(tracks) - len(finished),
        "ended_without_finishing": sorted({t.ended for t in tracks if t.ended})[:10],
        "timed_out": run.timed_out,
        "makespan_s": makespan_s,
        "makespan_wall_s": makespan_wall_s,
        "ideal_makespan_s": ideal_s,
        "makespan_over_ideal": makespan_s / ideal_s if ideal_s else None,
        "mean_time_to_admission_s": {
            name: stats["mean_time_to_admission_s"] for name, stats in per_class.items()
        },
        "classes": per_class,
        "admissions": admissions,
        # Per wall second over the run: what the manager and Ray actually sustained.
        "admissions_per_s": admissions / makespan_wall_s if makespan_wall_s else 0.0,
        "preemptions": sum(t.preemptions for t in tracks),
        "workloads_finished": len(finished),
        "manager_pid": run.manager_pid,
        "manager_peak_rss_mb": max(run.manager_rss_mb, default=None),
        "manager_rss_samples": len(run.manager_rss_mb),
        "manager_cpu_s": run.manager_cpu_s,
        "manager_cpu_ms_per_admission": (
            1e3 * run.manager_cpu_s / admissions if run.manager_cpu_s and admissions else None
        ),
        # How late the driver called placement_group against the arrival schedule (wall s):
        # shows whether the driver kept up with the submission rate.
        "submit_lag_s": {
            "mean": sum(lags) / len(lags) if lags else 0.0,
            "p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "max": lags[-1] if lags else 0.0,
        },
        "kueue": (
            None
            if scenario.kueue is None
            else {
                "makespan_s": scenario.kueue.makespan_s,
                "mean_time_to_admission_s": dict(scenario.kueue.mean_time_to_admission_s),
            }
        ),
        "command": command,
        "machine": provenance.machine(),
        "load_average": list(os.getloadavg()),
        "load_average_at_start": run.load_at_start,
        **provenance.git("ray_queue", "benchmarks"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    limit = MAKESPAN_OVER_IDEAL_MAX
    value = doc["makespan_over_ideal"]
    doc["targets"] = {
        "makespan_over_ideal": {
            "max": limit,
            "value": value,
            "met": value is not None and value <= limit and not doc["unfinished"],
        }
    }
    return doc


def _admission_breakdown(run: Run, done: list[_Track]) -> dict[str, float] | None:
    """Where the mean time to (last) admission goes: the driver's submission reaching the
    manager (client batching, the call), the manager deciding (queueing for quota and
    for the manager's loop), and the admission event reaching the driver (event stream,
    the driver's own threads). Same machine, so the clocks agree."""
    parts: list[tuple[float, float, float]] = []
    for t in done:
        times = run.manager_times.get(str(t.handle.workload)) if t.handle else None
        if times is None or t.submitted_s is None or t.last_admitted_s is None:
            continue
        received, admitted = times
        parts.append(
            (
                received - (run.wall_at_start + t.submitted_s),
                admitted - received,
                run.wall_at_start + t.last_admitted_s - admitted,
            )
        )
    if not parts:
        return None
    return {
        name: _mean_scaled([p[i] for p in parts], run.time_scale)
        for i, name in enumerate(("to_manager", "manager_decides", "event_to_driver"))
    }


def _manager_times() -> dict[str, tuple[float, float]]:
    """(received, last admitted) per workload, from the manager's statuses."""
    manager = find_manager()
    if manager is None:
        return {}
    times = {}
    for status in ray.get(manager.workloads.remote(), timeout=300):
        admitted = [t.at for t in status.history if t.to_state is WorkloadState.ADMITTED]
        if admitted:
            times[str(status.spec.id)] = (status.spec.created_at, admitted[-1])
    return times


def _mean_scaled(values: list[float], scale: float) -> float:
    return sum(values) / len(values) * scale if values else 0.0


def print_summary(doc: dict[str, Any], console: Console) -> None:
    table = Table(title=f"ray_e2e {doc['scenario']} (time scale {doc['time_scale']:g})")
    table.add_column("metric")
    table.add_column("ours", justify="right")
    table.add_column("Kueue", justify="right")
    kueue = doc.get("kueue") or {}
    kueue_tta = kueue.get("mean_time_to_admission_s", {})
    table.add_row("workloads finished", f"{doc['finished']:,} / {doc['workloads']:,}", "")
    table.add_row("makespan (s)", f"{doc['makespan_s']:.1f}", f"{kueue.get('makespan_s', '')}")
    table.add_row("ideal makespan (s)", f"{doc['ideal_makespan_s']:.1f}", "")
    table.add_row("makespan / ideal", f"{doc['makespan_over_ideal']:.2f}", "")
    for name, value in doc["mean_time_to_admission_s"].items():
        table.add_row(
            f"mean time to admission, {name} (s)", f"{value:.2f}", str(kueue_tta.get(name, ""))
        )
    table.add_row("admissions / s (wall)", f"{doc['admissions_per_s']:.0f}", "")
    table.add_row("preemptions", f"{doc['preemptions']:,}", "")
    rss = doc["manager_peak_rss_mb"]
    table.add_row("manager peak RSS (MB)", "-" if rss is None else f"{rss:.0f}", "")
    cpu = doc["manager_cpu_s"]
    table.add_row("manager CPU (s)", "-" if cpu is None else f"{cpu:.1f}", "")
    table.add_row(
        "load average at start / end",
        f"{doc['load_average_at_start']:.1f} / {doc['load_average'][0]:.1f}",
        "",
    )
    table.add_row("driver submit lag p99 (s)", f"{doc['submit_lag_s']['p99']:.3f}", "")
    console.print(table)
    console.print(f"reproduce: {doc['command']}")


# -- entry point ----------------------------------------------------------------------------


def run(
    scenario: Scenario,
    out: Path,
    *,
    command: str,
    time_scale: float = 1.0,
    num_cpus: int | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Start a one-node Ray cluster, run the shape through ray_queue, write the JSON."""
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    cpus = num_cpus if num_cpus is not None else scenario.capacity_cpu_milli // 1000
    # Generous: a run that cannot finish in 5x its ideal wall time is reported unfinished.
    limit_s = (
        timeout_s if timeout_s is not None else 5 * scenario.ideal_makespan_s() / time_scale + 60
    )
    # No /metrics: on the default port, on a shared machine, whatever else scrapes it
    # (another engineer's Prometheus or soak observer) ran the manager's collector in the
    # middle of the run, 5 % of its samples under py-spy. The actor inherits this through
    # the raylet; the caller's environment is given back once the cluster is up.
    metrics_port = os.environ.get(METRICS_PORT_ENV)
    os.environ[METRICS_PORT_ENV] = "off"
    try:
        # "local": always a new cluster of our own, never one another process left running.
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    finally:
        if metrics_port is None:
            del os.environ[METRICS_PORT_ENV]
        else:
            os.environ[METRICS_PORT_ENV] = metrics_port
    try:
        config = scenario.to_queue_config()
        first_queue = next(iter(config.queues))
        ray_queue.init(queue=first_queue, config=config)
        try:
            result = Driver(scenario, time_scale).run(limit_s)
            result.manager_times = _manager_times()
        finally:
            ray_queue.shutdown()
    finally:
        ray.shutdown()
    doc = report(result, command=command, num_cpus=cpus)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ray_e2e",
        description="Run a Kueue benchmark shape in real time as queued placement groups.",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="speed of the scenario's clock: 0.5 runs every interval and runtime twice as "
        "slowly (for a machine that cannot keep up); reported times are scenario seconds",
    )
    parser.add_argument("--timeout-s", type=float, default=None, help="wall-clock limit")
    args = parser.parse_args(argv)
    command = provenance.command("benchmarks.ray_e2e", argv)
    doc = run(
        SCENARIOS[args.scenario],
        args.out,
        command=command,
        time_scale=args.time_scale,
        timeout_s=args.timeout_s,
    )
    print_summary(doc, Console())
    return 0 if doc["unfinished"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
