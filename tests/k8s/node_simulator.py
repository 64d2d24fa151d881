"""Stands in for kubelets: KubeRay's Pods become Running and their workers real Ray nodes.

Why this exists: no kubelet, container runtime or scheduler runs in the test harness, so the
Pods the KubeRay operator creates would stay Pending forever. The simulator watches the Ray
Pods of one namespace and, for each:

- worker Pod: starts a local Ray worker node shaped like the Pod (``ray start`` flags parsed
  from the container's own ``ray start`` command, which KubeRay builds from rayStartParams
  and the container's CPU/GPU/memory limits; the limits are the fallback), with the Pod's
  ``RAY_NODE_TYPE_NAME`` (KubeRay sets it to the ``ray.io/group`` label; Ray labels the node
  ``ray.io/node-group=<group>``) and ``RAY_CLOUD_INSTANCE_ID`` (the Pod name) environment;
  then marks the Pod Running and Ready through the ``pods/status`` subresource;
- head Pod: marks it Running and Ready; the local Ray head stands in for it;
- deleted Pod: stops that Pod's Ray node (SIGTERM to its process group, as a kubelet would).

Pods are never bound to a node, so the API server deletes them at once (no graceful
termination to finish). Thread-safe: one watch thread owns all state; ``nodes()`` copies it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.k8s.process import ManagedProcess
from tests.k8s.ray_nodes import RayHead, WorkerSpec, start_worker

logger = logging.getLogger(__name__)

RAY_POD_SELECTOR = "ray.io/is-ray-node=yes"
GPU_RESOURCE = "nvidia.com/gpu"
TEARDOWN_GRACE_S = 5.0
"""At teardown nothing runs on the nodes any more: no need for ``ray start``'s 30 s drain."""
_WATCH_TIMEOUT_S = 5
"""Watch re-list period: also bounds how long ``stop()`` waits for the thread."""


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatedNode:
    pod: str
    group: str
    spec: WorkerSpec
    process: ManagedProcess


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2", "1Gi", "1e3") as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _ray_start_flags(container: Mapping[str, Any]) -> dict[str, str]:
    """``--flag=value`` pairs of the ``ray start`` command inside the container's shell line."""
    line = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
    start = line.find("ray start")
    if start < 0:
        return {}
    words = shlex.split(line[start:].split(";")[0].split("&&")[0])
    flags: dict[str, str] = {}
    for word in words[2:]:
        if not word.startswith("--"):
            continue
        key, sep, value = word[2:].partition("=")
        flags[key] = value if sep else "true"
    return flags


def _env_value(pod: Mapping[str, Any], container: Mapping[str, Any], name: str) -> str | None:
    for item in container.get("env") or []:
        if item.get("name") != name:
            continue
        if "value" in item:
            return str(item["value"])
        path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
        if path == "metadata.name":
            return str(pod["metadata"]["name"])
        if path.startswith("metadata.labels['"):
            return str((pod["metadata"].get("labels") or {}).get(path[17:-2], ""))
    return None


def worker_spec_from_pod(pod: Mapping[str, Any]) -> WorkerSpec:
    """The Ray node a KubeRay worker Pod describes (raw Pod JSON in, ``ray start`` shape out)."""
    containers = pod["spec"]["containers"]
    container = containers[0]
    flags = _ray_start_flags(container)
    limits = (container.get("resources") or {}).get("limits") or {}
    requests = (container.get("resources") or {}).get("requests") or {}

    def number(flag: str, *quantities: Any) -> float:
        if flags.get(flag):
            return float(flags[flag])
        for quantity in quantities:
            if quantity is not None:
                return parse_quantity(quantity)
        return 0.0

    num_cpus = number("num-cpus", limits.get("cpu"), requests.get("cpu"))
    num_gpus = number("num-gpus", limits.get(GPU_RESOURCE))
    resources: dict[str, float] = {}
    if flags.get("resources"):
        resources = {k: float(v) for k, v in json.loads(flags["resources"]).items()}
    labels: dict[str, str] = {}
    if flags.get("labels"):
        labels = dict(pair.split("=", 1) for pair in flags["labels"].strip('"').split(",") if pair)
    memory = flags.get("memory") or limits.get("memory")
    group = (pod["metadata"].get("labels") or {}).get("ray.io/group", "")
    env = {
        "RAY_NODE_TYPE_NAME": _env_value(pod, container, "RAY_NODE_TYPE_NAME") or group,
        "RAY_CLOUD_INSTANCE_ID": (
            _env_value(pod, container, "RAY_CLOUD_INSTANCE_ID") or pod["metadata"]["name"]
        ),
    }
    return WorkerSpec(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        labels=labels,
        memory_bytes=int(parse_quantity(memory)) if memory else None,
        env=env,
    )


def _running_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }
        for c in pod["spec"]["containers"]
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": containers,
        }
    }


class NodeSimulator:
    """Watches one namespace's Ray Pods; see the module docstring. Start with ``start()``."""

    def __init__(self, api_client: Any, namespace: str, head: RayHead, log_dir: Path) -> None:
        self._api_client = api_client
        self._namespace = namespace
        self._head = head
        self._log_dir = log_dir
        self._nodes: dict[str, SimulatedNode] = {}
        self._marked: set[str] = set()  # pod UIDs already marked Running
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"node-sim-{namespace}", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def nodes(self) -> dict[str, SimulatedNode]:
        """Pod name -> its running simulated node (a copy)."""
        with self._lock:
            return dict(self._nodes)

    def stop(self) -> None:
        """Stop watching and stop every Ray node started. Idempotent."""
        self._stopping.set()
        self._thread.join(timeout=_WATCH_TIMEOUT_S + 10)
        with self._lock:
            nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.process.stop(grace_s=TEARDOWN_GRACE_S)

    # --- watch thread -------------------------------------------------------------------

    def _run(self) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self._api_client)
        while not self._stopping.is_set():
            try:
                listed: Any = core.list_namespaced_pod(
                    self._namespace, label_selector=RAY_POD_SELECTOR, _preload_content=False
                )
                body = json.loads(listed.data)
                self._resync(core, body["items"])
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_namespaced_pod,
                    self._namespace,
                    label_selector=RAY_POD_SELECTOR,
                    resource_version=body["metadata"]["resourceVersion"],
                    timeout_seconds=_WATCH_TIMEOUT_S,
                    _request_timeout=_WATCH_TIMEOUT_S + 5,
                )
                for event in stream:
                    if self._stopping.is_set():
                        break
                    pod = event["raw_object"]
                    if event["type"] == "DELETED":
                        self._on_gone(pod["metadata"]["name"])
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._on_pod(core, pod)
            except Exception as exc:  # keep simulating; the next re-list repairs state
                if not self._stopping.is_set():
                    logger.warning("node simulator (%s): %r", self._namespace, exc)
                    self.errors.append(repr(exc))
                    self._stopping.wait(1.0)

    def _resync(self, core: Any, pods: list[dict[str, Any]]) -> None:
        present = {
            p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
        }
        for name in set(self.nodes()) - present:
            self._on_gone(name)
        for pod in pods:
            self._on_pod(core, pod)

    def _on_pod(self, core: Any, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        if meta.get("deletionTimestamp"):
            self._on_gone(name)
            return
        labels = meta.get("labels") or {}
        if labels.get("ray.io/node-type") == "worker":
            with self._lock:
                known = name in self._nodes
            if not known:
                spec = worker_spec_from_pod(pod)
                process = start_worker(name, self._head, spec, self._log_dir)
                node = SimulatedNode(
                    pod=name, group=labels.get("ray.io/group", ""), spec=spec, process=process
                )
                with self._lock:
                    self._nodes[name] = node
                logger.info("node simulator: pod %s -> ray worker pid %d", name, process.pid)
        if meta["uid"] not in self._marked and pod.get("status", {}).get("phase") != "Running":
            try:
                core.patch_namespaced_pod_status(name, self._namespace, _running_status(pod))
                self._marked.add(meta["uid"])
            except Exception as exc:  # retried on the next event or re-list
                logger.warning("node simulator: marking %s Running failed: %r", name, exc)

    def _on_gone(self, name: str) -> None:
        with self._lock:
            node = self._nodes.pop(name, None)
        if node is not None:
            logger.info("node simulator: pod %s gone -> stopping its ray worker", name)
            node.process.stop()
