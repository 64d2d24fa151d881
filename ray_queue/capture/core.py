"""What a captured Ray call does, and switching capture on and off.

``patch`` routes Ray's calls here; this module decides what goes to Ray unchanged and
what is queued:

- a placement group becomes a ``QueuedPlacementGroup`` in the captured queue, handed
  back to Ray's code as a ``CapturedPlacementGroup``; the manager's own groups (named
  ``ray-queue:…``) go to Ray unchanged;
- a ``@ray.remote`` task or actor becomes a workload whose Ray work waits behind a gate
  (``work.py``), unless it is already paid for or holds nothing: it runs in a placement
  group (its strategy names one, or it inherits its parent's through
  ``placement_group_capture_child_tasks``), or asks for no resources at all (a task with
  ``num_cpus=0`` and nothing else; an actor without resources holds none once created),
  or it is ray-queue's own work (the client's launches of admitted work, the gate);
- everything goes to Ray unchanged where capture is off.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from ray_queue.capture import patch
from ray_queue.capture.errors import CaptureError
from ray_queue.capture.settings import ENV_NEXT_HOOK, Settings, settings_from_env
from ray_queue.client.runtime import ClientRuntime
from ray_queue.engine.model import WorkloadId
from ray_queue.errors import NotInitializedError
from ray_queue.manager.handle import TOKEN_ENV

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_settings: Settings | None = None
#: This process's gate actor (``gate.py``), made on the first captured task or actor.
_opener: Any = None


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
    patch.install_work(_submit_task, _create_actor)
    with _lock:
        _settings = settings
        if connect:
            _runtime()
    logger.info("capture on", extra={"queue": settings.queue, "priority": settings.priority})


def disable() -> None:
    global _settings, _opener, _leases
    with _lock:
        _settings = None
        opener, _opener = _opener, None
        leases, _leases = _leases, None
    patch.uninstall()
    if leases is not None:
        leases.close()
    if opener is not None:
        opener.close()


def job_runtime_env(
    runtime_env: dict[str, Any] | None, settings: Settings, *, token: str | None = None
) -> dict[str, Any]:
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
    worker_credential = _worker_credential(settings, token)
    if worker_credential is not None:
        # A token the caller put there on purpose stays.
        env_vars.setdefault(TOKEN_ENV, worker_credential)
    # In a Ray job's driver, Ray merges ray.init's runtime_env into the job's and refuses
    # a variable both set; the job's already carries the workers (the manager's for a
    # job it submits, or the user's `ray job submit --runtime-env-json`).
    already = _job_env_vars()
    env_vars = {k: v for k, v in env_vars.items() if already.get(k) != v}
    env["env_vars"] = env_vars
    env["worker_process_setup_hook"] = patch.WORKER_SETUP_HOOK
    return env


def _job_env_vars() -> dict[str, str]:
    """The variables of the Ray job this driver runs in (its submission's runtime_env),
    which Ray gives the driver in ``RAY_JOB_CONFIG_JSON_ENV_VAR``; empty outside one."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    text = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not text:
        return {}
    runtime_env = json.loads(text).get("runtime_env") or {}
    return dict(runtime_env.get("env_vars") or {})


def _worker_credential(settings: Settings, given: str | None = None) -> str | None:
    """What the job's workers call the manager with when this driver has a token
    (``given``, else ``$RAY_QUEUE_TOKEN`` or ``$RAY_QUEUE_TOKEN_FILE``): one derived from it,
    for the captured Queue only, valid while the job runs (``access/worker_credentials``;
    docs/security.md says why it travels in runtime_env). ``None`` without a token, or
    with a credential that is itself derived (a job's or a worker's)."""
    from pathlib import Path

    from ray_queue.access import worker_credentials
    from ray_queue.access.job_credentials import is_job_credential
    from ray_queue.manager.handle import TOKEN_FILE_ENV

    token = (given or os.environ.get(TOKEN_ENV, "")).strip()
    if not token and os.environ.get(TOKEN_FILE_ENV):
        try:
            token = Path(os.environ[TOKEN_FILE_ENV]).read_text(encoding="utf-8").strip()
        except OSError:
            return None  # the driver's own init says what is wrong with the file
    if not token or is_job_credential(token) or worker_credentials.is_worker_credential(token):
        return None
    return worker_credentials.mint(token, settings.queue)


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

    In a job's run (``Settings.parent``), every request also names the job as its parent.

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
        settings = _settings
        if settings is not None and settings.parent is not None and request.parent is None:
            # A job's run: everything it makes is the job's (its cap, its end).
            request = dataclasses.replace(request, parent=WorkloadId(settings.parent))
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


# long: Ray's placement_group, step for step: Ray's own checks, the options capture
# cannot honour, then the queued group; a split would scatter the one signature it mirrors.
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


# -- tasks and actors (work.py) -------------------------------------------------------------


def _from_ray_queue() -> bool:
    """Whether the Ray call being captured was made by ray-queue itself (the client
    launching admitted work, the manager, the gate), seen through Ray's own frames. Those
    are paid for already, or hold nothing."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "ray" or module.startswith(("ray.", "ray_queue.capture")):
            frame = frame.f_back  # type: ignore[assignment]
            continue
        return bool(module.startswith("ray_queue."))
    return False


def _in_placement_group(options: Mapping[str, Any]) -> bool:
    """Whether Ray runs this work in a placement group, whose quota pays for it."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return True
    if options.get("placement_group") not in (None, "default"):
        return True  # Ray's older spelling of the same
    if strategy not in (None, "DEFAULT"):
        return False
    worker = ray._private.worker.global_worker
    if worker.mode != ray._private.worker.WORKER_MODE:
        return False  # a driver is never in a placement group
    from ray.util.placement_group import get_current_placement_group

    # Set only where the parent asked for placement_group_capture_child_tasks.
    return get_current_placement_group() is not None


def _resources(options: Mapping[str, Any], *, default_cpus: float) -> dict[str, float]:
    """What the work holds in Ray while it runs, as Ray counts it, less ``memory``: Ray's
    libraries set it as a scheduling hint (Ray Data sizes its tasks' memory itself),
    and a queue whose ClusterQueues have no memory quota would reject all such work."""
    num_cpus = options.get("num_cpus")
    resources: dict[str, float] = {"CPU": default_cpus if num_cpus is None else num_cpus}
    if options.get("num_gpus"):
        resources["GPU"] = options["num_gpus"]
    for name, amount in (options.get("resources") or {}).items():
        if amount:
            resources[name] = amount
    return {name: amount for name, amount in resources.items() if amount}


def _captured_settings() -> Settings | None:
    settings = _settings
    if settings is None or _from_ray_queue():
        return None
    return settings


def _gate_opener() -> Any:
    global _opener
    opener = _opener
    if opener is not None:
        return opener
    from ray_queue.capture.gate import Opener, gate_actor_options

    with _lock:
        if _opener is None:
            _opener = Opener(lambda cls: ray.remote(**gate_actor_options())(cls).remote())
        return _opener


def _copies() -> tuple[Any, Any]:
    from ray_queue.capture.work import GatedCopies, gated_class, gated_function

    global _task_copies, _actor_copies
    if _task_copies is None:
        _task_copies = GatedCopies(lambda rf: ray.remote(gated_function(rf._function)))
        _actor_copies = GatedCopies(
            lambda ac: ray.remote(gated_class(ac.__ray_metadata__.modified_class))
        )
    return _task_copies, _actor_copies


_task_copies: Any = None
_actor_copies: Any = None
_leases: Any = None


def _task_leases() -> Any:
    global _leases
    leases = _leases
    if leases is not None:
        return leases
    from ray_queue.capture.leases import Leases

    with _lock:
        if _leases is None:
            _leases = Leases()
        return _leases


# long: the three ways a captured task goes, in the order they are tried (straight to
# Ray, into a lease, behind a gate), each ending in the same call of Ray's own _remote.
def _submit_task(
    original: Any,
    remote_function: Any,
    args: Any,
    kwargs: Any,
    serialized_runtime_env_info: str | None,
    task_options: dict[str, Any],
) -> Any:
    from ray_queue.capture.work import GATED, CapturedTask

    settings = _captured_settings()
    resources = {} if settings is None else _resources(task_options, default_cpus=1)
    if (
        settings is None
        or not resources
        or getattr(remote_function, GATED, False)
        # Nothing to watch for its end.
        or task_options.get("num_returns") == 0
        or _in_placement_group(task_options)
    ):
        return original(
            remote_function,
            args=args,
            kwargs=kwargs,
            serialized_runtime_env_info=serialized_runtime_env_info,
            **task_options,
        )
    runtime = _runtime()
    name = getattr(remote_function, "_function_name", "task").rpartition(".")[2]
    leases = _task_leases()
    key = (tuple(sorted(resources.items())), settings.queue, settings.priority)
    # Only work that may run in any bundle of its shape goes into a lease: its own node
    # labels would need bundles of their own.
    if task_options.get("scheduling_strategy") in (None, "DEFAULT") and not task_options.get(
        "label_selector"
    ):
        lease = leases.route(key, resources, settings.queue, settings.priority, name)
        if lease is not None:
            from ray_queue.capture.leases import LeaseTask

            options = {**task_options, "scheduling_strategy": lease.strategy}
            result = original(
                remote_function,
                args=args,
                kwargs=kwargs,
                serialized_runtime_env_info=serialized_runtime_env_info,
                **options,
            )
            runtime.watch(
                result[0] if isinstance(result, list) else result, LeaseTask(leases, lease), 1
            )
            return result
    opener = _gate_opener()
    gated = _copies()[0].of(remote_function)
    request = _work_request(runtime, settings, resources, f"task {name}", name)
    leases.gated(key, 1)
    handle = CapturedTask(runtime, request, opener, lambda: leases.gated(key, -1))
    runtime.submit(request, handle)
    runtime.add_successor(handle)
    result = original(
        gated,
        args=[opener.gate(request.id), *(args or ())],
        kwargs=kwargs,
        serialized_runtime_env_info=serialized_runtime_env_info,
        **task_options,
    )
    handle.attach(result[0] if isinstance(result, list) else result)
    return result


def _create_actor(
    original: Any, actor_class: Any, args: Any, kwargs: Any, actor_options: dict[str, Any]
) -> Any:
    from ray_queue.capture.work import GATED, CapturedActor

    settings = _captured_settings()
    # An actor without resources asked holds none once created (Ray's default is one CPU
    # to be scheduled and none to run).
    resources = {} if settings is None else _resources(actor_options, default_cpus=0)
    if (
        settings is None
        or not resources
        or getattr(actor_class, GATED, False)
        or _in_placement_group(actor_options)
    ):
        return original(actor_class, args, kwargs, **actor_options)
    if actor_options.get("lifetime") == "detached":
        raise CaptureError(
            "a captured actor cannot be detached: its quota is the job's and ends with "
            "it; drop lifetime='detached' or create the actor from an uncaptured driver"
        )
    if actor_options.get("get_if_exists") and actor_options.get("name"):
        try:
            return ray.get_actor(actor_options["name"], namespace=actor_options.get("namespace"))
        except ValueError:
            pass  # created below; Ray settles a race between two creators
    runtime = _runtime()
    opener = _gate_opener()
    gated = _copies()[1].of(actor_class)
    name = actor_class.__ray_metadata__.class_name
    request = _work_request(runtime, settings, resources, f"actor {name}", name)
    handle = CapturedActor(runtime, request, opener)
    runtime.submit(request, handle)
    actor = original(gated, [opener.gate(request.id), *(args or ())], kwargs, **actor_options)
    handle.attach(actor)
    return actor


def _work_request(
    runtime: ClientRuntime, settings: Settings, resources: dict[str, float], what: str, name: str
) -> Any:
    from ray_queue.capture.work import to_request_bundle
    from ray_queue.engine.model import WorkloadKind

    # A TASK for the manager either way: it creates no placement group for one, and an
    # actor's Ray work is made here, behind its gate, not in a group.
    return runtime.request(
        WorkloadKind.TASK,
        to_request_bundle(resources, what),
        queue=settings.queue,
        priority=settings.priority,
        name=name,
        payload={"slot": False},
    )
