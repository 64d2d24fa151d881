"""The store: exact JSON round trips of engine values, and durability across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.manager_scale import config_yaml
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState, WorkloadStatus
from ray_queue.store.codec import (
    CodecError,
    decode,
    dumps_status,
    loads_status,
    pack_config,
    roundtrip,
    unpack_config,
)
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


# A task preempted and requeued, as store format 1 wrote it before the encoder was
# specialised per type: stores already on disk must read and re-encode to the same text.
FORMAT_1_STATUS = (
    '{"spec":{"id":"b","queue":"team-a","bundle_groups":[{"resources":[["GPU",2000]],"cou'
    'nt":1}],"created_at":100.000001,"kind":"task","strategy":"PACK","priority_class":"lo'
    'w","owner":"driver-1","min_count":null,"name":""},"state":"PENDING","priority":10,"c'
    'luster_queue":"cq-a","admission":null,"checks":[],"reason":"Requeued","message":"wai'
    "ting: insufficient unused quota for GPU in flavor a100: request 2, available 0; no w"
    'orkload may be preempted to make room","requeue_count":0,"requeue_at":null,"placed":'
    'false,"history":[{"at":100.0,"from_state":"PENDING","to_state":"PENDING","reason":"C'
    'reated","message":"waiting for its turn in queue team-a","admission":null},{"at":100'
    '.0,"from_state":"PENDING","to_state":"ADMITTED","reason":"Admitted","message":"admit'
    'ted by ClusterQueue cq-a","admission":{"cluster_queue":"cq-a","groups":[{"flavors":['
    '["GPU","a100"]],"count":1}],"usage":[[["a100","GPU"],2000]]}},{"at":100.0,"from_stat'
    'e":"ADMITTED","to_state":"EVICTED","reason":"Preempted","message":"preempted (within'
    ' ClusterQueue) to admit c (priority 100) in ClusterQueue cq-a","admission":null},{"a'
    't":100.0,"from_state":"EVICTED","to_state":"PENDING","reason":"Requeued","message":"'
    'requeued at its original position","admission":null}],"set_aside":true}'
)


#: Fields added to the spec since format 1, as a format-1 record re-encodes them (their
#: defaults): the decoder gives absent fields their defaults, so old stores still read.
ADDED_SINCE_FORMAT_1 = ',"parent":null,"max_resources":null'


def test_stored_format_1_text_decodes_and_encodes_unchanged() -> None:
    status = loads_status(FORMAT_1_STATUS)
    assert status.state is WorkloadState.PENDING and len(status.history) == 4
    assert status.history[1].admission is not None
    assert status.spec.parent is None and status.spec.max_resources is None
    # Unchanged but for the fields added since, at their defaults.
    before, after = FORMAT_1_STATUS.split('"name":""}', 1)
    assert dumps_status(status) == f'{before}"name":""{ADDED_SINCE_FORMAT_1}}}{after}'


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


# Ray carries a task argument inline up to ``max_direct_call_object_size`` (100 KiB by
# default); a larger one goes to the object store and is lost for the manager's restart.
RAY_INLINE_LIMIT_BYTES = 100 * 1024


def test_a_packed_config_of_1000_cluster_queues_round_trips_inline_sized() -> None:
    config = load_config(config_yaml(1000))
    packed = pack_config(config)
    assert len(packed) < RAY_INLINE_LIMIT_BYTES
    assert unpack_config(packed) == config


def test_unpacking_what_is_not_a_packed_config_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="not a packed config"):
        unpack_config(b"plain bytes")


def test_an_unknown_enum_value_is_a_codec_error_naming_the_enum() -> None:
    bogus = FORMAT_1_STATUS.replace('"state":"PENDING"', '"state":"SLEEPING"')
    with pytest.raises(CodecError, match="'SLEEPING' is not a WorkloadState"):
        loads_status(bogus)
