"""A user's driver under load, and the queue config it runs against.

Why this exists: the dashboard test needs every manager panel to have data, so something
has to queue, admit, borrow, preempt, evict, reject and cancel work on a live manager. This
is that something, written the way a user writes it: a Ray driver (``python -m
tests.observability.load --address ...``) that uses only the public client API —
``ray_queue.init``, ``ray_queue.placement_group``, ``@ray_queue.remote``,
``ray_queue.cancel`` and ``ray_queue.apply_config`` — on the real cluster the test starts.

The driver follows a seeded script (same submissions every run; what the cluster makes of
them varies a little with timing):

- a steady stream per team of small placement groups (held a few seconds once placed,
  then removed) and, for ``team-c``, queued tasks — more than the quota, so queues back
  up and teams borrow from their cohort;
- ``team-d`` is quiet for the first seconds, so others borrow its quota, then claims it
  back (``reclaimWithinCohort``: preemption ``InCohortReclamation``);
- high-priority placement groups in full ClusterQueues (preemption ``InClusterQueue``);
- a GPU gang that fits the one GPU host the stand-in cloud has (ProvisioningRequest
  Provisioned, a worker group of its own, placed, run, removed) and one that needs two
  (Failed, retried, then rejected at the back-off limit);
- a placement group no worker can ever hold (``STRICT_PACK`` of 3 + 2 CPUs; workers have
  4), cancelled by its owner after a while — the autoscaler's "unplaceable gangs" (a
  single 5-CPU bundle would be refused at submission, since the autoscaler reports the
  workers' shape);
- a quota change applied live (``team-b``'s nominal CPU 1 → 2).

At the end it cancels whatever it still has and writes what happened to ``--stats``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: (ClusterQueue, cohort, CPU nominal, CPU borrowing limit, CPU lending limit, GPUs).
TEAMS = (
    ("team-a", "production", 3, 3, 1, 4),
    ("team-b", "production", 1, 2, 1, 8),
    ("team-c", "research", 2, 2, 1, 0),
    ("team-d", "research", 2, 1, 2, 0),
)
#: Worker groups of the RayCluster (the flavors' ``workerGroup``): 4-CPU workers, at most
#: two; and GPU hosts (4 GPUs) that come only through ProvisioningRequests.
CPU_GROUP = "cpu-workers"
GPU_GROUP = "gpu-workers"
CPU_PER_WORKER = 4
GPU_POOL_LABEL = ("pool", "gpu")
PROVISIONING_CHECK = "gpu-provisioning"

_HEAD = f"""\
apiVersion: ray-queue.io/v1alpha1
kind: Configuration
spec:
  waitForPodsReady:
    enable: false
    requeuingStrategy: {{backoffLimitCount: 1, backoffBaseSeconds: 1, backoffMaxSeconds: 5}}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {{name: cpu}}
spec: {{nodeLabels: {{ray.io/node-group: {CPU_GROUP}}}, workerGroup: {CPU_GROUP}}}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {{name: gpu}}
spec:
  # Not ray.io/node-group: a gang's nodes come from a worker group of its own, which
  # keeps the base group's Ray labels (rayStartParams) but not its name.
  nodeLabels: {{{GPU_POOL_LABEL[0]}: {GPU_POOL_LABEL[1]}}}
  workerGroup: {GPU_GROUP}
  provisioning: all-at-once
---
apiVersion: ray-queue.io/v1alpha1
kind: AdmissionCheck
metadata: {{name: {PROVISIONING_CHECK}}}
spec:
  controllerName: kueue.x-k8s.io/provisioning-request
  parameters: {{provisioningClassName: queued-provisioning.gke.io}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {{name: org}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {{name: production}}
spec: {{parentName: org, fairSharing: {{weight: 2}}}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {{name: research}}
spec: {{parentName: org}}
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {{name: high}}
value: 1000
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {{name: low}}
value: 10
globalDefault: true
"""

_CQ = """\
---
apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  cohortName: {cohort}
  resourceGroups:
  - coveredResources: [CPU]
    flavors:
    - name: cpu
      resources:
      - {{name: CPU, nominalQuota: {cpu}, borrowingLimit: {borrow}, lendingLimit: {lend}}}
{gpu_group}  preemption: {{withinClusterQueue: LowerPriority, reclaimWithinCohort: Any}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: {name}-jobs}}
spec: {{clusterQueue: {name}}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: {name}-notebooks}}
spec: {{clusterQueue: {name}}}
"""

_GPU_GROUP = """\
  - coveredResources: [GPU]
    flavors:
    - name: gpu
      resources:
      - {{name: GPU, nominalQuota: {gpus}}}
  admissionChecksStrategy:
    admissionChecks:
    - {{name: {check}, onFlavors: [gpu]}}
"""


def config_yaml(*, team_b_cpu: int = 1) -> str:
    """The queue config: two cohorts under one root, four ClusterQueues with every quota
    knob set, GPU gangs behind a provisioning check. ``team_b_cpu``: the one number the
    driver changes live."""
    docs = [_HEAD]
    for name, cohort, cpu, borrow, lend, gpus in TEAMS:
        if name == "team-b":
            cpu = team_b_cpu
        gpu_group = _GPU_GROUP.format(gpus=gpus, check=PROVISIONING_CHECK) if gpus else ""
        docs.append(
            _CQ.format(
                name=name,
                cohort=cohort,
                cpu=cpu,
                borrow=borrow,
                lend=lend,
                gpu_group=gpu_group,
            )
        )
    return "".join(docs)


# -- the script --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    at_s: float
    what: str  # "pg" | "task"
    team: str
    queue: str
    bundles: tuple[tuple[tuple[str, float], ...], ...] = ()
    hold_s: float = 0.0
    priority: str | None = None
    name: str = ""
    #: Cancelled by the driver this long after submission if still around.
    cancel_after_s: float | None = None
    strategy: str = "PACK"


def _bundles(count: int, **resources: float) -> tuple[tuple[tuple[str, float], ...], ...]:
    return (tuple(sorted(resources.items())),) * count


def script(submit_s: float, seed: int) -> list[Submission]:
    """Everything the driver submits, in time order."""
    rng = random.Random(seed)
    out: list[Submission] = []
    for i, (team, *_) in enumerate(TEAMS):
        # team-d joins late: until then the others borrow its quota.
        t = 12.0 if team == "team-d" else 0.5 + 0.3 * i
        while t < submit_s:
            kind = rng.random()
            if team == "team-c" and kind < 0.35:
                out.append(Submission(t, "task", team, f"{team}-jobs", hold_s=rng.uniform(2, 4)))
            elif kind < 0.6:
                out.append(
                    Submission(
                        t, "pg", team, f"{team}-notebooks", _bundles(1, CPU=1),
                        hold_s=rng.uniform(3, 5),
                    )
                )
            else:
                out.append(
                    Submission(
                        t, "pg", team, f"{team}-jobs", _bundles(2, CPU=1),
                        hold_s=rng.uniform(4, 6),
                    )
                )
            t += rng.uniform(2.0, 3.5)
        if team == "team-d":
            # Back for its nominal quota, all at once.
            out += [
                Submission(12.0, "pg", team, f"{team}-jobs", _bundles(1, CPU=1), hold_s=6)
                for _ in range(2)
            ]
    out += [
        Submission(1.0, "pg", "team-a", "team-a-jobs", _bundles(2, GPU=1), hold_s=8,
                   name="gang-fits"),
        Submission(2.0, "pg", "team-b", "team-b-jobs", _bundles(2, GPU=4), hold_s=8,
                   name="gang-needs-two-hosts"),
        # First of all, while team-a and its cohort are empty: admitted, never placed.
        Submission(0.0, "pg", "team-a", "team-a-jobs", (*_bundles(1, CPU=3), *_bundles(1, CPU=2)),
                   hold_s=5, name="too-big-for-any-worker", cancel_after_s=12,
                   strategy="STRICT_PACK"),
    ]
    for t, team in ((10.0, "team-a"), (20.0, "team-b"), (28.0, "team-a")):
        out.append(
            Submission(t, "pg", team, f"{team}-jobs", _bundles(2, CPU=1), hold_s=4,
                       priority="high", name=f"urgent-{team}-{t:g}")
        )
    return sorted(out, key=lambda s: s.at_s)


# -- the driver --------------------------------------------------------------------------


@dataclass
class _Held:
    """A placement group the driver waits for, uses for ``hold_s`` once placed, removes."""

    handle: Any
    submission: Submission
    submitted_at: float
    placed_at: float | None = None
    preemptions_seen: int = 0


@dataclass
class Stats:
    submitted: int = 0
    finished: int = 0
    preempted: int = 0
    rejected: int = 0
    cancelled: int = 0
    tasks_done: int = 0
    config_applied: int = 0
    errors: list[str] = field(default_factory=list)


class Driver:
    def __init__(self, submissions: list[Submission], *, submit_s: float, end_s: float) -> None:
        import ray_queue

        self._rq = ray_queue
        self._todo = list(submissions)
        self._submit_s = submit_s
        self._end_s = end_s
        self._held: list[_Held] = []
        self._tasks: list[Any] = []
        self.stats = Stats()

        @ray_queue.remote(num_cpus=1, queue="team-c-jobs")
        def crunch(seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        self._crunch = crunch

    def run(self) -> Stats:
        start = time.monotonic()
        config_changed = False
        while (now := time.monotonic() - start) < self._end_s:
            while self._todo and self._todo[0].at_s <= now:
                self._submit(self._todo.pop(0), now)
            if not config_changed and now >= 0.6 * self._submit_s:
                # An operator raises a quota live; nothing queued or running is lost.
                self._rq.apply_config(config_yaml(team_b_cpu=2))
                self.stats.config_applied += 1
                config_changed = True
            self._follow_placement_groups(now)
            self._follow_tasks()
            time.sleep(0.2)
        # Time is up: give back everything still held or queued.
        leftovers = [h.handle for h in self._held] + self._tasks
        if leftovers:
            self._rq.cancel(*leftovers)
            self.stats.cancelled += len(leftovers)
        return self.stats

    def _submit(self, s: Submission, now: float) -> None:
        self.stats.submitted += 1
        if s.what == "task":
            self._tasks.append(self._crunch.remote(s.hold_s))
            return
        handle = self._rq.placement_group(
            [dict(b) for b in s.bundles],
            s.strategy,
            queue=s.queue,
            priority=s.priority,
            name=s.name,
        )
        self._held.append(_Held(handle, s, now))

    def _follow_placement_groups(self, now: float) -> None:
        import ray_queue

        still: list[_Held] = []
        for held in self._held:
            s = held.submission
            try:
                placed = held.handle.is_placed()
            except ray_queue.WorkloadRejected:
                self.stats.rejected += 1
                continue
            except ray_queue.WorkloadCancelled:
                self.stats.cancelled += 1
                continue
            if held.handle.preemptions != held.preemptions_seen:
                self.stats.preempted += held.handle.preemptions - held.preemptions_seen
                held.preemptions_seen = held.handle.preemptions
                held.placed_at = None  # its placement group is gone; it waits again
            if s.cancel_after_s is not None and now - held.submitted_at >= s.cancel_after_s:
                ray_queue.cancel(held.handle)
                self.stats.cancelled += 1
                continue
            if placed and held.placed_at is None:
                held.placed_at = now
            if held.placed_at is not None and now - held.placed_at >= s.hold_s:
                held.handle.remove()
                self.stats.finished += 1
                continue
            still.append(held)
        self._held = still

    def _follow_tasks(self) -> None:
        still = []
        for ref in self._tasks:
            if not ref.is_ready():
                still.append(ref)
                continue
            try:
                ref.get(timeout=10)
                self.stats.tasks_done += 1
            except Exception as exc:  # recorded, not fatal: the run is what it is
                self.stats.errors.append(f"task {ref.workload}: {exc!r}")
        self._tasks = still


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.observability.load")
    parser.add_argument("--address", required=True, help="Ray address of the cluster")
    parser.add_argument("--submit-s", type=float, default=30.0, help="seconds of submissions")
    parser.add_argument("--end-s", type=float, default=45.0, help="cancel the rest and exit")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stats", type=Path, required=True, help="where to write the stats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import ray

    import ray_queue

    ray_queue.init(queue="team-a-jobs", address=args.address)
    try:
        driver = Driver(script(args.submit_s, args.seed), submit_s=args.submit_s,
                        end_s=args.end_s)
        stats = driver.run()
    finally:
        ray_queue.shutdown()
        ray.shutdown()
    args.stats.write_text(json.dumps(stats.__dict__, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
