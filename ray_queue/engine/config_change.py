"""Whether a new config may replace the running one, given the workloads still live.

Kept apart from the document checks (``config_validation``), which judge a config on
its own before anything runs: this one judges it against running state, so the engine
can refuse a config that would strand queued or running work, and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import ConfigProblem
from ray_queue.engine.record import Record


def live_workload_problems(config: QueueConfig, live: Iterable[Record]) -> list[ConfigProblem]:
    """What ``config`` removes that live workloads still use: each missing Queue,
    PriorityClass or ClusterQueue (of an admission) once, in the order first met."""
    problems: list[ConfigProblem] = []
    seen: set[tuple[str, str]] = set()
    for record in live:
        spec = record.spec
        needs = [("Queue", spec.queue, spec.queue in config.queues)]
        if spec.priority_class is not None:
            needs.append(
                (
                    "PriorityClass",
                    spec.priority_class,
                    spec.priority_class in config.priority_classes,
                )
            )
        if record.admission is not None:
            cq = record.admission.cluster_queue
            needs.append(("ClusterQueue", cq, cq in config.cluster_queues))
        for kind, name, present in needs:
            if not present and (kind, name) not in seen:
                seen.add((kind, name))
                problems.append(
                    ConfigProblem(
                        f"{kind}/{name}",
                        "",
                        "is still used by queued or running workloads; cancel or let them "
                        "finish before removing it",
                    )
                )
    return problems
