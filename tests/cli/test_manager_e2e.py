"""``ray-queue`` end to end against the real QueueManager actor on a real Ray cluster.

The actor starts its own gRPC server (``start_grpc_server`` on its loop) and publishes
the address; everything behind it is real: ManagerCore, the SQLite store, the Ray
adapter, Ray's job server. A queued job goes CLI → gRPC → actor loop → admission → Ray
job submission → finishes, and the CLI sees every step.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ports import free_port
from tests.cli.test_cli import RAY_QUEUE
from tests.grpc.conftest import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]


def _manager_class() -> Any:
    """The real actor class, plus one test hook (defined in a function so Ray ships it by
    value to the worker)."""
    from ray_queue.manager.actor import QueueManager

    class TestedManager(QueueManager):
        async def start(self, dashboard_url: str) -> str:
            # A worker's view of the dashboard URL assumes the default port (8265), which
            # another cluster on this machine may hold; point the adapter (held by the
            # core) at the real one. Then start the manager as ray_queue.init would: its
            # loop, and with it the gRPC server on a free port (tests/conftest.py).
            self._adapter._dashboard_url = dashboard_url
            self._adapter._job_client = None
            self._ensure_loop()
            assert self._grpc is not None, "the manager did not start its gRPC server"
            return str(self._grpc.address)

    return TestedManager


@pytest.fixture(scope="module")
def manager_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    import ray
    from ray.cluster_utils import Cluster

    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(
        initialize_head=True,
        # Another cluster on this machine may hold the default dashboard (agent) ports.
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
        },
    )
    try:
        context = ray.init(address=cluster.address, logging_level="ERROR")
        actor = (
            ray.remote(_manager_class())
            .options(num_cpus=0, max_concurrency=1000, namespace="ray_queue_e2e")
            .remote(None, str(tmp_path_factory.mktemp("state")))
        )
        address = ray.get(actor.start.remote(context.dashboard_url), timeout=120)
        yield address, cluster.address
        ray.kill(actor)
    finally:
        ray.shutdown()
        cluster.shutdown()


def cli(
    address: str, *args: str, ray_address: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_QUEUE_")}
    argv = [str(RAY_QUEUE), *(["--address", address] if address else []), *args]
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_job_through_the_cli_on_real_ray(manager_address: tuple[str, str], tmp_path: Path) -> None:
    address, ray_address = manager_address
    status = json.loads(ok(cli(address, "status", "-o", "json")))
    assert [c["name"] for c in status["cluster_queues"]] == ["default"]

    submitted = json.loads(
        ok(
            cli(
                address,
                "job",
                "submit",
                "--queue",
                "default",
                "--id",
                "hello",
                "-o",
                "json",
                "--",
                "python",
                "-c",
                "print('hello from ray-queue')",
            )
        )
    )
    assert submitted["spec"]["kind"] == "job"

    last: dict[str, Any] = {}

    def finished() -> bool:
        last.update(json.loads(ok(cli(address, "describe", "workload", "hello", "-o", "json"))))
        return last["state"] in ("FINISHED", "FAILED", "REJECTED")

    try:
        wait_for(finished, timeout_s=240)  # the job agent may start slowly on a busy host
    finally:
        print("last seen:", last.get("state"), last.get("message"))
    assert last["state"] == "FINISHED", last["message"]
    history = json.loads(ok(cli(address, "describe", "workload", "hello", "-o", "json")))["history"]
    assert [t["to_state"] for t in history][-2:] == ["ADMITTED", "FINISHED"]
    listed = json.loads(ok(cli(address, "list", "workloads", "--state", "FINISHED", "-o", "json")))
    assert [w["spec"]["id"] for w in listed] == ["hello"]
    # The server also published its address: no --address needed on a Ray node.
    found = cli("", "status", "-o", "json", ray_address=ray_address)
    assert json.loads(ok(found))["cluster_queues"]


def test_cancel_and_config_on_real_ray(manager_address: tuple[str, str], tmp_path: Path) -> None:
    address, _ = manager_address
    # Ask for more CPU than the cluster has quota for: it stays pending, then is cancelled.
    ok(
        cli(
            address,
            "job",
            "submit",
            "--queue",
            "default",
            "--id",
            "too-big",
            "--num-cpus",
            "2",
            "--",
            "sleep",
            "60",
        )
    )
    ok(
        cli(
            address,
            "job",
            "submit",
            "--queue",
            "default",
            "--id",
            "waiting",
            "--num-cpus",
            "2",
            "--",
            "sleep",
            "1",
        )
    )
    pending = json.loads(ok(cli(address, "pending", "-o", "json")))
    assert [p["workload"] for p in pending] == ["waiting"]
    assert "cancelled" in ok(cli(address, "cancel", "too-big"))
    wait_for(lambda: json.loads(ok(cli(address, "pending", "-o", "json"))) == [], timeout_s=60)
    config = tmp_path / "config.yaml"
    config.write_text(ok(cli(address, "config", "get")))
    assert "dry run" in ok(cli(address, "apply", "-f", str(config), "--dry-run"))


def test_bad_job_caps_through_the_cli_say_what_to_do(manager_address: tuple[str, str]) -> None:
    address, _ = manager_address
    for flags, problem in (
        (["--max", "TPUS=2"], "does not cover"),
        (["--num-cpus", "1", "--max-cpus", "0.5"], "below what its entrypoint itself asks"),
    ):
        refused = cli(address, "job", "submit", "--queue", "default", *flags, "--", "true")
        assert refused.returncode == 1 and problem in refused.stderr, refused.stderr
    listed = json.loads(ok(cli(address, "list", "workloads", "-o", "json")))
    assert not [w for w in listed if w["spec"]["id"].startswith("job-")]
