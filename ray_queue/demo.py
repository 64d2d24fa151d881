"""``make demo``: three teams share a small simulated GPU cluster through ray-queue.

Starts a local Ray cluster (``ray.cluster_utils.Cluster``) with logical GPUs on two
flavors of node (A100 and T4, told apart by node labels), applies a three-team config —
one cohort, priorities, borrowing, preemption, fair sharing — and plays a fixed,
seeded stream of placement groups, tasks and a Ray job against it for about a minute,
while a live table shows queue lengths, usage against quota, borrowing, fair shares,
admissions and preemptions. Ends with a summary and shuts everything down.

The cluster has a fixed size here; ``make demo`` then runs ``autoscaler.demo``, where the
local autoscaler adds a node for a queued gang. A ``NodeProvider`` given to
``run(provider=...)`` is called every refresh with the manager's demand (quota-reserved
or admitted work not yet placed on nodes).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
from rich.console import Console

import ray_queue
from ray_queue.engine.config import (
    ClusterQueue,
    FairSharing,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    Queue,
    QueueConfig,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    Settings,
    WithinClusterQueue,
)
from ray_queue.engine.model import GangDemand, WorkloadState, to_milli
from ray_queue.wire import ManagerStatus

A100 = {"ray.io/accelerator-type": "A100"}
T4 = {"ray.io/accelerator-type": "T4"}
TEAMS = ("research", "prod", "dev")


class NodeProvider(Protocol):
    """The autoscaler seam: turn demand into nodes (LocalProvider / KubeRayProvider)."""

    def reconcile(self, demand: list[GangDemand]) -> None: ...


def demo_config() -> QueueConfig:
    """Three teams in cohort ``org``; A100s and T4s; prod may preempt, research borrows."""

    def team(name: str, a100: float, t4: float, *, borrow: float | None, weight: float) -> Any:
        def quota(gpus: float, cpus: float) -> tuple[ResourceQuota, ...]:
            limit = None if borrow is None else to_milli(borrow)
            return (
                ResourceQuota("CPU", to_milli(cpus), borrowing_limit=limit),
                ResourceQuota("GPU", to_milli(gpus), borrowing_limit=limit),
            )

        group = ResourceGroup(
            ("CPU", "GPU"),
            (FlavorQuotas("a100", quota(a100, a100 * 2)), FlavorQuotas("t4", quota(t4, t4 * 2))),
        )
        return ClusterQueue(
            name=name,
            resource_groups=(group,),
            cohort="org",
            fair_sharing_weight=weight,
            preemption=Preemption(
                within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
                reclaim_within_cohort=ReclaimWithinCohort.ANY,
            ),
        )

    return QueueConfig(
        flavors={"a100": ResourceFlavor("a100", A100), "t4": ResourceFlavor("t4", T4)},
        cluster_queues={
            "research": team("research", 3, 2, borrow=4, weight=1.0),
            "prod": team("prod", 3, 3, borrow=None, weight=2.0),
            "dev": team("dev", 2, 3, borrow=2, weight=1.0),
        },
        queues={name: Queue(name, name) for name in TEAMS},
        priority_classes={
            "batch": PriorityClass("batch", 10, global_default=True),
            "normal": PriorityClass("normal", 100),
            "urgent": PriorityClass("urgent", 1000),
        },
        settings=Settings(fair_sharing=FairSharing(enable=True)),
    )


def start_cluster() -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(2):
        cluster.add_node(num_cpus=8, num_gpus=4, labels=dict(A100))
    for _ in range(2):
        cluster.add_node(num_cpus=8, num_gpus=4, labels=dict(T4))
    cluster.wait_for_nodes()
    return cluster


@dataclass
class _Held:
    handle: Any
    team: str
    hold_s: float
    placed_at: float | None = None


@dataclass
class Stats:
    submitted: int = 0
    tasks_done: int = 0
    events: list[str] = field(default_factory=list)

    def log(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")
        del self.events[:-8]


def _sleep_task(seconds: float) -> str:
    time.sleep(seconds)
    return "ok"


# long: the demo as a script, read top to bottom in the order a viewer sees it (start,
# stream submissions and a job, draw, drain, summarise); its steps are already helpers.
def run(
    duration_s: float = 60.0,
    *,
    seed: int = 7,
    provider: NodeProvider | None = None,
    console: Console | None = None,
) -> int:
    """Play the demo for ``duration_s`` seconds of submissions, then drain; returns the
    exit code. ``console``: where the live table and summary go (the terminal if None)."""
    from rich.live import Live

    console = console or Console()
    logging.getLogger("ray_queue").setLevel(logging.WARNING)
    console.print("[bold]ray-queue demo[/]: starting a local Ray cluster (2 A100 and 2 T4 nodes)…")
    cluster = start_cluster()
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        state_dir = tempfile.mkdtemp(prefix="ray-queue-demo-")
        ray_queue.init(queue="research", config=demo_config(), state_dir=state_dir)
        console.print("config applied: teams research, prod, dev in cohort org\n")
        stats = Stats()
        sleeper = ray_queue.remote(num_cpus=0.5, num_gpus=1)(_sleep_task)
        rng = random.Random(seed)
        held: list[_Held] = []
        tasks: list[Any] = []
        job = None
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:
            next_submit = 0.0
            while True:
                now = time.monotonic() - started
                streaming = now < duration_s
                if streaming and now >= next_submit:
                    next_submit = now + rng.uniform(0.3, 1.2)
                    _submit_one(rng, now, duration_s, sleeper, held, tasks, stats)
                if job is None and now > duration_s / 3:
                    job = ray_queue.submit_job(
                        "python -c \"import time; print('training…'); time.sleep(8)\"",
                        queue="dev",
                        priority="normal",
                        entrypoint_num_cpus=1,
                        entrypoint_num_gpus=1,
                    )
                    stats.submitted += 1
                    stats.log("dev submitted a Ray job (1 GPU)")
                _release_finished(held, stats)
                tasks = _collect_tasks(tasks, stats)
                status = ray_queue.status()
                assert isinstance(status, ManagerStatus)
                if provider is not None:
                    provider.reconcile(ray.get(_manager().demand.remote()))
                live.update(_table(status, stats, now, duration_s))
                if not streaming and not held and not tasks and _job_done(job):
                    break
                if now > duration_s + 60:
                    stats.log("drain time exceeded; cancelling what is left")
                    ray_queue.cancel(*(h.handle for h in held), *tasks)
                    break
                time.sleep(0.25)
        final = _settled_status()
        console.print()
        console.print(_summary(final, stats, time.monotonic() - started))
        return 0
    finally:
        ray_queue.shutdown()
        ray.shutdown()
        cluster.shutdown()


def _settled_status(timeout_s: float = 10.0) -> ManagerStatus:
    """Status once the last completion reports have landed (they are batched)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = ray_queue.status()
        assert isinstance(status, ManagerStatus)
        busy = status.states.get("ADMITTED", 0) + status.states.get("PENDING", 0)
        if not busy or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def _manager() -> Any:
    from ray_queue.manager.actor import find_manager

    return find_manager()


def _submit_one(
    rng: random.Random,
    now: float,
    duration_s: float,
    sleeper: Any,
    held: list[_Held],
    tasks: list[Any],
    stats: Stats,
) -> None:
    team = rng.choice(TEAMS)
    roll = rng.random()
    if roll < 0.2:
        tasks.extend(sleeper.options(queue=team).remote(rng.uniform(1, 3)) for _ in range(3))
        stats.submitted += 3
        stats.log(f"{team}: 3 GPU tasks")
        return
    urgent = team == "prod" and now > duration_s / 2 and roll > 0.7
    priority = "urgent" if urgent else rng.choice(["batch", "normal"])
    gpus = rng.choice([1, 1, 2, 2, 4])
    pg = ray_queue.placement_group(
        [{"GPU": 1, "CPU": 1}] * gpus,
        queue=team,
        priority=priority,
        name=f"{team}-{stats.submitted}",
    )
    held.append(_Held(pg, team, rng.uniform(4, 12)))
    stats.submitted += 1
    stats.log(f"{team}: placement group {gpus} GPU ({priority})")


def _release_finished(held: list[_Held], stats: Stats) -> None:
    now = time.monotonic()
    for item in list(held):
        try:
            placed = item.handle.is_placed()
        except ray_queue.RayQueueError:
            held.remove(item)
            continue
        if placed and item.placed_at is None:
            item.placed_at = now
        elif not placed and item.placed_at is not None:
            # Preempted: it is queued again and gets its full hold time once re-admitted.
            stats.log(f"{item.handle.name} preempted → requeued")
            item.placed_at = None
        if item.placed_at is not None and now - item.placed_at >= item.hold_s:
            item.handle.remove()
            held.remove(item)


def _collect_tasks(tasks: list[Any], stats: Stats) -> list[Any]:
    left = []
    for handle in tasks:
        if handle.is_ready():
            stats.tasks_done += 1
        else:
            left.append(handle)
    return left


def _job_done(job: Any) -> bool:
    return job is None or job.status().state.is_terminal


def _fmt(milli: int) -> str:
    return f"{milli / 1000:g}"


def _title(now: float, duration_s: float) -> str:
    """Where the demo is: submitting for ``duration_s`` seconds, then letting the queued
    work finish (which may take longer than the stream did)."""
    if now < duration_s:
        return f"ray-queue — {now:.0f}s of a {duration_s:.0f}s stream of submissions"
    return (
        f"ray-queue — {now:.0f}s: stream of {duration_s:.0f}s done, "
        f"draining what is queued ({now - duration_s:.0f}s)"
    )


def _table(status: ManagerStatus, stats: Stats, now: float, duration_s: float) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_title(now, duration_s), expand=False)
    for column in (
        "ClusterQueue",
        "pending",
        "admitted",
        "A100 GPU used/quota",
        "T4 GPU used/quota",
        "borrowed",
        "fair share",
    ):
        table.add_column(column, justify="right" if column != "ClusterQueue" else "left")
    for cq in status.cluster_queues:
        cells = {}
        borrowed = 0
        for r in cq.resources:
            if r.resource == "GPU":
                cells[r.flavor] = f"{_fmt(r.usage)}/{_fmt(r.nominal)}"
                borrowed += r.borrowed
        share = cq.weighted_share
        table.add_row(
            cq.name,
            str(cq.pending),
            str(cq.admitted),
            cells.get("a100", "-"),
            cells.get("t4", "-"),
            _fmt(borrowed) if borrowed else "",
            "∞" if share == float("inf") else f"{share:.2f}",
        )
    counters = Text(
        f"admissions {status.admissions}   preemptions {status.preemptions}   "
        f"submitted {stats.submitted}   tasks done {stats.tasks_done}   "
        + "  ".join(f"{k.lower()} {v}" for k, v in sorted(status.states.items())),
        style="bold",
    )
    recent = Text("\n".join(stats.events), style="dim")
    return Group(table, counters, recent)


def _summary(status: ManagerStatus, stats: Stats, elapsed_s: float) -> Any:
    from rich.panel import Panel

    finished = status.states.get(WorkloadState.FINISHED.value, 0)
    lines = [
        f"ran {elapsed_s:.0f}s; {stats.submitted} submissions "
        f"({finished} workloads finished, {stats.tasks_done} tasks returned)",
        f"{status.admissions} admissions, {status.preemptions} preemptions",
        "final states: " + ", ".join(f"{k} {v}" for k, v in sorted(status.states.items())),
    ]
    return Panel("\n".join(lines), title="summary", expand=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of submissions")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    return run(args.duration, seed=args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
