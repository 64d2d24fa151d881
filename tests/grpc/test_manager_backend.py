"""The gRPC server over the real ``ManagerCore`` (Ray actions faked by a recorder), with
the core driven from its own event loop as in the actor: jobs, placement groups, watch,
and what watching costs the manager."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import UnknownWorkloadError
from ray_queue.engine.model import CheckState, WorkloadId, WorkloadKind, WorkloadState
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.local_manager import LocalManager
from ray_queue.grpc.manager_backend import start_grpc_server
from ray_queue.grpc.server import QueueServer, ServerOptions
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from tests.grpc.conftest import ADMIN_TOKEN, CONFIG_YAML, principals, request, wait_for
from tests.manager.fakes import RecordingActions

pytestmark = pytest.mark.timeout(60)
S = WorkloadState


class Manager:
    def __init__(self) -> None:
        self.actions = RecordingActions()
        self.clock = ManualClock(1_000.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-actor-loop")
        self.thread.start()
        config = load_config(CONFIG_YAML)

        async def build() -> ManagerCore:
            return ManagerCore.recover(
                MemoryStore(), self.actions, self.clock, default_config=lambda: config
            )

        self.core = asyncio.run_coroutine_threadsafe(build(), self.loop).result(10)
        self.server: QueueServer = asyncio.run_coroutine_threadsafe(
            self._start(), self.loop
        ).result(10)
        self.client = QueueClient(self.server.address, token=ADMIN_TOKEN, timeout_s=10)

    async def _start(self) -> QueueServer:
        options = ServerOptions(port=0, host="127.0.0.1", principals=principals())
        return start_grpc_server(self.core, asyncio.get_running_loop(), options, publish=False)

    def on_loop(self, fn):  # type: ignore[no-untyped-def]
        async def call():  # type: ignore[no-untyped-def]
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def close(self) -> None:
        self.client.close()
        self.server.stop(grace_s=0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def manager() -> Iterator[Manager]:
    m = Manager()
    yield m
    m.close()


def test_submit_creates_placement_groups(manager: Manager) -> None:
    status = manager.client.submit(request("pg", count=2))
    assert status.state is S.ADMITTED
    assert manager.actions.pg_specs["pg"][0] == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert manager.client.cancel("pg") is True
    assert ("remove_pg", "pg") in manager.actions.calls
    with pytest.raises(UnknownWorkloadError):
        manager.client.cancel("ghost")


def test_jobs_are_submitted_to_ray(manager: Manager) -> None:
    job = request(
        "job",
        kind=WorkloadKind.JOB,
        payload={"entrypoint": "python train.py", "runtime_env": {"pip": ["x"]}},
    )
    status = manager.client.submit(job)
    assert status.state is S.ADMITTED and status.spec.kind is WorkloadKind.JOB
    (payload,) = manager.actions.job_payloads.values()
    assert payload["entrypoint"] == "python train.py"
    assert payload["runtime_env"] == {"pip": ["x"]}
    assert payload["entrypoint_num_cpus"] == 1.0


def test_status_queries_and_config(manager: Manager) -> None:
    c = manager.client
    c.submit(request("fill", "team-b", cpu=8000))
    c.submit_many([request("w1", "team-b"), request("w2", "team-b", priority="high")])
    assert [p.workload for p in c.pending(queue="team-b")] == ["w2", "w1"]
    assert {q.name for q in c.cluster_queues()} == {"cq-a", "cq-b"}
    assert [x.name for x in c.cohorts()] == ["shared"]
    assert [w.spec.id for w in c.workloads()] == ["fill", "w1", "w2"]
    assert c.apply_config(c.config_yaml()).applied
    assert c.apply_config(CONFIG_YAML, validate_only=True).problems == ()


def test_watch_sees_transitions_made_inside_the_manager(manager: Manager) -> None:
    c = manager.client
    c.submit(request("fill", "team-b", cpu=8000))
    c.submit(request("next", "team-b"))
    events = []
    stream = c.watch(queue="team-b", ids=["fill", "next"], send_initial=True, timeout_s=30)
    assert next(stream).transition.reason == "Snapshot"  # the stream is open
    # Finish "fill" inside the manager (as a Ray event would), not through gRPC.
    manager.on_loop(lambda: manager.core.report(finished=[("fill", False, "done")]))
    for event in stream:
        events.append((event.workload, event.transition.to_state))
        if ("next", S.ADMITTED) in events:
            break
    stream.close()
    assert ("fill", S.FINISHED) in events and ("next", S.ADMITTED) in events


def test_a_watcher_does_not_make_the_manager_rebuild_every_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The autoscaler always watches: rebuilding every workload's status each poll cost
    # ~1 s of the manager's loop every 0.5 s at 100,000 workloads.
    backend = LocalManager(load_config(CONFIG_YAML), ManualClock(1_000.0), poll_s=0.02)
    try:
        builds: list[int] = []
        workloads = backend.core.workloads
        monkeypatch.setattr(
            backend.core, "workloads", lambda *a, **k: builds.append(1) or workloads(*a, **k)
        )
        backend.submit_many([request("a", "team-b")])
        head = backend.journal_head()  # the first watcher: one read of everything
        changes = backend.wait_changed(after=-1, timeout_s=0)
        for _ in range(10):  # ten of the watch's polls (each touches the journal)
            changes = backend.wait_changed(after=changes, timeout_s=5)
        assert len(builds) == 1
        # A change after the first read still reaches watchers, from the core itself.
        backend.finish(WorkloadId("a"))
        page = backend.events(after=head, timeout_s=5)
        assert [(e.workload, e.transition.to_state) for e in page.events] == [("a", S.FINISHED)]
    finally:
        backend.close()


def test_admission_check_report(manager: Manager) -> None:
    c = manager.client
    c.submit(request("gang", gpu=1000))
    demand = next(c.watch_demand(timeout_s=10))
    assert [g.workload for g in demand.gangs] == ["gang"]
    assert c.report_check("gang", "prov", CheckState.READY).state is S.ADMITTED
    wait_for(lambda: "gang" in manager.actions.pgs)


def test_coalescer_merges_concurrent_submissions() -> None:
    import time as _time
    from collections.abc import Sequence

    from ray_queue.grpc.manager_backend import Coalescer
    from ray_queue.wire import SubmitRequest, SubmitResult

    calls: list[int] = []

    def apply(requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        calls.append(len(requests))
        _time.sleep(0.01)  # the loop is busy: others queue up meanwhile
        if any(r.id == "boom" for r in requests):
            raise TimeoutError("busy")
        return [SubmitResult(r.id) for r in requests]

    coalescer = Coalescer(apply)
    got: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        for k in range(20):
            ids = [f"{n}-{k}-{j}" for j in range(n % 3 + 1)]
            try:
                results = coalescer.submit([request(i) for i in ids])
            except BaseException as e:
                errors.append(e)
                return
            assert [r.workload for r in results] == ids
            got.setdefault(n, []).extend(ids)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert sum(len(v) for v in got.values()) == sum(calls)  # every request applied once
    assert len(calls) < 16 * 20  # and many calls were merged
    with pytest.raises(TimeoutError):
        coalescer.submit([request("boom")])
    assert coalescer.submit([request("after")])[0].workload == "after"
