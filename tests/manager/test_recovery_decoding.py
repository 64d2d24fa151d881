"""Recovery through the SQLite store gives back exactly what was stored, as objects of
its own: the store's decoder has a compiled fast path, and the restore builds queues in
bulk, so both are checked against the state they rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ray_queue.engine.model import WorkloadId, WorkloadKind, WorkloadState, WorkloadStatus
from ray_queue.store import sqlite
from ray_queue.store.codec import CodecError, dumps_status, loads_status, loads_statuses
from ray_queue.store.sqlite import SQLiteStore
from tests.manager.test_core import new_core, req

W = WorkloadId


class _Recording(SQLiteStore):
    """The SQLite store, remembering the last status it was given for each workload: what
    a recovery must give back."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.written: dict[WorkloadId, WorkloadStatus] = {}

    def write(self, **changes: Any) -> None:
        statuses = list(changes.pop("workloads", ()))
        super().write(workloads=statuses, **changes)
        self.written.update((s.spec.id, s) for s in statuses)
        for workload in changes.get("forget", ()):
            self.written.pop(workload, None)


def _varied(tmp_path: Path) -> dict[WorkloadId, WorkloadStatus]:
    """Workloads in every state a store holds, several of one shape, as written to it."""
    store = _Recording(tmp_path)
    core, _ = new_core(store)
    core.submit_many([req("a", gpu=2), req("b", gpu=2, kind=WorkloadKind.TASK)])
    core.submit_many([req("c", gpu=2, priority="high", owner="driver-2")])  # preempts one
    core.submit_many([req(f"same-{i}", gpu=1, cpu=0.5, count=2) for i in range(3)])
    core.submit_many([req("other-queue", queue="team-b", owner="")])
    core.evict(W("c"), reason="Test", message="evicted by the test")
    core.cancel([W("same-1")])
    written = store.written
    states = {s.state for s in written.values()}
    assert {WorkloadState.ADMITTED, WorkloadState.PENDING, WorkloadState.CANCELLED} <= states
    assert WorkloadState.EVICTED in states and any(s.set_aside for s in written.values())
    assert any(len(s.history) > 2 for s in written.values())
    return written


def test_recovering_from_the_store_gives_back_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _varied(tmp_path)
    monkeypatch.setattr(sqlite, "_CHUNK_ROWS", 3)  # several chunks, the last one short
    loaded = SQLiteStore(tmp_path).load().workloads
    assert {s.spec.id: s for s in loaded} == written
    first, _ = new_core(SQLiteStore(tmp_path))
    again, _ = new_core(SQLiteStore(tmp_path))
    assert {s.spec.id: s for s in first.workloads()} == written
    assert again.workloads() == first.workloads()
    assert again.pending() == first.pending() and first.pending()


def test_decoded_workloads_share_no_mutable_object(tmp_path: Path) -> None:
    _varied(tmp_path)
    statuses = SQLiteStore(tmp_path).load().workloads
    same = [s for s in statuses if s.spec.id.startswith("same-")]
    assert len(same) == 3 and all(s.spec.bundle_groups == same[0].spec.bundle_groups for s in same)
    resources = [s.spec.bundle_groups[0].resources for s in same]
    checks = [s.checks for s in statuses]
    assert len({id(r) for r in resources}) == len(resources)
    assert len({id(c) for c in checks}) == len(checks)
    # Changing one workload's copy (nothing should, but a shared one would show it)
    # leaves the others as stored.
    resources[0]["GPU"] = 1  # type: ignore[index]
    assert all(r["GPU"] == 1000 for r in resources[1:])


def test_a_wrongly_typed_field_is_still_a_codec_error_not_a_wrong_value() -> None:
    status = loads_status(dumps_status(_one()))
    text = dumps_status(status)
    assert loads_status(text) == status
    for good, bad in [
        ('"priority":10', '"priority":"10"'),
        ('"placed":false', '"placed":0'),
        ('"state":"ADMITTED"', '"state":"admitted"'),
        ('"count":2', '"count":2.5'),
        ('[["GPU",1000]]', '[["GPU","1000"]]'),
    ]:
        assert good in text, good
        try:
            loads_status(text.replace(good, bad, 1))
        except CodecError:
            continue
        raise AssertionError(f"{bad} decoded without a CodecError")


def test_rows_parsed_together_fail_as_rows_parsed_alone() -> None:
    text = dumps_status(_one())
    assert loads_statuses([text, text]) == [loads_status(text)] * 2
    # A truncated row, a row of two objects, and two broken rows that complete each
    # other (no status: the decoder refuses them) all fail as one row alone would.
    for rows in ([text, text[:-1]], ["{}, {}", text], ['{"spec":[{}', "{}]},{}"]):
        with pytest.raises(ValueError):
            loads_statuses(rows)


def _one() -> WorkloadStatus:
    core, _ = new_core()
    core.submit_many([req("x", gpu=1, count=2), req("y", gpu=1, count=2)])
    return core.workload(W("y"))
