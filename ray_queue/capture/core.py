"""What a captured placement group call does, and switching capture on and off.

``patch`` routes Ray's calls here; this module decides: the manager's own groups (named
``ray-queue:…``) and processes where capture is off go to Ray unchanged, everything else
becomes a ``QueuedPlacementGroup`` in the captured queue, handed back to Ray's code as a
``CapturedPlacementGroup``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import ray

from ray_queue.capture import patch
from ray_queue.capture.errors import CaptureError
from ray_queue.capture.settings import ENV_NEXT_HOOK, Settings, settings_from_env
from ray_queue.client.runtime import ClientRuntime
from ray_queue.errors import NotInitializedError

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_settings: Settings | None = None


def current_settings() -> Settings | None:
    return _settings


def enable(settings: Settings, *, connect: bool = True) -> None:
    """Capture this process's placement groups with ``settings``.

    ``connect``: reach the manager now (a driver: a wrong queue fails here); a Ray
    worker connects on its first captured call instead, so workers that never make a
    group never talk to the manager.
    """
    global _settings
    if not ray.is_initialized():
        raise NotInitializedError(
            "capture needs a connected Ray: call ray_queue.init(..., capture=True), or "
            "ray.init() with RAY_QUEUE_CAPTURE=1 set, not capture on its own"
        )
    patch.install(_create, _remove)
    with _lock:
        _settings = settings
        if connect:
            _runtime()
    logger.info("capture on", extra={"queue": settings.queue, "priority": settings.priority})


def disable() -> None:
    global _settings
    with _lock:
        _settings = None
    patch.uninstall()


def job_runtime_env(runtime_env: dict[str, Any] | None, settings: Settings) -> dict[str, Any]:
    """``runtime_env`` plus what captures the job's Ray workers: Ray's documented
    ``worker_process_setup_hook`` and the variables that carry ``settings``."""
    env = dict(runtime_env or {})
    hook = env.get("worker_process_setup_hook")
    env_vars = dict(env.get("env_vars") or {})
    if hook is not None and hook != patch.WORKER_SETUP_HOOK:
        if not isinstance(hook, str):
            raise CaptureError(
                "runtime_env's worker_process_setup_hook is a function; capture needs that "
                "slot for its own hook and can chain only a module path "
                "('package.module.function'): pass it as a string"
            )
        env_vars[ENV_NEXT_HOOK] = hook
    env_vars.update(settings.env_vars())
    env["env_vars"] = env_vars
    env["worker_process_setup_hook"] = patch.WORKER_SETUP_HOOK
    return env


def enable_from_env() -> None:
    """After ``ray.init`` in a driver started with ``RAY_QUEUE_CAPTURE=1``."""
    settings = settings_from_env(os.environ)
    if settings is not None:
        enable(settings)


def _runtime() -> Any:
    """This process's client runtime, connected on first use with the captured defaults."""
    from ray_queue.client import api
    from ray_queue.client import runtime as client_runtime

    with _lock:
        settings = _settings
        if settings is None:
            raise CaptureError("capture is off in this process")
        if client_runtime._runtime is None:
            api.init(queue=settings.queue, priority=settings.priority)
        runtime = client_runtime.current()
        _share_owner(runtime)
        return runtime


def _share_owner(runtime: ClientRuntime) -> None:
    """Make ``runtime`` report only the workloads it submitted itself. Idempotent.

    A captured job has a client runtime in each process that makes groups: the driver,
    Train's controller, Tune's trainables. All share one owner at the manager (the job),
    and the manager tells an owner's events to every process polling for it; a plain
    runtime takes an admission it has no handle for as work that ended meanwhile and
    gives its quota back, which here would end another process's group the moment it is
    admitted. The runtime is adjusted in place rather than replaced, so handles the
    process already holds (from ``ray_queue`` calls before capture) keep working.
    """
    if getattr(runtime, "_capture_owns", None) is not None:
        return
    with runtime._lock:
        submitted: set[str] = set(runtime._handles)
    submit, report_finished = runtime.submit, runtime.report_finished

    def submit_own(request: Any, handle: Any, *, sync: bool = False) -> None:
        submitted.add(request.id)
        submit(request, handle, sync=sync)

    def report_own(workload: Any, *, failed: bool, message: str = "") -> None:
        if workload in submitted:
            report_finished(workload, failed=failed, message=message)

    runtime.submit = submit_own  # type: ignore[method-assign]
    runtime.report_finished = report_own  # type: ignore[method-assign]
    runtime._capture_owns = submitted  # type: ignore[attr-defined]


def _bypass(name: str) -> bool:
    """Groups that go to Ray unchanged: the manager's own, and any made where capture
    is off (after ``disable``, or in a process that only has the patch installed)."""
    from ray_queue.ray_adapter.actions import PG_PREFIX

    return _settings is None or name.startswith(PG_PREFIX)


def _create(
    original: Any,
    bundles: list[dict[str, float]],
    strategy: str | None,
    name: str,
    lifetime: str | None,
    soft_target_node_id: str | None,
    bundle_label_selector: Sequence[dict[str, str]] | None,
    topology_strategy: dict[str, str] | None,
) -> Any:
    if _bypass(name or ""):
        return original(
            bundles,
            strategy,
            name,
            lifetime,
            soft_target_node_id,
            bundle_label_selector,
            topology_strategy,
        )
    from ray.util.placement_group import validate_placement_group

    from ray_queue.capture.group import CapturedPlacementGroup
    from ray_queue.client import api

    # Ray's own checks first, so bad input fails as it does without capture.
    validate_placement_group(
        bundles=bundles,
        strategy=strategy,
        lifetime=lifetime,
        _soft_target_node_id=soft_target_node_id,
        # As given, so a wrong type fails in Ray's check as it would without capture
        # (Ray annotates the list as required but defaults it to None).
        bundle_label_selector=bundle_label_selector,  # type: ignore[arg-type]
        topology_strategy=topology_strategy,
    )
    unsupported = {
        "lifetime='detached'": lifetime == "detached",
        "_soft_target_node_id": soft_target_node_id is not None,
        "topology_strategy": bool(topology_strategy),
    }
    asked = [option for option, given in unsupported.items() if given]
    if asked:
        raise CaptureError(
            f"a captured placement group cannot take {', '.join(asked)}: the queue "
            "creates the group, owned by this job, where its flavor is; drop the option "
            "or run this driver without capture"
        )
    _runtime()
    settings = _settings
    if settings is None:  # disabled by another thread meanwhile
        raise CaptureError("capture was turned off while this group was being made")
    selectors = [dict(s) for s in bundle_label_selector or []]
    queued = api.placement_group(
        bundles,
        strategy or "PACK",
        queue=settings.queue,
        priority=settings.priority,
        name=name or None,
        bundle_label_selector=selectors if any(selectors) else None,
    )
    return CapturedPlacementGroup(
        queued, [{k: float(v) for k, v in bundle.items()} for bundle in bundles]
    )


def _remove(placement_group: Any) -> bool:
    from ray_queue.capture.group import CapturedPlacementGroup

    if isinstance(placement_group, CapturedPlacementGroup):
        placement_group.remove()
        return True
    return False
