"""One tenant's heavy calls against another's latency: ``python -m benchmarks.grpc_fairness
--out FILE.json``.

A real gRPC server (``python -m ray_queue.grpc.server``: ManagerCore without Ray) holds
``--workloads`` workloads in tenant X's queue. Tenant Y times ``GetWorkload`` on its own
workload, first alone, then while X runs ``--flooders`` threads each listing all of its
workloads (``ListWorkloads``, the heaviest call) in a loop. Run twice: with the default
per-token limit on calls in flight (16, a quarter of the server's 64 threads), and with
the limit raised to 64, as it was before. Reports Y's p50/p99 in each phase and how many
of X's calls were refused with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.grpc_load import start_server
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.status import RateLimitedError
from ray_queue.wire import SubmitRequest

ADMIN, TENANT_X, TENANT_Y = "fairness-admin-token", "fairness-x-token", "fairness-y-token"
CONFIG = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: shared}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: default
      resources: [{name: CPU, nominalQuota: 1}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: x}
spec: {clusterQueue: shared}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: y}
spec: {clusterQueue: shared}
"""


def _tokens(x_in_flight: int | None) -> str:
    x_limits = (
        f", limits: {{max_in_flight: {x_in_flight}, max_heavy_in_flight: {x_in_flight}}}"
        if x_in_flight
        else ""
    )
    return f"""
tokens:
  - {{token: {ADMIN}, role: admin, limits: {{rate_per_s: 1000000, burst: 1000000}}}}
  - {{token: {TENANT_X}, role: tenant, name: x, queues: [x]{x_limits}}}
  - {{token: {TENANT_Y}, role: tenant, name: y, queues: [y],
     limits: {{rate_per_s: 1000000, burst: 1000000}}}}
"""


def _spec(name: str, queue: str) -> SubmitRequest:
    return SubmitRequest(
        WorkloadId(name), queue, (BundleGroup({"CPU": 1000}, 1),), kind=WorkloadKind.TASK
    )


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "p50_ms": round(1e3 * statistics.median(ordered), 3),
        "p99_ms": round(1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
    }


def _time_y(address: str, workload: str, duration_s: float) -> list[float]:
    samples: list[float] = []
    with QueueClient(address, token=TENANT_Y, timeout_s=60) as client:
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            client.workload(workload)
            samples.append(time.perf_counter() - t0)
    return samples


def run(workdir: Path, x_in_flight: int | None, args: argparse.Namespace) -> dict[str, Any]:
    proc, address = start_server(workdir, config=CONFIG, tokens=_tokens(x_in_flight))
    try:
        with QueueClient(address, token=ADMIN, timeout_s=120) as admin:
            for start in range(0, args.workloads, 5000):
                stop = min(args.workloads, start + 5000)
                admin.submit_many([_spec(f"x-{i}", "x") for i in range(start, stop)])
            admin.submit(_spec("y-0", "y"))
        alone = _time_y(address, "y-0", args.duration)
        stop_flood = threading.Event()
        counts = {"listed": 0, "refused": 0}
        lock = threading.Lock()

        def flood() -> None:
            with QueueClient(address, token=TENANT_X, timeout_s=120) as client:
                while not stop_flood.is_set():
                    try:
                        client.workloads(queue="x", page_size=5000)
                        outcome = "listed"
                    except RateLimitedError:
                        outcome = "refused"
                    with lock:
                        counts[outcome] += 1

        flooders = [threading.Thread(target=flood) for _ in range(args.flooders)]
        for t in flooders:
            t.start()
        flooded = _time_y(address, "y-0", args.duration)
        stop_flood.set()
        for t in flooders:
            t.join()
    finally:
        proc.kill()
        proc.wait()
    return {
        "x_limits": "default (16 in flight, 2 lists)" if x_in_flight is None else "64 / 64",
        "y_alone": _percentiles(alone),
        "y_during_flood": _percentiles(flooded),
        "x_lists_served": counts["listed"],
        "x_lists_refused": counts["refused"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--workloads", type=int, default=20_000)
    parser.add_argument("--flooders", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    args = parser.parse_args(argv)
    runs = []
    for x_in_flight in (None, 64):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run(Path(tmp), x_in_flight, args))
    result = {
        "benchmark": "grpc_fairness",
        "command": "python -m benchmarks.grpc_fairness " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workloads": args.workloads,
        "flooders": args.flooders,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'X limits':>32} {'Y alone p50/p99 ms':>20} {'Y flooded p50/p99 ms':>22} "
          f"{'X served':>9} {'X refused':>10}")  # fmt: skip
    for r in runs:
        a, f = r["y_alone"], r["y_during_flood"]
        print(
            f"{r['x_limits']:>32} {a['p50_ms']:>9.2f}/{a['p99_ms']:<10.2f}"
            f"{f['p50_ms']:>11.2f}/{f['p99_ms']:<10.2f}{r['x_lists_served']:>9} "
            f"{r['x_lists_refused']:>10}"
        )
    print(f"reproduce: {result['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
