"""Kueue, ray-queue and plain Ray on the same machine, one after the other, in one run.

Our other benchmarks compare a replay of Kueue's scheduler benchmark shapes with the figures
Kueue published from its own CI machines. A figure from another machine is not a
measurement, so this runs all of them here, back to back, on the same shape:

* ``kueue`` — Kueue's own benchmark runner with its ``minimalkueue``, both built from the
  published ``sigs.k8s.io/kueue`` module (``python -m tests.k8s.toolchain --kueue``), fed
  the module's own ``generator.yaml`` for the shape; the runner starts its own etcd and
  kube-apiserver (ours, through ``KUBEBUILDER_ASSETS``), so this is the number Kueue's CI
  reports, measured on this machine;
* ``ray_queue_engine`` — ``benchmarks.engine`` on the same shape (simulated time);
* ``ray_queue_ray`` — ``benchmarks.ray_e2e`` on the same shape (real Ray, wall time);
* ``plain_ray`` — ``benchmarks.plain_ray``: the same arrivals submitted straight to Ray as
  one-bundle placement groups, each held for its runtime once placed and then removed: what
  a user gets with no queue. Ray has no priorities and does not serve pending groups in
  order (ray#21797).

Each system runs in its own child process (the shape's generator config is checked against
``benchmarks.scenarios`` first, so both sides replay the same arrivals), and the report
puts them side by side with the ratios and targets of issue 24:

    .venv/bin/python -m benchmarks.side_by_side --shape baseline \\
        --out benchmarks/results/side-by-side-baseline.json

writes the JSON, a PNG chart beside it (same stem), and prints a table and the command that
reproduces it. ``--shape tiny`` runs ray-queue and plain Ray only (Kueue has no such shape).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import provenance
from benchmarks.scenarios import SCENARIOS, Scenario
from tests.k8s import toolchain

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("kueue", "ray_queue_engine", "ray_queue_ray", "plain_ray")
GENERATORS = "test/performance/scheduler/configs"
"""Where Kueue's module keeps each shape's generator.yaml (read there, never copied)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """A shape as both sides know it: our scenario and Kueue's generator config."""

    name: str
    scenario: Scenario
    #: Kueue's generator config, relative to its module root; None: Kueue has no such shape.
    kueue_generator: str | None
    #: The runner's --timeout (minutes): its recorder gives up after this, without a summary.
    #: About 3x Kueue's own CI wall time for the shape, for a slower, shared machine.
    kueue_timeout_min: int
    #: The wall-clock budget of each run on real Ray; None: the benchmarks' own (5x the
    #: ideal makespan + 60 s). A run that does not finish in it is reported with how many
    #: workloads it finished, and no wall time.
    ray_timeout_s: float | None = None


SHAPES: dict[str, Shape] = {
    "baseline": Shape(
        "baseline", SCENARIOS["kueue-baseline"], f"{GENERATORS}/baseline/generator.yaml", 20
    ),
    # 50,000 workloads arrive within 3.3 s (ideal makespan 4 s): the benchmarks' own
    # budget of 80 s is far too short for Ray to create and remove 50,000 groups.
    "large": Shape(
        "large",
        SCENARIOS["kueue-large"],
        f"{GENERATORS}/large-scale/generator.yaml",
        75,
        ray_timeout_s=600,
    ),
    "tiny": Shape("tiny", SCENARIOS["tiny"], None, 1),
}

#: Issue 24's targets, measured in the same run.
RAY_WALL_VS_KUEUE_MAX = 0.25
RAY_TTA_VS_KUEUE_MAX = 0.5
ENGINE_CPU_VS_KUEUE_MAX = 1 / 20
TOP_CLASS_SOONER_THAN_PLAIN_RAY_MIN = 50.0
RAY_WALL_VS_PLAIN_RAY_MAX = 1.0


class SideBySideError(RuntimeError):
    """A system could not be measured (its message says which and why)."""


def _skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def _failed(error: str) -> dict[str, Any]:
    """A system that ran and could not be measured: reported like a skipped one (no
    figures, no ratios), flagged ``failed``."""
    return {"skipped": f"failed: {error}", "failed": True}


@dataclass(slots=True)
class _Child:
    """What a child process cost: wall time, and the CPU of its whole reaped process tree."""

    returncode: int
    wall_s: float
    tree_cpu_s: float
    load_before: list[float]
    load_after: list[float]


def _run_child(
    cmd: list[str],
    *,
    cwd: Path,
    log: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    on_timeout: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> _Child:
    """Run ``cmd`` in its own process group, output to ``log``; the group is killed after
    the child exits, so nothing it started (etcd, kube-apiserver, Ray) outlives it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = list(os.getloadavg())
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=timeout_s)
        except BaseException:
            # Timeout or Ctrl-C: ask it to stop cleanly (Kueue's runner stops its control
            # plane on SIGINT), then make sure.
            (on_timeout or _interrupt)(proc)
            raise
        finally:
            _kill_group(proc.pid)
    wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _Child(returncode, wall_s, cpu_s, load_before, list(os.getloadavg()))


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_group(pgid: int) -> None:
    # Usually the group is already gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- Kueue -----------------------------------------------------------------------------------


def shape_differences(scenario: Scenario, generator: dict[str, Any]) -> list[str]:
    """Where Kueue's generator config differs from our scenario (empty: same arrivals)."""
    diffs: list[str] = []

    def check(what: str, theirs: Any, ours: Any) -> None:
        if theirs != ours:
            diffs.append(f"{what}: Kueue {theirs!r}, ours {ours!r}")

    cohorts = generator.get("cohorts") or []
    check("cohort sets", len(cohorts), 1)
    if len(cohorts) != 1 or len(cohorts[0].get("queuesSets") or []) != 1:
        return diffs or ["more than one queue set"]
    cohort = cohorts[0]
    queues = cohort["queuesSets"][0]
    check("cohorts", cohort.get("count"), scenario.cohorts)
    check("ClusterQueues per cohort", queues.get("count"), scenario.cluster_queues_per_cohort)
    check("nominalQuota", queues.get("nominalQuota") * 1000, scenario.nominal_cpu_milli)
    limit = queues.get("borrowingLimit")
    check(
        "borrowingLimit",
        None if limit is None else limit * 1000,
        scenario.borrowing_limit_cpu_milli,
    )
    check(
        "reclaimWithinCohort",
        queues.get("reclaimWithinCohort"),
        scenario.reclaim_within_cohort.value,
    )
    check(
        "withinClusterQueue", queues.get("withinClusterQueue"), scenario.within_cluster_queue.value
    )
    theirs: dict[str, tuple[int, int, int, int, int]] = {}
    for workload_set in queues.get("workloadsSets") or []:
        for workload in workload_set.get("workloads") or []:
            theirs[workload["className"]] = (
                workload_set["count"],
                workload_set["creationIntervalMs"],
                workload["runtimeMs"],
                workload["priority"],
                workload["request"] * 1000,
            )
    ours = {
        c.name: (c.count, c.interval_ms, c.runtime_ms, c.priority, c.cpu_milli)
        for c in scenario.classes
    }
    check("workload classes (count, interval ms, runtime ms, priority, milli-CPU)", theirs, ours)
    return diffs


def run_kueue(
    shape: Shape, work: Path, *, build: bool, say: Callable[[str], None] = lambda _msg: None
) -> dict[str, Any]:
    """Kueue's runner with minimalkueue on the shape; the figures of its summary."""
    if shape.kueue_generator is None:
        return _skipped(f"Kueue has no generator config for shape {shape.name!r}")
    missing = toolchain.kueue_bench_missing()
    if missing is not None and not build:
        return _skipped(f"Kueue's benchmark tools are absent: {missing}")
    try:
        tools = toolchain.ensure_kueue_bench_tools(say)
    except toolchain.ToolchainUnavailable as exc:
        return _skipped(f"Kueue's benchmark tools could not be built: {exc}")
    import yaml

    generator = tools.project_dir / shape.kueue_generator
    diffs = shape_differences(shape.scenario, yaml.safe_load(generator.read_text()))
    if diffs:
        raise SideBySideError(f"{generator} is not our {shape.scenario.name}: {'; '.join(diffs)}")
    out = work / "kueue"
    out.mkdir(parents=True, exist_ok=True)
    env_vars = {
        "KUBEBUILDER_ASSETS": str(tools.kubebuilder_assets),
        "PROJECT_DIR": str(tools.project_dir),
    }
    cmd = [
        str(tools.runner),
        f"--o={out}",
        f"--crds={tools.project_dir / 'config' / 'components' / 'crd' / 'bases'}",
        f"--generatorConfig={generator}",
        f"--minimalKueue={tools.minimalkueue}",
        f"--timeout={shape.kueue_timeout_min}m",
    ]
    command = shlex.join([*(f"{k}={v}" for k, v in env_vars.items()), *cmd])
    say(f"kueue: {command}")
    child = _run_child(
        cmd,
        cwd=tools.project_dir,
        log=out / "runner.log",
        timeout_s=shape.kueue_timeout_min * 60 + 300,
        env=os.environ | env_vars,
    )
    summary_path, stats_path = out / "summary.yaml", out / "minimalkueue.stats.yaml"
    if child.returncode != 0 or not summary_path.exists() or not stats_path.exists():
        raise SideBySideError(
            f"Kueue's runner exited {child.returncode} without its summary "
            f"(log {out / 'runner.log'}):\n{_tail(out / 'runner.log')}"
        )
    summary = yaml.safe_load(summary_path.read_text())
    stats = yaml.safe_load(stats_path.read_text())
    classes = summary.get("workloadClasses") or {}
    usage = {
        name: {
            "cpu_average_usage_percent": (
                100.0 * group["cpuAverageUsage"] / group["nominalQuota"]
                if group.get("nominalQuota")
                else None
            ),
            "makespan_s": _seconds_between(group.get("firstEventTime"), group.get("lastEventTime")),
        }
        for name, group in (summary.get("clusterQueueClasses") or {}).items()
    }
    return {
        # Kueue's own wall figure (its rangespec's maxWallMs): minimalkueue's lifetime, from
        # its start to the runner's recorder seeing every workload finished.
        "wall_s": stats["wallMs"] / 1000.0,
        "mean_time_to_admission_s": {
            name: c["averageTimeToAdmissionMs"] / 1000.0 for name, c in sorted(classes.items())
        },
        "mean_time_to_finish_s": {
            name: c["averageTimeToFinishMs"] / 1000.0 for name, c in sorted(classes.items())
        },
        "evictions": {name: c["totalEvictions"] for name, c in sorted(classes.items())},
        "workloads_by_class": {name: c["count"] for name, c in sorted(classes.items())},
        "dropped_workload_events": summary.get("droppedWorkloadEvents"),
        "cluster_queue_usage": usage,
        # minimalkueue alone: the scheduler's cost, as Kueue's checker reads it.
        "cpu_s": (stats["userMs"] + stats["sysMs"]) / 1000.0,
        "cpu_user_s": stats["userMs"] / 1000.0,
        "cpu_sys_s": stats["sysMs"] / 1000.0,
        "peak_rss_mb": stats["maxrss"] / 1024.0,  # ru_maxrss: KiB on Linux
        # The runner, minimalkueue, etcd and kube-apiserver together.
        "process_tree_cpu_s": child.tree_cpu_s,
        "runner_wall_s": child.wall_s,
        "summary": json.loads(json.dumps(summary, default=str)),
        "artifacts": str(out),
        "command": command,
        "load_average_before": child.load_before,
        "load_average_after": child.load_after,
    }


def _seconds_between(first: Any, last: Any) -> float | None:
    start, end = _timestamp(first), _timestamp(last)
    return None if start is None or end is None else (end - start).total_seconds()


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 time from Kueue's summary (YAML may already have parsed it)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    # Go writes nanoseconds; Python's parser takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# -- ray-queue: the engine and real Ray, through their own benchmarks -----------------------


def _python_module(
    module: str, args: list[str], work: Path, name: str, timeout_s: float
) -> tuple[dict[str, Any], str, _Child]:
    out = work / f"{name}.json"
    cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
    command = shlex.join(["python", "-m", module, *args, "--out", f"{name}.json"])
    child = _run_child(cmd, cwd=REPO_ROOT, log=work / f"{name}.log", timeout_s=timeout_s)
    if not out.exists():
        log = _tail(work / f"{name}.log")
        raise SideBySideError(f"`{command}` exited {child.returncode} without a report:\n{log}")
    return json.loads(out.read_text()), command, child


def run_engine(shape: Shape, work: Path) -> dict[str, Any]:
    doc, command, child = _python_module(
        "benchmarks.engine", ["--scenario", shape.scenario.name], work, "ray-queue-engine", 3600
    )
    classes = doc["classes"]
    return {
        # Simulated seconds: the engine's schedule with a scheduler that takes no time.
        "wall_s": doc["makespan_s"],
        "simulated": True,
        "mean_time_to_admission_s": doc["mean_time_to_admission_s"],
        "evictions": {name: c["evictions"] for name, c in classes.items()},
        "finished": doc["finished"],
        "workloads": doc["workloads"],
        "ideal_makespan_s": doc["ideal_makespan_s"],
        # Inside Engine calls only (the simulator's bookkeeping is not counted).
        "cpu_s": doc["engine_cpu_s"],
        "peak_rss_mb": doc["peak_rss_mb"],
        "process_tree_cpu_s": child.tree_cpu_s,
        "process_wall_s": child.wall_s,
        "command": command,
        "load_average_before": child.load_before,
        "load_average_after": child.load_after,
    }


def _ray_args(shape: Shape) -> tuple[list[str], float]:
    """The real-Ray benchmarks' arguments for the shape, and the child's own limit."""
    args = ["--scenario", shape.scenario.name]
    if shape.ray_timeout_s is None:
        return args, 5 * shape.scenario.ideal_makespan_s() + 600
    return [*args, "--timeout-s", f"{shape.ray_timeout_s:g}"], shape.ray_timeout_s + 600


def run_ray_queue(shape: Shape, work: Path) -> dict[str, Any]:
    args, limit_s = _ray_args(shape)
    doc, command, child = _python_module("benchmarks.ray_e2e", args, work, "ray-queue-ray", limit_s)
    classes = doc["classes"]
    return {
        "wall_s": doc["makespan_wall_s"],
        "mean_time_to_admission_s": doc["mean_time_to_admission_s"],
        "mean_admitted_to_placed_s": {
            name: c["mean_admitted_to_placed_s"] for name, c in classes.items()
        },
        "evictions": {name: c["preemptions"] for name, c in classes.items()},
        "finished": doc["finished"],
        "workloads": doc["workloads"],
        "timed_out": doc["timed_out"],
        "ideal_makespan_s": doc["ideal_makespan_s"],
        "admissions_per_s": doc["admissions_per_s"],
        # Where each class's time to admission went (``ray_e2e._admission_breakdown``).
        "admission_breakdown_s": {
            name: c.get("admission_breakdown_s") for name, c in classes.items()
        },
        # The queue manager actor: the process that plays minimalkueue's part.
        "peak_rss_mb": doc["manager_peak_rss_mb"],
        "manager_cpu_s": doc.get("manager_cpu_s"),
        "submit_lag_s": doc["submit_lag_s"],
        # The driver, the manager and Ray's processes, as far as they were reaped.
        "process_tree_cpu_s": child.tree_cpu_s,
        "process_wall_s": child.wall_s,
        "command": command,
        "load_average_before": child.load_before,
        "load_average_after": child.load_after,
    }


def run_plain_ray(shape: Shape, work: Path) -> dict[str, Any]:
    args, limit_s = _ray_args(shape)
    doc, command, child = _python_module("benchmarks.plain_ray", args, work, "plain-ray", limit_s)
    system: dict[str, Any] = {
        "wall_s": doc["makespan_s"],
        # Time to placement: Ray places a group or leaves it pending; there is no admission.
        "mean_time_to_admission_s": doc["mean_time_to_placement_s"],
        # Ray never takes a placed group back.
        "evictions": dict.fromkeys(doc["classes"], 0),
        "evicts": False,
        **{k: doc[k] for k in ("classes", "finished", "workloads", "timed_out", "submit_lag_s")},
    }
    system.update(
        process_tree_cpu_s=child.tree_cpu_s,
        process_wall_s=child.wall_s,
        command=command,
        load_average_before=child.load_before,
        load_average_after=child.load_after,
    )
    return system


# -- the report ------------------------------------------------------------------------------


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def _wall(systems: dict[str, dict[str, Any]], name: str) -> float | None:
    """The system's wall time, if it finished every workload (a run cut short by its
    budget has the wall time of the ones it finished, no measure of the whole)."""
    system = systems.get(name, {})
    value = system.get("wall_s")
    if value is None or system.get("finished", 0) < system.get("workloads", 0):
        return None
    return float(value)


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    return {
        "ray_queue_ray_wall_vs_kueue": _ratio(
            _wall(systems, "ray_queue_ray"), _wall(systems, "kueue")
        ),
        "ray_queue_engine_wall_vs_kueue": _ratio(
            _wall(systems, "ray_queue_engine"), _wall(systems, "kueue")
        ),
        "ray_queue_ray_wall_vs_plain_ray": _ratio(
            _wall(systems, "ray_queue_ray"), _wall(systems, "plain_ray")
        ),
    }


def targets(scenario: Scenario, systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 24's targets; ``met`` is None where a system it needs was not measured."""

    def target(value: float | None, *, limit: float, at_most: bool) -> dict[str, Any]:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        return {"max" if at_most else "min": limit, "value": value, "met": met}

    kueue, engine = systems.get("kueue", {}), systems.get("ray_queue_engine", {})
    ray_queue, plain = systems.get("ray_queue_ray", {}), systems.get("plain_ray", {})
    out: dict[str, Any] = {
        "ray_queue_ray_wall_vs_kueue": target(
            _ratio(_wall(systems, "ray_queue_ray"), _wall(systems, "kueue")),
            limit=RAY_WALL_VS_KUEUE_MAX,
            at_most=True,
        ),
    }
    for workload_class in scenario.classes:
        name = workload_class.name
        ours = ray_queue.get("mean_time_to_admission_s", {}).get(name)
        theirs = kueue.get("mean_time_to_admission_s", {}).get(name)
        out[f"ray_queue_ray_time_to_admission_vs_kueue.{name}"] = target(
            _ratio(ours, theirs), limit=RAY_TTA_VS_KUEUE_MAX, at_most=True
        )
    out["ray_queue_engine_cpu_vs_kueue"] = target(
        _ratio(engine.get("cpu_s"), kueue.get("cpu_s")), limit=ENGINE_CPU_VS_KUEUE_MAX, at_most=True
    )
    top = max(scenario.classes, key=lambda c: c.priority).name
    out[f"plain_ray_vs_ray_queue_time_to_admission.{top}"] = target(
        _ratio(
            plain.get("mean_time_to_admission_s", {}).get(top),
            ray_queue.get("mean_time_to_admission_s", {}).get(top),
        ),
        limit=TOP_CLASS_SOONER_THAN_PLAIN_RAY_MIN,
        at_most=False,
    )
    out["ray_queue_ray_wall_vs_plain_ray"] = target(
        _ratio(_wall(systems, "ray_queue_ray"), _wall(systems, "plain_ray")),
        limit=RAY_WALL_VS_PLAIN_RAY_MAX,
        at_most=True,
    )
    return out


def versions() -> dict[str, Any]:
    import ray

    go = toolchain.go_binary()
    go_version = None
    if go is not None:
        done = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        go_version = done.stdout.strip() or None
    return {
        "ray": ray.__version__,
        "kueue": toolchain.KUEUE_VERSION,
        "etcd": toolchain.ETCD_VERSION,
        "kube_apiserver": toolchain.KUBERNETES_VERSION,
        "go": go_version,
    }


def print_summary(doc: dict[str, Any], console: Console) -> None:
    systems: dict[str, dict[str, Any]] = doc["systems"]
    table = Table(title=f"side by side: {doc['shape']} ({doc['workloads']:,} workloads)")
    table.add_column("metric")
    labels = {
        "kueue": "Kueue",
        "ray_queue_engine": "ray-queue engine (sim.)",
        "ray_queue_ray": "ray-queue on Ray",
        "plain_ray": "plain Ray",
    }
    names = [n for n in SYSTEMS if n in systems]
    for name in names:
        table.add_column(labels[name], justify="right")

    def row(label: str, key: str, sub: str | None = None, fmt: str = "{:.2f}") -> None:
        cells = []
        for name in names:
            value = systems[name].get(key)
            if isinstance(value, dict) and sub is not None:
                value = value.get(sub)
            skipped = "skipped" in systems[name]
            cells.append("skipped" if skipped else "" if value is None else fmt.format(value))
        table.add_row(label, *cells)

    classes = [c.name for c in SHAPES[doc["shape"]].scenario.classes]
    row("wall / makespan (s)", "wall_s", fmt="{:.1f}")
    for name in classes:
        row(f"mean time to admission, {name} (s)", "mean_time_to_admission_s", name)
    for name in classes:
        row(f"evictions, {name}", "evictions", name, fmt="{:,}")
    row("scheduler CPU (s)", "cpu_s", fmt="{:.1f}")
    row("process tree CPU (s)", "process_tree_cpu_s", fmt="{:.1f}")
    row("peak RSS (MB)", "peak_rss_mb", fmt="{:.0f}")
    console.print(table)
    for name, system in systems.items():
        if "skipped" in system:
            console.print(f"{labels[name]} skipped: {system['skipped']}")
    for name, value in doc["ratios"].items():
        console.print(f"{name}: {'-' if value is None else f'{value:.3f}'}")
    for name, target in doc["targets"].items():
        if target["met"] is None:
            continue
        bound = f"<= {target['max']:g}" if "max" in target else f">= {target['min']:g}"
        verdict = "[green]met[/]" if target["met"] else "[red]MISSED[/]"
        console.print(f"target {name} {bound}: {target['value']:.3f} {verdict}")
    console.print(
        f"load average before / after: {doc['load_average_before']} / {doc['load_average_after']}"
    )
    console.print(f"reproduce: {doc['command']}")


def write_chart(doc: dict[str, Any], path: Path) -> bool:
    """Wall time and mean time to admission per class, one bar per system. False when
    matplotlib is not installed (it is optional)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = {n: s for n, s in doc["systems"].items() if "skipped" not in s}
    names = [n for n in SYSTEMS if n in systems]
    classes = [c.name for c in SHAPES[doc["shape"]].scenario.classes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    colors = {
        "kueue": "#326ce5",
        "ray_queue_engine": "#9ecae1",
        "ray_queue_ray": "#e6550d",
        "plain_ray": "#969696",
    }
    left.bar(
        range(len(names)), [systems[n]["wall_s"] for n in names], color=[colors[n] for n in names]
    )
    left.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize="small")
    left.set_ylabel("wall time / makespan (s)")
    left.set_title("makespan (engine: simulated)")
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        tta = systems[name]["mean_time_to_admission_s"]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(classes))]
        # Log scale: a zero (admitted at once) is drawn at 10 ms so it stays visible.
        right.bar(
            xs, [max(tta.get(c, 0.0), 0.01) for c in classes], width, label=name, color=colors[name]
        )
    right.set_yscale("log")
    right.set_xticks(range(len(classes)), classes)
    right.set_ylabel("mean time to admission / placement (s, log)")
    right.set_title("by workload class (priority: small < medium < large)")
    right.legend(fontsize="small")
    for axis in (left, right):
        axis.grid(alpha=0.3, axis="y")
    # The 1-minute load average at each system's start and end: the machine is shared.
    loads = [doc["load_average_before"][0], doc["load_average_after"][0]] + [
        s[key][0]
        for s in systems.values()
        for key in ("load_average_before", "load_average_after")
        if key in s
    ]
    cores = doc["machine"]["cores"]
    fig.suptitle(
        f"{doc['shape']}: {doc['workloads']:,} workloads, one after the other on {cores} cores "
        f"(1-min load average {min(loads):.0f} to {max(loads):.0f}); 0 s drawn at 10 ms"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(
    shape: Shape,
    out: Path,
    *,
    systems: Sequence[str],
    command: str,
    build: bool = True,
    chart: bool = True,
    keep: Path | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Measure each of ``systems`` one after the other, then write the JSON (and chart).
    Each system's own report and logs go to ``keep`` if given, else to a temporary
    directory removed at the end."""
    load_before = list(os.getloadavg())
    started = datetime.now(timezone.utc)
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        work = Path(tmp) if keep is None else keep
        work.mkdir(parents=True, exist_ok=True)
        for name in SYSTEMS:
            if name not in systems:
                continue
            say(f"{name} ...")
            began = time.monotonic()
            try:
                measured[name] = _measure(name, shape, work, build=build, keep=keep, say=say)
            except SideBySideError as e:
                # One system failing (Kueue's runner timing out on a loaded machine) must
                # not throw away the others' measurements: it is reported, and ``main``
                # exits non-zero.
                say(f"{name}: FAILED: {e}")
                measured[name] = _failed(str(e))
                continue
            say(f"{name}: done in {time.monotonic() - began:.0f} s")
    scenario = shape.scenario
    doc: dict[str, Any] = {
        "benchmark": "side_by_side",
        "shape": shape.name,
        "scenario": scenario.name,
        "kueue_generator": shape.kueue_generator,
        "workloads": scenario.workload_count,
        "ideal_makespan_s": scenario.ideal_makespan_s(),
        "systems": measured,
        "ratios": ratios(measured),
        "targets": targets(scenario, measured),
        "commands": {name: s.get("command") for name, s in measured.items() if "command" in s},
        "command": command,
        "machine": provenance.machine(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "versions": versions(),
        **provenance.git("ray_queue", "benchmarks"),
        "started_utc": started.isoformat(timespec="seconds"),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "chart": None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if chart and write_chart(doc, out.with_suffix(".png")):
        doc["chart"] = _relative(out.with_suffix(".png"))
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _measure(
    name: str,
    shape: Shape,
    work: Path,
    *,
    build: bool,
    keep: Path | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    if name == "kueue":
        measured = run_kueue(shape, work, build=build, say=say)
        if keep is None:  # its summary, logs and CSVs vanish with the temp dir
            measured.pop("artifacts", None)
        return measured
    if name == "ray_queue_engine":
        return run_engine(shape, work)
    if name == "ray_queue_ray":
        return run_ray_queue(shape, work)
    return run_plain_ray(shape, work)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.side_by_side",
        description="Kueue, ray-queue (engine and real Ray) and plain Ray on one shape, "
        "one after the other on this machine.",
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON report path (.json)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all, in that order)",
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="skip Kueue when its runner is not built yet, instead of building it (~5 min)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not write the PNG")
    parser.add_argument(
        "--keep-artifacts",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each system's own report and logs (Kueue's summary.yaml, CSVs, runner "
        "log) in DIR instead of a temporary directory",
    )
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := sorted(set(systems) - set(SYSTEMS)):
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    console = Console(stderr=True)
    doc = run(
        SHAPES[args.shape],
        args.out,
        systems=systems,
        command=provenance.command("benchmarks.side_by_side", argv),
        build=not args.no_build,
        chart=not args.no_chart,
        keep=args.keep_artifacts,
        say=lambda msg: console.print(f"[side-by-side] {msg}", markup=False),
    )
    print_summary(doc, Console())
    if any(s.get("failed") for s in doc["systems"].values()):
        return 1
    unfinished = any(
        s.get("finished", s.get("workloads")) != s.get("workloads")
        for s in doc["systems"].values()
        if "skipped" not in s and isinstance(s.get("workloads"), int)
    )
    return 1 if unfinished else 0


if __name__ == "__main__":
    raise SystemExit(main())
