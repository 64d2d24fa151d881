"""Bin-packing of gangs onto a worker group's node shape (no Ray, fast)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.binpacking import fits, hosts_for, pack_gangs
from ray_queue.engine.model import PlacementStrategy
from tests.autoscaler.builders import gang, res

P = PlacementStrategy


@pytest.mark.parametrize(
    ("bundles", "strategy", "shape", "hosts"),
    [
        pytest.param([res(cpu=1)] * 4, P.PACK, res(cpu=4), 1, id="pack-fills-one-host"),
        pytest.param([res(cpu=1)] * 5, P.PACK, res(cpu=4), 2, id="pack-overflows"),
        pytest.param([res(cpu=1)] * 3, P.STRICT_SPREAD, res(cpu=4), 3, id="strict-spread"),
        pytest.param([res(cpu=1)] * 3, P.SPREAD, res(cpu=4), 1, id="spread-is-soft"),
        pytest.param([res(cpu=2)] * 2, P.STRICT_PACK, res(cpu=4), 1, id="strict-pack"),
        pytest.param([res(gpu=1, cpu=1)] * 8, P.PACK, res(cpu=8, gpu=4), 2, id="gpu-bound"),
        pytest.param(
            [res(cpu=3), res(cpu=1), res(cpu=3), res(cpu=1)], P.PACK, res(cpu=4), 2,
            id="decreasing-order",
        ),
    ],
)
def test_hosts_for_a_single_gang(
    bundles: list[dict[str, int]], strategy: PlacementStrategy, shape: dict[str, int], hosts: int
) -> None:
    assert hosts_for(gang("w", *bundles, strategy=strategy), shape=shape) == hosts


def test_strict_pack_larger_than_a_node_is_infeasible() -> None:
    result = pack_gangs(
        [gang("w", res(cpu=3), res(cpu=3), strategy=P.STRICT_PACK)], shape=res(cpu=4), free=[]
    )
    assert result.new_hosts == 0
    assert [u.workload for u in result.infeasible] == ["w"]
    assert "CPU" in result.infeasible[0].reason


def test_bundle_with_resource_the_shape_lacks_is_reported() -> None:
    result = pack_gangs([gang("w", res(gpu=1))], shape=res(cpu=4), free=[])
    assert result.infeasible[0].reason == "needs 1 GPU per node; a node offers 0"
    assert result.placed == ()


def test_existing_room_is_used_before_new_hosts() -> None:
    result = pack_gangs(
        [gang("w", res(cpu=2), res(cpu=2))], shape=res(cpu=4), free=[res(cpu=2), res(cpu=3)]
    )
    assert result.new_hosts == 0
    assert result.used_existing == {0, 1}


def test_multi_host_groups_open_whole_slices() -> None:
    tpu = res(tpu=4)
    result = pack_gangs(
        [gang("w", *[tpu] * 5, strategy=P.STRICT_SPREAD)], shape=tpu, free=[], num_of_hosts=4
    )
    assert result.new_hosts == 8


def test_gang_past_the_cap_is_skipped_but_smaller_ones_still_fit() -> None:
    big = gang("big", *[res(cpu=4)] * 3)
    small = gang("small", res(cpu=4))
    result = pack_gangs([big, small], shape=res(cpu=4), free=[], max_new_hosts=2)
    assert result.placed == ("small",)
    assert [u.workload for u in result.capped] == ["big"]
    assert result.new_hosts == 1


def test_strict_spread_never_shares_a_host_within_a_gang() -> None:
    # Two hosts with plenty of room, three bundles: the third needs a new host.
    result = pack_gangs(
        [gang("w", *[res(cpu=1)] * 3, strategy=P.STRICT_SPREAD)],
        shape=res(cpu=8),
        free=[res(cpu=8), res(cpu=8)],
    )
    assert result.new_hosts == 1


_bundles = st.lists(
    st.fixed_dictionaries(
        {"CPU": st.integers(0, 4000), "GPU": st.sampled_from([0, 0, 1000, 2000])}
    ),
    min_size=1,
    max_size=6,
)
_strategies = st.sampled_from(list(PlacementStrategy))


@settings(max_examples=150, deadline=None)
@given(
    gangs=st.lists(st.tuples(_bundles, _strategies), min_size=1, max_size=5),
    hosts=st.integers(1, 4),
)
def test_packing_is_sound(gangs: list[tuple[list[dict[str, int]], P]], hosts: int) -> None:
    """Every placed gang's bundles can be assigned to hosts, and the answer is stable."""
    shape = res(cpu=4, gpu=2)
    built = [gang(f"w{i}", *b, strategy=s) for i, (b, s) in enumerate(gangs)]
    result = pack_gangs(built, shape=shape, free=[], num_of_hosts=hosts)
    assert result.new_hosts % hosts == 0
    assert set(result.placed) | {u.workload for u in result.infeasible} == {
        g.workload for g in built
    }
    # Replaying the placed gangs on exactly that many hosts needs no more hosts.
    again = pack_gangs(
        [g for g in built if g.workload in result.placed],
        shape=shape,
        free=[shape] * result.new_hosts,
        num_of_hosts=hosts,
    )
    assert again.new_hosts == 0
    for g in built:
        if g.workload in result.placed:
            assert all(fits(b, shape) for b in g.bundles)
    assert pack_gangs(built, shape=shape, free=[], num_of_hosts=hosts) == result
