"""Local Ray nodes started with ``ray start``: a head, and workers that join it.

Why this exists: the node simulator turns KubeRay worker Pods into real Ray nodes, so the
engine sees capacity arrive and leave exactly as it would in a cluster. Every node is a
``ray start --block`` subprocess in its own process group under a private temp dir, so it is
stopped by pid at teardown and never disturbs other Ray clusters on the same machine (no
``ray stop``; every port Ray would otherwise take by default is chosen free).

Authentication: Ray's token auth is on by default and otherwise reads the token from the
shared ``~/.ray/auth_token``, which other suites on the machine may create or replace while
our nodes run. Each head therefore gets a token of its own, passed to its nodes (and to a
driver, see ``RayHead.driver_env``) as ``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from benchmarks.ports import free_port
from tests.k8s.process import ManagedProcess

OBJECT_STORE_BYTES = 100 * 1024 * 1024
"""Small object stores: a few nodes must fit beside other test suites on a 24 GB box."""


def ray_executable() -> str:
    """The ``ray`` CLI of the interpreter running the tests (the venv's)."""
    here = Path(sys.executable).parent / "ray"
    if here.exists():
        return str(here)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError("the `ray` command is not installed in this environment")
    return found


def _common_args(agent_port: int | None = None) -> list[str]:
    return [
        "--node-ip-address=127.0.0.1",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--dashboard-agent-listen-port={agent_port or free_port()}",
        "--disable-usage-stats",
        "--block",
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class RayHead:
    address: str
    temp_dir: Path
    process: ManagedProcess
    auth_token: str
    dashboard_url: str | None = None
    """``http://127.0.0.1:<port>`` when started with a dashboard."""
    agent_url: str | None = None
    """The head's dashboard agent (``/api/local_raylet_healthz``), with a dashboard."""

    def driver_env(self) -> dict[str, str]:
        """Environment a process needs to ``ray.init(address=self.address)``."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.auth_token}

    def stop(self) -> None:
        self.process.stop(grace_s=5.0)


def start_head(
    temp_dir: Path,
    *,
    num_cpus: float = 0,
    auth_env: Mapping[str, str] | None = None,
    dashboard: bool = False,
    env: Mapping[str, str] | None = None,
) -> RayHead:
    """Start a head with no CPUs by default (work lands on simulated workers only).

    ``auth_env``: Ray's authentication environment of the head (e.g. the Helm chart's
    ``RAY_AUTH_MODE`` + ``RAY_AUTH_TOKEN_PATH``) instead of a fresh ``RAY_AUTH_TOKEN``;
    the token is then read from ``RAY_AUTH_TOKEN_PATH``'s file, if any. ``dashboard``: run
    Ray's dashboard (and job API) on a free port, bound to loopback. ``env``: more of the
    head's environment (its raylet's workers, and so the drivers of Ray jobs, inherit it).

    Returns at once; wait with ``ray.init(address=head.address)`` or ``head_ready``.
    """
    temp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(32)
    if auth_env is None:
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    else:
        auth = dict(auth_env)
        token_file = auth.get("RAY_AUTH_TOKEN_PATH")
        token = auth.get("RAY_AUTH_TOKEN") or (
            Path(token_file).read_text().strip() if token_file else ""
        )
    agent_port = free_port()
    dashboard_args = ["--include-dashboard=false"]
    dashboard_url = agent_url = None
    if dashboard:
        dashboard_port = free_port()
        dashboard_args = [
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
        ]
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        agent_url = f"http://127.0.0.1:{agent_port}"
    process = ManagedProcess(
        "ray-head",
        [
            ray_executable(),
            "start",
            "--head",
            f"--port={port}",
            f"--num-cpus={num_cpus:g}",
            f"--temp-dir={temp_dir}",
            f"--ray-client-server-port={free_port()}",
            *dashboard_args,
            *_common_args(agent_port),
        ],
        temp_dir.parent / "ray-head.log",
        env=_ray_env(env or {}, auth),
    )
    return RayHead(
        address=f"127.0.0.1:{port}",
        temp_dir=temp_dir,
        process=process,
        auth_token=token,
        dashboard_url=dashboard_url,
        agent_url=agent_url,
    )


def head_ready(head: RayHead) -> bool:
    """True once the head's GCS wrote the cluster address file (``ray start`` is done)."""
    head.process.check_alive()
    return (head.temp_dir / "ray_current_cluster").exists()


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one Ray worker node offers: the same fields ``ray start`` takes."""

    num_cpus: float
    num_gpus: float
    resources: Mapping[str, float]
    labels: Mapping[str, str]
    memory_bytes: int | None
    env: Mapping[str, str]
    """Extra environment, e.g. RAY_NODE_TYPE_NAME (Ray turns it into ``ray.io/node-group``)."""


_START_LOCK = threading.Lock()
WORKER_START_TIMEOUT_S = 90.0
"""``ray start`` of a worker takes 3-10 s on an idle machine, much longer on a loaded one."""


def start_worker(name: str, head: RayHead, spec: WorkerSpec, log_dir: Path) -> ManagedProcess:
    """Start a worker node and wait until ``ray start`` reports it up.

    Starts are serialised (process-wide lock): ``ray start`` numbers a node's Unix sockets
    (``sockets/raylet.N``) by looking at what exists in the session dir, so two nodes of one
    head started at the same moment pick the same N and one raylet dies with "bind: Address
    already in use". Raises if the node exits during start; a node still starting after
    WORKER_START_TIMEOUT_S is returned anyway (it may yet join).
    """
    with _START_LOCK:
        process = _launch_worker(name, head, spec, log_dir)
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            process.check_alive()
            if "Ray runtime started" in process.log_tail(200):
                break
            time.sleep(0.25)
        return process


def _launch_worker(name: str, head: RayHead, spec: WorkerSpec, log_dir: Path) -> ManagedProcess:
    argv = [
        ray_executable(),
        "start",
        f"--address={head.address}",
        f"--num-cpus={spec.num_cpus:g}",
        f"--num-gpus={spec.num_gpus:g}",
    ]
    if spec.resources:
        argv.append(f"--resources={json.dumps(dict(spec.resources))}")
    if spec.labels:
        argv.append("--labels=" + ",".join(f"{k}={v}" for k, v in spec.labels.items()))
    if spec.memory_bytes:
        argv.append(f"--memory={spec.memory_bytes}")
    argv += _common_args()
    return ManagedProcess(
        f"ray-worker {name}",
        argv,
        log_dir / f"ray-{name}.log",
        env=_ray_env(spec.env, head.driver_env()),
    )


def _ray_env(extra: Mapping[str, str], auth: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # The test process may have these set for its own cluster; a node must not inherit them.
    for key in (
        "RAY_ADDRESS",
        "RAY_NODE_TYPE_NAME",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
    ):
        env.pop(key, None)
    env.update(extra)
    env.update(auth)
    return env


def _refresh_ray_auth_state() -> None:
    """Make an already-imported ``ray`` re-read RAY_AUTH_MODE / RAY_AUTH_TOKEN.

    Ray caches both (RayConfig and the token loader) at first use; these two calls are what
    Ray itself does when it switches a process to token mode.
    """
    from ray._raylet import (  # type: ignore[attr-defined]
        AuthenticationTokenLoader,
        Config,
    )

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def driver_auth(head: RayHead) -> Iterator[None]:
    """While open, ``ray.init(address=head.address)`` in this process authenticates."""
    saved = {key: os.environ.get(key) for key in head.driver_env()}
    os.environ.update(head.driver_env())
    _refresh_ray_auth_state()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_ray_auth_state()
