"""The reconcile loop: read everything, plan, act; one log line per pass.

Restart safety comes from holding no state between passes: demand, groups and requests
are read fresh every time, and the planner counts what was already asked for (replicas
not yet joined, requests already made) as on its way, so repeating a pass — or starting
a new process mid-way — never asks twice. Actions run in an order that keeps a crash
between any two of them harmless: capacity first, then the reports that depend on it,
then clean-up. A failing pass is retried with jittered exponential back-off (``retry``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoscaler.metrics import Metrics
from autoscaler.planner import Plan, PlannerConfig, plan
from autoscaler.providers.base import GangGroup, NodeProvider, ProviderError, WorkerGroup
from autoscaler.requests import RequestSpec, RequestView
from autoscaler.retry import Backoff
from autoscaler.sources import DemandSource, SourceError
from ray_queue.engine.clock import Clock, SystemClock
from ray_queue.wire import WorkerGroupShape

logger = logging.getLogger(__name__)


class GangGroupProvider(Protocol):
    """Providers that can add a worker group per gang (KubeRay). Idempotent: creating a
    group that exists, or removing one that does not, is a no-op."""

    def create_gang_group(self, group: GangGroup) -> None: ...

    def remove_group(self, name: str) -> None: ...


class RequestClient(Protocol):
    """ProvisioningRequests (and their PodTemplates) the autoscaler made.

    ``read()`` is a fresh read. ``create`` is idempotent (an existing request of that
    name is left alone); ``delete`` of a missing request is a no-op.
    """

    def read(self) -> Sequence[RequestView]: ...

    def create(self, spec: RequestSpec, group: WorkerGroup) -> None: ...

    def delete(self, name: str) -> None: ...

    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Delete leftovers (PodTemplates) of requests not in ``keep``."""
        ...


@dataclass(frozen=True, slots=True)
class LoopConfig:
    #: Seconds between passes (Ray's own autoscaler runs every 5 s).
    interval_s: float = 1.0
    #: Longest wait after repeated failures.
    max_backoff_s: float = 30.0
    planner: PlannerConfig = field(default_factory=PlannerConfig)


@dataclass(frozen=True, slots=True)
class PassResult:
    plan: Plan
    read_s: float
    plan_s: float
    act_s: float


class Reconciler:
    """One autoscaler: a source, a provider, optionally a request client."""

    def __init__(
        self,
        source: DemandSource,
        provider: NodeProvider,
        *,
        requests: RequestClient | None = None,
        config: LoopConfig | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``rng`` draws the jitter of the back-off after failed passes (seed it in tests)."""
        self._source = source
        self._provider = provider
        self._requests = requests
        self._config = config or LoopConfig()
        self._clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.passes = 0
        self._rng = rng or random.Random()
        # Twice the interval after the first failure, doubling up to the maximum.
        self._backoff = Backoff(
            base_s=min(2 * self._config.interval_s, self._config.max_backoff_s),
            max_s=self._config.max_backoff_s,
        )

    def run_once(self) -> PassResult:
        """One pass. Raises ``ProviderError`` / ``SourceError`` if it could not finish;
        whatever it did before that is safe to repeat."""
        started = time.perf_counter()
        demand = self._source.demand()
        groups = self._provider.groups()
        # Every pass, not only on change: a restarted manager has forgotten them.
        self._source.report_worker_groups(
            [WorkerGroupShape(g.name, dict(g.shape)) for g in groups if g.gang_of is None]
        )
        requests = list(self._requests.read()) if self._requests is not None else []
        pending = getattr(self._provider, "pending_gangs", None)
        ray_pending = pending() if pending is not None else None
        read_done = time.perf_counter()
        the_plan = plan(
            demand,
            groups,
            requests,
            now=self._clock.now(),
            config=self._config.planner,
            ray_pending=ray_pending,
        )
        plan_done = time.perf_counter()
        self._act(the_plan, groups)
        if self._requests is not None:
            kept = {r.name for r in requests} | {s.name for s in the_plan.create_requests}
            self._requests.sweep(kept - set(the_plan.delete_requests))
        done = time.perf_counter()
        self.passes += 1
        self._record(the_plan, groups, requests)
        result = PassResult(the_plan, read_done - started, plan_done - read_done, done - plan_done)
        self.metrics.pass_seconds.observe(done - started)
        logger.info(
            "autoscaler pass",
            extra={
                "pass": self.passes,
                "read_ms": round(result.read_s * 1e3, 1),
                "plan_ms": round(result.plan_s * 1e3, 1),
                "act_ms": round(result.act_s * 1e3, 1),
                "gangs": len(demand.gangs),
                "plan": _summary(the_plan),
            },
        )
        return result

    def run(self, stop: threading.Event, *, wake: threading.Event | None = None) -> None:
        """Pass after pass until ``stop`` is set; back off on failures. A set ``wake``
        (new demand) starts the next pass early, so a new gang waits no full interval."""
        failures = 0
        while not stop.is_set():
            try:
                self.run_once()
                failures = 0
                wait = self._config.interval_s
            except (ProviderError, SourceError) as exc:
                failures += 1
                kind = getattr(exc, "kind", "source")
                self.metrics.errors.labels(kind=kind).inc()
                wait = self._backoff.delay(failures, self._rng)
                logger.warning(
                    "autoscaler pass failed; retrying",
                    extra={"kind": kind, "error": str(exc), "wait_s": round(wait, 2)},
                )
            if wake is None or failures:
                stop.wait(wait)
            else:
                wake.wait(wait)
                wake.clear()

    # -- acting ----------------------------------------------------------------------------

    def _act(self, the_plan: Plan, groups: Sequence[WorkerGroup]) -> None:
        by_name = {g.name: g for g in groups}
        for up in the_plan.scale_ups:
            with self._timed("scale_up"):
                self._provider.set_replicas(up.group, up.to_replicas, expected=up.from_replicas)
        for deletion in the_plan.deletions:
            with self._timed("delete_workers"):
                self._provider.delete_workers(deletion.group, deletion.workers)
        gangs = self._gang_provider() if the_plan.create_groups or the_plan.remove_groups else None
        if self._requests is not None:
            for spec in the_plan.create_requests:
                with self._timed("create_request"):
                    self._requests.create(spec, by_name[spec.group])
        if gangs is not None:
            for group in the_plan.create_groups:
                with self._timed("create_group"):
                    gangs.create_gang_group(group)
        # Reports only after the capacity they announce was asked for.
        for report in the_plan.reports:
            self._source.report_check(report.workload, report.check, report.state, report.message)
            self.metrics.actions.labels(kind=f"report_{report.state.value}").inc()
        for eviction in the_plan.evictions:
            self._source.evict(eviction.workload, eviction.message)
            self.metrics.actions.labels(kind="evict").inc()
        # Clean-up last: a request is deleted only after its Retry/eviction was reported.
        if gangs is not None:
            for name in the_plan.remove_groups:
                with self._timed("remove_group"):
                    gangs.remove_group(name)
        if self._requests is not None:
            for name in the_plan.delete_requests:
                with self._timed("delete_request"):
                    self._requests.delete(name)

    def _gang_provider(self) -> GangGroupProvider:
        if not hasattr(self._provider, "create_gang_group"):
            raise ProviderError(
                f"{type(self._provider).__name__} cannot add per-gang worker groups"
            )
        # Checked just above: mypy does not narrow to a Protocol by `hasattr`.
        return self._provider  # type: ignore[return-value]

    def _timed(self, action: str) -> _Timer:
        self.metrics.actions.labels(kind=action).inc()
        return _Timer(self.metrics, action)

    def _record(
        self,
        the_plan: Plan,
        groups: Sequence[WorkerGroup],
        requests: Sequence[RequestView],
    ) -> None:
        ready = {g.name: sum(1 for n in g.nodes if n.ray_node_id is not None) for g in groups}
        self.metrics.set_groups(the_plan.desired, ready)
        phases: dict[str, int] = {}
        for request in requests:
            phases[request.phase.value] = phases.get(request.phase.value, 0) + 1
        self.metrics.set_requests(phases)
        unplaceable: dict[str, int] = {g.name: 0 for g in groups}
        for group, _ in the_plan.unplaceable:
            unplaceable[group] = unplaceable.get(group, 0) + 1
        for group, count in unplaceable.items():
            self.metrics.unplaceable.labels(group=group).set(count)


class _Timer:
    def __init__(self, metrics: Metrics, action: str) -> None:
        self._metrics = metrics
        self._action = action
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._metrics.patch_seconds.labels(action=self._action).observe(
            time.perf_counter() - self._start
        )
        if exc is not None:
            self._metrics.errors.labels(kind=getattr(exc, "kind", "action")).inc()


def _summary(the_plan: Plan) -> str:
    parts = []
    for up in the_plan.scale_ups:
        parts.append(f"scale {up.group} {up.from_replicas}->{up.to_replicas}")
    for deletion in the_plan.deletions:
        parts.append(f"delete {deletion.group}:{','.join(deletion.workers)}")
    parts += [f"create request {s.name}" for s in the_plan.create_requests]
    parts += [f"create group {g.name}" for g in the_plan.create_groups]
    parts += [f"report {r.workload} {r.state.value}" for r in the_plan.reports]
    parts += [f"evict {e.workload}" for e in the_plan.evictions]
    parts += [f"remove group {n}" for n in the_plan.remove_groups]
    parts += [f"delete request {n}" for n in the_plan.delete_requests]
    if the_plan.unplaceable:
        parts.append(f"{len(the_plan.unplaceable)} unplaceable")
    return "; ".join(parts) or "nothing to do"
