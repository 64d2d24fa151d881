"""gRPC submission throughput and latency: ``python -m benchmarks.grpc_load --out FILE.json``.

Drives a real server from 1, 8 and 32 concurrent clients, each a thread with its own
channel, submitting one workload per ``SubmitWorkloads`` call for a fixed time, and
reports submissions per second and p50/p99 call latency per level, plus one batched run
(100 workloads per call) for contrast. Every workload fits its quota, so each call also
runs an admission cycle. Two backends (``--backend``, recorded in the JSON):

- ``engine``: ``python -m ray_queue.grpc.server`` in a subprocess — the API with bearer
  tokens over ManagerCore in process, without Ray (in-memory store, no Ray actions;
  ``ray_queue/grpc/local_manager.py``; until 2026-12-07 a bare in-process engine);
- ``manager``: the real QueueManager actor on a one-node Ray cluster (ManagerCore, the
  SQLite store, every call on the actor's loop) serving gRPC with the server it starts
  itself. Workloads are tasks, so admission creates no Ray objects and the numbers are
  the queue's own cost.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind
from ray_queue.grpc.client import QueueClient
from ray_queue.wire import SubmitRequest

TOKEN = "benchmark-admin-token"
CONFIG = """
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: bench}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: default
      resources: [{name: CPU, nominalQuota: 100000000}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {name: bench}
spec: {clusterQueue: bench}
"""
TOKENS = f"""
tokens:
  - token: {TOKEN}
    role: admin
    limits: {{rate_per_s: 1000000000, burst: 1000000000, max_in_flight: 10000}}
"""


def start_server(
    workdir: Path, *, config: str = CONFIG, tokens: str = TOKENS
) -> tuple[subprocess.Popen[str], str]:
    """``python -m ray_queue.grpc.server`` over ``config`` with ``tokens``; (process, address)."""
    (workdir / "config.yaml").write_text(config)
    (workdir / "tokens.yaml").write_text(tokens)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_QUEUE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray_queue.grpc.server",
            "--config",
            str(workdir / "config.yaml"),
            "--port",
            "0",
            "--tokens",
            str(workdir / "tokens.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split()[-1]


def start_manager(workdir: Path) -> tuple[Callable[[], None], str]:
    """The real manager actor on a one-node Ray cluster, serving gRPC as it does in
    production: its own server, tokens from ``RAY_QUEUE_TOKENS``, a free port."""
    import ray
    from ray.cluster_utils import Cluster

    from ray_queue.engine.config_loader import load_config
    from ray_queue.manager.actor import QueueManager

    class Manager(QueueManager):
        async def grpc_address(self) -> str:
            self._ensure_loop()  # what ray_queue.init's first call does: starts the server
            assert self._grpc is not None, "the manager did not start its gRPC server"
            return str(self._grpc.address)

    # The raylet (and so the actor) inherits these.
    os.environ.update(
        {"RAY_QUEUE_TOKENS": TOKENS, "RAY_QUEUE_GRPC_PORT": "0", "RAY_QUEUE_METRICS_PORT": "0"}
    )
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=cluster.address, logging_level=logging.ERROR)
    # Ray's actor typing is lost through `.options()`: the handle is used as Any.
    actor: Any = (
        ray.remote(Manager)
        .options(num_cpus=0, max_concurrency=1000)
        .remote(load_config(CONFIG), str(workdir / "state"))
    )
    address = ray.get(actor.grpc_address.remote(), timeout=120)

    def stop() -> None:
        ray.kill(actor)
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]  # unannotated in Ray

    return stop, str(address)


def _spec(name: str) -> SubmitRequest:
    return SubmitRequest(
        WorkloadId(name), "bench", (BundleGroup({"CPU": 100}, 1),), kind=WorkloadKind.TASK
    )


def run_level(
    address: str, clients: int, duration_s: float, batch: int, tag: str
) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    accepted = [0] * clients
    failures: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        client = QueueClient(address, token=TOKEN, timeout_s=60)
        try:
            client.cohorts()  # connect before the clock starts
            start_gate.wait()
            deadline = time.perf_counter() + duration_s
            i = 0
            while time.perf_counter() < deadline:
                specs = [_spec(f"{tag}-{n}-{i + k}") for k in range(batch)]
                i += batch
                t0 = time.perf_counter()
                outcomes = client.submit_many(specs)
                latencies[n].append(time.perf_counter() - t0)
                accepted[n] += sum(1 for o in outcomes if not isinstance(o, RayQueueError))
                failures.extend(str(o) for o in outcomes if isinstance(o, RayQueueError))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = sorted(x for per in latencies for x in per)
    return {
        "clients": clients,
        "workloads_per_call": batch,
        "duration_s": round(elapsed, 3),
        "calls": len(flat),
        "submissions": sum(accepted),
        "refused": len(failures),
        "submissions_per_s": round(sum(accepted) / elapsed, 1),
        "latency_p50_ms": round(1e3 * statistics.median(flat), 3),
        "latency_p99_ms": round(1e3 * flat[min(len(flat) - 1, int(0.99 * len(flat)))], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--backend", choices=["engine", "manager"], default="engine")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "engine":
            proc, address = start_server(Path(tmp))

            def stop() -> None:
                proc.terminate()
                proc.wait(30)

        else:
            stop, address = start_manager(Path(tmp))
        try:
            results = [
                run_level(address, n, args.duration, 1, f"c{n}")
                for n in (int(x) for x in args.levels.split(","))
            ]
            results.append(run_level(address, 8, args.duration, 100, "batch"))
        finally:
            stop()
    backends = {
        "engine": "engine: python -m ray_queue.grpc.server (gRPC over ManagerCore in process, "
        "in-memory store, no Ray)",
        "manager": "manager: the QueueManager actor on a 1-node Ray cluster (ManagerCore, "
        "SQLite store, calls run on the actor loop) serving gRPC with its own server",
    }
    report = {
        "benchmark": "grpc_load",
        "backend": backends[args.backend],
        "auth": "bearer token (admin), plaintext on loopback",
        "server_process": "separate process; clients are threads of this process",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        # The machine may be shared: a load average above its CPU count means the numbers
        # measure contention as much as ray-queue.
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(
            f"{r['clients']:>3} clients x {r['workloads_per_call']:>3}/call: "
            f"{r['submissions_per_s']:>9.1f} submissions/s  p50 {r['latency_p50_ms']:.2f} ms  "
            f"p99 {r['latency_p99_ms']:.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
