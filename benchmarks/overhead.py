"""What queueing costs: queued placement groups and tasks against raw Ray, in one run.

A team routes around a queue that makes their work noticeably slower, so this measures
the price of going through ray_queue for the two things users submit most: placement
groups (create, wait until placed, remove) and short tasks (submit all, get all). Both
sides run on the same one-node Ray cluster in the same process, alternately (raw,
queued, raw, queued…) so a noisy machine penalises neither side more; the report gives
every repetition and the medians, and the ratio of queued to raw throughput.

The cluster has ``--pg-count`` units of a custom resource ``pg_slot`` for the groups, so
hundreds of groups fit at once without hundreds of logical CPUs (which would let Ray start
hundreds of worker processes for the tasks on a small machine), and a few CPUs for the
tasks. The queue is the manager's default: one ClusterQueue sized to the cluster.

Each repetition also records the CPU time every process of the cluster spent on it
(``process_cpu``), per item and by role: on a small machine many short tasks are bound
by CPU, so the task ratio is close to raw Ray's CPU per task over the queued path's.

The captured path (docs/capture.md) runs raw Ray's own code, ``raw_pgs`` unchanged
(``ray.util.placement_group``, ``ready()``, ``remove_placement_group``), with capture on,
alternated with raw runs the same way: ``captured_pg_ratio``; and ``raw_tasks`` unchanged
(a plain ``@ray.remote`` function's ``.remote()`` and ``ray.get``) with capture on:
``captured_task_ratio``.

    .venv/bin/python -m benchmarks.overhead --out benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from rich.console import Console
from rich.table import Table

import ray_queue
import ray_queue.capture
from benchmarks import process_cpu, provenance
from ray_queue.manager.actor import find_manager

PG_RESOURCE = "pg_slot"
#: Issue 3's targets: queued throughput over raw throughput.
TARGETS = {
    "pg_ratio": 0.7,
    "task_ratio": 0.5,
    "captured_pg_ratio": 0.7,
    "captured_task_ratio": 0.5,
}


def _noop() -> int:
    return 0


def raw_pgs(count: int) -> float:
    """Seconds to create ``count`` one-bundle groups at once, wait for all, remove all."""
    started = time.perf_counter()
    groups = [placement_group([{PG_RESOURCE: 1}]) for _ in range(count)]
    ray.get([g.ready() for g in groups], timeout=300)
    for group in groups:
        remove_placement_group(group)
    return time.perf_counter() - started


def queued_pgs(count: int) -> float:
    """The same through ray_queue: submit all, wait until each is admitted and placed."""
    started = time.perf_counter()
    groups = [ray_queue.placement_group([{PG_RESOURCE: 1}]) for _ in range(count)]
    for group in groups:
        if not group.wait(timeout_seconds=300):
            raise RuntimeError(f"{group!r} was not placed within 300 s")
    for group in groups:
        group.remove()
    return time.perf_counter() - started


def captured_pgs(count: int) -> float:
    """``raw_pgs`` itself, unchanged, with capture on: what an unmodified driver pays."""
    ray_queue.capture.enable()
    try:
        return raw_pgs(count)
    finally:
        ray_queue.capture.disable()


def raw_tasks(fn: Any, count: int) -> float:
    started = time.perf_counter()
    ray.get([fn.remote() for _ in range(count)], timeout=300)
    return time.perf_counter() - started


def captured_tasks(fn: Any, count: int) -> float:
    """``raw_tasks`` itself, unchanged, with capture on: a plain ``@ray.remote`` function
    decorated before capture started, its tasks queued."""
    ray_queue.capture.enable()
    try:
        return raw_tasks(fn, count)
    finally:
        ray_queue.capture.disable()


def raw_tasks_per_slot(fn: Any, count: int, slots: int) -> float:
    """Plain Ray tasks launched the way a queue must launch them: ``slots`` at a time, the
    next one only when one has returned. Not a side of the ratio; it shows how much of raw
    Ray's speed comes from pipelining tasks onto leased workers, which admission per task
    gives up."""
    started = time.perf_counter()
    running = [fn.remote() for _ in range(min(slots, count))]
    left = count - len(running)
    while running:
        done, running = ray.wait(running, num_returns=1, fetch_local=False)
        launch = min(left, len(done))
        running.extend(fn.remote() for _ in range(launch))
        left -= launch
    return time.perf_counter() - started


def queued_tasks(fn: Any, count: int) -> float:
    started = time.perf_counter()
    ray_queue.get([fn.remote() for _ in range(count)], timeout=300)
    return time.perf_counter() - started


@dataclass
class _Runs:
    """One side's repetitions: seconds, and CPU seconds by process role (``process_cpu``)."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)

    def add(self, run: Callable[[], float], named: Mapping[int, str]) -> None:
        seconds, cpu = process_cpu.measured(run, named)
        self.seconds.append(seconds)
        self.cpu.append(cpu)


def _alternate(
    raw: Callable[[], float],
    queued: Callable[[], float],
    repetitions: int,
    named: Mapping[int, str],
) -> tuple[_Runs, _Runs]:
    raw_runs, queued_runs = _Runs(), _Runs()
    for _ in range(repetitions):
        raw_runs.add(raw, named)
        queued_runs.add(queued, named)
    return raw_runs, queued_runs


def _side(count: int, seconds: list[float]) -> dict[str, Any]:
    per_s = [count / s for s in seconds]
    return {
        "seconds": seconds,
        "per_s": per_s,
        "median_per_s": statistics.median(per_s),
        "min_per_s": min(per_s),
        "max_per_s": max(per_s),
        # Spread: (max - min) / median throughput, so noisy runs show.
        "spread": (max(per_s) - min(per_s)) / statistics.median(per_s),
    }


def _cpu_ms_per_item(count: int, cpu: list[dict[str, float]]) -> dict[str, float]:
    """Median over repetitions of each role's CPU milliseconds per item."""
    roles = sorted({role for run in cpu for role in run})
    return {
        role: statistics.median(1e3 * run.get(role, 0.0) / count for run in cpu) for role in roles
    }


def _measured_side(count: int, runs: _Runs) -> dict[str, Any]:
    return {**_side(count, runs.seconds), "cpu_ms_per_item": _cpu_ms_per_item(count, runs.cpu)}


def _compare(count: int, raw_runs: _Runs, queued_runs: _Runs) -> dict[str, Any]:
    raw_s, queued_s = raw_runs.seconds, queued_runs.seconds
    raw, queued = _measured_side(count, raw_runs), _measured_side(count, queued_runs)
    return {
        "count": count,
        "raw": raw,
        "queued": queued,
        "ratio": queued["median_per_s"] / raw["median_per_s"],
        # Each repetition's ratio (raw and queued ran back to back), to show its spread.
        "ratio_per_repetition": [r / q for r, q in zip(raw_s, queued_s, strict=True)],
    }


def measure(
    *, pg_count: int, task_count: int, repetitions: int, cpus: int, task_cpus: float
) -> dict[str, Any]:
    """Start the cluster, warm both paths up once (worker processes, the manager, the
    client's accepted shapes), then alternate raw and queued ``repetitions`` times."""
    # "local": always a new cluster of our own, never one another process left running.
    ray.init(
        address="local",
        num_cpus=cpus,
        resources={PG_RESOURCE: pg_count},
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        ray_queue.init()
        try:
            plain = ray.remote(num_cpus=task_cpus)(_noop)
            queued = ray_queue.remote(num_cpus=task_cpus)(_noop)
            warm_pgs, warm_tasks = min(pg_count, 20), min(task_count, 200)
            raw_pgs(warm_pgs)
            queued_pgs(warm_pgs)
            captured_pgs(warm_pgs)
            raw_tasks(plain, warm_tasks)
            queued_tasks(queued, warm_tasks)
            captured_tasks(plain, warm_tasks)
            manager = find_manager()
            if manager is None:
                raise RuntimeError("ray_queue.init() returned, but no queue manager is running")
            named = {int(ray.get(manager.pid.remote())): "manager"}
            pgs = _compare(
                pg_count,
                *_alternate(
                    lambda: raw_pgs(pg_count), lambda: queued_pgs(pg_count), repetitions, named
                ),
            )
            captured = _compare(
                pg_count,
                *_alternate(
                    lambda: raw_pgs(pg_count), lambda: captured_pgs(pg_count), repetitions, named
                ),
            )
            tasks = _compare(
                task_count,
                *_alternate(
                    lambda: raw_tasks(plain, task_count),
                    lambda: queued_tasks(queued, task_count),
                    repetitions,
                    named,
                ),
            )
            captured_work = _compare(
                task_count,
                *_alternate(
                    lambda: raw_tasks(plain, task_count),
                    lambda: captured_tasks(plain, task_count),
                    repetitions,
                    named,
                ),
            )
            slots = max(1, int(cpus / task_cpus))
            per_slot = [raw_tasks_per_slot(plain, task_count, slots) for _ in range(repetitions)]
            tasks["raw_per_slot"] = {"slots": slots, **_side(task_count, per_slot)}
            tasks["ratio_to_raw_per_slot"] = (
                tasks["queued"]["median_per_s"] / tasks["raw_per_slot"]["median_per_s"]
            )
        finally:
            ray_queue.shutdown()
    finally:
        ray.shutdown()
    return {
        "placement_groups": pgs,
        "captured_placement_groups": captured,
        "tasks": tasks,
        "captured_tasks": captured_work,
    }


def report(
    measured: dict[str, Any],
    *,
    command: str,
    repetitions: int,
    cpus: int,
    task_cpus: float,
) -> dict[str, Any]:
    pgs, tasks = measured["placement_groups"], measured["tasks"]
    captured = measured["captured_placement_groups"]
    captured_work = measured["captured_tasks"]
    doc: dict[str, Any] = {
        "benchmark": "overhead",
        "pg_ratio": pgs["ratio"],
        "task_ratio": tasks["ratio"],
        "captured_pg_ratio": captured["ratio"],
        "captured_task_ratio": captured_work["ratio"],
        "repetitions": repetitions,
        "placement_groups": {
            **pgs,
            "what": f"{pgs['count']} groups of one bundle {{{PG_RESOURCE}: 1}} created at "
            "once, waited until all placed, removed; throughput = groups / s",
        },
        "captured_placement_groups": {
            **captured,
            "what": "the raw side's own code (ray.util.placement_group, ready(), "
            "remove_placement_group) run again with capture on (the 'queued' side); "
            "alternated with raw runs; throughput = groups / s",
        },
        "tasks": {
            **tasks,
            "what": f"{tasks['count']} no-op tasks (num_cpus={task_cpus:g}) submitted at once, "
            "all results gotten; throughput = tasks / s",
        },
        "captured_tasks": {
            **captured_work,
            "what": "the raw side's own code (a plain @ray.remote function decorated before "
            "capture, .remote() all, ray.get all) run again with capture on (the 'queued' "
            "side); alternated with raw runs; throughput = tasks / s",
        },
        "ray_cluster": {
            "nodes": 1,
            "logical_cpus": cpus,
            PG_RESOURCE: pgs["count"],
            "ray_version": ray.__version__,
        },
        "command": command,
        "machine": provenance.machine(),
        "load_average": list(os.getloadavg()),
        **provenance.git("ray_queue", "benchmarks"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    doc["targets"] = {
        name: {"min": limit, "value": doc[name], "met": doc[name] >= limit}
        for name, limit in TARGETS.items()
    }
    return doc


def print_summary(doc: dict[str, Any], console: Console) -> None:
    table = Table(title=f"overhead: queued vs raw Ray (median of {doc['repetitions']})")
    table.add_column("")
    table.add_column("raw / s", justify="right")
    table.add_column("queued / s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    for label, key, ratio in (
        ("placement groups", "placement_groups", "pg_ratio"),
        ("placement groups, captured", "captured_placement_groups", "captured_pg_ratio"),
        ("tasks", "tasks", "task_ratio"),
        ("tasks, captured", "captured_tasks", "captured_task_ratio"),
    ):
        part = doc[key]
        table.add_row(
            f"{label} ({part['count']})",
            f"{part['raw']['median_per_s']:.0f}",
            f"{part['queued']['median_per_s']:.0f}",
            f"{doc[ratio]:.2f}",
            f">= {TARGETS[ratio]:g}",
        )
    per_slot = doc["tasks"]["raw_per_slot"]
    table.add_row(
        f"  raw, {per_slot['slots']} at a time, next when one returns",
        f"{per_slot['median_per_s']:.0f}",
        "",
        f"{doc['tasks']['ratio_to_raw_per_slot']:.2f}",
        "",
    )
    console.print(table)
    raw_cpu = doc["tasks"]["raw"]["cpu_ms_per_item"]
    queued_cpu = doc["tasks"]["queued"]["cpu_ms_per_item"]
    captured_cpu = doc["captured_tasks"]["queued"]["cpu_ms_per_item"]
    cpu = Table(title="CPU ms per task, by process (median of the repetitions)")
    cpu.add_column("process")
    cpu.add_column("raw", justify="right")
    cpu.add_column("queued", justify="right")
    cpu.add_column("captured", justify="right")
    for role in sorted({*raw_cpu, *queued_cpu, *captured_cpu}, key=lambda r: (r == "total", r)):
        cpu.add_row(
            role,
            f"{raw_cpu.get(role, 0.0):.2f}",
            f"{queued_cpu.get(role, 0.0):.2f}",
            f"{captured_cpu.get(role, 0.0):.2f}",
        )
    console.print(cpu)
    console.print(f"reproduce: {doc['command']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="Queued placement groups and tasks against raw Ray, in one run.",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument("--pg-count", type=int, default=500)
    parser.add_argument("--task-count", type=int, default=2000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of the node")
    parser.add_argument(
        "--task-cpus", type=float, default=1.0, help="num_cpus of each task (both sides)"
    )
    args = parser.parse_args(argv)
    if min(args.pg_count, args.task_count, args.repetitions, args.cpus) < 1:
        parser.error("counts, repetitions and cpus must be >= 1")
    command = provenance.command("benchmarks.overhead", argv)
    measured = measure(
        pg_count=args.pg_count,
        task_count=args.task_count,
        repetitions=args.repetitions,
        cpus=args.cpus,
        task_cpus=args.task_cpus,
    )
    doc = report(
        measured,
        command=command,
        repetitions=args.repetitions,
        cpus=args.cpus,
        task_cpus=args.task_cpus,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print_summary(doc, Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
