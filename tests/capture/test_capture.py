"""Capture on a real Ray cluster: unmodified Ray code, Ray Tune and Ray Train under the queue.

One cluster for the module: a head (2 CPUs) and one worker with 4 CPUs and 4 logical A100
GPUs. The config gives team-a one GPU and team-b two, each in a ClusterQueue of its own
(no cohort, so nothing is borrowed): whatever Ray itself would place at once, the queue
holds a team to its quota. Within a team a higher priority preempts a lower one.

Drivers that must not import ray_queue run as subprocesses with ``RAY_QUEUE_CAPTURE=1``,
through the ``.pth`` start-up line (``python -m ray_queue.capture install``, done here by
the ``pth_installed`` fixture). Tune and Train need ``ray[tune]``'s pandas, pyarrow and
fsspec: without them those two tests skip and say so.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

import ray_queue
import ray_queue.capture
from ray_queue.capture import __main__ as capture_cli
from ray_queue.capture import patch
from ray_queue.capture.group import CapturedPlacementGroup
from ray_queue.engine.config import PriorityClass, Queue, QueueConfig, ResourceFlavor
from ray_queue.engine.model import WorkloadKind, WorkloadState, to_milli
from tests.manager.configs import A100, cq
from tests.ray.harness import cancel_everything, cluster_session, live_pgs, manager, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

S = WorkloadState
ROOT = Path(__file__).resolve().parents[2]


def capture_config() -> QueueConfig:
    return QueueConfig(
        flavors={"a100": ResourceFlavor("a100", A100)},
        cluster_queues={
            "cq-a": cq("cq-a", cpu=8, gpu=1),  # LowerPriority within the queue
            "cq-b": cq("cq-b", cpu=8, gpu=2),
        },
        queues={"team-a": Queue("team-a", "cq-a"), "team-b": Queue("team-b", "cq-b")},
        priority_classes={"low": PriorityClass("low", 10), "high": PriorityClass("high", 100)},
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from cluster_session(str(tmp_path_factory.mktemp("state")), gpu_workers=1, gpus=4, cpus=4)


@pytest.fixture
def teams(cluster: Cluster) -> Iterator[Cluster]:
    ray_queue.apply_config(capture_config())
    yield cluster
    ray_queue.capture.disable()
    cancel_everything()


@pytest.fixture(scope="module")
def pth_installed() -> None:
    """The start-up line in this interpreter's site-packages, as a user installs it."""
    capture_cli.install()


def library(name: str) -> Any:
    """Ray's library ``name``, or a skip saying what is missing: Tune and Train need
    pandas, pyarrow and fsspec (``ray[tune]``), which requirements/ does not lock yet."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        pytest.skip(f"{name} cannot be imported here ({e}); install ray[tune,train]")


def gpu_usage(cluster_queue: str) -> int:
    status = ray_queue.status()
    [entry] = [c for c in status.cluster_queues if c.name == cluster_queue]
    return sum(r.usage for r in entry.resources if r.resource == "GPU")


def workloads(queue: str) -> list[Any]:
    return [s for s in ray.get(manager().workloads.remote()) if s.spec.queue == queue]


def driver(cluster: Cluster, script: str, **env: str) -> subprocess.Popen[str]:
    """A Python driver that never imports ray_queue, with capture's variables set."""
    full_env = dict(os.environ, RAY_ADDRESS=cluster.address, PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=full_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def read_line(process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"no line from the driver within {timeout_s}s"
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        assert process.stderr is not None
        raise AssertionError(f"driver ended (rc {process.returncode}): {process.stderr.read()}")
    return line.strip()


def finish(process: subprocess.Popen[str], timeout_s: float = 60) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return out, err


# -- an unmodified script ---------------------------------------------------------------

UNMODIFIED = """
    import sys
    # Bound at import, before ray.init, as Ray's libraries do.
    from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
    import ray

    ray.init()
    groups = [placement_group([{"GPU": 1}], name=f"g{i}") for i in range(3)]
    for i, group in enumerate(groups):
        assert group.wait(60), i
        later = [g.wait(0) for g in groups[i + 1 :]]
        print(f"placed {i} {type(group).__name__} {later}", flush=True)
        sys.stdin.readline()  # the test has looked
        remove_placement_group(group)
    print("done", flush=True)
"""


def test_an_unmodified_script_is_queued_one_group_at_a_time(
    teams: Cluster, pth_installed: None
) -> None:
    env = {"RAY_QUEUE_CAPTURE": "1", "RAY_QUEUE_QUEUE": "team-a", "RAY_QUEUE_PRIORITY": "high"}
    process = driver(teams, UNMODIFIED, **env)
    try:
        for i in range(3):
            assert read_line(process) == f"placed {i} CapturedPlacementGroup {[False] * (2 - i)}"
            # The quota is one GPU: exactly the i-th group holds it, the others wait.
            assert gpu_usage("cq-a") == to_milli(1)
            states = {s.spec.name: s.state for s in workloads("team-a")}
            assert states[f"g{i}"] is S.ADMITTED
            assert all(states[f"g{j}"] is S.PENDING for j in range(i + 1, 3))
            assert all(s.spec.priority_class == "high" for s in workloads("team-a"))
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()
        assert read_line(process) == "done"
    finally:
        finish(process)
    assert process.returncode == 0
    wait_for(lambda: gpu_usage("cq-a") == 0)
    assert {s.spec.name: s.state for s in workloads("team-a")} == {
        "g0": S.FINISHED,
        "g1": S.FINISHED,
        "g2": S.FINISHED,
    }


# -- the placement group Ray's code gets --------------------------------------------------


@ray.remote(num_cpus=0, num_gpus=1)
def gpu_ids() -> list[int]:
    return [int(i) for i in ray.get_gpu_ids()]


def test_a_captured_group_is_a_ray_placement_group_bound_before_capture(teams: Cluster) -> None:
    # ``placement_group`` was imported at the top of this module, before capture.
    ray_queue.init(queue="team-b", priority="low", capture=True)
    group = placement_group([{"GPU": 1, "CPU": 1}, {"GPU": 1, "CPU": 1}], strategy="SPREAD")
    assert isinstance(group, CapturedPlacementGroup)
    assert isinstance(group, PlacementGroup)
    assert group.bundle_count == 2
    assert group.bundle_specs == [{"GPU": 1.0, "CPU": 1.0}] * 2
    assert {group} == {group} and not group.is_empty  # hashing never waits
    assert ray.get(group.ready(), timeout=60) is True
    assert group.wait(timeout_seconds=10)
    [status] = [s for s in workloads("team-b") if s.spec.id == group.workload]
    assert status.spec.kind is WorkloadKind.PLACEMENT_GROUP and status.state is S.ADMITTED
    assert live_pgs()[group.workload]["placement_group_id"] == group.id.hex()
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=1)
    assert len(ray.get(gpu_ids.options(scheduling_strategy=strategy).remote(), timeout=60)) == 1
    assert gpu_usage("cq-b") == to_milli(2)
    remove_placement_group(group)
    wait_for(lambda: gpu_usage("cq-b") == 0)
    wait_for(lambda: group.workload not in live_pgs())


def test_the_managers_own_groups_and_plain_handles_are_left_to_ray(teams: Cluster) -> None:
    ray_queue.init(queue="team-a", capture=True)
    # A group named as the manager names its own goes to Ray as is (no recursion when the
    # manager runs in a captured job's worker).
    own = placement_group([{"CPU": 1}], name="ray-queue:by-hand")
    assert type(own) is PlacementGroup
    assert own.wait(timeout_seconds=60)
    remove_placement_group(own)
    # Removing a plain handle to a queued group goes to Ray too; the manager notices.
    held = ray_queue.placement_group([{"GPU": 1}], queue="team-a")
    assert held.wait(timeout_seconds=60)
    remove_placement_group(held.placement_group)
    wait_for(lambda: held.workload not in live_pgs())
    wait_for(lambda: gpu_usage("cq-a") == 0)


def test_handles_made_before_capture_keep_working(teams: Cluster) -> None:
    ray_queue.init(queue="team-a", priority="low")
    early = ray_queue.placement_group([{"GPU": 1}])
    assert early.wait(timeout_seconds=60)
    ray_queue.capture.enable("team-a", "low")  # capture turned on later in this process
    late = placement_group([{"GPU": 1}])
    assert not late.wait(timeout_seconds=0)  # team-a's one GPU is early's
    early.remove()  # still gives the quota back, so the captured group gets it
    assert late.wait(timeout_seconds=60)
    remove_placement_group(late)
    wait_for(lambda: gpu_usage("cq-a") == 0)


def test_a_preempted_captured_group_waits_and_comes_back_under_a_new_id(teams: Cluster) -> None:
    ray_queue.init(queue="team-a", priority="low", capture=True)
    group = placement_group([{"GPU": 1}])
    assert group.wait(timeout_seconds=60)
    first = group.id
    urgent = ray_queue.placement_group([{"GPU": 1}], queue="team-a", priority="high")
    assert urgent.wait(timeout_seconds=60)
    wait_for(lambda: not group.wait(timeout_seconds=0))
    assert group.workload in {s.spec.id for s in workloads("team-a") if s.state is S.PENDING}
    # Read while it is queued again, ``id`` waits for the re-admission (as Ray code
    # submitting into the group would).
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.append(group.id), daemon=True)
    reader.start()
    urgent.remove()
    reader.join(60)
    assert seen and seen[0] != first
    assert group.wait(timeout_seconds=60) and group.id == seen[0]
    assert live_pgs()[group.workload]["placement_group_id"] == seen[0].hex()
    remove_placement_group(group)
    wait_for(lambda: gpu_usage("cq-a") == 0)


# -- Ray Tune --------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class Overlap:
    """How many trials run at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.done = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1
        self.done += 1

    def seen(self) -> tuple[int, int]:
        return self.most, self.done


def _trial(config: dict[str, Any]) -> None:
    import time

    from ray import tune

    overlap = ray.get_actor("capture-overlap")
    ray.get(overlap.enter.remote())
    time.sleep(1.0)  # the trial's work: long enough for trials to overlap if allowed
    ray.get(overlap.leave.remote())
    tune.report({"x": config["x"]})


def test_ray_tune_runs_at_most_the_quota_of_trials_at_once(teams: Cluster, tmp_path: Path) -> None:
    tune = library("ray.tune")
    ray_queue.init(queue="team-b", priority="low", capture=True)
    overlap = Overlap.options(name="capture-overlap").remote()  # type: ignore[attr-defined]
    trials = 4
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": 1, "gpu": 1}),
        param_space={"x": tune.grid_search(list(range(trials)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="capture", verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert sorted(r.metrics["x"] for r in results) == list(range(trials))
    most, done = ray.get(overlap.seen.remote())
    # The node has four GPUs; team-b's quota is two.
    assert done == trials
    assert 1 <= most <= 2
    groups = [s for s in workloads("team-b") if s.spec.kind is WorkloadKind.PLACEMENT_GROUP]
    assert len([s for s in groups if s.state is S.FINISHED]) >= trials
    wait_for(lambda: gpu_usage("cq-b") == 0)
    ray.kill(overlap)


@ray.remote(num_cpus=0)
class Gate:
    """Trials check in and hold their GPU until the test opens the gate."""

    def __init__(self) -> None:
        import asyncio

        self.starts: list[int] = []
        self.opened = asyncio.Event()

    async def enter(self, x: int) -> None:
        self.starts.append(x)

    async def open(self) -> None:
        self.opened.set()

    async def wait_open(self) -> None:
        await self.opened.wait()

    async def seen(self) -> list[int]:
        return self.starts


def _held_trial(config: dict[str, Any]) -> None:
    from ray import tune

    gate = ray.get_actor("capture-gate")
    ray.get(gate.enter.remote(config["x"]))
    ray.get(gate.wait_open.remote())  # the trial's work lasts until the test lets it end
    tune.report({"x": config["x"]})


def test_a_preempted_tune_trial_is_retried_by_tune_and_finishes(
    teams: Cluster, tmp_path: Path
) -> None:
    tune = library("ray.tune")
    ray_queue.init(queue="team-b", priority="low", capture=True)
    gate = Gate.options(name="capture-gate").remote()  # type: ignore[attr-defined]
    tuner = tune.Tuner(
        tune.with_resources(_held_trial, {"cpu": 1, "gpu": 1}),
        param_space={"x": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="preempted",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    )
    outcome: list[Any] = []
    fit = threading.Thread(target=lambda: outcome.append(tuner.fit()), daemon=True)
    fit.start()
    try:
        wait_for(lambda: sorted(ray.get(gate.seen.remote())) == [0, 1], 90)
        preemptions = ray_queue.status().preemptions
        # Another group of team-b at a higher priority takes one trial's GPU.
        urgent = ray_queue.placement_group([{"GPU": 1}], queue="team-b", priority="high")
        assert urgent.wait(timeout_seconds=60)
        assert ray_queue.status().preemptions == preemptions + 1
        assert gpu_usage("cq-b") == to_milli(2)
        urgent.remove()
        # Tune's own retry asks for a new group, which the queue admits again.
        wait_for(lambda: len(ray.get(gate.seen.remote())) == 3, 90)
    finally:
        ray.get(gate.open.remote())
        fit.join(120)
    [results] = outcome
    assert not results.errors
    assert sorted(r.metrics["x"] for r in results) == [0, 1]
    wait_for(lambda: gpu_usage("cq-b") == 0)
    ray.kill(gate)


# -- Ray Train -------------------------------------------------------------------------

TRAIN = """
    import os
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    def loop():
        import ray.train
        ray.train.report({"rank": ray.train.get_context().get_world_rank()})

    # Train's PlacementGroupCleaner finds its cluster through the state API, which on a
    # machine running several Ray clusters needs RAY_ADDRESS in the workers. (A runtime_env
    # of the driver's own: capture adds to it.)
    ray.init(runtime_env={"env_vars": {"RAY_ADDRESS": os.environ["RAY_ADDRESS"]}})
    print("started", flush=True)
    trainer = DataParallelTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
        run_config=RunConfig(storage_path={storage!r}, name="capture"),
    )
    result = trainer.fit()
    print("trained", result.error, flush=True)
"""


def test_ray_train_is_admitted_as_one_gang_and_waits_for_its_quota(
    teams: Cluster, pth_installed: None, tmp_path: Path
) -> None:
    library("ray.train")
    # Someone else holds team-b's two GPUs first.
    holder = ray_queue.placement_group([{"GPU": 1}] * 2, queue="team-b", priority="high")
    assert holder.wait(timeout_seconds=60)
    before = {s.spec.id for s in workloads("team-b")}
    process = driver(
        teams,
        TRAIN.replace("{storage!r}", repr(str(tmp_path))),
        RAY_QUEUE_CAPTURE="1",
        RAY_QUEUE_QUEUE="team-b",
        RAY_QUEUE_PRIORITY="low",
    )
    try:
        assert read_line(process, 90) == "started"

        def train_group() -> Any:
            # Train v2 creates the group in its controller actor, a Ray worker process.
            return next(
                (s for s in workloads("team-b") if s.spec.id not in before),
                None,
            )

        waiting = wait_for(train_group, 90)
        assert [(dict(g.resources), g.count) for g in waiting.spec.bundle_groups] == [
            ({"GPU": to_milli(1)}, 2)
        ]
        assert waiting.state is S.PENDING
        holder.remove()
        assert read_line(process, 120) == "trained None"
    finally:
        _, err = finish(process)
    assert process.returncode == 0, err[-3000:]
    admitted = [
        s
        for s in workloads("team-b")
        if s.spec.id not in before and any(t.to_state is S.ADMITTED for t in s.history)
    ]
    assert admitted, "the trainer's group was never admitted"
    wait_for(lambda: gpu_usage("cq-b") == 0)


# -- bad input -------------------------------------------------------------------------


def test_an_unknown_queue_fails_at_ray_init(teams: Cluster, pth_installed: None) -> None:
    process = driver(
        teams, "import ray\nray.init()\n", RAY_QUEUE_CAPTURE="1", RAY_QUEUE_QUEUE="nope"
    )
    _, err = finish(process)
    assert process.returncode != 0
    assert "UnknownQueueError: queue 'nope' does not exist" in err


def test_capture_without_ray_is_refused(teams: Cluster) -> None:
    script = "import ray_queue.capture as c\nc.enable('team-a')\n"
    process = driver(teams, script)
    _, err = finish(process)
    assert process.returncode != 0
    assert "NotInitializedError: capture needs a connected Ray" in err


def test_options_the_queue_cannot_honour_are_refused(teams: Cluster) -> None:
    ray_queue.init(queue="team-a", capture=True)
    with pytest.raises(ray_queue.capture.CaptureError, match="lifetime='detached'"):
        placement_group([{"GPU": 1}], lifetime="detached")
    with pytest.raises(ValueError):  # Ray's own check, as without capture
        placement_group([{}])
    assert not workloads("team-a") or all(s.state.is_terminal for s in workloads("team-a"))


def test_an_unknown_ray_version_fails_loudly(
    teams: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray, "__version__", "2.99.0")
    with pytest.raises(ray_queue.capture.UnsupportedRayVersion, match=r"not 2\.99\.0"):
        ray_queue.init(queue="team-a", capture=True)
    assert not patch.installed()


def test_the_start_up_line_does_nothing_when_the_variable_is_unset(
    teams: Cluster, pth_installed: None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_QUEUE_CAPTURE"}
    check = "import sys; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    bad = subprocess.run(
        [sys.executable, "-c", "import ray; ray.init()"],
        env=dict(env, RAY_QUEUE_CAPTURE="maybe", RAY_ADDRESS=teams.address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert "RAY_QUEUE_CAPTURE='maybe'" in bad.stderr
