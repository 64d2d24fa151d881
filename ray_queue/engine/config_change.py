"""Whether a new config may replace the running one, given the workloads still live.

Kept apart from the document checks (``config_validation``), which judge a config on
its own before anything runs: this one judges it against running state, so the engine
can refuse a config that would strand queued or running work, and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import ConfigProblem
from ray_queue.engine.model import Admission, WorkloadSpec


class Live(Protocol):
    """A live workload as the check needs it (the engine's ``Record`` or a status)."""

    @property
    def spec(self) -> WorkloadSpec: ...

    @property
    def admission(self) -> Admission | None: ...


#: Workload ids a problem names before "and N more".
_NAMED = 5


def live_workload_problems(config: QueueConfig, live: Iterable[Live]) -> list[ConfigProblem]:
    """What ``config`` removes that live workloads still use: each missing Queue,
    PriorityClass or ClusterQueue (of an admission) once, in the order first met, naming
    the workloads that use it."""
    users: dict[tuple[str, str], list[str]] = {}
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
            if not present:
                users.setdefault((kind, name), []).append(spec.id)
    return [
        ConfigProblem(
            f"{kind}/{name}",
            "",
            f"is still used by {len(ids)} queued or running workload(s) ({_some(ids)}); "
            "cancel them or let them finish before removing it",
        )
        for (kind, name), ids in users.items()
    ]


def _some(ids: list[str]) -> str:
    named = ", ".join(ids[:_NAMED])
    return named if len(ids) <= _NAMED else f"{named} and {len(ids) - _NAMED} more"
