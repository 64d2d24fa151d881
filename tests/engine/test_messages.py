"""What the engine tells a person: the names people gave their work, in their units."""

from __future__ import annotations

import dataclasses

import pytest

from ray_queue.engine.config import WithinClusterQueue
from tests.engine.builders import (
    ClusterQueueBuilder,
    ConfigBuilder,
    WorkloadBuilder,
    flavor,
    new_engine,
)

pytestmark = pytest.mark.timeout(30)


def test_a_preemption_message_names_the_preemptor_by_the_name_it_was_given() -> None:
    cq = (
        ClusterQueueBuilder("cq")
        .resource_group(flavor("default").resource("CPU", 1))
        .preemption(within=WithinClusterQueue.LOWER_PRIORITY)
    )
    engine, _ = new_engine(
        ConfigBuilder().priorities(low=1, high=10).cluster_queue(cq, "q").build()
    )

    def submit(workload: str, priority: str, name: str) -> None:
        spec = WorkloadBuilder(workload).queue("q").bundles({"CPU": 1}).priority(priority).build()
        engine.submit(dataclasses.replace(spec, name=name))
        engine.schedule()

    submit("wl-1", "low", "nightly-report")
    submit("wl-2", "high", "train-resnet")
    [preempted] = [t for t in engine.workload("wl-1").history if t.reason == "Preempted"]
    assert "to admit wl-2 (train-resnet) (priority 10)" in preempted.message, preempted.message
