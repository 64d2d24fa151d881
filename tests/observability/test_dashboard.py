"""Every Grafana panel's query, run by a real Prometheus against a live ray-queue.

The dashboard ships in the Helm chart; a panel whose query names a metric that does not
exist, or misuses a label, shows "No data" forever and nobody notices. Here a real
Prometheus (Debian's package; ``scripts/install-test-servers.sh``) scrapes, every second,
what a user runs (``stack.py``):

- the QueueManager actor on a real Ray cluster (the ``tests/k8s`` harness's Ray head, with
  worker nodes that join as KubeRay creates their Pods), started by ``python -m
  ray_queue.manager`` and serving ``/metrics`` itself;
- the ``python -m autoscaler`` sidecar with the chart's arguments, reading the manager's
  demand over gRPC (``autoscaler`` token) and scaling a RayCluster through the real
  Kubernetes API server and KubeRay operator, ProvisioningRequests included;

while a real driver (``load.py``) submits work through the public client API. Then every
query of every panel is evaluated through Prometheus's HTTP API: each must parse, and
each must return data with at least one real number.

Stand-ins, both from the harness and both named: the node simulator plays the kubelets
(a Pod becomes a real local Ray node), and ``StandInCloud`` plays cluster-autoscaler
(ProvisioningRequests get Provisioned, or Failed when they ask for more GPU hosts than it
has). Every metric comes from the real programs. The autoscaler's error counter gets its
data the way it does in a head pod: the sidecar starts before the manager and its first
passes fail for want of demand.

The key panels' series, as Prometheus answered them, are plotted into PNGs; with
``RAY_QUEUE_UPDATE_DOCS_IMAGES=1`` they are written to ``docs/images/`` (the pictures in
``docs/observability.md``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoscaler.metrics import Metrics as AutoscalerMetrics
from ray_queue.metrics import METRICS
from tests.availability import unavailable
from tests.k8s.process import ManagedProcess, wait_for
from tests.observability.load import config_yaml
from tests.observability.prometheus import (
    Prometheus,
    PromQLError,
    prometheus_binary,
    start_prometheus,
)
from tests.observability.stack import HeadPod, StandInCloud, ray_cluster

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "ray-queue" / "dashboards" / "ray-queue.json"
BUILDER = ROOT / "helm" / "build_dashboard.py"
DOC_IMAGES = ROOT / "docs" / "images"

#: What Grafana would put in for the template variables: All, and a rate window of a few
#: scrape intervals (Grafana's $__rate_interval is at least four).
VARIABLES = {"$__rate_interval": "15s", "$cluster_queue": ".*", "$cohort": ".*"}
#: The driver submits for ``SUBMIT_S`` seconds and gives back what it still holds at
#: ``END_S``; Prometheus scrapes until ``LOAD_S``, long enough for idle workers to go.
SUBMIT_S = 30.0
END_S = 42.0
LOAD_S = 62.0
STEP_S = 1.0


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
    # And the dashboard shows every family the design promises (docs/contract.md §6).
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


def live(test: Callable[..., None]) -> Callable[..., None]:
    """Marks of the tests that need the whole stack (the first one also pays its start)."""
    for mark in (pytest.mark.k8s, pytest.mark.ray, pytest.mark.timeout(420)):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    binary = prometheus_binary()
    if binary is None:
        unavailable(
            "there is no prometheus binary: run scripts/install-test-servers.sh "
            "(or set PROMETHEUS_BIN)"
        )
    return binary


@dataclass(frozen=True, slots=True)
class LiveRun:
    prometheus: Prometheus
    #: Wall-clock time the driver was started (the pictures' zero).
    started: float
    #: What the driver did (``load.Stats``) and what the stand-in cloud answered.
    stats: dict[str, Any]
    verdicts: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return f"driver: {self.stats}; ProvisioningRequest verdicts: {list(self.verdicts)}"


@pytest.fixture(scope="module")
def loaded(
    prometheus_bin: str,
    k8s_api: Any,
    k8s_namespace: str,
    kuberay_operator: Any,
    ray_head: Any,
    node_simulator: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveRun]:
    """The head pod's processes and a driver under load, scraped for ``LOAD_S`` seconds.

    Everything started here is stopped here, last started first; the harness fixtures then
    stop the Ray nodes, the Ray head and the control plane.
    """
    workdir = tmp_path_factory.mktemp("head-pod")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ray_head.driver_env())
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(ray_cluster(k8s_api.api_client, k8s_namespace))
        head = HeadPod.prepare(ray_head.address, workdir, config_yaml(), env)
        cleanup.callback(head.stop)
        # The pod's containers start together; the sidecar is up before the manager is.
        head.start_autoscaler(k8s_api.kubeconfig, k8s_namespace)
        server = start_prometheus(
            prometheus_bin,
            workdir / "prometheus",
            {
                "ray-queue-manager": f"127.0.0.1:{head.metrics_port}",
                "ray-queue-autoscaler": f"127.0.0.1:{head.autoscaler_metrics_port}",
            },
        )
        cleanup.callback(shutil.rmtree, server.log.parent / "data", True)
        cleanup.callback(server.stop)
        head.wait_for_sidecar_to_fail_a_pass(60)
        head.start_manager()
        wait_for(head.manager_serves_metrics, 120, interval_s=0.5, what="the manager's /metrics")
        head.wait_for_sidecar_pass(90)
        wait_for(lambda: server.targets_up() == 2, 60, what="both targets up")
        cloud = StandInCloud(k8s_api.server.new_api_client(), k8s_namespace).start()
        cleanup.callback(cloud.stop)

        started = time.time()
        stats_file = workdir / "driver-stats.json"
        driver = ManagedProcess(
            "driver",
            [
                sys.executable, "-m", "tests.observability.load",
                "--address", ray_head.address,
                "--submit-s", str(SUBMIT_S),
                "--end-s", str(END_S),
                "--stats", str(stats_file),
            ],
            workdir / "driver.log",
            env={**env, "RAY_QUEUE_TOKEN_FILE": str(head.tokens.admin_file)},
            cwd=ROOT,
        )
        cleanup.callback(driver.stop)
        wait_for(lambda: not driver.alive(), END_S + 90, interval_s=1.0, what="the driver")
        assert driver.popen.returncode == 0, f"the driver failed:\n{driver.log_tail()}"
        # Scraping on while the queues drain and idle workers are removed.
        wait_for(
            lambda: time.time() - started >= LOAD_S,
            LOAD_S,
            interval_s=1.0,
            what=f"{LOAD_S:.0f} s of scraped load",
        )
        head.manager_serves_metrics()  # still up: the answers below are from a live manager
        yield LiveRun(server, started, json.loads(stats_file.read_text()), tuple(cloud.verdicts))


def _has_number(series: list[dict[str, Any]]) -> bool:
    for s in series:
        points = s.get("values") or ([s["value"]] if "value" in s else [])
        for point in points:
            value = float(point[1])
            if not math.isnan(value):
                return True
    return False


@live
def test_every_panel_query_parses_and_returns_data(loaded: LiveRun) -> None:
    server = loaded.prometheus
    end = time.time()
    empty: list[str] = []
    for title, target in _targets():
        expr = _expand(target["expr"])
        try:
            instant = server.query(expr)
            ranged = server.query_range(expr, start=loaded.started, end=end, step_s=STEP_S)
        except PromQLError as err:
            pytest.fail(f"{title}: Prometheus rejected {expr!r}: {err}")
        if not instant and not target.get("range", True):
            empty.append(f"{title}: {expr} (instant)")
        elif not _has_number(ranged) and not _has_number(instant):
            empty.append(f"{title}: {expr}")
    assert not empty, (
        f"queries without data after {LOAD_S:.0f} s of load ({loaded.describe()}):\n"
        + "\n".join(empty)
    )


@live
def test_every_template_variable_lists_values(loaded: LiveRun) -> None:
    server = loaded.prometheus
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


@live
def test_prometheus_rejects_a_broken_query(loaded: LiveRun) -> None:
    """The parse check above is real: Prometheus says no to a malformed panel query."""
    with pytest.raises(PromQLError, match="parse error"):
        loaded.prometheus.query("sum by (cluster_queue (ray_queue_pending_workloads)")


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
    palette = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(panel_titles), figsize=(8.5 * len(panel_titles), 4.2))
    for ax, panel_title in zip(axes, panel_titles, strict=True):
        panel = panels[panel_title]
        lines = 0
        # One colour per ClusterQueue (or group, phase...), one line style per query.
        colours: dict[str, Any] = {}
        for style, target in zip(("-", "--", ":"), panel["targets"], strict=False):
            expr = _expand(target["expr"])
            for series in server.query_range(expr, start=started, end=end, step_s=STEP_S):
                labels = series["metric"]
                # GPU quota lines would double the usage panel; the CPU lines tell the story.
                if "flavor" in labels and labels.get("resource") == "GPU":
                    continue
                xs = [float(t) - started for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                if not any(ys):
                    continue  # counters that exist at 0 and never moved: nothing to see
                label = _legend(target.get("legendFormat", ""), labels)
                key = label
                if len(panel["targets"]) > 1:  # the style tells the queries apart
                    key = next((labels[k] for k in ("cluster_queue", "group") if k in labels), key)
                colour = colours.setdefault(key, palette[len(colours) % len(palette)])
                ax.plot(xs, ys, style, color=colour, label=label, lw=1.2)
                lines += 1
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("seconds since the driver started")
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_ylabel({"s": "seconds", "ops": "per second"}.get(unit, ""))
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"ray-queue dashboard — {title} (from Prometheus, live cluster)", fontsize=11)
    fig.tight_layout()
    path = out_dir / f"dashboard-{stem}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@live
def test_key_panels_plot_from_prometheus(loaded: LiveRun, tmp_path: Path) -> None:
    end = time.time()
    out_dir = DOC_IMAGES if os.environ.get("RAY_QUEUE_UPDATE_DOCS_IMAGES") == "1" else tmp_path
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, title, panel_titles in PICTURES:
        path = _plot(loaded.prometheus, loaded.started, end, stem, title, panel_titles, out_dir)
        assert path.stat().st_size > 10_000, f"{path} looks empty"
