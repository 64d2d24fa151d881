"""The soak's observer (``benchmarks.soak``): checks the queue's invariants from outside.

Run as ``python -m benchmarks.soak_observer --workdir W ...`` in a process of its own. It
reads only what a user can read: the gRPC API with the admin token, the manager's
``/metrics``, Ray's state API (placement groups, the manager actor's pid for its RSS),
the size of the store file an operator sees in the state directory, and the records the
load itself keeps in ``W`` (ids it had accepted, task markers, refused attacks).

Every second it checks:

* quota: no ClusterQueue above nominal + borrowing limit, no cohort above the sum of its
  members' nominal quota. A lowered quota does not evict (as in Kueue), so only work
  that took its quota after the observer saw the running config counts;
* placement groups (named ``ray-queue:<workload id>``): an admitted placement-group
  workload has exactly one live group, and no group outlives its workload (or, for task
  and actor slots, outnumbers the task and actor workloads holding quota) by more than
  ``--grace-s``;
* Ray jobs (submission ids ``rq-<workload>-<run>``, read from Ray's job API): no workload
  has two runs going at once, and no run goes on after its workload stopped holding
  quota, for longer than ``--grace-s``; at the end a FINISHED job workload's last run
  SUCCEEDED in Ray;
* the autoscaled worker group: never more live nodes than its maximum (a restarted
  autoscaler that forgot its nodes would start more), and none left once the queue is
  idle at the end (one forgotten would run for good);
* no accepted submission vanishes (every id the load recorded is known to the manager,
  or was seen ended before the manager forgot it: ``RAY_QUEUE_RETENTION_S``);
* a task with ``max_retries=0`` never runs twice (a marker file with two lines);
* every unauthorised request was refused (the attacker's log) and left no trace;
* the metrics agree with the gRPC status read just before and just after the scrape
  (when the two reads agree and the gauges were computed between them).

A condition that depends on timing (a group created just after its workload was read)
is a violation only when it lasts ``--grace-s`` with the manager answering throughout.
Appends ``violation`` and ``sample`` lines to ``W/observer.jsonl``; once ``W/final``
exists it waits for the queue to drain, checks how every accepted submission ended, and
writes ``W/observer-final.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil
import ray
import urllib3
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_actors, list_placement_groups

from benchmarks.soak_shape import AUTOSCALED
from ray_queue.engine.errors import RayQueueError, UnknownWorkloadError
from ray_queue.engine.model import WorkloadKind, WorkloadState, WorkloadStatus
from ray_queue.grpc.client import QueueClient
from ray_queue.wire import job_runs, job_submission_id

S = WorkloadState
PG_PREFIX = "ray-queue:"
JOB_PREFIX = "rq-"
JOB_GOING = (JobStatus.PENDING, JobStatus.RUNNING)
#: How long a Ray job run may outlive its workload: Ray takes a few seconds to stop a run
#: (SIGTERM, then SIGKILL after 3 s) and to list it stopped, the manager asks again after
#: 2, 4, 8 and 16 s while a stopped run is listed going (docs/manager.md, "Ray job runs"),
#: and the check runs every few rounds. 11 s was seen on a quiet machine.
JOB_STOP_GRACE_S = 20.0
#: Suspicions checked every few rounds only: kept between those rounds.
SLOW_CHECKS = ("job_running_twice", "job_outlives_workload", "autoscaled_nodes_over_max")
LIVE = (S.PENDING, S.QUOTA_RESERVED, S.ADMITTED, S.EVICTED)
ATTACK_MARK = "soak-attack"

logger = logging.getLogger("soak.observer")


def quota_time(status: WorkloadStatus) -> tuple[float, str]:
    """When the workload last took quota, and how (the reason of that transition)."""
    for t in reversed(status.history):
        if t.to_state.holds_quota and not t.from_state.holds_quota:
            return t.at, t.reason
    return 0.0, ""


def job_workload(submission_id: str) -> str | None:
    """The workload a Ray job run belongs to (``rq-<workload>-<run>``, '/' spelled '~')."""
    if not submission_id.startswith(JOB_PREFIX):
        return None
    return submission_id[len(JOB_PREFIX) :].rpartition("-")[0].replace("~", "/")


def current_run(status: WorkloadStatus | None) -> str | None:
    """The Ray job run of the workload's current admission (``rq-<workload>-<n>`` for
    its n-th); None if it holds no quota now."""
    if status is None or not status.state.holds_quota:
        return None
    return job_submission_id(status.spec.id, job_runs(status))


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line.startswith("ray_queue_"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                key, _, val = part.partition("=")
                labels.append((key.strip(","), val.strip('"')))
        try:
            out[(name, frozenset(labels))] = float(value)
        except ValueError:
            continue
    return out


MetricMap = dict[tuple[str, frozenset[tuple[str, str]]], float]
GAUGES_COMPUTED_AT = "ray_queue_gauges_computed_timestamp_seconds"


def metric_pairs(cqs: list[Any], metrics: MetricMap) -> list[tuple[str, tuple[float, float]]]:
    """(what, (gRPC value, metric value)) for each gauge the gRPC status also answers."""
    pairs: list[tuple[str, tuple[float, float]]] = []
    for cq in cqs:
        label = frozenset({("cluster_queue", cq.name)})
        admitted = metrics.get(("ray_queue_admitted_active_workloads", label), 0.0)
        pairs.append((f"admitted/{cq.name}", (float(cq.admitted), admitted)))
        pending = sum(
            v
            for (name, labels), v in metrics.items()
            if name == "ray_queue_pending_workloads" and ("cluster_queue", cq.name) in labels
        )
        pairs.append((f"pending/{cq.name}", (float(cq.pending), pending)))
        for r in cq.resources:
            key = frozenset(
                {
                    ("cohort", cq.cohort or ""),
                    ("cluster_queue", cq.name),
                    ("flavor", r.flavor),
                    ("resource", r.resource),
                }
            )
            value = metrics.get(("ray_queue_cluster_queue_resource_usage", key))
            if value is not None:
                pairs.append((f"usage/{cq.name}/{r.flavor}/{r.resource}", (r.usage / 1000, value)))
    return pairs


class Observer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir)
        self.out = (self.workdir / "observer.jsonl").open("a", buffering=1)
        token = Path(args.admin_token_file).read_text().strip()
        self.client = QueueClient(args.grpc, token=token, timeout_s=20)
        self.http = urllib3.PoolManager(timeout=5.0, retries=False)
        self.reported: set[tuple[str, str]] = set()
        #: (kind, subject) -> (first seen, evidence), for conditions with a grace period.
        self.suspects: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.config_text: str | None = None
        self.config_seen_at = 0.0  # the config at start counts from the beginning
        #: Every workload id the manager has shown, with its kind.
        self.known: dict[str, WorkloadKind] = {}
        self.unknown_once: set[str] = set()
        #: Workloads seen ended, kept here because the manager forgets them after its
        #: retention: the end checks and the report still count them.
        self.ended: dict[str, WorkloadStatus] = {}
        self.marker_sizes: dict[str, int] = {}
        self.attack_offset = 0
        self.counts = collections.Counter[str]()
        #: Where the observer's rounds spend their time (seconds, summed).
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.manager_pid: int | None = None
        self.jobs = JobSubmissionClient(args.dashboard) if args.dashboard else None
        #: The node each Ray job run's driver is on (``ray_jobs``).
        self.run_nodes: dict[str, str | None] = {}
        self.last_rss_at = 0.0
        self.rounds = 0

    # -- reporting ----------------------------------------------------------------------------

    def emit(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record, default=str) + "\n")

    def violation(self, kind: str, subject: str, evidence: dict[str, Any]) -> None:
        if (kind, subject) in self.reported:
            return
        self.reported.add((kind, subject))
        logger.warning("VIOLATION %s %s %s", kind, subject, evidence)
        self.emit(
            {
                "type": "violation",
                "kind": kind,
                "subject": subject,
                "at": time.time(),
                "evidence": evidence,
            }
        )

    def suspect(
        self,
        kind: str,
        subject: str,
        evidence: dict[str, Any],
        now: float,
        seen: set[tuple[str, str]],
        grace_s: float | None = None,
    ) -> None:
        key = (kind, subject)
        seen.add(key)
        first, _ = self.suspects.get(key, (now, evidence))
        self.suspects[key] = (first, evidence)
        if now - first >= (self.args.grace_s if grace_s is None else grace_s):
            self.violation(kind, subject, {**evidence, "lasted_s": round(now - first, 1)})

    # -- reads --------------------------------------------------------------------------------

    def groups(self) -> dict[str, list[str]]:
        """Live placement groups of the manager, by workload id → group ids."""
        out: dict[str, list[str]] = collections.defaultdict(list)
        for pg in list_placement_groups(
            address=self.args.ray_address,
            filters=[("state", "!=", "REMOVED")],
            limit=10_000,
            timeout=20,
            raise_on_missing_output=False,
        ):
            name = pg.name or ""
            if name.startswith(PG_PREFIX):
                out[name[len(PG_PREFIX) :]].append(pg.placement_group_id)
        return out

    def ray_jobs(self) -> dict[str, JobStatus]:
        """The manager's Ray job runs: submission id -> status (and, in ``run_nodes``,
        the node each run's driver is on)."""
        assert self.jobs is not None
        runs = {
            j.submission_id: j
            for j in self.jobs.list_jobs()
            if j.submission_id and j.submission_id.startswith(JOB_PREFIX)
        }
        self.run_nodes.update((i, j.driver_node_id) for i, j in runs.items())
        return {i: j.status for i, j in runs.items()}

    def reread(self, workload: str) -> WorkloadStatus | None:
        try:
            return self.client.workload(workload)
        except UnknownWorkloadError:  # ended and forgotten
            return None

    def dead_nodes(self) -> set[str]:
        nodes = ray.nodes()  # type: ignore[no-untyped-call]  # unannotated in Ray
        return {n["NodeID"] for n in nodes if not n["Alive"]}

    def autoscaled_nodes(self) -> list[str]:
        """Live Ray nodes of the autoscaled group (by its label)."""
        nodes = ray.nodes()  # type: ignore[no-untyped-call]  # unannotated in Ray
        labels = AUTOSCALED["labels"]
        return [
            n["NodeID"]
            for n in nodes
            if n["Alive"] and all(n.get("Labels", {}).get(k) == v for k, v in labels.items())
        ]

    def metrics(self) -> MetricMap | None:
        try:
            response = self.http.request("GET", self.args.metrics)
        except urllib3.exceptions.HTTPError:
            return None
        if response.status != 200:
            return None
        return parse_metrics(response.data.decode())

    def accepted(self) -> set[str]:
        ids: set[str] = set()
        for path in (self.workdir / "accepted").glob("*.txt"):
            ids.update(line.strip() for line in path.read_text().splitlines() if line.strip())
        return ids

    # -- checks -------------------------------------------------------------------------------

    def check_quota(self, live: list[WorkloadStatus], cqs: list[Any], now: float) -> None:
        used: dict[tuple[str, str, str], int] = collections.Counter()
        for status in live:
            if not status.state.holds_quota or status.admission is None:
                continue
            at, reason = quota_time(status)
            if at < self.config_seen_at or reason == "HandedOver":
                continue  # quota taken under an earlier config, or passed on by a task
            for (flavor, resource), amount in status.admission.usage.items():
                used[(status.admission.cluster_queue, flavor, resource)] += amount
        cohort_used: dict[tuple[str, str, str], int] = collections.Counter()
        cohort_cap: dict[tuple[str, str, str], int] = collections.Counter()
        for cq in cqs:
            for r in cq.resources:
                amount = used.get((cq.name, r.flavor, r.resource), 0)
                if cq.cohort is not None:
                    cohort_used[(cq.cohort, r.flavor, r.resource)] += amount
                    cohort_cap[(cq.cohort, r.flavor, r.resource)] += r.nominal
                limit = r.nominal + (r.borrowing_limit if r.borrowing_limit is not None else 0)
                if (cq.cohort is None or r.borrowing_limit is not None) and amount > limit:
                    self.violation(
                        "cluster_queue_over_limit",
                        f"{cq.name}/{r.flavor}/{r.resource}@{now:.0f}",
                        {
                            "usage_milli": amount,
                            "limit_milli": limit,
                            "status_usage_milli": r.usage,
                        },
                    )
        for key, amount in cohort_used.items():
            if amount > cohort_cap[key]:
                self.violation(
                    "cohort_over_capacity",
                    "/".join(key) + f"@{now:.0f}",
                    {"usage_milli": amount, "capacity_milli": cohort_cap[key]},
                )

    def check_groups(
        self,
        live: list[WorkloadStatus],
        groups: dict[str, list[str]],
        now: float,
        seen: set[tuple[str, str]],
    ) -> None:
        by_id: dict[str, WorkloadStatus] = {s.spec.id: s for s in live}
        slot_holders = 0
        for status in live:
            if status.spec.kind is not WorkloadKind.PLACEMENT_GROUP:
                if status.state.holds_quota:
                    slot_holders += 1
                continue
            mine = groups.get(status.spec.id, [])
            if status.state is S.ADMITTED:
                if not mine:
                    self.suspect(
                        "admitted_group_missing",
                        status.spec.id,
                        {"state": status.state.value},
                        now,
                        seen,
                    )
                elif len(mine) > 1:
                    self.suspect(
                        "admitted_twice", status.spec.id, {"groups": mine}, now, seen, grace_s=2.0
                    )
        slot_groups = 0
        for workload, ids in groups.items():
            found = by_id.get(workload)
            if found is None and workload not in self.known:
                self.suspect("group_of_unknown_workload", workload, {"groups": ids}, now, seen)
                continue
            kind = found.spec.kind if found is not None else self.known[workload]
            if kind is not WorkloadKind.PLACEMENT_GROUP:
                # A task's or actor's slot: it may keep the name of its first task.
                slot_groups += len(ids)
                continue
            if found is None or not found.state.holds_quota:
                self.suspect(
                    "group_outlives_workload",
                    workload,
                    {"groups": ids, "state": found.state.value if found else "ended"},
                    now,
                    seen,
                )
        if slot_groups > slot_holders:
            self.suspect(
                "slot_groups_outnumber_holders",
                "slots",
                {"groups": slot_groups, "holders": slot_holders},
                now,
                seen,
            )

    def check_jobs(
        self,
        live: list[WorkloadStatus],
        runs: dict[str, JobStatus],
        dead: set[str],
        now: float,
        seen: set[tuple[str, str]],
        reread: Callable[[str], WorkloadStatus | None],
    ) -> None:
        """Job runs against workloads. ``dead``: the nodes Ray says are dead. ``reread``:
        a workload's status read now, after ``runs`` (None if the manager has none)."""
        going: dict[str, list[str]] = collections.defaultdict(list)
        for submission_id, status in runs.items():
            workload = job_workload(submission_id)
            if workload is None or status not in JOB_GOING:
                continue
            if self.run_nodes.get(submission_id) in dead:
                # Its node died (a raylet kill) and the run with it; Ray's job API lists it
                # going until its job manager hears of the death, seconds later.
                self.counts["job_runs_listed_going_on_dead_nodes"] += 1
                continue
            going[workload].append(submission_id)
        statuses: dict[str, WorkloadStatus] = {s.spec.id: s for s in live}
        for workload, ids in going.items():
            if len(ids) > 1:
                self.suspect("job_running_twice", workload, {"runs": sorted(ids)}, now, seen)
            strays = set(ids) - {current_run(statuses.get(workload))}
            if strays:
                # ``live`` was read seconds before the runs: a workload admitted since then
                # has a run that ``live`` does not explain yet. Read it again.
                self.counts["job_workloads_reread"] += 1
                strays -= {current_run(reread(workload))}
            # Keyed by run: a workload preempted and admitted again and again has a new
            # run each time, and each old one must stop within the grace period.
            for run in sorted(strays):
                self.suspect(
                    "job_outlives_workload",
                    run,
                    {"workload": workload, "known": workload in self.known},
                    now,
                    seen,
                    grace_s=max(self.args.grace_s, JOB_STOP_GRACE_S),
                )
        self.counts["job_runs_seen"] = max(self.counts["job_runs_seen"], len(runs))

    def check_nodes(self, now: float, seen: set[tuple[str, str]]) -> None:
        nodes = self.autoscaled_nodes()
        self.counts["autoscaled_nodes_max_seen"] = max(
            self.counts["autoscaled_nodes_max_seen"], len(nodes)
        )
        if len(nodes) > AUTOSCALED["max_replicas"]:
            self.suspect(
                "autoscaled_nodes_over_max",
                AUTOSCALED["group"],
                {"nodes": nodes, "max": AUTOSCALED["max_replicas"]},
                now,
                seen,
            )

    def check_markers(self) -> None:
        for path in (self.workdir / "markers").iterdir():
            size = path.stat().st_size
            if self.marker_sizes.get(path.name) == size:
                continue
            self.marker_sizes[path.name] = size
            lines = path.read_text().splitlines()
            if len(lines) > 1:
                self.violation("task_ran_twice", path.name, {"runs": lines})

    def check_attacks(self) -> None:
        path = self.workdir / "attacks.jsonl"
        if not path.exists():
            return
        with path.open() as f:
            f.seek(self.attack_offset)
            for line in f:
                if not line.endswith("\n"):
                    break
                self.attack_offset += len(line.encode())
                record = json.loads(line)
                self.counts["attacks_seen"] += 1
                if not record["refused"]:
                    self.violation(
                        "unauthorised_allowed", f"{record['what']}@{record['at']}", record
                    )
                if record.get("changed"):
                    self.violation(
                        "unauthorised_changed_state", f"{record['what']}@{record['at']}", record
                    )

    def check_metrics(
        self,
        before: list[Any],
        metrics: MetricMap | None,
        after: list[Any],
        before_read_at: float,
        now: float,
        seen: set[tuple[str, str]],
    ) -> None:
        """Compare the scrape with the gRPC status read just before and just after it.
        Where those two differ the queue moved during the scrape and nothing can be
        concluded, nor where the gauges were computed before the first read began (the
        manager's loop did not answer the scrape in time and it served older ones: their
        timestamp gauge says so); a difference lasting ``grace`` over rounds where it can
        be concluded is a violation."""
        if metrics is None:
            return
        computed_at = metrics.get((GAUGES_COMPUTED_AT, frozenset()), 0.0)
        if computed_at < before_read_at:
            self.counts["metric_scrapes_older_than_status"] += 1
            seen.update(k for k in self.suspects if k[0] == "metrics_disagree")
            return
        stable = dict(metric_pairs(before, metrics))
        moved = {
            name
            for name, (value, _) in metric_pairs(after, metrics)
            if stable.get(name, (value,))[0] != value
        }
        self.counts["metric_comparisons"] += len(stable)
        for name, (grpc_value, metric_value) in stable.items():
            if name in moved:
                self.counts["metric_comparisons_inconclusive"] += 1
                continue
            if abs(grpc_value - metric_value) > 1e-6:
                self.suspect(
                    "metrics_disagree",
                    name,
                    {"metric": metric_value, "grpc": grpc_value},
                    now,
                    seen,
                    grace_s=max(15.0, self.args.grace_s),
                )
        self.emit(
            {
                "type": "metrics",
                "at": now,
                "values": {
                    "admitted": sum(
                        v
                        for (n, _), v in metrics.items()
                        if n == "ray_queue_admitted_active_workloads"
                    ),
                    "pending": sum(
                        v for (n, _), v in metrics.items() if n == "ray_queue_pending_workloads"
                    ),
                    "admitted_total": sum(
                        v
                        for (n, _), v in metrics.items()
                        if n == "ray_queue_admitted_workloads_total"
                    ),
                    "preempted_total": sum(
                        v
                        for (n, _), v in metrics.items()
                        if n == "ray_queue_preempted_workloads_total"
                    ),
                    "evicted_total": sum(
                        v
                        for (n, _), v in metrics.items()
                        if n == "ray_queue_evicted_workloads_total"
                    ),
                    "cycles_total": sum(
                        v
                        for (n, _), v in metrics.items()
                        if n == "ray_queue_admission_attempts_total"
                    ),
                },
            }
        )

    def sample_resources(self, now: float) -> None:
        if now - self.last_rss_at < 5:
            return
        self.last_rss_at = now
        rss = None
        try:
            [actor] = list_actors(
                address=self.args.ray_address,
                filters=[("class_name", "=", "QueueManager"), ("state", "=", "ALIVE")],
                timeout=10,
            )
            rss = psutil.Process(actor.pid).memory_info().rss
        except Exception:  # restarting, or the state API busy: no sample this time
            pass
        state = Path(self.args.state_dir)
        store = sum(p.stat().st_size for p in state.glob("*.sqlite*")) if state.exists() else 0
        self.emit({"type": "sample", "at": now, "manager_rss_bytes": rss, "store_bytes": store})

    # -- the loop -----------------------------------------------------------------------------

    def round(self) -> None:
        now = time.time()
        seen: set[tuple[str, str]] = set()
        self.rounds += 1
        accepted = self.accepted() if self.rounds % 10 == 0 else None
        started = time.monotonic()
        try:
            before = self.client.config_yaml()
            live = self.client.workloads(states=LIVE, include_history=True)
            cqs_read_at = time.time()
            cqs = self.client.cluster_queues()
            metrics = self.metrics()
            cqs_after = self.client.cluster_queues()
            after = self.client.config_yaml()
            if accepted is not None:
                everything = self.client.workloads(include_history=True)
                self.ended.update((s.spec.id, s) for s in everything if s.state.is_terminal)
                self.known = {w: s.spec.kind for w, s in self.ended.items()}
                self.known.update((s.spec.id, s.spec.kind) for s in everything)
        except RayQueueError as e:
            # The manager is away (a kill -9) or refusing: grace periods start again.
            self.counts["rounds_manager_unavailable"] += 1
            self.suspects.clear()
            self.emit({"type": "unavailable", "at": now, "error": type(e).__name__})
            return
        self.known.update((s.spec.id, s.spec.kind) for s in live)
        self.seconds["grpc_and_metrics"] += time.monotonic() - started
        if ATTACK_MARK in before or ATTACK_MARK in after:
            self.violation("unauthorised_config_applied", "config", {"config": after[:2000]})
        if before == after:
            if before != self.config_text:
                if self.config_text is not None:
                    self.config_seen_at = now
                self.config_text = before
            self.check_quota(live, cqs, now)
            self.counts["quota_checks"] += 1
        started = time.monotonic()
        try:
            groups = self.groups()
            self.seconds["state_api"] += time.monotonic() - started
        except Exception as e:
            self.counts["state_api_errors"] += 1
            logger.info("state API: %s", e)
            groups = None
        if groups is not None:
            # Groups read after workloads: a group made for a workload admitted between the
            # two reads looks unknown for one round; the grace period covers it.
            self.check_groups(live, groups, now, seen)
            self.counts["group_checks"] += 1
            self.counts["admitted_groups_checked"] += sum(
                1
                for s in live
                if s.state is S.ADMITTED and s.spec.kind is WorkloadKind.PLACEMENT_GROUP
            )
        if self.jobs is not None and self.rounds % 3 == 0:
            started = time.monotonic()
            try:
                runs = self.ray_jobs()
                self.check_jobs(live, runs, self.dead_nodes(), now, seen, self.reread)
                self.check_nodes(now, seen)
                self.counts["job_checks"] += 1
            except Exception as e:  # the job server busy: next time
                self.counts["job_api_errors"] += 1
                logger.info("job API: %s", e)
                # An unread source is not a resolved suspicion.
                seen.update(k for k in self.suspects if k[0] in SLOW_CHECKS)
            self.seconds["job_api"] += time.monotonic() - started
        else:
            seen.update(k for k in self.suspects if k[0] in (SLOW_CHECKS))
        if accepted is not None:
            missing = accepted - self.known.keys()
            for workload in missing & self.unknown_once:
                self.violation("submission_vanished", workload, {"known": len(self.known)})
            self.unknown_once = missing
            self.counts["accepted_checks"] += 1
            self.check_markers()
            self.counts["task_markers_seen"] = len(self.marker_sizes)
        self.check_attacks()
        self.check_metrics(cqs, metrics, cqs_after, cqs_read_at, now, seen)
        self.sample_resources(now)
        for key in list(self.suspects):
            if key not in seen:
                del self.suspects[key]
        self.counts["rounds"] += 1

    def check_client_errors(self, everything: dict[str, WorkloadStatus]) -> None:
        """What a driver's handle raised for a task it did not cancel must say what
        happened to it: a task preempted with ``max_retries=0`` raises ``Preempted``
        (docs/contract.md §3), not ``WorkloadCancelled``."""
        for path in (self.workdir / "client-errors").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                self.counts["client_errors_checked"] += 1
                status = everything.get(record["id"])
                if status is None or record["error"] != "WorkloadCancelled":
                    continue
                if any(t.to_state is S.EVICTED and t.reason == "Preempted" for t in status.history):
                    self.violation(
                        "preempted_task_raised_cancelled",
                        record["id"],
                        {
                            "raised": f"{record['error']}: {record['message']}",
                            "history": [
                                f"{t.from_state.value}->{t.to_state.value} {t.reason}: "
                                f"{t.message[:80]}"
                                for t in status.history[-4:]
                            ],
                        },
                    )

    def check_jobs_at_end(self, everything: dict[str, WorkloadStatus]) -> None:
        """A job the manager says FINISHED ran to success in Ray: its last run SUCCEEDED."""
        runs = self.ray_jobs()
        for workload, status in everything.items():
            if status.spec.kind is not WorkloadKind.JOB or status.state is not S.FINISHED:
                continue
            self.counts["finished_jobs_checked"] += 1
            n = sum(1 for t in status.history if t.to_state is S.ADMITTED)
            last = f"{JOB_PREFIX}{workload.replace('/', '~')}-{n}"
            if runs.get(last) is not JobStatus.SUCCEEDED:
                self.violation(
                    "finished_job_not_succeeded",
                    workload,
                    {"run": last, "ray_status": str(runs.get(last))},
                )
        deadline = time.time() + 30  # a stopped run takes a moment to say STOPPED
        going = [i for i, s in runs.items() if s in JOB_GOING]
        while going and time.time() < deadline:
            time.sleep(1)
            going = [i for i, s in self.ray_jobs().items() if s in JOB_GOING]
        for submission_id in going:
            self.violation("job_left_running_at_end", submission_id, {})

    def check_nodes_at_end(self) -> None:
        """With nothing queued the autoscaled node is idle: it must go within the idle
        timeout (and a drain), whichever autoscaler process started it."""
        deadline = time.time() + self.args.idle_timeout_s + 90
        nodes = self.autoscaled_nodes()
        while nodes and time.time() < deadline:
            time.sleep(1)
            nodes = self.autoscaled_nodes()
        for node in nodes:
            self.violation("autoscaled_node_left_at_end", node, {})

    def check_metrics_at_rest(self, timeout_s: float = 20.0) -> None:
        """With the load gone the gauges must equal the gRPC status exactly, once the
        manager's next snapshot is taken (about a second)."""
        deadline = time.time() + timeout_s
        differ: list[tuple[str, tuple[float, float]]] = []
        while time.time() < deadline:
            metrics = self.metrics()
            if metrics is not None:
                pairs = metric_pairs(self.client.cluster_queues(), metrics)
                differ = [(name, v) for name, v in pairs if abs(v[0] - v[1]) > 1e-6]
                self.counts["metric_comparisons_at_rest"] = len(pairs)
                if not differ:
                    return
            time.sleep(0.5)
        for name, (grpc_value, metric_value) in differ:
            self.violation(
                "metrics_disagree_at_rest", name, {"metric": metric_value, "grpc": grpc_value}
            )

    def final(self) -> dict[str, Any]:
        """After the load stopped: wait for the queue to drain, then how did each end?"""
        deadline = time.time() + self.args.drain_s
        live: list[WorkloadStatus] = []
        groups: dict[str, list[str]] = {}
        while time.time() < deadline:
            try:
                live = self.client.workloads(states=LIVE)
                groups = self.groups()
            except Exception as e:
                logger.info("final: %s", e)
                time.sleep(1)
                continue
            if not groups and not [s for s in live if s.state.holds_quota]:
                break
            time.sleep(1)
        everything: dict[str, WorkloadStatus] = dict(self.ended)
        everything.update((s.spec.id, s) for s in self.client.workloads(include_history=True))
        accepted = self.accepted()
        lost = sorted(accepted - everything.keys())
        for workload in lost:
            self.violation("submission_vanished", workload, {"at": "end"})
        unexplained = []
        for workload in sorted(accepted & everything.keys()):
            status = everything[workload]
            waiting = status.state in (S.PENDING, S.EVICTED)
            if (status.state.is_terminal and not status.reason) or (
                waiting and not (status.reason or status.message)
            ):
                unexplained.append(workload)
        for workload in unexplained:
            self.violation(
                "ended_without_reason", workload, {"state": everything[workload].state.value}
            )
        for workload, status in everything.items():
            # Each transition starts where the one before ended: a second grant of quota
            # without a release between would show as a break in the chain.
            for before, after in zip(status.history, status.history[1:], strict=False):
                if after.from_state is not before.to_state:
                    self.violation(
                        "history_broken",
                        workload,
                        {
                            "after": before.to_state.value,
                            "next_from": after.from_state.value,
                            "reason": after.reason,
                        },
                    )
                    break
        self.counts["histories_checked"] = len(everything)
        if self.jobs is not None:
            self.check_jobs_at_end(everything)
            self.check_nodes_at_end()
        self.check_client_errors(everything)
        self.check_metrics_at_rest()
        leftover_holders = [s.spec.id for s in live if s.state.holds_quota]
        for workload, ids in groups.items():
            self.violation("group_left_at_end", workload, {"groups": ids})
        self.check_markers()
        self.check_attacks()
        return {
            "accepted": len(accepted),
            "lost_workloads": len(lost) + len(unexplained),
            "lost": lost[:50],
            "unexplained": unexplained[:50],
            "still_holding_quota_at_end": leftover_holders[:50],
            "groups_left_at_end": sorted(groups)[:50],
            "states_at_end": dict(
                collections.Counter(s.state.value for w, s in everything.items() if w in accepted)
            ),
            "workloads": [_summary(s) for s in everything.values()],
            "observer": dict(self.counts),
            "observer_seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "violations_reported": len(self.reported),
        }


def _summary(status: WorkloadStatus) -> dict[str, Any]:
    """What the report needs of one workload: who, what, and when it took quota."""
    admitted = [t.at for t in status.history if t.to_state is S.ADMITTED]
    evictions = [t.reason for t in status.history if t.to_state is S.EVICTED]
    return {
        "id": status.spec.id,
        "queue": status.spec.queue,
        "priority": status.spec.priority_class or "",
        "kind": status.spec.kind.value,
        "created_at": status.spec.created_at,
        "first_admitted_at": admitted[0] if admitted else None,
        "admissions": len(admitted),
        "evictions": evictions,
        "state": status.state.value,
        "reason": status.reason,
    }


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--metrics", required=True, help="URL of /metrics")
    parser.add_argument("--ray-address", required=True)
    parser.add_argument("--admin-token-file", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--grace-s", type=float, default=20.0)
    parser.add_argument("--drain-s", type=float, default=90.0)
    parser.add_argument("--dashboard", help="Ray's dashboard URL, for its job API")
    parser.add_argument("--idle-timeout-s", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s observer %(message)s")
    ray.init(address=args.ray_address, log_to_driver=False, configure_logging=False)
    observer = Observer(args)
    workdir = Path(args.workdir)
    while not (workdir / "final").exists():
        started = time.monotonic()
        try:
            observer.round()
        except Exception:
            logger.exception("observer round failed")
            observer.counts["round_errors"] += 1
        time.sleep(max(0.0, args.interval_s - (time.monotonic() - started)))
    result = observer.final()
    (workdir / "observer-final.json").write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
