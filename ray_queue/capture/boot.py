"""Start-up entry points: the ``.pth`` line and Ray's ``worker_process_setup_hook``.

``ray_queue_capture.pth`` (installed into site-packages, ``python -m ray_queue.capture
install``) runs one line at every Python start: ``os.environ.get("RAY_QUEUE_CAPTURE")``
and, only if that is set, ``ray_queue.capture.boot.start()``. With the variable unset
that is one dictionary lookup. With it set, ``start`` waits for
``ray`` to be imported and wraps ``ray.init``: the driver is captured once it connects.
Nothing is imported here beyond the standard library until then.
"""

from __future__ import annotations

import importlib
import os
import sys

from ray_queue.capture.errors import CaptureError
from ray_queue.capture.settings import ENV_NEXT_HOOK, settings_from_env


def start() -> None:
    """The ``.pth`` entry: capture this process's ``ray.init``, when Ray is imported."""
    try:
        if settings_from_env(os.environ) is None:
            return
    except CaptureError:
        pass  # raised again by ray.init, where the driver sees it (site swallows .pth errors)
    from ray_queue.capture import patch

    patch.when_ray_imported(_wrap_init)


def _wrap_init() -> None:
    if _is_ray_component():
        return
    from ray_queue.capture import core, patch

    def runtime_env_of(runtime_env: dict | None) -> dict:  # type: ignore[type-arg]
        settings = settings_from_env(os.environ)
        if settings is None:
            return dict(runtime_env or {})
        return core.job_runtime_env(runtime_env, settings)

    patch.wrap_ray_init(runtime_env_of, core.enable_from_env)


def _is_ray_component() -> bool:
    """Whether this process is one of Ray's own (its dashboard, dashboard agent, client
    server…): they call ``ray.init`` too, and inherit the variable wherever it is set for
    a whole node (the Helm chart's ``capture``); captured, the dashboard's job manager
    would hand capture's runtime_env to every job's supervisor and driver, whose own
    ``ray.init`` Ray then refuses as a conflicting runtime_env."""
    import ray

    main = getattr(sys.modules.get("__main__"), "__file__", None) or (sys.argv or [""])[0]
    if not main:
        return False
    package = os.path.dirname(os.path.realpath(ray.__file__))
    return os.path.realpath(main).startswith(package + os.sep)


def worker_setup() -> None:
    """Ray's ``worker_process_setup_hook`` in a captured job's workers: capture this
    worker's placement groups (connecting to the manager on the first one), then run
    the hook the job had before capture, if any."""
    settings = settings_from_env(os.environ)
    if settings is not None:
        from ray_queue.capture import core

        core.enable(settings, connect=False)
    chained = os.environ.get(ENV_NEXT_HOOK)
    if chained:
        module, _, name = chained.rpartition(".")
        getattr(importlib.import_module(module), name)()
