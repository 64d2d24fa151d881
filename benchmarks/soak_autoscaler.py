"""The soak's autoscaler (``benchmarks.soak``): the local provider in a process of its own.

Run as ``python -m benchmarks.soak_autoscaler --gcs ADDR --grpc ADDR --token-file F
--state-dir D``. It follows the manager's demand over gRPC with the autoscaler's token
(``GrpcSource``) and starts and stops real ``ray start`` nodes of the soak's autoscaled
worker group (``soak_shape.AUTOSCALED``) with ``LocalProvider``, which keeps the nodes it
started in ``D/nodes.json``: the soak kills this process with SIGKILL, and the one started
after it must take over the nodes that outlived it (not start more, not forget to remove
them). On SIGTERM it stops and removes every node it holds.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from autoscaler.grpc_source import GrpcSource
from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.planner import PlannerConfig
from autoscaler.providers.local import LocalGroupSpec, LocalProvider
from autoscaler.sources import Overrides
from benchmarks.soak_shape import AUTOSCALED
from ray_queue.grpc.client import QueueClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gcs", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--idle-timeout-s", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s autoscaler %(message)s")
    group = LocalGroupSpec(
        name=AUTOSCALED["group"],
        shape={"CPU": AUTOSCALED["num_cpus"] * 1000, "GPU": AUTOSCALED["num_gpus"] * 1000},
        max_replicas=AUTOSCALED["max_replicas"],
        labels=AUTOSCALED["labels"],
    )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    provider = LocalProvider(
        args.gcs, [group], log_dir=args.state_dir, state_file=args.state_dir / "nodes.json"
    )
    queue = QueueClient(args.grpc, token=Path(args.token_file).read_text().strip())
    # An autoscaler token may not read the config: which flavor is this group's is given.
    overrides = Overrides(worker_groups={AUTOSCALED["flavor"]: group.name})
    source = GrpcSource(queue, overrides=overrides, max_backoff_s=2.0).start()
    loop = Reconciler(
        source,
        provider,
        config=LoopConfig(
            interval_s=1.0,
            max_backoff_s=5.0,
            planner=PlannerConfig(idle_timeout_s=args.idle_timeout_s),
        ),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        loop.run(stop, wake=source.changed)
    finally:
        source.stop()
        queue.close()
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
