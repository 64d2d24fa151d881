"""Soak under several tenants and injected faults, checked from outside:
``python -m benchmarks.soak --minutes N --seed S --out FILE.json``.

A local Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker nodes, one of
two logical A100 GPUs and one of two logical T4 GPUs, told apart by node labels), the
manager with its SQLite store, gRPC and /metrics on loopback, tokens for an admin and
three tenants. Load, for ``--minutes``:

* one driver process per tenant (``benchmarks.soak_driver``: gangs, ``max_retries=0``
  tasks, actors, cancellations through ``ray_queue``), restarted when killed;
* one gRPC client per tenant submitting placement-group workloads and cancelling them;
* the admin re-applying one of three configs with different quotas over gRPC.

Faults on a schedule drawn from ``--seed``: the manager killed with SIGKILL (its pid
from the actor; Ray restarts it), a driver killed mid-submission, a config with errors
applied, malformed and oversized gRPC messages, a tenant's token used against another
tenant's queue and against admin RPCs (both doors: gRPC and the actor), and a worker
node's raylet killed (``Cluster.remove_node`` of our own node, then a node added back).

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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import ray
from ray.cluster_utils import Cluster

from benchmarks import provenance
from benchmarks.soak_observer import ATTACK_MARK, PG_PREFIX, percentile
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import ConfigError, RayQueueError
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadKind, WorkloadState
from ray_queue.errors import PermissionDeniedError, UnknownWorkloadError
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.status import ServerUnavailableError
from ray_queue.manager.actor import find_manager, start_manager
from ray_queue.manager.handle import ManagerHandle
from ray_queue.manager.types import SubmitRequest

logger = logging.getLogger("soak")

TENANTS = ("team-a", "team-b", "team-c")
A100 = {"ray.io/accelerator-type": "A100"}
T4 = {"ray.io/accelerator-type": "T4"}
WORKER_ARGS = [
    {"num_cpus": 3, "num_gpus": 2, "labels": A100},
    {"num_cpus": 3, "num_gpus": 2, "labels": T4},
]
S = WorkloadState
FAULTS = (
    "manager_kill",
    "driver_kill",
    "bad_config",
    "malformed_grpc",
    "cross_tenant",
    "admin_rpc_by_tenant",
    "oversized_grpc",
    "raylet_kill",
)
SERVICE = "/ray_queue.v1.QueueService/"
#: The observer's self-test: a group no workload owns (see ``Soak.canary``).
CANARY = "soak-canary"

#: Quotas per variant: (team, flavor) -> (CPU, GPU, GPU borrowing limit or None).
#: Nominal quotas add up to the nodes (3 CPU, 2 GPU per flavor) in every variant.
VARIANTS: list[dict[tuple[str, str], tuple[float, float, float | None]]] = [
    {
        ("team-a", "a100"): (1.5, 1, None),
        ("team-a", "t4"): (1, 0, 1),
        ("team-b", "a100"): (1, 1, 1),
        ("team-b", "t4"): (1, 1, None),
        ("team-c", "a100"): (0.5, 0, 1),
        ("team-c", "t4"): (1, 1, None),
    },
    {
        ("team-a", "a100"): (1, 2, None),
        ("team-a", "t4"): (1, 0, 0),
        ("team-b", "a100"): (1, 0, 2),
        ("team-b", "t4"): (1, 1, None),
        ("team-c", "a100"): (1, 0, 1),
        ("team-c", "t4"): (1, 1, 1),
    },
    {
        ("team-a", "a100"): (1, 1, 1),
        ("team-a", "t4"): (1, 1, None),
        ("team-b", "a100"): (1, 1, None),
        ("team-b", "t4"): (1, 0, 1),
        ("team-c", "a100"): (1, 0, None),
        ("team-c", "t4"): (1, 1, 1),
    },
]


def config_yaml(variant: int) -> str:
    quotas = VARIANTS[variant % len(VARIANTS)]
    docs = [
        "apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: a100}\n"
        "spec: {nodeLabels: {ray.io/accelerator-type: A100}}",
        "apiVersion: ray-queue.io/v1alpha1\nkind: ResourceFlavor\nmetadata: {name: t4}\n"
        "spec: {nodeLabels: {ray.io/accelerator-type: T4}}",
        "apiVersion: ray-queue.io/v1alpha1\nkind: PriorityClass\nmetadata: {name: low}\n"
        "value: 10\nglobalDefault: true",
        "apiVersion: ray-queue.io/v1alpha1\nkind: PriorityClass\nmetadata: {name: high}\n"
        "value: 100",
    ]
    for team in TENANTS:
        flavors = []
        for flavor in ("a100", "t4"):
            cpu, gpu, borrow = quotas[(team, flavor)]
            limit = "" if borrow is None else f", borrowingLimit: {borrow}"
            flavors.append(
                f"    - name: {flavor}\n      resources:\n"
                f"      - {{name: CPU, nominalQuota: {cpu}}}\n"
                f"      - {{name: GPU, nominalQuota: {gpu}{limit}}}"
            )
        docs.append(
            "apiVersion: ray-queue.io/v1alpha1\nkind: ClusterQueue\n"
            f"metadata: {{name: cq-{team}}}\nspec:\n  cohortName: soak\n"
            "  preemption: {withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}\n"
            "  resourceGroups:\n  - coveredResources: [CPU, GPU]\n    flavors:\n"
            + "\n".join(flavors)
        )
        docs.append(
            "apiVersion: ray-queue.io/v1alpha1\nkind: Queue\n"
            f"metadata: {{name: {team}}}\nspec: {{clusterQueue: cq-{team}}}"
        )
    return "---\n".join(d + "\n" for d in docs)


BAD_CONFIG = """\
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {name: cq-team-a}
spec:
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: no-such-flavor
      resources: [{name: CPU, nominalQuota: -4}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.stop = threading.Event()
        self.config_lock = threading.Lock()
        self.ops: collections.Counter[str] = collections.Counter()
        self.ops_lock = threading.Lock()
        self.fault_log: list[dict[str, Any]] = []
        self.drivers: dict[str, subprocess.Popen[bytes]] = {}
        self.driver_runs = collections.Counter[str]()
        self.attack_lock = threading.Lock()
        for sub in ("accepted", "markers", "state", "logs"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.tokens = {"admin": "admin-" + secrets.token_hex(12)}
        self.tokens.update({t: f"{t}-" + secrets.token_hex(12) for t in TENANTS})
        lines = ["tokens:", f"  - {{token: {self.tokens['admin']}, role: admin, name: admin}}"]
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
        self.grpc_port, self.metrics_port = _free_port(), _free_port()
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.manager_env = {
            "RAY_QUEUE_TOKENS_FILE": str(tokens_file),
            "RAY_QUEUE_GRPC_PORT": str(self.grpc_port),
            "RAY_QUEUE_GRPC_HOST": "127.0.0.1",
            "RAY_QUEUE_METRICS_PORT": str(self.metrics_port),
            "RAY_QUEUE_METRICS_HOST": "127.0.0.1",
        }
        self.cluster: Cluster | None = None
        self.workers: list[Any] = []
        self.observer: subprocess.Popen[bytes] | None = None
        self.actor: Any = None

    def count(self, key: str, n: int = 1) -> None:
        with self.ops_lock:
            self.ops[key] += n

    def client(self, who: str, timeout_s: float = 20) -> QueueClient:
        return QueueClient(self.grpc_address, token=self.tokens[who], timeout_s=timeout_s)

    # -- cluster and manager ------------------------------------------------------------------

    def start(self) -> None:
        os.environ.pop("RAY_ADDRESS", None)
        # The dashboard on a free port: Ray's state API goes through it, and other clusters
        # on this machine may hold the default one.
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "include_dashboard": True,
                "dashboard_port": _free_port(),
            },
        )
        for worker in WORKER_ARGS:
            self.workers.append(self.cluster.add_node(**worker))
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, log_to_driver=False, configure_logging=False)
        initial: QueueConfig = load_config(config_yaml(0))
        self.actor = start_manager(
            initial, state_path=str(self.workdir / "state"), env=self.manager_env
        )
        ray.get(self.actor.ping.remote(), timeout=120)
        with self.client("admin") as admin:
            _wait_for(lambda: _serving(admin), 120, "the gRPC API")

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
            ],
            cwd=provenance.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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
                            client.workload(workload)
                            accepted.write(workload + "\n")
                            outstanding.append((workload, now + rng.uniform(2, 10)))
                        except UnknownWorkloadError:
                            pass
                        uncertain.remove(workload)
                    if len(outstanding) < 4:
                        n += 1
                        workload = f"grpc-{tenant}-{n}"
                        gpu = rng.random() < 0.7
                        bundle = {"CPU": 500, "GPU": 1000} if gpu else {"CPU": 1000}
                        request = SubmitRequest(
                            WorkloadId(workload),
                            tenant,
                            (BundleGroup(bundle, rng.choice((1, 1, 2))),),
                            kind=WorkloadKind.PLACEMENT_GROUP,
                            priority_class=rng.choice(("low", "low", "high")),
                        )
                        try:
                            client.submit(request)
                        except (ServerUnavailableError, grpc.RpcError):
                            uncertain.append(workload)
                            raise
                        accepted.write(workload + "\n")
                        self.count("grpc_submitted")
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

    def fault_schedule(self, duration_s: float) -> list[tuple[float, str]]:
        kinds = [k for k in FAULTS if k != "raylet_kill" or not self.args.no_raylet_kill]
        spacing = max(5.0, min(30.0, (duration_s - 13) / len(kinds)))
        schedule: list[tuple[float, str]] = []
        at = 8.0
        cycle: list[str] = []
        while at < duration_s - 5:
            if not cycle:
                cycle = list(kinds)
                self.rng.shuffle(cycle)
                if not schedule:  # the first cycle starts with the manager kill, under load
                    cycle.remove("manager_kill")
                    cycle.insert(0, "manager_kill")
            schedule.append((at, cycle.pop(0)))
            at += spacing * self.rng.uniform(0.8, 1.2)
        return schedule

    def inject(self, kind: str) -> dict[str, Any]:
        method: Callable[[], dict[str, Any]] = getattr(self, f"fault_{kind}")
        started = time.time()
        try:
            details = method()
        except Exception as e:  # a fault that could not be injected is reported, not fatal
            logger.exception("fault %s failed", kind)
            details = {"injected": False, "error": f"{type(e).__name__}: {e}"}
        record = {"kind": kind, "at": started, "took_s": round(time.time() - started, 2), **details}
        logger.info("fault %s", record)
        self.fault_log.append(record)
        return record

    def fault_manager_kill(self) -> dict[str, Any]:
        old_epoch = ray.get(self.actor.ping.remote(), timeout=30)
        pid = ray.get(self.actor.pid.remote(), timeout=30)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        def new_epoch() -> bool:
            try:
                return bool(ray.get(self.actor.ping.remote(), timeout=5) != old_epoch)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return False

        _wait_for(new_epoch, 120, "the manager to come back")
        actor_s = time.monotonic() - killed
        with self.client("admin") as admin:
            _wait_for(lambda: _serving(admin), 120, "the gRPC API after the restart")
        return {
            "injected": True,
            "pid": pid,
            "recovery_s": round(actor_s, 2),
            "grpc_recovery_s": round(time.monotonic() - killed, 2),
        }

    def fault_driver_kill(self) -> dict[str, Any]:
        tenant = self.rng.choice(TENANTS)
        driver = self.drivers[tenant]
        if driver.poll() is not None:
            return {"injected": False, "why": "driver not running"}
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        self.start_driver(tenant)
        return {"injected": True, "tenant": tenant, "pid": driver.pid}

    def fault_bad_config(self) -> dict[str, Any]:
        with self.config_lock, self.client("admin") as admin:
            before = admin.config_yaml()
            try:
                admin.apply_config(BAD_CONFIG)
                refused, problems = False, 0
            except ConfigError as e:
                refused, problems = True, len(e.problems)
            after = admin.config_yaml()
        self._attack("bad_config", refused, changed=before != after, outcome=f"{problems} problems")
        return {
            "injected": True,
            "refused": refused,
            "problems": problems,
            "config_changed": before != after,
        }

    def fault_malformed_grpc(self) -> dict[str, Any]:
        outcomes = {}
        channel = grpc.insecure_channel(self.grpc_address)
        metadata = (("authorization", f"Bearer {self.tokens['admin']}"),)
        try:
            for method in ("SubmitWorkloads", "ApplyConfig", "CancelWorkload"):
                call = channel.unary_unary(
                    SERVICE + method, request_serializer=None, response_deserializer=None
                )
                for i, garbage in enumerate((b"\xff\xfe\xfd\x00garbage", b"\x0a\xff\xff\xff\x0f")):
                    try:
                        call(garbage, metadata=metadata, timeout=20)
                        code = "OK"
                    except grpc.RpcError as e:
                        code = e.code().name
                    outcomes[f"{method}#{i}"] = code
                    self._attack(f"garbage_{method}", code != "OK", changed=False, outcome=code)
        finally:
            channel.close()
        # Well-formed protobuf, nonsense inside: each must be refused and leave nothing.
        ids = [f"{ATTACK_MARK}-bad-{i}-{secrets.token_hex(3)}" for i in range(6)]
        specs = [
            pb.WorkloadSpec(
                id=ids[0],
                queue="team-a",
                bundle_groups=[pb.BundleGroup(resources_milli={"CPU": -1000}, count=1)],
            ),
            pb.WorkloadSpec(
                id=ids[1],
                queue="team-a",
                bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1000}, count=0)],
            ),
            pb.WorkloadSpec(
                id=ids[2],
                queue="no-such-queue",
                bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1000}, count=1)],
            ),
            pb.WorkloadSpec(
                id=ids[3] + "/../\x1b[31m",
                queue="team-a",
                bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 1000}, count=1)],
            ),
            pb.WorkloadSpec(id=ids[4], queue="team-a", bundle_groups=[]),
            pb.WorkloadSpec(
                id=ids[5],
                queue="team-a",
                kind=pb.WORKLOAD_KIND_TASK,
                bundle_groups=[pb.BundleGroup(resources_milli={"GPU": 10**15}, count=2**31 - 1)],
            ),
        ]
        with self.client("admin") as admin:
            for workload, spec in zip(ids, specs, strict=True):
                request = pb.SubmitWorkloadsRequest(workloads=[spec])
                try:
                    [result] = admin._call(admin._queue.SubmitWorkloads, request).results
                    refused = result.HasField("error")
                    outcome = result.error.type if refused else "accepted"
                except RayQueueError as e:  # the whole request refused
                    refused, outcome = True, type(e).__name__
                outcomes[workload] = outcome
                self._attack(
                    "malformed_submit",
                    refused,
                    changed=self._exists(admin, workload),
                    outcome=outcome,
                )
        return {"injected": True, "outcomes": outcomes}

    def fault_oversized_grpc(self) -> dict[str, Any]:
        workload = f"{ATTACK_MARK}-big-{secrets.token_hex(3)}"
        spec = pb.WorkloadSpec(
            id=workload,
            queue="team-a",
            name="x" * (17 * 1024 * 1024),
            bundle_groups=[pb.BundleGroup(resources_milli={"CPU": 100}, count=1)],
        )
        with self.client("admin", timeout_s=60) as admin:
            try:
                admin._call(
                    admin._queue.SubmitWorkloads, pb.SubmitWorkloadsRequest(workloads=[spec])
                )
                outcome = "OK"
            except RayQueueError as e:
                outcome = type(e).__name__
            self._attack(
                "oversized_submit",
                outcome != "OK",
                changed=self._exists(admin, workload),
                outcome=outcome,
            )
            try:
                admin.apply_config("# " + "y" * (17 * 1024 * 1024))
                config_outcome = "OK"
            except RayQueueError as e:
                config_outcome = type(e).__name__
            self._attack(
                "oversized_config", config_outcome != "OK", changed=False, outcome=config_outcome
            )
        return {"injected": True, "submit": outcome, "config": config_outcome}

    def _victim(self, admin: QueueClient, queue: str) -> str:
        live = [s for s in admin.workloads(queue=queue, states=(S.PENDING, S.ADMITTED))]
        if live:
            return self.rng.choice(live).spec.id
        with self.client(queue) as owner:
            workload = f"victim-{queue}-{secrets.token_hex(3)}"
            owner.submit(
                SubmitRequest(WorkloadId(workload), queue, (BundleGroup({"CPU": 100}, 1),))
            )
            (self.workdir / "accepted" / f"victims-{queue}.txt").open("a").write(workload + "\n")
            return workload

    def fault_cross_tenant(self) -> dict[str, Any]:
        attacker, owner = self.rng.sample(TENANTS, 2)
        outcomes: dict[str, str] = {}
        with self.client("admin") as admin, self.client(attacker) as bad:
            victim = self._victim(admin, owner)
            before = admin.workload(victim)
            forged = f"{ATTACK_MARK}-forged-{secrets.token_hex(3)}"
            request = SubmitRequest(WorkloadId(forged), owner, (BundleGroup({"CPU": 100}, 1),))
            try:
                [result] = bad.submit_many([request])
                refused, outcome = isinstance(result, RayQueueError), type(result).__name__
            except RayQueueError as e:  # the whole request refused
                refused, outcome = True, type(e).__name__
            outcomes["submit_other_queue"] = outcome
            self._attack(
                "submit_other_queue", refused, changed=self._exists(admin, forged), outcome=outcome
            )
            for what, call in (
                ("read_other_workload", lambda: bad.workload(victim)),
                ("cancel_other_workload", lambda: bad.cancel(victim, message=ATTACK_MARK)),
                ("list_other_queue", lambda: bad.workloads(queue=owner)),
                ("pending_other_queue", lambda: bad.pending(queue=owner)),
            ):
                try:
                    answer = call()
                    refused = answer in (False, [])
                    outcome = "answered " + repr(answer)[:80]
                except RayQueueError as e:
                    refused, outcome = True, type(e).__name__
                outcomes[what] = outcome
                self._attack(
                    what, refused, changed=self._touched(admin, victim, before), outcome=outcome
                )
            # The actor door, with the same token.
            door = ManagerHandle(find_manager(), self.tokens[attacker])
            try:
                answer = ray.get(door.cancel.remote([victim], ATTACK_MARK), timeout=60)
                refused, outcome = answer == [False], repr(answer)
            except (RayQueueError, ray.exceptions.RayTaskError) as e:
                refused, outcome = True, type(e).__name__
            outcomes["actor_cancel_other_workload"] = outcome
            self._attack(
                "actor_cancel_other_workload",
                refused,
                changed=self._touched(admin, victim, before),
                outcome=outcome,
            )
        return {"injected": True, "attacker": attacker, "victim": victim, "outcomes": outcomes}

    def fault_admin_rpc_by_tenant(self) -> dict[str, Any]:
        attacker = self.rng.choice(TENANTS)
        outcomes: dict[str, str] = {}
        marked = config_yaml(0).replace("name: cq-team-c}", f"name: {ATTACK_MARK}}}")
        with self.client("admin") as admin, self.client(attacker) as bad:
            victim = self._victim(admin, attacker)
            before = admin.workload(victim)
            for what, call in (
                ("apply_config", lambda: bad.apply_config(marked)),
                ("validate_config", lambda: bad.apply_config(marked, validate_only=True)),
                ("read_config", lambda: bad.config_yaml()),
                ("evict", lambda: bad.evict(victim, reason=ATTACK_MARK, message=ATTACK_MARK)),
            ):
                try:
                    call()
                    refused, outcome = False, "answered"
                except RayQueueError as e:
                    refused, outcome = isinstance(e, PermissionDeniedError), type(e).__name__
                outcomes[what] = outcome
                changed = ATTACK_MARK in admin.config_yaml() or self._touched(admin, victim, before)
                self._attack(f"tenant_{what}", refused, changed=changed, outcome=outcome)
            door = ManagerHandle(find_manager(), self.tokens[attacker])
            try:
                ray.get(door.apply_config.remote(QueueConfig()), timeout=60)
                refused, outcome = False, "answered"
            except ray.exceptions.RayTaskError as e:
                refused = isinstance(e.cause, PermissionDeniedError)
                outcome = type(e.cause).__name__
            except PermissionDeniedError:
                refused, outcome = True, "PermissionDeniedError"
            outcomes["actor_apply_config"] = outcome
            self._attack(
                "tenant_actor_apply_config",
                refused,
                changed=not admin.cluster_queues(),
                outcome=outcome,
            )
        return {"injected": True, "attacker": attacker, "outcomes": outcomes}

    def fault_raylet_kill(self) -> dict[str, Any]:
        assert self.cluster is not None
        index = self.rng.randrange(len(self.workers))
        node = self.workers[index]
        node_id = node.node_id
        pid = node.all_processes["raylet"][0].process.pid
        self.cluster.remove_node(node, allow_graceful=False)
        killed = time.monotonic()
        _wait_for(lambda: not _alive(node_id), 120, "Ray to see the node dead")
        dead_s = time.monotonic() - killed
        self.workers[index] = self.cluster.add_node(**WORKER_ARGS[index])
        new_id = self.workers[index].node_id
        _wait_for(lambda: _alive(new_id), 120, "the new node")
        return {
            "injected": True,
            "node": WORKER_ARGS[index]["labels"],
            "raylet_pid": pid,
            "seen_dead_s": round(dead_s, 2),
            "replaced_s": round(time.monotonic() - killed, 2),
        }

    def canary(self) -> dict[str, Any]:
        """A group named like the manager's that no workload owns, made with Ray itself:
        the observer must report it (its checks are live against the real state API)."""
        name = f"{CANARY}-{secrets.token_hex(3)}"
        group = ray.util.placement_group(
            [{"CPU": 0.01}], name=PG_PREFIX + name, lifetime="detached"
        )
        made = time.monotonic()
        log = self.workdir / "observer.jsonl"

        def reported() -> bool:
            return log.exists() and f'"subject": "{name}"' in log.read_text()

        try:
            _wait_for(reported, self.args.grace_s + 60, "the observer to report the canary")
            detected = True
        except TimeoutError:
            detected = False
        ray.util.remove_placement_group(group)
        return {"group": name, "detected": detected, "after_s": round(time.monotonic() - made, 1)}

    # -- helpers for the attacks --------------------------------------------------------------

    def _attack(self, what: str, refused: bool, *, changed: bool, outcome: str) -> None:
        self.count("unauthorised_or_bad_requests")
        record = {
            "what": what,
            "at": round(time.time(), 3),
            "refused": refused,
            "changed": changed,
            "outcome": outcome,
        }
        with self.attack_lock, (self.workdir / "attacks.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    @staticmethod
    def _exists(admin: QueueClient, workload: str) -> bool:
        try:
            admin.workload(workload)
            return True
        except UnknownWorkloadError:
            return False
        except RayQueueError:
            return False  # an id the API cannot even look up was not stored either

    @staticmethod
    def _touched(admin: QueueClient, workload: str, before: Any) -> bool:
        """Whether an attack left a trace on ``workload``: a transition with its mark."""
        after = admin.workload(workload)
        return any(
            ATTACK_MARK in t.message or ATTACK_MARK in t.reason
            for t in after.history[len(before.history) :]
        )

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        duration_s = self.args.minutes * 60
        self.start()
        self.start_observer()
        canary = self.canary()
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
            time.sleep(0.5)
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
        self.observer.wait(timeout=self.args.grace_s + 300)
        report = self.report(started, load_s)
        report["canary"] = canary
        return report

    def shutdown(self) -> None:
        if self.observer is not None and self.observer.poll() is None:
            os.killpg(self.observer.pid, signal.SIGKILL)
            self.observer.wait(timeout=30)
        for driver in self.drivers.values():
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()

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
        kills = [f for f in self.fault_log if f["kind"] == "manager_kill" and f.get("injected")]
        violations = collections.Counter(v["kind"] for v in violation_log)
        return {
            "benchmark": "soak",
            "command": provenance.command("benchmarks.soak", self.args.argv),
            "machine": provenance.machine(),
            **provenance.git("benchmarks", "ray_queue"),
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "load_s": round(load_s, 1),
            "cluster": {
                "head_cpus": 1,
                "workers": [{**w, "labels": w["labels"]} for w in WORKER_ARGS],
            },
            "operations": dict(sorted(self.ops.items())),
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


def _serving(client: QueueClient) -> bool:
    try:
        return client.health() == "SERVING"
    except RayQueueError:
        return False


def _alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"soak: {report['minutes']} min, seed {report['seed']}, "
        f"{report['submissions']['accepted']} submissions accepted, "
        f"{report['admissions']} admissions, {report['preemptions']} preemptions"
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
    parser.add_argument("--workdir", type=Path, help="keep the run's files here")
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s soak %(message)s")
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print_summary(report)
    if args.workdir is None and not report["violations"] and not report["lost_workloads"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
