"""Ray's own placement group throughput, without ray_queue: the bound under ``ray_e2e``.

``ray_e2e`` needs one placement group per workload, so no scheduler on top of Ray can run
the shape faster than Ray creates and places groups. That rate is not a constant: it falls
as the number of groups alive on the node grows (every live group adds resources the node
reports and the GCS schedules against). This measures it with nothing but Ray: a one-node
cluster, ``live`` groups of one 1-CPU bundle (``ray_e2e``'s small class: most of its
workloads, and all of its tail) kept alive, and a churn loop that removes the oldest,
creates one, and counts a group once Ray has placed it, ``in_flight`` at a time. The live
groups leave some of the node free, so no creation waits for capacity a removal has just
given back (``ray_queue``'s release pacing exists for that wait; it is not measured here).

    .venv/bin/python -m benchmarks.ray_ceiling --out benchmarks/results/ray-ceiling.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from rich.console import Console
from rich.table import Table

from benchmarks import provenance

#: The node of ``ray_e2e --scenario kueue-baseline``.
NODE_CPUS = 600
#: CPUs never taken by live groups, so a new group always fits at once.
HEADROOM_CPUS = 50


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement: ``live`` groups alive, ``in_flight`` being created at a time."""

    live: int
    in_flight: int


DEFAULT_POINTS = (Point(30, 10), Point(100, 10), Point(300, 10), Point(550, 10))
BUNDLE = {"CPU": 1.0}


def churn(point: Point, seconds: float) -> dict[str, Any]:
    """Placed groups per second while ``point.live`` groups stay alive."""
    live: collections.deque[PlacementGroup] = collections.deque(
        placement_group([BUNDLE]) for _ in range(point.live)
    )
    ray.get([group.ready() for group in live], timeout=300)
    placing: dict[Any, PlacementGroup] = {}
    placed = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            while len(placing) < point.in_flight:
                remove_placement_group(live.popleft())
                group = placement_group([BUNDLE])
                placing[group.ready()] = group
            done, _ = ray.wait(list(placing), num_returns=1, timeout=5)
            for ref in done:
                live.append(placing.pop(ref))
                placed += 1
        elapsed = time.perf_counter() - started
    finally:
        for group in [*live, *placing.values()]:
            remove_placement_group(group)
    return {"placed": placed, "seconds": elapsed, "placed_per_s": placed / elapsed}


def measure(points: Sequence[Point], *, seconds: float, repetitions: int) -> list[dict[str, Any]]:
    for point in points:
        if point.live + HEADROOM_CPUS > NODE_CPUS:
            raise ValueError(f"{point} does not leave {HEADROOM_CPUS} CPUs of {NODE_CPUS} free")
    # "local": always a new cluster of our own, never one another process left running.
    ray.init(address="local", num_cpus=NODE_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        results = []
        for point in points:
            runs = []
            for _ in range(repetitions):
                runs.append(churn(point, seconds))
                time.sleep(1.0)  # let the removals reach the node before the next fill
            rates = [r["placed_per_s"] for r in runs]
            results.append(
                {
                    "live_groups": point.live,
                    "in_flight": point.in_flight,
                    "placed_per_s": rates,
                    "median_placed_per_s": statistics.median(rates),
                }
            )
        return results
    finally:
        ray.shutdown()


def report(
    points: list[dict[str, Any]], *, command: str, seconds: float, repetitions: int
) -> dict[str, Any]:
    return {
        "benchmark": "ray_ceiling",
        "what": "raw Ray, no ray_queue: groups of one {CPU: 1} bundle; remove the oldest "
        f"live group, create one, count it once placed; {seconds:g} s per repetition",
        "ray_cluster": {"nodes": 1, "logical_cpus": NODE_CPUS, "ray_version": ray.__version__},
        "repetitions": repetitions,
        "points": points,
        "command": command,
        "machine": provenance.machine(),
        "load_average": list(os.getloadavg()),
        **provenance.git("benchmarks"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def print_summary(doc: dict[str, Any], console: Console) -> None:
    table = Table(title=f"raw Ray placement group churn (median of {doc['repetitions']})")
    table.add_column("live groups", justify="right")
    table.add_column("placed / s", justify="right")
    for point in doc["points"]:
        table.add_row(str(point["live_groups"]), f"{point['median_placed_per_s']:.0f}")
    console.print(table)
    console.print(f"reproduce: {doc['command']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ray_ceiling",
        description="Raw Ray placement group throughput against the number of live groups.",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per repetition")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repetitions < 1:
        parser.error("seconds must be > 0 and repetitions >= 1")
    command = provenance.command("benchmarks.ray_ceiling", argv)
    points = measure(DEFAULT_POINTS, seconds=args.seconds, repetitions=args.repetitions)
    doc = report(points, command=command, seconds=args.seconds, repetitions=args.repetitions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print_summary(doc, Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
