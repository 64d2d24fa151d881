"""``python -m autoscaler.demo``: the local autoscaler adding a GPU node for a queued gang,
then removing it once idle. What ``make demo`` shows; a test runs it so it cannot rot.

A local Ray cluster with a 1-CPU head and no GPU; a queue with GPU quota; a gang of two
1-GPU bundles. The engine admits it (quota is there), but Ray cannot place it (no GPU
node), so the autoscaler starts one — a real ``ray start`` process with 2 logical GPUs —
the placement group becomes ready, the work ends, and after the idle timeout the node is
drained and stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.planner import PlannerConfig
from autoscaler.providers.local import LocalGroupSpec, LocalProvider
from autoscaler.sources import InProcessSource
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.config import (
    ClusterQueue,
    FlavorQuotas,
    Queue,
    QueueConfig,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
)
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadSpec

GROUP = "gpu-workers"


def demo_config() -> QueueConfig:
    return QueueConfig(
        flavors={"gpu": ResourceFlavor("gpu", node_labels={"accel": "demo-gpu"},
                                       worker_group=GROUP)},
        cluster_queues={
            "research": ClusterQueue(
                name="research",
                resource_groups=(
                    ResourceGroup(
                        ("CPU", "GPU"),
                        (FlavorQuotas("gpu", (ResourceQuota("CPU", 4000),
                                              ResourceQuota("GPU", 4000))),),
                    ),
                ),
            )
        },
        queues={"team-a": Queue("team-a", "research")},
    )


# long: the demo is one story told top to bottom (start, queue, scale up, place, finish,
# scale down), and its cluster must be shut down in the one ``finally`` around all of it.
def run(*, idle_timeout_s: float = 5.0, timeout_s: float = 180.0,
        say: Callable[[str], None] = print) -> None:
    # Ray's own autoscaler would print "no node type can fulfil {GPU: 1}" while ours works.
    # Ray reads this once, when it is first imported: set it before that.
    os.environ.setdefault("RAY_SCHEDULER_EVENTS", "0")
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group, remove_placement_group

    started = time.monotonic()

    def log(message: str) -> None:
        say(f"[{time.monotonic() - started:6.1f}s] {message}")

    head = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False,
                        "object_store_memory": 80 * 1024 * 1024},
    )
    provider = LocalProvider(
        head.address,
        [LocalGroupSpec(GROUP, {"CPU": 1000, "GPU": 2000}, max_replicas=2,
                        labels={"accel": "demo-gpu"})],
    )
    try:
        ray.init(address=head.address)
        engine = Engine(demo_config(), SystemClock())
        gang = WorkloadId("train-llm")
        engine.submit(WorkloadSpec(gang, "team-a", (BundleGroup({"GPU": 1000}, 2),),
                                   created_at=time.time()))
        engine.schedule()
        log(f"{gang}: {engine.workload(gang).state.value}; GPUs in Ray: "
            f"{_gpus():g}")
        loop = Reconciler(
            InProcessSource(engine), provider,
            config=LoopConfig(planner=PlannerConfig(idle_timeout_s=idle_timeout_s)),
        )
        # The manager creates the placement group on admission; Ray cannot place it yet.
        pg = placement_group([{"GPU": 1}, {"GPU": 1}], strategy="PACK")

        def until(what: str, done: Callable[[], bool]) -> None:
            deadline = time.monotonic() + timeout_s
            while not done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"demo: {what} did not happen in {timeout_s:.0f} s")
                result = loop.run_once().plan
                for up in result.scale_ups:
                    log(f"autoscaler: {up.group} {up.from_replicas} -> {up.to_replicas} "
                        "(a GPU node for the queued gang)")
                for deletion in result.deletions:
                    log(f"autoscaler: drain and remove idle {', '.join(deletion.workers)}")
                time.sleep(0.5)

        until("placement", lambda: bool(ray.wait([pg.ready()], timeout=0.5)[0]))
        engine.mark_placed(gang)
        log(f"{gang}: placement group ready on the new node; GPUs in Ray: "
            f"{_gpus():g}")
        remove_placement_group(pg)
        engine.finish(gang)
        log(f"{gang}: finished; the node is idle")
        until("scale-down", lambda: provider.groups()[0].replicas == 0)
        log(f"node removed; GPUs in Ray: {_gpus():g}")
    finally:
        ray.shutdown()
        provider.shutdown()
        head.shutdown()  # type: ignore[no-untyped-call]  # unannotated in Ray


def _gpus() -> float:
    import ray

    # ray.cluster_resources is unannotated in Ray.
    return float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autoscaler.demo", description=__doc__)
    parser.add_argument("--idle-timeout-s", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args(argv)
    run(idle_timeout_s=args.idle_timeout_s, timeout_s=args.timeout_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
