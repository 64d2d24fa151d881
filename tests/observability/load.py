"""A busy ray-queue in one process: the real engine, metrics and autoscaler under load.

Why this exists: the dashboard test needs every panel's query to return data, which means
a manager and an autoscaler that have queued, admitted, borrowed, preempted, evicted,
rejected, scaled and provisioned — and both serving ``/metrics`` to a real Prometheus.
The manager's HTTP endpoint is not wired into the Ray actor yet, so this runs what the
actor would: the real ``Engine`` fed by a seeded workload generator, its decisions counted
by the real ``QueueMetrics`` and its gauges read at scrape time; and the real autoscaler
``Reconciler`` (real planner, real ``InProcessSource``) against a simulated KubeRay
cluster and simulated ProvisioningRequests, with its real ``Metrics``. Both registries are
served by ``prometheus_client.start_http_server`` on free loopback ports.

Time runs ``SPEED`` times faster than the wall clock so that minutes of queueing (the
admission-wait histograms, back-offs, idle timeouts) happen within a short test.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.metrics import Metrics as AutoscalerMetrics
from autoscaler.planner import GangGroup, PlannerConfig
from autoscaler.providers.base import ConflictError, TransientError, WorkerGroup, WorkerNode
from autoscaler.requests import Phase, RequestSpec, RequestView
from autoscaler.sources import InProcessSource
from ray_queue.engine import Engine
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.model import (
    BundleGroup,
    CheckState,
    Decision,
    DecisionKind,
    GangDemand,
    WorkloadId,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
    to_milli,
)
from ray_queue.metrics import MetricsSnapshot, QueueMetrics

logger = logging.getLogger(__name__)

#: Simulated seconds per wall-clock second.
SPEED = 20.0
#: Simulated seconds from admission to the bundles being on nodes.
PLACE_DELAY_S = 8.0
#: Simulated seconds a worker takes to join after the group grows.
JOIN_DELAY_S = 10.0
#: Simulated seconds before a ProvisioningRequest gets its verdict.
PROVISION_DELAY_S = 15.0

CONFIG_YAML = """
apiVersion: ray-queue.io/v1alpha1
kind: Configuration
spec:
  waitForPodsReady:
    enable: true
    timeout: 10m
    requeuingStrategy: {backoffLimitCount: 2, backoffBaseSeconds: 5, backoffMaxSeconds: 60}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: cpu}
spec: {nodeLabels: {ray.io/node-group: cpu-workers}, workerGroup: cpu-workers}
---
apiVersion: ray-queue.io/v1alpha1
kind: ResourceFlavor
metadata: {name: a100}
spec:
  nodeLabels: {ray.io/node-group: gpu-workers}
  workerGroup: gpu-workers
  provisioning: all-at-once
---
apiVersion: ray-queue.io/v1alpha1
kind: AdmissionCheck
metadata: {name: gpu-provisioning}
spec:
  controllerName: kueue.x-k8s.io/provisioning-request
  parameters: {provisioningClassName: queued-provisioning.gke.io}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {name: org}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {name: production}
spec: {parentName: org, fairSharing: {weight: 2}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Cohort
metadata: {name: research}
spec: {parentName: org}
---
{team_a}
---
{team_b}
---
{team_c}
---
{team_d}
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: ray-queue.io/v1alpha1
kind: PriorityClass
metadata: {name: low}
value: 10
globalDefault: true
"""

_CQ = """apiVersion: ray-queue.io/v1alpha1
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  cohortName: {cohort}
  resourceGroups:
  - coveredResources: [CPU, GPU]
    flavors:
    - name: cpu
      resources:
      - {{name: CPU, nominalQuota: {cpu}, borrowingLimit: {borrow}, lendingLimit: {lend}}}
      - {{name: GPU, nominalQuota: 0, borrowingLimit: 0}}
    - name: a100
      resources:
      - {{name: CPU, nominalQuota: {gpu_cpu}, borrowingLimit: 16}}
      - {{name: GPU, nominalQuota: {gpu}, borrowingLimit: 4}}
  admissionChecksStrategy:
    admissionChecks:
    - {{name: gpu-provisioning, onFlavors: [a100]}}
  # reclaimWithinCohort: Any livelocks the engine under this load (a preemption cycle
  # inside one schedule() call; reported to the engine's owner): LowerPriority until fixed.
  preemption: {{withinClusterQueue: LowerPriority, reclaimWithinCohort: LowerPriority}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: {name}-jobs}}
spec: {{clusterQueue: {name}}}
---
apiVersion: ray-queue.io/v1alpha1
kind: Queue
metadata: {{name: {name}-notebooks}}
spec: {{clusterQueue: {name}}}"""

#: (ClusterQueue, cohort, CPU nominal, borrowing limit, lending limit, GPU nominal).
TEAMS = (
    ("team-a", "production", 16, 16, 8, 4),
    ("team-b", "production", 12, 12, 6, 4),
    ("team-c", "research", 8, 8, 4, 0),
    ("team-d", "research", 8, 8, 8, 0),
)


def queue_config() -> QueueConfig:
    """The config under load: two cohorts under one root, four ClusterQueues, GPU gangs
    behind a provisioning check, every quota knob set so every quota gauge has series."""
    docs = {
        f"team_{name[-1]}": _CQ.format(
            name=name,
            cohort=cohort,
            cpu=cpu,
            borrow=borrow,
            lend=lend,
            gpu=gpu,
            gpu_cpu=gpu * 4,
        )
        for name, cohort, cpu, borrow, lend, gpu in TEAMS
    }
    text = CONFIG_YAML
    for key, doc in docs.items():
        text = text.replace("{" + key + "}", doc)
    return load_config(text)


class ScaledClock:
    """Simulated seconds: ``SPEED`` times the wall clock since start."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._start = start
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * SPEED


class LockedManager:
    """What the autoscaler's ``InProcessSource`` sees: the engine behind the manager's lock,
    with every decision an autoscaler report causes counted, as the manager would."""

    def __init__(
        self,
        engine: Engine,
        lock: threading.Lock,
        metrics: QueueMetrics,
        clock: ScaledClock,
        on_decisions: Callable[[Sequence[Decision], float], None],
    ) -> None:
        self._engine = engine
        self._lock = lock
        self._metrics = metrics
        self._clock = clock
        self._on_decisions = on_decisions

    @property
    def config(self) -> QueueConfig:
        with self._lock:
            return self._engine.config

    def demand(self) -> list[GangDemand]:
        with self._lock:
            return self._engine.demand()

    def workload(self, workload: WorkloadId) -> WorkloadStatus:
        with self._lock:
            return self._engine.workload(workload)

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> list[Decision]:
        with self._lock:
            decisions = self._engine.set_check_state(workload, check, state, message)
            self._observe(decisions)
            return decisions

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> list[Decision]:
        with self._lock:
            decisions = self._engine.evict(workload, reason=reason, message=message)
            self._observe(decisions)
            return decisions

    def _observe(self, decisions: Sequence[Decision]) -> None:
        now = self._clock.now()
        self._metrics.observe_decisions(decisions, self._engine.workload, now)
        self._on_decisions(decisions, now)


@dataclass
class _SimGroup:
    name: str
    shape: Mapping[str, int]
    min_replicas: int
    max_replicas: int
    replicas: int = 0
    gang_of: str | None = None
    #: node name → simulated time it was asked for.
    nodes: dict[str, float] = field(default_factory=dict)


class SimulatedKubeRay:
    """A RayCluster's worker groups as the autoscaler's ``NodeProvider`` sees them.

    Nodes join ``JOIN_DELAY_S`` after the group grows. Every third ``set_replicas``
    loses a race to a simulated concurrent writer (``ConflictError``), as a busy cluster's
    patches sometimes do, and every fortieth read times out (``TransientError``), so the
    error panels have something to show.
    """

    def __init__(self, clock: ScaledClock, busy_nodes: Any) -> None:
        self._clock = clock
        self._busy_nodes = busy_nodes
        self._groups: dict[str, _SimGroup] = {
            "cpu-workers": _SimGroup(
                "cpu-workers", {"CPU": to_milli(8)}, min_replicas=1, max_replicas=8
            ),
            "gpu-workers": _SimGroup(
                "gpu-workers",
                {"CPU": to_milli(16), "GPU": to_milli(4)},
                min_replicas=0,
                max_replicas=2,
            ),
        }
        self._groups["cpu-workers"].replicas = 1
        self._serial = 0
        self._patches = 0
        self._reads = 0

    def groups(self) -> Sequence[WorkerGroup]:
        self._reads += 1
        if self._reads % 40 == 0:
            raise TransientError("reading the RayCluster timed out (simulated)")
        now = self._clock.now()
        out = []
        for group in self._groups.values():
            while len(group.nodes) < group.replicas:
                self._serial += 1
                group.nodes[f"{group.name}-{self._serial}"] = now
            busy = self._busy_nodes(group.name, group.gang_of)
            nodes = []
            for i, (name, asked) in enumerate(sorted(group.nodes.items())):
                joined = now - asked >= JOIN_DELAY_S
                nodes.append(
                    WorkerNode(
                        name=name,
                        ray_node_id=f"{abs(hash(name)):032x}"[:32] if joined else None,
                        # Ray's view: nothing free on a node running work.
                        available=None if not joined else ({} if i < busy else dict(group.shape)),
                        idle_since=None if (not joined or i < busy) else asked + JOIN_DELAY_S,
                        busy=i < busy,
                    )
                )
            out.append(
                WorkerGroup(
                    name=group.name,
                    shape=dict(group.shape),
                    min_replicas=group.min_replicas,
                    max_replicas=group.max_replicas,
                    replicas=group.replicas,
                    labels={"ray.io/node-group": group.name},
                    nodes=tuple(nodes),
                    gang_of=group.gang_of,
                )
            )
        return out

    def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
        self._patches += 1
        target = self._groups[group]
        if self._patches % 3 == 0 or target.replicas != expected:
            raise ConflictError(f"{group}: replicas changed under us (simulated)")
        target.replicas = replicas

    def delete_workers(self, group: str, workers: Sequence[str]) -> None:
        target = self._groups[group]
        gone = [w for w in workers if target.nodes.pop(w, None) is not None]
        target.replicas = max(0, target.replicas - len(gone))

    def create_gang_group(self, group: GangGroup) -> None:
        if group.name in self._groups:
            return
        base = self._groups[group.base]
        self._groups[group.name] = _SimGroup(
            group.name,
            dict(base.shape),
            min_replicas=0,
            max_replicas=group.replicas,
            replicas=group.replicas,
            gang_of=str(group.workload),
        )

    def remove_group(self, name: str) -> None:
        self._groups.pop(name, None)


class SimulatedProvisioning:
    """ProvisioningRequests that get a verdict ``PROVISION_DELAY_S`` after creation. A
    third of the workloads never get capacity (every attempt Failed), so retries,
    evictions and, past the back-off limit, rejections happen; the rest are Provisioned."""

    def __init__(self, clock: ScaledClock) -> None:
        self._clock = clock
        self._requests: dict[str, tuple[RequestSpec, float]] = {}

    def read(self) -> Sequence[RequestView]:
        now = self._clock.now()
        views = []
        for name, (spec, created) in sorted(self._requests.items()):
            phase = Phase.PENDING
            if now - created >= PROVISION_DELAY_S:
                doomed = int(str(spec.workload).rsplit("-", 1)[-1]) % 3 == 0
                phase = Phase.FAILED if doomed else Phase.PROVISIONED
            views.append(
                RequestView(
                    name=name,
                    workload=spec.workload,
                    attempt=spec.attempt,
                    group=spec.group,
                    count=spec.count,
                    phase=phase,
                    message="simulated verdict",
                )
            )
        return views

    def create(self, spec: RequestSpec, group: WorkerGroup) -> None:
        if spec.name not in self._requests:
            self._requests[spec.name] = (spec, self._clock.now())

    def delete(self, name: str) -> None:
        self._requests.pop(name, None)

    def sweep(self, keep: Iterable[str]) -> list[str]:
        # No PodTemplates are simulated, so nothing is ever left over.
        return []


#: (weight, queue suffix, bundles, CPUs per bundle, GPUs per bundle, run seconds)
_SHAPES = (
    (6, "notebooks", 1, 1, 0, 40),
    (4, "jobs", 1, 2, 0, 90),
    (2, "jobs", 2, 4, 0, 120),
    (1, "jobs", 2, 4, 1, 150),  # a GPU gang: all-at-once flavor, provisioning check
)


@dataclass
class LoadStats:
    submitted: int = 0
    cycles: int = 0
    decisions: dict[str, int] = field(default_factory=dict)


class LoadedQueue:
    """The engine, its metrics and an autoscaler under a seeded load, until ``stop()``."""

    def __init__(self, *, seed: int = 7, tick_s: float = 0.05) -> None:
        self.clock = ScaledClock()
        self.lock = threading.Lock()
        self.engine = Engine(queue_config(), self.clock)
        self.queue_registry = CollectorRegistry()
        self.metrics = QueueMetrics(self.queue_registry, self._snapshot)
        self.autoscaler_metrics = AutoscalerMetrics()
        self.stats = LoadStats()
        self._random = random.Random(seed)
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._admitted_at: dict[WorkloadId, float] = {}
        self._placed_until: dict[WorkloadId, float] = {}
        self._flavor_of: dict[WorkloadId, str] = {}
        self._serial = 0
        manager = LockedManager(self.engine, self.lock, self.metrics, self.clock, self._note)
        self.provider = SimulatedKubeRay(self.clock, self._busy_nodes)
        self.reconciler = Reconciler(
            InProcessSource(manager),
            self.provider,
            requests=SimulatedProvisioning(self.clock),
            config=LoopConfig(
                interval_s=0.25, max_backoff_s=1.0, planner=PlannerConfig(idle_timeout_s=60.0)
            ),
            clock=self.clock,
            metrics=self.autoscaler_metrics,
        )
        self._threads: list[threading.Thread] = []
        self._servers: list[Any] = []
        self.queue_port = 0
        self.autoscaler_port = 0

    # -- the manager's side ---------------------------------------------------------------

    def _snapshot(self) -> MetricsSnapshot:
        with self.lock:
            inadmissible: dict[str, int] = {}
            for status in self.engine.workloads():
                if status.state is WorkloadState.PENDING and status.set_aside:
                    cq = status.cluster_queue
                    inadmissible[cq] = inadmissible.get(cq, 0) + 1
            return MetricsSnapshot(
                self.engine.cluster_queue_status(),
                self.engine.cohort_status(),
                self.engine.pending(),
                inadmissible,
            )

    def _busy_nodes(self, group: str, gang_of: str | None) -> int:
        """How many nodes of ``group`` run placed work: a gang group's all while its gang
        runs; a CPU node per two running CPU workloads (read without the lock: a stale
        answer only delays a scale-down by one pass)."""
        running = list(self._placed_until)
        if gang_of is not None:
            return 1_000 if WorkloadId(gang_of) in running else 0
        if group != "cpu-workers":
            return 0
        return -(-sum(1 for w in running if self._flavor_of.get(w) == "cpu") // 2)

    def _submit(self, now: float) -> None:
        for team, *_ in TEAMS:
            # About one submission every 4 simulated seconds per team (one tick is one
            # simulated second): more than the quota can run, so queues build up and
            # borrowing and preemption happen.
            if self._random.random() > 0.25:
                continue
            weights = [s[0] for s in _SHAPES]
            _, suffix, count, cpus, gpus, run_s = self._random.choices(_SHAPES, weights)[0]
            if gpus and team not in ("team-a", "team-b"):
                continue
            self._serial += 1
            wid = WorkloadId(f"{team}-{self._serial}")
            resources = {"CPU": to_milli(cpus)}
            if gpus:
                resources["GPU"] = to_milli(gpus)
            priority = "high" if self._random.random() < 0.2 else "low"
            spec = WorkloadSpec(
                wid,
                f"{team}-{suffix}",
                (BundleGroup(resources, count),),
                now,
                priority_class=priority,
                owner=f"driver-{team}",
                name=f"run-{run_s}",
            )
            self.engine.submit(spec)
            self.stats.submitted += 1

    def _note(self, decisions: Sequence[Decision], now: float) -> None:
        """Follow what holds quota from the decisions themselves (cheap: no scan of every
        workload), wherever they were made: a cycle, or an autoscaler report."""
        for decision in decisions:
            key = f"{decision.kind.value}:{decision.reason}"
            self.stats.decisions[key] = self.stats.decisions.get(key, 0) + 1
            wid = decision.workload
            if decision.kind is DecisionKind.ADMIT:
                self._admitted_at[wid] = now
                admission = decision.admission
                flavors = admission.groups[0].flavors if admission is not None else {}
                self._flavor_of[wid] = next(iter(flavors.values()), "cpu")
            elif decision.kind in (DecisionKind.PREEMPT, DecisionKind.EVICT, DecisionKind.REJECT):
                self._admitted_at.pop(wid, None)
                self._placed_until.pop(wid, None)

    def _advance(self, now: float) -> None:
        """Admitted work lands on nodes after a delay, and finishes after it ran."""
        for wid, admitted in list(self._admitted_at.items()):
            if wid in self._placed_until or now - admitted < PLACE_DELAY_S:
                continue
            if self.engine.mark_placed(wid):
                run_s = float(self.engine.workload(wid).spec.name.removeprefix("run-"))
                self._placed_until[wid] = now + run_s
            else:
                del self._admitted_at[wid]
        for wid, until in list(self._placed_until.items()):
            if now >= until:
                self.engine.finish(wid)
                del self._placed_until[wid]
                self._admitted_at.pop(wid, None)
        if self.stats.cycles % 100 == 0:
            self.engine.forget_finished(older_than=now - 600)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            with self.lock:
                now = self.clock.now()
                self._submit(now)
                started = time.perf_counter()
                decisions = self.engine.schedule()
                duration = time.perf_counter() - started
                self.metrics.observe_cycle(duration, decisions, self.engine.workload, now)
                self.stats.cycles += 1
                self._note(decisions, now)
                self._advance(now)

    def _run_autoscaler(self) -> None:
        self.reconciler.run(self._stop)

    # -- lifecycle --------------------------------------------------------------------------

    def serve(self) -> LoadedQueue:
        """Serve both /metrics endpoints (ports in ``queue_port``, ``autoscaler_port``)."""
        for registry, attr in (
            (self.queue_registry, "queue_port"),
            (self.autoscaler_metrics.registry, "autoscaler_port"),
        ):
            server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
            self._servers.append((server, thread))
            setattr(self, attr, server.server_port)
        return self

    def start(self) -> LoadedQueue:
        """Start the load and the autoscaler (serving /metrics first if not yet)."""
        if not self._servers:
            self.serve()
        for target, name in ((self._run, "rq-load"), (self._run_autoscaler, "rq-autoscaler")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    def __enter__(self) -> LoadedQueue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
