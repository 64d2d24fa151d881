"""Soak under several tenants and injected faults, checked from outside:
``python -m benchmarks.soak --minutes N --seed S --out FILE.json``.

A local Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker nodes, one of
two logical A100 GPUs and one of two logical T4 GPUs, told apart by node labels), the
manager with its SQLite store, gRPC and /metrics on loopback, tokens for an admin, three
tenants and the autoscaler, and the local autoscaler (``benchmarks.soak_autoscaler``: a
third GPU flavor whose node it starts on demand and removes when idle). Load, for
``--minutes``:

* one driver process per tenant (``benchmarks.soak_driver``: gangs, ``max_retries=0``
  tasks, actors, Ray jobs, cancellations through ``ray_queue``), restarted when killed;
* one gRPC client per tenant submitting placement-group workloads and Ray jobs and
  cancelling some;
* the admin re-applying one of three configs with different quotas over gRPC.

Faults on a schedule drawn from ``--seed``: the manager killed with SIGKILL (its pid
from the actor; Ray restarts it), a driver killed mid-submission, a config with errors
applied, malformed and oversized gRPC messages, a tenant's token used against another
tenant's queue and against admin RPCs (both doors: gRPC and the actor), a worker node's
raylet killed (``Cluster.remove_node`` of our own node, then a node added back), and the
autoscaler killed with SIGKILL (then started again: it must take over its nodes). A head
restart is not among them: the manager, its store and every driver live on the head, so
it ends the run rather than testing recovery on one machine.

``benchmarks.soak_observer`` runs in a process of its own and checks the invariants
(see there). The report has counts of operations and faults, every violation with its
evidence, lost workloads, recovery times after each manager kill, time to admission
p50/p99 per tenant and class, and per-minute time series of admission latency, manager
RSS, store size and metric values.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import ray
from ray.cluster_utils import Cluster

from benchmarks import provenance, soak_plot
from benchmarks.ports import free_port
from benchmarks.soak_faults import CANARY, Faults, serving, wait_for
from benchmarks.soak_observer import percentile
from benchmarks.soak_shape import TENANTS, VARIANTS, WORKER_ARGS, config_yaml
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind, WorkloadState
from ray_queue.errors import UnknownWorkloadError
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.status import ServerUnavailableError
from ray_queue.manager.actor import start_manager
from ray_queue.wire import SubmitRequest

logger = logging.getLogger("soak")

S = WorkloadState


class Soak(Faults):
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.stop = threading.Event()
        self.config_lock = threading.Lock()
        self.ops: collections.Counter[str] = collections.Counter()
        self.ops_lock = threading.Lock()
        self.fault_log: list[dict[str, Any]] = []
        #: The machine's load average (1, 5, 15 min) every minute: it is shared.
        self.load_samples: list[dict[str, Any]] = []
        self.drivers: dict[str, subprocess.Popen[bytes]] = {}
        self.driver_runs = collections.Counter[str]()
        self.attack_lock = threading.Lock()
        for sub in ("accepted", "markers", "state", "logs"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.tokens = {"admin": "admin-" + secrets.token_hex(12)}
        self.tokens["autoscaler"] = "autoscaler-" + secrets.token_hex(12)
        self.tokens.update({t: f"{t}-" + secrets.token_hex(12) for t in TENANTS})
        lines = ["tokens:", f"  - {{token: {self.tokens['admin']}, role: admin, name: admin}}"]
        lines.append(
            f"  - {{token: {self.tokens['autoscaler']}, role: autoscaler, name: autoscaler}}"
        )
        lines += [
            f"  - {{token: {self.tokens[t]}, role: tenant, name: {t}, queues: [{t}]}}"
            for t in TENANTS
        ]
        tokens_file = workdir / "tokens.yaml"
        tokens_file.write_text("\n".join(lines) + "\n")
        tokens_file.chmod(0o600)
        for name, token in self.tokens.items():
            path = workdir / f"{name}.token"
            path.write_text(token)
            path.chmod(0o600)
        self.grpc_port, self.metrics_port = free_port(), free_port()
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.manager_env = {
            "RAY_QUEUE_TOKENS_FILE": str(tokens_file),
            "RAY_QUEUE_GRPC_PORT": str(self.grpc_port),
            "RAY_QUEUE_GRPC_HOST": "127.0.0.1",
            "RAY_QUEUE_METRICS_PORT": str(self.metrics_port),
            "RAY_QUEUE_METRICS_HOST": "127.0.0.1",
            "RAY_QUEUE_RETENTION_S": str(args.retention_s),
        }
        self.cluster: Cluster | None = None
        self.workers: list[Any] = []
        self.observer: subprocess.Popen[bytes] | None = None
        self.autoscaler: subprocess.Popen[bytes] | None = None
        self.autoscaler_runs = 0
        self.dashboard_port = free_port()
        self.actor: Any = None

    def count(self, key: str, n: int = 1) -> None:
        with self.ops_lock:
            self.ops[key] += n

    def client(self, who: str, timeout_s: float = 20) -> QueueClient:
        return QueueClient(self.grpc_address, token=self.tokens[who], timeout_s=timeout_s)

    # -- cluster and manager ------------------------------------------------------------------

    def start(self) -> None:
        os.environ.pop("RAY_ADDRESS", None)
        # On a loaded shared machine a node may miss Ray's fixed 30 s to register with the
        # GCS: start the cluster again rather than give up the run.
        for attempt in range(1, 4):
            try:
                self.start_cluster()
                break
            except Exception:
                if attempt == 3:
                    raise
                logger.exception("the cluster did not start (attempt %d); again", attempt)
                if self.cluster is not None:
                    self.cluster.shutdown()  # type: ignore[no-untyped-call]  # unannotated in Ray
                self.cluster, self.workers = None, []
                self.count("cluster_start_retries")
        ray.init(address=self.address(), log_to_driver=False, configure_logging=False)
        initial: QueueConfig = load_config(config_yaml(0))
        self.actor = start_manager(
            initial, state_path=str(self.workdir / "state"), env=self.manager_env
        )
        ray.get(self.actor.ping.remote(), timeout=120)
        with self.client("admin") as admin:
            wait_for(lambda: serving(admin), 120, "the gRPC API")

    def start_cluster(self) -> None:
        # The dashboard and the head's dashboard agent on free ports: Ray's state API goes
        # through the one, Ray's jobs through the other, and other clusters on this machine
        # may hold the defaults (an agent that cannot bind 52365 left every job submission
        # "No available agent": a soak with no job run at all).
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "include_dashboard": True,
                "dashboard_port": self.dashboard_port,
                "dashboard_agent_listen_port": free_port(),
            },
        )
        for worker in WORKER_ARGS:
            self.workers.append(self.cluster.add_node(**worker))
        self.cluster.wait_for_nodes()

    def address(self) -> str:
        assert self.cluster is not None
        return str(self.cluster.address)

    def start_observer(self) -> None:
        assert self.cluster is not None
        log = (self.workdir / "logs" / "observer.log").open("wb")
        self.observer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.soak_observer",
                "--workdir",
                str(self.workdir),
                "--grpc",
                self.grpc_address,
                "--metrics",
                f"http://127.0.0.1:{self.metrics_port}/metrics",
                "--ray-address",
                self.cluster.address,
                "--admin-token-file",
                str(self.workdir / "admin.token"),
                "--state-dir",
                str(self.workdir / "state"),
                "--grace-s",
                str(self.args.grace_s),
                "--dashboard",
                f"http://127.0.0.1:{self.dashboard_port}",
                "--idle-timeout-s",
                str(self.args.idle_timeout_s),
            ],
            cwd=provenance.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_autoscaler(self) -> None:
        assert self.cluster is not None
        self.autoscaler_runs += 1
        log = (self.workdir / "logs" / f"autoscaler-{self.autoscaler_runs}.log").open("wb")
        self.autoscaler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.soak_autoscaler",
                "--gcs",
                self.cluster.address,
                "--grpc",
                self.grpc_address,
                "--token-file",
                str(self.workdir / "autoscaler.token"),
                "--state-dir",
                str(self.workdir / "autoscaler"),
                "--idle-timeout-s",
                str(self.args.idle_timeout_s),
            ],
            cwd=provenance.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.count("autoscalers_started")

    def stop_autoscaler(self) -> None:
        """SIGTERM (it removes its nodes), then any node it left behind, by its pid."""
        if self.autoscaler is not None and self.autoscaler.poll() is None:
            self.autoscaler.terminate()
            try:
                self.autoscaler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.autoscaler.kill()
                self.autoscaler.wait(timeout=30)
        state = self.workdir / "autoscaler" / "nodes.json"
        if state.exists():
            for name, entry in json.loads(state.read_text()).items():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(entry["pid"]), signal.SIGKILL)
                    self.count("autoscaled_nodes_killed_at_end")
                    logger.warning("autoscaled node %s left running; killed", name)

    def start_driver(self, tenant: str) -> None:
        assert self.cluster is not None
        self.driver_runs[tenant] += 1
        run = self.driver_runs[tenant]
        name = f"driver-{tenant}-{run}"
        log = (self.workdir / "logs" / f"{name}.log").open("wb")
        self.drivers[tenant] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.soak_driver",
                "--address",
                self.cluster.address,
                "--queue",
                tenant,
                "--token-file",
                str(self.workdir / f"{tenant}.token"),
                "--seed",
                str(self.args.seed * 1000 + TENANTS.index(tenant) * 100 + run),
                "--workdir",
                str(self.workdir),
                "--name",
                name,
            ],
            cwd=provenance.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.count("drivers_started")

    # -- load ---------------------------------------------------------------------------------

    def grpc_tenant(self, tenant: str, seed: int) -> None:
        """Placement groups over gRPC: submit, hold a while, cancel."""
        rng = random.Random(seed)
        accepted = (self.workdir / "accepted" / f"grpc-{tenant}.txt").open("a", buffering=1)
        outstanding: list[tuple[str, float]] = []
        uncertain: list[str] = []
        n = 0
        with self.client(tenant) as client:
            while not self.stop.is_set():
                now = time.monotonic()
                try:
                    for workload in list(uncertain):  # sent while the manager restarted?
                        try:
                            whole = client.workload(workload).spec.id  # in our namespace
                            accepted.write(whole + "\n")
                            outstanding.append((whole, now + rng.uniform(2, 10)))
                        except UnknownWorkloadError:
                            pass
                        uncertain.remove(workload)
                    if len(outstanding) < 4:
                        n += 1
                        workload = f"grpc-{tenant}-{n}"
                        priority = rng.choice(("low", "low", "high"))
                        if rng.random() < 0.15:
                            # A Ray job: its entrypoint a short sleep on some node.
                            seconds = rng.uniform(2, 8)
                            request = SubmitRequest(
                                WorkloadId(workload),
                                tenant,
                                (BundleGroup({"CPU": 250}, 1),),
                                kind=WorkloadKind.JOB,
                                priority_class=priority,
                                payload={
                                    "entrypoint": f"sleep {seconds:.1f}",
                                    "entrypoint_num_cpus": 0.25,
                                },
                            )
                        else:
                            gpu = rng.random() < 0.7
                            bundle = {"CPU": 500, "GPU": 1000} if gpu else {"CPU": 1000}
                            request = SubmitRequest(
                                WorkloadId(workload),
                                tenant,
                                (BundleGroup(bundle, rng.choice((1, 1, 2))),),
                                kind=WorkloadKind.PLACEMENT_GROUP,
                                priority_class=priority,
                            )
                        try:
                            status = client.submit(request)
                        except (ServerUnavailableError, grpc.RpcError):
                            uncertain.append(workload)
                            raise
                        workload = status.spec.id  # the manager's name for it
                        accepted.write(workload + "\n")
                        self.count(f"grpc_submitted_{request.kind.value.lower()}")
                        outstanding.append((workload, now + rng.uniform(2, 12)))
                    for workload, until in list(outstanding):
                        if until <= now:
                            client.cancel(workload, message="done with it")
                            self.count("grpc_cancelled")
                            outstanding.remove((workload, until))
                except RayQueueError as e:
                    self.count(f"grpc_errors_{type(e).__name__}")
                self.stop.wait(rng.uniform(0.5, 2.5))
            for workload, _ in outstanding:
                with contextlib.suppress(RayQueueError):
                    client.cancel(workload, message="soak over")

    def admin_configs(self, seed: int) -> None:
        rng = random.Random(seed)
        variant = 0
        with self.client("admin") as admin:
            while not self.stop.wait(rng.uniform(25, 50)):
                variant = (variant + rng.randint(1, len(VARIANTS) - 1)) % len(VARIANTS)
                with self.config_lock:
                    try:
                        admin.apply_config(config_yaml(variant))
                        self.count("config_applied")
                    except RayQueueError as e:
                        self.count(f"config_apply_errors_{type(e).__name__}")

    # -- faults -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        duration_s = self.args.minutes * 60
        self.start()
        self.start_observer()
        canary = self.canary()
        self.start_autoscaler()
        started = time.time()
        for tenant in TENANTS:
            self.start_driver(tenant)
        threads = [
            threading.Thread(
                target=self.grpc_tenant,
                args=(t, self.args.seed * 10 + i),
                name=f"grpc-{t}",
                daemon=True,
            )
            for i, t in enumerate(TENANTS)
        ]
        threads.append(
            threading.Thread(
                target=self.admin_configs, args=(self.args.seed,), name="admin", daemon=True
            )
        )
        for t in threads:
            t.start()
        schedule = self.fault_schedule(duration_s)
        logger.info("fault schedule: %s", schedule)
        t0 = time.monotonic()
        self.sample_load()
        # Faults take time of their own (a node replaced: ~20 s): the load goes on until
        # every scheduled one has run, so a short run still has each kind.
        while time.monotonic() - t0 < duration_s or schedule:
            if schedule and time.monotonic() - t0 >= schedule[0][0]:
                self.inject(schedule.pop(0)[1])
                continue
            for tenant, driver in self.drivers.items():
                if driver.poll() is not None:  # died of its own accord: note it, replace it
                    self.count(f"driver_exited_{driver.returncode}")
                    self.start_driver(tenant)
            assert self.autoscaler is not None
            if self.autoscaler.poll() is not None:
                self.count(f"autoscaler_exited_{self.autoscaler.returncode}")
                self.start_autoscaler()
            self.check_observer()
            if time.time() - self.load_samples[-1]["at"] >= 60:
                self.sample_load()
            time.sleep(0.5)
        self.sample_load()
        load_s = time.time() - started
        self.stop.set()
        (self.workdir / "stop").touch()
        for t in threads:
            t.join(timeout=60)
        for driver in self.drivers.values():
            try:
                driver.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
                self.count("drivers_killed_at_end")
        (self.workdir / "final").touch()
        assert self.observer is not None
        # The autoscaler runs on while the observer drains: its idle node must go.
        self.observer.wait(timeout=self.args.grace_s + 400)
        self.check_observer()
        self.stop_autoscaler()
        report = self.report(started, load_s)
        report["canary"] = canary
        return report

    def check_observer(self) -> None:
        """A run whose observer died checked nothing: it ends here, with no report."""
        assert self.observer is not None
        code = self.observer.poll()
        if code not in (None, 0):
            raise SystemExit(
                f"the observer exited with {code}; see {self.workdir / 'logs' / 'observer.log'}"
            )

    def sample_load(self) -> None:
        one, five, fifteen = os.getloadavg()
        self.load_samples.append({"at": round(time.time(), 1), "load": [one, five, fifteen]})

    def shutdown(self) -> None:
        self.stop_autoscaler()
        if self.observer is not None and self.observer.poll() is None:
            os.killpg(self.observer.pid, signal.SIGKILL)
            self.observer.wait(timeout=30)
        for driver in self.drivers.values():
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()  # type: ignore[no-untyped-call]  # unannotated in Ray

    # -- the report ---------------------------------------------------------------------------

    def report(self, started: float, load_s: float) -> dict[str, Any]:
        lines = [
            json.loads(line) for line in (self.workdir / "observer.jsonl").read_text().splitlines()
        ]
        final = json.loads((self.workdir / "observer-final.json").read_text())
        violation_log = [
            r for r in lines if r["type"] == "violation" and not r["subject"].startswith(CANARY)
        ]
        workloads = final.pop("workloads")
        accepted = set()
        for path in (self.workdir / "accepted").glob("*.txt"):
            accepted.update(path.read_text().split())
        mine = [w for w in workloads if w["id"] in accepted]
        evictions = collections.Counter(r for w in mine for r in w["evictions"])
        latency: dict[str, list[float]] = collections.defaultdict(list)
        per_minute: dict[int, dict[str, Any]] = collections.defaultdict(
            lambda: {"latencies": [], "rss": [], "store": [], "metrics": None}
        )
        for w in mine:
            if w["first_admitted_at"] is None:
                continue
            wait = w["first_admitted_at"] - w["created_at"]
            latency[f"{w['queue']}/{w['priority'] or 'low'}/{w['kind']}"].append(wait)
            latency["all"].append(wait)
            per_minute[int((w["first_admitted_at"] - started) // 60)]["latencies"].append(wait)
        for r in lines:
            minute = int((r["at"] - started) // 60)
            if r["type"] == "sample":
                if r["manager_rss_bytes"]:
                    per_minute[minute]["rss"].append(r["manager_rss_bytes"])
                per_minute[minute]["store"].append(r["store_bytes"])
            elif r["type"] == "metrics":
                per_minute[minute]["metrics"] = r["values"]  # the last scrape of the minute
        series = []
        for minute in sorted(m for m in per_minute if m >= 0):
            bucket = per_minute[minute]
            series.append(
                {
                    "minute": minute,
                    "admissions": len(bucket["latencies"]),
                    "admission_latency_p50_s": _round(percentile(bucket["latencies"], 0.5)),
                    "admission_latency_p99_s": _round(percentile(bucket["latencies"], 0.99)),
                    "manager_rss_mb": _round(max(bucket["rss"]) / 2**20) if bucket["rss"] else None,
                    "store_mb": _round(max(bucket["store"]) / 2**20) if bucket["store"] else None,
                    "metrics": bucket["metrics"],
                }
            )
        # What the drivers that were not killed saw of their own work.
        seen_by_drivers: collections.Counter[str] = collections.Counter()
        for path in (self.workdir / "logs").glob("driver-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("COUNTS "):
                    seen_by_drivers.update(json.loads(line[len("COUNTS ") :]))
        kills = [f for f in self.fault_log if f["kind"] == "manager_kill" and f.get("injected")]
        violations = collections.Counter(v["kind"] for v in violation_log)
        return {
            "benchmark": "soak",
            "command": provenance.command("benchmarks.soak", self.args.argv),
            "machine": provenance.machine(),
            **provenance.git("benchmarks", "ray_queue"),
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "started_at": started,
            "load_s": round(load_s, 1),
            "cluster": {
                "head_cpus": 1,
                "workers": [{**w, "labels": w["labels"]} for w in WORKER_ARGS],
            },
            "machine_load": {
                "cpus": os.cpu_count(),
                "load_1min_max": max(s["load"][0] for s in self.load_samples),
                "load_1min_median": percentile([s["load"][0] for s in self.load_samples], 0.5),
                "samples": self.load_samples,
            },
            "operations": dict(sorted(self.ops.items())),
            "drivers_at_exit": dict(sorted(seen_by_drivers.items())),
            "submissions": {
                "accepted": len(accepted),
                "by_queue_and_kind": dict(
                    collections.Counter(f"{w['queue']}/{w['kind']}" for w in mine)
                ),
            },
            "admissions": sum(w["admissions"] for w in mine),
            "preemptions": evictions.get("Preempted", 0),
            "evictions_by_reason": dict(evictions),
            "states_at_end": final["states_at_end"],
            "faults": dict(
                collections.Counter(f["kind"] for f in self.fault_log if f.get("injected"))
            ),
            "faults_not_injected": [f for f in self.fault_log if not f.get("injected")],
            "fault_log": self.fault_log,
            "manager_kill_recovery_s": [f["recovery_s"] for f in kills],
            "manager_kill_grpc_recovery_s": [f["grpc_recovery_s"] for f in kills],
            "violations": dict(violations),
            "violation_log": violation_log,
            "lost_workloads": final["lost_workloads"],
            "final_check": final,
            "admission_latency_s": {
                key: {
                    "n": len(v),
                    "p50": _round(percentile(v, 0.5)),
                    "p99": _round(percentile(v, 0.99)),
                }
                for key, v in sorted(latency.items())
            },
            "time_series": series,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"soak: {report['minutes']} min, seed {report['seed']}, "
        f"{report['submissions']['accepted']} submissions accepted, "
        f"{report['admissions']} admissions, {report['preemptions']} preemptions"
    )
    load = report["machine_load"]
    print(
        f"machine load (1-min average, {load['cpus']} CPUs): "
        f"median {load['load_1min_median']:.1f}, max {load['load_1min_max']:.1f}"
    )
    print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(report["faults"].items())))
    if report["manager_kill_recovery_s"]:
        print(
            f"manager kill -9 -> answering again: {report['manager_kill_recovery_s']} s "
            f"(gRPC serving: {report['manager_kill_grpc_recovery_s']} s)"
        )
    print(f"violations: {report['violations'] or 0}; lost workloads: {report['lost_workloads']}")
    all_latency = report["admission_latency_s"].get("all")
    if all_latency:
        print(
            f"time to admission: p50 {all_latency['p50']} s, p99 {all_latency['p99']} s "
            f"over {all_latency['n']} admissions"
        )
    print(f"{'minute':>6} {'admits':>6} {'p50 s':>7} {'p99 s':>7} {'RSS MB':>7} {'store MB':>8}")
    for row in report["time_series"]:
        print(
            f"{row['minute']:>6} {row['admissions']:>6} {_fmt(row['admission_latency_p50_s']):>7} "
            f"{_fmt(row['admission_latency_p99_s']):>7} {_fmt(row['manager_rss_mb']):>7} "
            f"{_fmt(row['store_mb']):>8}"
        )
    print(f"reproduce: {report['command']}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--grace-s", type=float, default=20.0, help="how long a timing-dependent condition may last"
    )
    parser.add_argument("--no-raylet-kill", action="store_true")
    parser.add_argument(
        "--idle-timeout-s", type=float, default=15.0, help="the autoscaler removes idle nodes"
    )
    parser.add_argument("--workdir", type=Path, help="keep the run's files here")
    parser.add_argument(
        "--retention-s",
        type=float,
        default=300.0,
        help="the manager forgets finished workloads after this (RAY_QUEUE_RETENTION_S; "
        "its default, an hour, is longer than most runs: memory would only grow)",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s soak %(message)s")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        # The observer and the report read the run's files back: an earlier run's would
        # be taken for this one's (its "final" marker ended a new observer at once).
        parser.error(f"--workdir {args.workdir} is not empty: give a new folder")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rq-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, workdir)

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # unwinds through shutdown()

    signal.signal(signal.SIGTERM, terminated)
    try:
        report = soak.run()
    finally:
        soak.shutdown()
    report["workdir"] = str(workdir)
    report["manager_retention_s"] = args.retention_s
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["manager_rss_growth_last_20_min"] = soak_plot.rss_growth(report)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    soak_plot.write_plot(report, args.out.with_suffix(".png"))
    print_summary(report)
    if args.workdir is None and not report["violations"] and not report["lost_workloads"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
