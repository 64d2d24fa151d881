"""CPU time that each process of a local Ray cluster spends over a measured stretch.

On a two-core machine a burst of short tasks is bound by CPU, not by waiting: every
process involved (the driver, the queue manager, Ray's workers and daemons) competes for
the same cores, so throughput follows the CPU each task costs across all of them. Two
paths with equal latency can differ twofold in throughput here, and wall time alone does
not say which process the difference comes from; this does.

It reads the driver and its descendants (``ray.init(address="local")`` starts the GCS and
the raylet as children of the driver, and the raylet starts the workers), grouped by role.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import psutil

T = TypeVar("T")

#: CPU seconds (user + system) by pid, with the role each pid plays.
Snapshot = dict[int, tuple[str, float]]


def _role(process: psutil.Process, named: Mapping[int, str]) -> str:
    if process.pid in named:
        return named[process.pid]
    argv = process.cmdline()
    first = argv[0] if argv else process.name()
    if first.startswith("ray::"):
        return "ray_workers"
    base = os.path.basename(first)
    if base in ("raylet", "gcs_server"):
        return base
    return "other"


def snapshot(named: Mapping[int, str]) -> Snapshot:
    """CPU seconds of this process and its descendants; ``named`` gives roles by pid
    (the driver is always ``driver``)."""
    roles = {os.getpid(): "driver", **named}
    me = psutil.Process()
    taken: Snapshot = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            with process.oneshot():
                times = process.cpu_times()
                taken[process.pid] = (_role(process, roles), times.user + times.system)
        except psutil.Error:
            continue  # it exited meanwhile
    return taken


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds by role between two snapshots, and their ``total``. A process that
    started in between counts from zero; one that exited in between is lost (its time
    cannot be read any more), which undercounts, never overcounts."""
    by_role: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        _, earlier = before.get(pid, (role, 0.0))
        by_role[role] = by_role.get(role, 0.0) + max(0.0, seconds - earlier)
    by_role["total"] = sum(by_role.values())
    return by_role


def measured(run: Callable[[], T], named: Mapping[int, str]) -> tuple[T, dict[str, float]]:
    """``run()``'s result and the CPU seconds by role that it took."""
    before = snapshot(named)
    result = run()
    return result, spent(before, snapshot(named))
