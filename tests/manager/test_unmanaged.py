"""Resources in use in Ray beyond what admissions hold, per flavor (pure parts and the
metric); on a real cluster in tests/ray/test_queueing.py."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ray_queue.engine.config import ResourceFlavor
from ray_queue.engine.model import to_milli
from ray_queue.manager import unmanaged
from ray_queue.metrics import QueueMetrics
from ray_queue.wire import NodeShape, RayJobHolding, UnmanagedUsage
from tests.manager.configs import A100, teams_config
from tests.manager.test_core import req
from tests.manager.test_unplaced_reasons import _core


def _node(name: str, labels: dict[str, str], total: float, free: float) -> NodeShape:
    return NodeShape(name, labels, {"GPU": to_milli(total)}, available={"GPU": to_milli(free)})


def test_each_node_counts_once_for_its_most_specific_flavor() -> None:
    flavors = [ResourceFlavor("any", {}), ResourceFlavor("a100", A100)]
    assert unmanaged.flavor_of(_node("n1", dict(A100), 2, 2), flavors) == "a100"
    assert unmanaged.flavor_of(_node("n2", {}, 2, 2), flavors) == "any"
    assert unmanaged.flavor_of(_node("n3", {}, 2, 2), flavors[1:]) is None


def test_in_use_beyond_what_admissions_hold_is_unmanaged() -> None:
    config = teams_config(cpu=8, gpu=8)
    nodes = [
        _node("n1", dict(A100), 4, 1),  # 3 in use
        _node("n2", dict(A100), 4, 4),
        NodeShape("n3", dict(A100), {"GPU": to_milli(4)}),  # free room unknown: no figure
    ]
    used = unmanaged.in_use(nodes, config)
    assert used == {("a100", "GPU"): 3000}
    assert unmanaged.unmanaged(used, {("a100", "GPU"): 2000}) == {("a100", "GPU"): 1000}
    assert unmanaged.unmanaged(used, {("a100", "GPU"): 5000}) == {}


def test_status_and_the_metric_show_unmanaged_usage() -> None:
    core = _core()
    core.submit_many([req("w1", gpu=1)])  # holds 1 GPU of quota on a100
    core.set_nodes([_node("n1", dict(A100), 4, 1)])  # Ray says 3 in use
    assert core.status().unmanaged == (UnmanagedUsage("a100", "GPU", 2000),)
    registry = CollectorRegistry()
    QueueMetrics(registry, core.metrics_snapshot)
    labels = {"flavor": "a100", "resource": "GPU"}
    assert registry.get_sample_value("ray_queue_unmanaged_usage", labels) == 2.0
    core.set_nodes([_node("n1", dict(A100), 4, 3)])  # the outside work ended
    assert core.status().unmanaged == ()
    assert registry.get_sample_value("ray_queue_unmanaged_usage", labels) == 0.0
    assert "Unmanaged" not in str(core.status())


def test_the_ray_jobs_holding_unmanaged_usage_are_named_largest_first() -> None:
    config = teams_config(cpu=8, gpu=8)
    nodes = [_node("n1", dict(A100), 4, 0), _node("n2", {}, 4, 4)]
    holdings = [
        RayJobHolding("01000000", "n1", {"GPU": 1000}),
        RayJobHolding("02000000", "n1", {"GPU": 2000, "memory": 5}),  # not a queued resource
        RayJobHolding("01000000", "n1", {"GPU": 1000}),  # a second group of the same job
        RayJobHolding("03000000", "gone", {"GPU": 1000}),  # a node Ray no longer has
    ]
    assert unmanaged.by_job(holdings, nodes, config) == {
        ("a100", "GPU"): {"01000000": 2000, "02000000": 2000}
    }
    core = _core()
    core.set_nodes(nodes)
    core.set_ray_holdings(holdings)
    (usage,) = core.status().unmanaged
    assert usage.by_job == (("01000000", 2000), ("02000000", 2000))
    assert "(Ray job 01000000 2, Ray job 02000000 2)" in str(core.status())
