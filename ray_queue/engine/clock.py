"""Time comes into the engine from outside, so replays are deterministic."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of seconds. Monotonic non-decreasing; need not be wall time."""

    def now(self) -> float: ...


class SystemClock:
    """Wall-clock seconds since the epoch (persisted timestamps must survive restarts)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests and simulations move explicitly."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = now
