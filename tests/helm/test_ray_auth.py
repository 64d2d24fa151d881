"""Ray as the chart configures it refuses whoever does not hold Ray's token.

Why this exists: the chart turns on Ray's token authentication by environment alone
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH`` pointing at a key of the tokens Secret),
so what protects the cluster is only as good as Ray's reading of that environment. Here a
real Ray head (with its dashboard and job API) runs with exactly the environment and token
the chart renders for the head container, the Secret's file standing in for the mount, and:
a driver without the token, or with a wrong one, is refused; the chart's own clients — the
manager (a driver in the head container), the start script's and KubeRay's init container's
``ray health-check``, and the autoscaler sidecar's GCS client — get in; the job API wants
the token while the two health endpoints KubeRay's probes call stay open.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.k8s.process import wait_for
from tests.k8s.ray_nodes import RayHead, head_ready, ray_executable, start_head

pytestmark = pytest.mark.timeout(240)

REFUSED = "InvalidAuthToken"
"""What Ray's GCS client logs when the GCS refuses its token (or its lack of one)."""
#: KubeRay 1.4's head probe paths (utils.RayAgentRayletHealthPath, RayDashboardGCSHealthPath).
PROBE_PATHS = ("/api/local_raylet_healthz", "/api/gcs_healthz")


def _containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cluster = next(o for o in objects if o["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    return {c["name"]: c for c in head}


def _auth_env(container: dict[str, Any], mounted: Path) -> dict[str, str]:
    """The container's RAY_AUTH_* environment, its token mount moved to ``mounted``."""
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "ray-auth")
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("RAY_AUTH_")}
    assert env["RAY_AUTH_TOKEN_PATH"].startswith(mount + "/")
    env["RAY_AUTH_TOKEN_PATH"] = str(mounted / env["RAY_AUTH_TOKEN_PATH"][len(mount) + 1 :])
    return env


@pytest.fixture(scope="module")
def chart_ray(helm: Helm) -> Iterator[dict[str, Any]]:
    """A Ray head started with the chart's head environment and generated token."""
    objects = helm.template()
    secret = next(o for o in objects if o["kind"] == "Secret")
    token = base64.b64decode(secret["data"]["ray"]).decode()
    # Short path: Ray's Unix sockets live under the temp dir and must stay < 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="rqauth-", dir="/tmp"))
    mounted = base / "ray-auth"  # stands in for the Secret volume (items: ray -> token)
    mounted.mkdir()
    (mounted / "token").write_text(token)
    containers = _containers(objects)
    head_env = _auth_env(containers["ray-head"], mounted)
    assert head_env["RAY_AUTH_MODE"] == "token"
    head = start_head(base / "ray", auth_env=head_env, dashboard=True)
    try:
        # Stops waiting as soon as the head has exited, then says why.
        wait_for(
            lambda: not head.process.alive() or head_ready(head),
            120,
            what="Ray head with the chart's auth",
        )
        head.process.check_alive()
        yield {
            "head": head,
            "token": token,
            "home": base,
            "head_env": head_env,
            "sidecar_env": _auth_env(containers["autoscaler"], mounted),
        }
    finally:
        head.stop()
        shutil.rmtree(base, ignore_errors=True)


def _clean_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """This interpreter's environment without any Ray setting, a private HOME (no shared
    ~/.ray/auth_token), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _driver(head: RayHead, env: dict[str, str]) -> subprocess.Popen[str]:
    code = (
        "import ray\n"
        f"ray.init(address={head.address!r})\n"
        "print('connected', int(ray.cluster_resources()['object_store_memory']) > 0)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, out


def test_drivers_without_the_token_are_refused_and_the_manager_gets_in(
    chart_ray: dict[str, Any],
) -> None:
    head, home = chart_ray["head"], chart_ray["home"]
    # Refused drivers retry for about 20 s before giving up: run them side by side.
    without = _driver(head, _clean_env(home, {}))
    wrong = _driver(head, _clean_env(home, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x" * 40}))
    manager = _driver(head, _clean_env(home, chart_ray["head_env"]))
    code, out = _finish(manager)
    assert (code, out.splitlines()[-1]) == (0, "connected True"), out[-2000:]
    for name, proc in (("no token", without), ("a wrong token", wrong)):
        code, out = _finish(proc)
        assert code != 0, f"a driver with {name} connected:\n{out[-2000:]}"
        assert REFUSED in out, out[-2000:]


def test_health_checks_of_the_start_script_and_kuberay_authenticate(
    chart_ray: dict[str, Any],
) -> None:
    """``ray health-check`` gates the manager's start (the chart's head script) and the
    workers' start (KubeRay's wait-gcs-ready init container, which gets the worker
    container's env): with the chart's environment it passes, without it it fails."""
    head, home = chart_ray["head"], chart_ray["home"]
    argv = [ray_executable(), "health-check", "--address", head.address]
    ok = subprocess.run(
        argv, env=_clean_env(home, chart_ray["head_env"]), capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    refused = subprocess.run(argv, env=_clean_env(home, {}), capture_output=True, timeout=60)
    assert refused.returncode != 0


def test_the_autoscaler_sidecar_reads_the_gcs_with_its_env(chart_ray: dict[str, Any]) -> None:
    head, home = chart_ray["head"], chart_ray["home"]
    code = (
        "from autoscaler.ray_nodes import RayGcs\n"
        f"print('nodes', len(RayGcs({head.address!r}).nodes()))\n"
    )
    for env, ok in ((chart_ray["sidecar_env"], True), ({}, False)):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=_clean_env(home, env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert proc.stdout.split()[-2:] == ["nodes", "1"]
        else:
            assert proc.returncode != 0 and REFUSED in proc.stderr, proc.stderr[-2000:]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_job_api_wants_the_token_and_kuberays_probes_do_not(
    chart_ray: dict[str, Any],
) -> None:
    head: RayHead = chart_ray["head"]
    assert head.dashboard_url and head.agent_url
    # The dashboard starts after the GCS: wait for its health endpoint.
    wait_for(
        lambda: _get(head.dashboard_url + PROBE_PATHS[1])[0] == 200,  # type: ignore[operator]
        90,
        what="Ray dashboard",
    )
    for base, path in ((head.agent_url, PROBE_PATHS[0]), (head.dashboard_url, PROBE_PATHS[1])):
        # KubeRay's probe: `wget ... http://localhost:<port>/<path> | grep success`.
        status, body = _get(base + path)
        assert (status, "success" in body) == (200, True), (path, status, body)
    assert _get(head.dashboard_url + "/api/jobs/")[0] == 401
    wrong = {"Authorization": "Bearer " + "x" * 40}
    assert _get(head.dashboard_url + "/api/jobs/", wrong)[0] == 403
    good = {"Authorization": "Bearer " + chart_ray["token"]}
    assert _get(head.dashboard_url + "/api/jobs/", good)[0] == 200
