"""How the CLI shows things: rich tables for people, JSON/YAML for scripts.

Resource amounts are milli-units inside ray-queue; people read them in Ray's units
(``1.5`` CPUs, ``16Gi`` memory), scripts get the exact milli-unit integers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import yaml
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ray_queue.engine.model import (
    ClusterQueueStatus,
    CohortStatus,
    FlavorResource,
    PendingPosition,
    ResourceStatus,
    WorkloadKind,
    WorkloadStatus,
)
from ray_queue.engine.quantity import human_amount
from ray_queue.wire import UnmanagedUsage

BAR_WIDTH = 12
_STATE_STYLE = {
    "PENDING": "yellow",
    "QUOTA_RESERVED": "cyan",
    "ADMITTED": "green",
    "EVICTED": "magenta",
    "FINISHED": "dim",
    "REJECTED": "red",
    "FAILED": "red",
    "CANCELLED": "dim",
}


def jsonable(value: Any) -> Any:
    """Engine values as plain JSON: enums by value, (flavor, resource) keys as
    ``"flavor/resource"``, infinite shares as ``null``."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {
            "/".join(k) if isinstance(k, tuple) else str(k): jsonable(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def dump(data: Any, fmt: str) -> str:
    plain = jsonable(data)
    if fmt == "yaml":
        return str(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return json.dumps(plain, indent=2)


def amount(resource: str, milli: int) -> str:
    """A milli-unit amount in Ray's units: memory in bytes with binary suffixes."""
    return human_amount(resource, milli)


def _bar(used: int, nominal: int, borrowed: int) -> Text:
    total = max(nominal, used, 1)
    own = min(used, nominal)
    own_cells = round(BAR_WIDTH * own / total)
    borrowed_cells = round(BAR_WIDTH * borrowed / total) if borrowed else 0
    free = max(0, BAR_WIDTH - own_cells - borrowed_cells)
    bar = Text()
    bar.append("█" * own_cells, style="green")
    bar.append("█" * borrowed_cells, style="yellow")
    bar.append("░" * free, style="dim")
    return bar


def _shown(resources: Iterable[ResourceStatus]) -> list[ResourceStatus]:
    # Resources with neither quota nor usage (GPU on a CPU flavor) are noise here.
    return [r for r in resources if r.nominal or r.usage]


def _label(r: ResourceStatus) -> str:
    return f"{r.resource}[{r.flavor}]"


def _usage_lines(resources: Sequence[ResourceStatus], label_width: int = 16) -> Text:
    shown = _shown(resources)
    if not shown:
        return Text("-", style="dim")
    out = Text()
    for i, r in enumerate(shown):
        if i:
            out.append("\n")
        out.append(f"{_label(r)} ".ljust(label_width))
        out.append_text(_bar(r.usage, r.nominal, r.borrowed))
        out.append(f" {amount(r.resource, r.usage)}/{amount(r.resource, r.nominal)}")
        if r.borrowed:
            out.append(f" (+{amount(r.resource, r.borrowed)} borrowed)", style="yellow")
    return out


def _share(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3f}"


def _lendable(
    quota: Mapping[FlavorResource, int], resources: Iterable[ResourceStatus]
) -> dict[FlavorResource, int]:
    """What a member with ``quota`` adds to its cohort's pool: all of it, or at most its
    lending limit."""
    limits = {(r.flavor, r.resource): r.lending_limit for r in resources}
    out = {}
    for key, amount in quota.items():
        limit = limits.get(key)
        out[key] = amount if limit is None else min(amount, limit)
    return out


def cohort_pools(
    cluster_queues: Sequence[ClusterQueueStatus], cohorts: Sequence[CohortStatus]
) -> dict[str, dict[FlavorResource, int]]:
    """Each cohort's quota as its usage is counted against: its own nominal quota plus
    what its members (ClusterQueues and child cohorts) may lend it. A cohort with no
    quota of its own would otherwise show its members' borrowing as "4/0"."""
    by_name = {c.name: c for c in cohorts}
    pools: dict[str, dict[FlavorResource, int]] = {}

    def pool(name: str) -> dict[FlavorResource, int]:
        if name in pools:
            return pools[name]
        pools[name] = {}  # a cycle (never valid in a config) adds nothing
        cohort = by_name.get(name)
        total: dict[FlavorResource, int] = {}
        if cohort is not None:
            for r in cohort.resources:
                total[(r.flavor, r.resource)] = r.nominal
        members = [
            ({(r.flavor, r.resource): r.nominal for r in cq.resources}, cq.resources)
            for cq in cluster_queues
            if cq.cohort == name
        ]
        members += [(pool(c.name), c.resources) for c in cohorts if c.parent == name]
        for quota, resources in members:
            for key, amount in _lendable(quota, resources).items():
                total[key] = total.get(key, 0) + amount
        pools[name] = total
        return total

    for cohort in cohorts:
        pool(cohort.name)
    return pools


def _pooled(cohort: CohortStatus, pool: Mapping[FlavorResource, int]) -> list[ResourceStatus]:
    """A cohort's resources with its pool as their quota (``cohort_pools``)."""
    resources = [
        dataclasses.replace(r, nominal=pool.get((r.flavor, r.resource), r.nominal))
        for r in cohort.resources
    ]
    known = {(r.flavor, r.resource) for r in cohort.resources}
    resources += [
        ResourceStatus(flavor, resource, amount, None, None, 0, 0)
        for (flavor, resource), amount in pool.items()
        if (flavor, resource) not in known
    ]
    return sorted(resources, key=lambda r: (r.flavor, r.resource))


def status_view(
    cluster_queues: Sequence[ClusterQueueStatus],
    cohorts: Sequence[CohortStatus],
    unmanaged: Sequence[UnmanagedUsage] = (),
) -> Group:
    """The ClusterQueue and cohort tables, and what runs in Ray outside the queue."""
    pools = cohort_pools(cluster_queues, cohorts)
    cohort_rows = [(c, _pooled(c, pools.get(c.name, {}))) for c in cohorts]
    # One label width for every row of both tables, so the bars line up.
    every = [r for cq in cluster_queues for r in cq.resources]
    every += [r for _, resources in cohort_rows for r in resources]
    label_width = max((len(_label(r)) + 1 for r in _shown(every)), default=10)

    cq_table = Table(title="ClusterQueues", title_justify="left", expand=False)
    for column in ("NAME", "COHORT"):
        cq_table.add_column(column, overflow="fold")
    # Named as the workload states are (``list workloads --state``); counts are short,
    # so the headers are the columns' width.
    for column in ("PENDING", "QUOTA_RESERVED", "ADMITTED"):
        cq_table.add_column(column, no_wrap=True, justify="right")
    cq_table.add_column("USAGE / QUOTA", no_wrap=True)
    cq_table.add_column("SHARE", no_wrap=True)
    for cq in cluster_queues:
        cq_table.add_row(
            cq.name,
            cq.cohort or "-",
            str(cq.pending),
            str(cq.reserving),
            str(cq.admitted),
            _usage_lines(cq.resources, label_width),
            _share(cq.weighted_share),
        )
    parts: list[Any] = [cq_table]
    if cohort_rows:
        cohort_table = Table(title="Cohorts", title_justify="left")
        for column in ("NAME", "PARENT"):
            cohort_table.add_column(column, overflow="fold")
        # A cohort's quota: its own plus what its members may lend it.
        cohort_table.add_column("USAGE / POOL", no_wrap=True)
        cohort_table.add_column("SHARE", no_wrap=True)
        for c, resources in cohort_rows:
            cohort_table.add_row(
                c.name,
                c.parent or "-",
                _usage_lines(resources, label_width),
                _share(c.weighted_share),
            )
        parts.append(cohort_table)
    if unmanaged:
        outside = Table(title="In use outside the queue", title_justify="left")
        for column in ("FLAVOR", "RESOURCE", "IN USE", "HELD BY RAY JOB"):
            outside.add_column(column, no_wrap=True)
        for u in unmanaged:
            whose = ", ".join(f"{job} {human_amount(u.resource, n)}" for job, n in u.by_job)
            outside.add_row(
                u.flavor, u.resource, human_amount(u.resource, u.amount), safe(whose or "-")
            )
        parts.append(outside)
    return Group(*parts)


def safe(value: str) -> Text:
    """``value`` as literal terminal text: control characters (escape sequences, which
    could repaint an admin's terminal) are shown escaped, and rich markup is not read.
    Workload ids, names and messages come from tenants."""
    return Text(
        "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in value)
    )


def _requests(status: WorkloadStatus) -> str:
    parts = []
    for group in status.spec.bundle_groups:
        shape = ",".join(f"{k}={amount(k, v)}" for k, v in sorted(group.resources.items()))
        parts.append(f"{group.count}x{{{shape}}}")
    return " ".join(parts)


def workloads_table(statuses: Iterable[WorkloadStatus]) -> Table:
    table = Table()
    columns = ("ID", "NAME", "QUEUE", "CLUSTERQUEUE", "PRIORITY", "STATE", "REQUEST", "MESSAGE")
    for column in columns:
        table.add_column(column, overflow="fold")
    for s in statuses:
        table.add_row(
            safe(s.spec.id),
            safe(s.spec.name or "-"),
            safe(s.spec.queue),
            safe(s.cluster_queue),
            str(s.priority),
            Text(s.state.value, style=_STATE_STYLE.get(s.state.value, "")),
            safe(_requests(s)),
            safe(s.message),
        )
    return table


def pending_table(positions: Iterable[PendingPosition]) -> Table:
    table = Table()
    columns = (
        "POS(CQ)",
        "POS(QUEUE)",
        "ID",
        "NAME",
        "JOB",
        "QUEUE",
        "CLUSTERQUEUE",
        "PRIORITY",
        "WHY",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for p in positions:
        table.add_row(
            str(p.position_in_cluster_queue),
            str(p.position_in_queue),
            safe(p.workload),
            safe(p.name or "-"),
            safe(p.parent or "-"),
            safe(p.queue),
            safe(p.cluster_queue),
            str(p.priority),
            safe(p.reason),
        )
    return table


def describe_view(s: WorkloadStatus, children: Sequence[WorkloadStatus] = ()) -> Group:
    """A workload in detail; for a job, its cap and the children its run made."""
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    rows = [
        ("ID", s.spec.id),
        ("Name", s.spec.name or "-"),
        ("Kind", s.spec.kind.value),
        ("Queue", s.spec.queue),
        ("ClusterQueue", s.cluster_queue),
        ("Priority", f"{s.priority} ({s.spec.priority_class or 'default'})"),
        ("Owner", s.spec.owner or "-"),
        ("State", s.state.value),
        ("Reason", s.reason),
        ("Message", s.message),
        ("Request", _requests(s)),
        ("Strategy", s.spec.strategy.value),
        ("Requeues", str(s.requeue_count)),
        ("Placed", "yes" if s.placed else "no"),
    ]
    if s.admission is not None:
        usage = ", ".join(
            f"{r}[{f}]={amount(r, v)}" for (f, r), v in sorted(s.admission.usage.items())
        )
        rows.append(("Admission", f"{s.admission.cluster_queue}: {usage}"))
    if s.checks:
        rows.append(("Checks", ", ".join(f"{k}={v.value}" for k, v in s.checks.items())))
    if s.spec.parent is not None:
        rows.append(("Job", s.spec.parent))
    if s.spec.kind is WorkloadKind.JOB:
        cap = s.spec.max_resources
        limits = ", ".join(f"{r}={amount(r, v)}" for r, v in sorted(cap.items())) if cap else ""
        rows.append(("Max resources", limits or "none"))
        live = [c for c in children if c.state.holds_quota]
        rows.append(("Children", f"{len(children)} ({len(live)} holding quota)"))
    for key, value in rows:
        info.add_row(key, safe(value))
    history = Table(title="History", title_justify="left")
    for column in ("AT", "FROM", "TO", "REASON", "MESSAGE"):
        history.add_column(column, overflow="fold")
    for t in s.history:
        history.add_row(
            _time(t.at), t.from_state.value, t.to_state.value, safe(t.reason), safe(t.message)
        )
    if not children:
        return Group(info, history)
    family = Table(title="Children", title_justify="left")
    for column in ("ID", "KIND", "STATE", "REQUEST", "MESSAGE"):
        family.add_column(column, overflow="fold")
    for c in children:
        family.add_row(
            safe(c.spec.id), c.spec.kind.value, c.state.value, safe(_requests(c)), safe(c.message)
        )
    return Group(info, family, history)


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def console() -> Console:
    # Piped output gets a wide fixed width rather than rich's 80 columns, so tables are
    # not folded into unreadable slivers in logs.
    wide = None if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=False, width=wide)


def status_text(
    cluster_queues: Sequence[ClusterQueueStatus], cohorts: Sequence[CohortStatus]
) -> str:
    """The ``status`` tables as plain text (Ray's units, no colour), for a human-facing
    view of ``ray_queue.status()`` from Python."""
    out = io.StringIO()
    Console(file=out, width=120, color_system=None, highlight=False).print(
        status_view(cluster_queues, cohorts)
    )
    return out.getvalue()
