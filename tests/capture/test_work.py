"""Capture of plain ``@ray.remote`` tasks and actors, and of Ray Data, on a real cluster.

One cluster for the module: a head (2 CPUs) and one worker with 4 CPUs and 4 logical A100
GPUs. team-a's ClusterQueue holds one GPU: whatever Ray would run at once, the queue holds
team-a to one GPU-task (or GPU-actor) at a time. Concurrency is observed from inside the
work, by a zero-resource ``Tally`` actor (not captured: it asks for nothing) that each task
checks in and out of, and held open by a ``Valve`` the test opens one step at a time, so
no test depends on how long anything takes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

import ray_queue
import ray_queue.capture
from ray_queue.capture import CaptureError
from ray_queue.engine.config import PriorityClass, Queue, QueueConfig, ResourceFlavor
from ray_queue.engine.model import WorkloadState
from ray_queue.errors import WorkloadRejected
from tests.manager.configs import A100, cq
from tests.ray.harness import cancel_everything, cluster_session, manager, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


def config() -> QueueConfig:
    return QueueConfig(
        flavors={"a100": ResourceFlavor("a100", A100)},
        cluster_queues={"cq-a": cq("cq-a", cpu=8, gpu=1), "cq-b": cq("cq-b", cpu=8, gpu=2)},
        queues={"team-a": Queue("team-a", "cq-a"), "team-b": Queue("team-b", "cq-b")},
        priority_classes={"low": PriorityClass("low", 10), "high": PriorityClass("high", 100)},
    )


@ray.remote(num_cpus=0)
class Tally:
    """How many tasks are inside at once, and the most ever (asks for nothing: never
    queued)."""

    def __init__(self) -> None:
        import asyncio

        self.inside = 0
        self.most = 0
        self.done = 0
        self.changed = asyncio.Condition()

    async def enter(self) -> None:
        async with self.changed:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.changed.notify_all()

    async def company(self, timeout_s: float) -> None:
        """Wait until another task is inside too, for at most ``timeout_s``: work that Ray
        runs side by side overlaps, work the queue holds apart does not."""
        import asyncio
        import contextlib

        async with self.changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(lambda: self.inside > 1), timeout_s)

    async def leave(self) -> None:
        async with self.changed:
            self.inside -= 1
            self.done += 1
            self.changed.notify_all()

    async def read(self) -> tuple[int, int, int]:
        return self.inside, self.most, self.done


@ray.remote(num_cpus=0)
class Valve:
    """Lets ``opened`` tasks through ``pass_``; the test opens it one step at a time."""

    def __init__(self) -> None:
        import asyncio

        self.opened = 0
        self.changed = asyncio.Condition()

    async def open(self, steps: int = 1) -> None:
        async with self.changed:
            self.opened += steps
            self.changed.notify_all()

    async def pass_(self, ticket: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.opened > ticket)


# Decorated at import, before any capture starts, as user code is.
@ray.remote(num_gpus=1)
def gpu_step(tally: Any, valve: Any, ticket: int) -> int:
    ray.get(tally.enter.remote())
    ray.get(valve.pass_.remote(ticket))
    ray.get(tally.leave.remote())
    return ticket


@ray.remote
class GpuHolder:
    def ping(self) -> str:
        return "pong"


@ray.remote(num_cpus=0)
def free_step() -> str:
    return "free"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from cluster_session(str(tmp_path_factory.mktemp("state")), gpu_workers=1, gpus=4, cpus=4)


@pytest.fixture
def team_a(cluster: Cluster) -> Iterator[Cluster]:
    ray_queue.apply_config(config())
    ray_queue.capture.enable(queue="team-a")
    yield cluster
    ray_queue.capture.disable()
    cancel_everything()


def workloads(queue: str) -> list[Any]:
    return [s for s in ray.get(manager().workloads.remote()) if s.spec.queue == queue]


def task_workloads(queue: str, name: str | None = None) -> list[Any]:
    return [
        s
        for s in ray.get(manager().workloads.remote())
        if s.spec.queue == queue
        and s.spec.kind.value == "task"
        and (name is None or s.spec.name == name)
    ]


def gpu_usage(cluster_queue: str) -> int:
    [entry] = [c for c in ray_queue.status().cluster_queues if c.name == cluster_queue]
    return sum(r.usage for r in entry.resources if r.resource == "GPU")


def test_tasks_decorated_before_capture_run_one_gpu_at_a_time(team_a: Cluster) -> None:
    tally, valve = Tally.remote(), Valve.remote()
    refs = [gpu_step.remote(tally, valve, i) for i in range(3)]
    # Plain Ray's ObjectRefs, usable as ever.
    assert all(isinstance(ref, ray.ObjectRef) for ref in refs)
    for step in range(3):
        # One inside, the others held by the queue though Ray has 4 GPUs free.
        wait_for(lambda s=step: ray.get(tally.read.remote()) == (1, 1, s), 60)
        assert gpu_usage("cq-a") == 1000
        ray.get(valve.open.remote())
    assert sorted(ray.get(refs, timeout=60)) == [0, 1, 2]
    assert ray.get(tally.read.remote()) == (0, 1, 3)
    # The lease they ran in is given back once idle.
    wait_for(lambda: gpu_usage("cq-a") == 0, 30)


def test_tasks_wait_at_their_gates_while_the_quota_is_held(team_a: Cluster) -> None:
    held = placement_group([{"GPU": 1}])
    ray.get(held.ready(), timeout=60)
    tally, valve = Tally.remote(), Valve.remote()
    ray.get(valve.open.remote(2))
    refs = [gpu_step.remote(tally, valve, i) for i in range(2)]
    # No room for a lease: each task is a workload of its own, waiting for admission.
    wait_for(
        lambda: (
            [w.state for w in task_workloads("team-a", "gpu_step")] == [WorkloadState.PENDING] * 2
        ),
        30,
    )
    ready, _ = ray.wait(refs, num_returns=1, timeout=2)
    assert not ready and ray.get(tally.read.remote()) == (0, 0, 0)
    remove_placement_group(held)
    assert sorted(ray.get(refs, timeout=60)) == [0, 1]
    assert ray.get(tally.read.remote()) == (0, 1, 2)
    wait_for(
        lambda: {w.state for w in task_workloads("team-a", "gpu_step")} == {WorkloadState.FINISHED},
        30,
    )
    wait_for(lambda: gpu_usage("cq-a") == 0, 30)


def test_options_and_many_short_tasks_all_return(team_a: Cluster) -> None:
    @ray.remote
    def square(x: int) -> int:
        return x * x

    refs = [square.options(num_cpus=0.5).remote(i) for i in range(200)]
    # An ObjectRef of a captured task is an argument to the next, as in plain Ray.
    assert ray.get(square.remote(refs[3]), timeout=120) == 81
    assert ray.get(refs, timeout=120) == [i * i for i in range(200)]
    # Charged to team-a while they ran (a lease of their shape), and given back after.
    leases = [w for w in workloads("team-a") if w.spec.name == "lease:square"]
    assert leases
    wait_for(lambda: all(w.state.is_terminal for w in workloads("team-a")), 30)


def test_actors_decorated_before_capture_hold_the_quota_until_they_die(team_a: Cluster) -> None:
    first = GpuHolder.options(num_gpus=1).remote()
    assert ray.get(first.ping.remote(), timeout=60) == "pong"
    second = GpuHolder.options(num_gpus=1).remote()
    waiting = second.ping.remote()
    wait_for(lambda: len(task_workloads("team-a", "GpuHolder")) == 2, 30)
    assert task_workloads("team-a", "GpuHolder")[1].state is WorkloadState.PENDING
    ready, _ = ray.wait([waiting], timeout=3)
    assert not ready, "the second GPU actor was created beyond team-a's quota of one GPU"
    assert gpu_usage("cq-a") == 1000
    ray.kill(first)
    assert ray.get(waiting, timeout=60) == "pong"
    ray.kill(second)
    wait_for(lambda: gpu_usage("cq-a") == 0, 30)


def test_work_in_a_captured_group_and_work_without_resources_is_not_queued_again(
    team_a: Cluster,
) -> None:
    before = len(workloads("team-a"))
    group = placement_group([{"GPU": 1, "CPU": 1}])
    ray.get(group.ready(), timeout=60)
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
    tally, valve = Tally.remote(), Valve.remote()
    ray.get(valve.open.remote(1))
    inside = gpu_step.options(scheduling_strategy=strategy).remote(tally, valve, 0)
    holder = GpuHolder.options(num_gpus=1, scheduling_strategy=strategy).remote()
    assert ray.get([inside, free_step.remote(), holder.ping.remote()], timeout=60) == [
        0,
        "free",
        "pong",
    ]
    assert len(workloads("team-a")) == before + 1  # the group alone
    assert gpu_usage("cq-a") == 1000  # the group's, once
    ray.kill(holder)
    remove_placement_group(group)
    wait_for(lambda: gpu_usage("cq-a") == 0, 30)


def test_bad_work_is_refused_in_the_callers_frame(team_a: Cluster) -> None:
    with pytest.raises(WorkloadRejected):
        gpu_step.options(num_gpus=64).remote(None, None, 0)
    with pytest.raises(CaptureError, match="detached"):
        GpuHolder.options(num_gpus=1, lifetime="detached", name="x").remote()


def test_ray_data_map_batches_holds_team_a_to_its_gpu(team_a: Cluster) -> None:
    data = pytest.importorskip("ray.data")
    tally = Tally.remote()

    def on_gpu(batch: dict[str, Any]) -> dict[str, Any]:
        ray.get(tally.enter.remote())
        ray.get(tally.company.remote(0.5))
        ray.get(tally.leave.remote())
        return {"id": batch["id"] * 2}

    most_gpus: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most_gpus.append(gpu_usage("cq-a"))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rows = (
            data.range(64, override_num_blocks=8)
            .map_batches(on_gpu, num_gpus=1, batch_size=8)
            .take_all()
        )
    finally:
        stop.set()
        watcher.join(5)
    assert sorted(r["id"] for r in rows) == [2 * i for i in range(64)]
    inside, most, done = ray.get(tally.read.remote())
    assert (inside, done) == (0, 8)
    assert most == 1
    assert most_gpus and max(most_gpus) <= 1000
    # Charged to team-a: Ray Data's GPU tasks went through the queue.
    assert any(
        group.resources.get("GPU")
        for w in workloads("team-a")
        if w.spec.name.startswith("lease:")
        for group in w.spec.bundle_groups
    )
