"""Builds the Grafana dashboard the chart ships (helm/ray-queue/dashboards/ray-queue.json).

Why this exists: a dashboard is three hundred lines of JSON in which the part that matters
— which PromQL each panel runs — is easy to lose. Here every panel is one call naming its
title, its queries and their legends; grid positions, ids and Grafana's boilerplate are
computed. ``tests/observability`` checks that the committed JSON is what this file builds
and runs every query against a real Prometheus scraping a loaded manager and autoscaler.

Run ``.venv/bin/python helm/build_dashboard.py`` after changing a panel.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "ray-queue" / "dashboards" / "ray-queue.json"
UID = "ray-queue-overview"

#: Every query filters on these template variables; ``.*`` (All) is their default.
CQ = 'cluster_queue=~"$cluster_queue"'
COHORT = 'cohort=~"$cohort"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    #: Table panels read the latest value only.
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | stat | table
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    width: int = 12
    height: int = 8
    stacked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _q(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(expr, legend, instant)


def _quantiles(metric: str, by: str, selector: str, legend_prefix: str) -> tuple[Query, ...]:
    inner = f"sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}]))"
    return tuple(
        _q(f"histogram_quantile({q}, {inner})", f"{legend_prefix}p{int(q * 100)}")
        for q in (0.5, 0.95)
    )


ROWS: tuple[Row, ...] = (
    Row(
        "At a glance",
        (
            Panel(
                "Pending",
                "stat",
                (_q(f"sum(ray_queue_pending_workloads{{{CQ}}})"),),
                "Workloads waiting for quota, all selected ClusterQueues.",
                width=4,
                height=4,
            ),
            Panel(
                "Reserving",
                "stat",
                (_q(f"sum(ray_queue_reserving_active_workloads{{{CQ}}})"),),
                "Workloads holding quota while admission checks (provisioning) run.",
                width=4,
                height=4,
            ),
            Panel(
                "Admitted",
                "stat",
                (_q(f"sum(ray_queue_admitted_active_workloads{{{CQ}}})"),),
                "Admitted workloads that have not finished.",
                width=4,
                height=4,
            ),
            Panel(
                "Admissions per minute",
                "stat",
                (_q(f"60 * sum(rate(ray_queue_admitted_workloads_total{{{CQ}}}[{RATE}]))"),),
                "How fast work gets in.",
                width=4,
                height=4,
            ),
            Panel(
                "Preemptions (1h)",
                "stat",
                (
                    _q(
                        "sum(increase(ray_queue_preempted_workloads_total"
                        '{preempting_cluster_queue=~"$cluster_queue"}[1h]))'
                    ),
                ),
                "Workloads preempted in the last hour to make room for the selected queues.",
                width=4,
                height=4,
            ),
            Panel(
                "Worker groups short of desired",
                "stat",
                (
                    _q(
                        "sum(clamp_min(ray_queue_autoscaler_desired_replicas"
                        " - ray_queue_autoscaler_ready_replicas, 0))"
                    ),
                ),
                "Replicas the autoscaler asked for that have not joined Ray yet.",
                width=4,
                height=4,
            ),
            Panel(
                "ClusterQueues",
                "table",
                (
                    _q(
                        f"sum by (cluster_queue) (ray_queue_pending_workloads{{{CQ}}})",
                        "pending",
                        instant=True,
                    ),
                    _q(
                        f"sum by (cluster_queue) (ray_queue_reserving_active_workloads{{{CQ}}})",
                        "reserving",
                        instant=True,
                    ),
                    _q(
                        f"sum by (cluster_queue) (ray_queue_admitted_active_workloads{{{CQ}}})",
                        "admitted",
                        instant=True,
                    ),
                    _q(
                        f"max by (cluster_queue, cohort) "
                        f"(ray_queue_cluster_queue_weighted_share{{{CQ}}})",
                        "weighted share",
                        instant=True,
                    ),
                ),
                "One line per ClusterQueue: queue lengths and its weighted share in its cohort.",
                width=14,
                height=8,
            ),
            Panel(
                "Cohorts",
                "table",
                (
                    _q(
                        f"max by (cohort) (ray_queue_cohort_weighted_share{{{COHORT}}})",
                        "weighted share",
                        instant=True,
                    ),
                    _q(
                        f"sum by (cohort, flavor, resource) "
                        f"(ray_queue_cohort_resource_usage{{{COHORT}}})",
                        "usage",
                        instant=True,
                    ),
                ),
                "Each cohort's pool in use and its share within its parent.",
                width=10,
                height=8,
            ),
        ),
    ),
    Row(
        "Queues",
        (
            Panel(
                "Pending per ClusterQueue",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, status) (ray_queue_pending_workloads{{{CQ}}})",
                        "{{cluster_queue}} {{status}}",
                    ),
                ),
                "active: tried next cycle; inadmissible: set aside until quota is released.",
                stacked=True,
            ),
            Panel(
                "Admitted per ClusterQueue",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue) (ray_queue_admitted_active_workloads{{{CQ}}})",
                        "{{cluster_queue}} admitted",
                    ),
                    _q(
                        f"sum by (cluster_queue) (ray_queue_reserving_active_workloads{{{CQ}}})",
                        "{{cluster_queue}} reserving",
                    ),
                ),
                "Running work, and work holding quota while its admission checks run.",
            ),
            Panel(
                "Pending per Queue (tenant)",
                "timeseries",
                (
                    _q(
                        f"sum by (queue) (ray_queue_local_queue_pending_workloads{{{CQ}}})",
                        "{{queue}}",
                    ),
                ),
                "Who is waiting, by the Queue they submitted to.",
                stacked=True,
            ),
            Panel(
                "Admitted, not placed yet, by reason",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, reason) (ray_queue_unplaced_workloads{{{CQ}}})",
                        "{{cluster_queue}} {{reason}}",
                    ),
                ),
                "Holding quota while Ray has not placed them: no_node (no node has the "
                "flavor's labels), bundle_too_large, awaiting_autoscaler, nodes_busy, "
                "job_not_running.",
                stacked=True,
            ),
            Panel(
                "In use outside the queue",
                "timeseries",
                (
                    _q(
                        "sum by (flavor, resource) (ray_queue_unmanaged_usage)",
                        "{{flavor}} {{resource}}",
                    ),
                ),
                "Resources Ray says are in use on a flavor's nodes beyond what admissions "
                "hold: uncaptured drivers and direct Ray calls. Quotas do not govern it.",
            ),
            Panel(
                "Admissions and quota reservations per second",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue) "
                        f"(rate(ray_queue_admitted_workloads_total{{{CQ}}}[{RATE}]))",
                        "{{cluster_queue}} admitted",
                    ),
                    _q(
                        f"sum by (cluster_queue) "
                        f"(rate(ray_queue_quota_reserved_workloads_total{{{CQ}}}[{RATE}]))",
                        "{{cluster_queue}} quota reserved",
                    ),
                ),
                "Throughput of the queue.",
                unit="ops",
            ),
        ),
    ),
    Row(
        "Quota",
        (
            Panel(
                "Usage vs nominal quota vs borrowing ceiling",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, flavor, resource) "
                        f"(ray_queue_cluster_queue_resource_usage{{{CQ}}})",
                        "{{cluster_queue}} {{flavor}}/{{resource}} usage",
                    ),
                    _q(
                        f"sum by (cluster_queue, flavor, resource) "
                        f"(ray_queue_cluster_queue_nominal_quota{{{CQ}}})",
                        "{{cluster_queue}} {{flavor}}/{{resource}} nominal",
                    ),
                    _q(
                        f"sum by (cluster_queue, flavor, resource) "
                        f"(ray_queue_cluster_queue_nominal_quota{{{CQ}}}"
                        f" + ray_queue_cluster_queue_borrowing_limit{{{CQ}}})",
                        "{{cluster_queue}} {{flavor}}/{{resource}} nominal + borrowing limit",
                    ),
                ),
                "Per flavor and resource, in Ray units (CPUs, GPUs, bytes). Usage above "
                "nominal is borrowed from the cohort, up to the ceiling.",
                width=24,
                height=9,
            ),
            Panel(
                "Borrowed from the cohort",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, flavor, resource) "
                        f"(ray_queue_cluster_queue_borrowed{{{CQ}}})",
                        "{{cluster_queue}} {{flavor}}/{{resource}}",
                    ),
                ),
                "Usage above nominal quota. Reclaimable by its owners (reclaimWithinCohort).",
                stacked=True,
            ),
            Panel(
                "Lending limits",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, flavor, resource) "
                        f"(ray_queue_cluster_queue_lending_limit{{{CQ}}})",
                        "{{cluster_queue}} {{flavor}}/{{resource}}",
                    ),
                ),
                "Most of a ClusterQueue's nominal quota others may borrow (absent: all).",
            ),
            Panel(
                "Weighted share per ClusterQueue",
                "timeseries",
                (
                    _q(
                        f"max by (cluster_queue) (ray_queue_cluster_queue_weighted_share{{{CQ}}})",
                        "{{cluster_queue}}",
                    ),
                ),
                "Dominant-resource share of what it borrows, divided by its weight; fair "
                "sharing admits the lowest first and preempts the highest.",
            ),
            Panel(
                "Weighted share per cohort",
                "timeseries",
                (
                    _q(
                        f"max by (cohort) (ray_queue_cohort_weighted_share{{{COHORT}}})",
                        "{{cohort}}",
                    ),
                ),
                "The same, one level up: a cohort within its parent.",
            ),
        ),
    ),
    Row(
        "Latency",
        (
            Panel(
                "Admission wait",
                "timeseries",
                _quantiles(
                    "ray_queue_admission_wait_time_seconds",
                    "cluster_queue",
                    CQ,
                    "{{cluster_queue}} ",
                ),
                "From entering (or re-entering) the queue to admission.",
                unit="s",
            ),
            Panel(
                "Quota reservation wait",
                "timeseries",
                _quantiles(
                    "ray_queue_quota_reserved_wait_time_seconds",
                    "cluster_queue",
                    CQ,
                    "{{cluster_queue}} ",
                ),
                "From entering the queue to getting quota (before admission checks).",
                unit="s",
            ),
            Panel(
                "Scheduling cycle duration",
                "timeseries",
                _quantiles(
                    "ray_queue_admission_cycle_duration_seconds", "result", "", "{{result}} "
                ),
                "Wall time of one scheduling cycle; milliseconds when healthy.",
                unit="s",
            ),
            Panel(
                "Scheduling cycles per second",
                "timeseries",
                (
                    _q(
                        f"sum by (result) (rate(ray_queue_admission_attempts_total[{RATE}]))",
                        "{{result}}",
                    ),
                ),
                "success: the cycle admitted or reserved something; inadmissible: nothing fit.",
                unit="ops",
                stacked=True,
            ),
        ),
    ),
    Row(
        "Preemption and eviction",
        (
            Panel(
                "Preemptions by reason",
                "timeseries",
                (
                    _q(
                        "sum by (preempting_cluster_queue, reason) "
                        "(rate(ray_queue_preempted_workloads_total"
                        f'{{preempting_cluster_queue=~"$cluster_queue"}}[{RATE}]))',
                        "{{preempting_cluster_queue}} {{reason}}",
                    ),
                ),
                "By the ClusterQueue that needed the room: InClusterQueue (lower priority in "
                "the same queue) or InCohortReclamation (taking lent quota back).",
                unit="ops",
                width=8,
            ),
            Panel(
                "Evictions by reason",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, reason) "
                        f"(rate(ray_queue_evicted_workloads_total{{{CQ}}}[{RATE}]))",
                        "{{cluster_queue}} {{reason}}",
                    ),
                ),
                "Workloads sent back to the queue: Preempted, AdmissionCheckRetry, "
                "PlacementTimeout, CapacityRevoked, ...",
                unit="ops",
                width=8,
            ),
            Panel(
                "Rejections by reason (1h)",
                "timeseries",
                (
                    _q(
                        f"sum by (cluster_queue, reason) "
                        f"(increase(ray_queue_rejected_workloads_total{{{CQ}}}[1h]))",
                        "{{cluster_queue}} {{reason}}",
                    ),
                ),
                "Workloads given up on for good.",
                width=8,
            ),
        ),
    ),
    Row(
        "Autoscaler",
        (
            Panel(
                "Worker groups: desired vs ready replicas",
                "timeseries",
                (
                    _q(
                        "sum by (group) (ray_queue_autoscaler_desired_replicas)",
                        "{{group}} desired",
                    ),
                    _q("sum by (group) (ray_queue_autoscaler_ready_replicas)", "{{group}} ready"),
                ),
                "What the autoscaler asked KubeRay for, and what has joined Ray.",
            ),
            Panel(
                "ProvisioningRequests by state",
                "timeseries",
                (_q("sum by (phase) (ray_queue_autoscaler_provisioning_requests)", "{{phase}}"),),
                "All-at-once flavors: requests the autoscaler made, by phase.",
                stacked=True,
            ),
            Panel(
                "Cluster write latency",
                "timeseries",
                _quantiles("ray_queue_autoscaler_patch_seconds", "action", "", "{{action}} "),
                "RayCluster patches, ProvisioningRequest and group creation.",
                unit="s",
                width=8,
            ),
            Panel(
                "Reconcile pass duration",
                "timeseries",
                (
                    _q(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(ray_queue_autoscaler_pass_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    _q(
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(ray_queue_autoscaler_pass_seconds_bucket[{RATE}])))",
                        "p95",
                    ),
                ),
                "Demand read, plan and act; well under Ray's own 5 s loop.",
                unit="s",
                width=8,
            ),
            Panel(
                "Autoscaler actions and errors",
                "timeseries",
                (
                    _q(
                        f"sum by (kind) (rate(ray_queue_autoscaler_actions_total[{RATE}]))",
                        "{{kind}}",
                    ),
                    _q(
                        f"sum by (kind) (rate(ray_queue_autoscaler_errors_total[{RATE}]))",
                        "error: {{kind}}",
                    ),
                ),
                "Errors (conflicts, transient API faults) are retried with back-off.",
                unit="ops",
                width=8,
            ),
            Panel(
                "Unplaceable gangs",
                "timeseries",
                (_q("sum by (group) (ray_queue_autoscaler_unplaceable_gangs)", "{{group}}"),),
                "Gangs no node of their group can hold, or that would exceed maxReplicas: "
                "raise the group's limits or shrink the request.",
                width=24,
                height=6,
            ),
        ),
    ),
)


def _datasource() -> dict[str, str]:
    return {"type": "prometheus", "uid": "${datasource}"}


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, query in enumerate(panel.queries):
        target: dict[str, Any] = {
            "datasource": _datasource(),
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": not query.instant,
            "instant": query.instant,
        }
        if query.instant:
            target["format"] = "table"
        targets.append(target)
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
        }
    body: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _datasource(),
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": {},
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        body["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    elif panel.kind == "table":
        # Instant queries become one table, one row per label set, one column per query.
        body["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ]
    body.update(panel.extra)
    return body


def _variable(name: str, label: str, metric: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _datasource(),
        "query": {"query": f"label_values({metric}, {name})", "refId": f"{name}-values"},
        "definition": f"label_values({metric}, {name})",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schemaVersion 39, Grafana >= 10)."""
    panels: list[dict[str, Any]] = []
    pid = 1
    y = 0
    for row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + line_height
                line_height = 0
            panels.append(_panel_json(panel, pid, x, y))
            pid += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": UID,
        "title": "ray-queue",
        "description": "Queues, quotas, fair sharing, preemption and autoscaling of a "
        "ray-queue cluster (metrics: docs/metrics.md).",
        "tags": ["ray", "ray-queue", "kueue"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("cluster_queue", "ClusterQueue", "ray_queue_pending_workloads"),
                _variable("cohort", "Cohort", "ray_queue_cohort_weighted_share"),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    sys.stdout.write(f"wrote {OUTPUT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
