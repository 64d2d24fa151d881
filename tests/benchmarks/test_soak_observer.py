"""The soak observer's checks that depend on timing: a scrape is compared with the gRPC
status only as of when its gauges were computed, a Ray job run on a dead node is not
going, and a real disagreement or a run that goes on is still reported."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from ray.job_submission import JobStatus

from benchmarks.soak_observer import GAUGES_COMPUTED_AT, MetricMap, Observer
from ray_queue.engine.model import ClusterQueueStatus

pytestmark = pytest.mark.timeout(30)


def _observer(tmp_path: Path) -> Observer:
    token = tmp_path / "admin.token"
    token.write_text("t")
    args = argparse.Namespace(
        workdir=str(tmp_path),
        admin_token_file=str(token),
        grpc="127.0.0.1:1",  # never called: the check reads what it is given
        dashboard=None,
        grace_s=20.0,
    )
    return Observer(args)


def _cq(pending: int) -> ClusterQueueStatus:
    return ClusterQueueStatus("cq", None, pending, 0, 0, (), 0.0)


def _scrape(pending: float, computed_at: float) -> MetricMap:
    return {
        ("ray_queue_pending_workloads", frozenset({("cluster_queue", "cq")})): pending,
        (GAUGES_COMPUTED_AT, frozenset()): computed_at,
    }


def test_gauges_computed_before_the_status_read_prove_nothing(tmp_path: Path) -> None:
    observer = _observer(tmp_path)
    for now in (100.0, 130.0, 160.0):  # well past the grace period
        seen: set[tuple[str, str]] = set()
        # The queue had a pending workload a moment ago; the gauges are from then.
        observer.check_metrics([_cq(0)], _scrape(1, now - 1.0), [_cq(0)], now - 0.5, now, seen)
    assert not observer.reported
    assert observer.counts["metric_scrapes_older_than_status"] == 3


def test_fresh_gauges_that_disagree_for_the_grace_period_are_a_violation(tmp_path: Path) -> None:
    observer = _observer(tmp_path)
    for now in (100.0, 110.0, 121.0):
        observer.check_metrics([_cq(0)], _scrape(1, now), [_cq(0)], now - 0.5, now, set())
    assert observer.reported == {("metrics_disagree", "pending/cq")}


def test_a_queue_that_moved_during_the_scrape_is_inconclusive(tmp_path: Path) -> None:
    observer = _observer(tmp_path)
    for now in (100.0, 130.0):
        observer.check_metrics([_cq(0)], _scrape(1, now), [_cq(1)], now - 0.5, now, set())
    assert not observer.reported
    assert observer.counts["metric_comparisons_inconclusive"] == 2


def test_a_job_run_listed_going_on_a_dead_node_has_not_outlived_its_workload(
    tmp_path: Path,
) -> None:
    # The workload was cancelled (no live status); Ray still lists its run RUNNING.
    observer = _observer(tmp_path)
    observer.run_nodes["rq-team-a~j-1"] = "node-killed"
    runs = {"rq-team-a~j-1": JobStatus.RUNNING}
    for now in (100.0, 130.0):
        observer.check_jobs([], runs, {"node-killed"}, now, set())
    assert not observer.reported
    assert observer.counts["job_runs_listed_going_on_dead_nodes"] == 2
    # The same run on a node that lives goes on using it: past the grace, a violation.
    for now in (200.0, 230.0):
        observer.check_jobs([], runs, set(), now, set())
    assert observer.reported == {("job_outlives_workload", "team-a/j")}
