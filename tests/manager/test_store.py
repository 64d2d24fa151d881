"""The store: exact JSON round trips of engine values, and durability across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState, WorkloadStatus
from ray_queue.store.codec import CodecError, decode, roundtrip
from ray_queue.store.sqlite import SQLiteStore
from tests.manager.configs import teams_config
from tests.manager.test_core import new_core, req

FIXTURES = Path(__file__).resolve().parents[1] / "engine" / "fixtures"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(teams_config(), id="teams"),
        *(pytest.param(load_config(p), id=p.name) for p in sorted(FIXTURES.glob("*.yaml"))),
    ],
)
def test_config_round_trips_exactly(config: QueueConfig) -> None:
    assert roundtrip(QueueConfig, config) == config


def test_workload_statuses_round_trip_through_every_state() -> None:
    core, _ = new_core()
    core.submit_many([req("a", gpu=2), req("b", gpu=2, kind=WorkloadKind.TASK)])
    core.submit_many([req("c", gpu=2, priority="high")])  # preempts one
    core.cancel([WorkloadId("b")])
    core.submit_many([req("d", gpu=4)])  # waits
    statuses = core.workloads()
    assert {s.state for s in statuses} >= {
        WorkloadState.ADMITTED,
        WorkloadState.PENDING,
        WorkloadState.CANCELLED,
    }
    for status in statuses:
        assert roundtrip(WorkloadStatus, status) == status


def test_malformed_data_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode(WorkloadStatus, ["not", "an", "object"])


def test_sqlite_store_survives_reopen_and_forgets(tmp_path: Path) -> None:
    core, _ = new_core()
    core.submit_many([req("a"), req("b")])
    store = SQLiteStore(tmp_path)
    store.write(
        config=teams_config(),
        workloads=core.workloads(),
        payloads={WorkloadId("a"): {"entrypoint": "x"}},
    )
    store.write(workloads=[core.workload(WorkloadId("a"))])  # an update keeps the payload
    store.close()

    reopened = SQLiteStore(tmp_path)
    state = reopened.load()
    assert state.config == teams_config()
    assert [s.spec.id for s in state.workloads] == ["a", "b"]
    assert state.payloads == {"a": {"entrypoint": "x"}}
    reopened.write(forget=[WorkloadId("a")])
    assert [s.spec.id for s in reopened.load().workloads] == ["b"]
    reopened.close()
