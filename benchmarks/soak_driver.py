"""One tenant's driver in the soak (``benchmarks.soak``): a separate process, as a user's.

Run as ``python -m benchmarks.soak_driver --address ADDR --queue Q --token-file F --seed S
--workdir W --name N``. Until ``W/stop`` exists it submits, in bursts, placement-group
gangs, tasks with ``max_retries=0``, actors and Ray jobs (``ray_queue.submit_job``, a
short sleep as entrypoint) of mixed priorities through ``ray_queue``, removes groups after
a while, kills actors, and cancels some of its own work.

What it leaves for the observer, never anything the manager would not show a user too:
``W/accepted/<name>.txt`` gets a workload id per line once the manager has it (after a
flush); each task appends one line to ``W/markers/<key>`` when its body runs, so a task
that ran twice is a file with two lines. The soak kills some drivers with SIGKILL at any
point: their workloads must then be cancelled by the manager (owner death).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import ray

import ray_queue
from ray_queue.client import runtime as client_runtime

PRIORITIES = ("low", "low", "high")


def _mark(marker_dir: str, key: str) -> None:
    # O_APPEND: two runs of one task leave two lines, whichever process wrote them.
    fd = os.open(os.path.join(marker_dir, key), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {time.time():.3f}\n".encode())
    finally:
        os.close(fd)


def _work(marker_dir: str, key: str, seconds: float) -> str:
    """A task's body: leave its mark, then take a while."""
    _mark(marker_dir, key)
    time.sleep(seconds)
    return key


class Holder:
    """An actor that only holds its quota until it is killed."""

    def ping(self) -> int:
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    workdir = Path(args.workdir)
    marker_dir = str(workdir / "markers")
    stop = workdir / "stop"
    accepted = (workdir / "accepted" / f"{args.name}.txt").open("a", buffering=1)
    # Errors its handles raised for work this driver did not cancel: the observer checks
    # each against the workload's history (a preempted max_retries=0 task must raise
    # Preempted, docs/contract.md §3).
    (workdir / "client-errors").mkdir(exist_ok=True)
    raised = (workdir / "client-errors" / f"{args.name}.jsonl").open("a", buffering=1)
    cancelled_here: set[str] = set()
    token = Path(args.token_file).read_text().strip()

    ray.init(address=args.address, log_to_driver=False, configure_logging=False)
    ray_queue.init(queue=args.queue, priority="low", token=token)
    runtime = client_runtime.current()

    cpu_task = ray_queue.remote(num_cpus=0.25, max_retries=0)(_work)
    gpu_task = ray_queue.remote(num_cpus=0.25, num_gpus=1, max_retries=0)(_work)
    holder = ray_queue.remote(num_cpus=0.25)(Holder)

    groups: list[tuple[Any, float]] = []
    jobs: list[Any] = []
    actors: list[tuple[Any, float]] = []
    tasks: list[Any] = []
    counts: collections.Counter[str] = collections.Counter()
    n = 0

    def record(ids: list[str]) -> None:
        runtime.flush()  # the manager has them now: accepted
        for workload in ids:
            accepted.write(workload + "\n")

    while not stop.exists():
        now = time.monotonic()
        submitted: list[str] = []
        roll = rng.random()
        priority = rng.choice(PRIORITIES)
        if roll < 0.35 and len(groups) < 4:
            size = rng.choice((1, 1, 2))
            bundle = {"CPU": 0.5, "GPU": 1} if rng.random() < 0.6 else {"CPU": 1}
            pg = ray_queue.placement_group(
                [bundle] * size, strategy=rng.choice(("PACK", "SPREAD")), priority=priority
            )
            groups.append((pg, now + rng.uniform(3, 15)))
            submitted.append(pg.workload)
            counts["groups"] += 1
        elif roll < 0.75 and len(tasks) < 24:
            fn = gpu_task if rng.random() < 0.3 else cpu_task
            for _ in range(rng.randint(1, 6)):
                n += 1
                key = f"{args.name}-{n}"
                handle = fn.options(priority=priority).remote(marker_dir, key, rng.uniform(0.2, 3))
                tasks.append(handle)
                submitted.append(handle.workload)
                counts["tasks"] += 1
        elif roll < 0.85 and len(actors) < 2:
            actor = holder.options(priority=priority).remote()
            actors.append((actor, now + rng.uniform(3, 12)))
            submitted.append(actor.workload)
            counts["actors"] += 1
        elif roll < 0.89 and len(jobs) < 2:
            # A job's entrypoint is a process of its own on a node: few and short.
            seconds = rng.uniform(2, 8)
            job = ray_queue.submit_job(
                f"python -c 'import time; time.sleep({seconds:.1f})'",
                priority=priority,
                entrypoint_num_cpus=0.25,
                name=f"{args.name}-job",
            )
            jobs.append(job)
            submitted.append(job.workload)
            counts["jobs"] += 1
        elif roll < 0.94:
            live = [h for h, _ in groups] + [h for h, _ in actors] + tasks + jobs
            if live:
                victim = rng.choice(live)
                ray_queue.cancel(victim)
                cancelled_here.add(victim.workload)
                counts["cancelled"] += 1
        if submitted:
            record(submitted)
        for pg, until in list(groups):
            if until <= now:
                pg.remove()
                groups.remove((pg, until))
        for actor, until in list(actors):
            if until <= now:
                actor.kill()
                actors.remove((actor, until))
        for job in list(jobs):
            if job.workload in cancelled_here:
                jobs.remove(job)
                continue
            state = job.status().state
            if state.is_terminal:
                counts[f"job_{state.value}"] += 1
                jobs.remove(job)
        if tasks:
            done, tasks = ray_queue.wait(tasks, num_returns=len(tasks), timeout=0)
            for handle in done:
                try:
                    ray_queue.get(handle, timeout=10)
                    counts["tasks_returned"] += 1
                except Exception as e:  # Preempted, WorkloadCancelled: expected outcomes
                    counts[f"task_error_{type(e).__name__}"] += 1
                    if handle.workload not in cancelled_here:
                        error = {"id": handle.workload, "error": type(e).__name__}
                        raised.write(json.dumps({**error, "message": str(e)[:300]}) + "\n")
        time.sleep(rng.uniform(0.2, 1.0))

    for pg, _ in groups:
        pg.remove()
    for actor, _ in actors:
        actor.kill()
    for job in jobs:
        job.cancel()
    if tasks:
        ray_queue.wait(tasks, num_returns=len(tasks), timeout=20)
    print("COUNTS " + json.dumps(counts), flush=True)
    ray_queue.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
