"""The gate: how a captured ``.remote()`` returns Ray's own ``ObjectRef`` at once and
still does not run before the queue admits it.

Plain Ray code needs what Ray returns: an ``ObjectRef`` it can ``ray.get``, ``ray.wait``
and pass to other tasks, or an ``ActorHandle`` it can call. Ray makes those only when
the work is submitted, and Ray runs submitted work as soon as its resources are free.
Ray does wait for one thing first, though: a task's (or actor's) ``ObjectRef``
arguments. So a captured task is submitted to Ray at once, with one extra argument, a
*gate*: the result of a call to this process's ``Gate`` actor that returns only when
the manager has admitted the workload. The caller gets Ray's real ``ObjectRef``; Ray
holds the task (its resources unclaimed, no worker leased) until the gate opens; a
thin wrapper drops the gate before the user's function runs.

The ``Gate`` is an asyncio actor with no resources, one per captured process, created
on the first captured call and owned by that process: thousands of closed gates are
thousands of parked coroutines, not threads. Openings are batched (``Opener``), one
actor call per burst of admissions.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import ray

#: How long openings gather before they are sent (admissions arrive in bursts).
_OPEN_BATCH_S = 0.001


class Gate:
    """Keys wait until opened; a key opened before anyone waits stays open for its
    waiter (an admission can overtake the call that made its gate)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Event] = {}
        self._opened: set[str] = set()

    async def wait(self, key: str) -> None:
        if key in self._opened:
            self._opened.discard(key)
            return
        event = self._waiting.setdefault(key, asyncio.Event())
        await event.wait()
        self._waiting.pop(key, None)

    async def open(self, keys: list[str]) -> None:
        for key in keys:
            event = self._waiting.get(key)
            if event is None:
                self._opened.add(key)
            else:
                event.set()


def gate_actor_options() -> dict[str, Any]:
    """No resources (so it is never queued itself, and fits anywhere), on this process's
    node when it can be (each captured task's gate is a call to it), and enough
    concurrency for every task this process may have waiting."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {
        "num_cpus": 0,
        "max_concurrency": 1_000_000,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True
        ),
    }


class Opener:
    """This process's gate actor and a sender that opens gates in batches."""

    def __init__(self, create_actor: Any) -> None:
        # ``create_actor`` is Ray's own actor creation, never the captured one: a gate
        # that waited for the queue would never open.
        self.actor = create_actor(Gate)
        self._lock = threading.Condition()
        self._keys: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._send_loop, name="ray-queue-gate", daemon=True)
        self._thread.start()

    def gate(self, key: str) -> Any:
        """The ``ObjectRef`` that becomes ready when ``open(key)`` is called."""
        return self.actor.wait.remote(key)

    def open(self, key: str) -> None:
        with self._lock:
            self._keys.append(key)
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(timeout=5)

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._keys and not self._stop:
                    self._lock.wait()
                if self._stop and not self._keys:
                    return
            # Let a burst of admissions gather into one call.
            threading.Event().wait(_OPEN_BATCH_S)
            with self._lock:
                keys, self._keys = self._keys, []
            try:
                self.actor.open.remote(keys)
            except Exception:  # Ray shut down under us: nothing left to open
                if not ray.is_initialized():
                    return
                raise
