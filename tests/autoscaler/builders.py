"""Fluent builders for autoscaler test fixtures: gangs, nodes, groups, requests."""

from __future__ import annotations

from dataclasses import replace

from autoscaler.demand import Gang
from autoscaler.providers.base import WorkerGroup, WorkerNode
from autoscaler.requests import Phase, RequestView, request_name
from ray_queue.engine.model import PlacementStrategy, WorkloadId, WorkloadState


def res(cpu: float = 0, gpu: float = 0, tpu: float = 0, **other: float) -> dict[str, int]:
    out = {"CPU": int(cpu * 1000), "GPU": int(gpu * 1000), "TPU": int(tpu * 1000)}
    out.update({k: int(v * 1000) for k, v in other.items()})
    return {k: v for k, v in out.items() if v}


def gang(
    workload: str,
    *bundles: dict[str, int],
    group: str | None = "cpu",
    strategy: PlacementStrategy = PlacementStrategy.PACK,
    state: WorkloadState = WorkloadState.ADMITTED,
    all_at_once: bool = False,
    check: str | None = None,
    attempt: int = 0,
    flavor: str = "default",
) -> Gang:
    return Gang(
        workload=WorkloadId(workload),
        flavor=flavor,
        bundles=tuple(bundles),
        strategy=strategy,
        all_at_once=all_at_once,
        state=state,
        worker_group=group,
        check=check,
        provisioning_class="queued-provisioning.gke.io" if all_at_once else None,
        attempt=attempt,
    )


def node(
    name: str,
    *,
    available: dict[str, int] | None = None,
    idle_since: float | None = None,
    busy: bool = False,
    joined: bool = True,
) -> WorkerNode:
    return WorkerNode(
        name=name,
        ray_node_id=f"id-{name}" if joined else None,
        available=available,
        idle_since=idle_since,
        busy=busy,
    )


class GroupBuilder:
    """``make_group("cpu").shape(res(cpu=4)).replicas(2).max(10).build()``."""

    def __init__(self, name: str) -> None:
        self._group = WorkerGroup(
            name=name, shape=res(cpu=4), min_replicas=0, max_replicas=10, replicas=0
        )

    def shape(self, shape: dict[str, int]) -> GroupBuilder:
        self._group = replace(self._group, shape=shape)
        return self

    def replicas(self, n: int) -> GroupBuilder:
        self._group = replace(self._group, replicas=n)
        return self

    def min(self, n: int) -> GroupBuilder:
        self._group = replace(self._group, min_replicas=n)
        return self

    def max(self, n: int) -> GroupBuilder:
        self._group = replace(self._group, max_replicas=n)
        return self

    def hosts(self, n: int) -> GroupBuilder:
        self._group = replace(self._group, num_of_hosts=n)
        return self

    def nodes(self, *nodes: WorkerNode) -> GroupBuilder:
        self._group = replace(self._group, nodes=tuple(nodes))
        return self

    def deleting(self, *names: str) -> GroupBuilder:
        self._group = replace(self._group, deleting=tuple(names))
        return self

    def gang_of(self, workload: str) -> GroupBuilder:
        self._group = replace(self._group, gang_of=workload)
        return self

    def build(self) -> WorkerGroup:
        return self._group


def make_group(name: str) -> GroupBuilder:
    return GroupBuilder(name)


def request(
    workload: str,
    phase: Phase,
    *,
    group: str = "gpu",
    count: int = 1,
    attempt: int = 0,
    message: str = "",
) -> RequestView:
    wid = WorkloadId(workload)
    return RequestView(
        name=request_name(wid, attempt),
        workload=wid,
        attempt=attempt,
        group=group,
        count=count,
        phase=phase,
        message=message,
    )
