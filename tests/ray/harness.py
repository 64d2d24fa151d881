"""Shared pieces of the real-Ray tests: a small labelled cluster, bounded waits, cleanup.

Each test module starts ONE ``ray.cluster_utils.Cluster`` (module-scoped fixture built
with ``start_cluster``) and shuts it down in teardown; tests wait with ``wait_for``
(bounded) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import ray
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group_table

import ray_queue
from benchmarks.ports import free_port
from ray_queue.client import runtime as client_runtime
from ray_queue.engine.model import HANDED_OVER, WorkloadState
from ray_queue.manager.actor import find_manager, start_manager
from ray_queue.ray_adapter.actions import PG_PREFIX
from tests.manager.configs import A100, teams_config

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last value: {last!r})")


def start_cluster(gpu_workers: int = 2, *, gpus: int = 2, cpus: int = 2) -> Cluster:
    cluster = Cluster(
        initialize_head=True,
        # Free dashboard and dashboard-agent ports: 8265 and 52365 may belong to another
        # Ray on this machine, and a head whose agent cannot bind takes no Ray jobs.
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
        },
    )
    for _ in range(gpu_workers):
        cluster.add_node(num_cpus=cpus, num_gpus=gpus, labels=dict(A100))
    cluster.wait_for_nodes()
    return cluster


def connected_cluster(**kwargs: Any) -> Iterator[Cluster]:
    """Body of a module fixture for tests that make their own manager (or none): start a
    cluster (``start_cluster``'s arguments), connect, yield, and always tear down."""
    os.environ.pop("RAY_ADDRESS", None)
    cluster = start_cluster(**kwargs)
    try:
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def token_manager_session(folder: Path, tokens: str) -> Iterator[Cluster]:
    """Body of a module fixture: ``connected_cluster`` (one GPU worker) with a manager that
    takes the tokens of ``tokens`` (YAML) and serves no gRPC, torn down with it."""
    path = folder / "tokens.yaml"
    path.write_text(tokens)
    path.chmod(0o600)
    for cluster in connected_cluster(gpu_workers=1):
        try:
            start_manager(
                teams_config(cpu=2, gpu=2),
                state_path=str(folder / "state"),
                env={"RAY_QUEUE_TOKENS_FILE": str(path), "RAY_QUEUE_GRPC_PORT": "off"},
            )
            yield cluster
        finally:
            ray_queue.shutdown()


def cluster_session(state_dir: str, **kwargs: Any) -> Iterator[Cluster]:
    """Body of a module fixture: ``connected_cluster`` with ray_queue's manager started."""
    for cluster in connected_cluster(**kwargs):
        try:
            ray_queue.init(state_dir=state_dir)
            yield cluster
        finally:
            ray_queue.shutdown()


def live_pgs() -> dict[str, dict[str, Any]]:
    """The manager's placement groups that Ray has not removed, by workload id."""
    return {
        info["name"][len(PG_PREFIX) :]: info
        for info in placement_group_table().values()
        if (info.get("name") or "").startswith(PG_PREFIX) and info["state"] != "REMOVED"
    }


def manager() -> Any:
    handle = find_manager()
    assert handle is not None
    return handle


def cancel_everything() -> None:
    """Cancel every live workload so the next test starts from empty quotas."""
    statuses = ray.get(manager().workloads.remote())
    live = [s.spec.id for s in statuses if not s.state.is_terminal]
    if live:
        ray.get(manager().cancel.remote(live, "test cleanup"))
    wait_for(lambda: not live_pgs(), 30)


def state_of(workload: str) -> WorkloadState:
    return ray.get(manager().workload.remote(workload)).state


def handed_over(workload: str) -> bool:
    """Whether the task took its quota over from a finished one."""
    # Submissions are batched: make sure the manager has this driver's before asking.
    runtime().flush()
    history = ray.get(manager().workload.remote(workload)).history
    return any(t.reason == HANDED_OVER for t in history)


def runtime() -> client_runtime.ClientRuntime:
    return client_runtime.current()


@contextlib.contextmanager
def watcher_held(timeout_s: float = 30.0) -> Iterator[None]:
    """Stand in for a driver too busy to see its tasks return: inside the block the
    runtime's watcher starts no round (its threads that launch and track tasks go on).
    Entered once the watcher is parked before its next round, so no round it began
    earlier is still telling handles of returns; some task must be running for that."""
    watcher = runtime().watcher
    sweep = watcher.sweep
    parked, release = threading.Event(), threading.Event()

    def held(refs: list[Any], *, all_in_slots: bool) -> None:
        parked.set()
        release.wait()
        sweep(refs, all_in_slots=all_in_slots)

    # The instance attribute shadows the method for the watcher thread's next round.
    watcher.sweep = held  # type: ignore[method-assign]
    try:
        assert parked.wait(timeout_s), "the watcher started no round: is any task running?"
        yield
    finally:
        del watcher.sweep
        release.set()


@ray.remote(num_cpus=0)
class Runs:
    """Counts how often each task body ran, and keeps the order of the runs with where
    each ran (``where``: e.g. the placement group id), as the tasks report them."""

    def __init__(self) -> None:
        self.runs: dict[int, int] = {}
        self.order: list[tuple[int, str | None]] = []

    def ran(self, i: int, where: str | None = None) -> None:
        self.runs[i] = self.runs.get(i, 0) + 1
        self.order.append((i, where))

    def counts(self) -> dict[int, int]:
        return self.runs

    def log(self) -> list[tuple[int, str | None]]:
        return self.order
