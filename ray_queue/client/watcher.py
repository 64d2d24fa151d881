"""The task watcher: notices launched tasks returning, and tells their handles.

One thread waits on every real ObjectRef this driver launched for a queued task and calls
the handle's ``_on_done`` for each that returned (or failed, or was cancelled): the handle
decides what the return means (a result, a lost slot, a cancelled attempt).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import ray

logger = logging.getLogger(__name__)

#: How long a round collects completions while every task it watches is in a slot.
_SLOT_SWEEP_S = 0.002


class Watched(Protocol):
    """A handle whose launched task the watcher waits on."""

    def _on_done(self, ref: Any, attempt: int) -> None:
        """``ref`` (the handle's ``attempt``-th run) returned, failed or was cancelled."""
        ...


@dataclass(slots=True)
class _Running:
    handle: Watched
    attempt: int
    in_slot: bool


class TaskWatcher:
    """The launched tasks, and the thread that waits for them."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._running: dict[Any, _Running] = {}
        self._in_slots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-queue-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, ref: Any, handle: Watched, attempt: int, *, in_slot: bool) -> None:
        """Tell ``handle`` when ``ref`` (its ``attempt``-th run) is done."""
        with self._cv:
            self._running[ref] = _Running(handle, attempt, in_slot)
            self._in_slots += in_slot
            self._cv.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._running and not self._stop.is_set():
                    self._cv.wait(0.5)
                refs = list(self._running)
                all_in_slots = self._in_slots == len(refs)
            if refs:
                self.sweep(refs, all_in_slots=all_in_slots)

    def sweep(self, refs: list[Any], *, all_in_slots: bool) -> None:
        """One round: wait briefly for some of ``refs`` to be done, and tell their
        handles."""
        try:
            if all_in_slots:
                # Ray runs what is queued in a slot without waiting for us: collect
                # completions in small batches rather than waking for each one.
                done, _ = ray.wait(
                    refs, num_returns=len(refs), timeout=_SLOT_SWEEP_S, fetch_local=False
                )
            else:
                # Block briefly for the first to finish, then sweep up all that have;
                # tasks launched meanwhile join the next round, so keep the block short.
                done, rest = ray.wait(refs, num_returns=1, timeout=0.01, fetch_local=False)
                if done and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
                    done += more
        except Exception:
            logger.exception("ray_queue: watching tasks failed")
            time.sleep(0.1)
            return
        for ref in done:
            with self._cv:
                running = self._running.pop(ref, None)
                if running is not None:
                    self._in_slots -= running.in_slot
            if running is None:
                continue
            try:
                running.handle._on_done(ref, running.attempt)
            except Exception:
                # One handle's bug must not stop every other task's return being seen.
                logger.exception("ray_queue: handling a returned task failed")

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    def join(self, timeout_s: float) -> None:
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
