"""Autoscaler latency: from a new demand to the RayCluster patch, and to the
ProvisioningRequest's creation, on a real kube-apiserver (+ etcd).

Setup: the harness's control plane (built by ``tests/k8s/toolchain.py``) with the real
CRDs; one RayCluster; a real ``Engine`` as the manager; the autoscaler loop running in a
thread with a 5 s interval (Ray's own) and woken by new demand, as the sidecar is by the
manager's demand stream. Each trial submits one workload and waits for the effect through
a Kubernetes *watch* (so the clock stops when the API server has the write, as any other
client would see it):

- incremental: a 1-CPU gang on the ``cpu-workers`` group → the MODIFIED event with
  ``replicas`` one higher;
- all-at-once: a 1-GPU gang behind a provisioning check → the ADDED event of its
  ProvisioningRequest.

Run: ``.venv/bin/python -m benchmarks.autoscaler --out FILE.json [--trials N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.providers.kuberay import KubeRayProvider
from autoscaler.provisioning import ProvisioningClient
from autoscaler.requests import request_name
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import CheckState, GangDemand, WorkloadId, WorkloadStatus
from tests.autoscaler.k8s_fixtures import PR, RAY, queue_config, raycluster, spec, worker_group

NAMESPACE = "bench"
CLUSTER = "bench"
RAY_LOOP_S = 5.0


class LockedEngine:
    """The manager's serialisation: one lock around every engine call, so the benchmark
    thread (submitting) and the loop thread (reading demand) never interleave."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()

    @property
    def config(self) -> Any:
        return self.engine.config

    def demand(self) -> list[GangDemand]:
        with self.lock:
            return self.engine.demand()

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        with self.lock:
            return self.engine.workload(workload)

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> object:
        with self.lock:
            return self.engine.set_check_state(workload, check, state, message)

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> object:
        with self.lock:
            return self.engine.evict(workload, reason=reason, message=message)


def _watch(custom: Any, plural: str, out: queue.Queue[tuple[float, str, Any]],
           stop: threading.Event) -> None:
    from kubernetes import watch

    group, version = (RAY if plural == RAY[2] else PR)[:2]
    while not stop.is_set():
        # The Kubernetes client ships py.typed but leaves Watch unannotated.
        w: Any = watch.Watch()  # type: ignore[no-untyped-call]
        for event in w.stream(custom.list_namespaced_custom_object, group, version, NAMESPACE,
                              plural, timeout_seconds=5):
            out.put((time.perf_counter(), event["type"], event["object"]))
            if stop.is_set():
                w.stop()
                break


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_s": pct(50),
        "p90_s": pct(90),
        "p99_s": pct(99),
        "max_s": ordered[-1],
        "mean_s": statistics.fmean(ordered),
    }


def run(trials: int) -> dict[str, Any]:
    from kubernetes import client

    from tests.k8s import toolchain
    from tests.k8s.apiserver import create_namespace, start_apiserver
    from tests.k8s.crds import install_crds

    tools = toolchain.ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="rq-bench-as-"))
    server = start_apiserver(tools, workdir=workdir)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        api = server.new_api_client()
        install_crds(api)
        create_namespace(api, NAMESPACE)
        custom = client.CustomObjectsApi(api)
        body = raycluster(
            CLUSTER,
            worker_group("cpu-workers", cpu="1", max_replicas=10_000),
            worker_group("gpu-workers", cpu="2", gpu="4", max_replicas=10_000),
            worker_group("tpu-slices", cpu="1", tpu="4", hosts=2, max_replicas=10),
        )
        custom.create_namespaced_custom_object(*RAY[:2], NAMESPACE, RAY[2], body)

        manager = LockedEngine(Engine(queue_config(), SystemClock()))
        wake = threading.Event()
        loop = Reconciler(
            InProcessSource(manager),
            KubeRayProvider(api, cluster_name=CLUSTER, namespace=NAMESPACE),
            requests=ProvisioningClient(api, cluster_name=CLUSTER, namespace=NAMESPACE),
            config=LoopConfig(interval_s=RAY_LOOP_S),
        )
        events: dict[str, queue.Queue[tuple[float, str, Any]]] = {
            RAY[2]: queue.Queue(), PR[2]: queue.Queue()
        }
        for plural, q in events.items():
            threads.append(threading.Thread(target=_watch, args=(custom, plural, q, stop),
                                            daemon=True))
        threads.append(threading.Thread(target=loop.run, args=(stop,), kwargs={"wake": wake},
                                        daemon=True))
        for t in threads:
            t.start()
        time.sleep(1.0)  # watches established, first (empty) pass done

        def submit(workload: str, queue_name: str, bundle: dict[str, int]) -> float:
            with manager.lock:
                started = time.perf_counter()
                manager.engine.submit(spec(workload, queue_name, bundle, 1))
                manager.engine.schedule()
            wake.set()
            return started

        def wait_event(plural: str, pred: Any, timeout_s: float = 30.0) -> float:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    at, kind, obj = events[plural].get(timeout=0.5)
                except queue.Empty:
                    continue
                if pred(kind, obj):
                    return at
            raise TimeoutError(f"no matching {plural} event in {timeout_s} s")

        patch_s: list[float] = []
        for i in range(trials):
            t0 = submit(f"cpu-{i}", "cpu", {"CPU": 1000})
            want = i + 1
            t1 = wait_event(RAY[2], lambda k, o, want=want: k == "MODIFIED" and any(
                g["groupName"] == "cpu-workers" and g.get("replicas") == want
                for g in o["spec"]["workerGroupSpecs"]))
            patch_s.append(t1 - t0)
            time.sleep(0.05)

        request_s: list[float] = []
        for i in range(trials):
            workload = WorkloadId(f"gpu-{i}")
            t0 = submit(workload, "gpu", {"GPU": 1000})
            name = request_name(workload, 0)
            t1 = wait_event(PR[2], lambda k, o, name=name: k == "ADDED"
                            and o["metadata"]["name"] == name)
            request_s.append(t1 - t0)
            time.sleep(0.05)

        (pass_metric,) = loop.metrics.pass_seconds.collect()
        passes = pass_metric.samples
        pass_count = next(s.value for s in passes if s.name.endswith("_count"))
        pass_sum = next(s.value for s in passes if s.name.endswith("_sum"))
        return {
            "benchmark": "autoscaler",
            "what": "seconds from a new demand (engine submit+schedule) to the API server "
                    "having the RayCluster patch / the ProvisioningRequest, seen by a watch",
            "ray_autoscaler_loop_s": RAY_LOOP_S,
            "loop_interval_s": RAY_LOOP_S,
            "demand_to_raycluster_patch": _stats(patch_s),
            "demand_to_provisioning_request": _stats(request_s),
            "passes": int(pass_count),
            "mean_pass_s": pass_sum / pass_count if pass_count else None,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "kube_apiserver": toolchain.KUBERNETES_VERSION,
            },
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    result = run(args.trials)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
