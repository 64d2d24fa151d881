"""Reliability on a real Ray cluster: the manager survives kill -9, and a dead driver's
work is cancelled and its quota freed.

One cluster for the module: a head and one worker with two logical A100 GPUs. The config
gives team-a and team-b one GPU each in one cohort.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
import ray
from ray.cluster_utils import Cluster

import ray_queue
from ray_queue.engine.model import WorkloadState
from tests.manager.configs import teams_config
from tests.ray.harness import (
    Runs,
    cancel_everything,
    cluster_session,
    handed_over,
    live_pgs,
    manager,
    wait_for,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

S = WorkloadState


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from cluster_session(str(tmp_path_factory.mktemp("state")), gpu_workers=1)


@pytest.fixture
def teams(cluster: Cluster) -> Iterator[None]:
    ray_queue.apply_config(teams_config(cpu=4, gpu=1))
    yield
    cancel_everything()


def new_epoch(old: str) -> str | None:
    try:
        epoch: str = ray.get(manager().ping.remote(), timeout=5)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None
    return epoch if epoch != old else None


def test_manager_kill_9_loses_nothing_admits_nothing_twice_and_readopts_groups(
    teams: None,
) -> None:
    a1 = ray_queue.placement_group([{"GPU": 1}], queue="team-a", priority="low")
    b1 = ray_queue.placement_group([{"GPU": 1}], queue="team-b", priority="low")
    assert a1.wait(timeout_seconds=30) and b1.wait(timeout_seconds=30)
    waiting = [
        ray_queue.placement_group([{"GPU": 1}], queue="team-a", priority="low") for _ in range(5)
    ]
    assert len(ray_queue.pending(queue="team-a")) == 5  # flushes this driver's batch
    pgs_before = {w: info["placement_group_id"] for w, info in live_pgs().items()}
    assert set(pgs_before) == {a1.workload, b1.workload}
    states_before = {s.spec.id: s.state for s in ray.get(manager().workloads.remote())}
    old_epoch = ray.get(manager().ping.remote())

    os.kill(ray.get(manager().pid.remote()), signal.SIGKILL)
    wait_for(lambda: new_epoch(old_epoch), 90, 0.5)

    states_after = {s.spec.id: s.state for s in ray.get(manager().workloads.remote())}
    assert states_after == states_before
    # Re-adopted, not recreated: the very same placement groups, and no others.
    assert {w: info["placement_group_id"] for w, info in live_pgs().items()} == pgs_before
    assert a1.placement_group.id.hex() == pgs_before[a1.workload]

    # The queue still moves, in order, through the client handles (which resynced).
    a1.remove()
    assert waiting[0].wait(timeout_seconds=30)
    assert [w.status().state for w in waiting] == [S.ADMITTED] + [S.PENDING] * 4
    assert [p.workload for p in ray_queue.pending(queue="team-a")] == [
        w.workload for w in waiting[1:]
    ]
    admitted_gpus = sum(
        s.admission.usage.get(("a100", "GPU"), 0)
        for s in ray.get(manager().workloads.remote())
        if s.state is S.ADMITTED and s.admission is not None
    )
    assert admitted_gpus == 2000
    # And new submissions are accepted by the restarted manager.
    late = ray_queue.placement_group([{"CPU": 1}], queue="team-b", priority="high")
    assert late.wait(timeout_seconds=30)


def test_a_backlog_in_slots_survives_a_manager_kill_9(teams: None) -> None:
    @ray_queue.remote(num_gpus=1, num_cpus=0, queue="team-a", priority="low")
    def step(runs: ray.actor.ActorHandle, i: int) -> int:
        ray.get(runs.ran.remote(i))
        time.sleep(0.05)
        return i

    runs = Runs.remote()  # type: ignore[attr-defined]
    backlog = [step.remote(runs, i) for i in range(80)]
    # Wait until a slot has passed from task to task, so its group carries another
    # task's name: the restarted manager must still know whose it is.
    wait_for(lambda: any(handed_over(h.workload) for h in backlog[:20]), 30)
    old_epoch = ray.get(manager().ping.remote())
    os.kill(ray.get(manager().pid.remote()), signal.SIGKILL)
    wait_for(lambda: new_epoch(old_epoch), 90, 0.5)

    assert ray_queue.get(backlog, timeout=120) == list(range(80))
    # Each ran once: had the restarted manager not re-adopted the slots, it would have
    # removed them, killing the task running in each (which would then run again).
    assert ray.get(runs.counts.remote()) == {i: 1 for i in range(80)}

    def unfinished() -> list[str]:
        states = {s.spec.id: s.state for s in ray.get(manager().workloads.remote())}
        return [h.workload for h in backlog if states[h.workload] is not S.FINISHED]

    # Results are in; the driver's last reports follow within moments.
    wait_for(lambda: not unfinished(), 30)
    # Nothing leaked: every slot went with the last task that held it.
    wait_for(lambda: not any(w.startswith("ta-") for w in live_pgs()), 30)


DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray, ray_queue
    ray.init(address=sys.argv[1])
    ray_queue.init(queue="team-a", priority="low")
    held = [ray_queue.placement_group([{"GPU": 1}]) for _ in range(2)]
    for pg in held:
        assert pg.wait(timeout_seconds=60)
    queued = ray_queue.placement_group([{"GPU": 1}])
    assert queued.position() == 0
    print("READY", ray.get_runtime_context().get_job_id(), flush=True)
    time.sleep(600)
    """
)


def test_driver_death_cancels_its_work_and_frees_quota(teams: None, cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        owner = _read_ready(proc, timeout_s=90)
        theirs = [s for s in ray.get(manager().workloads.remote()) if s.spec.owner == owner]
        assert sorted(s.state.value for s in theirs) == ["ADMITTED", "ADMITTED", "PENDING"]
        # team-b reclaims the GPU the other driver borrowed from it; a same-priority
        # team-a request must wait for the GPU the driver still holds in its own quota.
        mine = ray_queue.placement_group([{"GPU": 1}], queue="team-b", priority="low")
        mine_a = ray_queue.placement_group([{"GPU": 1}], queue="team-a", priority="low")
        assert mine.wait(timeout_seconds=30)
        assert not mine_a.wait(timeout_seconds=1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def cancelled() -> bool:
        states = [s.state for s in ray.get(manager().workloads.remote()) if s.spec.owner == owner]
        return bool(states) and all(s is S.CANCELLED for s in states)

    wait_for(cancelled, 60, 0.5)
    assert mine_a.wait(timeout_seconds=30)
    live = live_pgs()
    assert all(s.spec.id not in live for s in theirs)
    [reason] = {s.reason for s in ray.get(manager().workloads.remote()) if s.spec.owner == owner}
    assert reason == "OwnerDied"


def _read_ready(proc: subprocess.Popen[str], *, timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY"):
                return line.split()[1]
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"driver subprocess did not become ready (exit {proc.poll()})")


def test_node_capacity_follows_nodes_joining_and_leaving(cluster: Cluster) -> None:
    ray_queue.apply_config(teams_config(cpu=8, gpu=4))

    def gpu_nodes() -> int:
        nodes = ray.get(manager().nodes.remote())
        return sum(1 for n in nodes if n.resources.get("GPU", 0) >= 4000)

    with pytest.raises(ray_queue.WorkloadRejected, match="larger than every node"):
        ray_queue.placement_group([{"GPU": 3}], queue="team-a")

    big = cluster.add_node(num_cpus=1, num_gpus=4, labels={"ray.io/accelerator-type": "A100"})
    try:
        wait_for(gpu_nodes, 30, 0.5)
        wide = ray_queue.placement_group([{"GPU": 3}], queue="team-a")
        assert wide.wait(timeout_seconds=30)
        wide.remove()
    finally:
        cluster.remove_node(big)
    wait_for(lambda: gpu_nodes() == 0, 90, 0.5)
    late = ray_queue.placement_group([{"GPU": 3}], queue="team-a")
    with pytest.raises(ray_queue.WorkloadRejected):
        late.wait(timeout_seconds=30)
    cancel_everything()
