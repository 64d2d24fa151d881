"""The soak's faults (``benchmarks.soak``), each a method of ``Faults``.

``fault_<kind>`` injects one fault and returns what happened. Requests that must be
refused (a config with errors, malformed and oversized gRPC messages, a tenant's token
against another tenant's queue or an admin call, on the gRPC API and on the actor) are
logged to ``attacks.jsonl`` with whether they were refused and whether they left a trace;
the observer turns a request that was let through into a violation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import ray
from ray.cluster_utils import Cluster

from benchmarks.soak_observer import ATTACK_MARK, PG_PREFIX
from benchmarks.soak_shape import TENANTS, WORKER_ARGS, config_yaml
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import ConfigError, RayQueueError
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadState
from ray_queue.errors import PermissionDeniedError, UnknownWorkloadError
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.manager.actor import find_manager
from ray_queue.manager.handle import ManagerHandle
from ray_queue.wire import SubmitRequest

logger = logging.getLogger("soak")

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
    "autoscaler_kill",
)
SERVICE = "/ray_queue.v1.QueueService/"
#: The observer's self-test: a group no workload owns (see ``Soak.canary``).
CANARY = "soak-canary"

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


class Faults:
    """Mixed into ``benchmarks.soak.Soak``, which sets these up."""

    args: Any
    rng: random.Random
    workdir: Path
    actor: Any
    cluster: Cluster | None
    workers: list[Any]
    drivers: dict[str, subprocess.Popen[bytes]]
    autoscaler: subprocess.Popen[bytes] | None
    autoscaler_runs: int
    tokens: dict[str, str]
    grpc_address: str
    config_lock: threading.Lock
    attack_lock: threading.Lock
    fault_log: list[dict[str, Any]]

    def client(self, who: str, timeout_s: float = 20) -> QueueClient:
        raise NotImplementedError

    def count(self, key: str, n: int = 1) -> None:
        raise NotImplementedError

    def start_driver(self, tenant: str) -> None:
        raise NotImplementedError

    def start_autoscaler(self) -> None:
        raise NotImplementedError

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

        wait_for(new_epoch, 120, "the manager to come back")
        actor_s = time.monotonic() - killed
        with self.client("admin") as admin:
            wait_for(lambda: serving(admin), 120, "the gRPC API after the restart")
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
                call: Any = channel.unary_unary(
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
            status = owner.submit(
                SubmitRequest(WorkloadId(workload), queue, (BundleGroup({"CPU": 100}, 1),))
            )
            whole = status.spec.id  # in the owner's namespace
            (self.workdir / "accepted" / f"victims-{queue}.txt").open("a").write(whole + "\n")
            return whole

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
            # Had it been taken, it would be in the attacker's namespace.
            changed = self._exists(admin, forged) or self._exists(admin, f"{attacker}/{forged}")
            self._attack("submit_other_queue", refused, changed=changed, outcome=outcome)
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
        wait_for(lambda: not node_alive(node_id), 120, "Ray to see the node dead")
        dead_s = time.monotonic() - killed
        for attempt in range(1, 4):  # Ray gives a node a fixed 30 s to register
            try:
                self.workers[index] = self.cluster.add_node(**WORKER_ARGS[index])
                break
            except Exception:
                if attempt == 3:
                    raise
                logger.exception("the replacement node did not start (attempt %d)", attempt)
        new_id = self.workers[index].node_id
        wait_for(lambda: node_alive(new_id), 120, "the new node")
        return {
            "injected": True,
            "node": WORKER_ARGS[index]["labels"],
            "raylet_pid": pid,
            "seen_dead_s": round(dead_s, 2),
            "replaced_s": round(time.monotonic() - killed, 2),
        }

    def fault_autoscaler_kill(self) -> dict[str, Any]:
        """SIGKILL the autoscaler and start another: it must take over the nodes the first
        one left running (the observer checks none is forgotten or doubled)."""
        old = self.autoscaler
        if old is None or old.poll() is not None:
            return {"injected": False, "why": "autoscaler not running"}
        state = self.workdir / "autoscaler" / "nodes.json"

        def holding() -> list[str]:
            return sorted(json.loads(state.read_text())) if state.exists() else []

        # The kill that matters is one while it holds a node: wait a while for one.
        with contextlib.suppress(TimeoutError):
            wait_for(holding, 30, "the autoscaler to hold a node")
        held = holding()
        os.kill(old.pid, signal.SIGKILL)
        old.wait(timeout=30)
        killed = time.monotonic()
        self.start_autoscaler()
        log = self.workdir / "logs" / f"autoscaler-{self.autoscaler_runs}.log"

        def took_over() -> bool:
            # One line per node taken over; the node's name is a logging field, which the
            # autoscaler's plain log format here leaves out. The log is this run's own.
            text = log.read_text(errors="replace") if log.exists() else ""
            return text.count("took over local Ray node") >= len(held)

        wait_for(took_over, 60, "the new autoscaler to take over its nodes")
        return {
            "injected": True,
            "pid": old.pid,
            "nodes_held": held,
            "taken_over_s": round(time.monotonic() - killed, 2),
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
            wait_for(reported, self.args.grace_s + 60, "the observer to report the canary")
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


def serving(client: QueueClient) -> bool:
    try:
        return client.health() == "SERVING"
    except RayQueueError:
        return False


def node_alive(node_id: str) -> bool:
    nodes = ray.nodes()  # type: ignore[no-untyped-call]  # unannotated in Ray
    return any(n["NodeID"] == node_id and n["Alive"] for n in nodes)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
