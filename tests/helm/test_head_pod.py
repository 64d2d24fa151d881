"""The head pod as it will really run: KubeRay's rendering of it, and its start script.

The chart relies on two things it does not control. KubeRay must leave the head
container's command alone (``ray.io/overwrite-container-cmd``) and hand over its ``ray
start`` line in ``$KUBERAY_GEN_RAY_START_CMD``; checked here with the real operator building
the real Pod. And the start script must start the manager only once Ray answers, and end
the container when either of the two ends, so Kubernetes restarts the head rather than
leaving Ray without its queue; checked by running the script with stand-ins for ``ray``
and the manager.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.k8s.conftest import K8sApi
from tests.k8s.process import wait_for

pytestmark = pytest.mark.timeout(180)


def _head_script(helm: Helm) -> str:
    cluster = next(o for o in helm.template() if o["kind"] == "RayCluster")
    containers = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    head = next(c for c in containers if c["name"] == "ray-head")
    assert head["command"] == ["/bin/bash", "-c", "--"]
    return str(head["args"][0])


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run_script(
    script: str, tmp_path: Path, *, ray_start: str, manager_exit: str, timeout_s: float = 30
) -> tuple[int, Path]:
    """Run the head script with a fake ``ray`` (healthy once ``ray_start`` created its
    marker) and a fake ``python`` (the manager) that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "ray-up"
    _executable(bin_dir / "ray", f'#!/bin/bash\n[ "$1" = health-check ] && [ -e {marker} ]\n')
    calls = tmp_path / "manager-args"
    _executable(
        bin_dir / "python",
        f'#!/bin/bash\nprintf "%s\\n" "$@" > {calls}\n{manager_exit}\n',
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "KUBERAY_GEN_RAY_START_CMD": ray_start.replace("MARKER", str(marker)),
    }
    # Its own process group, output to a file: when the script ends, what it leaves
    # behind (the container runtime would kill it) is killed here, by group.
    with (tmp_path / "out.log").open("wb") as out:
        proc = subprocess.Popen(
            ["/bin/bash", "-c", "--", script],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return code, calls


def test_manager_starts_after_ray_and_its_exit_ends_the_container(
    helm: Helm, tmp_path: Path
) -> None:
    # Ray comes up after a moment and stays up; the manager exits with 3.
    code, calls = _run_script(
        _head_script(helm),
        tmp_path,
        ray_start="sh -c 'sleep 1; touch MARKER; sleep 60'",
        manager_exit="exit 3",
    )
    assert code == 3
    args = calls.read_text().split("\n")
    assert args[:3] == ["-m", "ray_queue.manager", "--address"]
    assert "/etc/ray-queue/config/queues.yaml" in args and "--watch-config" in args


def test_ray_dying_ends_the_container(helm: Helm, tmp_path: Path) -> None:
    # Ray comes up, the manager runs on, then Ray dies with 1: the container must end.
    code, calls = _run_script(
        _head_script(helm),
        tmp_path,
        ray_start="sh -c 'touch MARKER; sleep 1; exit 1'",
        manager_exit="sleep 60",
    )
    assert code == 1
    assert calls.exists(), "the manager was started once Ray answered"


def test_ray_failing_to_start_never_starts_the_manager(helm: Helm, tmp_path: Path) -> None:
    code, calls = _run_script(
        _head_script(helm), tmp_path, ray_start="sh -c 'exit 1'", manager_exit="exit 0"
    )
    assert code == 1
    assert not calls.exists()


def _pod(api: K8sApi, namespace: str, selector: str) -> Any:
    from kubernetes import client

    pods = (
        client.CoreV1Api(api.api_client)
        .list_namespaced_pod(namespace, label_selector=selector)
        .items
    )
    return pods[0] if pods else None


@pytest.mark.timeout(240)
def test_kuberay_builds_the_head_pod_as_the_chart_means_it(
    helm_k8s: Helm, k8s_api: K8sApi, k8s_namespace: str, kuberay: Any, tmp_path: Path
) -> None:
    one_worker = tmp_path / "one-worker.yaml"
    one_worker.write_text(
        "workerGroups:\n  - {name: cpu-workers, flavor: cpu, replicas: 1, "
        "resources: {requests: {cpu: '1', memory: 1Gi}}}\n"
    )
    helm_k8s.run(
        "install",
        "hp",
        str(Path(__file__).parents[2] / "helm" / "ray-queue"),
        "--namespace",
        k8s_namespace,
        "-f",
        str(one_worker),
        timeout_s=180,
    )
    selector = "app.kubernetes.io/instance=hp,app.kubernetes.io/component=head"
    pod = wait_for(lambda: _pod(k8s_api, k8s_namespace, selector), 120, what="head Pod")
    spec = pod.spec
    assert spec.service_account_name == "hp-ray-queue"
    assert spec.automount_service_account_token is False
    containers = {c.name: c for c in spec.containers}
    assert set(containers) == {"ray-head", "autoscaler"}
    head = containers["ray-head"]
    # KubeRay left the command alone: our script, not its `ray start` line.
    assert head.command == ["/bin/bash", "-c", "--"]
    assert 'eval "$KUBERAY_GEN_RAY_START_CMD" &' in head.args[0]
    env = {e.name: e.value for e in head.env}
    assert "ray start --head" in env["KUBERAY_GEN_RAY_START_CMD"]
    assert "--num-cpus=0" in env["KUBERAY_GEN_RAY_START_CMD"]
    assert env["RAY_QUEUE_TOKENS_FILE"] == "/etc/ray-queue/tokens/tokens.yaml"
    sidecar = containers["autoscaler"]
    assert sidecar.command == ["python", "-m", "autoscaler"]
    assert "--cluster-name=hp-ray-queue" in sidecar.args
    sa_mounts = [
        c.name
        for c in spec.containers
        for m in c.volume_mounts or []
        if m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
    ]
    assert sa_mounts == ["autoscaler"], "only the sidecar may hold Kubernetes credentials"
    assert env["RAY_AUTH_MODE"] == "token"
    assert {e.name: e.value for e in sidecar.env}["RAY_AUTH_MODE"] == "token"

    # A worker as KubeRay builds it: Ray's token reaches the worker container and the
    # wait-gcs-ready init container KubeRay adds (its `ray health-check` must authenticate).
    worker_selector = "app.kubernetes.io/instance=hp,app.kubernetes.io/component=worker"
    worker = wait_for(
        lambda: _pod(k8s_api, k8s_namespace, worker_selector), 120, what="worker Pod"
    ).spec
    ray_containers = [*worker.containers, *(worker.init_containers or [])]
    assert {c.name for c in worker.init_containers or []} == {"wait-gcs-ready"}
    for container in ray_containers:
        worker_env = {e.name: e.value for e in container.env or []}
        assert worker_env["RAY_AUTH_MODE"] == "token", container.name
        assert worker_env["RAY_AUTH_TOKEN_PATH"] == "/etc/ray-queue/ray-auth/token"
        mounts = {m.name: m.mount_path for m in container.volume_mounts or []}
        assert mounts["ray-auth"] == "/etc/ray-queue/ray-auth", container.name
    token_volume = next(v for v in worker.volumes if v.name == "ray-auth").secret
    assert token_volume.secret_name == "hp-ray-queue-tokens"
    assert [(i.key, i.path) for i in token_volume.items] == [("ray", "token")]
    helm_k8s.run("uninstall", "hp", "--namespace", k8s_namespace, timeout_s=120)
