"""Placement groups whose creation is in flight (``placement_flight``, ``PlacementDesk``),
on a real Ray cluster.

The manager asks the desk's thread to create a group and learns its id later; a workload
that leaves meanwhile must not leave its group behind in Ray, and a manager that dies
before it learns the id must re-adopt the group Ray made, not make a second one. The
tests apply the desk's answers to the core when they choose (the actor does it as soon
as they arrive), so "in flight" is exact from the manager's side, whatever the thread
has done by then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from ray.cluster_utils import Cluster

from ray_queue.engine.clock import SystemClock
from ray_queue.engine.model import PlacementStrategy, WorkloadId, WorkloadState
from ray_queue.manager.core import ManagerCore
from ray_queue.ray_adapter.actions import RayAdapter
from ray_queue.ray_adapter.placement_desk import PlacementDesk
from ray_queue.store.base import MemoryStore
from tests.manager.configs import teams_config
from tests.manager.test_core import req
from tests.ray.harness import connected_cluster, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]

W = WorkloadId


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from connected_cluster(gpu_workers=1)


def manager(store: MemoryStore) -> tuple[ManagerCore, PlacementDesk]:
    """A core over a real Ray adapter whose groups go through a desk; the desk's answers
    wait for ``settle``."""
    adapter = RayAdapter()
    desk = PlacementDesk(adapter, wake=lambda: None)
    core = ManagerCore.recover(
        store, adapter, SystemClock(), default_config=teams_config, placements=desk
    )
    return core, desk


def settle(core: ManagerCore, desk: PlacementDesk) -> None:
    answers = desk.take()
    core.placements_settled(created=answers.created, refused=answers.refused, placed=answers.placed)


def live_groups() -> dict[WorkloadId, str]:
    """Every ray_queue group Ray has not removed, by workload (read from Ray's table)."""
    return dict(RayAdapter().placement_groups())


def admitted_pg(core: ManagerCore, wid: str) -> list[str | None]:
    events = core.events("driver-1", after_seq=0, epoch=core.epoch).events
    return [e.placement_group_id for e in events if e.workload == wid and e.decision == "admit"]


def test_a_workload_cancelled_while_its_group_is_in_flight_leaves_no_group_in_ray(
    cluster: Cluster,
) -> None:
    core, desk = manager(MemoryStore())
    core.submit_many([req("gone-at-once", gpu=1)])
    core.cancel([W("gone-at-once")])  # most likely before the desk asked Ray
    core.submit_many([req("gone-later", gpu=1), req("kept", gpu=1)])
    # The desk has created both in Ray, but the core has not heard yet.
    wait_for(lambda: {W("gone-later"), W("kept")} <= live_groups().keys())
    assert admitted_pg(core, "gone-later") == []  # told only once Ray has the group
    core.cancel([W("gone-later")])

    wait_for(lambda: W("gone-later") not in live_groups())
    settle(core, desk)  # the late answer for the cancelled one is ignored
    assert W("gone-at-once") not in live_groups()
    assert core.workload(W("gone-later")).state is WorkloadState.CANCELLED
    kept = live_groups()[W("kept")]
    assert admitted_pg(core, "kept") == [kept]
    assert set(core.unplaced_placement_groups()) <= {W("kept")}

    def placed() -> bool:
        settle(core, desk)
        return core.workload(W("kept")).placed

    wait_for(placed)  # learnt from the group's ready() reference
    core.cancel([W("kept")])
    wait_for(lambda: W("kept") not in live_groups())


def test_a_workload_readmitted_while_its_first_group_is_in_flight_keeps_only_the_second(
    cluster: Cluster,
) -> None:
    core, desk = manager(MemoryStore())
    # Team-b's quota is in use (nothing to borrow); low takes team-a's 2 GPUs; high (same
    # queue) preempts it in the next cycle, before low's group answer is applied; when
    # high ends, low is admitted again.
    core.submit_many([req("fill-b", gpu=2, queue="team-b")])
    core.submit_many([req("low", gpu=2, priority="low")])
    core.submit_many([req("high", gpu=2, priority="high")])
    assert core.workload(W("low")).state is WorkloadState.PENDING
    core.report(finished=[(W("high"), False, "done")])
    assert core.workload(W("low")).state is WorkloadState.ADMITTED

    def low_told() -> list[str | None]:
        settle(core, desk)
        return admitted_pg(core, "low")

    # Told once, of the group made for its second admission: the first was removed.
    [pg_id] = wait_for(low_told)
    wait_for(lambda: live_groups().get(W("low")) == pg_id)
    assert W("high") not in live_groups()
    core.cancel([W("low"), W("fill-b")])
    wait_for(lambda: not {W("low"), W("fill-b")} & live_groups().keys())


def test_a_restarted_manager_adopts_the_groups_its_predecessor_had_in_flight(
    cluster: Cluster,
) -> None:
    store = MemoryStore()
    first, _ = manager(store)
    first.submit_many([req("adopted-1", gpu=1), req("adopted-2", gpu=1, queue="team-b")])
    wait_for(lambda: {W("adopted-1"), W("adopted-2")} <= live_groups().keys())
    made = live_groups()
    # The first manager dies without having heard its desk's answers.
    restarted, desk = manager(store)
    assert restarted.unplaced_placement_groups() == {
        W("adopted-1"): made[W("adopted-1")],
        W("adopted-2"): made[W("adopted-2")],
    }
    assert {w: p for w, p in live_groups().items() if w.startswith("adopted-")} == {
        W("adopted-1"): made[W("adopted-1")],
        W("adopted-2"): made[W("adopted-2")],
    }
    for workload, pg_id in restarted.unplaced_placement_groups().items():
        desk.watch(workload, pg_id)

    def placed() -> bool:
        settle(restarted, desk)
        return all(restarted.workload(w).placed for w in (W("adopted-1"), W("adopted-2")))

    wait_for(placed)
    restarted.cancel([W("adopted-1"), W("adopted-2")])
    wait_for(lambda: not any(w.startswith("adopted-") for w in live_groups()))


class GatedAdapter(RayAdapter):
    """A real adapter that records the order of the desk's calls, and whose first
    creation waits for ``gate``: the calls asked meanwhile queue up in the desk."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.calls: list[tuple[str, WorkloadId]] = []

    def create(
        self,
        workload: WorkloadId,
        bundles: Sequence[Mapping[str, float]],
        strategy: PlacementStrategy,
        label_selectors: Sequence[Mapping[str, str]],
    ) -> Any:
        self.calls.append(("create", workload))
        if len(self.calls) == 1:
            assert self.gate.wait(30)
        return super().create(workload, bundles, strategy, label_selectors)

    def remove_placement_group(self, workload: WorkloadId) -> None:
        self.calls.append(("remove", workload))
        super().remove_placement_group(workload)


def creator(desk: PlacementDesk) -> Callable[[str, int], None]:
    def create(name: str, ticket: int) -> None:
        desk.create(W(name), ticket, [{"CPU": 0.1}], PlacementStrategy.PACK, [{}], watch=False)

    return create


def created_all(desk: PlacementDesk, expected: set[WorkloadId]) -> Callable[[], bool]:
    created: set[WorkloadId] = set()

    def check() -> bool:
        created.update(workload for workload, _, _ in desk.take().created)
        return created == expected

    return check


def test_the_desk_removes_before_it_creates_and_drops_creations_removed_while_queued(
    cluster: Cluster,
) -> None:
    """A full cluster's removals make the room its queued creations wait for: they go
    first. A creation removed before Ray was asked is never made; one removed while Ray
    makes it is removed right after."""
    adapter = GatedAdapter()
    desk = PlacementDesk(adapter, wake=lambda: None, callers=1)
    create = creator(desk)

    create("in-progress", 1)
    wait_for(lambda: adapter.calls == [("create", W("in-progress"))])
    create("dropped", 2)
    create("first", 3)
    create("second", 4)
    desk.remove(W("dropped"))
    desk.remove(W("in-progress"))
    adapter.gate.set()

    wait_for(created_all(desk, {W("in-progress"), W("first"), W("second")}))
    assert adapter.calls == [
        ("create", W("in-progress")),
        ("remove", W("dropped")),  # its creation dropped: no group, no call to Ray
        ("remove", W("in-progress")),
        ("create", W("first")),
        ("create", W("second")),
    ]
    assert {W("first"), W("second")} <= live_groups().keys()
    assert not {W("in-progress"), W("dropped")} & live_groups().keys()
    desk.remove(W("first"))
    desk.remove(W("second"))
    wait_for(lambda: not {W("first"), W("second")} & live_groups().keys())


def test_a_second_caller_makes_other_workloads_calls_while_one_waits_on_ray(
    cluster: Cluster,
) -> None:
    """Two threads make the desk's calls, but never two of one workload at once: a
    removal waits for its workload's creation, whatever the other thread does meanwhile."""
    adapter = GatedAdapter()
    desk = PlacementDesk(adapter, wake=lambda: None, callers=2)
    create = creator(desk)

    create("slow", 1)
    wait_for(lambda: adapter.calls == [("create", W("slow"))])
    desk.remove(W("slow"))
    create("other", 2)
    wait_for(created_all(desk, {W("other")}))
    assert adapter.calls == [("create", W("slow")), ("create", W("other"))]

    adapter.gate.set()
    wait_for(lambda: ("remove", W("slow")) in adapter.calls)
    assert adapter.calls[-1] == ("remove", W("slow"))
    wait_for(lambda: W("slow") not in live_groups())
    assert W("other") in live_groups()
    desk.remove(W("other"))
    wait_for(lambda: W("other") not in live_groups())
