"""Kueue's scheduler benchmark shapes on plain Ray, with no queue: what a user gets without us.

The baseline beside ``benchmarks.ray_e2e``: the same arrivals at the same times, but each
submitted straight to Ray as ``ray.util.placement_group([{"CPU": n}])``; once Ray places a
group it is held for the class's runtime and then removed
(``ray.util.remove_placement_group``). Ray has no priorities, no quotas and no preemption:
a group that does not fit waits in the GCS's pending queue, which is not even served in
order (ray#21797), so every class waits about alike. Reported: the makespan (last removal,
from the first submission) and the mean time from submission to placement per class.

One local Ray node with the shape's capacity in logical CPUs (600 for ``kueue-baseline``),
as for ``benchmarks.ray_e2e``; nothing runs inside the groups.

    .venv/bin/python -m benchmarks.plain_ray --scenario kueue-baseline --out /tmp/plain-ray.json

``benchmarks.side_by_side`` runs it beside Kueue and ray-queue.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from rich.console import Console
from rich.table import Table

from benchmarks import provenance
from benchmarks.scenarios import RESOURCE, SCENARIOS, Arrival, Scenario


@dataclass(slots=True)
class _Group:
    """One arrival as a raw placement group (mutated by the submit, ready and hold threads)."""

    arrival: Arrival
    group: Any = None
    submitted_s: float | None = None
    placed_s: float | None = None
    finished_s: float | None = None


class PlainRayDriver:
    """Submits every arrival on time as ``ray.util.placement_group``; holds each placed
    group for its runtime, then removes it. Three threads, as ``benchmarks.ray_e2e``'s
    driver: the caller's submits, one waits on ``ready()`` refs, one ends holds."""

    def __init__(self, scenario: Scenario) -> None:
        self.groups = [_Group(a) for a in scenario.arrivals()]
        self.submit_lag_s: list[float] = []
        self._wake = threading.Condition()
        self._placing: dict[Any, _Group] = {}
        self._holds: list[tuple[float, int, _Group]] = []
        self._seq = itertools.count()
        self._remaining = len(self.groups)
        self._done = threading.Event()
        self._stop = threading.Event()
        self._t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self._t0

    def run(self, timeout_s: float) -> bool:
        """True when every group was held and removed within ``timeout_s``."""
        threads = [
            threading.Thread(target=self._ready_loop, name="plain-ready", daemon=True),
            threading.Thread(target=self._hold_loop, name="plain-hold", daemon=True),
        ]
        self._t0 = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            for entry in self.groups:
                due = entry.arrival.at_ms / 1000.0
                if (delay := due - self.now()) > 0:
                    time.sleep(delay)
                entry.submitted_s = self.now()
                self.submit_lag_s.append(entry.submitted_s - due)
                cpus = entry.arrival.workload_class.cpu_milli / 1000.0
                entry.group = placement_group([{RESOURCE: cpus}])
                ready = entry.group.ready()
                with self._wake:
                    self._placing[ready] = entry
                    self._wake.notify_all()
            return self._done.wait(max(0.0, timeout_s - self.now()))
        finally:
            self._stop.set()
            with self._wake:
                self._wake.notify_all()
            for thread in threads:
                thread.join(timeout=5)

    def _ready_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
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
                    entry = self._placing.pop(ref)
                    entry.placed_s = now
                    hold_s = entry.arrival.workload_class.runtime_ms / 1000.0
                    heapq.heappush(self._holds, (now + hold_s, next(self._seq), entry))
                self._wake.notify_all()

    def _hold_loop(self) -> None:
        while not self._stop.is_set():
            due: list[_Group] = []
            with self._wake:
                now = self.now()
                while self._holds and self._holds[0][0] <= now:
                    due.append(heapq.heappop(self._holds)[2])
                wait_s = self._holds[0][0] - now if self._holds else 0.1
            for entry in due:
                remove_placement_group(entry.group)
                entry.finished_s = self.now()
            if due:
                with self._wake:
                    self._remaining -= len(due)
                    if self._remaining == 0:
                        self._done.set()
            else:
                with self._wake:
                    self._wake.wait(min(max(wait_s, 0.0), 0.1))


def report(
    driver: PlainRayDriver, scenario: Scenario, *, completed: bool, command: str
) -> dict[str, Any]:
    done = [g for g in driver.groups if g.finished_s is not None]
    per_class: dict[str, dict[str, float | int]] = {}
    for workload_class in scenario.classes:
        mine = [g for g in driver.groups if g.arrival.workload_class.name == workload_class.name]
        placed = [g for g in mine if g.placed_s is not None]
        waits = sorted((g.placed_s or 0.0) - (g.submitted_s or 0.0) for g in placed)
        # From the arrival's due time: also counts how late the driver submitted it.
        late = [(g.placed_s or 0.0) - g.arrival.at_ms / 1000.0 for g in placed]
        per_class[workload_class.name] = {
            "workloads": len(mine),
            "finished": sum(1 for g in mine if g.finished_s is not None),
            "mean_time_to_placement_s": sum(waits) / len(waits) if waits else 0.0,
            "p50_time_to_placement_s": waits[len(waits) // 2] if waits else 0.0,
            "p99_time_to_placement_s": waits[int(0.99 * (len(waits) - 1))] if waits else 0.0,
            "max_time_to_placement_s": waits[-1] if waits else 0.0,
            "mean_time_to_placement_from_arrival_s": sum(late) / len(late) if late else 0.0,
        }
    lags = sorted(driver.submit_lag_s)
    makespan_s = max((g.finished_s or 0.0) for g in done) if done else 0.0
    ideal_s = scenario.ideal_makespan_s()
    return {
        "benchmark": "plain_ray",
        "scenario": scenario.name,
        "description": scenario.description,
        "ray_cluster": {
            "nodes": 1,
            "logical_cpus": scenario.capacity_cpu_milli // 1000,
            "ray_version": ray.__version__,
        },
        "workloads": len(driver.groups),
        "finished": len(done),
        "unfinished": len(driver.groups) - len(done),
        "timed_out": not completed,
        "makespan_s": makespan_s,
        "ideal_makespan_s": ideal_s,
        "makespan_over_ideal": makespan_s / ideal_s if ideal_s else None,
        "mean_time_to_placement_s": {
            name: c["mean_time_to_placement_s"] for name, c in per_class.items()
        },
        "classes": per_class,
        # How late the driver called placement_group against the arrival schedule (s).
        "submit_lag_s": {
            "mean": sum(lags) / len(lags) if lags else 0.0,
            "p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "max": lags[-1] if lags else 0.0,
        },
        "command": command,
        "machine": provenance.machine(),
        "load_average": list(os.getloadavg()),
        **provenance.git("benchmarks/plain_ray.py"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run(
    scenario: Scenario, out: Path, *, command: str, timeout_s: float | None = None
) -> dict[str, Any]:
    """Start a one-node Ray of the shape's CPUs, replay the arrivals, write the JSON."""
    limit_s = timeout_s if timeout_s is not None else 5 * scenario.ideal_makespan_s() + 60
    driver = PlainRayDriver(scenario)
    # "local": always a new cluster of our own, never one another process left running.
    cpus = scenario.capacity_cpu_milli // 1000
    load_at_start = os.getloadavg()[0]
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    cpu_before = time.process_time()
    try:
        completed = driver.run(limit_s)
    finally:
        # The driver's own CPU (its threads create, wait on and remove the groups): the
        # counterpart of ray_e2e's manager CPU; Ray's daemons are side_by_side's to count.
        driver_cpu_s = time.process_time() - cpu_before
        ray.shutdown()
    doc = report(driver, scenario, completed=completed, command=command)
    doc["driver_cpu_s"] = driver_cpu_s
    doc["load_average_at_start"] = load_at_start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def print_summary(doc: dict[str, Any], console: Console) -> None:
    table = Table(title=f"plain Ray, no queue: {doc['scenario']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("workloads finished", f"{doc['finished']:,} / {doc['workloads']:,}")
    table.add_row("makespan (s)", f"{doc['makespan_s']:.1f}")
    table.add_row("ideal makespan (s)", f"{doc['ideal_makespan_s']:.1f}")
    for name, c in doc["classes"].items():
        table.add_row(
            f"time to placement, {name}: mean / p50 / max (s)",
            f"{c['mean_time_to_placement_s']:.2f} / {c['p50_time_to_placement_s']:.2f} / "
            f"{c['max_time_to_placement_s']:.2f}",
        )
    table.add_row("driver submit lag p99 (s)", f"{doc['submit_lag_s']['p99']:.3f}")
    table.add_row("driver CPU (s)", f"{doc['driver_cpu_s']:.1f}")
    table.add_row(
        "load average at start / end",
        f"{doc['load_average_at_start']:.1f} / {doc['load_average'][0]:.1f}",
    )
    console.print(table)
    console.print(f"reproduce: {doc['command']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plain_ray",
        description="Run a Kueue benchmark shape as raw Ray placement groups, with no queue.",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument("--timeout-s", type=float, default=None, help="wall-clock limit")
    args = parser.parse_args(argv)
    command = provenance.command("benchmarks.plain_ray", argv)
    doc = run(SCENARIOS[args.scenario], args.out, command=command, timeout_s=args.timeout_s)
    print_summary(doc, Console())
    return 0 if doc["unfinished"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
