"""Capture: unmodified Ray code under the queue (docs/capture.md).

``ray_queue.init(..., capture=True)``, or ``RAY_QUEUE_CAPTURE=1`` in the environment of a
driver that never imports ray_queue, makes that process's ``ray.util.placement_group``
calls and plain ``@ray.remote`` tasks and actors (and those of Ray Tune, Train, Data and
other libraries, and of the job's Ray workers) go through the queue. Everything that
changes Ray is in ``ray_queue.capture.patch``.

This package is imported by the ``.pth`` start-up line when ``RAY_QUEUE_CAPTURE`` is set,
so it imports neither Ray nor the client at import time.
"""

from __future__ import annotations

from typing import Any

from ray_queue.capture.errors import CaptureError, UnsupportedRayVersion
from ray_queue.capture.settings import (
    ENV_CAPTURE,
    ENV_PARENT,
    ENV_PRIORITY,
    ENV_QUEUE,
    Settings,
    settings_from_env,
)


def enable(queue: str = "default", priority: str | None = None) -> None:
    """Capture this process's placement groups, tasks and actors into ``queue`` at
    ``priority``.

    Ray must be connected (``NotInitializedError`` otherwise); ``ray_queue.init(...,
    capture=True)`` calls this after connecting.
    """
    from ray_queue.capture import core

    core.enable(Settings(queue=queue, priority=priority, parent=_job()))


def job_runtime_env(
    queue: str = "default",
    priority: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """``runtime_env`` for ``ray.init`` that captures the job's Ray workers too.
    ``token``: the driver's own (else ``$RAY_QUEUE_TOKEN`` / ``$RAY_QUEUE_TOKEN_FILE``),
    from which the workers' credential is derived; it never enters the runtime_env."""
    from ray_queue.capture import core

    settings = Settings(queue=queue, priority=priority, parent=_job())
    return core.job_runtime_env(runtime_env, settings, token=token)


def _job() -> str | None:
    """The job this process runs for, when the manager submitted it (its work is the
    job's children, whatever queue the code names)."""
    import os

    return os.environ.get(ENV_PARENT, "").strip() or None


def disable() -> None:
    """Stop capturing and give Ray back its own functions."""
    from ray_queue.capture import core

    core.disable()


def enabled() -> bool:
    from ray_queue.capture import core

    return core.current_settings() is not None


__all__ = [
    "ENV_CAPTURE",
    "ENV_PARENT",
    "ENV_PRIORITY",
    "ENV_QUEUE",
    "CaptureError",
    "Settings",
    "UnsupportedRayVersion",
    "disable",
    "enable",
    "enabled",
    "job_runtime_env",
    "settings_from_env",
]
