"""Every change capture makes to Ray, in one place, for the Ray versions it knows.

Ray has no hook that sees a placement group being created, so capture patches, and this
module is the only place that does. It makes three changes, each checked against the
Ray it is about to change (``check_ray``) and undone by ``uninstall``:

1. ``ray.util.placement_group.placement_group`` and ``remove_placement_group``.
   Ray's libraries bind these functions at import time (Tune's
   ``tune/execution/placement_groups.py``, AIR's resource manager, Train v2's
   ``worker_group.py`` and ``placement_group_handle.py`` all do ``from
   ray.util.placement_group import placement_group``), so replacing the module
   attribute would miss every caller that was imported first. Both functions are
   wrapped by Ray's ``client_mode_wrap``, whose wrapper calls the real function through
   a closure cell; every binding of the wrapper, wherever it was imported, goes
   through that one cell. Capture swaps the cell's contents, so it reaches all
   importers, past and future, without knowing them.
2. ``ray.init``, wrapped (only for the no-code-change path, ``RAY_QUEUE_CAPTURE=1``):
   it adds capture's ``worker_process_setup_hook`` and variables to the job's
   ``runtime_env``, so that work created in the job's Ray workers (Train's controller,
   Tune's trainables) is captured too, and after Ray connects it connects to the
   queue, so a wrong queue name fails at ``ray.init``. Ray's own auto-init calls
   ``ray.init`` by attribute, so it goes through this wrapper too.
3. An import hook (``sys.meta_path``) that applies 1 and 2 the moment ``ray`` is
   imported, for a process that opted in before importing Ray.

4. ``RemoteFunction._remote`` and ``ActorClass._remote``, the one method every
   ``@ray.remote`` function's and class's ``.remote()`` and ``.options(...).remote()``
   ends in. Both are looked up on the class at each call, so replacing the class
   attribute reaches functions and classes decorated before capture started (Ray has no
   hook that sees a task or actor being submitted).

What is not patched: Ray's ``worker_process_setup_hook`` is documented and used as is.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from ray_queue.capture.errors import CaptureError, UnsupportedRayVersion

logger = logging.getLogger(__name__)

#: The Ray releases whose internals this module was written and tested against
#: (``major.minor``). Another version refuses to capture rather than capture wrongly.
KNOWN_RAY_VERSIONS = ("2.60",)

#: ``worker_process_setup_hook`` capture puts in a captured job's ``runtime_env``.
WORKER_SETUP_HOOK = "ray_queue.capture.boot.worker_setup"

#: Called as ``create(bundles, strategy, name, lifetime, soft_target, selectors,
#: topology)``; returns a ``PlacementGroup`` (or raises).
CreateHook = Callable[..., Any]
#: Called with the placement group given to ``remove_placement_group``; returns
#: ``True`` when it handled it (a captured group), ``False`` to let Ray remove it.
RemoveHook = Callable[[Any], bool]
#: Called as ``submit(original, remote_function, args, kwargs, serialized_runtime_env_info,
#: task_options)``; returns what ``RemoteFunction._remote`` returns.
TaskHook = Callable[..., Any]
#: Called as ``create(original, actor_class, args, kwargs, actor_options)``; returns what
#: ``ActorClass._remote`` returns.
ActorHook = Callable[..., Any]

_lock = threading.RLock()
#: The original functions behind Ray's wrappers, while patched: {wrapper: original}.
_originals: dict[Any, Any] = {}
_original_init: Any = None
#: Ray's own ``_remote`` methods while patched: {class: original}.
_original_methods: dict[type, Any] = {}
#: The parameters capture passes on, by name, to each patched ``_remote``.
_REMOTE_PARAMETERS = {
    "RemoteFunction": ["self", "args", "kwargs", "serialized_runtime_env_info", "task_options"],
    "ActorClass": ["self", "args", "kwargs", "actor_options"],
}


def ray_version_known(version: str) -> bool:
    return ".".join(version.split(".")[:2]) in KNOWN_RAY_VERSIONS


def _cell(wrapper: Any, name: str) -> Any:
    """The closure cell ``name`` of Ray's ``client_mode_wrap`` wrapper, checked."""
    code = getattr(wrapper, "__code__", None)
    closure = getattr(wrapper, "__closure__", None)
    if code is None or closure is None or name not in code.co_freevars:
        raise UnsupportedRayVersion(
            f"{getattr(wrapper, '__qualname__', wrapper)!r} is not the client_mode_wrap "
            "wrapper capture knows (no closure cell 'func'); this Ray is not supported"
        )
    return closure[code.co_freevars.index(name)]


def check_ray() -> None:
    """Raise ``UnsupportedRayVersion`` unless the installed Ray is one capture knows and
    its functions have the shape capture patches; ``CaptureError`` over Ray Client."""
    import ray

    pg_module = _pg_module()
    if not ray_version_known(ray.__version__):
        raise UnsupportedRayVersion(
            f"capture knows Ray {', '.join(KNOWN_RAY_VERSIONS)}, not {ray.__version__}; "
            "install a ray-queue release made for this Ray, or run without capture "
            "(unset RAY_QUEUE_CAPTURE / capture=False)"
        )
    from ray.util.client import ray as ray_client

    if ray_client.is_connected():  # type: ignore[no-untyped-call]  # unannotated in Ray
        # Ray Client ships the wrapped function to the server as a task: the queue would
        # be asked from a server worker, not from this driver.
        raise CaptureError(
            "capture does not work over Ray Client (ray://); run the driver on the "
            "cluster (a Ray job) with capture on instead"
        )
    for name in ("placement_group", "remove_placement_group"):
        wrapper = getattr(pg_module, name)
        func = _cell(wrapper, "func").cell_contents
        if getattr(func, "__name__", None) != name:
            raise UnsupportedRayVersion(
                f"ray.util.placement_group.{name} wraps {func!r}, not {name}; "
                "this Ray is not supported by capture"
            )


def _work_classes() -> dict[str, type]:
    from ray.actor import ActorClass
    from ray.remote_function import RemoteFunction

    return {"RemoteFunction": RemoteFunction, "ActorClass": ActorClass}


def check_work_methods() -> None:
    """Raise ``UnsupportedRayVersion`` unless ``RemoteFunction._remote`` and
    ``ActorClass._remote`` take the parameters capture passes on."""
    import inspect

    for name, cls in _work_classes().items():
        method = _original_methods.get(cls, getattr(cls, "_remote", None))
        try:
            parameters = list(inspect.signature(method).parameters) if method else []
        except (TypeError, ValueError):
            parameters = []
        if parameters != _REMOTE_PARAMETERS[name]:
            raise UnsupportedRayVersion(
                f"{name}._remote takes {parameters}, not {_REMOTE_PARAMETERS[name]} as "
                "capture knows it; this Ray is not supported by capture"
            )


def install_work(submit_task: TaskHook, create_actor: ActorHook) -> None:
    """Route every ``@ray.remote`` task submission and actor creation of this process
    through ``submit_task`` / ``create_actor``, which get Ray's own method to call.
    Idempotent; raises ``UnsupportedRayVersion``."""
    with _lock:
        check_ray()
        check_work_methods()
        classes = _work_classes()
        remote_function_cls, actor_cls = classes["RemoteFunction"], classes["ActorClass"]
        if remote_function_cls in _original_methods:
            return
        original_task = remote_function_cls._remote  # type: ignore[attr-defined]
        original_actor = actor_cls._remote  # type: ignore[attr-defined]

        @functools.wraps(original_task)
        def task_remote(
            self: Any,
            args: Any = None,
            kwargs: Any = None,
            serialized_runtime_env_info: str | None = None,
            **task_options: Any,
        ) -> Any:
            return submit_task(
                original_task, self, args, kwargs, serialized_runtime_env_info, task_options
            )

        @functools.wraps(original_actor)
        def actor_remote(
            self: Any, args: Any = None, kwargs: Any = None, **actor_options: Any
        ) -> Any:
            return create_actor(original_actor, self, args, kwargs, actor_options)

        _original_methods[remote_function_cls] = original_task
        _original_methods[actor_cls] = original_actor
        remote_function_cls._remote = task_remote  # type: ignore[attr-defined]
        actor_cls._remote = actor_remote  # type: ignore[attr-defined]


def install(create: CreateHook, remove: RemoveHook) -> None:
    """Route every ``placement_group`` / ``remove_placement_group`` call of this process
    through ``create`` / ``remove``. Idempotent; raises ``UnsupportedRayVersion``."""
    pg_module = _pg_module()
    with _lock:
        check_ray()
        create_wrapper = pg_module.placement_group
        remove_wrapper = pg_module.remove_placement_group
        if create_wrapper in _originals:
            return
        create_cell = _cell(create_wrapper, "func")
        remove_cell = _cell(remove_wrapper, "func")
        original_create = create_cell.cell_contents
        original_remove = remove_cell.cell_contents

        @functools.wraps(original_create)
        def placement_group(
            bundles: list[dict[str, float]],
            strategy: str | None = None,
            name: str = "",
            lifetime: str | None = None,
            _soft_target_node_id: str | None = None,
            bundle_label_selector: Sequence[dict[str, str]] | None = None,
            topology_strategy: dict[str, str] | None = None,
        ) -> Any:
            return create(
                original_create,
                bundles,
                strategy,
                name,
                lifetime,
                _soft_target_node_id,
                bundle_label_selector,
                topology_strategy,
            )

        @functools.wraps(original_remove)
        def remove_placement_group(placement_group: Any) -> None:
            if not remove(placement_group):
                original_remove(placement_group)

        _originals[create_wrapper] = original_create
        _originals[remove_wrapper] = original_remove
        create_cell.cell_contents = placement_group
        remove_cell.cell_contents = remove_placement_group
        logger.info("capture installed", extra={"ray": _ray_version()})


def installed() -> bool:
    with _lock:
        return bool(_originals)


def uninstall() -> None:
    """Give Ray back its own functions (``ray.init`` included)."""
    global _original_init
    import ray

    with _lock:
        for wrapper, original in list(_originals.items()):
            _cell(wrapper, "func").cell_contents = original
        _originals.clear()
        for cls, method in list(_original_methods.items()):
            cls._remote = method  # type: ignore[attr-defined]
        _original_methods.clear()
        if _original_init is not None:
            ray.init = _original_init
            _original_init = None


def wrap_ray_init(
    runtime_env_of: Callable[[dict[str, Any] | None], dict[str, Any]],
    after_connect: Callable[[], None],
) -> None:
    """Make ``ray.init`` pass its ``runtime_env`` through ``runtime_env_of`` and call
    ``after_connect`` once Ray is connected. Idempotent."""
    global _original_init
    import ray

    with _lock:
        if _original_init is not None:
            return
        original = ray.init

        @functools.wraps(original)
        def init(*args: Any, **kwargs: Any) -> Any:
            if ray.is_initialized():
                # Ray answers a repeated init itself (error or ignore_reinit_error).
                return original(*args, **kwargs)
            kwargs["runtime_env"] = runtime_env_of(kwargs.get("runtime_env"))
            context = original(*args, **kwargs)
            after_connect()
            return context

        _original_init = original
        ray.init = init


class _AfterRayImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs ``callback`` right after the ``ray`` package has been imported."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._inner: importlib.abc.Loader | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ray":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        self._inner = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        assert self._inner is not None
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        assert self._inner is not None
        self._inner.exec_module(module)
        self._callback()


def when_ray_imported(callback: Callable[[], None]) -> None:
    """Call ``callback`` now if ``ray`` is imported, else right after it is."""
    if "ray" in sys.modules:
        callback()
        return
    sys.meta_path.insert(0, _AfterRayImport(callback))


def _pg_module() -> types.ModuleType:
    """The module ``ray.util.placement_group`` (the attribute of that name on ``ray.util``
    is the function, which shadows the module for ``import … as``)."""
    return importlib.import_module("ray.util.placement_group")


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


__all__ = [
    "KNOWN_RAY_VERSIONS",
    "WORKER_SETUP_HOOK",
    "CaptureError",
    "UnsupportedRayVersion",
    "check_ray",
    "install",
    "install_work",
    "installed",
    "uninstall",
    "when_ray_imported",
    "wrap_ray_init",
]
