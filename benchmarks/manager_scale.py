"""The manager itself at scale: ``python -m benchmarks.manager_scale --out FILE.json``.

Issue 23, item 6 (defaults: ``--cqs 1000 --pending 100000``). The real QueueManager
actor (ManagerCore, the SQLite store, its own gRPC server with a bearer token,
``max_restarts=-1`` as ``start_manager`` creates it) on a one-node local Ray cluster,
with ``--cqs`` ClusterQueues of one CPU each (in cohorts of 100, a Queue per
ClusterQueue). ``--pending`` tasks of one CPU are submitted over gRPC, round-robin over
the ClusterQueues, plus one more per ClusterQueue that takes its quota,
so exactly ``--pending`` wait. Tasks are admitted without Ray objects (no slot: no
payload asks for one), so the figures are the manager's own. Measured:

- submission rate (workloads/s over gRPC, ``--clients`` threads, ``--batch`` per call);
- cycle time (schedule + persist + act + notify, timed inside the actor around every
  ``ManagerCore._commit``) while submitting and while idle with everything pending;
- ``ListPending`` latency over gRPC (all of them, and one ClusterQueue's);
- the manager's RSS and CPU seconds (``/proc``), and the store's size;
- ``--kills`` times: kill -9 of the manager's process → Ray restarts it → serving gRPC
  and reporting every pending workload restored (to a client made before the kill), and
  answering a new actor call and one made while it was down. The restarted
  actor also reports how long Ray took to start its process and reach ``__init__``, how
  long ``__init__`` took and the recovery within it (store load, engine restore,
  reconcile), how long Ray took to bring it the first call once ``__init__`` returned,
  and how long that first call (which starts the loop and gRPC) took.

The benchmark's actor subclass adds only those observation methods; everything it
measures runs the production code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ports import free_port
from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind
from ray_queue.grpc.client import QueueClient
from ray_queue.wire import SubmitRequest

logger = logging.getLogger("benchmarks.manager_scale")

TOKEN = "manager-scale-admin-token"
TOKENS = f"""
tokens:
  - token: {TOKEN}
    role: admin
    limits: {{rate_per_s: 1000000000, burst: 1000000000, max_in_flight: 10000}}
"""
COHORT_SIZE = 100
#: Targets from issue 23.
RECOVERY_S_MAX = 5.0
RSS_MB_MAX = 1024.0


def config_yaml(cqs: int) -> str:
    """``cqs`` ClusterQueues of 1 CPU nominal quota, in cohorts of ``COHORT_SIZE``."""
    docs = ["apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: default}\n"]
    for i in range(cqs):
        docs.append(
            f"""apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {{name: cq-{i}}}
spec:
  cohort: cohort-{i // COHORT_SIZE}
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: default
      resources: [{{name: CPU, nominalQuota: 1, borrowingLimit: 0}}]
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: q-{i}}}
spec: {{clusterQueue: cq-{i}}}
"""
        )
    return "---\n".join(docs)


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_s(pid: int) -> float:
    # Fields after the command (which may hold spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(1e3 * statistics.median(values), 2),
        "p99_ms": round(1e3 * percentile(values, 0.99), 2),
        "max_ms": round(1e3 * max(values), 2),
    }


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.grpc_port = free_port()
        self.address = f"127.0.0.1:{self.grpc_port}"
        self.cluster: Any = None
        self.actor: Any = None

    # -- the manager ---------------------------------------------------------------------------

    def start(self) -> None:
        import ray
        from ray.cluster_utils import Cluster

        from ray_queue.engine.config_loader import load_config
        from ray_queue.manager.actor import MANAGER_NAME, NAMESPACE, QueueManager
        from ray_queue.manager.core import ManagerCore
        from ray_queue.ray_adapter.cluster import on_the_head
        from ray_queue.store.codec import pack_config

        class ScaleManager(QueueManager):
            """The manager, plus what the benchmark reads: each cycle's duration and how
            long ``__init__`` (store load, engine restore, reconcile) took."""

            def __init__(self, *args: Any) -> None:
                began, cpu = time.time(), time.thread_time()
                self._recover_s = 0.0
                self._first_call: tuple[float, float] | None = None
                recover = ManagerCore.recover

                def timed_recover(*a: Any, **k: Any) -> ManagerCore:
                    t0 = time.perf_counter()
                    try:
                        return recover(*a, **k)
                    finally:
                        self._recover_s = time.perf_counter() - t0

                # Observation only, and only in this process: the store load, engine
                # restore and reconcile, apart from the rest of __init__.
                ManagerCore.recover = timed_recover  # type: ignore[method-assign]
                try:
                    super().__init__(*args)
                finally:
                    ManagerCore.recover = recover  # type: ignore[method-assign]
                self._init_s = time.time() - began
                self._init_cpu_s = time.thread_time() - cpu
                self._began = began
                self._cycles: list[tuple[float, float]] = []
                commit = self._core._commit

                def timed(*a: Any, **k: Any) -> None:
                    # Wall and the loop thread's own CPU: on a shared machine the first
                    # says how long callers waited, the second what the cycle cost.
                    t0, c0 = time.perf_counter(), time.thread_time()
                    commit(*a, **k)
                    self._cycles.append((time.perf_counter() - t0, time.thread_time() - c0))

                self._core._commit = timed  # type: ignore[method-assign]  # observation only

            async def ping(self) -> str:
                arrived = time.time()
                epoch = await super().ping()
                if self._first_call is None:  # the first call starts the loop and gRPC
                    self._first_call = (arrived, time.time())
                return epoch

            async def take_cycles(self) -> list[tuple[float, float]]:
                taken, self._cycles = self._cycles, []
                return taken

            async def startup(self) -> dict[str, float]:
                ticks = os.sysconf("SC_CLK_TCK")
                start_ticks = int(
                    Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]
                )
                boot = float(Path("/proc/uptime").read_text().split()[0])
                process_started = time.time() - boot + start_ticks / ticks
                arrived, answered = self._first_call or (0.0, 0.0)
                return {
                    "process_started": process_started,
                    "init_began": self._began,
                    "init_s": self._init_s,
                    "init_cpu_s": self._init_cpu_s,
                    "recover_s": self._recover_s,
                    "first_call_arrived": arrived,
                    "first_call_answered": answered,
                }

        env = {
            "RAY_QUEUE_TOKENS": TOKENS,
            "RAY_QUEUE_GRPC_PORT": str(self.grpc_port),
            "RAY_QUEUE_METRICS_PORT": "off",
        }
        os.environ.pop("RAY_ADDRESS", None)
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        ray.init(address=self.cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        config = load_config(config_yaml(self.args.cqs))
        # As ``start_manager`` creates it, with the subclass.
        self.actor = (
            ray.remote(ScaleManager)
            .options(
                name=MANAGER_NAME,
                namespace=NAMESPACE,
                lifetime="detached",
                max_restarts=-1,
                max_task_retries=-1,
                max_concurrency=1000,
                num_cpus=0,
                resources=on_the_head(),
                runtime_env={"env_vars": env},
            )
            .remote(pack_config(config), str(self.workdir / "state"))
        )
        ray.get(self.actor.ping.remote(), timeout=300)
        with self.client() as c:
            wait_for(lambda: serving(c), 120, "the gRPC API")

    def stop(self) -> None:
        import ray

        if self.actor is not None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception as e:  # already gone
                logger.warning("killing the manager: %s", e)
        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()

    def client(self, timeout_s: float = 300) -> QueueClient:
        return QueueClient(self.address, token=TOKEN, timeout_s=timeout_s)

    def manager_pid(self) -> int:
        import ray

        return int(ray.get(self.actor.pid.remote(), timeout=60))

    def take_cycles(self) -> dict[str, Any]:
        """Cycles since the last call: wall and CPU (of the actor's loop thread)."""
        import ray

        cycles = ray.get(self.actor.take_cycles.remote(), timeout=120)
        return {
            "wall": summary_ms([wall for wall, _ in cycles]),
            "cpu": summary_ms([cpu for _, cpu in cycles]),
        }

    # -- phases --------------------------------------------------------------------------------

    def submit(self) -> dict[str, Any]:
        """Everything over gRPC: ``clients`` threads take batches from one shared list."""
        cqs, pending = self.args.cqs, self.args.pending
        per_cq = -(-pending // cqs) + 1
        total = pending + cqs
        names = [(f"w-{n}-{i}", f"q-{i}") for n in range(per_cq) for i in range(cqs)][:total]
        batches = [names[i : i + self.args.batch] for i in range(0, len(names), self.args.batch)]
        lock = threading.Lock()
        latencies: list[float] = []
        refused: list[str] = []
        gate = threading.Barrier(self.args.clients + 1)

        def worker() -> None:
            with self.client() as c:
                c.cohorts()  # connected before the clock starts
                gate.wait()
                while True:
                    with lock:
                        if not batches:
                            return
                        batch = batches.pop(0)
                    requests = [
                        SubmitRequest(
                            WorkloadId(w),
                            q,
                            (BundleGroup({"CPU": 1000}, 1),),
                            kind=WorkloadKind.TASK,
                        )
                        for w, q in batch
                    ]
                    t0 = time.perf_counter()
                    outcomes = c.submit_many(requests)
                    took = time.perf_counter() - t0
                    with lock:
                        latencies.append(took)
                        refused.extend(str(o) for o in outcomes if isinstance(o, RayQueueError))

        threads = [threading.Thread(target=worker) for _ in range(self.args.clients)]
        for t in threads:
            t.start()
        pid = self.manager_pid()
        cpu0 = proc_cpu_s(pid)
        load0 = load()
        gate.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if refused:
            raise RuntimeError(f"{len(refused)} submissions refused, e.g. {refused[0]}")
        return {
            "submitted": len(names),
            "seconds": round(elapsed, 2),
            "submissions_per_s": round(len(names) / elapsed, 1),
            "call_latency": summary_ms(latencies),
            "manager_cpu_s": round(proc_cpu_s(pid) - cpu0, 2),
            "load_before": load0,
            "load_after": load(),
        }

    def pending_count(self, c: QueueClient) -> int:
        return sum(cq.pending for cq in c.cluster_queues())

    def idle(self, seconds: float) -> dict[str, Any]:
        """Cycles of the background tick with everything pending (nothing changes)."""
        self.take_cycles()
        pid = self.manager_pid()
        cpu0 = proc_cpu_s(pid)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(0.5)
        cycles = self.take_cycles()
        return {
            "seconds": seconds,
            "cycles": cycles,
            "manager_cpu_s": round(proc_cpu_s(pid) - cpu0, 2),
            "load": load(),
        }

    def queries(self, c: QueueClient) -> dict[str, Any]:
        whole: list[float] = []
        count = 0
        for _ in range(self.args.repeat):
            t0 = time.perf_counter()
            count = len(c.pending())
            whole.append(time.perf_counter() - t0)
        one: list[float] = []
        for i in range(self.args.repeat * 4):
            t0 = time.perf_counter()
            c.pending(cluster_queue=f"cq-{(i * 37) % self.args.cqs}")
            one.append(time.perf_counter() - t0)
        if count != self.args.pending:
            raise RuntimeError(f"ListPending returned {count}, expected {self.args.pending}")
        return {
            "list_pending_all": {"returned": count, **summary_ms(whole)},
            "list_pending_one_cluster_queue": summary_ms(one),
            "load": load(),
        }

    def kill(self, c: QueueClient) -> dict[str, Any]:
        """kill -9 → gRPC serving again and reporting every pending workload (to ``c``, a
        client that lives through the restart, as the CLI's or the autoscaler's does) →
        a new actor call answered; and a call made while the manager was down."""
        import ray

        old_epoch = ray.get(self.actor.ping.remote(), timeout=60)
        pid = self.manager_pid()
        load0 = load()
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        in_flight = self.actor.ping.remote()  # as a driver's call made during the restart
        answered: list[float] = []

        def wait_in_flight() -> None:
            ray.get(in_flight, timeout=300)
            answered.append(time.time())

        waiter = threading.Thread(target=wait_in_flight, daemon=True)
        waiter.start()

        def new_epoch() -> bool:
            try:
                return bool(ray.get(self.actor.ping.remote(), timeout=0.5) != old_epoch)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return False

        wait_for(lambda: process_gone(pid), 30, "the killed process to exit")
        wait_for(lambda: serving(c), 120, "the gRPC API after the restart")
        grpc_s = time.time() - killed
        wait_for(lambda: self.pending_count(c) == self.args.pending, 120, "every workload back")
        restored_s = time.time() - killed
        wait_for(new_epoch, 300, "the actor to answer a new call")
        answering = time.time() - killed
        waiter.join(300)
        startup = ray.get(self.actor.startup.remote(), timeout=60)
        init_ended = startup["init_began"] + startup["init_s"]
        return {
            "load_before": load0,
            "serving_grpc_s": round(grpc_s, 2),
            "all_restored_s": round(restored_s, 2),
            "answering_new_call_s": round(answering, 2),
            "call_in_flight_answered_s": round(answered[0] - killed, 2) if answered else None,
            "ray_restart_to_process_s": round(startup["process_started"] - killed, 2),
            "process_to_init_s": round(startup["init_began"] - startup["process_started"], 2),
            "init_s": round(startup["init_s"], 2),
            "init_cpu_s": round(startup["init_cpu_s"], 2),
            "recover_s": round(startup["recover_s"], 2),
            # Ray: from __init__ returning to the first call (the actor's own) arriving.
            "init_to_first_call_s": round(startup["first_call_arrived"] - init_ended, 2),
            "first_call_s": round(
                startup["first_call_answered"] - startup["first_call_arrived"], 2
            ),
            "grpc_serving_to_all_restored_s": round(restored_s - grpc_s, 2),
        }

    def run(self) -> dict[str, Any]:
        report: dict[str, Any] = {"load_at_start": load()}
        self.start()
        pid = self.manager_pid()
        report["rss_mb_empty"] = round(proc_rss_mb(pid), 1)
        self.take_cycles()
        report["submission"] = self.submit()
        report["submission"]["cycles"] = self.take_cycles()
        logger.info("submitted: %s", report["submission"])
        with self.client() as c:
            wait_for(lambda: self.pending_count(c) == self.args.pending, 120, "all pending")
            report["rss_mb_at_pending"] = round(proc_rss_mb(pid), 1)
            report["idle"] = self.idle(self.args.idle_s)
            report["pending_queries"] = self.queries(c)
            store = self.workdir / "state"
            report["store_mb"] = round(
                sum(p.stat().st_size for p in store.glob("*.sqlite3*")) / 2**20, 1
            )
            report["kills"] = []
            for _ in range(self.args.kills):
                report["kills"].append(self.kill(c))
                logger.info("kill: %s", report["kills"][-1])
            pid = self.manager_pid()
            report["rss_mb_after_restore"] = round(proc_rss_mb(pid), 1)
        return report


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts: its sockets are closed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def serving(client: QueueClient) -> bool:
    try:
        return client.health() == "SERVING"
    except RayQueueError:
        return False


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cqs", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="workloads per gRPC call")
    parser.add_argument("--clients", type=int, default=2, help="concurrent gRPC clients")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5, help="ListPending calls of each kind")
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.cqs < 1 or args.pending < 1 or args.batch < 1 or args.clients < 1:
        parser.error("--cqs, --pending, --batch and --clients must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import ray

    with tempfile.TemporaryDirectory(prefix="manager-scale-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            report = bench.run()
        finally:
            bench.stop()
    kills = report["kills"]
    worst = max((k["all_restored_s"] for k in kills), default=None)
    report.update(
        {
            "benchmark": "manager_scale",
            "command": "python -m benchmarks.manager_scale " + " ".join(argv or sys.argv[1:]),
            "cluster_queues": args.cqs,
            "pending": args.pending,
            "batch": args.batch,
            "clients": args.clients,
            "machine": {
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "ray": ray.__version__,
                "git": _version(["git", "rev-parse", "--short", "HEAD"]),
            },
            "targets": {
                "recovery_s_max": RECOVERY_S_MAX,
                "recovery_met": worst is not None and worst < RECOVERY_S_MAX,
                "rss_mb_max": RSS_MB_MAX,
                "rss_met": report["rss_mb_at_pending"] < RSS_MB_MAX,
            },
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"\nreproduce: {report['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
