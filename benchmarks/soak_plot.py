"""A soak report over time, as a PNG: ``python -m benchmarks.soak_plot FILE.json``.

Three panels per minute of the run: time to admission (p50, p99), the manager's RSS,
and the store's size on disk, with the faults marked where they were injected (manager
kills in red, raylet kills in orange, the rest in grey). Also used by ``benchmarks.soak``
itself, which writes the PNG next to its JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: When the first fault is scheduled, in seconds after the load starts
#: (``Faults.fault_schedule``): the origin of reports written before ``started_at``.
FIRST_FAULT_S = 8.0


def origin(report: dict[str, Any]) -> float | None:
    if report.get("started_at"):
        return float(report["started_at"])
    faults = report.get("fault_log") or []
    return float(faults[0]["at"]) - FIRST_FAULT_S if faults else None


def rss_growth(report: dict[str, Any], last_minutes: int = 20) -> float | None:
    """Growth of the manager's RSS over the last ``last_minutes`` of the run: the
    largest sample of the last minute against that of the minute ``last_minutes``
    before it (a manager kill restarts it small, so read it beside the fault log)."""
    rows = [r for r in report["time_series"] if r["manager_rss_mb"]]
    full = [r for r in rows if r["minute"] < report["minutes"]]
    if len(full) <= last_minutes:
        return None
    first = float(full[-1 - last_minutes]["manager_rss_mb"])
    last = float(full[-1]["manager_rss_mb"])
    return round((last - first) / first, 3)


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["time_series"]
    minutes = [r["minute"] + 0.5 for r in rows]
    fig, (latency, rss, store) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    for key, label in (("admission_latency_p50_s", "p50"), ("admission_latency_p99_s", "p99")):
        latency.plot(minutes, [r[key] for r in rows], marker="o", ms=3, label=label)
    latency.set_yscale("symlog", linthresh=0.1)
    latency.set_ylabel("time to admission (s)")
    latency.legend(loc="upper right", fontsize="small")
    rss.plot(minutes, [r["manager_rss_mb"] for r in rows], marker="o", ms=3, color="tab:green")
    rss.set_ylabel("manager RSS (MB)")
    store.plot(minutes, [r["store_mb"] for r in rows], marker="o", ms=3, color="tab:purple")
    store.set_ylabel("store (MB)")
    store.set_xlabel("minute of the run")
    start = origin(report)
    if start is not None:
        colours = {"manager_kill": "red", "raylet_kill": "orange"}
        for fault in report["fault_log"]:
            x = (fault["at"] - start) / 60
            for axis in (latency, rss, store):
                axis.axvline(x, color=colours.get(fault["kind"], "grey"), lw=0.7, alpha=0.6)
    violations = sum(report["violations"].values())
    latency.set_title(
        f"soak, {report['minutes']:g} min, seed {report['seed']}: "
        f"{report['submissions']['accepted']:,} submissions, "
        f"{sum(report['faults'].values())} faults (red: manager kill -9, orange: raylet "
        f"kill), {violations} violations, {report['lost_workloads']} lost"
    )
    for axis in (latency, rss, store):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    out = args.report.with_suffix(".png")
    write_plot(report, out)
    print(f"wrote {out}; RSS growth over the last 20 minutes: {rss_growth(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
