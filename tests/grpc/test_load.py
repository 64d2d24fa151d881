"""Many clients submitting and cancelling at once for a bounded time: every accepted
workload is accounted for exactly once, none lost, none duplicated, quota consistent."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from ray_queue.engine.errors import RayQueueError
from ray_queue.engine.model import WorkloadState
from ray_queue.grpc.status import RateLimitedError
from tests.grpc.conftest import ADMIN_TOKEN, TENANT_A_TOKEN, Harness, request

CLIENTS = 16
DURATION_S = 4.0


@pytest.mark.timeout(120)
def test_concurrent_submit_and_cancel(harness: Harness) -> None:
    accepted: dict[str, str] = {}  # workload → client that got it accepted
    cancelled: set[str] = set()
    refused: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.monotonic() + DURATION_S

    def worker(n: int) -> None:
        rng = random.Random(n)
        token = TENANT_A_TOKEN if n % 2 else ADMIN_TOKEN
        queue = "team-a" if n % 2 else rng.choice(["team-a", "team-b"])
        client = harness.client(token=token)
        mine: list[str] = []
        i = 0
        try:
            while time.monotonic() < deadline:
                batch = [
                    request(f"c{n}-{i + k}", queue, cpu=rng.choice([100, 500, 1000]))
                    for k in range(rng.randint(1, 8))
                ]
                i += len(batch)
                # Every few batches, resend one already accepted, as a client retrying a
                # call would: it is answered with the stored status (docs/manager.md),
                # never accepted a second time.
                resent = mine[-1] if mine and rng.random() < 0.2 else None
                if resent is not None:
                    batch.append(request(resent, queue))
                for spec, outcome in zip(batch, client.submit_many(batch), strict=True):
                    if spec.id == resent:
                        assert not isinstance(outcome, RayQueueError), outcome
                        assert outcome.spec.id == resent
                    elif isinstance(outcome, RayQueueError):
                        with lock:
                            refused[type(outcome).__name__] += 1
                    else:
                        assert outcome.spec.id == spec.id
                        mine.append(spec.id)
                        with lock:
                            assert spec.id not in accepted
                            accepted[spec.id] = f"c{n}"
                for victim in rng.sample(mine, min(len(mine), rng.randint(0, 3))):
                    try:
                        client.cancel(victim)
                    except RateLimitedError:
                        # The tokens' flood limit (500/s) is reachable on a fast run; a
                        # refused cancel must change nothing (checked below).
                        with lock:
                            refused["RateLimitedError"] += 1
                        continue
                    with lock:
                        cancelled.add(victim)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION_S + 60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert len(accepted) > CLIENTS  # the run did real work

    statuses = harness.client().workloads()
    ids = [s.spec.id for s in statuses]
    assert len(ids) == len(set(ids)), "a workload appears twice"
    assert set(ids) == set(accepted), "accepted workloads lost, or unknown ones appeared"
    by_id = {s.spec.id: s for s in statuses}
    for workload in cancelled:
        assert by_id[workload].state is WorkloadState.CANCELLED
    for workload in set(accepted) - cancelled:
        assert by_id[workload].state in (WorkloadState.ADMITTED, WorkloadState.PENDING)
    # Quota in use is exactly what the admitted workloads hold.
    for cq in harness.client().cluster_queues():
        for r in cq.resources:
            mine = sum(
                s.admission.usage.get((r.flavor, r.resource), 0)
                for s in statuses
                if s.state is WorkloadState.ADMITTED
                and s.admission is not None
                and s.admission.cluster_queue == cq.name
            )
            assert r.usage == mine, (cq.name, r)
