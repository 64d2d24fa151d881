"""What capture is asked to do, read from the environment once, where it starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ray_queue.capture.errors import CaptureError
from ray_queue.wire import (
    CAPTURE_ENV,
    CAPTURE_PARENT_ENV,
    CAPTURE_PRIORITY_ENV,
    CAPTURE_QUEUE_ENV,
)

#: ``1`` (or ``true``/``yes``/``on``): capture this driver, and the Ray workers of its job.
ENV_CAPTURE = CAPTURE_ENV
#: The Queue captured work goes to (default ``default``).
ENV_QUEUE = CAPTURE_QUEUE_ENV
#: The priority class of captured work (default: the Queue's default).
ENV_PRIORITY = CAPTURE_PRIORITY_ENV
#: The job this process's work belongs to (its workload id): set by the manager for a
#: job it submits, so what the job's driver and workers make are the job's children.
ENV_PARENT = CAPTURE_PARENT_ENV
#: A ``worker_process_setup_hook`` (module path) that was in the job's ``runtime_env``
#: before capture put its own there; capture's hook calls it after its own work.
ENV_NEXT_HOOK = "RAY_QUEUE_CAPTURE_NEXT_HOOK"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Where captured work goes."""

    queue: str = "default"
    #: ``None``: the Queue's default priority class (or, for a job's children, the job's).
    priority: str | None = None
    #: The job the captured work belongs to, if any.
    parent: str | None = None

    def env_vars(self) -> dict[str, str]:
        """The variables that carry these settings to the job's Ray workers."""
        out = {ENV_CAPTURE: "1", ENV_QUEUE: self.queue}
        if self.priority is not None:
            out[ENV_PRIORITY] = self.priority
        if self.parent is not None:
            out[ENV_PARENT] = self.parent
        return out


def settings_from_env(environ: Mapping[str, str]) -> Settings | None:
    """``Settings`` if ``RAY_QUEUE_CAPTURE`` asks for capture, else ``None``."""
    flag = environ.get(ENV_CAPTURE, "").strip().lower()
    if flag in _FALSE:
        return None
    if flag not in _TRUE:
        raise CaptureError(
            f"{ENV_CAPTURE}={environ[ENV_CAPTURE]!r}: use 1 to capture, 0 or unset not to"
        )
    queue = environ.get(ENV_QUEUE, "").strip() or "default"
    priority = environ.get(ENV_PRIORITY, "").strip() or None
    parent = environ.get(ENV_PARENT, "").strip() or None
    return Settings(queue=queue, priority=priority, parent=parent)
