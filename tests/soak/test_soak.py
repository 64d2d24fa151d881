"""The soak's short mode: one minute of load and every kind of fault, no violation.

``benchmarks.soak`` runs in a process of its own (it starts and stops its own Ray
cluster, drivers and observer); this test runs it for a minute with a fixed seed and
reads its report. It fails on any invariant violation or lost workload, on a fault that
could not be injected, and on an observer that did not catch the canary (a group named
like the manager's that no workload owns): an observer that sees nothing proves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak_faults import FAULTS
from benchmarks.soak_shape import TENANTS

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]

#: Violations the soak found whose cause is known, in code the soak does not own, and
#: reported to its owners: tolerated here until fixed, then removed. Any other kind fails.
#: Empty: the two job kinds of issue 23 (a run outliving its workload, a readmitted job's
#: runs overlapping) are fixed by ``manager/job_runs.py``.
KNOWN: set[str] = set()


def test_a_minute_of_soak_finds_no_violation(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = [sys.executable, "-m", "benchmarks.soak", "--minutes", "1", "--seed", "7",
            "--grace-s", "10", "--out", str(out), "--workdir", str(tmp_path / "work")]  # fmt: skip
    soak = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = soak.communicate(timeout=780)
    except subprocess.TimeoutExpired:
        soak.send_signal(signal.SIGTERM)  # the soak shuts its cluster down on SIGTERM
        output, _ = soak.communicate(timeout=90)
        raise AssertionError("the soak did not finish in 13 minutes") from None
    finally:
        if soak.poll() is None:
            os.kill(soak.pid, signal.SIGKILL)
            soak.wait(timeout=30)
    tail = output.decode(errors="replace")[-4000:]
    assert soak.returncode == 0, tail
    report = json.loads(out.read_text())

    unknown = [v for v in report["violation_log"] if v["kind"] not in KNOWN]
    assert not unknown, json.dumps(unknown, indent=1)
    assert report["lost_workloads"] == 0, report["final_check"]
    assert report["canary"]["detected"], report["canary"]
    assert not report["faults_not_injected"], report["faults_not_injected"]
    assert set(report["faults"]) == set(FAULTS), report["fault_log"]
    # The load did what it is for: work admitted, preempted, cancelled; a manager restart.
    assert report["admissions"] > 20 and report["preemptions"] > 0, report["operations"]
    assert report["states_at_end"].get("CANCELLED", 0) > 0
    assert report["manager_kill_recovery_s"], report["fault_log"]
    observer = report["final_check"]["observer"]
    assert observer["group_checks"] > 10 and observer["quota_checks"] > 10, observer
    # Jobs were among the load, through both doors, and the observer read Ray's job API.
    assert report["operations"].get("grpc_submitted_job", 0) > 0, report["operations"]
    assert report["submissions"]["by_queue_and_kind"].keys() & {f"{t}/job" for t in TENANTS}
    assert observer.get("job_checks", 0) > 0, observer
    # ... and saw runs in it: a cluster whose job agent is down checks no run at all.
    assert observer.get("job_runs_seen", 0) > 0, observer
    assert report["time_series"] and report["time_series"][0]["manager_rss_mb"], report
