"""The gRPC server inside the QueueManager actor: ``ManagerCore`` behind ``Backend``.

``ManagerCore`` is not thread-safe; the actor serialises every call by running it on
its one event loop. The gRPC server answers on its own threads, so each backend call is
shipped to that loop (``on_loop``) and waited for: gRPC requests queue up with the
actor's other requests and see exactly the same state. Transitions that happen inside the
manager (ticks, Ray events) are found by a poller that diffs workload histories, only
while someone is watching. The development server runs this same backend over a core of
its own, serialised by a lock instead of a loop (``local_manager.LocalManager``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_change import live_workload_problems
from ray_queue.engine.errors import ConfigError
from ray_queue.engine.model import (
    CheckState,
    ClusterQueueStatus,
    CohortStatus,
    GangDemand,
    PendingPosition,
    WorkloadId,
    WorkloadKind,
    WorkloadStatus,
)
from ray_queue.grpc.backend import (
    ConfigOutcome,
    EventPage,
    JobsUnsupportedError,
    TransitionJournal,
)
from ray_queue.grpc.server import QueueServer, ServerOptions
from ray_queue.manager.core import ManagerCore
from ray_queue.wire import SubmitRequest, SubmitResult, UnmanagedUsage, WorkerGroupShape

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Run a function where the core lives and return its result (or raise its error).
Runner = Callable[[Callable[[], T]], T]

#: A stream counts as watching for this long after its last read.
_WATCH_TTL_S = 5.0
#: How long a gRPC thread waits for the actor's loop before giving up.
_CALL_TIMEOUT_S = 60.0


def on_loop(loop: asyncio.AbstractEventLoop) -> Runner[Any]:
    """A ``Runner`` that executes on ``loop`` (the actor's) from any other thread."""

    def run(fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        return future.result(_CALL_TIMEOUT_S)

    return run


def locked() -> Runner[Any]:
    """A ``Runner`` that serialises callers with a lock (a core with no event loop)."""
    lock = threading.Lock()

    def run(fn: Callable[[], T]) -> T:
        with lock:
            return fn()

    return run


class _Waiter:
    __slots__ = ("done", "error", "lead", "requests", "results")

    def __init__(self, requests: Sequence[SubmitRequest]) -> None:
        self.requests = requests
        self.done = threading.Event()
        self.lead = False
        self.results: list[SubmitResult] = []
        self.error: BaseException | None = None


class Coalescer:
    """Merges submissions that arrive while one is being applied into one core call.

    Every core call persists its batch before returning (one store transaction), so
    concurrent single-workload calls are far cheaper applied together; they would be
    serialised on the actor's loop anyway, so merging changes no outcome. The caller
    that finds no batch running leads: it applies everything queued so far (its own
    requests included), then hands the lead to the first caller still waiting, so no
    caller serves others' batches indefinitely. Thread-safe.
    """

    def __init__(self, apply: Callable[[Sequence[SubmitRequest]], list[SubmitResult]]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._busy = False

    def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        waiter = _Waiter(requests)
        with self._lock:
            self._queue.append(waiter)
            if not self._busy:
                self._busy = waiter.lead = True
        if not waiter.lead:
            waiter.done.wait()
        if waiter.lead:  # first in, or handed the lead by the previous leader
            self._lead()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            results = self._apply([r for w in batch for r in w.requests])
        except BaseException as e:
            for w in batch:
                w.error = e
        else:
            start = 0
            for w in batch:
                w.results = results[start : start + len(w.requests)]
                start += len(w.requests)
        for w in batch:
            w.lead = False
            w.done.set()
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._busy = False


class ManagerBackend:
    """``Backend`` over a live ``ManagerCore``. Thread-safe through ``run``.

    ``supports_jobs=False`` (a core whose actions cannot run Ray jobs, ``local_manager``)
    refuses JOB workloads at submission with ``JobsUnsupportedError``.
    """

    def __init__(
        self,
        core: ManagerCore,
        run: Runner[Any],
        *,
        poll_s: float = 0.5,
        supports_jobs: bool = True,
    ) -> None:
        self._core = core
        self._supports_jobs = supports_jobs
        self._run = run
        self._journal = TransitionJournal()
        self._watched_until = 0.0
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name="ray-queue-grpc-journal", daemon=True
        )
        self._primed = False
        core.watch_statuses(self._persisted)
        self._submissions = Coalescer(self._submit_on_loop)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)

    @property
    def supports_jobs(self) -> bool:
        return self._supports_jobs

    # -- change tracking -----------------------------------------------------------------------

    # The journal learns of changes from the core itself (``watch_statuses``), as they are
    # persisted. It once rebuilt every workload's status every ``poll_s`` while anyone
    # watched, and the autoscaler always watches: ~1 s of the loop's CPU every 0.5 s at
    # 100,000 workloads.

    def _persisted(
        self, statuses: Sequence[WorkloadStatus], forgotten: Collection[WorkloadId]
    ) -> None:
        # On the core's thread. Until someone watches, the journal records nothing.
        if self._primed:
            self._journal.record(statuses)
            self._journal.drop(forgotten)

    def _prime(self) -> None:
        # On the core's thread, so no change falls between this read and ``_persisted``.
        # Whatever happened before the first watcher is history, not news.
        self._journal.record(self._core.workloads())
        self._primed = True

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_s):
            if time.monotonic() < self._watched_until:
                self._journal.touch()  # placements and demand change without transitions

    def _watching(self) -> None:
        self._watched_until = time.monotonic() + _WATCH_TTL_S
        if not self._primed:
            self._run(self._prime)

    # -- Backend ----------------------------------------------------------------------------------

    def submit_many(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        refused = {
            i
            for i, r in enumerate(requests)
            if r.kind is WorkloadKind.JOB and not self._supports_jobs
        }
        queued = [r for i, r in enumerate(requests) if i not in refused]
        outcomes = iter(self._submissions.submit(queued) if queued else [])
        results = [
            SubmitResult(r.id, error=_jobs_unsupported()) if i in refused else next(outcomes)
            for i, r in enumerate(requests)
        ]
        return results

    def _submit_on_loop(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        results: list[SubmitResult] = self._run(lambda: self._core.submit_many(requests))
        return results

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        return self._call(lambda: self._core.workload(workload))

    def workloads(self) -> list[WorkloadStatus]:
        return self._call(self._core.workloads)

    def cancel(self, workload: WorkloadId, *, message: str) -> bool:
        def cancel() -> bool:
            before = self._core.workload(workload)  # raises UnknownWorkloadError
            self._core.cancel([workload], message=message)
            return not before.state.is_terminal

        return self._call(cancel)

    def pending(
        self, *, queue: str | None = None, cluster_queue: str | None = None
    ) -> list[PendingPosition]:
        return self._call(lambda: self._core.pending(queue=queue, cluster_queue=cluster_queue))

    def cluster_queues(self) -> list[ClusterQueueStatus]:
        return list(self._call(self._core.status).cluster_queues)

    def cohorts(self) -> list[CohortStatus]:
        return list(self._call(self._core.status).cohorts)

    def unmanaged_usage(self) -> list[UnmanagedUsage]:
        return list(self._call(self._core.unmanaged_usage))

    def config(self) -> QueueConfig:
        return self._call(lambda: self._core.config)

    def apply_config(self, config: QueueConfig, *, validate_only: bool) -> ConfigOutcome:
        if validate_only:
            live = [w for w in self.workloads() if not w.state.is_terminal]
            problems = live_workload_problems(config, live)
            if problems:
                raise ConfigError(problems)
            return ConfigOutcome(applied=False)
        decisions = self._call(lambda: self._core.apply_config(config))
        return ConfigOutcome(applied=True, evicted=tuple(d.workload for d in decisions))

    def demand(self) -> list[GangDemand]:
        return self._call(self._core.demand)

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> WorkloadStatus:
        def report() -> WorkloadStatus:
            self._core.workload(workload)  # raises UnknownWorkloadError
            self._core.set_check_state(workload, check, state, message)
            return self._core.workload(workload)

        return self._call(report)

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> WorkloadStatus:
        def evict() -> WorkloadStatus:
            self._core.evict(workload, reason=reason, message=message)
            return self._core.workload(workload)

        return self._call(evict)

    def set_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        self._call(lambda: self._core.set_worker_groups(groups))

    def events(self, *, after: int, timeout_s: float) -> EventPage:
        self._watching()
        return self._journal.read(after=after, timeout_s=timeout_s)

    def journal_head(self) -> int:
        self._watching()
        return self._journal.head

    def wait_changed(self, *, after: int, timeout_s: float) -> int:
        self._watching()
        return self._journal.wait(after=after, timeout_s=timeout_s)

    def _call(self, fn: Callable[[], T]) -> T:
        return self._run(fn)  # type: ignore[no-any-return]


def _jobs_unsupported() -> JobsUnsupportedError:
    return JobsUnsupportedError(
        "this server runs the manager without Ray and cannot run jobs; "
        "submit jobs to a manager on a Ray cluster"
    )


def start_grpc_server(
    core: ManagerCore,
    loop: asyncio.AbstractEventLoop,
    options: ServerOptions | None = None,
    *,
    publish: bool = True,
) -> QueueServer:
    """Start the API for the manager whose core runs on ``loop`` (call it from the actor,
    on that loop). Options default to ``ServerOptions.from_env()`` (port 50051). With
    ``publish``, the address goes into Ray's KV store so ``ray-queue`` finds it."""
    backend = ManagerBackend(core, on_loop(loop))
    server = QueueServer(backend, options or ServerOptions.from_env())
    try:
        server.start()
    except Exception:
        backend.close()
        raise
    if publish:
        publish_address(server)
    return server


def publish_address(server: QueueServer) -> str:
    """Write where clients can dial ``server`` into Ray's internal KV (needs Ray)."""
    import ray
    from ray.experimental import internal_kv

    from ray_queue.grpc.address import KV_KEY, KV_NAMESPACE

    host = server.host
    if host in ("0.0.0.0", "[::]", ""):
        host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]  # unannotated in Ray
    address = f"{host}:{server.port}"
    internal_kv._internal_kv_put(KV_KEY, address, overwrite=True, namespace=KV_NAMESPACE)
    logger.info(
        "published gRPC address",
        extra={"address": address, "kv_namespace": KV_NAMESPACE, "kv_key": KV_KEY},
    )
    return address


__all__ = ["ManagerBackend", "locked", "on_loop", "publish_address", "start_grpc_server"]
