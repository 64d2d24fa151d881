"""Every Grafana panel's query, run by a real Prometheus against a loaded ray-queue.

The dashboard ships in the Helm chart; a panel whose query names a metric that does not
exist, or misuses a label, shows "No data" forever and nobody notices. Here a real
Prometheus (Debian's package; ``scripts/install-prometheus.sh``) scrapes the manager's and
the autoscaler's ``/metrics`` every second while the real engine and autoscaler run under
load (``load.py``), and then every query of every panel is evaluated through Prometheus's
HTTP API: each must parse, and each must return data with at least one real number.

The key panels' series, as Prometheus answered them, are plotted into PNGs; with
``RAY_QUEUE_UPDATE_DOCS_IMAGES=1`` they are written to ``docs/images/`` (the pictures in
``docs/observability.md``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.metrics import Metrics as AutoscalerMetrics
from ray_queue.metrics import METRICS
from tests.k8s.process import wait_for
from tests.observability.load import SPEED, LoadedQueue
from tests.observability.prometheus import (
    Prometheus,
    PromQLError,
    prometheus_binary,
    start_prometheus,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "ray-queue" / "dashboards" / "ray-queue.json"
BUILDER = ROOT / "helm" / "build_dashboard.py"
DOC_IMAGES = ROOT / "docs" / "images"

#: What Grafana would put in for the template variables: All, and a rate window of a few
#: scrape intervals (Grafana's $__rate_interval is at least four).
VARIABLES = {"$__rate_interval": "15s", "$cluster_queue": ".*", "$cohort": ".*"}
#: Seconds of load Prometheus must have scraped before the queries are judged.
LOAD_S = 40.0
STEP_S = 1.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], t) for panel in _panels() for t in panel["targets"]]


def _expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def _known_metric_names() -> set[str]:
    names = set()
    for spec in METRICS:
        names.add(spec.name)
        if spec.kind == "histogram":
            names |= {spec.name + s for s in ("_bucket", "_sum", "_count")}
    for family in AutoscalerMetrics().registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        # Samples of unlabelled families only appear once observed; add the usual suffixes.
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        if family.type == "counter":
            names.add(family.name + "_total")
        names.add(family.name)
    return names


# -- checks that need no Prometheus ---------------------------------------------------------


def test_committed_dashboard_is_what_the_builder_builds() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_dashboard"] = module
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), (
        "helm/ray-queue/dashboards/ray-queue.json is stale: run "
        "`.venv/bin/python helm/build_dashboard.py`"
    )


def test_every_query_names_only_real_metrics() -> None:
    known = _known_metric_names()
    used: set[str] = set()
    for title, target in _targets():
        names = set(re.findall(r"\bray_queue_[a-z_]+\b", target["expr"]))
        assert names, f"{title}: query names no ray-queue metric: {target['expr']}"
        unknown = names - known
        assert not unknown, f"{title}: unknown metrics {sorted(unknown)}"
        used |= names
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.match(r"label_values\((\w+), *(\w+)\)", variable["definition"])
            assert metric and metric.group(1) in known, variable["definition"]
    # And the dashboard shows every family the design promises (DESIGN §6).
    for family in (
        "ray_queue_pending_workloads",
        "ray_queue_admitted_active_workloads",
        "ray_queue_cluster_queue_resource_usage",
        "ray_queue_cluster_queue_nominal_quota",
        "ray_queue_cluster_queue_borrowing_limit",
        "ray_queue_cluster_queue_weighted_share",
        "ray_queue_cohort_weighted_share",
        "ray_queue_admission_wait_time_seconds_bucket",
        "ray_queue_preempted_workloads_total",
        "ray_queue_evicted_workloads_total",
        "ray_queue_autoscaler_provisioning_requests",
        "ray_queue_autoscaler_desired_replicas",
        "ray_queue_autoscaler_ready_replicas",
    ):
        assert family in used, f"no panel shows {family}"


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


# -- the real thing ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    binary = prometheus_binary()
    if binary is None:
        message = "no prometheus binary: run scripts/install-prometheus.sh (or set PROMETHEUS_BIN)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def loaded(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, LoadedQueue, float]]:
    """A loaded queue and autoscaler, scraped by Prometheus for ``LOAD_S`` seconds."""
    load = LoadedQueue().serve()
    try:
        server = start_prometheus(
            prometheus_bin,
            tmp_path_factory.mktemp("prometheus"),
            {
                "ray-queue-manager": f"127.0.0.1:{load.queue_port}",
                "ray-queue-autoscaler": f"127.0.0.1:{load.autoscaler_port}",
            },
        )
        try:
            # Scraping from before the first workload, so the pictures show the ramp-up.
            wait_for(lambda: server.targets_up() == 2, 60, what="both targets up")
            started = time.time()
            load.start()
            # Enough samples for every rate window and a readable picture.
            wait_for(
                lambda: time.time() - started >= LOAD_S and load.stats.submitted > 0,
                LOAD_S + 60,
                interval_s=1.0,
                what=f"{LOAD_S:.0f} s of scraped load",
            )
            yield server, load, started
        finally:
            server.stop()
            shutil.rmtree(server.log.parent / "data", ignore_errors=True)
    finally:
        load.stop()


def _has_number(series: list[dict[str, Any]]) -> bool:
    for s in series:
        points = s.get("values") or ([s["value"]] if "value" in s else [])
        for point in points:
            value = float(point[1])
            if not math.isnan(value):
                return True
    return False


@pytest.mark.timeout(240)
def test_every_panel_query_parses_and_returns_data(
    loaded: tuple[Prometheus, LoadedQueue, float],
) -> None:
    server, load, started = loaded
    end = time.time()
    empty: list[str] = []
    for title, target in _targets():
        expr = _expand(target["expr"])
        try:
            instant = server.query(expr)
            ranged = server.query_range(expr, start=started, end=end, step_s=STEP_S)
        except PromQLError as err:
            pytest.fail(f"{title}: Prometheus rejected {expr!r}: {err}")
        if not instant and not target.get("range", True):
            empty.append(f"{title}: {expr} (instant)")
        elif not _has_number(ranged) and not _has_number(instant):
            empty.append(f"{title}: {expr}")
    assert not empty, (
        f"queries without data after {LOAD_S:.0f} s of load ({load.stats}):\n" + "\n".join(empty)
    )


def test_every_template_variable_lists_values(
    loaded: tuple[Prometheus, LoadedQueue, float],
) -> None:
    server, _, _ = loaded
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.match(r"label_values\((\w+), *(\w+)\)", variable["definition"])
        assert match is not None
        values = server.label_values(match.group(2), match.group(1))
        assert values, f"variable {variable['name']} lists nothing"
    assert set(server.label_values("cluster_queue", "ray_queue_pending_workloads")) == {
        "team-a",
        "team-b",
        "team-c",
        "team-d",
    }


def test_prometheus_rejects_a_broken_query(loaded: tuple[Prometheus, LoadedQueue, float]) -> None:
    """The parse check above is real: Prometheus says no to a malformed panel query."""
    server, _, _ = loaded
    with pytest.raises(PromQLError, match="parse error"):
        server.query("sum by (cluster_queue (ray_queue_pending_workloads)")


# -- pictures ---------------------------------------------------------------------------------

#: (file stem, picture title, panel titles): the key panels, side by side.
PICTURES = (
    ("queues", "Queues", ["Pending per ClusterQueue", "Admitted per ClusterQueue"]),
    (
        "quota",
        "Quota",
        ["Usage vs nominal quota vs borrowing ceiling", "Weighted share per ClusterQueue"],
    ),
    ("latency", "Latency", ["Admission wait", "Evictions by reason"]),
    (
        "autoscaler",
        "Autoscaler",
        ["Worker groups: desired vs ready replicas", "ProvisioningRequests by state"],
    ),
)


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def _plot(
    server: Prometheus,
    started: float,
    end: float,
    stem: str,
    title: str,
    panel_titles: list[str],
    out_dir: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {p["title"]: p for p in _panels()}
    fig, axes = plt.subplots(1, len(panel_titles), figsize=(7 * len(panel_titles), 4.2))
    for ax, panel_title in zip(axes, panel_titles, strict=True):
        panel = panels[panel_title]
        lines = 0
        for target in panel["targets"]:
            expr = _expand(target["expr"])
            # The autoscaler panel would draw one line per per-gang group; show the
            # cluster's own groups, as a person filtering the legend would.
            for series in server.query_range(expr, start=started, end=end, step_s=STEP_S):
                labels = series["metric"]
                if "group" in labels and labels["group"].count("-") > 1:
                    continue
                if "flavor" in labels and labels.get("resource") == "GPU":
                    continue
                xs = [(float(t) - started) * SPEED / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_legend(target.get("legendFormat", ""), labels), lw=1.2)
                lines += 1
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("simulated minutes")
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_ylabel({"s": "seconds", "ops": "per second"}.get(unit, ""))
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=6, loc="upper left", ncol=2 if lines > 8 else 1)
    fig.suptitle(f"ray-queue dashboard — {title} (from Prometheus, under load)", fontsize=11)
    fig.tight_layout()
    path = out_dir / f"dashboard-{stem}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@pytest.mark.timeout(120)
def test_key_panels_plot_from_prometheus(
    loaded: tuple[Prometheus, LoadedQueue, float], tmp_path: Path
) -> None:
    server, _, started = loaded
    end = time.time()
    out_dir = DOC_IMAGES if os.environ.get("RAY_QUEUE_UPDATE_DOCS_IMAGES") == "1" else tmp_path
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, title, panel_titles in PICTURES:
        path = _plot(server, started, end, stem, title, panel_titles, out_dir)
        assert path.stat().st_size > 10_000, f"{path} looks empty"
