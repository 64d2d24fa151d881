"""Where demand comes from and where check results go: ``DemandSource``.

Two sources with one contract: ``InProcessSource`` wraps an object living in the same
process (an ``Engine`` or a ``ManagerCore``: the embedded/local mode and the tests), and
``GrpcSource`` (``grpc_source.py``) talks to the manager's AutoscalerService. Both turn the
engine's ``GangDemand`` into ``Gang`` here, adding what the autoscaler needs and the
engine's demand does not carry: the flavor's worker group, the provisioning check the gang
waits on and its class, and the attempt number that names its ProvisioningRequest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoscaler.demand import Demand, Gang, gang_from_engine
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.errors import InvalidTransitionError, UnknownWorkloadError
from ray_queue.engine.model import CheckState, GangDemand, WorkloadId, WorkloadStatus
from ray_queue.wire import WorkerGroupShape

logger = logging.getLogger(__name__)

#: Controller names of provisioning admission checks: Kueue's (a Kueue user's files
#: work unchanged) and our own.
PROVISIONING_CONTROLLERS = frozenset(
    {"kueue.x-k8s.io/provisioning-request", "ray-queue.io/provisioning"}
)


class DemandSource(Protocol):
    """The manager, as the autoscaler sees it.

    ``demand()`` is a full snapshot every call (never a delta), so a missed call loses
    nothing. Reports are idempotent on the manager's side: a report for a workload no
    longer waiting on that check is ignored, so the loop may repeat one after a crash.
    Implementations raise ``SourceError`` when the manager cannot be reached.
    """

    def demand(self) -> Demand: ...

    def report_check(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> None: ...

    def evict(self, workload: WorkloadId, message: str) -> None:
        """Capacity behind a running or reserved workload is gone; a workload no longer
        holding quota is ignored."""
        ...

    def report_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        """What one node of each scalable worker group offers, so the manager refuses at
        submission a bundle no node of an autoscaled flavor could ever hold."""
        ...


class SourceError(Exception):
    """The manager could not be asked (down, unreachable, refused)."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What to use when the manager's config does not say (or to override it)."""

    #: flavor → worker group (wins over the flavor's ``worker_group``).
    worker_groups: Mapping[str, str] = field(default_factory=dict)
    #: Class for provisioning checks whose parameters name none.
    default_provisioning_class: str = "queued-provisioning.gke.io"
    #: The provisioning check of all-at-once gangs when the workload cannot be read
    #: (an autoscaler token may call only the AutoscalerService).
    provisioning_check: str | None = None


class _Manager(Protocol):
    """What ``InProcessSource`` needs of an Engine or a ManagerCore."""

    @property
    def config(self) -> QueueConfig: ...

    def demand(self) -> list[GangDemand]: ...

    def workload(self, workload: WorkloadId) -> WorkloadStatus: ...

    def set_check_state(
        self, workload: WorkloadId, check: str, state: CheckState, message: str = ""
    ) -> object: ...

    def evict(self, workload: WorkloadId, *, reason: str, message: str) -> object: ...


class InProcessSource:
    """Reads demand from, and reports to, an Engine or ManagerCore in this process.

    Not thread-safe by itself: the caller serialises access to the wrapped object (the
    manager's event loop, or a test's single thread), exactly as for any other call.
    """

    def __init__(
        self,
        manager: _Manager,
        *,
        overrides: Overrides | None = None,
        on_worker_groups: Callable[[Sequence[WorkerGroupShape]], None] | None = None,
    ) -> None:
        """``on_worker_groups``: where the groups' node shapes go (a ManagerCore's
        ``set_worker_groups``); an Engine alone checks no node shapes."""
        self._manager = manager
        self._overrides = overrides or Overrides()
        self._on_worker_groups = on_worker_groups

    def demand(self) -> Demand:
        config = self._manager.config
        gangs = [
            enrich(d, config, self._manager.workload(d.workload), self._overrides)
            for d in self._manager.demand()
        ]
        return Demand.of(gangs)

    def report_check(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> None:
        self._manager.set_check_state(workload, check, state, message)

    def report_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        if self._on_worker_groups is not None:
            self._on_worker_groups(groups)

    def evict(self, workload: WorkloadId, message: str) -> None:
        try:
            self._manager.evict(workload, reason="CapacityRevoked", message=message)
        except (InvalidTransitionError, UnknownWorkloadError) as exc:
            # It no longer holds quota (finished, already evicted): nothing to take back.
            logger.info("not evicting", extra={"workload": workload, "error": str(exc)})


def enrich(
    demand: GangDemand,
    config: QueueConfig,
    status: WorkloadStatus | None,
    overrides: Overrides,
) -> Gang:
    """The engine's demand plus worker group, provisioning check and class."""
    flavor = config.flavors.get(demand.flavor)
    group = overrides.worker_groups.get(demand.flavor) or (flavor.worker_group if flavor else None)
    check, klass = (None, None)
    if status is not None:
        check, klass = provisioning_check(config, status, demand.flavor)
    elif demand.all_at_once:
        check = overrides.provisioning_check
    return gang_from_engine(
        demand,
        worker_group=group,
        check=check,
        provisioning_class=klass or (overrides.default_provisioning_class if check else None),
        attempt=demand.attempt,
    )


def provisioning_check(
    config: QueueConfig, status: WorkloadStatus, flavor: str
) -> tuple[str | None, str | None]:
    """The provisioning admission check this workload has on ``flavor``, and its class."""
    cq = config.cluster_queues.get(status.cluster_queue)
    if cq is None:
        return None, None
    for ref in cq.admission_checks:
        if ref.on_flavors and flavor not in ref.on_flavors:
            continue
        check = config.admission_checks.get(ref.name)
        if check is None:
            continue
        klass = check.parameters.get("provisioningClassName")
        if check.controller_name in PROVISIONING_CONTROLLERS or klass:
            if status.checks and ref.name not in status.checks:
                continue
            return ref.name, klass
    return None, None


def gangs_from(demand: Sequence[GangDemand]) -> list[Gang]:
    """Bare conversion, for callers with no config (tests, tools)."""
    return [gang_from_engine(d) for d in demand]
