"""The planner: scale-up, idle scale-down and the ProvisioningRequest table (no Ray)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.binpacking import pack_gangs
from autoscaler.demand import Demand
from autoscaler.planner import Plan, PlannerConfig, plan
from autoscaler.providers.base import WorkerGroup
from autoscaler.requests import Phase, RequestView, gang_group_name, request_name
from ray_queue.engine.model import CheckState, PlacementStrategy, WorkloadId, WorkloadState
from tests.autoscaler.builders import gang, make_group, node, request, res

CFG = PlannerConfig(idle_timeout_s=30.0)
P = PlacementStrategy
W = WorkloadState


def run(
    gangs: list[object], groups: list[WorkerGroup], requests: list[RequestView] | None = None,
    now: float = 1000.0,
) -> Plan:
    return plan(Demand.of(gangs), groups, requests or [], now=now, config=CFG)  # type: ignore[arg-type]


# ------------------------------------------------------------------ scale-up


def test_pending_gang_scales_its_group_up() -> None:
    cpu = make_group("cpu").shape(res(cpu=4)).max(10).build()
    result = run([gang("w", *[res(cpu=2)] * 3)], [cpu])
    assert [(s.group, s.from_replicas, s.to_replicas) for s in result.scale_ups] == [("cpu", 0, 2)]
    assert result.desired == {"cpu": 2}


def test_hosts_asked_for_but_not_joined_are_not_asked_for_again() -> None:
    cpu = make_group("cpu").shape(res(cpu=4)).replicas(2).build()
    result = run([gang("w", *[res(cpu=2)] * 3)], [cpu])
    assert result.scale_ups == ()


def test_starting_node_counts_as_empty_room_and_busy_node_as_its_free_room() -> None:
    cpu = (
        make_group("cpu")
        .replicas(2)
        .nodes(node("a", available=res(cpu=0), busy=True), node("b", joined=False))
        .build()
    )
    assert run([gang("w", res(cpu=4))], [cpu]).scale_ups == ()
    grown = run([gang("w", res(cpu=4), res(cpu=1))], [cpu])
    assert [s.to_replicas for s in grown.scale_ups] == [3]


def test_scale_up_is_clamped_to_max_and_the_rest_reported() -> None:
    cpu = make_group("cpu").max(2).build()
    result = run([gang("big", *[res(cpu=4)] * 3), gang("small", res(cpu=4))], [cpu])
    assert [s.to_replicas for s in result.scale_ups] == [1]
    assert [(g, u.workload) for g, u in result.unplaceable] == [("cpu", "big")]


def test_min_replicas_is_restored() -> None:
    cpu = make_group("cpu").min(2).replicas(0).build()
    assert [s.to_replicas for s in run([], [cpu]).scale_ups] == [2]


def test_multi_host_group_scales_in_whole_slices() -> None:
    tpu = make_group("tpu").shape(res(tpu=4)).hosts(4).max(3).build()
    result = run([gang("w", *[res(tpu=4)] * 6, group="tpu", strategy=P.STRICT_SPREAD)], [tpu])
    assert [(s.from_replicas, s.to_replicas) for s in result.scale_ups] == [(0, 2)]


def test_gang_of_unknown_group_is_unmanaged() -> None:
    result = run([gang("w", res(cpu=1), group="nope"), gang("x", res(cpu=1), group=None)], [])
    assert set(result.unmanaged) == {"w", "x"}
    assert result.empty


# ------------------------------------------------------------------ idle scale-down


def test_idle_node_past_timeout_is_deleted() -> None:
    cpu = (
        make_group("cpu")
        .replicas(2)
        .nodes(
            node("a", available=res(cpu=4), idle_since=900.0),
            node("b", available=res(cpu=4), idle_since=990.0),
        )
        .build()
    )
    result = run([], [cpu])
    assert [(d.group, d.workers, d.ray_node_ids) for d in result.deletions] == [
        ("cpu", ("a",), ("id-a",))
    ]
    assert result.desired == {"cpu": 1}


def test_never_below_min_never_busy_never_needed() -> None:
    cpu = (
        make_group("cpu")
        .min(1)
        .replicas(3)
        .nodes(
            node("a", available=res(cpu=4), idle_since=0.0),
            node("b", available=res(cpu=4), idle_since=1.0),
            node("c", available=res(cpu=0), idle_since=None, busy=True),
        )
        .build()
    )
    # min 1 lets two go; c is busy, and the pending gang is packed onto a (first fit),
    # so only b goes.
    result = run([gang("w", res(cpu=3))], [cpu])
    assert [d.workers for d in result.deletions] == [("b",)]
    assert [d.workers for d in run([], [cpu]).deletions] == [("a", "b")]
    cpu_min2 = make_group("cpu").min(2).replicas(3).nodes(*cpu.nodes).build()
    assert [d.workers for d in run([], [cpu_min2]).deletions] == [("a",)]


def test_nodes_already_being_deleted_are_not_deleted_again() -> None:
    cpu = (
        make_group("cpu")
        .replicas(1)
        .nodes(node("a", available=res(cpu=4), idle_since=0.0))
        .deleting("a")
        .build()
    )
    assert run([], [cpu]).deletions == ()


# ------------------------------------------------------------------ provisioning requests


def gpu_group() -> WorkerGroup:
    return make_group("gpu").shape(res(cpu=8, gpu=4)).max(4).build()


def aao(state: WorkloadState = W.QUOTA_RESERVED, attempt: int = 0) -> object:
    return gang(
        "job", *[res(gpu=2)] * 4, group="gpu", state=state, all_at_once=True,
        check="prov", attempt=attempt,
    )


def test_reserved_gang_gets_a_request_and_no_scale_up() -> None:
    result = run([aao()], [gpu_group()])
    assert result.scale_ups == ()
    (spec,) = result.create_requests
    assert (spec.name, spec.group, spec.count) == (request_name(WorkloadId("job"), 0), "gpu", 2)
    assert spec.provisioning_class == "queued-provisioning.gke.io"
    assert result.reports == ()


def test_pending_request_waits() -> None:
    result = run([aao()], [gpu_group()], [request("job", Phase.PENDING, count=2)])
    assert result.empty


def test_provisioned_creates_gang_group_and_reports_ready() -> None:
    result = run([aao()], [gpu_group()], [request("job", Phase.PROVISIONED, count=2)])
    (group,) = result.create_groups
    expected = ("gpu", 2, request_name(WorkloadId("job"), 0))
    assert (group.base, group.replicas, group.request) == expected
    assert [(r.check, r.state) for r in result.reports] == [("prov", CheckState.READY)]


def test_provisioned_with_existing_group_only_reports() -> None:
    existing = make_group(gang_group_name("gpu", WorkloadId("job"), 0)).gang_of("job").build()
    result = run([aao()], [gpu_group(), existing], [request("job", Phase.PROVISIONED, count=2)])
    assert result.create_groups == ()
    assert [r.state for r in result.reports] == [CheckState.READY]
    admitted = run(
        [aao(W.ADMITTED)], [gpu_group(), existing], [request("job", Phase.PROVISIONED, count=2)]
    )
    assert admitted.empty


def test_failed_and_booking_expired_report_retry_and_delete() -> None:
    for phase in (Phase.FAILED, Phase.BOOKING_EXPIRED):
        result = run([aao()], [gpu_group()], [request("job", phase, message="no capacity")])
        assert [r.state for r in result.reports] == [CheckState.RETRY]
        assert "no capacity" in result.reports[0].message
        assert result.delete_requests == (request_name(WorkloadId("job"), 0),)


def test_booking_expired_after_admission_is_ignored() -> None:
    result = run([aao(W.ADMITTED)], [gpu_group()], [request("job", Phase.BOOKING_EXPIRED)])
    assert result.reports == () and result.delete_requests == ()


def test_capacity_revoked_evicts_even_when_placed() -> None:
    result = run([], [gpu_group()], [request("job", Phase.CAPACITY_REVOKED)])
    assert [e.workload for e in result.evictions] == ["job"]
    assert result.delete_requests == (request_name(WorkloadId("job"), 0),)


def test_new_attempt_gets_a_new_request_and_the_old_one_goes() -> None:
    result = run([aao(attempt=1)], [gpu_group()], [request("job", Phase.FAILED, attempt=0)])
    assert [s.attempt for s in result.create_requests] == [1]
    assert result.delete_requests == (request_name(WorkloadId("job"), 0),)
    assert result.reports == ()


def test_gang_too_big_for_the_group_is_rejected() -> None:
    small = make_group("gpu").shape(res(cpu=8, gpu=4)).max(1).build()
    result = run([aao()], [small])
    assert result.create_requests == ()
    assert [r.state for r in result.reports] == [CheckState.REJECTED]


def test_running_gang_group_is_kept_then_removed_when_idle() -> None:
    name = gang_group_name("gpu", WorkloadId("job"), 0)
    busy = make_group(name).gang_of("job").replicas(1).nodes(
        node("p", available=res(), busy=True)
    ).build()
    req = request("job", Phase.PROVISIONED)
    running = run([], [gpu_group(), busy], [req])
    assert running.empty
    idle = make_group(name).gang_of("job").replicas(1).nodes(
        node("p", available=res(cpu=8, gpu=4), idle_since=0.0)
    ).build()
    done = run([], [gpu_group(), idle], [req])
    assert done.remove_groups == (name,)
    assert done.delete_requests == (req.name,)
    orphan = run([], [gpu_group(), idle], [])
    assert orphan.remove_groups == (name,)


def test_incremental_group_ignores_gangs_that_go_through_requests() -> None:
    result = run([aao()], [gpu_group()])
    assert result.scale_ups == ()


# ------------------------------------------------------------------ properties

_bundle = st.fixed_dictionaries({"CPU": st.integers(0, 5000), "GPU": st.sampled_from([0, 1000])})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[object], WorkerGroup, float]:
    shape = res(cpu=4, gpu=2)
    lo = draw(st.integers(0, 3))
    hi = draw(st.integers(lo, 8))
    replicas = draw(st.integers(0, hi + 2))
    nodes = []
    for i in range(draw(st.integers(0, replicas))):
        busy = draw(st.booleans())
        nodes.append(
            node(
                f"n{i}",
                available=res(cpu=draw(st.integers(0, 4)), gpu=draw(st.integers(0, 2)))
                if busy
                else shape,
                idle_since=None if busy else draw(st.floats(0, 2000)),
                busy=busy,
                joined=draw(st.booleans()) or busy,
            )
        )
    group = make_group("cpu").shape(shape).min(lo).max(hi).replicas(replicas).nodes(*nodes).build()
    gangs = [
        gang(f"w{i}", *draw(st.lists(_bundle, min_size=1, max_size=4)),
             strategy=draw(st.sampled_from(list(P))))
        for i in range(draw(st.integers(0, 4)))
    ]
    return gangs, group, draw(st.floats(0, 4000))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_planner_invariants(case: tuple[list[object], WorkerGroup, float]) -> None:
    gangs, group, now = case
    result = run(gangs, [group], now=now)
    again = run(gangs, [group], now=now)
    assert result == again  # deterministic
    desired = result.desired["cpu"]
    for up in result.scale_ups:
        assert up.to_replicas <= max(group.max_replicas, group.min_replicas)
        assert up.to_replicas > group.replicas
    if result.deletions:
        assert desired >= group.min_replicas
        busy = {n.name for n in group.nodes if n.busy}
        for deletion in result.deletions:
            assert not busy & set(deletion.workers)
        assert not result.scale_ups
    # Scale-up covers all placeable demand: after growing to the plan's size, the next
    # pass needs nothing more, unless the group hit its maximum.
    if result.scale_ups:
        grown = make_group("cpu").shape(group.shape).min(group.min_replicas).max(
            group.max_replicas
        ).replicas(desired).nodes(*group.nodes).build()
        if desired < group.max_replicas:
            assert run(gangs, [grown], now=now).scale_ups == ()
    # Nothing placeable is reported while there was room for it: a gang is capped only
    # when what it needs alone on empty nodes exceeds the room the plan leaves.
    infeasible = {
        g.workload for g in gangs
        if pack_gangs([g], shape=group.shape, free=[]).infeasible  # type: ignore[list-item]
    }
    for _, u in result.unplaceable:
        if u.workload in infeasible:
            continue
        (capped,) = [g for g in gangs if g.workload == u.workload]  # type: ignore[attr-defined]
        need = pack_gangs([capped], shape=group.shape, free=[]).new_hosts  # type: ignore[list-item]
        assert need > group.max_replicas - desired


# ------------------------------------------------------------------ Ray's pending groups


def test_admitted_gang_counts_only_while_ray_still_waits_to_place_it() -> None:
    cpu = make_group("cpu").build()
    etl = gang("etl", res(cpu=4), res(cpu=4))

    def scale(pending: list[list[dict[str, int]]] | None) -> list[int]:
        result = plan(Demand.of([etl]), [cpu], [], now=0.0, config=CFG, ray_pending=pending)
        return [s.to_replicas for s in result.scale_ups]

    assert scale(None) == [2]  # Ray's view unknown: count it
    assert scale([]) == []  # Ray placed it; the manager has not marked it yet
    assert scale([[res(cpu=4), res(cpu=4)]]) == [2]
    # Ray's group may carry more: bundles of the workload's other flavors.
    assert scale([[res(cpu=4, GPU_x=1), res(cpu=4), res(gpu=1)]]) == [2]
    assert scale([[res(cpu=2), res(cpu=4)]]) == []  # not this workload's group


def test_each_pending_group_accounts_for_one_workload() -> None:
    cpu = make_group("cpu").build()
    gangs = [gang("a", res(cpu=4)), gang("b", res(cpu=4))]
    result = plan(Demand.of(gangs), [cpu], [], now=0.0, config=CFG, ray_pending=[[res(cpu=4)]])
    assert [s.to_replicas for s in result.scale_ups] == [1]


def test_reserved_gangs_have_no_placement_group_yet_and_always_count() -> None:
    gpu = gpu_group()
    reserved = gang("r", res(gpu=2), group="gpu", state=W.QUOTA_RESERVED)
    result = plan(Demand.of([reserved]), [gpu], [], now=0.0, config=CFG, ray_pending=[])
    assert [s.to_replicas for s in result.scale_ups] == [1]


def test_placed_gangs_keep_their_request_and_group() -> None:
    """Ray's view only affects packing: an admitted all-at-once gang whose group Ray has
    placed (or not yet seen) keeps its request and its gang group."""
    name = gang_group_name("gpu", WorkloadId("job"), 0)
    group = make_group(name).gang_of("job").replicas(1).nodes(node("p", joined=False)).build()
    result = plan(
        Demand.of([aao(W.ADMITTED)]), [gpu_group(), group],
        [request("job", Phase.PROVISIONED)], now=0.0, config=CFG, ray_pending=[],
    )
    assert result.empty
