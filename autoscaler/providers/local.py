"""``LocalProvider``: real local Ray worker nodes for configured worker groups.

The embedded default (``make demo``, a laptop, CI) and what the real-Ray tests use: no
Kubernetes, but the same planner and loop drive real nodes joining and leaving a real
Ray cluster. A node is either a ``ray start --block`` subprocess in its own process group
(stopped by pid, never ``ray stop``) or, when given a ``ray.cluster_utils.Cluster``, a node
added to it. With a ``state_file`` the subprocess nodes are also written down (name, group,
pid), so a provider started after this one was killed takes over the nodes still running
instead of losing them (they would hold their resources forever, and more would be
started beside them). Each node carries ``RAY_NODE_TYPE_NAME`` = its group (Ray labels it
``ray.io/node-group``) and ``RAY_CLOUD_INSTANCE_ID`` = its name, the same identities KubeRay
gives its Pods, so the provider finds its nodes in GCS the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.providers.base import (
    ConflictError,
    PermanentError,
    Shape,
    WorkerGroup,
)
from autoscaler.providers.worker_nodes import worker_node
from autoscaler.ray_nodes import RayGcs, RayNode
from ray_queue.engine.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

#: Small object stores: several nodes must share a small machine with other tests.
OBJECT_STORE_BYTES = 80 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LocalGroupSpec:
    """A worker group of local nodes: what each node offers and how many may run."""

    name: str
    #: Per node, milli-units (memory in bytes * 1000, as everywhere in the engine).
    shape: Shape
    max_replicas: int
    min_replicas: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Node:
    name: str
    group: str
    handle: Any  # a subprocess.Popen, or a ray._private.node.Node of a Cluster
    ray_node_id: str | None = None


class LocalProvider:
    """Starts and stops local Ray worker nodes. See ``NodeProvider`` for the contract.

    Unlike KubeRay, the provider *is* the source of truth for how many nodes a group
    wants, so ``replicas`` is the number of nodes it started and has not deleted. Not
    thread-safe; ``shutdown()`` stops every node it started.
    """

    def __init__(
        self,
        gcs_address: str,
        groups: Sequence[LocalGroupSpec],
        *,
        cluster: Any | None = None,
        clock: Clock | None = None,
        log_dir: Path | None = None,
        state_file: Path | None = None,
    ) -> None:
        self._gcs = RayGcs(gcs_address)
        self._address = gcs_address
        self._specs = {g.name: g for g in groups}
        self._cluster = cluster
        self._clock = clock or SystemClock()
        self._log_dir = log_dir
        self._nodes: dict[str, _Node] = {}
        self._serial = 0
        self._state_file = state_file
        if state_file is not None and cluster is None:
            self._adopt(state_file)

    # -- NodeProvider -------------------------------------------------------------------

    def groups(self) -> list[WorkerGroup]:
        self._forget_exited()
        alive = [n for n in self._gcs.nodes() if n.alive]
        ray_nodes = {n.instance_id: n for n in alive if n.instance_id}
        by_id = {n.node_id: n for n in alive}
        now = self._clock.now()
        out = []
        for spec in self._specs.values():
            mine = [n for n in self._nodes.values() if n.group == spec.name]
            workers = []
            for node in sorted(mine, key=lambda n: n.name):
                seen = ray_nodes.get(node.name) or by_id.get(node.ray_node_id or "")
                workers.append(worker_node(node.name, seen, now))
            out.append(
                WorkerGroup(
                    name=spec.name,
                    shape=spec.shape,
                    min_replicas=spec.min_replicas,
                    max_replicas=spec.max_replicas,
                    replicas=len(mine),
                    labels=dict(spec.labels),
                    nodes=tuple(workers),
                )
            )
        return out

    def pending_gangs(self) -> list[list[dict[str, int]]] | None:
        """Placement groups Ray is waiting to place (``None``: cannot tell)."""
        try:
            return self._gcs.pending_gangs()
        except Exception as exc:
            logger.warning("cannot read pending placement groups", extra={"error": str(exc)})
            return None

    def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
        spec = self._spec(group)
        current = sum(1 for n in self._nodes.values() if n.group == group)
        if current != expected:
            raise ConflictError(f"group {group} has {current} nodes, planned from {expected}")
        if replicas < current:
            raise PermanentError(
                "LocalProvider shrinks only by delete_workers (it never picks nodes itself)"
            )
        for _ in range(min(replicas, spec.max_replicas) - current):
            self._start(spec)

    def delete_workers(self, group: str, workers: Sequence[str]) -> None:
        for name in workers:
            node = self._nodes.get(name)
            if node is None or node.group != group:
                continue
            seen = self._find(node)
            if seen is not None:
                accepted, why = self._gcs.drain(seen.node_id, message="idle: ray-queue scale-down")
                if not accepted:
                    logger.info("drain refused; node kept", extra={"node": name, "reason": why})
                    continue
            self._stop(node)

    # -- lifecycle ----------------------------------------------------------------------

    def shutdown(self) -> None:
        for node in list(self._nodes.values()):
            self._stop(node)

    def _spec(self, group: str) -> LocalGroupSpec:
        try:
            return self._specs[group]
        except KeyError:
            raise PermanentError(f"unknown worker group {group!r}") from None

    def _find(self, node: _Node) -> RayNode | None:
        for seen in self._gcs.nodes():
            if seen.alive and (seen.instance_id == node.name or seen.node_id == node.ray_node_id):
                return seen
        return None

    def _start(self, spec: LocalGroupSpec) -> None:
        self._serial += 1
        name = f"{spec.name}-{self._serial}"
        env = {"RAY_NODE_TYPE_NAME": spec.name, "RAY_CLOUD_INSTANCE_ID": name}
        cpus, gpus, memory, custom = _ray_amounts(spec.shape)
        if self._cluster is not None:
            # Cluster.add_node spawns from this process's environment; set it for the call.
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                handle = self._cluster.add_node(
                    num_cpus=cpus,
                    num_gpus=gpus,
                    resources=custom,
                    labels=dict(spec.labels),
                    object_store_memory=OBJECT_STORE_BYTES,
                    **({"memory": memory} if memory else {}),
                )
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            self._nodes[name] = _Node(name, spec.name, handle, handle.node_id)
        else:
            self._nodes[name] = _Node(name, spec.name, self._spawn(name, spec, env))
            self._save()
        logger.info("started local Ray node", extra={"node": name, "group": spec.name})

    def _spawn(self, name: str, spec: LocalGroupSpec, env: Mapping[str, str]) -> Any:
        cpus, gpus, memory, custom = _ray_amounts(spec.shape)
        argv = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            f"--address={self._address}",
            f"--num-cpus={cpus:g}",
            f"--num-gpus={gpus:g}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
            "--block",
        ]
        if custom:
            argv.append(f"--resources={json.dumps(custom)}")
        if spec.labels:
            argv.append("--labels=" + ",".join(f"{k}={v}" for k, v in spec.labels.items()))
        if memory:
            argv.append(f"--memory={memory}")
        full_env = {**os.environ, **env}
        full_env.pop("RAY_ADDRESS", None)
        log = (
            open(self._log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the node
            if self._log_dir is not None
            else subprocess.DEVNULL
        )
        return subprocess.Popen(
            argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _stop(self, node: _Node) -> None:
        if self._cluster is not None:
            self._nodes.pop(node.name, None)
            self._cluster.remove_node(node.handle, allow_graceful=True)
        elif isinstance(node.handle, int):  # adopted from a provider before this one
            _stop_group(node.handle)
        else:
            proc: subprocess.Popen[bytes] = node.handle
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Forgotten only once stopped: a provider killed in between takes it over again.
        if self._nodes.pop(node.name, None) is not None:
            self._save()
        logger.info("stopped local Ray node", extra={"node": node.name})

    def _forget_exited(self) -> None:
        """A ``ray start`` that exited (it timed out joining an overloaded GCS, or was
        killed) is no node: counted, it would hold the group's place for good."""
        if self._cluster is not None:
            return
        exited = [n for n in self._nodes.values() if not _running(n.handle)]
        for node in exited:
            logger.warning(
                "local Ray node exited on its own; forgetting it", extra={"node": node.name}
            )
            del self._nodes[node.name]
        if exited:
            self._save()

    def _save(self) -> None:
        if self._state_file is None or self._cluster is not None:
            return
        nodes = {n.name: {"group": n.group, "pid": _pid(n.handle)} for n in self._nodes.values()}
        partial = self._state_file.with_suffix(".partial")
        partial.write_text(json.dumps(nodes))
        partial.replace(self._state_file)  # atomic: a kill never leaves half a file

    def _adopt(self, state_file: Path) -> None:
        """Take over the nodes a provider before this one started and did not stop."""
        try:
            recorded: dict[str, dict[str, Any]] = json.loads(state_file.read_text())
        except FileNotFoundError:
            return
        for name, entry in recorded.items():
            pid, group = int(entry["pid"]), str(entry["group"])
            self._serial = max(self._serial, int(name.rpartition("-")[2] or 0))
            if group not in self._specs or not _group_alive(pid):
                continue
            self._nodes[name] = _Node(name, group, pid)
            logger.info(
                "took over local Ray node", extra={"node": name, "group": group, "pid": pid}
            )
        self._save()


def _pid(handle: Any) -> int:
    """An adopted node's handle is its pid; a spawned one's, its ``Popen``."""
    return handle if isinstance(handle, int) else int(handle.pid)


def _running(handle: Any) -> bool:
    if isinstance(handle, int):
        return _group_alive(handle)
    return bool(handle.poll() is None)


def _group_alive(pid: int) -> bool:
    """Whether ``pid`` still leads its process group (the ``ray start`` we spawned)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the parenthesised command; a zombie is no longer running.
            if f.read().rpartition(")")[2].split()[0] == "Z":
                return False
        return os.getpgid(pid) == pid
    except (ProcessLookupError, FileNotFoundError):
        return False


def _stop_group(pid: int, timeout_s: float = 15.0) -> None:
    """Stop a node this process did not spawn (so cannot wait for): TERM, then KILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _ray_amounts(shape: Shape) -> tuple[float, float, int, dict[str, float]]:
    """(num_cpus, num_gpus, memory bytes, custom resources) for ``ray start``."""
    custom = {
        name: amount / 1000
        for name, amount in shape.items()
        if name not in ("CPU", "GPU", "memory", "object_store_memory")
    }
    return (
        shape.get("CPU", 0) / 1000,
        shape.get("GPU", 0) / 1000,
        shape.get("memory", 0) // 1000,
        custom,
    )
