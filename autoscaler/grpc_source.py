"""``GrpcSource``: demand from the manager's AutoscalerService (the sidecar's mode).

A background thread follows the ``WatchDemand`` stream and keeps the latest snapshot, so
a reconcile pass reads demand without a round trip and a new demand wakes the loop at
once (``changed``). The stream's gangs carry their attempt number, but neither the
flavor's worker group nor the provisioning check; those come from the manager's config
(``GetConfig``, re-read every ``config_refresh_s``) and the workload (``GetWorkload``,
only for all-at-once gangs, which are few), and the same ``enrich`` as in-process mode
fills them in. If the stream breaks it is re-opened with back-off; until the first
snapshot arrives ``demand()`` raises ``SourceError`` so the loop never plans from nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from autoscaler.demand import Demand
from autoscaler.retry import Backoff
from autoscaler.sources import Overrides, SourceError, enrich
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import CheckState, GangDemand, WorkloadId
from ray_queue.wire import WorkerGroupShape

logger = logging.getLogger(__name__)


class GrpcSource:
    """Thread-safe: the watch thread writes the snapshot under a lock; passes read it."""

    def __init__(
        self,
        client: Any,
        *,
        overrides: Overrides | None = None,
        config_refresh_s: float = 30.0,
        max_backoff_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        """``rng`` draws the jitter of the reconnect back-off (seed it in tests)."""
        #: A ``ray_queue.grpc.client.QueueClient`` (or anything with the same methods).
        self._client = client
        self._overrides = overrides or Overrides()
        self._config_refresh_s = config_refresh_s
        # 0.4 s after the first break, doubling up to ``max_backoff_s``.
        self._backoff = Backoff(base_s=min(0.4, max_backoff_s), max_s=max_backoff_s)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._gangs: tuple[GangDemand, ...] | None = None
        self._config: QueueConfig | None = None
        self._config_at = 0.0
        self._may_read_workloads = True
        self._may_read_config = True
        self._stop = threading.Event()
        #: Set whenever a new snapshot arrives; the loop may wait on it between passes.
        self.changed = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="demand-watch", daemon=True)

    def start(self) -> GrpcSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- DemandSource ------------------------------------------------------------------------

    def demand(self) -> Demand:
        with self._lock:
            gangs = self._gangs
        if gangs is None:
            raise SourceError("no demand snapshot from the manager yet")
        config = self._current_config()
        out = []
        for gang in gangs:
            status = None
            if gang.all_at_once and self._may_read_workloads:
                try:
                    status = self._client.workload(gang.workload)
                except Exception as exc:
                    if not _denied(exc):
                        raise SourceError(f"cannot read workload {gang.workload}: {exc}") from exc
                    self._may_read_workloads = False
                    logger.warning(
                        "this token may not read workloads; all-at-once gangs use "
                        "--provisioning-check",
                        extra={"error": str(exc)},
                    )
            out.append(enrich(gang, config, status, self._overrides))
        return Demand.of(out)

    def report_check(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> None:
        try:
            self._client.report_check(workload, check, state, message)
        except Exception as exc:
            if type(exc).__name__ == "UnknownWorkloadError":
                return  # forgotten by the manager: nothing waits on the report
            raise SourceError(f"report {state.value} for {workload} failed: {exc}") from exc

    def evict(self, workload: WorkloadId, message: str) -> None:
        try:
            self._client.evict(workload, reason="CapacityRevoked", message=message)
        except Exception as exc:
            # Already evicted or forgotten: a retried report finds nothing to do.
            if type(exc).__name__ in ("UnknownWorkloadError", "InvalidTransitionError"):
                return
            raise SourceError(f"evict {workload} failed: {exc}") from exc

    def report_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        try:
            self._client.report_worker_groups(groups)
        except Exception as exc:
            raise SourceError(f"reporting worker group shapes failed: {exc}") from exc

    # -- plumbing ----------------------------------------------------------------------------

    def _current_config(self) -> QueueConfig:
        now = time.monotonic()
        last = self._config
        fresh = now - self._config_at <= self._config_refresh_s
        if last is not None and (fresh or not self._may_read_config):
            return last
        self._config = self._read_config(last)
        self._config_at = now
        return self._config

    def _read_config(self, last: QueueConfig | None) -> QueueConfig:
        from ray_queue.engine.config_loader import parse_yaml

        try:
            return parse_yaml(self._client.config_yaml())
        except Exception as exc:
            if _denied(exc):
                # An autoscaler token may call only the AutoscalerService: flavors map
                # to groups through --worker-group alone. Tokens do not change while
                # the sidecar runs, so it neither asks nor warns again.
                logger.warning(
                    "this token may not read the config; using only --worker-group mappings",
                    extra={"error": str(exc)},
                )
                self._may_read_config = False
                return QueueConfig()
            if last is None:
                raise SourceError(f"cannot read the manager's config: {exc}") from exc
            logger.warning("config refresh failed; keeping the last one", extra={"error": str(exc)})
            return last

    def _follow(self) -> None:  # the watch thread
        failures = 0
        while not self._stop.is_set():
            try:
                for snapshot in self._client.watch_demand(timeout_s=None):
                    with self._lock:
                        self._gangs = tuple(snapshot.gangs)
                    self.changed.set()
                    failures = 0
                    if self._stop.is_set():
                        return
            except Exception as exc:
                failures += 1
                wait = self._backoff.delay(failures, self._rng)
                logger.warning(
                    "demand stream broke; reconnecting",
                    extra={"error": str(exc), "failures": failures, "wait_s": round(wait, 2)},
                )
                self._stop.wait(wait)
            else:
                self._stop.wait(0.2)


def _denied(exc: BaseException) -> bool:
    """The manager refused this caller (a token scoped to the AutoscalerService)."""
    return type(exc).__name__ == "PermissionDeniedError" or "PERMISSION_DENIED" in str(exc)
