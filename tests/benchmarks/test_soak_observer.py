"""The soak observer's checks that depend on timing: a scrape is compared with the gRPC
status only as of when its gauges were computed, a Ray job run on a dead node is not
going, a run of an admission newer than the status read is not a stray, and a real
disagreement or a run that goes on is still reported."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from ray.job_submission import JobStatus

from benchmarks.soak_observer import GAUGES_COMPUTED_AT, MetricMap, Observer
from ray_queue.engine.model import (
    BundleGroup,
    ClusterQueueStatus,
    Transition,
    WorkloadId,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    WorkloadStatus,
)

S = WorkloadState

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


def _job(state: WorkloadState, admissions: int) -> WorkloadStatus:
    """Job ``team-a/j`` in ``state``, after ``admissions`` admissions (run n is its n-th)."""
    spec = WorkloadSpec(
        WorkloadId("team-a/j"), "team-a", (BundleGroup({"CPU": 1000}, 1),), 0.0, WorkloadKind.JOB
    )
    history = [Transition(0.0, S.PENDING, S.PENDING, "Created", "")]
    for n in range(admissions):
        history.append(Transition(float(n), S.PENDING, S.ADMITTED, "Admitted", ""))
        if n < admissions - 1 or state is not S.ADMITTED:
            history.append(Transition(n + 0.5, S.ADMITTED, S.EVICTED, "Preempted", ""))
            history.append(Transition(n + 0.5, S.EVICTED, S.PENDING, "Requeued", ""))
    return WorkloadStatus(spec, state, 0, "cq", None, {}, "", "", 0, None, False, tuple(history))


def _nobody(workload: str) -> WorkloadStatus | None:
    return None


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
        observer.check_jobs([], runs, {"node-killed"}, now, set(), _nobody)
    assert not observer.reported
    assert observer.counts["job_runs_listed_going_on_dead_nodes"] == 2
    # The same run on a node that lives goes on using it: past the grace, a violation.
    for now in (200.0, 230.0):
        observer.check_jobs([], runs, set(), now, set(), _nobody)
    assert observer.reported == {("job_outlives_workload", "rq-team-a~j-1")}


def test_a_run_of_an_admission_newer_than_the_status_read_is_not_a_stray(
    tmp_path: Path,
) -> None:
    # Each round read the workload pending; it was admitted again before Ray's job list
    # was read, which lists the new run. Read again, the workload explains the run.
    observer = _observer(tmp_path)
    for n, now in enumerate((100.0, 130.0, 160.0), start=2):
        runs = {f"rq-team-a~j-{n}": JobStatus.RUNNING}
        observer.check_jobs(
            [_job(S.PENDING, n - 1)], runs, set(), now, set(), lambda w, n=n: _job(S.ADMITTED, n)
        )
    assert not observer.reported
    assert observer.counts["job_workloads_reread"] == 3


def test_an_old_run_going_past_the_grace_beside_a_new_admission_is_reported(
    tmp_path: Path,
) -> None:
    observer = _observer(tmp_path)
    admitted_again = _job(S.ADMITTED, 2)
    for now in (100.0, 130.0):
        runs = {"rq-team-a~j-1": JobStatus.RUNNING}
        observer.check_jobs([admitted_again], runs, set(), now, set(), lambda w: admitted_again)
    assert observer.reported == {("job_outlives_workload", "rq-team-a~j-1")}


def test_runs_that_each_stop_in_time_are_not_added_up(tmp_path: Path) -> None:
    # Preempted again and again: at every check its last run is still stopping, but never
    # the same run past the grace period (36 s of strays in all, 20 s of grace).
    observer = _observer(tmp_path)
    for n, now in enumerate((100.0, 112.0, 124.0, 136.0), start=1):
        seen: set[tuple[str, str]] = set()
        runs = {f"rq-team-a~j-{n}": JobStatus.RUNNING}
        pending = _job(S.PENDING, n)
        observer.check_jobs([pending], runs, set(), now, seen, lambda w, p=pending: p)
        for key in list(observer.suspects):  # as round() does with suspicions not seen
            if key not in seen:
                del observer.suspects[key]
    assert not observer.reported
