"""``ray-queue-autoscaler``: the sidecar in the Ray head Pod.

Reads demand from the manager over gRPC, sizes the RayCluster's worker groups through the
Kubernetes API (in-cluster credentials, or a kubeconfig), drains nodes through the local
GCS, and serves its metrics. Stops cleanly on SIGTERM (the Pod's shutdown).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence

from autoscaler.grpc_source import GrpcSource
from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.metrics import Metrics
from autoscaler.planner import PlannerConfig
from autoscaler.sources import Overrides
from ray_queue.logs import install

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ray-queue-autoscaler", description=__doc__)
    p.add_argument("--cluster-name", required=True, help="metadata.name of the RayCluster")
    p.add_argument("--namespace", required=True, help="namespace of the RayCluster")
    p.add_argument("--manager-address", required=True, help="host:port of the manager's gRPC")
    p.add_argument("--interval-s", type=float, default=1.0, help="seconds between passes")
    p.add_argument("--idle-timeout-s", type=float, default=60.0,
                   help="remove a worker idle this long")
    p.add_argument("--metrics-port", type=int, default=9091, help="0 disables /metrics")
    p.add_argument("--gcs-address", default=None,
                   help="Ray GCS host:port (default: $RAY_ADDRESS or 127.0.0.1:6379)")
    p.add_argument("--kubeconfig", default=None, help="default: in-cluster config")
    p.add_argument("--token-file", default=None, help="bearer token for the manager's gRPC")
    p.add_argument("--provisioning-class", default="queued-provisioning.gke.io",
                   help="ProvisioningRequest class when a check's parameters name none")
    p.add_argument("--worker-group", action="append", default=[], metavar="FLAVOR=GROUP",
                   help="map a flavor to a worker group (overrides the flavor's config)")
    p.add_argument("--provisioning-check", default=None,
                   help="the provisioning check of all-at-once gangs, used when the token "
                        "may not read workloads")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install(logging.INFO)
    from autoscaler.providers.kuberay import KubeRayProvider, new_api_client

    api = new_api_client(args.kubeconfig)
    from autoscaler.provisioning import ProvisioningClient
    from autoscaler.ray_nodes import RayGcs
    from ray_queue.grpc.client import QueueClient

    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    gcs_address = args.gcs_address or os.environ.get("RAY_ADDRESS") or "127.0.0.1:6379"
    overrides = Overrides(
        worker_groups=dict(m.split("=", 1) for m in args.worker_group),
        default_provisioning_class=args.provisioning_class,
        provisioning_check=args.provisioning_check,
    )
    metrics = Metrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    queue = QueueClient(args.manager_address, token=token)
    source = GrpcSource(queue, overrides=overrides).start()
    loop = Reconciler(
        source,
        KubeRayProvider(api, cluster_name=args.cluster_name, namespace=args.namespace,
                        gcs=RayGcs(gcs_address)),
        requests=ProvisioningClient(api, cluster_name=args.cluster_name,
                                    namespace=args.namespace),
        config=LoopConfig(
            interval_s=args.interval_s,
            planner=PlannerConfig(
                idle_timeout_s=args.idle_timeout_s,
                default_provisioning_class=args.provisioning_class,
            ),
        ),
        metrics=metrics,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logger.info(
        "autoscaler started",
        extra={
            "namespace": args.namespace,
            "cluster": args.cluster_name,
            "manager": args.manager_address,
        },
    )
    try:
        loop.run(stop, wake=source.changed)
    finally:
        source.stop()
        queue.close()
        api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
