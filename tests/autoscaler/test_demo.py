"""The demo (`python -m autoscaler.demo`, what `make demo` runs) end to end, so it cannot rot.

It also covers ``LocalProvider``'s subprocess mode: real ``ray start`` worker processes.
"""

from __future__ import annotations

import pytest

from autoscaler.demo import run

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def test_demo_adds_a_gpu_node_for_the_gang_and_removes_it_idle() -> None:
    lines: list[str] = []
    run(idle_timeout_s=2.0, timeout_s=150.0, say=lines.append)
    text = "\n".join(lines)
    steps = [
        "train-llm: ADMITTED; GPUs in Ray: 0",
        "autoscaler: gpu-workers 0 -> 1",
        "placement group ready on the new node; GPUs in Ray: 2",
        "autoscaler: drain and remove idle gpu-workers-1",
        "node removed; GPUs in Ray: 0",
    ]
    positions = [text.find(step) for step in steps]
    assert all(p >= 0 for p in positions), text
    assert positions == sorted(positions), text
    assert text.count(" -> ") == 1, text  # one scale-up, never a second node
