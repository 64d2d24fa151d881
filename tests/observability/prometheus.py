"""A real Prometheus server on loopback for tests, and a small client for its HTTP API.

Why this exists: the only honest check that a dashboard query works is the query engine
that will run it. Debian's ``prometheus`` package (``scripts/install-test-servers.sh``)
provides the server; this module writes a temporary config that scrapes the given
targets every second, starts the server in its own process group with a temporary TSDB,
and stops it by pid. ``query``/``query_range`` return Prometheus's answer as JSON and
raise ``PromQLError`` with Prometheus's own message when it rejects a query.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.ports import free_port
from tests.k8s.process import wait_for

SCRAPE_INTERVAL_S = 1


class PromQLError(RuntimeError):
    """Prometheus refused a query (bad syntax, bad function use); the message is its own."""


def prometheus_binary() -> str | None:
    """``$PROMETHEUS_BIN``, else ``prometheus`` on PATH, else None."""
    configured = os.environ.get("PROMETHEUS_BIN")
    if configured and Path(configured).is_file():
        return configured
    return shutil.which("prometheus")


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def _get(self, path: str, params: Mapping[str, str] | list[tuple[str, str]]) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:  # 400/422: the query itself is wrong
            body = json.loads(err.read() or b"{}")
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}") from err
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query at now: the result vector (or scalar wrapped in a list)."""
        data = self._get("/api/v1/query", {"query": expr})
        result = data["result"]
        return result if isinstance(result, list) else [{"value": result}]

    def query_range(
        self, expr: str, *, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """Range query: one entry per series, with ``values`` as [[t, "v"], ...]."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s}"},
        )
        return list(data["result"])

    def label_values(self, label: str, metric: str) -> list[str]:
        """What Grafana's ``label_values(metric, label)`` variable query lists."""
        return list(
            self._get(f"/api/v1/label/{urllib.parse.quote(label)}/values", [("match[]", metric)])
        )

    def targets_up(self) -> int:
        return len([r for r in self.query("up == 1")])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_prometheus(binary: str, workdir: Path, targets: Mapping[str, str]) -> Prometheus:
    """Start Prometheus scraping ``targets`` (job name → host:port); ready when it answers.

    The caller must ``stop()`` it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    scrape_configs = [
        {
            "job_name": job,
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "static_configs": [{"targets": [address]}],
        }
        for job, address in targets.items()
    ]
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "scrape_configs": scrape_configs,
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped by pid, with children
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited ({process.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, what="prometheus /-/ready")
    except BaseException:
        server.stop()
        raise
    return server


def now() -> float:
    return time.time()
