"""The reconcile loop with recording fakes (no Ray, no Kubernetes): order of actions,
back-off on failures, and what a pass records in its metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest

from autoscaler.demand import Demand, Gang
from autoscaler.loop import LoopConfig, Reconciler
from autoscaler.providers.base import GangGroup, PermanentError, TransientError, WorkerGroup
from autoscaler.requests import Phase, RequestSpec, RequestView
from ray_queue.engine.model import CheckState, WorkloadId, WorkloadState
from ray_queue.wire import WorkerGroupShape
from tests.autoscaler.builders import gang, make_group, request, res
from tests.k8s.process import wait_for


class Log:
    def __init__(self) -> None:
        self.entries: list[str] = []

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)


class FakeSource:
    def __init__(self, log: Log, gangs: Sequence[Gang] = ()) -> None:
        self.log = log
        self.gangs = list(gangs)
        self.worker_groups: list[WorkerGroupShape] = []

    def demand(self) -> Demand:
        return Demand.of(self.gangs)

    def report_worker_groups(self, groups: Sequence[WorkerGroupShape]) -> None:
        self.worker_groups = list(groups)

    def report_check(
        self, workload: WorkloadId, check: str, state: CheckState, message: str
    ) -> None:
        self.log(f"report {workload} {check} {state.value}")

    def evict(self, workload: WorkloadId, message: str) -> None:
        self.log(f"evict {workload}")


class FakeProvider:
    """Records calls; applies scale-ups to its groups so a second pass sees them."""

    def __init__(self, log: Log, groups: Sequence[WorkerGroup], failures: int = 0) -> None:
        self.log = log
        self._groups = {g.name: g for g in groups}
        self.failures = failures

    def groups(self) -> list[WorkerGroup]:
        if self.failures:
            self.failures -= 1
            raise TransientError("API server unavailable")
        return list(self._groups.values())

    def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
        self.log(f"scale {group} {expected}->{replicas}")
        self._groups[group] = replace(self._groups[group], replicas=replicas)

    def delete_workers(self, group: str, workers: Sequence[str]) -> None:
        self.log(f"delete {group} {','.join(workers)}")

    def create_gang_group(self, group: GangGroup) -> None:
        self.log(f"create group {group.name}")

    def remove_group(self, name: str) -> None:
        self.log(f"remove group {name}")


class FakeRequests:
    def __init__(self, log: Log, views: Sequence[RequestView] = ()) -> None:
        self.log = log
        self.views = list(views)

    def read(self) -> list[RequestView]:
        return list(self.views)

    def create(self, spec: RequestSpec, group: WorkerGroup) -> None:
        self.log(f"create request {spec.name}")

    def delete(self, name: str) -> None:
        self.log(f"delete request {name}")

    def sweep(self, keep: Iterable[str]) -> list[str]:
        return []


def gpu_gang(state: WorkloadState = WorkloadState.QUOTA_RESERVED) -> Gang:
    return gang("job", res(gpu=2), group="gpu", state=state, all_at_once=True, check="prov")


def gpu_group() -> WorkerGroup:
    return make_group("gpu").shape(res(cpu=8, gpu=4)).max(4).build()


def test_capacity_is_asked_for_before_ready_is_reported() -> None:
    log = Log()
    loop = Reconciler(
        FakeSource(log, [gpu_gang(), gang("etl", res(cpu=4), group="cpu")]),
        FakeProvider(log, [gpu_group(), make_group("cpu").build()]),
        requests=FakeRequests(log, [request("job", Phase.PROVISIONED)]),
    )
    loop.run_once()
    assert log.entries[0] == "scale cpu 0->1"
    assert log.entries[1].startswith("create group gpu-g")
    assert log.entries[2] == "report job prov Ready"


def test_retry_is_reported_before_the_request_is_deleted() -> None:
    log = Log()
    failed = request("job", Phase.FAILED)
    loop = Reconciler(
        FakeSource(log, [gpu_gang()]),
        FakeProvider(log, [gpu_group()]),
        requests=FakeRequests(log, [failed]),
    )
    loop.run_once()
    assert log.entries == ["report job prov Retry", f"delete request {failed.name}"]


def test_a_second_pass_over_the_same_cluster_does_nothing() -> None:
    log = Log()
    provider = FakeProvider(log, [make_group("cpu").build()])
    loop = Reconciler(FakeSource(log, [gang("etl", *[res(cpu=4)] * 3)]), provider)
    assert loop.run_once().plan.scale_ups
    assert loop.run_once().plan.empty
    assert log.entries == ["scale cpu 0->3"]


def test_metrics_after_a_pass() -> None:
    log = Log()
    loop = Reconciler(
        FakeSource(log, [gang("etl", res(cpu=4)), gang("huge", res(cpu=64))]),
        FakeProvider(log, [make_group("cpu").build()]),
    )
    loop.run_once()
    registry = loop.metrics.registry
    assert registry.get_sample_value("ray_queue_autoscaler_desired_replicas", {"group": "cpu"}) == 1
    assert (
        registry.get_sample_value("ray_queue_autoscaler_unplaceable_gangs", {"group": "cpu"}) == 1
    )
    assert (
        registry.get_sample_value(
            "ray_queue_autoscaler_patch_seconds_count", {"action": "scale_up"}
        )
        == 1
    )


@pytest.mark.timeout(30)
def test_run_backs_off_on_transient_failures_and_recovers() -> None:
    log = Log()
    provider = FakeProvider(log, [make_group("cpu").build()], failures=2)
    loop = Reconciler(
        FakeSource(log, [gang("etl", res(cpu=4))]),
        provider,
        config=LoopConfig(interval_s=0.01, max_backoff_s=0.05),
    )
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: loop.passes >= 1, 20, interval_s=0.01, what="a pass to succeed")
    finally:
        stop.set()
        runner.join(timeout=5)
    assert not runner.is_alive()
    assert loop.passes >= 1
    assert (
        loop.metrics.registry.get_sample_value(
            "ray_queue_autoscaler_errors_total", {"kind": "transient"}
        )
        == 2
    )
    assert log.entries == ["scale cpu 0->1"]


def test_permanent_errors_end_the_pass_and_are_raised() -> None:
    class Refusing(FakeProvider):
        def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
            raise PermanentError("forbidden")

    log = Log()
    loop = Reconciler(
        FakeSource(log, [gang("etl", res(cpu=4))]), Refusing(log, [make_group("cpu").build()])
    )
    with pytest.raises(PermanentError):
        loop.run_once()
    assert (
        loop.metrics.registry.get_sample_value(
            "ray_queue_autoscaler_errors_total", {"kind": "permanent"}
        )
        == 1
    )


def test_the_per_pass_line_keeps_its_content(caplog: pytest.LogCaptureFixture) -> None:
    from ray_queue.logs import LogfmtFormatter, parse

    caplog.set_level(logging.INFO, logger="autoscaler.loop")
    log = Log()
    loop = Reconciler(
        FakeSource(log, [gang("etl", res(cpu=4)), gang("more", res(cpu=4))]),
        FakeProvider(log, [make_group("cpu").build()]),
    )
    loop.run_once()
    (line,) = [LogfmtFormatter().format(r) for r in caplog.records if r.name == "autoscaler.loop"]
    fields = parse(line)
    assert (fields["level"], fields["msg"], fields["pass"], fields["gangs"]) == (
        "info",
        "autoscaler pass",
        "1",
        "2",
    )
    assert "scale cpu 0->2" in fields["plan"]
    for phase in ("read_ms", "plan_ms", "act_ms"):
        assert float(fields[phase]) >= 0.0


def test_every_pass_reports_the_groups_node_shapes_but_not_per_gang_copies() -> None:
    log = Log()
    source = FakeSource(log, [gpu_gang()])
    loop = Reconciler(
        source,
        FakeProvider(log, [gpu_group(), make_group("cpu").shape(res(cpu=4)).build()]),
        requests=FakeRequests(log, [request("job", Phase.PROVISIONED)]),
    )
    loop.run_once()
    assert sorted((g.name, dict(g.resources)) for g in source.worker_groups) == [
        ("cpu", dict(res(cpu=4))),
        ("gpu", dict(res(cpu=8, gpu=4))),
    ]
