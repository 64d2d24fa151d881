"""Runs the real KubeRay operator against the test API server.

Why this exists: the autoscaler's contract is with KubeRay, not with the API server: raising
``workerGroupSpecs[i].replicas`` must turn into worker Pods, and lowering it with pod names in
``scaleStrategy.workersToDelete`` must delete exactly those. Only the operator's own
reconciler can show that. It runs as a local process using the admin kubeconfig, with leader
election off and webhooks off (``ENABLE_WEBHOOKS`` unset), watching all namespaces.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from benchmarks.ports import free_port
from tests.k8s.process import ManagedProcess, wait_for


@dataclasses.dataclass(frozen=True, slots=True)
class KubeRayOperator:
    process: ManagedProcess
    health_url: str

    def stop(self) -> None:
        self.process.stop()


def _healthy(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:
        return bool(resp.status == 200)


def start_operator(
    binary: Path, kubeconfig: Path, workdir: Path, *, timeout_s: float = 60.0
) -> KubeRayOperator:
    """Start the operator; return once its health probe answers. Caller must ``stop()``."""
    probe_port = free_port()
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env.pop("ENABLE_WEBHOOKS", None)
    process = ManagedProcess(
        "kuberay-operator",
        [
            str(binary),
            "--enable-leader-election=false",
            "--metrics-addr=0",  # controller-runtime: "0" disables the metrics server
            f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--log-stdout-encoder=console",
            "--reconcile-concurrency=2",
        ],
        workdir / "kuberay-operator.log",
        env=env,
    )
    health_url = f"http://127.0.0.1:{probe_port}/readyz"
    try:
        wait_for(
            lambda: process.check_alive() and _healthy(health_url),
            timeout_s,
            what="KubeRay operator /readyz",
        )
    except BaseException as exc:
        process.stop()
        raise RuntimeError(f"KubeRay operator did not start: {exc}\n{process.log_tail()}") from exc
    return KubeRayOperator(process=process, health_url=health_url)
