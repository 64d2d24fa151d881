"""The manager's Prometheus metrics, scraped from a registry fed by a real engine."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ray_queue.engine import Engine, ManualClock
from ray_queue.engine.config import (
    ClusterQueue,
    FlavorQuotas,
    Preemption,
    PriorityClass,
    Queue,
    QueueConfig,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    ResourceQuota,
    WithinClusterQueue,
)
from ray_queue.engine.model import BundleGroup, WorkloadId, WorkloadSpec
from ray_queue.metrics import (
    METRICS,
    MetricsSnapshot,
    QueueMetrics,
    markdown_table,
    snapshot_of,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _cq(name: str) -> ClusterQueue:
    quota = ResourceQuota("CPU", nominal=4000, borrowing_limit=4000, lending_limit=2000)
    return ClusterQueue(
        name,
        (ResourceGroup(("CPU",), (FlavorQuotas("default", (quota,)),)),),
        cohort="all",
        preemption=Preemption(
            within_cluster_queue=WithinClusterQueue.LOWER_PRIORITY,
            reclaim_within_cohort=ReclaimWithinCohort.ANY,
        ),
    )


def _scrape(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_follow_engine_decisions_and_state() -> None:
    config = QueueConfig(
        flavors={"default": ResourceFlavor("default")},
        cluster_queues={"a": _cq("a"), "b": _cq("b")},
        queues={"qa": Queue("qa", "a"), "qb": Queue("qb", "b")},
        priority_classes={"low": PriorityClass("low", 1), "high": PriorityClass("high", 10)},
    )
    clock = ManualClock(100.0)
    engine = Engine(config, clock)

    def snapshot() -> MetricsSnapshot:
        return snapshot_of(engine, clock.now())

    registry = CollectorRegistry()
    metrics = QueueMetrics(registry, snapshot)

    def submit(wid: str, queue: str, cpus: int, priority: str) -> None:
        spec = WorkloadSpec(
            WorkloadId(wid),
            queue,
            (BundleGroup({"CPU": cpus * 1000}),),
            clock.now(),
            priority_class=priority,
        )
        engine.submit(spec)

    for i in range(3):
        submit(f"a{i}", "qa", 2, "low")  # a borrows 2 CPUs from b
    clock.advance(5)
    decisions = engine.schedule()
    metrics.observe_cycle(0.002, decisions, engine.workload, clock.now())
    submit("b0", "qb", 4, "high")  # reclaims b's lent quota: preempts one of a's
    submit("b1", "qb", 6, "low")  # fits only by preempting higher priority: set aside
    clock.advance(1)
    decisions = engine.schedule()
    metrics.observe_cycle(0.003, decisions, engine.workload, clock.now())

    samples = _scrape(registry)
    for spec in METRICS:
        # Job series exist only for jobs with children or a cap (tests/engine/test_job_caps.py).
        if spec.name.endswith(("_lending_limit",)) or spec.kind != "gauge":
            continue
        if spec.name.startswith("ray_queue_job_"):
            continue
        assert spec.name in samples, f"{spec.name} not exported"

    def value(name: str, **labels: str) -> float:
        matches = [v for ls, v in samples[name] if all(ls.get(k) == x for k, x in labels.items())]
        assert len(matches) == 1, (name, labels, samples.get(name))
        return matches[0]

    assert value("ray_queue_admitted_workloads_total", cluster_queue="a") == 3
    assert value("ray_queue_admitted_workloads_total", cluster_queue="b") == 1
    preempted = "ray_queue_preempted_workloads_total"
    assert value(preempted, preempting_cluster_queue="b", reason="InCohortReclamation") == 1
    assert value(preempted, preempting_cluster_queue="b", reason="InClusterQueue") == 0
    assert value("ray_queue_evicted_workloads_total", cluster_queue="a", reason="Preempted") == 1
    assert value("ray_queue_admission_wait_time_seconds_count", cluster_queue="a") == 3
    assert value("ray_queue_admission_wait_time_seconds_sum", cluster_queue="a") == 15
    assert value("ray_queue_admission_attempts_total", result="success") == 2
    assert value("ray_queue_gauges_computed_timestamp_seconds") == clock.now()
    labels = {"cluster_queue": "a", "flavor": "default", "resource": "CPU"}
    assert value("ray_queue_cluster_queue_resource_usage", **labels) == 4
    assert value("ray_queue_cluster_queue_nominal_quota", **labels) == 4
    assert value("ray_queue_cluster_queue_lending_limit", **labels) == 2
    # The preempted workload was retried in the same call and set aside again.
    assert value("ray_queue_pending_workloads", cluster_queue="a", status="inadmissible") == 1
    assert value("ray_queue_pending_workloads", cluster_queue="a", status="active") == 0
    assert value("ray_queue_pending_workloads", cluster_queue="b", status="inadmissible") == 1
    assert value("ray_queue_local_queue_pending_workloads", queue="qb") == 1
    assert value("ray_queue_admitted_active_workloads", cluster_queue="b") == 1


def test_docs_table_is_generated_from_the_code() -> None:
    text = DOCS.read_text()
    start = text.index("<!-- metrics-table:start -->\n") + len("<!-- metrics-table:start -->\n")
    end = text.index("<!-- metrics-table:end -->")
    assert text[start:end] == markdown_table(), (
        "docs/metrics.md is stale: regenerate it with `.venv/bin/python -m ray_queue.metrics`"
    )
