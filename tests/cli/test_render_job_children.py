"""``ray-queue describe`` of a job shows its cap and the children its run made; of a
child, the job it belongs to."""

from __future__ import annotations

import pytest

from ray_queue.cli import render
from ray_queue.engine.clock import ManualClock
from ray_queue.engine.engine import Engine
from ray_queue.engine.model import WorkloadId
from tests.cli.test_render import text
from tests.engine.test_job_caps import child, gpu_config, job

pytestmark = pytest.mark.timeout(30)


def test_describe_shows_a_jobs_cap_and_children() -> None:
    engine = Engine(gpu_config(), ManualClock(0.0))
    engine.submit(job("train", cap={"GPU": 2}))
    engine.schedule()
    engine.submit(child("group-1", "train", GPU=2))
    engine.submit(child("group-2", "train", GPU=2, created=2))
    engine.schedule()
    kids = [engine.workload(WorkloadId(w)) for w in ("group-1", "group-2")]

    shown = text(render.describe_view(engine.workload(WorkloadId("train")), kids))
    assert "Max resources" in shown and "GPU=2" in shown
    assert "2 (1 holding quota)" in shown
    assert "group-1" in shown and "ADMITTED" in shown
    assert "group-2" in shown and "PENDING" in shown and "max_resources" in shown

    of_child = text(render.describe_view(kids[0]))
    assert "Job" in of_child and "train" in of_child and "Max resources" not in of_child
