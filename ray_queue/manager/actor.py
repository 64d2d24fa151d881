"""The QueueManager actor: a thin async shell around ``ManagerCore`` on the head node.

Detached (outlives the driver that started it), named (every driver finds the same one),
restarted by Ray forever if it dies (``max_restarts=-1``), pinned to the head node (where
its SQLite store lives), whichever node is the head after a head restart. All core calls
run on the actor's single event loop, which is the manager's lock: requests are applied
one at a time, in arrival order. Long polls (``wait_events``, ``wait_placed``) await
without holding it.

A background loop, about four times a second, lets time-driven events happen (back-offs,
placement timeouts), applies what Ray answered about placement groups (which a worker
thread creates and removes, ``placement_desk``), and once a second follows nodes joining
and leaving, dead drivers, and jobs ending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from prometheus_client import CollectorRegistry, start_http_server

from ray_queue.access import namespaces, scope
from ray_queue.access.parents import attach_refusal
from ray_queue.access.principals import Principal, Role
from ray_queue.engine.clock import SystemClock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import (
    CheckState,
    Decision,
    GangDemand,
    PendingPosition,
    WorkloadId,
)
from ray_queue.engine.model import WorkloadStatus as _Status
from ray_queue.errors import PermissionDeniedError, UnknownWorkloadError
from ray_queue.logs import install
from ray_queue.manager.access_guard import AccessGuard
from ray_queue.manager.core import ManagerCore
from ray_queue.manager.defaults import default_config
from ray_queue.manager.release_pacing import RELEASE_LAG_S
from ray_queue.metrics import MetricsSnapshot, QueueMetrics
from ray_queue.ray_adapter.actions import RayAdapter
from ray_queue.ray_adapter.cluster import dead_owners, node_shapes, on_the_head
from ray_queue.ray_adapter.placement_desk import PlacementDesk
from ray_queue.ray_adapter.ray_holdings import ray_job_holdings
from ray_queue.store.codec import pack_config, unpack_config
from ray_queue.store.sqlite import SQLiteStore
from ray_queue.wire import (
    Catalog,
    EventBatch,
    HandOver,
    ManagerStatus,
    SubmitRequest,
    SubmitResult,
)

logger = logging.getLogger(__name__)

MANAGER_NAME = "ray_queue_manager"
NAMESPACE = "ray_queue"
#: Where the SQLite store goes; default: ``<Ray session dir>/ray_queue``.
STATE_DIR_ENV = "RAY_QUEUE_STATE_DIR"
METRICS_PORT_ENV = "RAY_QUEUE_METRICS_PORT"
METRICS_HOST_ENV = "RAY_QUEUE_METRICS_HOST"
DEFAULT_METRICS_PORT = 9090
TICK_S = 0.25
SLOW_TICK_S = 1.0
#: Placement groups looked up in Ray per slow tick, to notice groups removed behind the
#: manager's back: ~0.4 ms each here, so a tick costs at most ~20 ms and 500 live groups
#: are all checked every 10 s (Ray's whole table would cost more with every group the
#: cluster ever removed: 0.7 s at 16,000).
PG_AUDIT_PER_TICK = 50
#: How often Ray's group and actor tables are read to name the jobs behind unmanaged
#: usage, only while there is some: the group table grows with every group alive.
HOLDINGS_EVERY_S = 5.0
#: The actor process's GIL switch interval (Python's default is 5 ms): see ``__init__``.
GIL_SWITCH_S = 0.0005
#: Ray's answers about placement groups are applied this long after the first of a burst:
#: each application tells owners (an event batch, a long poll answered), so applying each
#: answer as it comes would cost an event batch per group.
PLACEMENT_BATCH_S = 0.01
#: Finished workloads are remembered this long for status queries, then forgotten.
RETENTION_ENV = "RAY_QUEUE_RETENTION_S"
DEFAULT_RETENTION_S = 3600.0
#: How long a scrape waits for the loop to compute fresh gauges before it serves the last
#: second's (the loop is busy with a long call, or recovering).
SCRAPE_WAIT_S = 2.0


def retention_s(environ: Mapping[str, str] = os.environ) -> float:
    """``RAY_QUEUE_RETENTION_S``: seconds a finished workload is remembered (default an
    hour); refused unless a positive finite number: a typo must neither forget everything
    at once nor keep everything for ever."""
    raw = environ.get(RETENTION_ENV)
    if raw is None or raw == "":
        return DEFAULT_RETENTION_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"{RETENTION_ENV}={raw!r}: give how long finished workloads are remembered, "
            f"in seconds (> 0; default {DEFAULT_RETENTION_S:.0f})"
        )
    return seconds


def _retention_or_default() -> float:
    """The actor's retention: a bad setting is logged and the default kept (the manager
    process refuses it before starting; an actor must still come up)."""
    try:
        return retention_s()
    except ValueError as e:
        logger.error("ignoring the retention setting", extra={"error": str(e)})
        return DEFAULT_RETENTION_S


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    node = ray._private.worker._global_node
    if node is None:
        raise RuntimeError("not inside a Ray worker; set RAY_QUEUE_STATE_DIR")
    return Path(node.get_session_dir_path()) / "ray_queue"


def serve_metrics(
    registry: CollectorRegistry, *, everywhere: bool, environ: Mapping[str, str] = os.environ
) -> Any:
    """Serve /metrics on ``RAY_QUEUE_METRICS_PORT`` (9090; ``off`` disables) and
    ``RAY_QUEUE_METRICS_HOST``; returns the HTTP server, or ``None``. The metrics name
    every queue and its usage, so by default they are served as the gRPC API is: on every
    interface only where tokens are configured (``everywhere``: a deployment), on
    loopback otherwise."""
    port = environ.get(METRICS_PORT_ENV, str(DEFAULT_METRICS_PORT))
    if port == "off":
        return None
    host = environ.get(METRICS_HOST_ENV) or ("0.0.0.0" if everywhere else "127.0.0.1")
    try:
        server, _ = start_http_server(int(port), addr=host, registry=registry)
    except (OSError, ValueError) as e:
        # Metrics are not worth refusing to queue work for; say so loudly instead.
        logger.warning("not serving metrics", extra={"host": host, "port": port, "error": str(e)})
        return None
    bound = server.server_address
    logger.info("serving Prometheus metrics", extra={"address": f"{bound[0]!s}:{bound[1]}"})
    return server


def _call_self_soon() -> None:
    """Queue a ping to this actor, to run as soon as ``__init__`` returns. The loop, the
    background tick and the gRPC server start with the first call; after a restart that
    was whenever a driver next called (the head's sidecar pings every 2 s), and until
    then gRPC clients found nothing serving."""
    # Outside an actor (a test's own instance) the first call starts it; and asking Ray
    # for the runtime context when not connected would start a Ray of its own.
    if not ray.is_initialized():
        return
    try:
        ray.get_runtime_context().current_actor.ping.remote()
    except RuntimeError:  # connected, but as a driver
        logger.debug("not in an actor; the loop starts with the first call")


class QueueManager:
    """The actor class (wrapped with ``ray.remote`` by ``start_manager``)."""

    def __init__(
        self, config: QueueConfig | bytes | None = None, state_path: str | None = None
    ) -> None:
        """``config``: the first start's config, or ``pack_config``'s bytes of it (what
        ``start_manager`` passes: Ray restarts an actor only with arguments it carried
        inline, and a pickled config of 1,000 ClusterQueues is twice that limit)."""
        install(logging.INFO)
        if isinstance(config, bytes):
            config = unpack_config(config)
        self._adapter = RayAdapter()
        nodes = node_shapes()
        directory = Path(state_path) if state_path else state_dir()
        self._store = SQLiteStore(directory)
        self._guard = AccessGuard.from_environment(
            directory, lambda submission_id: self._core.live_job(submission_id)
        )
        self._changed = asyncio.Event()
        #: The actor's event loop, once its first call runs on it (``_ensure_loop``).
        self._loop: asyncio.AbstractEventLoop | None = None
        # Placement groups are created and removed by the desk's threads: Ray's calls for
        # them are synchronous GCS round trips (``placement_desk``). Each thread drops the
        # GIL for each round trip and needs it back to make the next call; at Python's
        # default 5 ms switch interval a busy loop held it that long each time, capping
        # the desk at ~200 calls a second under load, below what a full queue asks.
        sys.setswitchinterval(GIL_SWITCH_S)
        self._desk = PlacementDesk(self._adapter, wake=self._placements_answered)
        registry = CollectorRegistry()
        self._metrics_snapshot = MetricsSnapshot()
        self._metrics = QueueMetrics(registry, self._gauges_at_scrape)
        self._retention_s = _retention_or_default()
        # on_cycle is first called after recover() returns (recovery itself only
        # reconciles Ray), so self._core is always set when it runs.
        self._core = ManagerCore.recover(
            self._store,
            self._adapter,
            SystemClock(),
            default_config=lambda: config or default_config(nodes),
            on_events=self._wake,
            on_cycle=self._observe_cycle,
            release_lag_s=RELEASE_LAG_S,
            job_env=self._guard.job_env,
            placements=self._desk,
        )
        # Groups re-adopted from Ray: the desk watches those it creates itself.
        for workload, pg_id in self._core.unplaced_placement_groups().items():
            self._desk.watch(workload, pg_id)
        self._metrics_snapshot = self._core.metrics_snapshot()
        serve_metrics(registry, everywhere=self._guard.enabled)
        self._grpc: Any = None
        self._grpc_tried = False
        self._core.set_nodes(nodes)
        self._loop_task: asyncio.Task[None] | None = None
        #: The slow tick's Ray reads, in flight (one at a time).
        self._ray_reads: asyncio.Task[None] | None = None
        self._holdings_read_at = float("-inf")
        self._placement_timer: asyncio.TimerHandle | None = None
        logger.info("queue manager up", extra={"pid": os.getpid(), "store": str(self._store.path)})
        _call_self_soon()

    # -- plumbing ---------------------------------------------------------------------------

    def _wake(self) -> None:
        # Wake every waiter by setting the current event, then start a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()
        self._schedule_placement()

    def _schedule_placement(self) -> None:
        """Wake up when the next placement group held back after a removal is due (the
        background tick would find it too, but up to ``TICK_S`` late)."""
        at = self._core.next_placement_at()
        if at is None or self._placement_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not called from the loop: the next tick places it
            return
        self._placement_timer = loop.call_later(max(0.0, at - time.time()), self._place_due)

    def _place_due(self) -> None:
        self._placement_timer = None
        try:
            self._core.place_due()
        except Exception:
            logger.exception("creating held placement groups failed; the tick retries")
        self._schedule_placement()

    async def _wait_changed(self, timeout_s: float) -> None:
        changed = self._changed
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)

    def _ensure_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._background())
        if not self._grpc_tried:
            self._grpc_tried = True
            self._grpc = self._start_grpc()

    def _gauges_at_scrape(self) -> MetricsSnapshot:
        """From the metrics server's thread: gauges computed on the loop now, so that a
        scrape agrees with a status read just before it; the last second's if the loop
        does not answer in ``SCRAPE_WAIT_S`` (their timestamp gauge says how old)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return self._metrics_snapshot

        async def compute() -> MetricsSnapshot:
            self._metrics_snapshot = self._core.metrics_snapshot()
            return self._metrics_snapshot

        future = asyncio.run_coroutine_threadsafe(compute(), loop)
        try:
            return future.result(SCRAPE_WAIT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
        except Exception:
            logger.exception("computing the gauges failed; serving the last ones")
        return self._metrics_snapshot

    def _observe_cycle(self, duration_s: float, decisions: list[Decision]) -> None:
        if self._core.cut_short:
            self._metrics.observe_cut_short()
        if decisions:
            self._metrics.observe_cycle(duration_s, decisions, self._core.workload, time.time())

    def _start_grpc(self) -> Any:
        """Serve the gRPC API on ``RAY_QUEUE_GRPC_PORT`` (50051; ``off`` disables)."""
        # gRPC is a layer above the manager (it serves ManagerCore): the actor reaches it
        # only here, when the first call arrives, so that the manager does not import it.
        # Listed as an exception, with its reason, in pyproject.toml's import contracts.
        from ray_queue.grpc.manager_backend import start_grpc_server
        from ray_queue.grpc.server import PORT_ENV

        if os.environ.get(PORT_ENV) == "off":
            return None
        try:
            return start_grpc_server(self._core, asyncio.get_running_loop())
        except Exception:
            logger.exception("gRPC API not started; the actor API still works")
            return None

    async def _background(self) -> None:
        slow_every = max(1, round(SLOW_TICK_S / TICK_S))
        n = 0
        while True:
            try:
                self._core.tick()
                self._apply_placements()
                if n % slow_every == 0:
                    # The gauges' snapshot each second, whatever Ray's GCS is doing.
                    self._metrics_snapshot = self._core.metrics_snapshot()
                    if self._ray_reads is None or self._ray_reads.done():
                        loop = asyncio.get_running_loop()
                        self._ray_reads = loop.create_task(self._slow_tick())
                    self._core.audit_placement_groups(limit=PG_AUDIT_PER_TICK)
                if n % (slow_every * 60) == 0:
                    self._core.forget_finished(older_than_s=self._retention_s)
            except Exception:
                logger.exception("manager background tick failed; continuing")
            n += 1
            await asyncio.sleep(TICK_S)

    async def _slow_tick(self) -> None:
        """Node shapes, owners' deaths and job states. The GCS reads run in a thread:
        while a node dies they took up to 17 s on a loaded machine, and on the loop they
        held up every request and left /metrics that far behind the gRPC status (soak)."""
        try:
            self._core.set_nodes(await asyncio.to_thread(node_shapes))
            now = time.monotonic()
            if now - self._holdings_read_at >= HOLDINGS_EVERY_S and self._core.unmanaged_usage():
                self._holdings_read_at = now
                self._core.set_ray_holdings(await asyncio.to_thread(ray_job_holdings))
            for owner in await asyncio.to_thread(dead_owners, self._core.owners()):
                self._core.cancel_owner(owner, message=f"its driver (Ray job {owner}) exited")
            if self._core.has_jobs():
                self._core.job_states(
                    self._adapter.jobs(),
                    self._adapter.job_submission_failures(),
                    self._adapter.job_messages(),
                )
        except Exception:
            logger.exception("manager slow tick failed; continuing")

    def _placements_answered(self) -> None:
        """From a desk thread: Ray answered; apply it on the loop (the tick does,
        until the loop is known)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.call_later, PLACEMENT_BATCH_S, self._apply_placements)

    def _apply_placements(self) -> None:
        answers = self._desk.take()
        if answers:
            self._core.placements_settled(
                created=answers.created, refused=answers.refused, placed=answers.placed
            )

    # -- requests (each one runs to completion on the loop: the manager's lock) ----------------
    #
    # Every request but ``ping`` names its caller with ``credential``
    # (see ``access_guard``). Another tenant's workloads answer as unknown ones do, so a
    # tenant learns nothing of them, not even that they exist. A tenant's bare ids are in
    # its namespace (``access/namespaces.py``).

    def _visible(self, principal: Principal, workload: WorkloadId) -> _Status:
        for whole in namespaces.candidates(principal.namespace, workload):
            try:
                status = self._core.workload(whole)
            except UnknownWorkloadError:
                continue
            if principal.may_use_queue(status.spec.queue):
                return status
        raise UnknownWorkloadError(f"no workload with id {workload!r}")

    def _mine(self, principal: Principal, workload: WorkloadId) -> WorkloadId | None:
        """The whole id of the caller's ``workload``; ``None`` if it may not see one."""
        try:
            return self._visible(principal, workload).spec.id
        except UnknownWorkloadError:
            return None

    async def ping(self) -> str:
        self._ensure_loop()
        return self._core.epoch

    async def pid(self) -> int:
        return os.getpid()

    async def submit_many(
        self,
        requests: Sequence[SubmitRequest],
        brief: bool = False,
        *,
        credential: str | None = None,
    ) -> list[SubmitResult]:
        self._ensure_loop()
        principal = self._guard.caller(credential)
        checked = [_checked_request(principal, r) for r in requests]
        allowed = [r for r in checked if isinstance(r, SubmitRequest)]
        results = iter(self._core.submit_many(allowed, brief=brief))
        return [next(results) if isinstance(r, SubmitRequest) else r for r in checked]

    async def cancel(
        self, workloads: Sequence[WorkloadId], message: str = "", *, credential: str | None = None
    ) -> list[bool]:
        self._ensure_loop()
        principal = self._guard.caller(credential)
        whole = [self._mine(principal, w) for w in workloads]
        done = iter(self._core.cancel([w for w in whole if w is not None], message=message))
        return [next(done) if w is not None else False for w in whole]

    async def report(
        self,
        started: Sequence[WorkloadId] = (),
        finished: Sequence[tuple[WorkloadId, bool, str]] = (),
        handovers: Sequence[HandOver] = (),
        *,
        credential: str | None = None,
    ) -> None:
        self._ensure_loop()
        principal = self._guard.caller(credential)
        if not principal.sees_all_queues:
            # Reports of workloads that are not the caller's change nothing, as reports of
            # forgotten ones never did (refusing the batch would make a client resend it).
            mine = functools.partial(self._mine, principal)
            started = [w for w in map(mine, started) if w is not None]
            finished = [
                (whole, failed, why)
                for w, failed, why in finished
                if (whole := mine(w)) is not None
            ]
            handovers = [
                dataclasses.replace(h, done=done, successor=successor)
                for h in handovers
                if (done := mine(h.done)) and (successor := mine(h.successor))
            ]
        self._core.report(started=started, finished=finished, handovers=handovers)

    async def apply_config(self, config: QueueConfig, *, credential: str | None = None) -> int:
        """Returns how many workloads the new config evicted (HoldAndDrain)."""
        self._ensure_loop()
        self._guard.require(self._guard.caller(credential), "applying a config")
        return len(self._core.apply_config(config))

    async def get_config(self, *, credential: str | None = None) -> QueueConfig:
        self._guard.require(self._guard.caller(credential), "reading the config")
        return self._core.config

    async def catalog(self, *, credential: str | None = None) -> Catalog:
        """The Queue and priority class names a caller may use (what ``init`` checks)."""
        principal = self._guard.caller(credential)
        config = self._core.config
        return Catalog(
            queues=frozenset(q for q in config.queues if principal.may_use_queue(q)),
            priority_classes=frozenset(config.priority_classes),
            restricted=not principal.sees_all_queues,
            namespace=principal.namespace,
        )

    async def set_check_state(
        self,
        workload: WorkloadId,
        check: str,
        state: CheckState,
        message: str = "",
        *,
        credential: str | None = None,
    ) -> None:
        principal = self._guard.caller(credential)
        self._guard.require(principal, "reporting an admission check", Role.AUTOSCALER)
        self._core.set_check_state(workload, check, state, message)

    async def evict(
        self, workload: WorkloadId, reason: str, message: str, *, credential: str | None = None
    ) -> None:
        principal = self._guard.caller(credential)
        self._guard.require(principal, "evicting a workload", Role.AUTOSCALER)
        self._core.evict(workload, reason=reason, message=message)

    async def status(self, *, credential: str | None = None) -> ManagerStatus:
        self._ensure_loop()
        principal = self._guard.caller(credential)
        status = self._core.status()
        cqs = scope.cluster_queues_of(principal, self._core.config)
        cohorts = scope.cohorts_of(principal, self._core.config)
        if cqs is None or cohorts is None:
            return status
        return dataclasses.replace(
            status,
            cluster_queues=tuple(c for c in status.cluster_queues if c.name in cqs),
            cohorts=tuple(c for c in status.cohorts if c.name in cohorts),
        )

    async def workload(self, workload: WorkloadId, *, credential: str | None = None) -> _Status:
        return self._visible(self._guard.caller(credential), workload)

    async def workloads(
        self,
        owner: str | None = None,
        ids: Sequence[WorkloadId] | None = None,
        *,
        credential: str | None = None,
    ) -> list[_Status]:
        principal = self._guard.caller(credential)
        if ids is not None:
            ids = [whole for w in ids for whole in namespaces.candidates(principal.namespace, w)]
        return [
            s
            for s in self._core.workloads(owner=owner, ids=ids)
            if principal.may_use_queue(s.spec.queue)
        ]

    async def pending(
        self,
        queue: str | None = None,
        cluster_queue: str | None = None,
        *,
        credential: str | None = None,
    ) -> list[PendingPosition]:
        principal = self._guard.caller(credential)
        return [
            p
            for p in self._core.pending(queue=queue, cluster_queue=cluster_queue)
            if principal.may_use_queue(p.queue)
        ]

    async def demand(self, *, credential: str | None = None) -> list[GangDemand]:
        principal = self._guard.caller(credential)
        self._guard.require(principal, "reading demand", Role.AUTOSCALER)
        return self._core.demand()

    async def nodes(self, *, credential: str | None = None) -> list[Any]:
        principal = self._guard.caller(credential)
        self._guard.require(principal, "reading nodes", Role.AUTOSCALER)
        return list(self._core.nodes())

    async def wait_events(
        self,
        owner: str,
        after_seq: int,
        epoch: str | None,
        timeout_s: float = 10.0,
        *,
        credential: str | None = None,
    ) -> EventBatch:
        """Long poll: return as soon as ``owner`` has events after ``after_seq``."""
        self._ensure_loop()
        principal = self._guard.caller(credential)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            batch = self._core.events(owner, after_seq=after_seq, epoch=epoch)
            if not principal.sees_all_queues:
                events = tuple(e for e in batch.events if self._mine(principal, e.workload))
                batch = dataclasses.replace(batch, events=events)
            remaining = deadline - asyncio.get_running_loop().time()
            if batch.events or batch.resync or remaining <= 0:
                return batch
            await self._wait_changed(remaining)

    async def wait_placed(
        self, workload: WorkloadId, timeout_s: float | None = None, *, credential: str | None = None
    ) -> bool:
        """Resolve when the workload is admitted and placed (False if it ended first)."""
        self._ensure_loop()
        principal = self._guard.caller(credential)
        workload = self._visible(principal, workload).spec.id
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            status = self._core.workload(workload)
            if status.placed:
                return True
            if status.state.is_terminal:
                return False
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await self._wait_changed(1.0 if remaining is None else remaining)


def _checked_request(principal: Principal, request: SubmitRequest) -> SubmitRequest | SubmitResult:
    """``request`` with its whole id, or the refusal to answer with in its place."""
    if not principal.may_use_queue(request.queue):
        error = PermissionDeniedError(
            f"token {principal.name!r} may not use Queue {request.queue!r}"
        )
        return SubmitResult(request.id, error=error)
    try:
        whole = namespaces.for_submission(principal.namespace, request.id, field="id")
    except PermissionDeniedError as e:
        return SubmitResult(request.id, error=e)
    if request.parent is not None and (why := attach_refusal(principal, request.parent)):
        return SubmitResult(request.id, error=PermissionDeniedError(why))
    return dataclasses.replace(request, id=whole) if whole != request.id else request


def start_manager(
    config: QueueConfig | None = None,
    *,
    state_path: str | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    """Get the manager actor, creating it (detached, on the head node) if absent.

    Racing drivers end up with the same actor (``get_if_exists``). ``env`` (ports, token
    file, TLS files: the ``RAY_QUEUE_*`` variables) is set in the actor's process, and
    stays set when Ray restarts it.
    """
    actor_cls = ray.remote(QueueManager)
    return actor_cls.options(
        name=MANAGER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        max_concurrency=1000,
        num_cpus=0,
        # The head's own resource, not its node id: after a head restart Ray must be able
        # to restart the manager on the new head.
        resources=on_the_head(),
        runtime_env={"env_vars": env} if env else None,
    ).remote(pack_config(config) if config is not None else None, state_path)


def find_manager() -> Any | None:
    try:
        return ray.get_actor(MANAGER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
