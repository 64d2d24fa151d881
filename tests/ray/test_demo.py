"""The embedded demo (`python -m ray_queue.demo`, the first half of `make demo`) end to
end, so it cannot rot: a real local cluster of simulated A100 and T4 nodes, three teams,
a stream of placement groups, GPU tasks and a Ray job, and a summary at the end."""

from __future__ import annotations

import io
import re

import pytest
import ray
from rich.console import Console

from ray_queue import demo

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def test_the_demo_admits_every_submission_and_leaves_nothing_running() -> None:
    out = io.StringIO()
    assert demo.run(duration_s=20.0, console=Console(file=out, width=160)) == 0
    text = out.getvalue()
    assert "config applied: teams research, prod, dev in cohort org" in text
    summary = re.search(r"(\d+) submissions .*?\n.*?(\d+) admissions, (\d+) preemptions", text)
    assert summary is not None, text
    submitted, admissions = int(summary[1]), int(summary[2])
    # Every submission (placement groups, tasks, the job) was admitted at least once.
    assert submitted >= 10 and admissions >= submitted, text
    final = re.search(r"final states: (.*)", text)
    assert final is not None, text
    # Drained: nothing is left queued or holding quota, and nothing had to be cancelled.
    assert not re.search(r"\b(PENDING|ADMITTED|QUOTA_RESERVED|CANCELLED)\b", final[1]), text
    # It shut down everything it started.
    assert not ray.is_initialized()
